"""datasets.can_demo: the tone operator, the exposures and the embedded CAN demo set."""
import json
import math
import os

import numpy as np
import pytest

from datasets import can_demo, fivek, paired
from datasets.images import load_rgb8, to_uint8

SIZE = (32, 48)
N_TRAIN = 6


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    root = tmp_path_factory.mktemp("can_demo")
    return can_demo.build_can_demo(root, num_train=N_TRAIN, train_size=SIZE, seed=0)


# --------------------------------------------------------------------------- operator


@pytest.mark.parametrize("value", [0.02, 0.1, 0.5, 0.9, 1.0])
def test_operator_on_constant_grey_is_the_tone_curve(value):
    image = np.full((10, 14, 3), value, np.float32)
    # T(v) = ln(1 + 2 v) / ln 3 - 0.08 v^4, by hand
    expected = math.log(1 + 2 * value) / math.log(3) - 0.08 * value ** 4
    np.testing.assert_allclose(can_demo.tone_operator(image), expected, atol=1e-5)


def test_operator_scales_a_colour_by_the_curve_of_its_brightest_channel():
    rgb = np.array([0.3, 0.2, 0.1])
    expected = rgb * (math.log(1 + 2 * 0.3) / math.log(3) - 0.08 * 0.3 ** 4) / 0.3
    out = can_demo.tone_operator(np.broadcast_to(rgb, (8, 8, 3)))
    np.testing.assert_allclose(out, np.broadcast_to(expected, (8, 8, 3)), atol=1e-5)


def test_the_curve_lifts_shadows_holds_highlights_back_and_increases():
    v = np.linspace(0.0, 1.0, 10001)
    curve = can_demo.tone_curve(v)
    assert curve[0] == 0 and abs(curve[-1] - 0.92) < 1e-12
    assert (np.diff(curve) > 0).all()
    assert (curve[(v > 0) & (v <= 0.87)] > v[(v > 0) & (v <= 0.87)]).all()  # lifted
    assert (curve[v >= 0.88] < v[v >= 0.88]).all()  # held back


def test_operator_adds_no_white_and_is_deterministic():
    rng = np.random.default_rng(0)
    image = rng.uniform(0, 1, (24, 40, 3)).astype(np.float32)
    image[0, 0] = (1.0, 0.2, 0.1)  # a saturated red at white: scaled by T(1) = 0.92
    out = can_demo.tone_operator(image)
    assert out.dtype == np.float32 and out.shape == image.shape
    np.testing.assert_array_equal(out, can_demo.tone_operator(image.copy()))
    np.testing.assert_allclose(out[0, 0], 0.92 * image[0, 0], atol=1e-6)
    assert out.max() <= 0.92 + 1e-6
    below = image.max(axis=2) <= 0.87
    assert (out[below] >= image[below] - 1e-6).all()  # it never darkens below the shoulder
    dark = image * 0.15
    assert can_demo.tone_operator(dark).mean() > 1.5 * dark.mean()
    pixels = (dark * 255).astype(np.uint8)
    np.testing.assert_allclose(can_demo.tone_operator(pixels),
                               can_demo.tone_operator(pixels / 255.0), atol=1e-6)
    with pytest.raises(ValueError, match="RGB"):
        can_demo.tone_operator(np.zeros((4, 4)))


def test_expose_by_hand():
    # clip(x 2^e, 0, 1), by hand, on a few values.
    image = np.array([[[0.0, 0.25, 0.5], [0.6, 0.9, 1.0]]])
    np.testing.assert_allclose(can_demo.expose(image, -1.0), image / 2)
    np.testing.assert_allclose(can_demo.expose(image, 0.5), np.minimum(image * 2 ** 0.5, 1))
    assert can_demo.expose(image, 0.5)[0, 1, 1] == 1.0  # clipped
    np.testing.assert_array_equal(can_demo.expose(image, 0.0), image)  # the identity
    pixels = (image * 255).astype(np.uint8)
    np.testing.assert_allclose(can_demo.expose(pixels, -0.5), can_demo.expose(pixels / 255.0, -0.5))


def test_expose_keeps_greys_grey_and_colour_ratios():
    rgb = np.array([0.6, 0.3, 0.15])
    out = can_demo.expose(np.broadcast_to(rgb, (4, 4, 3)), -0.7)
    np.testing.assert_allclose(out / out[..., :1], np.broadcast_to(rgb / rgb[0], (4, 4, 3)))


def test_the_heldout_degradation_is_the_darkest_demo_input():
    from datasets import heldout
    image = np.random.default_rng(0).integers(0, 256, (8, 8, 3), dtype=np.uint8)
    np.testing.assert_array_equal(
        heldout.degrade(image, "can"),
        to_uint8(can_demo.expose(image, can_demo.EXPOSURE_STOPS[0]), input_precision=True))


# --------------------------------------------------------------------------- demo set


