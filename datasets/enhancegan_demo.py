"""The embedded EnhanceGAN demo set: clean crops of scikit-image photos (good) against crops
degraded in ways EnhanceGAN's operators can undo (bad), in CUHK-PQ's layout.

CUHK-PQ and AVA cannot be downloaded on machines without internet, so the EnhanceGAN code path
(good/bad folders, split, pairing, GAN and critic streams, the crop and colour operators, their
evaluation) is exercised on this stand-in. Every degradation of a bad image is the exact inverse
of an operator with parameters inside the operator's range (issue 16), so a generator that
predicts the right parameters restores the photo (up to 8-bit rounding and gamut clipping), and
the held-out test images say how close it came (PSNR against the clean originals, IoU of the
crop against the recorded subject box).

Photos (scikit-image's real colour photographs, bundled, no download; see datasets/demo.py):
  training (good and bad): astronaut (512x512), rocket (427x640), motorcycle_left and
    motorcycle_right (500x741 each; the two views of one stereo pair);
  held out (test only): chelsea (300x451), coffee (400x600).
None of them is a held-out photo of `datasets.heldout` (scikit-learn's china and flower,
matplotlib's grace_hopper).

Geometry of image i of stream t (0 good, 1 bad, 2 test; all randomness from numpy
default_rng([seed, t, i]), drawn in this order whether used or not, so image i is the same
whatever the counts are); S is the stored side (image_size, or test_size for test images):
  1. photo: one of the stream's photos, uniformly;
  2. view: a square of side v = U(0.45, 1.0) x the photo's shorter side, at a uniform place;
  3. subject: a square of m output pixels, m = S - 2 round(S (1 - U(0.6, 0.85)) / 2) (the
     parity of S, so that the crop operator's full-size box, floor((S - m) / 2) +
     round(t m / 2), is exactly the recorded one), at a uniform integer place (oy, ox) inside
     the view (the scale s = m / S is inside the crop operator's [0.3, 0.999]);
  4. flip: left-right with probability 1/2 (the box is mirrored with it).
  Resampling: Pillow's bicubic `resize(..., box=...)` of the photo region.
  good image = the subject region, resized to S x S (a clean, tight crop);
  bad image  = the view resized to S x S when the margin degradation is on (the subject is then
               box (y1, y2, x1, x2) = (oy, oy + m, ox, ox + m) of it), else the subject region
               like a good image (box = the whole image); then degraded as below.

Degradations of a bad (and test) image, each on with its probability, at least one (if none is
drawn, the one chosen by a fifth draw is switched on); then quantised to 8 bits:
  margin   (p 0.6): extra surroundings around the subject, of one kind:
             "scene" (p 0.2): the surrounding scene as photographed;
             "blur"  (p 0.45): the surroundings Gaussian-blurred, sigma U(0.02, 0.045) x S
                     (scipy.ndimage.gaussian_filter, borders mirrored), the subject sharp;
             "plain" (p 0.35): the surroundings a flat grey g ~ U(0, 1).
           The crop operator undoes it with the recorded box; its parameters (affine
           [[s1, 0, s1 t1], [0, s2, s2 t2]], s1 vertical) are s1 = s2 = m / S,
           t1 = ((y1 + y2) / S - 1) / s1, t2 = ((x1 + x2) / S - 1) / s2.
  exposure (p 0.5) and contrast (p 0.5): one inverse L curve (`inverse_l_curve`) on the
           normalised lightness L / 100 in CIELab (D65), the exact inverse of the operator's
           L curve (`l_curve`) with
             a ~ U(0.2, 0.4) (always drawn);
             exposure: p ~ U(1.5, 3.0) (shadows below a pushed down: under-exposed), else p = 1;
             contrast: b ~ U(0.03, 0.1), q ~ U(0.5, 0.8) (black lifted to b, white lowered to
                       1 - b: flat), else b = 0.01, q = 0.99 (the curve's gentlest).
  colour   (p 0.6): a, b of CIELab, normalised as (x + 128) / 255, compressed towards the
           middle 0.5: A' = alpha + (1 - 2 alpha) A, B' = beta + (1 - 2 beta) B with alpha,
           beta ~ U(0.05, 0.25) independently: faded colour, and a tint where the two axes are
           compressed unequally. The A/B stretch clip((m - alpha) / (1 - 2 alpha), 0, 1) undoes
           it exactly. (A shift of neutral grey, the usual colour cast, is not offered: the
           stretch keeps 0.5 fixed and could not undo it.)
  over     (p `over_enhanced`, bad images only, 0 by default; ours): over-enhanced instead of
           under-enhanced, so that a critic learns that blown highlights, crushed shadows and
           over-saturation are bad too (with only faded, dark and flat bad photos, it learns
           that more contrast and saturation are always better). When on, the image's exposure,
           contrast and colour degradations are off (its margin is kept as drawn), and one of
           three kinds, uniformly, is applied to the clean image in CIELab (`over_enhance`):
             "contrast":   L -> clip((L - lo) / (hi - lo), 0, 1), lo and hi the image's own
                           clip_low and 1 - clip_high quantiles of L, clip_low, clip_high ~
                           U(0.005, 0.04) (up to a few % of the pixels crushed, a channel at 0,
                           and blown, a channel at 255), then an S-curve L -> (1 - s) L +
                           s (1 - cos(pi L)) / 2, s ~ U(0, 0.5) (ends fixed);
             "saturation": A -> clip(0.5 + k (A - 0.5), 0, 1), the same for B, chroma factor
                           k ~ U(1.3, 2.0) (then gamut-clipped by lab2rgb);
             "both":       the two.
           The operators cannot undo it (they never clip less); these images are also G's
           inputs in the GAN stages, where the best output is the image as it is (the identity,
           in range with --parameter_ranges=inclusive). Held-out test images never get it, so
           the test figures (PSNR, IoU) are those of the sets built without it.
           Its draws come after all the others, so an image's other draws do not depend on it.
Conversions: scikit-image's rgb2lab / lab2rgb (sRGB, D65; lab2rgb clips out-of-gamut colours).

Output, in `output_dir` (read it with `datasets.enhancegan.load_cuhkpq`; categories are photos):
  HighQuality/<photo>/good_0000.png ...   good images, S = image_size
  LowQuality/<photo>/bad_0000.png ...     bad images
  test/degraded/test_0000.png ...         held-out test images (S = test_size), degraded
  test/clean/test_0000.png                the same geometry (margins included), not degraded in
                                          colour: the target of the colour operators (PSNR)
  test/target/test_0000.png               the clean subject region at S x S: the ideal output
  manifest.json   the parameters, the recipe numbers and, under "images", every image's
                  record, keyed by its path relative to the root:
                    photo, flip; region: [top, left, side] of the photo region the image shows
                    (photo pixels, before the flip);
                  bad and test images also:
                    subject_region: the subject's region of the photo; box: [y1, y2, x1, x2],
                    the subject in the stored image's pixels (after the flip); crop: {s1, s2,
                    t1, t2} of that box; margin: {kind, blur_sigma, grey} or null; tone: {a, b,
                    p, q, exposure, contrast} or null; colour: {alpha, beta} or null; over:
                    {kind, clip_low, clip_high, lo, hi, s_curve, chroma} or null (lo, hi: the
                    quantiles used, null with chroma for "saturation"; s_curve, clip_low,
                    clip_high null for "saturation", chroma null for "contrast");
                  test images also: clean, target (their paths).
                  Written last, so a set is complete iff its manifest is there. Building again
                  with the same parameters is a no-op.
"""
import concurrent.futures
import dataclasses
import json
import os
import re
import warnings

