"""PIEA's Image Enhancer: EXPOSURE's eight differentiable photo filters (PIEA section 3.1).

PIEA (Eq. 1) retouches a raw photo R by chaining N pixel-wise, differentiable filters,
X_i = F_i(X_{i-1} | pi_i), A = X_N, "following EXPOSURE" (Hu et al., "Exposure: A White-Box
Photo Post-Processing Framework", 2018, `filters.py`, MIT licence). This module re-implements
those filters (DESIGN.md section 5, PIEA) in this order:

    exposure, gamma, white_balance, saturation, tone, contrast, black_and_white, color

Every filter has unconstrained *raw* parameters (what PIEA's gradient step updates) and
*natural* parameters in the filter's own units (EV, gamma, gains, strengths, curve points),
obtained through `tanh_range`, `exp`, `sigmoid` or `tanh` as in EXPOSURE. Images are float32
NHWC RGB, nominally in [0, 1], of any size; parameters are per image in the batch.

- `apply(images, params)` runs the chain on natural parameters (the JSON recipe of PIEA);
- `apply_raw(images, raw)` = `apply(images, natural_parameters(raw))`, the path PIEA optimises;
- `initial_raw_parameters(batch)` leaves photos unchanged to within 1/255, except exposure,
  which starts at +1 EV as in EXPOSURE;
- `identity_parameters()` are natural parameters that leave a photo exactly as it is, and
  `adjustments(params)` names, in a photographer's units, only the filters whose effect on
  some colour reaches 1/255 (ours: the recipe lists what was done, not every setting).

Speed (PIEA runs the chain forward and backward at every iteration, at full size): the filters
compute in planar layout [batch, 3, h, w] (`to_planar`), where mixing the three channels of a
pixel (slices, one-channel maps, channel sums) is several times cheaper on a CPU than with
channels innermost. Exposure, gamma and white balance run as one pass on the photo's logs
(`planar_logs`, which PIEA takes once per photo; `apply_planar_logs`), contrast and black &
white as another, and every pass of the chain has a written-out gradient. Each of these is
tested against the plain formulas and TensorFlow's autodiff of them.
"""
import abc
import math

import numpy as np
import tensorflow as tf

from datasets.images import LUMINANCE_WEIGHTS  # EXPOSURE's rgb2lum, one definition

FILTER_NAMES = ("exposure", "gamma", "white_balance", "saturation", "tone", "contrast",
                "black_and_white", "color")
CURVE_STEPS = 8
EXPOSURE_RANGE = 3.5  # EV
GAMMA_RANGE = 3.0
WHITE_BALANCE_LOG_RANGE = 0.5
TONE_RANGE = (0.5, 2.0)
COLOR_RANGE = (0.9, 1.1)
_OPEN = 1e-6  # raw_from_natural clips into the open range by this much


def tanh_range(x, low, high):
    """EXPOSURE's tanh_range: maps R onto the open interval (low, high)."""
    return (tf.tanh(x) / 2 + 0.5) * (high - low) + low


def to_planar(images):
    """NHWC [batch, h, w, 3] -> planar [batch, 3, h, w], the layout the filters compute in."""
    return tf.transpose(tf.convert_to_tensor(images, tf.float32), [0, 3, 1, 2])


def from_planar(planes):
    """Planar [batch, 3, h, w] -> NHWC [batch, h, w, 3]."""
    return tf.transpose(planes, [0, 2, 3, 1])


def luminance(x):
    """0.27 R + 0.67 G + 0.06 B over the last axis, (..., 3) -> (..., 1)."""
    x = tf.convert_to_tensor(x, tf.float32)
    r, g, b = x[..., 0:1], x[..., 1:2], x[..., 2:3]
    return LUMINANCE_WEIGHTS[0] * r + LUMINANCE_WEIGHTS[1] * g + LUMINANCE_WEIGHTS[2] * b


_LUMINANCE_PLANES = np.reshape(LUMINANCE_WEIGHTS, (1, 3, 1, 1)).astype(np.float32)


def _at_least(x, limit):
    """max(x, limit) as limit + relu(x - limit): same values and gradient, several times
    cheaper than tf.maximum's gradient (which also reduces over the broadcast constant) on a
    CPU."""
    return limit + tf.nn.relu(x - limit)


def _clip(x, low, high):
    """tf.clip_by_value's values in one pass (tf.clip_by_value is a minimum and a maximum), for
    the written-out gradients below (the raw op has no gradient of its own)."""
    return tf.raw_ops.ClipByValue(t=x, clip_value_min=np.float32(low),
                                  clip_value_max=np.float32(high))


