"""Image-quality metrics of the enhancer papers, as functions on NumPy arrays.

Images are float arrays (H, W, 3), RGB in [0, 1] (DESIGN.md section 4); uint8 arrays are also
accepted and read as v / 255. Every figure is computed in float64.

Full-reference (WESPE section 4.1, PieNet section 4.1; against a ground-truth image):

- `psnr(a, b)`: 10 log10(data_range^2 / MSE), the MSE over all pixels and channels; identical
  images give +inf.
- `ssim(a, b)`: Wang et al. 2004 (the paper's [30]), the convention of `tf.image.ssim` and of
  scikit-image's `structural_similarity(a, b, gaussian_weights=True, sigma=1.5,
  use_sample_covariance=False, data_range=1, channel_axis=-1)`: local means, variances and
  covariance under an 11 x 11 Gaussian window with sigma 1.5 (normalised to sum 1), population
  (not sample) statistics, C1 = (0.01 L)^2, C2 = (0.03 L)^2 with L = 1; the SSIM map is kept only
  where the window lies fully inside the image (a border of 5 pixels is dropped), averaged over
  that region for each of R, G and B, and the three channel means are averaged. Images must be
  at least 11 x 11.

No-reference (WESPE section 4.2):

- `entropy(image)`: Shannon entropy in bits, -sum p_i log2 p_i, of the 256-bin histogram of the
  8-bit grayscale image ("entropy based on pixel level observations"). Grayscale is Pillow's
  `convert("L")` of `to_uint8(image)`, i.e. ITU-R 601-2 luma L = R 299/1000 + G 587/1000 +
  B 114/1000 on 8-bit values, rounded (Pillow computes it in 16.16 fixed point). Range [0, 8].
- `png_bits_per_pixel(image)`: the size in bits of the lossless PNG file of the 8-bit RGB image
  (`to_uint8`), written by Pillow with zlib `compress_level=6` (Pillow's default) and without
  `optimize`, divided by H * W. The whole file counts, headers included (about 0.01 bpp at
  640 x 480). Random noise needs about 24 bpp; a constant image a small fraction of one bit.
- `nima_mean_scores(model, images)`: the NIMA mean score sum_i i p_i (NIMA section 2.1.1) of
  each image at its own size (above 2 MP, of an area-downscaled copy: bounded memory).

`no_reference_figures` and `full_reference_figures` average these over a set of images, as the
papers' tables do (the mean of the per-image values).

Distribution-level (PIEA section 4.2 and Table 1, following EXPOSURE, Hu et al. 2018, its
`histogram_intersection.py`; set against set, so the two sets may differ in size and order):

- `histogram_intersections(outputs, references, seed=0)`: for each of luminance, contrast and
  saturation, the intersection sum_k min(h_out[k], h_ref[k]) of the two sets' histograms, in
  [0, 1] (1: the same distribution). The protocol:
  1. `histogram_patches(image, rng)`: 4 square crops of side s = min(h, w) at random offsets,
     uniform in 0..h - s and 0..w - s (both inclusive); each is downscaled to 80 x 80 by area
     averaging (`area_downscale`, OpenCV's INTER_AREA: each output pixel is the mean of its
     s/80 x s/80 footprint, source pixels weighted by the fraction of them inside it); from each
     80 x 80 patch 4 random 64 x 64 crops at offsets uniform in 0..15 (EXPOSURE's
     `randrange(0, 80 - 64)`). 16 patches per image; the draws, in order, for each square crop:
     row, column offset, then for each of its 64 x 64 crops: row, column offset, by
     `rng.integers`. Images must be at least 80 x 80 (EXPOSURE would upscale smaller ones).
  2. `patch_statistics(patch)`: after clipping to [0, 1], the luminance mean (luminance
     0.27 R + 0.67 G + 0.06 B), the contrast 2 x std of the luminance (population std) and the
     mean HLS saturation (`hls_saturation`: OpenCV's and colorsys's convention).
  3. Per statistic, the histogram over all patches of the set: 32 equal bins on [0, 1] (the
     `np.histogram(range=(0, 1))` convention: the last bin includes 1; values outside [0, 1]
     fall out, as in EXPOSURE), divided by the number of patches.
  Each set draws its crops from its own `np.random.default_rng(seed)`, image after image, so a
  run is reproducible, and two sets of same-size images in the same order (an enhancer's outputs
  and its inputs) are cropped at the same places; identical sets give exactly 1.
  `histogram_statistics` (step 1 and 2 over a set) and `intersect_statistics` (step 3) split
  the work for callers that stream images.
"""
import io

