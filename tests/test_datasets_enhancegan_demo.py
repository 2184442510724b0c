"""datasets.enhancegan_demo: the operators' NumPy forms, the degradations as their exact inverses,
and the embedded good/bad set (layout, manifest, determinism, rebuilds, held-out photos)."""
import json
import math
import os

import numpy as np
import pytest
from PIL import Image

from datasets import demo, enhancegan, heldout
from datasets import enhancegan_demo as egd
from datasets.images import load_rgb8, to_uint8

SIZE, TEST_SIZE = 48, 40
COUNTS = dict(num_good=6, num_bad=40, num_test=8)


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    root = tmp_path_factory.mktemp("enhancegan_demo")
    return egd.build_enhancegan_demo(root, image_size=SIZE, test_size=TEST_SIZE, **COUNTS)


def _psnr(a, b):
    mse = float(np.mean((np.asarray(a, np.float64) - b) ** 2))
    return math.inf if mse == 0 else 10 * math.log10(1.0 / mse)


def _float(path):
    return load_rgb8(path).astype(np.float64) / 255.0


# ----------------------------------------------------------------------------- operators

CURVES = [(0.1, 0.01, 1.0, 0.99), (0.4, 0.1, 3.0, 0.5), (0.25, 0.05, 2.0, 0.7)]


@pytest.mark.parametrize("a, b, p, q", CURVES)
def test_l_curve_is_the_issue_formula_continuous_monotone_and_identity_in_the_middle(a, b, p, q):
    k1, k2 = a / (a - b) ** (1 / p), a / (a - b) ** (1 / q)
    for m, expected in ((b / 2, 0.0), ((a + b) / 2, k1 * ((a - b) / 2) ** (1 / p)),
                        (0.5, 0.5), (1 - (a + b) / 2, k2 * ((a - b) / 2) ** (1 / q) + 1 - a),
                        (1 - b / 2, 1.0)):
        assert egd.l_curve(m, a, b, p, q) == pytest.approx(expected)
    for knot in (b, a, 1 - a, 1 - b):  # continuous at the four knots
        left, right = egd.l_curve([knot - 1e-9, knot + 1e-9], a, b, p, q)
        assert abs(left - right) < 1e-3
    m = np.linspace(0, 1, 2001)
    y = egd.l_curve(m, a, b, p, q)
    assert np.all(np.diff(y) >= 0) and y[0] == 0 and y[-1] == 1
    middle = (m >= a) & (m < 1 - a)
    np.testing.assert_array_equal(y[middle], m[middle])
    # The degradation is its inverse: it maps [0, 1] onto [b, 1 - b] and the curve undoes it.
    back = egd.inverse_l_curve(m, a, b, p, q)
    assert back.min() == pytest.approx(b) and back.max() == pytest.approx(1 - b)
    np.testing.assert_allclose(egd.l_curve(back, a, b, p, q), m, atol=1e-9)


def test_ab_stretch_undoes_the_compression():
    m = np.linspace(0, 1, 11)
    for alpha in (0.05, 0.25, 0.49):
        np.testing.assert_allclose(egd.ab_stretch(egd.ab_compress(m, alpha), alpha), m,
                                   atol=1e-12)
    assert egd.ab_stretch(0.5, 0.3) == 0.5 and egd.ab_stretch(0.2, 0.3) == 0.0
    assert egd.ab_compress(1.0, 0.1) == pytest.approx(0.9)


def test_degradations_are_undone_by_the_operators_with_their_parameters():
    photo = demo.load_colour_photos(["astronaut"])[0][::4, ::4]
    x = photo / 255.0
    degraded = egd.degrade_colour(photo, **egd.HELDOUT_DEGRADATION)
    assert degraded.dtype == np.float32 and degraded.shape == x.shape
    from skimage import color
    lab, lab_degraded = color.rgb2lab(x), color.rgb2lab(degraded)
    assert np.abs(lab_degraded[..., 1:]).mean() < 0.8 * np.abs(lab[..., 1:]).mean()  # faded
    # Shadows between the lifted black point and a = 0.3 are pushed down.
    shadows = (lab[..., 0] > 12) & (lab[..., 0] < 28)
    assert shadows.sum() > 100
    assert lab_degraded[..., 0][shadows].mean() < lab[..., 0][shadows].mean() - 2
    restored = egd.restore_colour(degraded, **egd.HELDOUT_DEGRADATION)
    assert _psnr(restored, x) > 40 > _psnr(degraded, x) + 10
    np.testing.assert_allclose(egd.degrade_colour(photo), x, atol=1e-5)  # nothing to do