def _channel_sum(planes):
    """Sum over the 3 channel planes, [batch, 3, h, w] -> [batch, 1, h, w] (one reduction:
    cheaper than three slices and two sums)."""
    return tf.reduce_sum(planes, axis=1, keepdims=True)


@tf.custom_gradient
def _saturate(planes, strength):
    """The saturation filter on planar images (`Saturation`): with x = min(img, 1),
    out_c = x_c - c f_c, c = p k min, f_c = (v - x_c) / (v - min + gray) + gray (0, 1, 1)_c.
    Written with a = c / (v - min + gray) and t = c gray as out = x (1 + a) - (a v, a v + t,
    a v + t): one-channel maps and four full-size operations.

    The gradient is written out (chain rule through v = max and min, split between tied
    channels as tf.reduce_max's is): TensorFlow's own backward pass of the max and min costs
    several times more on a CPU. Masks are applied with tf.where, one full-size operation
    instead of a cast and a multiply.
    """
    x = tf.minimum(planes, 1.0)
    value = tf.reduce_max(x, axis=1, keepdims=True)
    low = tf.reduce_min(x, axis=1, keepdims=True)
    gray = tf.cast(value <= low, tf.float32)
    denominator = value - low + gray
    from_half = 0.5 - value
    k = (0.5 - tf.abs(from_half)) * 0.8
    strength_low = strength * low
    coefficient = strength_low * k
    a = coefficient / denominator
    shift = a * value
    tinted = shift + coefficient * gray  # grays have hue 0 (red): green and blue are lowered
    out = x * (1 + a) - tf.concat([shift, tinted, tinted], axis=1)

    def gradient(upstream):
        total = _channel_sum(upstream)
        d_a = _channel_sum(upstream * x) - total * value
        d_over_denominator = d_a / denominator
        d_coefficient = d_over_denominator - (total - upstream[:, 0:1]) * gray  # green + blue
        d_denominator_neg = d_over_denominator * a
        d_strength = tf.reduce_sum(d_coefficient * (k * low), axis=[1, 2, 3], keepdims=True)
        d_value = (d_coefficient * strength_low * (0.8 * tf.sign(from_half))
                   - total * a - d_denominator_neg)
        d_low = d_denominator_neg + d_coefficient * (strength * k)
        # tf.reduce_max / reduce_min's gradient: shared evenly between tied channels. A gray
        # pixel's channels are all both the max and the min.
        is_high, is_low = tf.equal(x, value), tf.equal(x, low)
        low_share = d_low / _channel_sum(tf.cast(is_low, tf.float32))
        high_share = d_value / _channel_sum(tf.cast(is_high, tf.float32)) + gray * low_share
        d_x = upstream * (1 + a) + tf.where(is_high, high_share, tf.where(is_low, low_share, 0.0))
        return tf.where(planes <= 1.0, d_x, 0.0), d_strength  # min(planes, 1)'s gradient

    return out, gradient


_LOG_GAMMA_FLOOR = math.log(0.001)  # the gamma filter's max(x, 0.001), in logs
_TINY = np.finfo(np.float32).tiny


def planar_logs(images):
    """NHWC images -> log(max(x, tiny)) in planar layout [batch, 3, h, w]: all the filter chain
    reads of a photo (`apply_planar_logs`). Values <= 0 become log(tiny), which exposure and
    gamma clip like 0."""
    return tf.math.log(tf.maximum(to_planar(images), _TINY))


@tf.custom_gradient
def _exposure_gamma_white_balance(logs, exposure, gamma, gains):
    """Exposure, gamma and white balance (`Exposure`, `Gamma`, `WhiteBalance`) in one pass,
    from the photo's planar logs (`planar_logs`), with a written-out gradient:
    s_c max(x 2^p, 0.001)^g = exp(g max(log x + p ln 2, ln 0.001) + ln s_c)
                            = exp(g max(log x, ln 0.001 - p ln 2) + (g p ln 2 + ln s_c)).
    Four full-size operations forward instead of seven, and no logarithm: PIEA takes the
    photo's logs once, not at every iteration.
    """
    floor = _LOG_GAMMA_FLOOR - exposure * math.log(2)
    clipped = tf.maximum(logs, floor)
    out = tf.exp(gamma * clipped + (gamma * exposure * math.log(2) + tf.math.log(gains)))

    def gradient(upstream):
        d_exponent = upstream * out
        d_sum = tf.reduce_sum(d_exponent, axis=[2, 3], keepdims=True)
        d_gains = d_sum / gains
        d_gamma = (tf.reduce_sum(d_exponent * clipped, axis=[1, 2, 3], keepdims=True)
                   + exposure * math.log(2) * tf.reduce_sum(d_sum, axis=1, keepdims=True))
        # Where exposure and gamma clip (tf.maximum takes the floor's side), out depends on
        # neither the photo nor the exposure. PIEA needs no d_logs: it is left out then.
        d_unclipped = tf.where(logs >= floor, d_exponent, 0.0)
        d_exposure = (math.log(2) * gamma
                      * tf.reduce_sum(d_unclipped, axis=[1, 2, 3], keepdims=True))
        return d_unclipped * gamma, d_exposure, d_gamma, d_gains

    return out, gradient


