"""tools.evaluate_enhancegan: Tables 1-2 (critic and NIMA of input and output), Table 3 (overlap
ratio and boundary displacement per photographer), the demo's PSNR and crop IoU, the example
and attention figures; every figure against an independent computation (NumPy, Pillow, boxes
worked by hand)."""
import json
import math
import os
import sys

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from datasets import cropping, enhancegan_demo
from datasets.images import load_rgb8, to_uint8
from enhancers import enhancegan
from tools import evaluate_enhancegan as evaluation
from tools import report

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from test_enhancegan_enhancer import photo, pillow_view, tiny_generator  # noqa: E402
from test_evaluate_can import numpy_nima, tiny_nima  # noqa: E402


def _save(image, path):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(to_uint8(image)).save(path)
    return str(path)


def _read(path):
    return load_rgb8(path).astype(np.float32) / np.float32(255)


def strict_load(path):
    with open(path, encoding="utf-8") as f:
        return json.load(f, parse_constant=lambda c: pytest.fail(f"not strict JSON: {c}"))


def mean_critic(images, training=False):
    """A stand-in critic whose logits are (0, 4 (mean - 0.5)): good = sigmoid(4 (mean - 0.5))."""
    mean = tf.reduce_mean(images, axis=[1, 2, 3])
    return {"logits": tf.stack([tf.zeros_like(mean), 4.0 * (mean - 0.5)], axis=-1)}


def numpy_good(image):
    return 1.0 / (1.0 + math.exp(-4.0 * (pillow_view(image).astype(np.float64).mean() - 0.5)))


class BoxEnhancer:
    """Cuts (H // 6, W // 4, H // 2, W // 2) and brightens by `gain`; no attention."""

    def __init__(self, gain=1.0):
        self.gain = gain

    def __call__(self, image):
        height, width = image.shape[:2]
        top, left, h, w = height // 6, width // 4, height // 2, width // 2
        return {"image": np.clip(image[top:top + h, left:left + w] * self.gain, 0, 1),
                "box": np.array([top, left, h, w], np.int32)}


@pytest.fixture(scope="module")
def enhancer():
    return enhancegan.PhotoEnhancer(tiny_generator(seed=5))


def test_tables_1_2_critic_and_nima_of_input_and_output(enhancer, tmp_path):
    paths = [_save(photo(shape, seed=k), tmp_path / "val" / f"p{k}.png")
             for k, shape in enumerate([(40, 56), (33, 33), (64, 48)])]
    broken = tmp_path / "val" / "broken.jpg"
    broken.write_bytes(b"\xff\xd8 not really")
    results = evaluation.evaluate_enhancegan(
        enhancer, images=[paths[0], str(broken), *paths[1:]], critic=mean_critic,
        nima_model=tiny_nima())
    rows = {row["name"]: row["metrics"] for row in results["rows"]}
    assert list(rows) == ["input", "output"] and list(results["metrics"]) == ["critic_good",
                                                                              "nima_mean"]
    inputs = [_read(p) for p in paths]
    outputs = [enhancer(x)["image"].numpy() for x in inputs]
    for name, images in (("input", inputs), ("output", outputs)):
        assert rows[name]["critic_good"] == pytest.approx(
            np.mean([numpy_good(x) for x in images]), abs=1e-5)
        assert rows[name]["nima_mean"] == pytest.approx(
            np.mean([numpy_nima(x) for x in images]), rel=1e-4)
    assert rows["input"]["critic_good"] != pytest.approx(rows["output"]["critic_good"])
    assert [entry["file"] for entry in results["skipped"]] == [str(broken)]
    assert results["num_images"] == 3 and results["num_images_per_metric"] == {
        "critic_good": 3, "nima_mean": 3}
    assert results["figures"] == {"examples": [], "attention": []}
    table = report.format_table(results)
    assert "critic_good" in table and "Tables 1-2" in table


def test_the_real_critics_good_probability(enhancer):
    critic = enhancegan.EnhanceGANCritic(enhancegan.build_tiny_backbone(8))
    image = photo((50, 30), seed=9)
    logits = critic(pillow_view(image)[None])["logits"].numpy()[0].astype(np.float64)
    expected = np.exp(logits[1]) / np.exp(logits).sum()
    assert evaluation.critic_good_probability(critic, image) == pytest.approx(expected, abs=1e-4)


def _cropping_set(tmp_path):
    """Two photos, two photographers; boxes chosen so every figure can be worked by hand."""
    _save(photo((60, 80), seed=1), tmp_path / "crop" / "animal" / "a.png")
    _save(photo((120, 40), seed=2), tmp_path / "crop" / "b.png")
    parameters = tmp_path / "crop" / cropping.PARAMETERS_FILE
    parameters.write_text("animal\\a.png\n10 40 20 60\n0 40 20 60\n"
                          "people\\b.png\n20 80 10 30\n20 80 0 40\n")
    return cropping.load_cropping_dataset(parameters, tmp_path / "crop")


