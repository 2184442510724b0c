"""Measures of what an enhancer did to a photo, output against input, that need no ground truth.

The held-out check (`tools.heldout`, DESIGN.md section 6) judges the demos with them, and
`tools.enhance` runs `damage` on every photo it writes, so that an output that blew out
highlights, darkened the border into a frame or added texture is named in the log and the run's
summary instead of passing as a success. The limits are the held-out check's `LIMITS`.

A colour cast is measured here (`colour_cast`) but judged only where the wanted result is known
(the held-out check): removing a phone's cast is what WESPE is for, and a user may ask PieNet
for a warm look.
"""
import numpy as np
from scipy import ndimage
from skimage import color

from datasets.images import LUMINANCE_WEIGHTS, to_uint8

BORDER_FRACTION = 0.04
# Limits of the clean-photo rules (`tools.heldout`); "colour_cast" is judged only there.
LIMITS = {"colour_cast": 3.0, "newly_clipped": 0.01, "border_ratio": 0.95,
          "detail_ratio": 1.25}
# 8-bit levels: a value within this of 0 or 255 that lands on it has moved by a rounding step
# or two, not been clipped (`newly_clipped`).
CLIP_MARGIN = 2


def as_float(image):
    """uint8 (levels / 255) or float image as float64."""
    x = np.asarray(image)
    return x.astype(np.float64) / 255.0 if x.dtype == np.uint8 else x.astype(np.float64)


def luma(image):
    """Luma Y of an RGB image (`datasets.images.LUMINANCE_WEIGHTS`), float64."""
    x = np.asarray(image)
    scale = 1.0 / 255.0 if x.dtype == np.uint8 else 1.0
    # Channel by channel: a float64 copy of a 24 MP photo's three channels would take 576 MB.
    return sum(weight * scale * x[..., c].astype(np.float64)
               for c, weight in enumerate(LUMINANCE_WEIGHTS))


def _chroma_coordinates(image):
    """(a*, b*) / (L* + 16) per pixel, (n, 2), and the mean of L* + 16.

    a* / (L* + 16) = (500 / 116) (f(X) / f(Y) - 1) with f the cube root: it does not change when
    a pixel is made brighter or darker at the same chromaticity (exactly, above the CIELab
    toe), so a tone curve, global or local, leaves it alone."""
    lab = color.rgb2lab(as_float(image)).reshape(-1, 3)
    lightness = lab[:, :1] + 16.0
    return lab[:, 1:] / lightness, float(lightness.mean())


def colour_cast(a, b):
    """The colour cast that turns RGB image `a` into `b`, with its chroma gain: (cast, gain).

    Per pixel, the lightness-free chroma coordinates c = (a*, b*) / (L* + 16) of CIELab (D65)
    are fitted as c_b = gain * c_a + shift by least squares. `gain` is a change of saturation
    (reported, not judged: an edit may rightly make colours livelier); `cast` = |shift| times the
    mean L* + 16 of `a`, in (a*, b*) units, is a drift of every colour, greys included, in one
    direction (a warm or green cast). Brightening or darkening, even locally, is neither. Meant
    for whole photos: within a single hue a saturation change and a cast cannot be told apart."""
    coords_a, scale = _chroma_coordinates(a)
    coords_b, _ = _chroma_coordinates(b)
    centred_a, centred_b = coords_a - coords_a.mean(axis=0), coords_b - coords_b.mean(axis=0)
    variance = (centred_a ** 2).sum()
    gain = (centred_a * centred_b).sum() / variance if variance > 1e-12 else 1.0
    shift = coords_b.mean(axis=0) - gain * coords_a.mean(axis=0)
    return float(np.linalg.norm(shift) * scale), float(gain)


def mean_delta_e(a, b):
    """Mean per-pixel CIE76 distance between two RGB images (CIELab, D65)."""
    lab_a, lab_b = color.rgb2lab(as_float(a)), color.rgb2lab(as_float(b))
    return float(np.sqrt(((lab_a - lab_b) ** 2).sum(axis=-1)).mean())


def clipped_fraction(image):
    """Fraction of the 8-bit channel values of `image` that are 0 or 255."""
    pixels = to_uint8(image)
    return float(np.mean((pixels == 0) | (pixels == 255)))


def newly_clipped(reference, output, margin=CLIP_MARGIN):
    """Fraction of the 8-bit channel values of `output` at 0 (255) whose value in `reference`
    was more than `margin` levels above 0 (below 255): what the enhancer clipped. A value at or
    next to a bound that lands on it does not count: in a photo with deep, saturated shadows
    (the held-out flower's teal, red channel 1-2 of 255) a saturation change of 0.4% sends 2%
    of all values from 1 to 0, which no one could see."""
    before, after = to_uint8(reference).astype(np.int16), to_uint8(output)
    return float(np.mean(((after == 0) & (before > margin))
                         | ((after == 255) & (before < 255 - margin))))


def border_width(shape):
    """The frame width of `border_ratio`: BORDER_FRACTION of the short side, at least 1 px."""
    return max(1, round(BORDER_FRACTION * min(shape[:2])))


def border_ratio(before, after):
    """(mean luma of the frame after / before) / (mean luma inside it after / before).

    1 when the enhancer treats the border like the rest of the photo; below 1 when it darkens
    the border more (a dark frame). The frame is `border_width` pixels wide; a photo too small
    to have anything inside it gives 1."""
    width = border_width(np.shape(before))
    inside = np.zeros(np.shape(before)[:2], bool)
    inside[width:-width, width:-width] = True
    if not inside.any():
        return 1.0
    luma_before, luma_after = luma(before), luma(after)
    eps = 1e-6
    frame = (luma_after[~inside].mean() + eps) / (luma_before[~inside].mean() + eps)
    interior = (luma_after[inside].mean() + eps) / (luma_before[inside].mean() + eps)
    return float(frame / interior)


def _detail(image):
    """Mean |Laplacian| of the luma (borders mirrored)."""
    return float(np.abs(ndimage.laplace(luma(image), mode="reflect")).mean())


def detail_ratio(before, after):
    """Mean |Laplacian| of the luma of `after` over that of `before`."""
    return _detail(after) / max(_detail(before), 1e-9)


def damage(before, after):
    """What `after`, an enhancer's output for the photo `before` (same size; uint8 or float in
    [0, 1]), broke of the rules that hold for any enhancer: sentences, [] if none.

    Blown highlights or crushed shadows (`newly_clipped`), a dark frame (`border_ratio`) and
    added texture or noise (`detail_ratio`), at the limits of `LIMITS`."""
    if np.shape(before) != np.shape(after):
        raise ValueError(f"the output is {np.shape(after)}, the photo {np.shape(before)}")
    found = []
    clipped = newly_clipped(before, after)
    if clipped > LIMITS["newly_clipped"]:
        found.append(f"{100 * clipped:.1f}% of the values newly clipped to black or white "
                     f"(blown highlights or crushed shadows; limit "
                     f"{100 * LIMITS['newly_clipped']:.0f}%)")
    ratio = border_ratio(before, after)
    if ratio < LIMITS["border_ratio"]:
        found.append(f"a dark frame: the border's brightness changed by {ratio:.2f} times the "
                     f"rest's (limit {LIMITS['border_ratio']})")
    ratio = detail_ratio(before, after)
    if ratio > LIMITS["detail_ratio"]:
        found.append(f"added texture or noise: {ratio:.2f} times the photo's fine detail (limit "
                     f"{LIMITS['detail_ratio']})")
    return found