import numpy as np
from PIL import Image
from scipy import ndimage

from datasets import demo
from datasets.enhancegan import HIGH_QUALITY, LOW_QUALITY
from datasets.images import to_uint8

__all__ = [
    "HELDOUT_DEGRADATION",
    "EnhanceganDemoSet",
    "ab_compress",
    "ab_stretch",
    "build_enhancegan_demo",
    "demo_test_images",
    "degrade_colour",
    "inverse_l_curve",
    "l_curve",
    "over_enhance",
    "read_demo_manifest",
    "restore_colour",
]

RECIPE_VERSION = 2
MANIFEST = "manifest.json"
TEST_DIR = "test"
TRAIN_PHOTOS = ("astronaut", "rocket", "motorcycle_left", "motorcycle_right")
TEST_PHOTOS = ("chelsea", "coffee")
DEFAULT_IMAGE_SIZE = 96
DEFAULT_TEST_SIZE = 128
DEFAULT_NUM_GOOD = 200
DEFAULT_NUM_BAD = 200
DEFAULT_NUM_TEST = 24
STREAMS = {"good": 0, "bad": 1, "test": 2}

VIEW_FRACTION = (0.45, 1.0)
SUBJECT_SCALE = (0.6, 0.85)
P_MARGIN, P_EXPOSURE, P_CONTRAST, P_COLOUR = 0.6, 0.5, 0.5, 0.6
MARGIN_KINDS = ("scene", "blur", "plain")
MARGIN_WEIGHTS = (0.2, 0.45, 0.35)
BLUR_SIGMA_FRACTION = (0.02, 0.045)
CURVE_A = (0.2, 0.4)
EXPOSURE_P = (1.5, 3.0)
CONTRAST_B = (0.03, 0.1)
CONTRAST_Q = (0.5, 0.8)
OFF_B, OFF_Q, OFF_P = 0.01, 0.99, 1.0
COLOUR_ALPHA = (0.05, 0.25)
OVER_KINDS = ("contrast", "saturation", "both")
OVER_CLIP = (0.005, 0.04)
OVER_S_CURVE = (0.0, 0.5)
OVER_CHROMA = (1.3, 2.0)
DEFAULT_OVER_ENHANCED = 0.0
ZOOM_FRACTION = 0.75  # the central crop of `zoom_boxes`, as a fraction of the side