import numpy as np
from PIL import Image

import nima
from datasets.images import LUMINANCE_WEIGHTS, to_uint8

__all__ = [
    "area_downscale",
    "entropy",
    "full_reference_figures",
    "histogram_intersections",
    "histogram_patches",
    "histogram_statistics",
    "hls_saturation",
    "intersect_statistics",
    "nima_mean_scores",
    "no_reference_figures",
    "patch_statistics",
    "png_bits_per_pixel",
    "psnr",
    "ssim",
]

SSIM_WINDOW = 11
SSIM_SIGMA = 1.5
SSIM_K1 = 0.01
SSIM_K2 = 0.03
PNG_COMPRESS_LEVEL = 6

# Histogram intersection (EXPOSURE's histogram_intersection.py; module docstring).
HIST_BINS = 32
HIST_SQUARE_CROPS = 4  # square crops per image
HIST_DOWNSCALED = 80  # each square crop is area-downscaled to 80 x 80
HIST_PATCH = 64  # ... and gives HIST_PATCH_CROPS random 64 x 64 patches
HIST_PATCH_CROPS = 4
HIST_STATISTICS = ("luminance", "contrast", "saturation")


def _as_float(image):
    """An image as float64: uint8 -> v / 255, float values as they are."""
    image = np.asarray(image)
    if image.dtype == np.uint8:
        return image.astype(np.float64) / 255.0
    if not np.issubdtype(image.dtype, np.floating):
        raise TypeError(f"expected a float image in [0, 1] or uint8, got dtype {image.dtype}")
    return image.astype(np.float64, copy=False)


def _check_pair(a, b):
    a, b = _as_float(a), _as_float(b)
    if a.shape != b.shape:
        raise ValueError(f"images differ in shape: {a.shape} vs {b.shape}")
    return a, b


def _check_rgb(image):
    if image.ndim != 3 or image.shape[-1] != 3:
        raise ValueError(f"expected an (H, W, 3) RGB image, got shape {image.shape}")
    return image


def psnr(a, b, data_range=1.0):
    """Peak signal-to-noise ratio in dB: 10 log10(data_range^2 / mean((a - b)^2)); +inf if equal."""
    a, b = _check_pair(a, b)
    mse = np.mean((a - b) ** 2)
    if mse == 0:
        return float("inf")
    return float(10.0 * np.log10(data_range**2 / mse))


def _gaussian_window(size=SSIM_WINDOW, sigma=SSIM_SIGMA):
    x = np.arange(size, dtype=np.float64) - (size - 1) / 2.0
    window = np.exp(-(x**2) / (2.0 * sigma**2))
    return window / window.sum()


def _filter_valid(x, window):
    """Separable 2-D filtering of (H, W, C) over H and W, 'valid' region only."""
    size = window.size
    x = np.lib.stride_tricks.sliding_window_view(x, size, axis=0) @ window  # (H-s+1, W, C)
    return np.lib.stride_tricks.sliding_window_view(x, size, axis=1) @ window  # (.., W-s+1, C)


