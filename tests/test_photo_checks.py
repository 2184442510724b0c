"""tools.photo_checks.damage: the rules every enhancer's output must keep, against NumPy
computations written out here, on a crop of a held-out photo (no demo set uses it)."""
import numpy as np
import pytest

from datasets import heldout
from tools import photo_checks

LUMA = np.array([0.27, 0.67, 0.06])  # datasets.images.LUMINANCE_WEIGHTS (EXPOSURE's), written out


@pytest.fixture(scope="module")
def photo():
    return heldout.load_photo("china")[100:164, 200:280]  # 64 x 80, sky, roof and trees


def _u8(x):
    return np.rint(np.clip(x, 0.0, 1.0) * 255.0).astype(np.uint8)


def test_an_unchanged_or_gently_edited_photo_passes(photo):
    x = photo / 255.0
    assert photo_checks.damage(photo, photo) == []
    assert photo_checks.damage(photo, _u8(0.1 + 0.8 * x)) == []  # lower contrast
    assert photo_checks.damage(photo, _u8(x ** 0.9)) == []  # a little brighter


def test_blown_highlights_are_named_with_the_fraction_clipped(photo):
    bright = _u8(photo / 255.0 + 0.3)  # an offset: clips, adds no detail
    newly = np.mean(((bright == 0) & (photo > 2)) | ((bright == 255) & (photo < 253)))
    assert newly > 0.01
    (found,) = photo_checks.damage(photo, bright)
    assert f"{100 * newly:.1f}% of the values newly clipped" in found


def test_a_dark_frame_is_named_and_an_even_darkening_is_not(photo):
    x = photo / 255.0
    width = round(0.04 * 64)  # 3 px
    framed = x.copy()
    framed[:width], framed[-width:], framed[:, :width], framed[:, -width:] = (
        0.6 * framed[:width], 0.6 * framed[-width:], 0.6 * framed[:, :width],
        0.6 * framed[:, -width:])
    inside = np.zeros(x.shape[:2], bool)
    inside[width:-width, width:-width] = True
    y_before, y_after = x @ LUMA, _u8(framed) / 255.0 @ LUMA
    ratio = ((y_after[~inside].mean() / y_before[~inside].mean())
             / (y_after[inside].mean() / y_before[inside].mean()))
    (found,) = photo_checks.damage(photo, _u8(framed))
    assert "dark frame" in found and f"{ratio:.2f} times" in found
    assert photo_checks.damage(photo, _u8(0.6 * x)) == []


def test_added_noise_is_named_as_texture():
    rows, cols = np.mgrid[0:48, 0:64] / 255.0
    smooth = np.stack([0.3 + rows, 0.4 + cols, 0.6 - rows], axis=-1)  # mid-tones, no clipping
    noisy = smooth + np.random.default_rng(0).normal(0.0, 0.03, smooth.shape)
    before, after = _u8(smooth), _u8(noisy)

    def detail(image):  # mean |4-neighbour Laplacian| of the luma, mirrored borders
        y = np.pad(image / 255.0 @ LUMA, 1, mode="symmetric")
        return np.abs(y[:-2, 1:-1] + y[2:, 1:-1] + y[1:-1, :-2] + y[1:-1, 2:]
                      - 4 * y[1:-1, 1:-1]).mean()

    (found,) = photo_checks.damage(before, after)
    assert f"added texture or noise: {detail(after) / detail(before):.2f} times" in found


def test_photos_too_small_for_a_frame_and_outputs_of_another_size(photo):
    line = photo[:1, :40]
    assert photo_checks.damage(line, line) == []
    with pytest.raises(ValueError, match="the output is"):
        photo_checks.damage(photo, photo[:10])
