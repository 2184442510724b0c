"""EnhanceGAN's differentiable operators and the ranges of their parameters.

Deng, Loy & Tang, "Aesthetic-Driven Image Enhancement by Adversarial Learning" (ACM MM 2018),
section 3.2, with what the authors' Torch7 release (`ACMMM_2018_release/`) fixes where the
paper is open or garbled (issue 16):

Piecewise colour enhancer (section 3.2.1; release `labFilter.lua`, `contrastFilterCurve.lua`)
    On the release's normalised CIELab (`enhancers.lab`: L / 100, (A + 128) / 255,
    (B + 128) / 255), first the A/B stretch, then the L curve (`enhance_color`):

    - `ab_stretch(m, alpha)` = clip((m - alpha) / (1 - 2 alpha), 0, 1) on A (with alpha) and
      on B (with beta): a saturation boost about the middle of the channel.
    - `l_curve(m, a, b, p, q)`, with exponents 1/p and 1/q (the release's; the paper prints p
      and q), k1 = a / (a - b)^(1/p) and k2 = a / (a - b)^(1/q):

          0                                  m < b
          k1 (m - b)^(1/p)                   b <= m < a
          m                                  a <= m < 1 - a
          k2 (m - (1 - a))^(1/q) + 1 - a     1 - a <= m < 1 - b
          1                                  1 - b <= m

      It is continuous at all four knots (k1 (a - b)^(1/p) = a, k2 (a - b)^(1/q) + 1 - a = 1)
      and increasing; p >= 1 lifts the shadows, q < 1 darkens the highlights. Powers are taken
      only of positive numbers (see `_power_above`), so every gradient is finite; when a = b
      the two power segments are empty and k1, k2 are 0 (then a = b = 0, p = q = 1, the
      release's "colour off" setting of its crop stage, makes the curve the identity on
      [0, 1]; `IDENTITY_COLOR`).

Cropping (section 3.2.3; release `main.lua`, `dsBound.lua`, `run_single.lua`)
    - Training: the affine matrix [[s1, 0, s1 t1], [0, s2, s2 t2]] of the spatial transformer
      (stn's `AffineTransformMatrixGenerator(false, true, true)`: scale, then translation)
      maps the output grid to the source in normalised coordinates [-1, 1], the first
      coordinate being rows (stn's BHWD grids are (y, x)), with -1 and 1 at the centres of
      the first and last pixels (`AffineGridGeneratorBHWD`); `BilinearSamplerBHWD` samples
      bilinearly and reads 0 outside the image. `sample_crop` does the same: the matrix has no
      rotation, so the grid is the outer product of a row and a column coordinate and the
      sampler is two interpolation matrices, out = W_rows . image . W_cols^T, differentiable
      with respect to the image, s and t.
    - Inference (`crop_box`): the box is cut from the full-size photo, as `run_single.lua`
      does: rows = round(H s1), top = floor((H - rows) / 2) + round(t1 rows / 2), then clamped
      so that the box lies inside the photo (top in [0, H - rows]); the same with s2, t2 and W
      for the columns. round() is Torch's, half away from zero. The box is returned in the
      photo's pixel coordinates as (top, left, height, width), the arguments of
      `tf.image.crop_to_bounding_box`.

Parameter ranges (release `main.lua`)
    Every parameter is k * hardtanh(x) + c, mapping the pooled head output x onto [low, high]
    (k = (high - low) / 2, c = high - k): alpha, beta in [0.05, 0.49]; a in [0.1, 0.4];
    b in [0.01, 0.1]; p in [1, 3]; q in [0.5, 0.99]; crop scales s1, s2 in [0.3, 0.999]
    (0.3495 hardtanh + 0.6495). The translations are not squashed but clamped to
    |t| <= (1 - s) / s (`dsBound.lua`), which keeps the box inside the image
    (|s t| <= 1 - s); the clamp's gradient flows to t inside the bound and to s outside it, as
    the release's hand-written gradient does.
    `INCLUSIVE_RANGES` (ours, `parameter_ranges="inclusive"`, off in the paper presets): the
    colour ranges widened to hold the identity (alpha, beta, b from 0, q up to 1; a and p as
    the release's), so that a photo that needs nothing can be left as it is: the release's
    ranges always stretch chroma by at least 1 / 0.9 (alpha, beta >= 0.05), send the darkest
    1% of L to black (b >= 0.01) and darken the highlights (q <= 0.99). At alpha = beta = b = 0,
    p = q = 1 every L curve (any a) and A/B stretch is the identity.

Images are float32 NHWC RGB in [0, 1]; parameters are per example, shape (batch,) (the crop's
(batch, 2): rows first, then columns), or scalars.
"""
import tensorflow as tf