def ssim(a, b):
    """Mean structural similarity of two RGB images in [0, 1] (module docstring: convention).

    Returns a float in [-1, 1]; 1 only for identical images.
    """
    a, b = _check_pair(a, b)
    _check_rgb(a)
    if min(a.shape[:2]) < SSIM_WINDOW:
        raise ValueError(f"SSIM needs images of at least {SSIM_WINDOW} x {SSIM_WINDOW}, got {a.shape}")
    window = _gaussian_window()
    c1 = (SSIM_K1 * 1.0) ** 2
    c2 = (SSIM_K2 * 1.0) ** 2
    mu_a = _filter_valid(a, window)
    mu_b = _filter_valid(b, window)
    var_a = _filter_valid(a * a, window) - mu_a**2
    var_b = _filter_valid(b * b, window) - mu_b**2
    cov = _filter_valid(a * b, window) - mu_a * mu_b
    ssim_map = ((2 * mu_a * mu_b + c1) * (2 * cov + c2)) / (
        (mu_a**2 + mu_b**2 + c1) * (var_a + var_b + c2)
    )
    return float(np.mean(ssim_map.mean(axis=(0, 1))))


def _gray8(image):
    """8-bit ITU-R 601-2 luma of an RGB image, by Pillow's convert("L")."""
    return np.asarray(Image.fromarray(to_uint8(_check_rgb(np.asarray(image)))).convert("L"))


def entropy(image):
    """Shannon entropy in bits of the 256-bin histogram of the 8-bit gray image (module docstring)."""
    histogram = np.bincount(_gray8(image).ravel(), minlength=256).astype(np.float64)
    p = histogram[histogram > 0] / histogram.sum()
    return float(-(p * np.log2(p)).sum()) + 0.0  # + 0.0 turns -0.0 into 0.0


def png_bits_per_pixel(image, compress_level=PNG_COMPRESS_LEVEL):
    """Bits of the lossless 8-bit RGB PNG file (Pillow, zlib `compress_level`) per pixel."""
    pixels = to_uint8(_check_rgb(np.asarray(image)))
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG", compress_level=compress_level)
    return 8.0 * buffer.tell() / (pixels.shape[0] * pixels.shape[1])


def nima_mean_scores(nima_model, images_iterable, batch=1):
    """NIMA mean score of each image, each at its own size; returns float64 array (n,).

    `nima_model` is a NIMA Keras model (`nima.build_nima`, `nima.demo_model`): float [0, 1]
    images of any size -> (batch, 10) score distribution. Up to `batch` consecutive images of the
    same size go through the model together. Images above `nima.SCORING_MAX_PIXELS` (2 MP) are
    scored after an area downscale to that size (`nima.downscale_for_scoring`: bounded memory);
    smaller ones are never resized.
    """
    if batch < 1:
        raise ValueError(f"batch must be >= 1, got {batch}")
    scores = []
    pending = []

    def flush():
        if pending:
            distribution = nima_model(np.stack(pending).astype(np.float32), training=False)
            scores.extend(np.asarray(nima.mean_score(distribution), np.float64).tolist())
            pending.clear()

    for image in images_iterable:
        image = _check_rgb(_as_float(image))
        if image.shape[0] * image.shape[1] > nima.SCORING_MAX_PIXELS:
            image = nima.downscale_for_scoring(image[np.newaxis].astype(np.float32))[0].numpy()
        if pending and (image.shape != pending[0].shape or len(pending) >= batch):
            flush()
        pending.append(image)
    flush()
    return np.asarray(scores, np.float64)


def no_reference_figures(images, nima_model=None):
    """Means over `images` of entropy, png_bpp and (only with a model) nima_mean.

    `images` is any iterable of (H, W, 3) images, read once. Returns a dict of floats with the
    keys "entropy", "png_bpp" and, if `nima_model` is given, "nima_mean".
    """
    entropies, bpps, scores = [], [], []
    for image in images:
        image = _check_rgb(_as_float(image))
        entropies.append(entropy(image))
        bpps.append(png_bits_per_pixel(image))
        if nima_model is not None:
            scores.extend(nima_mean_scores(nima_model, [image]))
    if not entropies:
        raise ValueError("no images to evaluate")
    figures = {"entropy": float(np.mean(entropies)), "png_bpp": float(np.mean(bpps))}
    if nima_model is not None:
        figures["nima_mean"] = float(np.mean(scores))
    return figures