def test_table_3_overlap_and_boundary_displacement_by_hand(tmp_path):
    records = _cropping_set(tmp_path)
    results = evaluation.evaluate_enhancegan(BoxEnhancer(), cropping_records=records)
    rows = {row["name"]: row["metrics"] for row in results["rows"]}
    assert list(results["metrics"]) == ["overlap_1", "bde_1", "overlap_2", "bde_2"]
    # Photo a (60 x 80): box rows 10..40, cols 20..60. Photographer 1 is that box; photographer 2
    # (0..40, 20..60): IoU 1200 / 1600, BDE (10 / 60) / 4. The whole photo: IoU 1200 / 4800 and
    # ((20 + 20) / 80 + (10 + 20) / 60) / 4 against 1; 1600 / 4800 and (40 / 80 + 20 / 60) / 4
    # against 2. Photo b (120 x 40): box rows 20..80, cols 10..30: photographer 1 exactly;
    # photographer 2 (cols 0..40): IoU 0.5, BDE (20 / 40) / 4; the whole photo: IoU 0.25 and
    # (20 / 40 + 60 / 120) / 4, IoU 0.5 and (60 / 120) / 4.
    expected = {
        "output": {"overlap_1": 1.0, "bde_1": 0.0, "overlap_2": (0.75 + 0.5) / 2,
                   "bde_2": (1 / 24 + 1 / 8) / 2},
        "input": {"overlap_1": 0.25, "bde_1": 0.25, "overlap_2": (1 / 3 + 0.5) / 2,
                  "bde_2": (5 / 24 + 1 / 8) / 2},
    }
    for name, figures in expected.items():
        assert rows[name] == pytest.approx(figures, abs=1e-12), name
    assert results["num_images_per_metric"]["overlap_2"] == 2
    assert results["notes"] == ["Table 3 (output; average overlap ratio, boundary displacement "
                                "error in parentheses): Photographer1 1.000 (0.000), "
                                "Photographer2 0.625 (0.083)"]


def _demo_records(tmp_path):
    """Two demo-like test records: degraded = clean darkened, subject box recorded."""
    records = []
    for k in range(2):
        clean = photo((40, 40), seed=10 + k)
        records.append({
            "degraded": _save(clean * 0.7, tmp_path / "demo" / f"test_{k}.png"),
            "clean": _save(clean, tmp_path / "demo" / "clean" / f"test_{k}.png"),
            "box": [4, 24, 8, 32]})
    return records


def test_demo_psnr_within_the_box_and_crop_iou(tmp_path):
    records = _demo_records(tmp_path)
    enhancer = BoxEnhancer(gain=1.3)
    results = evaluation.evaluate_enhancegan(enhancer, demo_test=records)
    rows = {row["name"]: row["metrics"] for row in results["rows"]}
    assert list(results["metrics"]) == ["psnr", "crop_iou"]

    def psnr(a, b):
        return 10 * np.log10(1.0 / np.mean((np.asarray(a, np.float64) - b) ** 2))

    degraded = [_read(r["degraded"]) for r in records]
    clean = [_read(r["clean"]) for r in records]
    assert rows["input"]["psnr"] == pytest.approx(
        np.mean([psnr(d, c) for d, c in zip(degraded, clean)]), rel=1e-9)
    # The box of a 40 x 40 image is rows 6..26, cols 10..30.
    assert rows["output"]["psnr"] == pytest.approx(np.mean([
        psnr(np.clip(d[6:26, 10:30] * 1.3, 0, 1), c[6:26, 10:30])
        for d, c in zip(degraded, clean)]), rel=1e-6)
    assert rows["output"]["psnr"] > rows["input"]["psnr"]
    # Subject rows 4..24, cols 8..32 (480 px); box 400 px, overlap rows 6..24, cols 10..30.
    assert rows["output"]["crop_iou"] == pytest.approx(360 / (480 + 400 - 360))
    assert rows["input"]["crop_iou"] == pytest.approx(480 / 1600)


def test_identical_output_is_a_null_psnr_in_strict_json(tmp_path):
    records = _demo_records(tmp_path)

    def restore(image):  # knows the originals: the output IS the clean image
        index = [np.array_equal(to_uint8(image), load_rgb8(r["degraded"]))
                 for r in records].index(True)
        return {"image": _read(records[index]["clean"]), "box": [0, 0, 40, 40]}

    results = evaluation.evaluate_enhancegan(restore, demo_test=records)
    path = tmp_path / "eval.json"
    report.write_report(path, results)
    written = strict_load(path)
    assert written["rows"][1]["metrics"]["psnr"] is None
    assert written["rows"][1]["metrics"]["crop_iou"] == pytest.approx(480 / 1600)
    assert {"at": "rows/1/metrics/psnr", "value": "inf"} in written["non_finite"]