from enhancers import lab
from enhancers.enhancegan import filters

COLOR_PARAMETERS = ("alpha", "beta", "a", "b", "p", "q")  # the colour head's channel order
CROP_PARAMETERS = ("s1", "s2", "t1", "t2")  # the crop head's channel order
RANGES = {
    "alpha": (0.05, 0.49),
    "beta": (0.05, 0.49),
    "a": (0.1, 0.4),
    "b": (0.01, 0.1),
    "p": (1.0, 3.0),
    "q": (0.5, 0.99),
    "crop_scale": (0.3, 0.999),
}
# Ours (module docstring): the colour ranges with the identity inside them.
INCLUSIVE_RANGES = {**RANGES, "alpha": (0.0, 0.49), "beta": (0.0, 0.49), "b": (0.0, 0.1),
                    "q": (0.5, 1.0)}
PARAMETER_RANGES = {"release": RANGES, "inclusive": INCLUSIVE_RANGES}
# Parameters that leave colours unchanged (the release's crop stage zeroes the colour ranges'
# constants: alpha = beta = a = b = 0, p = q = 1). Outside RANGES: set, never predicted.
IDENTITY_COLOR = {"alpha": 0.0, "beta": 0.0, "a": 0.0, "b": 0.0, "p": 1.0, "q": 1.0}
TRAINING_SIZE = 224


def hardtanh_range(x, low, high):
    """k * hardtanh(x) + c with k = (high - low) / 2, c = high - k: R -> [low, high]."""
    half = (high - low) / 2.0
    return half * tf.clip_by_value(tf.convert_to_tensor(x, tf.float32), -1.0, 1.0) + high - half


def color_parameters(raw, ranges="release"):
    """(batch, 6) pooled colour-head values in the order alpha, beta, a, b, p, q -> a dict of
    the six parameters, each (batch,) and inside its interval of `PARAMETER_RANGES[ranges]`
    ("release": `RANGES`; "inclusive": `INCLUSIVE_RANGES`, ours)."""
    if ranges not in PARAMETER_RANGES:
        raise ValueError(f"ranges must be one of {tuple(PARAMETER_RANGES)}, got {ranges!r}")
    raw = tf.convert_to_tensor(raw, tf.float32)
    return {name: hardtanh_range(raw[:, index], *PARAMETER_RANGES[ranges][name])
            for index, name in enumerate(COLOR_PARAMETERS)}


def translation_bound(scale):
    """(1 - s) / s, the largest |t| that keeps a crop of scale s inside the image."""
    return (1.0 - scale) / scale


def crop_parameters(raw):
    """(batch, 4) pooled crop-head values (s1, s2, t1, t2) -> {"crop_scale": (batch, 2),
    "crop_translation": (batch, 2)}, rows first: s in [0.3, 0.999], |t| <= (1 - s) / s."""
    raw = tf.convert_to_tensor(raw, tf.float32)
    scale = hardtanh_range(raw[:, 0:2], *RANGES["crop_scale"])
    bound = translation_bound(scale)
    # minimum/maximum (not clip_by_value) so that the bound's gradient reaches the scale.
    translation = tf.minimum(tf.maximum(raw[:, 2:4], -bound), bound)
    return {"crop_scale": scale, "crop_translation": translation}


def _per_example(value, like):
    """A per-example parameter (batch,) reshaped to broadcast against `like`; scalars as they
    are."""
    value = tf.convert_to_tensor(value, tf.float32)
    if value.shape.rank == 0:
        return value
    return tf.reshape(value, [-1] + [1] * (like.shape.rank - 1))


def _power_above(x, start, exponent):
    """(x - start)^exponent where x > start, else 0, with finite gradients everywhere: the power
    sees 1 wherever x <= start (never 0 or a negative number, whose derivatives are infinite or
    NaN and would leak through the discarded branch of tf.where)."""
    above = x > start
    safe = tf.where(above, x - start, tf.ones_like(x))
    return tf.where(above, tf.pow(safe, exponent), tf.zeros_like(x))


def ab_stretch(m, alpha):
    """clip((m - alpha) / (1 - 2 alpha), 0, 1): the release's A (or B) adjustment on normalised
    Lab values m; alpha per example (batch,) or a scalar, in [0, 0.5)."""
    m = tf.convert_to_tensor(m, tf.float32)
    alpha = _per_example(alpha, m)
    return tf.clip_by_value((m - alpha) / (1.0 - 2.0 * alpha), 0.0, 1.0)