@tf.custom_gradient
def _contrast_and_black_and_white(planes, contrast, mono):
    """The contrast filter with strength `contrast`, then black & white with strength `mono`
    (`Contrast`, `BlackAndWhite`), on planar images, in one pass with a written-out gradient.

    Contrast scales each pixel by factor = lerp(1, L' / (L + 1e-6), contrast), L the clipped
    luminance (img / (L + 1e-6) L' = img (L' / (L + 1e-6)): a one-channel ratio). Luminance
    is linear, so the luminance of its output is factor * lum, and black & white then gives
    out = factor * lerp(x, lum, mono), with lum the (unclipped) luminance of the input: one
    luminance instead of two, and two full-size operations after it.
    Either strength 0 leaves that filter out exactly.
    """
    lum = tf.reduce_sum(planes * _LUMINANCE_PLANES, axis=1, keepdims=True)
    clipped = _clip(lum, 0, 1)
    shifted = clipped + 1e-6
    ratio = (0.5 - tf.cos(math.pi * clipped) / 2) / shifted
    ratio_minus_1 = ratio - 1
    factor = 1 + contrast * ratio_minus_1
    mono_factor = factor * mono
    kept = factor - mono_factor  # out = factor ((1 - mono) x + mono lum)
    out = planes * kept + mono_factor * lum

    def gradient(upstream):
        up_sum = _channel_sum(upstream)
        up_x = _channel_sum(upstream * planes)
        towards_gray = up_sum * lum - up_x
        d_factor = up_x + mono * towards_gray
        d_contrast = tf.reduce_sum(d_factor * ratio_minus_1, axis=[1, 2, 3], keepdims=True)
        d_mono = tf.reduce_sum(factor * towards_gray, axis=[1, 2, 3], keepdims=True)
        ratio_slope = (math.pi / 2 * tf.sin(math.pi * clipped) - ratio) / shifted
        # clip_by_value's gradient: through where 0 <= lum <= 1, that is where clipped == lum.
        d_clipped = tf.where(clipped == lum, d_factor * contrast * ratio_slope, 0.0)
        d_lum = d_clipped + mono_factor * up_sum
        d_planes = upstream * kept + d_lum * _LUMINANCE_PLANES
        return d_planes, d_contrast, d_mono

    return out, gradient


def _per_image(natural):
    """[batch] -> [batch, 1, 1, 1] and [batch, 3] -> [batch, 3, 1, 1], to broadcast over planes."""
    natural = tf.convert_to_tensor(natural, tf.float32)
    return natural[:, :, None, None] if natural.shape.rank > 1 else natural[:, None, None, None]


_SEGMENTS = CURVE_STEPS + 2  # the curve's 8 segments, and constant ones below 0 and above 1
# 1/8 (1 + 2^-23), the float32 just above 1/8: floor(x / it) is the segment of x, with x = 1 on
# the last one, as clip_by_value's gradient has it.
_SEGMENT_WIDTH = np.nextafter(np.float32(1 / CURVE_STEPS), np.float32(1))
_LANES = 2  # copies of the curve tables (`_curve_lookup`)