def test_the_real_demo_set_and_figures(enhancer, tmp_path):
    built = enhancegan_demo.build_enhancegan_demo(tmp_path / "demo", image_size=32, test_size=40,
                                                  num_good=1, num_bad=1, num_test=3)
    records = enhancegan_demo.demo_test_images(built.root)
    photos = [_save(photo((36, 50), seed=3), tmp_path / "val" / "v.png")]
    out = tmp_path / "eval"
    results = evaluation.evaluate_enhancegan(
        enhancer, images=photos, demo_test=records, cropping_records=_cropping_set(tmp_path),
        output_dir=out, save_images=3, extras={"stage": "crop"})
    assert results["stage"] == "crop"
    assert results["num_images"] == 1 + 3 + 2
    assert results["num_images_per_set"] == {"images": 1, "demo_test": 3, "cropping": 2}
    rows = {row["name"]: row["metrics"] for row in results["rows"]}
    # The input's figures need no enhancer: PSNR of the files, the subject's share of the image.
    psnrs = [10 * np.log10(1 / np.mean((_read(r["degraded"]).astype(np.float64)
                                        - _read(r["clean"])) ** 2)) for r in records]
    assert rows["input"]["psnr"] == pytest.approx(np.mean(psnrs))
    shares = [(r["box"][1] - r["box"][0]) * (r["box"][3] - r["box"][2]) / 40 ** 2
              for r in records]
    assert rows["input"]["crop_iou"] == pytest.approx(np.mean(shares))
    assert 0 <= rows["output"]["crop_iou"] <= 1

    # Three examples: the folder's photo, then the first two demo images.
    examples, attention = results["figures"]["examples"], results["figures"]["attention"]
    assert [os.path.basename(p) for p in examples] == ["00_v.png", "01_test_0000.png",
                                                       "02_test_0001.png"]
    assert [os.path.relpath(p, out) for p in attention] == [
        os.path.join("attention", os.path.basename(p)) for p in examples]
    source = _read(photos[0])
    first = enhancer(source)
    top, left, height, width = first["box"].numpy()
    picture = np.asarray(Image.open(examples[0]))
    gap = 4
    band = picture.shape[0] - 36
    assert picture.shape == (36 + band, 50 + gap + width, 3)
    assert tuple(picture[band + top, left + 2]) == evaluation.PREDICTED_COLOUR  # the box
    np.testing.assert_array_equal(picture[band:band + height, 50 + gap:],
                                  to_uint8(first["image"].numpy()))
    assert np.all(picture[band + height:, 50 + gap:] == 255)  # white below the output
    overlay = np.asarray(Image.open(attention[0]))
    band = overlay.shape[0] - 36  # the names' band (its font fits the names)
    assert overlay.shape[1] == 3 * 50 + 2 * gap  # input, color, crop
    np.testing.assert_array_equal(
        overlay[band:, 2 * (50 + gap):],
        evaluation.attention_overlay(source, first["crop_attention"].numpy()))
    report.write_report(out / "eval.json", results)
    assert strict_load(out / "eval.json")["figures"]["examples"] == examples


def test_attention_overlay_by_hand():
    grey = np.full((4, 4, 3), 0.2, np.float32)
    one_hot = np.zeros((2, 2), np.float32)
    one_hot[0, 0] = 0.7
    overlay = evaluation.attention_overlay(grey, one_hot)
    assert overlay.dtype == np.uint8 and overlay.shape == (4, 4, 3)
    # jet(1) is dark red (0.5, 0, 0), jet(0) dark blue (0, 0, 0.5); half and half with grey 0.2.
    assert tuple(overlay[0, 0]) == (89, 26, 26)
    assert tuple(overlay[3, 3]) == (26, 26, 89)
    # 2 -> 4 bilinear with half-pixel centres: weights 1, 0.75, 0.25, 0 along each axis.
    from matplotlib import colormaps
    weights = np.outer([1, 0.75, 0.25, 0], [1, 0.75, 0.25, 0])
    expected = to_uint8(0.5 * 0.2 + 0.5 * colormaps["jet"](weights)[..., :3])
    np.testing.assert_array_equal(overlay, expected)
    flat = evaluation.attention_overlay(to_uint8(grey), np.full((1, 7, 7), 1 / 49))
    assert np.all(flat == (89, 26, 26))
    assert np.all(evaluation.attention_overlay(grey, np.zeros((7, 7))) == (26, 26, 89))
    with pytest.raises(ValueError, match="attention map"):
        evaluation.attention_overlay(grey, np.zeros((2, 7, 7)))
    with pytest.raises(ValueError, match="photo"):
        evaluation.attention_overlay(grey[..., 0], one_hot)


def test_draw_box_by_hand():
    image = np.zeros((6, 8, 3), np.uint8)
    drawn = evaluation.draw_box(image, (1, 2, 4, 5), colour=(9, 9, 9), width=1)
    mask = drawn[..., 0] == 9
    expected = np.zeros((6, 8), bool)
    expected[1, 2:7] = expected[4, 2:7] = expected[1:5, 2] = expected[1:5, 6] = True
    np.testing.assert_array_equal(mask, expected)
    assert not image.any()  # a copy
    assert evaluation.box_corners((1, 2, 4, 5)) == (1, 5, 2, 7)