def l_curve(m, a, b, p, q):
    """The release's L curve on normalised L values m (see the module docstring); a, b, p, q
    per example (batch,) or scalars, with 0 <= b <= a <= 0.5 and p, q > 0."""
    m = tf.convert_to_tensor(m, tf.float32)
    a, b, p, q = (_per_example(value, m) for value in (a, b, p, q))
    gap = a - b
    open_gap = gap > 0
    safe_gap = tf.where(open_gap, gap, tf.ones_like(gap))
    k1 = tf.where(open_gap, a / tf.pow(safe_gap, 1.0 / p), tf.zeros_like(gap))
    k2 = tf.where(open_gap, a / tf.pow(safe_gap, 1.0 / q), tf.zeros_like(gap))
    shadows = k1 * _power_above(m, b, 1.0 / p)
    highlights = k2 * _power_above(m, 1.0 - a, 1.0 / q) + 1.0 - a
    zeros, ones = tf.zeros_like(m), tf.ones_like(m)
    return tf.where(m < b, zeros,
                    tf.where(m < a, shadows,
                             tf.where(m < 1.0 - a, m,
                                      tf.where(m < 1.0 - b, highlights, ones))))


def enhance_normalised_lab(lab_values, parameters):
    """Equation 4 on normalised Lab (batch, h, w, 3): L curve on L, A/B stretch on A and B."""
    lab_values = tf.convert_to_tensor(lab_values, tf.float32)
    lightness = l_curve(lab_values[..., 0], parameters["a"], parameters["b"],
                        parameters["p"], parameters["q"])
    green_red = ab_stretch(lab_values[..., 1], parameters["alpha"])
    blue_yellow = ab_stretch(lab_values[..., 2], parameters["beta"])
    return tf.stack([lightness, green_red, blue_yellow], axis=-1)


def enhance_color(images, parameters):
    """The piecewise colour enhancer on RGB in [0, 1]: RGB -> normalised Lab -> A/B stretch ->
    L curve -> RGB (clipped into [0, 1]). `parameters` holds alpha, beta, a, b, p, q, each
    (batch,) or a scalar (`IDENTITY_COLOR` leaves colours unchanged)."""
    return lab.normalised_lab_to_rgb(
        enhance_normalised_lab(lab.rgb_to_normalised_lab(images), parameters))


def _grid(size):
    """stn's AffineGridGeneratorBHWD coordinates: size points from -1 to 1 (0 for one)."""
    if size == 1:
        return tf.zeros([1], tf.float32)
    return tf.linspace(-1.0, 1.0, size)


def _interpolation_matrix(source, length):
    """Bilinear weights (batch, n, length) reading pixel positions `source` (batch, n) from an
    axis of `length` pixels; taps outside the axis weigh nothing (the stn reads 0 there)."""
    lower = tf.floor(source)
    upper_weight = source - lower
    lower_index = tf.cast(lower, tf.int32)
    return ((1.0 - upper_weight)[..., None] * tf.one_hot(lower_index, length)
            + upper_weight[..., None] * tf.one_hot(lower_index + 1, length))


def sample_crop(images, scale, translation, output_size=TRAINING_SIZE):
    """The spatial transformer's crop: bilinear samples of `images` on the grid of the affine
    matrix [[s1, 0, s1 t1], [0, s2, s2 t2]] (module docstring), at `output_size` (an int or
    (rows, cols)). images (batch, H, W, C); scale and translation (batch, 2), rows first.
    Differentiable with respect to images, scale and translation."""
    images = tf.convert_to_tensor(images, tf.float32)
    scale = tf.convert_to_tensor(scale, tf.float32)
    translation = tf.convert_to_tensor(translation, tf.float32)
    rows, cols = ((output_size, output_size) if isinstance(output_size, int)
                  else tuple(output_size))
    shape = tf.shape(images)
    height, width = shape[1], shape[2]
    # Normalised source coordinates s (g + t), then pixel positions (c + 1) (size - 1) / 2.
    source_y = scale[:, 0:1] * (_grid(rows)[None, :] + translation[:, 0:1])
    source_x = scale[:, 1:2] * (_grid(cols)[None, :] + translation[:, 1:2])
    pixel_y = (source_y + 1.0) * tf.cast(height - 1, tf.float32) / 2.0
    pixel_x = (source_x + 1.0) * tf.cast(width - 1, tf.float32) / 2.0
    row_weights = _interpolation_matrix(pixel_y, height)  # (batch, rows, H)
    col_weights = _interpolation_matrix(pixel_x, width)  # (batch, cols, W)
    sampled_rows = tf.einsum("biy,byxc->bixc", row_weights, images)
    return tf.einsum("bjx,bixc->bijc", col_weights, sampled_rows)


def _round_half_away(x):
    """Torch's round: to the nearest integer, halves away from zero."""
    return tf.sign(x) * tf.floor(tf.abs(x) + 0.5)