def full_reference_figures(outputs, references):
    """Mean PSNR (dB) and mean SSIM of `outputs` against their `references`, pair by pair.

    Returns {"psnr": ..., "ssim": ...}. The mean PSNR is +inf if any pair is identical.
    """
    psnrs, ssims = [], []
    outputs, references = list(outputs), list(references)
    if len(outputs) != len(references):
        raise ValueError(f"{len(outputs)} outputs but {len(references)} references")
    if not outputs:
        raise ValueError("no images to evaluate")
    for output, reference in zip(outputs, references):
        psnrs.append(psnr(output, reference))
        ssims.append(ssim(output, reference))
    return {"psnr": float(np.mean(psnrs)), "ssim": float(np.mean(ssims))}


# --------------------------------------------------------------------------- histogram intersection


def hls_saturation(image):
    """Per-pixel HLS saturation of RGB values in [0, 1] (OpenCV's RGB2HLS, colorsys.rgb_to_hls).

    With mx, mn the largest and smallest of R, G, B and l = (mx + mn) / 2: s = 0 if mx == mn,
    (mx - mn) / (mx + mn) if l < 0.5, else (mx - mn) / (2 - mx - mn). Returns float64 (...,)
    for an (..., 3) input.
    """
    image = _as_float(image)
    if image.shape[-1:] != (3,):
        raise ValueError(f"expected RGB values (..., 3), got shape {image.shape}")
    mx, mn = image.max(axis=-1), image.min(axis=-1)
    chroma = mx - mn
    denominator = np.where(mx + mn < 1.0, mx + mn, 2.0 - mx - mn)  # l < 0.5 <=> mx + mn < 1
    grey = chroma == 0
    return np.where(grey, 0.0, chroma / np.where(grey, 1.0, denominator))


def _area_weights(n_in, n_out):
    """(n_out, n_in) matrix: row i averages the source interval [i s, (i + 1) s), s = n_in/n_out.

    Source pixel j covers [j, j + 1); its weight is the length of its overlap with the interval,
    divided by s.
    """
    scale = n_in / n_out
    lo = np.arange(n_out)[:, None] * scale
    j = np.arange(n_in)[None, :]
    overlap = np.clip(np.minimum(j + 1, lo + scale) - np.maximum(j, lo), 0.0, None)
    return overlap / scale


def area_downscale(image, size=HIST_DOWNSCALED):
    """Resizes an (h, w, C) image to (size, size, C) by area averaging (OpenCV's INTER_AREA).

    Output pixel (i, k) is the mean of the image over the rectangle [i h/size, (i + 1) h/size) x
    [k w/size, (k + 1) w/size), source pixels counting by the fraction of them inside it. With h
    and w multiples of `size` this is the mean of each (h/size) x (w/size) block. Float64.
    """
    image = _as_float(image)
    if image.ndim != 3:
        raise ValueError(f"expected an (H, W, C) image, got shape {image.shape}")
    h, w, channels = image.shape
    rows = _area_weights(h, size)
    columns = _area_weights(w, size)
    shrunk = (rows @ image.reshape(h, w * channels)).reshape(size, w, channels)
    return (shrunk.transpose(0, 2, 1) @ columns.T).transpose(0, 2, 1)  # (size, size, C)