def _curve(planes, points):
    """EXPOSURE's piecewise-linear curve: sum_i clip(x - i/8, 0, 1/8) t_i 8 / sum_i t_i.

    `points` is [batch, 1 or 3, CURVE_STEPS]: one curve for all channels (tone) or one per
    channel (colour). Computed as the same function in closed form, several times cheaper than
    the eight clipped segments: on segment k = floor(8 x) in 0..7, out = start_k + (x - k/8)
    slope_k = base_k + x slope_k, slope_i = 8 t_i / sum t, start_k = sum_{i<k} slope_i / 8 and
    base_k = start_k - slope_k k / 8. Below 0 the curve is 0 and above 1 it is its end value
    (1): two more segments of slope 0, so that no clipping is needed.
    """
    batch = tf.shape(points)[0]
    points = tf.broadcast_to(points, [batch, 3, CURVE_STEPS])
    slopes = points * (CURVE_STEPS / (tf.reduce_sum(points, -1, keepdims=True) + 1e-30))
    starts = tf.math.cumsum(slopes, axis=-1, exclusive=True) / CURVE_STEPS
    bases = starts - slopes * (tf.range(CURVE_STEPS, dtype=tf.float32) / CURVE_STEPS)
    flat = tf.zeros([batch, 3, 1])
    end = starts[..., -1:] + slopes[..., -1:] / CURVE_STEPS
    return _curve_lookup(planes, tf.concat([flat, bases, end], -1),
                         tf.concat([flat, slopes, flat], -1))


@tf.custom_gradient
def _curve_lookup(planes, bases, slopes):
    """out = base_k + x slope_k per pixel and channel plane ([batch, 3, _SEGMENTS] tables,
    segment -1 below 0, then 0..7, then 8 above 1).

    Both numbers come from one gather of a complex table (base + i slope): on a CPU a gather
    costs several full-size operations, and one of 8-byte values costs about the same as one of
    4-byte values. It is a GatherNd, whose CPU kernel does this about twice as fast as
    GatherV2's. The gradient is written out so that the per-segment sums use DenseBincount,
    several times faster on a CPU than the unsorted_segment_sum of tf.gather's own gradient.

    The tables are held in _LANES copies, used in turn along each row: DenseBincount's loop
    then never adds to the same bin twice in a row (neighbouring pixels mostly share a
    segment), which makes it about a third faster.
    """
    batch, width = tf.shape(bases)[0], tf.shape(planes)[3]
    tables = batch * 3 * _SEGMENTS  # in one copy
    segment = _clip(tf.math.floordiv(planes, _SEGMENT_WIDTH), -1, CURVE_STEPS)  # one pass each
    first = (tf.range(batch)[:, None] * 3 + tf.range(3))[:, :, None, None] * _SEGMENTS + 1
    lane = tf.range(width) % _LANES * tables
    index = (first + lane) + tf.cast(segment, tf.int32)  # into the flattened tables
    table = tf.tile(tf.reshape(tf.complex(bases, slopes), [-1]), [_LANES])
    here = tf.gather_nd(table, index[..., None])
    slope_here = tf.math.imag(here)
    out = tf.math.real(here) + planes * slope_here

    def gradient(upstream):
        def per_segment(weights):  # the raw op: tf.math.bincount also checks the indices
            sums = tf.raw_ops.DenseBincount(input=tf.reshape(index, [-1]), size=_LANES * tables,
                                            weights=tf.reshape(weights, [-1]))
            return tf.reduce_sum(tf.reshape(sums, [_LANES, batch, 3, _SEGMENTS]), 0)

        return upstream * slope_here, per_segment(upstream), per_segment(upstream * planes)

    return out, gradient


def _inverse_tanh_range(natural, low, high):
    t = 2 * (np.asarray(natural, np.float64) - low) / (high - low) - 1
    return np.arctanh(np.clip(t, -1 + _OPEN, 1 - _OPEN)).astype(np.float32)


def _logit(p):
    p = np.clip(np.asarray(p, np.float64), _OPEN, 1 - _OPEN)
    return np.log(p / (1 - p)).astype(np.float32)


def _numbers(values):
    return " ".join(f"{v:.2f}" for v in np.ravel(values))


UNCHANGED_TOLERANCE = 1 / 255  # an effect below one 8-bit level is no edit (`adjustments`)
_CHANNELS = ("red", "green", "blue")


def _curve_knots(points):
    """A curve's output at the inputs i/8, i = 1..7 (in [0, 1]), and the largest |output - input|
    there. The curve is piecewise linear between these knots and fixed at 0 and 1, so that is
    its largest change of any value."""
    points = np.asarray(points, np.float64)
    levels = np.arange(1, CURVE_STEPS) / CURVE_STEPS
    outputs = np.cumsum(points)[:-1] / points.sum()
    return outputs, float(np.max(np.abs(outputs - levels)))