def test_layout_and_split_files(built):
    assert built.input_dir == os.path.join(built.root, "input")
    stems = [f"train_{i:04d}" for i in range(N_TRAIN)]
    assert fivek.read_split_file(built.train_list) == stems
    assert fivek.read_split_file(built.test_list) == list(can_demo.TEST_STEMS)
    manifest = json.loads(open(os.path.join(built.root, can_demo.MANIFEST)).read())
    assert manifest["num_train"] == N_TRAIN and manifest["train_size"] == list(SIZE)
    assert {crop["photo"] for crop in manifest["train_crops"]} <= set(can_demo.TRAIN_PHOTOS)
    for stem, crop in zip(stems, manifest["train_crops"]):
        x = load_rgb8(os.path.join(built.input_dir, f"{stem}.png"))
        y = load_rgb8(os.path.join(built.reference_dir, f"{stem}.png"))
        assert x.shape == y.shape == SIZE + (3,)
        np.testing.assert_array_equal(
            y, to_uint8(can_demo.tone_operator(x), input_precision=True))
        assert -1.0 <= crop["stops"] <= 0.5, crop


def test_half_the_inputs_keep_their_exposure_and_colours_come_in_every_order(tmp_path):
    """IDENTITY_FRACTION of the inputs are crops as the photo was exposed, the rest are
    exposed by -1 to +0.5 stops. The channels are shuffled: crops of one photo come in
    several channel orders."""
    built = can_demo.build_can_demo(tmp_path, num_train=80, train_size=(16, 16), seed=0)
    crops = json.loads(open(os.path.join(built.root, can_demo.MANIFEST)).read())["train_crops"]
    identity = [c["stops"] == 0.0 for c in crops]
    assert 0.35 < np.mean(identity) < 0.65, np.mean(identity)
    stops = [c["stops"] for c, same in zip(crops, identity) if not same]
    assert min(stops) < -0.8 and max(stops) > 0.3 and max(stops) <= 0.5
    saturations = [c["saturation"] for c in crops]
    assert min(saturations) >= 0.8 and max(saturations) <= 2.0
    assert min(saturations) < 0.9 and max(saturations) > 1.8
    # The rocket's sky is blue: its crops' brightest mean channel is not always the third.
    brightest = {int(np.argmax(load_rgb8(os.path.join(built.input_dir, f"train_{i:04d}.png"))
                               .reshape(-1, 3).mean(axis=0)))
                 for i, c in enumerate(crops) if c["photo"] == "rocket"}
    assert len(brightest) >= 2, brightest
    assert not set(can_demo.TRAIN_PHOTOS) & set(can_demo.TEST_PHOTOS)


def test_readable_by_paired(built):
    pairs, missing = paired.collect_pairs(input_dir=built.input_dir,
                                          reference_dir=built.reference_dir)
    assert missing == [] and len(pairs) == N_TRAIN + 3
    train, test = paired.split_pairs(pairs, train_list=built.train_list,
                                     test_list=built.test_list)
    assert len(train) == N_TRAIN and not {p[0] for p in train} & {p[0] for p in test}
    # The held-out photos, at full size: astronaut 512x512, coffee 400x600, chelsea 300x451.
    assert [os.path.basename(p[0]) for p in test] == [
        "test_astronaut.png", "test_chelsea.png", "test_coffee.png"]
    shapes = {os.path.basename(a): paired.load_test_pair(a, b)[0].shape for a, b in test}
    assert shapes == {"test_astronaut.png": (512, 512, 3), "test_coffee.png": (400, 600, 3),
                      "test_chelsea.png": (300, 451, 3)}
    # The test inputs: each photo through `expose` with TEST_EXPOSURES (coffee is the second).
    from skimage import data
    np.testing.assert_array_equal(
        load_rgb8(os.path.join(built.input_dir, "test_coffee.png")),
        to_uint8(can_demo.expose(data.coffee(), can_demo.TEST_EXPOSURES[1]),
                 input_precision=True))


def test_deterministic_and_rebuild_skipped(built, tmp_path):
    # Complete with the same parameters: nothing is rewritten.
    mtimes = {name: os.stat(os.path.join(built.input_dir, name)).st_mtime_ns
              for name in os.listdir(built.input_dir)}
    assert can_demo.build_can_demo(built.root, num_train=N_TRAIN, train_size=SIZE) == built
    assert mtimes == {name: os.stat(os.path.join(built.input_dir, name)).st_mtime_ns
                      for name in os.listdir(built.input_dir)}
    # Another seed gives other crops; a smaller build removes the extra training files; the
    # first crops do not depend on num_train.
    other = can_demo.build_can_demo(tmp_path, num_train=N_TRAIN, train_size=SIZE, seed=1)
    first = load_rgb8(os.path.join(built.input_dir, "train_0000.png"))
    assert not np.array_equal(first, load_rgb8(os.path.join(other.input_dir, "train_0000.png")))
    smaller = can_demo.build_can_demo(tmp_path, num_train=2, train_size=SIZE, seed=0)
    assert sorted(n for n in os.listdir(smaller.input_dir) if n.startswith("train")) == [
        "train_0000.png", "train_0001.png"]
    np.testing.assert_array_equal(
        first, load_rgb8(os.path.join(smaller.input_dir, "train_0000.png")))
    # An incomplete set (a file gone) is rebuilt.
    os.remove(os.path.join(smaller.reference_dir, "train_0001.png"))
    can_demo.build_can_demo(tmp_path, num_train=2, train_size=SIZE, seed=0)
    assert os.path.exists(os.path.join(smaller.reference_dir, "train_0001.png"))
    with pytest.raises(ValueError, match="train_size"):
        can_demo.build_can_demo(tmp_path, train_size=(8, 8))
