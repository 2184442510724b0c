"""datasets.can_demo: the local tone operator and the embedded CAN demo set."""
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
    expected = math.log(1 + 3 * value) / math.log(4)  # T(c) = ln(1 + 3 c) / ln 4, by hand
    np.testing.assert_allclose(can_demo.local_tone_operator(image), expected, atol=1e-5)


def test_operator_keeps_colour_ratios_on_a_constant_colour():
    rgb = np.array([0.3, 0.2, 0.1])
    luminance = 0.2126 * 0.3 + 0.7152 * 0.2 + 0.0722 * 0.1
    expected = rgb * (math.log(1 + 3 * luminance) / math.log(4)) / luminance
    out = can_demo.local_tone_operator(np.broadcast_to(rgb, (8, 8, 3)))
    np.testing.assert_allclose(out, np.broadcast_to(expected, (8, 8, 3)), atol=1e-5)


def test_operator_boosts_detail_against_an_independent_blur():
    # A vertical step: an independent Gaussian blur (skimage) gives the base; the output is
    # T(base) + 1.5 (L - base) on grey pixels.
    from skimage.filters import gaussian
    image = np.full((20, 50, 3), 0.2)
    image[:, 25:] = 0.6
    base = gaussian(image[..., 0], sigma=0.04 * 50, mode="reflect", truncate=4.0,
                    preserve_range=True)
    expected = np.clip(np.log1p(3 * base) / np.log(4) + 1.5 * (image[..., 0] - base), 0, 1)
    out = can_demo.local_tone_operator(image)
    np.testing.assert_allclose(out[..., 1], expected, atol=1e-4)
    # The step is steeper than the tone curve alone would make it (detail boost).
    assert out[0, 25, 0] - out[0, 24, 0] > can_demo.tone_curve(0.6) - can_demo.tone_curve(0.2)


def test_operator_is_deterministic_bounded_and_lifts_shadows():
    rng = np.random.default_rng(0)
    image = rng.uniform(0, 1, (24, 40, 3)).astype(np.float32)
    out = can_demo.local_tone_operator(image)
    assert out.dtype == np.float32 and out.shape == image.shape
    np.testing.assert_array_equal(out, can_demo.local_tone_operator(image.copy()))
    assert out.min() >= 0 and out.max() <= 1
    dark = image * 0.15
    lifted = can_demo.local_tone_operator(dark)
    assert lifted.mean() > 1.5 * dark.mean()
    np.testing.assert_allclose(can_demo.local_tone_operator((dark * 255).astype(np.uint8)),
                               can_demo.local_tone_operator((dark * 255).astype(np.uint8) / 255),
                               atol=1e-6)
    with pytest.raises(ValueError, match="RGB"):
        can_demo.local_tone_operator(np.zeros((4, 4)))


# --------------------------------------------------------------------------- demo set


def test_layout_and_split_files(built):
    assert built.input_dir == os.path.join(built.root, "input")
    stems = [f"train_{i:04d}" for i in range(N_TRAIN)]
    assert fivek.read_split_file(built.train_list) == stems
    assert fivek.read_split_file(built.test_list) == list(can_demo.TEST_STEMS)
    for stem in stems:
        x = load_rgb8(os.path.join(built.input_dir, f"{stem}.png"))
        y = load_rgb8(os.path.join(built.reference_dir, f"{stem}.png"))
        assert x.shape == y.shape == SIZE + (3,)
        np.testing.assert_array_equal(
            y, to_uint8(can_demo.local_tone_operator(x), input_precision=True))
    manifest = json.loads(open(os.path.join(built.root, can_demo.MANIFEST)).read())
    assert manifest["num_train"] == N_TRAIN and manifest["train_size"] == list(SIZE)
    assert set(manifest["train_crop_photos"]) <= set(can_demo.TRAIN_PHOTOS)
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
    from skimage import data
    np.testing.assert_array_equal(load_rgb8(os.path.join(built.input_dir, "test_coffee.png")),
                                  data.coffee())


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