def _moved_points(points):
    """The knots of a curve that moved by UNCHANGED_TOLERANCE or more, as "input% -> output%"."""
    outputs, _ = _curve_knots(points)
    levels = np.arange(1, CURVE_STEPS) / CURVE_STEPS
    return ", ".join(f"{100 * level:g}% -> {100 * out:.1f}%" for level, out in zip(levels, outputs)
                     if abs(out - level) >= UNCHANGED_TOLERANCE)


class Filter(abc.ABC):
    """One of EXPOSURE's filters; stateless. Subclasses define the mapping and the formula."""

    name = None
    title = None
    param_shape = ()
    initial_natural = None  # None: raw 0 (mid-range); else initial_raw() = raw_from_natural(it)
    identity = None  # the natural value (per element) that leaves every photo as it is

    def initial_raw(self):
        if self.initial_natural is None:
            return np.zeros(self.param_shape, np.float32)
        return self.raw_from_natural(np.full(self.param_shape, self.initial_natural, np.float32))

    @abc.abstractmethod
    def natural(self, raw):
        """Raw values [batch, *param_shape] -> natural units, same shape (tf.Tensor)."""

    @abc.abstractmethod
    def raw_from_natural(self, natural):
        """NumPy inverse of `natural`."""

    @abc.abstractmethod
    def process_planar(self, planes, natural):
        """The filter on planar images [batch, 3, h, w] with natural parameters [batch, ...]."""

    def process(self, images, natural):
        """The filter on NHWC images [batch, h, w, 3] with natural parameters [batch, ...]."""
        return from_planar(self.process_planar(to_planar(images), natural))

    @abc.abstractmethod
    def describe(self, natural):
        """One photo's natural parameters in words and numbers (EXPOSURE's notation)."""

    @abc.abstractmethod
    def adjustment(self, natural):
        """One photo's natural parameters as an edit, in a photographer's units (`adjustments`)."""

    def __repr__(self):
        return f"<Filter {self.name}>"


class Exposure(Filter):
    """p = tanh_range(raw, -3.5, 3.5) EV; out = img * 2^p. Starts at +1 EV as in EXPOSURE."""

    name, title, initial_natural, identity = "exposure", "Exposure", 1.0, 0.0

    def natural(self, raw):
        return tanh_range(tf.convert_to_tensor(raw, tf.float32), -EXPOSURE_RANGE, EXPOSURE_RANGE)

    def raw_from_natural(self, natural):
        return _inverse_tanh_range(natural, -EXPOSURE_RANGE, EXPOSURE_RANGE)

    def process_planar(self, planes, natural):
        return planes * tf.pow(2.0, _per_image(natural))

    def describe(self, natural):
        return f"{self.title} {float(natural):+.2f} EV"

    def adjustment(self, natural):
        return self.describe(natural)


class Gamma(Filter):
    """g = exp(tanh_range(raw, -ln 3, ln 3)); out = max(img, 0.001)^g."""

    name, title, identity = "gamma", "Gamma", 1.0

    def natural(self, raw):
        log_range = math.log(GAMMA_RANGE)
        return tf.exp(tanh_range(tf.convert_to_tensor(raw, tf.float32), -log_range, log_range))

    def raw_from_natural(self, natural):
        log_range = math.log(GAMMA_RANGE)
        return _inverse_tanh_range(np.log(np.asarray(natural, np.float64)), -log_range, log_range)

    def process_planar(self, planes, natural):
        # exp(g log x) is max(x, 0.001)^g, about three times cheaper than tf.pow forward and
        # backward on a CPU.
        return tf.exp(_per_image(natural) * tf.math.log(_at_least(planes, 0.001)))

    def describe(self, natural):
        return f"{self.title} 1/{1 / float(natural):.2f}"  # EXPOSURE writes gamma as 1/(1/g)

    def adjustment(self, natural):
        g = float(natural)
        return f"{self.title} {g:.2f} (midtones {'darker' if g > 1 else 'brighter'})"