# A mid-range degradation for checks on photos of other sources (`datasets.heldout`): an
# under-exposed, flat, faded photo.
HELDOUT_DEGRADATION = {"tone": {"a": 0.3, "b": 0.06, "p": 2.0, "q": 0.65},
                       "colour": {"alpha": 0.15, "beta": 0.15}}

_GENERATED = re.compile(r"^(good|bad|test)_\d+\.png$")


# ----------------------------------------------------------------------------- the operators


def l_curve(m, a, b, p, q):
    """EnhanceGAN's L curve on normalised lightness m (issue 16; exponents 1/p and 1/q):
    0 below b; k1 (m - b)^(1/p) up to a; m up to 1 - a; k2 (m - 1 + a)^(1/q) + 1 - a up to
    1 - b; 1 above; k1 = a / (a - b)^(1/p), k2 = a / (a - b)^(1/q). NumPy, float64."""
    m = np.asarray(m, np.float64)
    k1 = a / (a - b) ** (1.0 / p)
    k2 = a / (a - b) ** (1.0 / q)
    low = k1 * np.clip(m - b, 0.0, None) ** (1.0 / p)
    high = k2 * np.clip(m - (1.0 - a), 0.0, None) ** (1.0 / q) + 1.0 - a
    out = np.where(m < a, low, np.where(m < 1.0 - a, m, high))
    return np.where(m < b, 0.0, np.where(m >= 1.0 - b, 1.0, out))


def inverse_l_curve(y, a, b, p, q):
    """The inverse of `l_curve` on [0, 1]: b + (y / k1)^p below a, y up to 1 - a,
    1 - a + ((y - 1 + a) / k2)^q above; maps [0, 1] onto [b, 1 - b]."""
    y = np.clip(np.asarray(y, np.float64), 0.0, 1.0)
    k1 = a / (a - b) ** (1.0 / p)
    k2 = a / (a - b) ** (1.0 / q)
    low = b + (y / k1) ** p
    high = 1.0 - a + (np.clip(y - (1.0 - a), 0.0, None) / k2) ** q
    return np.where(y < a, low, np.where(y < 1.0 - a, y, high))


def ab_stretch(m, alpha):
    """EnhanceGAN's A/B stretch clip((m - alpha) / (1 - 2 alpha), 0, 1) (NumPy)."""
    return np.clip((np.asarray(m, np.float64) - alpha) / (1.0 - 2.0 * alpha), 0.0, 1.0)