# ----------------------------------------------------------------------------- the set


def test_layout_is_cuhkpq_and_readable(built):
    sets = enhancegan.list_cuhkpq(built.root)
    assert len(sets.good) == 6 and len(sets.bad) == 40
    assert set(sets.good.categories) | set(sets.bad.categories) <= set(egd.TRAIN_PHOTOS)
    assert all(load_rgb8(p).shape == (SIZE, SIZE, 3) for p in sets.good.paths + sets.bad.paths)
    manifest = egd.read_demo_manifest(built.root)
    assert set(manifest["images"]) >= set(sets.good.keys) | set(sets.bad.keys)
    assert manifest["image_size"] == SIZE and manifest["num_bad"] == 40
    train, val = enhancegan.load_cuhkpq(built.root)  # 10% held out of each side
    assert (len(val.good), len(val.bad)) == (1, 4)
    tests = egd.demo_test_images(built.root)
    assert len(tests) == 8 and {r["photo"] for r in tests} <= set(egd.TEST_PHOTOS)
    for record in tests:
        for name in ("degraded", "clean", "target"):
            assert load_rgb8(record[name]).shape == (TEST_SIZE, TEST_SIZE, 3)


def test_every_degradation_occurs_and_is_recorded(built):
    records = [r for k, r in egd.read_demo_manifest(built.root)["images"].items()
               if not k.startswith("HighQuality/")]
    kinds = {(r["margin"] or {}).get("kind") for r in records}
    assert kinds == {None, "scene", "blur", "plain"}
    assert any(r["tone"] and r["tone"]["exposure"] for r in records)
    assert any(r["tone"] and r["tone"]["contrast"] for r in records)
    assert any(r["colour"] for r in records) and any(not r["colour"] for r in records)
    for r in records:
        assert r["margin"] or r["tone"] or r["colour"]  # at least one
        if r["tone"]:
            t = r["tone"]
            assert 0.1 <= t["a"] <= 0.4 and 0.01 <= t["b"] <= 0.1  # inside the operator's
            assert 1 <= t["p"] <= 3 and 0.5 <= t["q"] <= 0.99       # ranges (issue 16)
        if r["colour"]:
            assert all(0.05 <= r["colour"][k] <= 0.49 for k in ("alpha", "beta"))


def test_the_box_is_the_subject_and_the_crop_parameters_give_it_back(built):
    manifest = egd.read_demo_manifest(built.root)
    for key, r in manifest["images"].items():
        if key.startswith("HighQuality/"):
            continue
        size = TEST_SIZE if key.startswith("test/") else SIZE
        y1, y2, x1, x2 = r["box"]
        if r["margin"] is None:
            assert r["box"] == [0, size, 0, size]
        else:
            assert 0.3 <= (y2 - y1) / size <= 0.999 and y2 - y1 == x2 - x1
        crop = r["crop"]
        # The issue's full-size box formula: rows = round(H s1), start = floor((H - rows) / 2)
        # + round(t1 rows / 2), and likewise for columns.
        for start, end, s, t in ((y1, y2, crop["s1"], crop["t1"]),
                                 (x1, x2, crop["s2"], crop["t2"])):
            rows = round(size * s)
            assert rows == end - start
            assert math.floor((size - rows) / 2) + round(t * rows / 2) == start
            assert abs(t) <= (1 - s) / s + 1e-9


def test_zoom_boxes_are_the_subject_or_the_central_three_quarters(built):
    """The critic's zoom check: a bad photo with margins is cut to its recorded subject; a bad
    photo without margins and a good photo to the central square of 36 of 48 pixels."""
    manifest = egd.read_demo_manifest(built.root)
    keys = [k for k in manifest["images"] if not k.startswith("test/")]
    paths = [os.path.join(built.root, *k.split("/")) for k in keys]
    found = egd.zoom_boxes(built.root, paths)
    central = [6, 42, 6, 42]  # side round(0.75 * 48) = 36, from (48 - 36) // 2 = 6
    groups = set()
    for key, (group, box) in zip(keys, found):
        record = manifest["images"][key]
        if key.startswith("HighQuality/"):
            assert (group, box) == ("good", central)
        elif record["margin"] is not None:
            assert (group, box) == ("margin", record["box"]) and box != [0, SIZE, 0, SIZE]
        else:
            assert (group, box) == ("no_margin", central)
        groups.add(group)
    assert groups == {"good", "margin", "no_margin"}
    with pytest.raises(KeyError, match="not_there.png"):
        egd.zoom_boxes(built.root, [os.path.join(built.root, "not_there.png")])


