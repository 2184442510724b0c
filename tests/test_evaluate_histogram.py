"""tools.evaluate: EXPOSURE's histogram intersection (PIEA section 4.2, Table 1).

References: colorsys for the HLS saturation, direct NumPy for the patch statistics, a
repeat-then-block-mean construction and Pillow's BOX filter for the area downscaling, a recorded
random generator for the crop protocol, and sets of constant images whose histograms are worked
out by hand.
"""
import colorsys

import numpy as np
import pytest
from PIL import Image

from datasets.images import to_uint8
from tools import evaluate


@pytest.fixture
def rng():
    return np.random.default_rng(7)


def _constant(value, shape=(80, 80)):
    return np.broadcast_to(np.asarray(value, np.float64), shape + (3,)).copy()


def _checkerboard(low, high, block=2, size=160):
    """size x size grey checkerboard of block x block squares: low at (0, 0)."""
    y, x = np.mgrid[:size, :size]
    board = np.where((y // block + x // block) % 2 == 0, low, high).astype(np.float64)
    return np.repeat(board[..., None], 3, axis=2)


# --------------------------------------------------------------------------- per pixel, per patch


def test_hls_saturation_matches_colorsys(rng):
    pixels = rng.random((500, 3))
    # Edge cases: greys (s = 0), black, white, l exactly 0.5 (the second formula), pure colours.
    pixels = np.concatenate([pixels, [
        [0.3, 0.3, 0.3], [0, 0, 0], [1, 1, 1], [1, 0, 0], [0.75, 0.25, 0.5], [0.2, 0.8, 0.8],
        [0, 1, 1], [0.5, 0.5, 1.0],
    ]])
    expected = [colorsys.rgb_to_hls(*p)[2] for p in pixels]
    np.testing.assert_allclose(evaluate.hls_saturation(pixels), expected, rtol=0, atol=1e-12)
    # Any leading shape; uint8 read as v / 255.
    image = rng.integers(0, 256, (5, 7, 3), dtype=np.uint8)
    expected = [[colorsys.rgb_to_hls(*(p / 255.0))[2] for p in row] for row in image]
    assert evaluate.hls_saturation(image).shape == (5, 7)
    np.testing.assert_allclose(evaluate.hls_saturation(image), expected, rtol=0, atol=1e-12)
    with pytest.raises(ValueError, match="3"):
        evaluate.hls_saturation(np.zeros((4, 4)))


def test_patch_statistics_match_numpy(rng):
    patch = rng.random((64, 64, 3)) * 1.4 - 0.2  # some values outside [0, 1]: clipped first
    clipped = np.clip(patch, 0, 1)
    r, g, b = clipped[..., 0], clipped[..., 1], clipped[..., 2]
    luminance = 0.27 * r + 0.67 * g + 0.06 * b
    std = np.sqrt(np.mean((luminance - luminance.mean()) ** 2))
    saturation = np.mean([colorsys.rgb_to_hls(*p)[2] for p in clipped.reshape(-1, 3)])
    lum, contrast, sat = evaluate.patch_statistics(patch)
    assert lum == pytest.approx(luminance.mean(), abs=1e-12)
    assert contrast == pytest.approx(2 * std, abs=1e-12)
    assert sat == pytest.approx(saturation, abs=1e-12)
    assert all(isinstance(v, float) for v in (lum, contrast, sat))


def test_patch_statistics_hand_worked():
    # Pure red: luminance 0.27, no contrast, saturation 1.
    assert evaluate.patch_statistics(_constant([1, 0, 0], (64, 64))) == pytest.approx(
        (0.27, 0.0, 1.0), abs=1e-12)
    # Half black, half (0.5, 0.5, 0.5): luminance 0 or 0.5 -> mean 0.25, std 0.25, contrast 0.5.
    patch = np.zeros((64, 64, 3))
    patch[:, 32:] = 0.5
    assert evaluate.patch_statistics(patch) == pytest.approx((0.25, 0.5, 0.0), abs=1e-12)


# --------------------------------------------------------------------------- area downscaling


def _area_reference(image, size):
    """Area average by construction: along each axis, repeat every pixel `size` times (the line
    is then n * size long) and average consecutive groups of n, one group per output pixel."""
    for axis in (0, 1):
        image = np.moveaxis(image, axis, 0)
        n = image.shape[0]
        image = np.repeat(image, size, axis=0).reshape((size, n) + image.shape[1:]).mean(axis=1)
        image = np.moveaxis(image, 0, axis)
    return image


def test_area_downscale_of_2x2_blocks_gives_the_block_means(rng):
    blocks = rng.random((80, 80, 3))
    image = np.repeat(np.repeat(blocks, 2, axis=0), 2, axis=1)  # 160 x 160 of 2 x 2 blocks
    image = image + np.tile([[0.01, -0.01], [-0.02, 0.02]], (80, 80))[..., None]
    # Each 2 x 2 block holds its value plus +0.01, -0.01, -0.02, +0.02: the mean is the value.
    np.testing.assert_allclose(evaluate.area_downscale(image), blocks, rtol=0, atol=1e-12)
    # Pillow's BOX filter is the same area average when the ratio is an integer.
    pillow = np.stack([
        np.asarray(Image.fromarray(image[..., c].astype(np.float32), "F").resize(
            (80, 80), Image.Resampling.BOX)) for c in range(3)], axis=-1)
    np.testing.assert_allclose(evaluate.area_downscale(image), pillow, rtol=0, atol=1e-5)


@pytest.mark.parametrize("shape", [(120, 120), (100, 100), (150, 333), (97, 130)])
def test_area_downscale_non_integer_ratios(rng, shape):
    image = rng.random(shape + (3,))
    np.testing.assert_allclose(evaluate.area_downscale(image), _area_reference(image, 80),
                               rtol=0, atol=1e-12)


def test_area_downscale_hand_worked():
    # 3 -> 2 pixels: each output pixel covers 1.5 source pixels: (a + b / 2) / 1.5, (b / 2 + c) / 1.5.
    row = np.array([[0.0, 0.3, 0.9]])[..., None]
    image = np.repeat(np.repeat(row, 3, axis=0), 3, axis=2)  # 3 x 3, rows identical
    expected = [(0.0 + 0.15) / 1.5, (0.15 + 0.9) / 1.5]
    np.testing.assert_allclose(evaluate.area_downscale(image, size=2)[..., 0],
                               [expected, expected], rtol=0, atol=1e-12)


# --------------------------------------------------------------------------- patches


class _RecordingRng:
    """A np.random.Generator that records every `integers(low, high)` call."""

    def __init__(self, seed):
        self.rng = np.random.default_rng(seed)
        self.calls = []

    def integers(self, low, high):
        value = self.rng.integers(low, high)
        self.calls.append((low, high, int(value)))
        return value


@pytest.mark.parametrize("shape", [(100, 150), (150, 100), (90, 90)])
def test_histogram_patches_follow_the_protocol(rng, shape):
    image = rng.random(shape + (3,))
    recorder = _RecordingRng(5)
    patches = evaluate.histogram_patches(image, recorder)
    assert patches.shape == (16, 64, 64, 3) and patches.dtype == np.float64
    side = min(shape)
    # Per square crop: row and column offsets (inclusive ranges 0..h - side, 0..w - side), then
    # four 64 x 64 crops at offsets in 0..15.
    assert len(recorder.calls) == 4 * (2 + 4 * 2)
    calls = iter(recorder.calls)
    expected = []
    for _ in range(4):
        (lo_y, hi_y, y), (lo_x, hi_x, x) = next(calls), next(calls)
        assert (lo_y, hi_y, lo_x, hi_x) == (0, shape[0] - side + 1, 0, shape[1] - side + 1)
        small = _area_reference(image[y:y + side, x:x + side], 80)
        for _ in range(4):
            (lo, hi, yy), (lo2, hi2, xx) = next(calls), next(calls)
            assert (lo, hi, lo2, hi2) == (0, 16, 0, 16)
            expected.append(small[yy:yy + 64, xx:xx + 64])
    np.testing.assert_allclose(patches, expected, rtol=0, atol=1e-12)


def test_histogram_patches_cover_every_offset():
    # 80 x 83: the square crop starts at column 0..3; the patches at 0..15 within it.
    image = np.zeros((80, 83, 3))
    recorder = _RecordingRng(0)
    for _ in range(100):
        evaluate.histogram_patches(image, recorder)
    square = {value for low, high, value in recorder.calls if high == 4}
    inner = {value for low, high, value in recorder.calls if high == 16}
    assert square == {0, 1, 2, 3} and inner == set(range(16))


def test_histogram_patches_of_a_checkerboard(rng):
    # 2 x 2 blocks of 0 and 0.5 at 160 x 160 -> a one-pixel checkerboard at 80 x 80: every 64 x 64
    # patch is half 0, half 0.5 -> luminance 0.25, contrast 0.5, saturation 0.
    patches = evaluate.histogram_patches(_checkerboard(0.0, 0.5), rng)
    for patch in patches:
        assert sorted(np.unique(patch)) == [0.0, 0.5]
        assert evaluate.patch_statistics(patch) == pytest.approx((0.25, 0.5, 0.0), abs=1e-12)


def test_histogram_patches_need_80_pixels(rng):
    with pytest.raises(ValueError, match=r"80 x 80.*\(79, 200, 3\)"):
        evaluate.histogram_patches(np.zeros((79, 200, 3)), rng)
    assert evaluate.histogram_patches(np.zeros((80, 80, 3), np.uint8), rng).shape == (16, 64, 64, 3)


# --------------------------------------------------------------------------- intersections


def test_histogram_intersections_hand_worked():
    # Outputs (2 images, 32 patches): grey 0.5 (non-square) and the 0 / 0.5 checkerboard.
    #   luminance: 0.5 -> bin 16 (half the patches), 0.25 -> bin 8 (half)
    #   contrast:  0 -> bin 0 (half), 0.5 -> bin 16 (half);  saturation: 0 -> bin 0 (all)
    outputs = [_constant(0.5, (100, 80)), _checkerboard(0.0, 0.5)]
    # References (4 images, 64 patches): grey 0.5, pure red, grey 0.9 twice.
    #   luminance: bin 16 1/4, bin 8 1/4 (red: 0.27 * 32 = 8.64), bin 28 1/2 (0.9 * 32 = 28.8)
    #   contrast:  bin 0 (all);  saturation: bin 0 3/4, bin 31 1/4 (red: 1, in the last bin)
    references = [_constant(0.5), _constant([1.0, 0.0, 0.0], (90, 120)), _constant(0.9),
                  _constant(0.9, (81, 95))]
    result = evaluate.histogram_intersections(outputs, references, seed=3)
    assert set(result) == {"luminance", "contrast", "saturation"}
    assert result["luminance"] == pytest.approx(0.25 + 0.25, abs=1e-12)
    assert result["contrast"] == pytest.approx(0.5, abs=1e-12)
    assert result["saturation"] == pytest.approx(0.75, abs=1e-12)
    # It is symmetric, and the statistics of each set are what the comments say.
    assert evaluate.histogram_intersections(references, outputs, seed=3) == pytest.approx(result)
    statistics = evaluate.histogram_statistics(references, seed=3)
    assert statistics.shape == (64, 3)
    np.testing.assert_allclose(statistics[16:32], [[0.27, 0.0, 1.0]] * 16, atol=1e-12)


def test_identical_sets_give_one_disjoint_ones_zero(rng):
    images = [rng.random((90, 120, 3)), rng.random((100, 80, 3)) ** 3, rng.random((85, 85, 3))]
    assert evaluate.histogram_intersections(images, images) == {
        "luminance": 1.0, "contrast": 1.0, "saturation": 1.0}
    # uint8 images are read as v / 255.
    pixels = [to_uint8(image) for image in images]
    as_float = [p / 255.0 for p in pixels]
    assert evaluate.histogram_intersections(pixels, iter(as_float)) == {
        "luminance": 1.0, "contrast": 1.0, "saturation": 1.0}
    # Dark grey against yellow (luminance 0.885, saturation 1) and a 0.2 / 0.8 checkerboard
    # (luminance 0.5, contrast 0.6): no luminance in common; half the references share the
    # grey's saturation 0, the other half its contrast 0.
    dark, bright = [_constant(0.1)], [_constant([1.0, 0.9, 0.2]), _checkerboard(0.2, 0.8)]
    assert evaluate.histogram_intersections(dark, bright) == pytest.approx(
        {"luminance": 0.0, "contrast": 0.5, "saturation": 0.5}, abs=1e-12)


def test_histogram_intersections_are_reproducible(rng):
    outputs = [rng.random((90, 140, 3)) ** 2 for _ in range(3)]
    references = [rng.random((120, 90, 3)) for _ in range(2)]
    first = evaluate.histogram_intersections(outputs, references, seed=11)
    assert evaluate.histogram_intersections(outputs, references, seed=11) == first
    assert all(0.0 <= value <= 1.0 for value in first.values())
    # The seed chooses the crops: same seed, same statistics; another seed, other ones.
    a = evaluate.histogram_statistics(outputs, seed=11)
    np.testing.assert_array_equal(a, evaluate.histogram_statistics(outputs, seed=11))
    assert not np.array_equal(a, evaluate.histogram_statistics(outputs, seed=12))
    # The statistics are those of histogram_patches with default_rng(seed), image after image.
    generator = np.random.default_rng(11)
    expected = [evaluate.patch_statistics(p) for image in outputs
                for p in evaluate.histogram_patches(image, generator)]
    np.testing.assert_array_equal(a, expected)
    # and the intersection is the sum of bin-wise minima of the normalised 32-bin histograms.
    b = evaluate.histogram_statistics(references, seed=11)
    for k, name in enumerate(("luminance", "contrast", "saturation")):
        ha = np.histogram(a[:, k], bins=32, range=(0, 1))[0] / len(a)
        hb = np.histogram(b[:, k], bins=32, range=(0, 1))[0] / len(b)
        assert first[name] == pytest.approx(np.minimum(ha, hb).sum(), abs=1e-12)


def test_histogram_intersections_errors():
    with pytest.raises(ValueError, match="no output images"):
        evaluate.histogram_intersections([], [_constant(0.5)])
    with pytest.raises(ValueError, match="no reference images"):
        evaluate.histogram_intersections([_constant(0.5)], [])
    with pytest.raises(ValueError, match="80"):
        evaluate.histogram_intersections([_constant(0.5, (60, 90))], [_constant(0.5)])
    with pytest.raises(ValueError, match=r"\(n, 3\)"):
        evaluate.intersect_statistics(np.zeros((4, 2)), np.zeros((4, 3)))