def ab_compress(m, alpha):
    """The inverse of `ab_stretch`: alpha + (1 - 2 alpha) m."""
    return alpha + (1.0 - 2.0 * alpha) * np.asarray(m, np.float64)


def _to_lab(image):
    from skimage import color
    x = np.asarray(image)
    x = x.astype(np.float64) / 255.0 if x.dtype == np.uint8 else x.astype(np.float64)
    lab = color.rgb2lab(np.clip(x, 0.0, 1.0))
    return lab[..., 0] / 100.0, (lab[..., 1] + 128.0) / 255.0, (lab[..., 2] + 128.0) / 255.0


def _to_rgb(l_n, a_n, b_n):
    from skimage import color
    lab = np.stack([l_n * 100.0, a_n * 255.0 - 128.0, b_n * 255.0 - 128.0], axis=-1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # out-of-gamut colours are clipped, as documented
        return np.clip(color.lab2rgb(lab), 0.0, 1.0).astype(np.float32)


def degrade_colour(image, tone=None, colour=None):
    """The demo's colour degradations (module docstring) on RGB (uint8 or float in [0, 1]).

    Args:
      tone: {"a", "b", "p", "q"}: L -> inverse_l_curve(L); None leaves L.
      colour: {"alpha", "beta"}: A -> ab_compress(A, alpha), B -> ab_compress(B, beta).

    Returns:
      float32 (H, W, 3) in [0, 1], not quantised.
    """
    l_n, a_n, b_n = _to_lab(image)
    if tone:
        l_n = inverse_l_curve(l_n, tone["a"], tone["b"], tone["p"], tone["q"])
    if colour:
        a_n, b_n = ab_compress(a_n, colour["alpha"]), ab_compress(b_n, colour["beta"])
    return _to_rgb(l_n, a_n, b_n)


def over_enhance(image, over):
    """The demo's over-enhancement (module docstring, "over") on RGB (uint8 or float in [0, 1]).

    Args:
      over: {"kind", "clip_low", "clip_high", "s_curve", "chroma"}.

    Returns:
      (float32 (H, W, 3) in [0, 1], not quantised; {"lo", "hi"}: the L quantiles used, None
      for "saturation").
    """
    l_n, a_n, b_n = _to_lab(image)
    lo = hi = None
    if over["kind"] in ("contrast", "both"):
        lo = float(np.quantile(l_n, over["clip_low"]))
        hi = float(np.quantile(l_n, 1.0 - over["clip_high"]))
        l_n = np.clip((l_n - lo) / max(hi - lo, 1e-6), 0.0, 1.0)
        s = over["s_curve"]
        l_n = (1.0 - s) * l_n + s * (1.0 - np.cos(np.pi * l_n)) / 2.0
    if over["kind"] in ("saturation", "both"):
        k = over["chroma"]
        a_n = np.clip(0.5 + k * (a_n - 0.5), 0.0, 1.0)
        b_n = np.clip(0.5 + k * (b_n - 0.5), 0.0, 1.0)
    return _to_rgb(l_n, a_n, b_n), {"lo": lo, "hi": hi}


def restore_colour(image, tone=None, colour=None):
    """The operators with the degradation's own parameters (A/B stretch, then the L curve, as
    EnhanceGAN orders them): what a perfect generator would output. float32 RGB."""
    l_n, a_n, b_n = _to_lab(image)
    if colour:
        a_n, b_n = ab_stretch(a_n, colour["alpha"]), ab_stretch(b_n, colour["beta"])
    if tone:
        l_n = l_curve(l_n, tone["a"], tone["b"], tone["p"], tone["q"])
    return _to_rgb(l_n, a_n, b_n)


# ----------------------------------------------------------------------------- the set


@dataclasses.dataclass(frozen=True)
class EnhanceganDemoSet:
    """Where a built demo set lives. `root` is a CUHK-PQ folder (`enhancegan.load_cuhkpq`)."""

    root: str
    manifest: str
    degraded_dir: str
    clean_dir: str
    target_dir: str


def demo_set(root):
    """The paths of the demo set in `root` (built or not)."""
    root = os.fspath(root)
    test = os.path.join(root, TEST_DIR)
    return EnhanceganDemoSet(root=root, manifest=os.path.join(root, MANIFEST),
                             degraded_dir=os.path.join(test, "degraded"),
                             clean_dir=os.path.join(test, "clean"),
                             target_dir=os.path.join(test, "target"))


def _draw(rng, photos, size, over_enhanced=0.0):
    """The random numbers of one image (module docstring), in their fixed order; the "over"
    degradation with probability `over_enhanced` (0 for good and test images)."""
    which = int(rng.integers(len(photos)))
    view_fraction = rng.uniform(*VIEW_FRACTION)
    view_place = rng.uniform(0.0, 1.0, size=2)
    # The subject side has the parity of `size`, so that the operator's full-size box
    # (floor((S - m) / 2) + round(t m / 2)) is exactly the recorded box.
    subject = size - 2 * int(round(size * (1.0 - rng.uniform(*SUBJECT_SCALE)) / 2.0))
    subject_place = rng.uniform(0.0, 1.0, size=2)
    flip = bool(rng.random() < 0.5)
    on = rng.random(4) < np.array([P_MARGIN, P_EXPOSURE, P_CONTRAST, P_COLOUR])
    fallback = int(rng.integers(4))
    margin_kind = MARGIN_KINDS[int(rng.choice(len(MARGIN_KINDS), p=MARGIN_WEIGHTS))]
    blur_sigma = rng.uniform(*BLUR_SIGMA_FRACTION) * size
    grey = rng.uniform(0.0, 1.0)
    a = rng.uniform(*CURVE_A)
    p = rng.uniform(*EXPOSURE_P)
    b = rng.uniform(*CONTRAST_B)
    q = rng.uniform(*CONTRAST_Q)
    alpha, beta = rng.uniform(*COLOUR_ALPHA, size=2)
    if not on.any():
        on[fallback] = True
    # Drawn after all the others (so they do not depend on it), whether used or not.
    over_on = bool(rng.random() < over_enhanced)
    over_kind = OVER_KINDS[int(rng.integers(len(OVER_KINDS)))]
    clip_low, clip_high = rng.uniform(*OVER_CLIP, size=2)
    s_curve = rng.uniform(*OVER_S_CURVE)
    chroma = rng.uniform(*OVER_CHROMA)
    if over_on:  # Over- instead of under-enhanced: tone and colour off, the margin as drawn.
        on[1:] = False
    margin, exposure, contrast, colour = (bool(v) for v in on)
    over = None
    if over_on:
        has_l, has_ab = over_kind in ("contrast", "both"), over_kind in ("saturation", "both")
        over = {"kind": over_kind, "clip_low": float(clip_low) if has_l else None,
                "clip_high": float(clip_high) if has_l else None,
                "s_curve": float(s_curve) if has_l else None,
                "chroma": float(chroma) if has_ab else None}
    photo = photos[which]
    side = view_fraction * min(photo.shape[:2])
    top = view_place[0] * (photo.shape[0] - side)
    left = view_place[1] * (photo.shape[1] - side)
    oy, ox = (int(np.floor(u * (size - subject + 1))) for u in subject_place)
    oy, ox = min(oy, size - subject), min(ox, size - subject)
    tone = None
    if exposure or contrast:
        tone = {"a": a, "b": b if contrast else OFF_B, "p": p if exposure else OFF_P,
                "q": q if contrast else OFF_Q, "exposure": exposure, "contrast": contrast}
    return {
        "which": which, "view": [top, left, side], "subject": subject, "place": [oy, ox],
        "flip": flip,
        "margin": ({"kind": margin_kind, "blur_sigma": blur_sigma if margin_kind == "blur"
                    else None, "grey": grey if margin_kind == "plain" else None}
                   if margin else None),
        "tone": tone,
        "colour": {"alpha": alpha, "beta": beta} if colour else None,
        "over": over,
    }


def _resample(photo, top, left, side, size):
    box = (left, top, left + side, top + side)
    image = Image.fromarray(photo).resize((size, size), Image.Resampling.BICUBIC, box=box)
    return np.asarray(image, np.float32) / 255.0


def _crop_params(box, size):
    y1, y2, x1, x2 = box
    s1, s2 = (y2 - y1) / size, (x2 - x1) / size
    return {"s1": s1, "s2": s2, "t1": ((y1 + y2) / size - 1.0) / s1,
            "t2": ((x1 + x2) / size - 1.0) / s2}


def _make(photos, names, size, draw, degraded):
    """(clean view, degraded image, subject image, record) of one drawn image; the first two
    are None for a good image (degraded False)."""
    top, left, side = draw["view"]
    m, (oy, ox) = draw["subject"], draw["place"]
    scale = side / size  # photo pixels per output pixel of the view
    subject = _resample(photos[draw["which"]], top + oy * scale, left + ox * scale, m * scale,
                        size)
    subject_region = [top + oy * scale, left + ox * scale, m * scale]
    record = {"photo": names[draw["which"]], "flip": draw["flip"], "region": subject_region}
    if not degraded:
        return None, None, subject[:, ::-1] if draw["flip"] else subject, record
    record["subject_region"] = subject_region
    margin = draw["margin"]
    if margin is None:
        clean = subject
        box = [0, size, 0, size]
    else:
        view = _resample(photos[draw["which"]], top, left, side, size)
        box = [oy, oy + m, ox, ox + m]
        record["region"] = [top, left, side]
        if margin["kind"] == "scene":
            clean = view
        else:
            if margin["kind"] == "blur":
                clean = ndimage.gaussian_filter(view, (margin["blur_sigma"],) * 2 + (0,),
                                                mode="reflect", truncate=4.0)
            else:
                clean = np.full_like(view, margin["grey"])
            clean[oy:oy + m, ox:ox + m] = view[oy:oy + m, ox:ox + m]
    if draw["flip"]:
        clean, subject = clean[:, ::-1], subject[:, ::-1]
        box = [box[0], box[1], size - box[3], size - box[2]]
    clean = to_uint8(clean, input_precision=True)
    tone = None if draw["tone"] is None else {k: v for k, v in draw["tone"].items()}
    over = None
    if draw["over"] is None:
        bad = degrade_colour(clean, tone, draw["colour"])
    else:
        bad, used = over_enhance(clean, draw["over"])
        over = dict(draw["over"], **used)
    bad = to_uint8(bad, input_precision=True)
    record.update(box=box, crop=_crop_params(box, size), margin=margin, tone=tone,
                  colour=draw["colour"], over=over)
    return clean, bad, subject, record


def _params(image_size, test_size, num_good, num_bad, num_test, seed, over_enhanced):
    return {"recipe_version": RECIPE_VERSION, "image_size": int(image_size),
            "test_size": int(test_size), "num_good": int(num_good), "num_bad": int(num_bad),
            "num_test": int(num_test), "seed": int(seed),
            "over_enhanced": float(over_enhanced)}


def zoom_boxes(root, paths):
    """For the critic's zoom check (`train.enhancegan_task`, the critic stage's evaluation):
    each of `paths` (good or bad photos of the built demo set in `root`) as (group, box), box
    (y1, y2, x1, x2) in the stored photo's pixels:
      "margin":    a bad photo with margins; box: its subject (the crop that undoes them);
      "no_margin": a bad photo without margins; box: the central square of ZOOM_FRACTION of
                   its side (a zoom that removes nothing but the photo's own edges);
      "good":      a good photo; box: the same central square.
    A critic that teaches the crop stage to remove margins prefers the first crops to their
    photos, and not the other two. KeyError naming a path the manifest does not hold."""
    root = os.fspath(root)
    manifest = read_demo_manifest(root)
    if manifest is None:
        raise FileNotFoundError(f"no complete EnhanceGAN demo set in {root!r} (no {MANIFEST})")
    images, size = manifest["images"], manifest["image_size"]
    side = int(round(ZOOM_FRACTION * size))
    start = (size - side) // 2
    central = [start, start + side, start, start + side]
    found = []
    for path in paths:
        key = os.path.relpath(os.fspath(path), root).replace(os.sep, "/")
        if key not in images:
            raise KeyError(f"{path}: not a photo of the EnhanceGAN demo set in {root}")
        record = images[key]
        if key.startswith("HighQuality/"):
            found.append(("good", central))
        elif record.get("margin"):
            found.append(("margin", list(record["box"])))
        else:
            found.append(("no_margin", central))
    return found


def read_demo_manifest(root):
    """The manifest of a built set (dict), or None if there is none (not built, or not
    complete)."""
    return demo.read_manifest(os.path.join(os.fspath(root), MANIFEST))


def _is_complete(root, params):
    if not demo.manifest_matches(os.path.join(root, MANIFEST), params):
        return False
    manifest = read_demo_manifest(root)
    files = list(manifest.get("images", {}))
    for record in manifest.get("images", {}).values():
        files += [record[k] for k in ("clean", "target") if k in record]
    return all(os.path.isfile(os.path.join(root, *key.split("/"))) for key in files)


def _remove_stale(root, written):
    """Removes generated PNGs (good_N, bad_N, test_N) of an earlier build that this one did
    not write."""
    paths = demo_set(root)
    folders = [paths.degraded_dir, paths.clean_dir, paths.target_dir]
    for quality in (HIGH_QUALITY, LOW_QUALITY):
        quality = os.path.join(root, quality)
        folders += [os.path.join(quality, name) for name in sorted(demo.file_names(quality))]
    for folder in folders:
        if not os.path.isdir(folder):
            continue
        for name in demo.file_names(folder):
            path = os.path.join(folder, name)
            if _GENERATED.match(name) and os.path.normpath(path) not in written:
                os.remove(path)


def build_enhancegan_demo(output_dir, *, image_size=DEFAULT_IMAGE_SIZE,
                          test_size=DEFAULT_TEST_SIZE, num_good=DEFAULT_NUM_GOOD,
                          num_bad=DEFAULT_NUM_BAD, num_test=DEFAULT_NUM_TEST, seed=0,
                          over_enhanced=DEFAULT_OVER_ENHANCED):
    """Builds (or reuses) the demo set in `output_dir` (module docstring).

    Idempotent: a complete set built with the same parameters and recipe version is left as it
    is; otherwise it is rebuilt and the generated images of an earlier build that this one does
    not list are removed. The defaults (200 + 200 images of 96x96, 24 test images of 128x128)
    build in a few seconds.

    Args:
      output_dir: the set's root.
      image_size: side of the good and bad images, 32 to 300.
      test_size: side of the test images, 32 to 300 (the smallest test photo is 300 high).
      num_good, num_bad, num_test: how many of each (>= 1).
      seed: the same seed gives the same set, file for file.
      over_enhanced: probability in [0, 1] that a bad image is over-enhanced ("over") instead
        of under-enhanced; test and good images never are.

    Returns:
      EnhanceganDemoSet.
    """
    params = _params(image_size, test_size, num_good, num_bad, num_test, seed, over_enhanced)
    if not 0.0 <= params["over_enhanced"] <= 1.0:
        raise ValueError(f"over_enhanced must be in [0, 1], got {params['over_enhanced']}")
    for name in ("image_size", "test_size"):
        if not 32 <= params[name] <= 300:
            raise ValueError(f"{name} must be in [32, 300], got {params[name]}")
    for name in ("num_good", "num_bad", "num_test"):
        if params[name] < 1:
            raise ValueError(f"{name} must be >= 1, got {params[name]}")
    paths = demo_set(output_dir)
    root = paths.root
    if _is_complete(root, params):
        return paths
    os.makedirs(root, exist_ok=True)
    if os.path.exists(paths.manifest):
        os.remove(paths.manifest)  # Incomplete until the new manifest is written.
    for folder in (paths.degraded_dir, paths.clean_dir, paths.target_dir):
        os.makedirs(folder, exist_ok=True)

    train_photos = demo.load_colour_photos(TRAIN_PHOTOS)
    test_photos = demo.load_colour_photos(TEST_PHOTOS)
    seed = params["seed"]

    def one(job):
        stream, i = job
        size = params["test_size"] if stream == "test" else params["image_size"]
        photos, names = ((test_photos, TEST_PHOTOS) if stream == "test"
                         else (train_photos, TRAIN_PHOTOS))
        draw = _draw(np.random.default_rng([seed, STREAMS[stream], i]), photos, size,
                     params["over_enhanced"] if stream == "bad" else 0.0)
        clean, bad, subject, record = _make(photos, names, size, draw, stream != "good")
        name = f"{stream}_{i:04d}.png"
        if stream == "good":
            key = f"{HIGH_QUALITY}/{record['photo']}/{name}"
        elif stream == "bad":
            key = f"{LOW_QUALITY}/{record['photo']}/{name}"
        else:
            key = f"{TEST_DIR}/degraded/{name}"
            record["clean"] = f"{TEST_DIR}/clean/{name}"
            record["target"] = f"{TEST_DIR}/target/{name}"
            for folder, pixels in ((paths.clean_dir, clean), (paths.target_dir, subject)):
                demo.save_png(os.path.join(folder, name), to_uint8(pixels, input_precision=True))
        target = os.path.join(root, *key.split("/"))
        os.makedirs(os.path.dirname(target), exist_ok=True)
        pixels = subject if stream == "good" else bad
        demo.save_png(target, to_uint8(pixels, input_precision=True))
        return key, record

    jobs = ([("good", i) for i in range(params["num_good"])]
            + [("bad", i) for i in range(params["num_bad"])]
            + [("test", i) for i in range(params["num_test"])])
    workers = max(1, min(4, os.cpu_count() or 1))
    with concurrent.futures.ThreadPoolExecutor(max_workers=workers) as pool:
        records = dict(pool.map(one, jobs))

    written = set()
    for key, record in records.items():
        for name in [key] + [record[k] for k in ("clean", "target") if k in record]:
            written.add(os.path.normpath(os.path.join(root, *name.split("/"))))
    _remove_stale(root, written)

    recipe = {
        "view_fraction": VIEW_FRACTION, "subject_scale": SUBJECT_SCALE,
        "probabilities": {"margin": P_MARGIN, "exposure": P_EXPOSURE, "contrast": P_CONTRAST,
                          "colour": P_COLOUR},
        "margin_kinds": dict(zip(MARGIN_KINDS, MARGIN_WEIGHTS)),
        "blur_sigma_fraction": BLUR_SIGMA_FRACTION, "curve_a": CURVE_A,
        "exposure_p": EXPOSURE_P, "contrast_b": CONTRAST_B, "contrast_q": CONTRAST_Q,
        "off": {"b": OFF_B, "q": OFF_Q, "p": OFF_P}, "colour_alpha": COLOUR_ALPHA,
        "over": {"probability": params["over_enhanced"], "streams": ["bad"],
                 "kinds": list(OVER_KINDS), "clip": OVER_CLIP, "s_curve": OVER_S_CURVE,
                 "chroma": OVER_CHROMA}}
    manifest = dict(params, train_photos=list(TRAIN_PHOTOS), test_photos=list(TEST_PHOTOS),
                    recipe=json.loads(json.dumps(recipe)), images=records)
    demo.write_atomically(paths.manifest, json.dumps(manifest, indent=1) + "\n")
    return paths


def demo_test_images(root):
    """The test images of a built set: [dict] in order, each its manifest record with
    "degraded", "clean" and "target" as absolute paths (box, crop, margin, tone, colour as
    recorded)."""
    root = os.fspath(root)
    manifest = read_demo_manifest(root)
    if manifest is None:
        raise FileNotFoundError(f"no complete EnhanceGAN demo set in {root!r} (no {MANIFEST})")
    out = []
    for key in sorted(k for k in manifest["images"] if k.startswith(f"{TEST_DIR}/")):
        record = dict(manifest["images"][key])
        record["degraded"] = os.path.join(root, *key.split("/"))
        for name in ("clean", "target"):
            record[name] = os.path.join(root, *record[name].split("/"))
        out.append(record)
    return out