def test_test_images_are_the_clean_ones_degraded_and_restorable(built):
    for r in egd.demo_test_images(built.root):
        clean = load_rgb8(r["clean"])
        degraded = load_rgb8(r["degraded"])
        np.testing.assert_array_equal(
            degraded, to_uint8(egd.degrade_colour(clean, r["tone"], r["colour"]),
                               input_precision=True))
        if r["tone"] or r["colour"]:
            restored = egd.restore_colour(degraded, r["tone"], r["colour"])
            assert _psnr(restored, clean / 255.0) > _psnr(degraded / 255.0, clean / 255.0) + 5
        y1, y2, x1, x2 = r["box"]
        subject = clean[y1:y2, x1:x2]
        target = np.asarray(Image.fromarray(subject).resize((TEST_SIZE, TEST_SIZE),
                                                            Image.Resampling.BICUBIC))
        assert _psnr(target / 255.0, _float(r["target"])) > 22  # the same region, resampled
        margin = r["margin"]
        outside = np.ones(clean.shape[:2], bool)
        outside[y1:y2, x1:x2] = False
        if margin and margin["kind"] == "plain":
            assert np.all(clean[outside] == round(margin["grey"] * 255))
        if margin and margin["kind"] == "blur":  # smoother outside than inside the box
            rough = np.abs(np.diff(clean.astype(float), axis=1)).mean(-1)
            assert rough[outside[:, 1:]].mean() < rough[~outside[:, 1:]].mean()


def test_good_images_are_clean_crops_of_the_recorded_region(built):
    manifest = egd.read_demo_manifest(built.root)
    photos = dict(zip(egd.TRAIN_PHOTOS, demo.load_colour_photos(egd.TRAIN_PHOTOS)))
    for key, r in manifest["images"].items():
        if not key.startswith("HighQuality/"):
            continue
        top, left, side = r["region"]
        image = Image.fromarray(photos[r["photo"]]).resize(
            (SIZE, SIZE), Image.Resampling.BICUBIC, box=(left, top, left + side, top + side))
        expected = np.asarray(image)[:, ::-1] if r["flip"] else np.asarray(image)
        np.testing.assert_array_equal(load_rgb8(os.path.join(built.root, key)), expected)


def test_photos_are_disjoint_and_none_is_held_out():
    assert not set(egd.TRAIN_PHOTOS) & set(egd.TEST_PHOTOS)
    ours = demo.load_colour_photos(egd.TRAIN_PHOTOS + egd.TEST_PHOTOS)
    for photo in heldout.load_photos().values():
        assert all(p.shape != photo.shape or not np.array_equal(p, photo) for p in ours)