def crop_box(height, width, scale, translation):
    """The full-size crop box of `run_single.lua` (module docstring) for a photo of
    height x width: int32 (batch, 4) rows of (top, left, box height, box width) in the photo's
    pixels, inside the photo. scale and translation (batch, 2), rows first."""
    scale = tf.convert_to_tensor(scale, tf.float32)
    translation = tf.convert_to_tensor(translation, tf.float32)
    sizes = tf.cast(tf.stack([height, width]), tf.float32)[None, :]  # (1, 2)
    extent = tf.clip_by_value(_round_half_away(sizes * scale), 1.0, sizes)
    start = tf.floor((sizes - extent) / 2.0) + _round_half_away(translation * extent / 2.0)
    start = tf.clip_by_value(start, 0.0, sizes - extent)
    box = tf.concat([start, extent], axis=1)
    return tf.cast(box, tf.int32)


def crop_photo(photo, box):
    """Cuts `box` = (top, left, height, width) (one row of `crop_box`) out of one photo
    (H, W, C) or a batch sharing the box."""
    box = tf.convert_to_tensor(box, tf.int32)
    return tf.image.crop_to_bounding_box(photo, box[0], box[1], box[2], box[3])


def enhance_batch(images, parameters, output_size=TRAINING_SIZE, filter_networks=None):
    """The generator's output during training: the colour parameters (or the filter weights,
    with `filter_networks`) applied to `images` (batch, h, w, 3), then, when `parameters` hold
    a crop, `sample_crop` at `output_size`. Differentiable in the parameters."""
    images = tf.convert_to_tensor(images, tf.float32)
    if all(name in parameters for name in COLOR_PARAMETERS):
        images = enhance_color(images, parameters)
    if "filter_weights" in parameters:
        if filter_networks is None:
            raise ValueError("filter_weights given without the filter networks to apply them")
        images = tf.clip_by_value(
            filters.combine_filters(images, filter_networks, parameters["filter_weights"]),
            0.0, 1.0)
    if "crop_scale" in parameters:
        images = sample_crop(images, parameters["crop_scale"], parameters["crop_translation"],
                             output_size)
    return images


def enhance_photo(photo, parameters, filter_networks=None):
    """Applies one photo's predicted parameters to the photo at full size (issue 16: parameters
    predicted at 224 x 224 apply to the full-size photo).

    photo: (H, W, 3) RGB in [0, 1]. parameters: the generator's outputs for this photo (a batch
    of one, or unbatched): the six colour parameters, and/or "filter_weights" (deep filtering,
    applied with `filter_networks`), and/or "crop_scale" and "crop_translation". Colour comes
    first, then the crop (the release's order). Returns (enhanced photo, box): box is int32
    (top, left, height, width) in the photo's pixels, the whole photo when there is no crop.
    """
    photo = tf.convert_to_tensor(photo, tf.float32)
    batch = photo[None]

    def batched(name, vector=False):
        return tf.reshape(tf.convert_to_tensor(parameters[name], tf.float32),
                          [1, -1] if vector else [1])

    if all(name in parameters for name in COLOR_PARAMETERS):
        batch = enhance_color(batch, {name: batched(name) for name in COLOR_PARAMETERS})
    if "filter_weights" in parameters:
        if filter_networks is None:
            raise ValueError("filter_weights given without the filter networks to apply them")
        batch = filters.combine_filters(batch, filter_networks,
                                        batched("filter_weights", vector=True))
        batch = tf.clip_by_value(batch, 0.0, 1.0)
    shape = tf.shape(photo)
    if "crop_scale" in parameters:
        box = crop_box(shape[0], shape[1], batched("crop_scale", vector=True),
                       batched("crop_translation", vector=True))[0]
    else:
        box = tf.stack([0, 0, shape[0], shape[1]])
    return crop_photo(batch[0], box), box


def identity_color_parameters(batch_size):
    """`IDENTITY_COLOR` as per-example tensors (batch_size,)."""
    return {name: tf.fill([batch_size], value) for name, value in IDENTITY_COLOR.items()}


def sampler_extent(height, width, scale, translation):
    """The pixel extent (top, left, bottom, right), float, that `sample_crop` reads on a
    height x width image: the positions of its first and last samples (to compare the training
    crop with the full-size box of `crop_box`)."""
    scale = tf.convert_to_tensor(scale, tf.float32)
    translation = tf.convert_to_tensor(translation, tf.float32)
    sizes = tf.constant([[height - 1, width - 1]], tf.float32) / 2.0
    low = (scale * (translation - 1.0) + 1.0) * sizes
    high = (scale * (translation + 1.0) + 1.0) * sizes
    return tf.concat([low, high], axis=1)