def histogram_patches(image, rng):
    """EXPOSURE's 16 random 64 x 64 patches of one image (module docstring, step 1).

    Args:
      image: (h, w, 3), float in [0, 1] or uint8; h and w at least 80.
      rng: a np.random.Generator; 16 offset pairs are drawn from it.

    Returns:
      float64 (16, 64, 64, 3): for each of the 4 square crops in turn, its 4 patches.
    """
    image = _check_rgb(_as_float(image))
    h, w = image.shape[:2]
    side = min(h, w)
    if side < HIST_DOWNSCALED:
        raise ValueError(
            f"histogram patches need images of at least {HIST_DOWNSCALED} x {HIST_DOWNSCALED} "
            f"(the size square crops are downscaled to), got shape {image.shape}")
    patches = []
    limit = HIST_DOWNSCALED - HIST_PATCH  # randrange(0, 80 - 64): offsets 0..15
    for _ in range(HIST_SQUARE_CROPS):
        y = int(rng.integers(0, h - side + 1))
        x = int(rng.integers(0, w - side + 1))
        small = area_downscale(image[y:y + side, x:x + side])
        for _ in range(HIST_PATCH_CROPS):
            yy = int(rng.integers(0, limit))
            xx = int(rng.integers(0, limit))
            patches.append(small[yy:yy + HIST_PATCH, xx:xx + HIST_PATCH])
    return np.stack(patches)


def patch_statistics(patch):
    """(luminance mean, contrast, saturation) of one patch, clipped to [0, 1] first.

    Luminance 0.27 R + 0.67 G + 0.06 B; contrast 2 x its population std; saturation the mean of
    `hls_saturation`. Floats.
    """
    patch = np.clip(_check_rgb(_as_float(patch)), 0.0, 1.0)
    luminance = patch @ np.asarray(LUMINANCE_WEIGHTS)
    return (float(luminance.mean()), float(2.0 * luminance.std()),
            float(hls_saturation(patch).mean()))


def histogram_statistics(images, seed=0):
    """Statistics of every patch of a set: float64 (16 n, 3), columns as HIST_STATISTICS.

    `images` is any iterable of (h, w, 3) images, read once; the patches are drawn from
    `np.random.default_rng(seed)`, image after image (module docstring).
    """
    rng = np.random.default_rng(seed)
    rows = [patch_statistics(patch) for image in images
            for patch in histogram_patches(image, rng)]
    return np.asarray(rows, np.float64).reshape(-1, len(HIST_STATISTICS))


def _statistic_histogram(values):
    counts, _ = np.histogram(values, bins=HIST_BINS, range=(0.0, 1.0))
    return counts / float(len(values))


def intersect_statistics(output_statistics, reference_statistics):
    """Histogram intersections of two `histogram_statistics` arrays (module docstring, step 3).

    Returns {"luminance": ..., "contrast": ..., "saturation": ...}, floats in [0, 1].
    """
    sets = []
    for name, statistics in (("output", output_statistics), ("reference", reference_statistics)):
        statistics = np.asarray(statistics, np.float64)
        if statistics.ndim != 2 or statistics.shape[1] != len(HIST_STATISTICS):
            raise ValueError(f"{name} statistics must be (n, {len(HIST_STATISTICS)}), "
                             f"got shape {statistics.shape}")
        if not len(statistics):
            raise ValueError(f"no {name} images to evaluate")
        sets.append(statistics)
    return {
        name: float(np.minimum(_statistic_histogram(sets[0][:, k]),
                               _statistic_histogram(sets[1][:, k])).sum())
        for k, name in enumerate(HIST_STATISTICS)
    }


def histogram_intersections(outputs, references, seed=0):
    """EXPOSURE's histogram intersections of luminance, contrast and saturation (module docstring).

    `outputs` and `references` are iterables of (h, w, 3) images (float in [0, 1] or uint8), of
    any sizes of at least 80 x 80, compared as distributions: their number and order may differ.
    Returns {"luminance": ..., "contrast": ..., "saturation": ...}, floats in [0, 1].
    """
    return intersect_statistics(histogram_statistics(outputs, seed),
                                histogram_statistics(references, seed))