class WhiteBalance(Filter):
    """s = exp(tanh_range(raw * (0, 1, 1), -0.5, 0.5)); s /= 1e-5 + lum(s); out = img * s.

    EXPOSURE's ImprovedWhiteBalanceFilter: the red raw value is masked to 0, so the natural
    parameters are the three gains after normalisation by their luminance.
    """

    name, title, param_shape, identity = "white_balance", "White balance", (3,), 1.0
    MASK = (0.0, 1.0, 1.0)

    def natural(self, raw):
        raw = tf.convert_to_tensor(raw, tf.float32) * tf.constant(self.MASK)
        gains = tf.exp(tanh_range(raw, -WHITE_BALANCE_LOG_RANGE, WHITE_BALANCE_LOG_RANGE))
        return gains / (1e-5 + luminance(gains))

    def raw_from_natural(self, natural):
        """Raw values (red 0) reproducing the normalised gains; only their ratios to red matter."""
        natural = np.asarray(natural, np.float64)
        log_gains = np.log(natural / natural[..., :1])
        raw = _inverse_tanh_range(log_gains, -WHITE_BALANCE_LOG_RANGE, WHITE_BALANCE_LOG_RANGE)
        raw[..., 0] = 0
        return raw

    def process_planar(self, planes, natural):
        return planes * _per_image(natural)

    def describe(self, natural):
        r, g, b = np.ravel(natural)
        return f"{self.title} R x{r:.2f} G x{g:.2f} B x{b:.2f}"

    def adjustment(self, natural):
        gains = ", ".join(f"{channel} {100 * (float(gain) - 1):+.1f}%"
                          for channel, gain in zip(_CHANNELS, np.ravel(natural)))
        return f"{self.title}: {gains}"


class Saturation(Filter):
    """p = sigmoid(raw); x = min(img, 1); in HSV s' = s + (1 - s)(0.5 - |0.5 - v|) 0.8;
    out = lerp(x, hsv_to_rgb(h, s', v), p). Starts at p = 0.01 (at most 0.002 change).

    The HSV round trip keeps h and v, so it is computed in closed form. In the hexcone model
    each channel is c = v - v s f_c(h) with f_c = (v - c) / (v - min) depending on the hue
    only; v s' = (v - min) + min k with k = (0.5 - |0.5 - v|) 0.8, so the new channel is
    c' = v - (v - min + min k) f_c = c - min k f_c, and out = x - p k min f. Grays (v = min)
    have hue 0, f = (0, 1, 1), as in tf.image.rgb_to_hsv, so they take a red tint with s' = k
    exactly as EXPOSURE's filter does.
    """

    name, title, initial_natural, identity = "saturation", "Saturation", 0.01, 0.0

    def natural(self, raw):
        return tf.sigmoid(tf.convert_to_tensor(raw, tf.float32))

    def raw_from_natural(self, natural):
        return _logit(natural)

    def process_planar(self, planes, natural):
        return _saturate(planes, _per_image(natural))

    def describe(self, natural):
        return f"{self.title} +{100 * float(natural):.1f}%"

    def adjustment(self, natural):
        return self.describe(natural)


class Tone(Filter):
    """t_i = tanh_range(raw_i, 0.5, 2), i < 8; out = sum_i clip(img - i/8, 0, 1/8) t_i 8 / sum t.

    Equal t_i (raw 0) is the identity on [0, 1]; the curve clips to [0, 1].
    """

    name, title, param_shape, identity = "tone", "Tone curve", (CURVE_STEPS,), 1.0

    def natural(self, raw):
        return tanh_range(tf.convert_to_tensor(raw, tf.float32), *TONE_RANGE)

    def raw_from_natural(self, natural):
        return _inverse_tanh_range(natural, *TONE_RANGE)

    def process_planar(self, planes, natural):
        return _curve(planes, tf.convert_to_tensor(natural, tf.float32)[:, None, :])

    def describe(self, natural):
        return f"{self.title} {_numbers(natural)}"

    def adjustment(self, natural):
        return f"{self.title}: {_moved_points(natural)}"


class Contrast(Filter):
    """p = tanh(raw); L = clip(lum, 0, 1); L' = -cos(pi L)/2 + 1/2;
    out = lerp(img, img / (L + 1e-6) * L', p)."""

    name, title, identity = "contrast", "Contrast", 0.0

    def natural(self, raw):
        return tf.tanh(tf.convert_to_tensor(raw, tf.float32))

    def raw_from_natural(self, natural):
        return np.arctanh(np.clip(np.asarray(natural, np.float64), -1 + _OPEN, 1 - _OPEN)
                          ).astype(np.float32)

    def process_planar(self, planes, natural):
        return _contrast_and_black_and_white(planes, _per_image(natural), tf.zeros([1, 1, 1, 1]))

    def describe(self, natural):
        return f"{self.title} {float(natural):+.2f}"

    def adjustment(self, natural):
        return f"{self.title} {100 * float(natural):+.1f}%"