def test_deterministic_manifest_last_and_rebuilds(built, tmp_path):
    def mtimes(root):
        out = {}
        for directory, _, names in os.walk(root):
            for name in names:
                out[os.path.join(directory, name)] = os.stat(
                    os.path.join(directory, name)).st_mtime_ns
        return out

    before = mtimes(built.root)
    assert egd.build_enhancegan_demo(built.root, image_size=SIZE, test_size=TEST_SIZE,
                                     **COUNTS) == built
    assert mtimes(built.root) == before  # complete with the same parameters: a no-op
    manifest_time = before[built.manifest]
    assert all(t <= manifest_time for t in before.values())  # the manifest is written last

    # The same seed gives the same files; another seed other ones.
    same = egd.build_enhancegan_demo(tmp_path / "same", image_size=SIZE, test_size=TEST_SIZE,
                                     **COUNTS)
    ours = json.load(open(built.manifest))["images"]
    assert json.load(open(same.manifest))["images"] == ours
    key = next(k for k in ours if k.startswith("LowQuality/"))
    np.testing.assert_array_equal(load_rgb8(os.path.join(built.root, key)),
                                  load_rgb8(os.path.join(same.root, key)))
    other = egd.build_enhancegan_demo(tmp_path / "other", image_size=SIZE,
                                      test_size=TEST_SIZE, seed=1, **COUNTS)
    assert json.load(open(other.manifest))["images"] != ours

    # A smaller build in the same folder removes the extra files; image i does not depend on
    # the counts; a missing file makes the set incomplete and it is rebuilt.
    smaller = egd.build_enhancegan_demo(tmp_path / "same", image_size=SIZE,
                                        test_size=TEST_SIZE, num_good=2, num_bad=3, num_test=1)
    sets = enhancegan.list_cuhkpq(smaller.root)
    assert sorted(k.split("/")[-1] for k in sets.bad.keys) == [
        "bad_0000.png", "bad_0001.png", "bad_0002.png"]
    assert sorted(os.listdir(smaller.degraded_dir)) == ["test_0000.png"]
    assert json.load(open(smaller.manifest))["images"][sets.bad.keys[0]] == ours[
        sets.bad.keys[0]]
    os.remove(os.path.join(smaller.clean_dir, "test_0000.png"))
    egd.build_enhancegan_demo(tmp_path / "same", image_size=SIZE, test_size=TEST_SIZE,
                              num_good=2, num_bad=3, num_test=1)
    assert os.path.exists(os.path.join(smaller.clean_dir, "test_0000.png"))
    with pytest.raises(ValueError, match="image_size"):
        egd.build_enhancegan_demo(tmp_path / "x", image_size=16)
    with pytest.raises(FileNotFoundError, match="no complete"):
        egd.demo_test_images(tmp_path / "x")


# ----------------------------------------------------------------------------- over-enhanced


@pytest.fixture(scope="module")
def built_over(tmp_path_factory):
    root = tmp_path_factory.mktemp("enhancegan_demo_over")
    return egd.build_enhancegan_demo(root, image_size=SIZE, test_size=TEST_SIZE,
                                     over_enhanced=0.5, **COUNTS)


def _lab(x):
    from skimage import color
    return color.rgb2lab(np.asarray(x, np.float64))


def test_over_enhance_is_the_documented_lab_computation():
    from skimage import color
    photo = demo.load_colour_photos(["astronaut"])[0][::4, ::4]
    lab = _lab(photo / 255.0)
    l_n, a_n, b_n = lab[..., 0] / 100, (lab[..., 1] + 128) / 255, (lab[..., 2] + 128) / 255
    over = {"kind": "both", "clip_low": 0.05, "clip_high": 0.03, "s_curve": 0.4, "chroma": 2.0}
    out, used = egd.over_enhance(photo, over)
    lo, hi = np.quantile(l_n, 0.05), np.quantile(l_n, 0.97)
    assert used == {"lo": pytest.approx(lo), "hi": pytest.approx(hi)}
    m = np.clip((l_n - lo) / (hi - lo), 0, 1)
    m = 0.6 * m + 0.4 * (1 - np.cos(np.pi * m)) / 2
    a2 = np.clip(0.5 + 2.0 * (a_n - 0.5), 0, 1)
    b2 = np.clip(0.5 + 2.0 * (b_n - 0.5), 0, 1)
    expected = np.clip(color.lab2rgb(np.stack([m * 100, a2 * 255 - 128, b2 * 255 - 128], -1)),
                       0, 1)
    assert out.dtype == np.float32 and out.shape == photo.shape
    np.testing.assert_allclose(out, expected, atol=1e-6)

    # Contrast alone: the pixels at or below the clip_low quantile of L are crushed (a channel
    # at 0), those at or above the 1 - clip_high quantile blown (a channel at 255).
    cat = demo.load_colour_photos(["chelsea"])[0][::4, ::4]  # no black or white of its own
    l_cat = _lab(cat / 255.0)[..., 0] / 100
    out, used = egd.over_enhance(cat, dict(over, kind="contrast", chroma=None))
    q = to_uint8(out, input_precision=True)
    crushed, blown = l_cat <= used["lo"], l_cat >= used["hi"]
    assert crushed.mean() == pytest.approx(0.05, abs=0.002)
    assert blown.mean() == pytest.approx(0.03, abs=0.002)
    assert np.all(q.min(-1)[crushed] == 0) and np.all(q.max(-1)[blown] == 255)
    assert np.mean((cat == 0) | (cat == 255)) < 0.005
    assert np.mean((q == 0) | (q == 255)) > 0.05
    # Saturation alone: L about the same, chroma up, more 8-bit values clipped.
    out, used = egd.over_enhance(photo, {"kind": "saturation", "clip_low": None,
                                         "clip_high": None, "s_curve": None, "chroma": 2.0})
    assert used == {"lo": None, "hi": None}
    lab_out = _lab(out)
    chroma = np.hypot(lab[..., 1], lab[..., 2]).mean()
    assert np.hypot(lab_out[..., 1], lab_out[..., 2]).mean() > 1.5 * chroma
    clipped = lambda x: np.mean((x <= 0.5 / 255) | (x >= 254.5 / 255))
    assert clipped(out) > clipped(photo / 255.0) + 0.02