class BlackAndWhite(Filter):
    """p = sigmoid(raw); out = lerp(img, lum, p). Starts at p = 0.002."""

    name, title, initial_natural, identity = "black_and_white", "Black & white", 0.002, 0.0

    def natural(self, raw):
        return tf.sigmoid(tf.convert_to_tensor(raw, tf.float32))

    def raw_from_natural(self, natural):
        return _logit(natural)

    def process_planar(self, planes, natural):
        return _contrast_and_black_and_white(planes, tf.zeros([1, 1, 1, 1]), _per_image(natural))

    def describe(self, natural):
        return f"{self.title} {100 * float(natural):.1f}%"

    def adjustment(self, natural):
        return f"{self.title} {100 * float(natural):.1f}% (colours mixed towards gray)"


class Color(Filter):
    """c_{k,i} = tanh_range(raw, 0.9, 1.1), 3 x 8: the tone curve per channel k."""

    name, title, param_shape, identity = "color", "Colour curves", (3, CURVE_STEPS), 1.0

    def natural(self, raw):
        return tanh_range(tf.convert_to_tensor(raw, tf.float32), *COLOR_RANGE)

    def raw_from_natural(self, natural):
        return _inverse_tanh_range(natural, *COLOR_RANGE)

    def process_planar(self, planes, natural):
        return _curve(planes, tf.convert_to_tensor(natural, tf.float32))

    def describe(self, natural):
        curves = np.reshape(natural, self.param_shape)
        return f"{self.title} " + "  ".join(
            f"{channel}: {_numbers(curve)}" for channel, curve in zip("RGB", curves))

    def adjustment(self, natural):
        curves = np.reshape(natural, self.param_shape)
        moved = [f"{channel} {_moved_points(curve)}" for channel, curve in zip(_CHANNELS, curves)
                 if _curve_knots(curve)[1] >= UNCHANGED_TOLERANCE]
        return f"{self.title}: " + "; ".join(moved)


FILTERS = (Exposure(), Gamma(), WhiteBalance(), Saturation(), Tone(), Contrast(),
           BlackAndWhite(), Color())
FILTERS_BY_NAME = {f.name: f for f in FILTERS}
assert tuple(FILTERS_BY_NAME) == FILTER_NAMES


def _check_names(params):
    missing = [name for name in FILTER_NAMES if name not in params]
    unknown = [name for name in params if name not in FILTERS_BY_NAME]
    if missing or unknown:
        raise KeyError(f"filter parameters need exactly {FILTER_NAMES}; "
                       f"missing {missing}, unknown {unknown}")


def _batched(name, value, batch=None):
    """One filter's parameters as float32 [batch or 1, *param_shape]; one photo's are shared."""
    shape = FILTERS_BY_NAME[name].param_shape
    value = tf.convert_to_tensor(value, tf.float32)
    if value.shape.rank == len(shape):
        value = value[None]
    ok = value.shape.rank == len(shape) + 1 and value.shape[1:] == shape
    if ok and batch is not None and value.shape[0] is not None:
        ok = value.shape[0] in (1, batch)
    if not ok:
        raise ValueError(f"{name}: parameters must have shape [batch, *{shape}] or {shape}"
                         f"{'' if batch is None else f' with batch {batch}'}, got {value.shape}")
    return value


def initial_raw_parameters(batch_size):
    """name -> float32 [batch_size, *param_shape] raw values of the initial filters."""
    return {f.name: np.tile(f.initial_raw()[None], (batch_size,) + (1,) * len(f.param_shape))
            for f in FILTERS}


def natural_parameters(raw):
    """name -> raw [batch, *param_shape]  to  name -> natural tf.Tensor of the same shape."""
    _check_names(raw)
    return {f.name: f.natural(_batched(f.name, raw[f.name])) for f in FILTERS}


def apply(images, params):
    """Eq. 1: the eight filters in order on natural parameters (all eight names needed), on
    NHWC images [batch, h, w, 3].

    Values are per image, [batch, *param_shape], or one photo's param_shape (a bare scalar for
    the scalar filters) applied to the whole batch.
    """
    return from_planar(apply_planar_logs(planar_logs(images), params))


def apply_planar_logs(logs, params):
    """`apply` on a photo's planar logs (`planar_logs`), giving planar images [batch, 3, h, w]:
    what PIEA runs at every iteration, with the logs taken once and one transpose fewer.

    Exposure, gamma and white balance run in one pass, and so do contrast and black & white
    (their fused functions above); the other filters one by one.
    """
    _check_names(params)
    logs = tf.convert_to_tensor(logs, tf.float32)
    natural = {name: _batched(name, value, logs.shape[0]) for name, value in params.items()}
    planes = None
    for f in FILTERS:
        with tf.name_scope(f.name):
            if f.name == "exposure":  # and gamma and white balance, the next two
                planes = _exposure_gamma_white_balance(
                    logs, _per_image(natural["exposure"]), _per_image(natural["gamma"]),
                    _per_image(natural["white_balance"]))
            elif f.name == "contrast":  # and black & white, the next one
                planes = _contrast_and_black_and_white(
                    planes, _per_image(natural["contrast"]),
                    _per_image(natural["black_and_white"]))
            elif f.name not in ("gamma", "white_balance", "black_and_white"):
                planes = f.process_planar(planes, natural[f.name])
    return planes


def apply_raw(images, raw):
    """apply(images, natural_parameters(raw)): differentiable in the raw values PIEA updates."""
    return apply(images, natural_parameters(raw))


def apply_raw_planar_logs(logs, raw):
    """apply_planar_logs(logs, natural_parameters(raw)), the path PIEA optimises."""
    return apply_planar_logs(logs, natural_parameters(raw))


def _one_photo(name, value):
    shape = FILTERS_BY_NAME[name].param_shape
    value = np.asarray(value, np.float32)
    if value.shape == (1,) + shape:
        value = value[0]
    if value.shape != shape:
        raise ValueError(f"{name}: one photo's parameters must have shape {shape}, "
                         f"got {value.shape}")
    return value


def describe(params):
    """One photo's natural parameters -> one line of words and numbers per filter, in order."""
    _check_names(params)
    return [f.describe(_one_photo(f.name, params[f.name])) for f in FILTERS]


def to_jsonable(params):
    """One photo's natural parameters -> name -> float or nested lists (exact for float32)."""
    _check_names(params)
    return {f.name: _one_photo(f.name, params[f.name]).tolist() for f in FILTERS}


def from_jsonable(obj):
    """Inverse of to_jsonable: name -> float32 array of param_shape."""
    _check_names(obj)
    return {f.name: _one_photo(f.name, obj[f.name]) for f in FILTERS}


def identity_parameters():
    """One photo's natural parameters that leave it exactly as it is (exposure 0 EV, gamma 1,
    white-balance gains 1, saturation 0, flat tone and colour curves, contrast 0, black & white
    0): what PIEA returns when the input itself is the best candidate. `apply` with them
    changes only values below 0.001 (gamma's floor). The initial parameters differ from these
    by less than 1/255 in effect, exposure aside (`initial_raw_parameters`)."""
    return {f.name: np.full(f.param_shape, f.identity, np.float32) for f in FILTERS}


# Every colour of a 9 x 9 x 9 grid on [0, 1]: the curves' knots i/8 are among its levels.
_REFERENCE_LEVELS = np.arange(CURVE_STEPS + 1, dtype=np.float32) / CURVE_STEPS
_REFERENCE_COLOURS = np.stack(np.meshgrid(*[_REFERENCE_LEVELS] * 3, indexing="ij"),
                              -1).reshape(1, 27, 27, 3)


def effect(name, value):
    """The largest change that filter `name` with one photo's natural parameters `value`,
    alone (the other filters identity), makes to any colour of a 9-level RGB grid, after
    clipping to [0, 1] as the written photo is; measured against the identity's rendering, so
    gamma's floor of 0.001 (`identity_parameters`) counts for nothing."""
    params = identity_parameters()
    unchanged = np.asarray(apply(_REFERENCE_COLOURS, params))
    params[name] = _one_photo(name, value)
    rendered = np.asarray(apply(_REFERENCE_COLOURS, params))
    return float(np.max(np.abs(np.clip(rendered, 0.0, 1.0) - np.clip(unchanged, 0.0, 1.0))))


def adjustments(params, tolerance=UNCHANGED_TOLERANCE):
    """One photo's natural parameters -> [(filter name, words)] for the filters whose `effect`
    reaches `tolerance` (default one 8-bit level), in filter order and a photographer's units:
    exposure in EV, gamma, white-balance gains and saturation, contrast and black & white in
    percent, and tone and colour curves as the points that moved ("25% -> 28.3%": input level
    -> output level). An empty list: the parameters leave the photo as it is (ours, beyond
    EXPOSURE's `describe`, which lists every filter)."""
    _check_names(params)
    moved = []
    for f in FILTERS:
        value = _one_photo(f.name, params[f.name])
        if effect(f.name, value) >= tolerance:
            moved.append((f.name, f.adjustment(value)))
    return moved