def test_over_enhanced_bad_images_are_recorded_and_test_images_unchanged(built, built_over):
    plain = egd.read_demo_manifest(built.root)
    manifest = egd.read_demo_manifest(built_over.root)
    assert manifest["over_enhanced"] == 0.5 and plain["over_enhanced"] == 0.0
    assert manifest["recipe_version"] == egd.RECIPE_VERSION >= 2
    assert manifest["recipe"]["over"]["probability"] == 0.5
    assert manifest["recipe"]["over"]["streams"] == ["bad"]
    assert all(r.get("over") is None for k, r in plain["images"].items()
               if not k.startswith("HighQuality/"))
    over = {k: r for k, r in manifest["images"].items() if r.get("over")}
    assert all(k.startswith("LowQuality/") for k in over)
    assert 10 <= len(over) <= 30  # 40 bad images at 0.5
    assert {r["over"]["kind"] for r in over.values()} == set(egd.OVER_KINDS)
    for key, record in manifest["images"].items():
        same_pixels = np.array_equal(load_rgb8(os.path.join(built.root, key)),
                                     load_rgb8(os.path.join(built_over.root, key)))
        if key not in over:  # good, test and the other bad images: as without it
            assert same_pixels and record == plain["images"][key], key
            continue
        assert not same_pixels
        o, ours = record["over"], plain["images"][key]
        assert record["tone"] is None and record["colour"] is None  # exclusive with them
        # Everything else (photo, geometry, margin) as drawn without it.
        assert {k: v for k, v in record.items() if k not in ("tone", "colour", "over")} == {
            k: v for k, v in ours.items() if k not in ("tone", "colour", "over")}
        if o["kind"] in ("contrast", "both"):
            lo, hi = egd.OVER_CLIP
            assert lo <= o["clip_low"] <= hi and lo <= o["clip_high"] <= hi
            assert egd.OVER_S_CURVE[0] <= o["s_curve"] <= egd.OVER_S_CURVE[1]
            assert 0.0 <= o["lo"] < o["hi"] <= 1.0
        else:
            assert o["clip_low"] is o["s_curve"] is o["lo"] is o["hi"] is None
        if o["kind"] in ("saturation", "both"):
            assert egd.OVER_CHROMA[0] <= o["chroma"] <= egd.OVER_CHROMA[1]
        else:
            assert o["chroma"] is None
        x = load_rgb8(os.path.join(built_over.root, key))
        clipped = np.mean((x == 0) | (x == 255))
        assert clipped > 0.02, (key, clipped)  # blown, crushed or gamut-clipped


def test_over_enhanced_images_are_deterministic(built_over, tmp_path):
    again = egd.build_enhancegan_demo(tmp_path / "again", image_size=SIZE,
                                      test_size=TEST_SIZE, over_enhanced=0.5, **COUNTS)
    ours = egd.read_demo_manifest(built_over.root)["images"]
    assert egd.read_demo_manifest(again.root)["images"] == ours
    for key in (k for k, r in ours.items() if r.get("over")):
        np.testing.assert_array_equal(load_rgb8(os.path.join(built_over.root, key)),
                                      load_rgb8(os.path.join(again.root, key)))
    # Another probability is another set: rebuilt in place, not reused.
    other = egd.build_enhancegan_demo(tmp_path / "again", image_size=SIZE,
                                      test_size=TEST_SIZE, over_enhanced=0.2, **COUNTS)
    assert egd.read_demo_manifest(other.root)["over_enhanced"] == 0.2
    assert sum(bool(r.get("over")) for r in egd.read_demo_manifest(other.root)[
        "images"].values()) < sum(bool(r.get("over")) for r in ours.values())
    with pytest.raises(ValueError, match="over_enhanced"):
        egd.build_enhancegan_demo(tmp_path / "x", over_enhanced=1.5)
