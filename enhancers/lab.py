"""Differentiable sRGB <-> CIELab (D65), the colour space of EnhanceGAN's piecewise enhancer.

EnhanceGAN (Deng, Loy & Tang, ACM MM 2018, section 3.2.1) adjusts lighting on the L channel and
colour on the A and B channels of CIELab. Its Torch7 release converts with `image.rgb2lab` and
normalises every channel into about [0, 1] (`meanstd` in its `main.lua`):

    L / 100,  (A + 128) / 255,  (B + 128) / 255      (`normalise_lab`, `denormalise_lab`)

The conversion is scikit-image's (`skimage.color.rgb2lab` / `lab2rgb`), written in TensorFlow so
that gradients flow through it: sRGB with its linear segment near black, the sRGB -> XYZ matrix
of IEC 61966-2-1 (skimage's `xyz_from_rgb`), the D65 white of the 2-degree observer
(0.95047, 1, 1.08883), and CIE's cube root with its linear segment below (6/29)^3.

Gradients are finite everywhere, black and white included: each power (the sRGB 2.4 and 1/2.4
powers, the cube root and the cube) is evaluated only on inputs inside its own segment, every
other input being replaced by a point of that segment before the power, so that neither a
power of 0 (an infinite derivative) nor a power of a negative number (NaN) ever reaches the
gradient, even in the branch that `tf.where` discards.

Images are float32 NHWC (or any shape ending in 3 channels); RGB in [0, 1], L in [0, 100], A and
B about [-128, 127].
"""
import numpy as np
import tensorflow as tf

# sRGB (IEC 61966-2-1) -> CIE XYZ, scikit-image's `xyz_from_rgb`.
XYZ_FROM_RGB = np.array([[0.412453, 0.357580, 0.180423],
                         [0.212671, 0.715160, 0.072169],
                         [0.019334, 0.119193, 0.950227]])
RGB_FROM_XYZ = np.linalg.inv(XYZ_FROM_RGB)
D65_WHITE = (0.95047, 1.0, 1.08883)  # scikit-image's D65, 2-degree observer
# The sRGB transfer function's knots: encoded 0.04045 <-> linear 0.0031308.
SRGB_ENCODED_KNOT = 0.04045
SRGB_LINEAR_KNOT = 0.0031308
# CIE's f(t): cube root above (6/29)^3 = 0.008856, 7.787 t + 16/116 below (scikit-image's numbers).
LAB_T_KNOT = 0.008856
LAB_F_KNOT = 6.0 / 29.0  # f at the knot (scikit-image inverts at 0.2068966)
LAB_SLOPE = 7.787
LAB_OFFSET = 16.0 / 116.0
# The release's normalisation (main.lua, `meanstd`): (Lab - mean) / std.
LAB_MEAN = (0.0, -128.0, -128.0)
LAB_STD = (100.0, 255.0, 255.0)


def _matmul_channels(x, matrix):
    """x[..., i] -> sum_j matrix[i, j] x[..., j]."""
    return tf.tensordot(x, tf.constant(matrix.T, x.dtype), axes=[[-1], [0]])


def srgb_to_linear(rgb):
    """The sRGB decoding curve: c / 12.92 up to 0.04045, ((c + 0.055) / 1.055)^2.4 above."""
    rgb = tf.convert_to_tensor(rgb, tf.float32)
    upper = tf.maximum(rgb, SRGB_ENCODED_KNOT)  # the power sees only its own segment
    return tf.where(rgb > SRGB_ENCODED_KNOT, tf.pow((upper + 0.055) / 1.055, 2.4), rgb / 12.92)


def linear_to_srgb(linear):
    """The sRGB encoding curve: 12.92 c up to 0.0031308, 1.055 c^(1/2.4) - 0.055 above."""
    linear = tf.convert_to_tensor(linear, tf.float32)
    upper = tf.maximum(linear, SRGB_LINEAR_KNOT)  # no power of 0 (infinite derivative)
    return tf.where(linear > SRGB_LINEAR_KNOT, 1.055 * tf.pow(upper, 1.0 / 2.4) - 0.055,
                    12.92 * linear)


def _lab_f(t):
    upper = tf.maximum(t, LAB_T_KNOT)  # no cube root of 0 or of a negative number
    return tf.where(t > LAB_T_KNOT, tf.pow(upper, 1.0 / 3.0), LAB_SLOPE * t + LAB_OFFSET)


def _lab_f_inverse(f):
    upper = tf.maximum(f, LAB_F_KNOT)
    return tf.where(f > LAB_F_KNOT, tf.pow(upper, 3.0), (f - LAB_OFFSET) / LAB_SLOPE)


def rgb_to_lab(rgb):
    """sRGB in [0, 1] -> CIELab (L in [0, 100]), as `skimage.color.rgb2lab` (D65, 2 degrees).

    Values outside [0, 1] are converted by extending the curves (the linear segments continue
    below 0), never clipped.
    """
    linear = srgb_to_linear(rgb)
    xyz = _matmul_channels(linear, XYZ_FROM_RGB) / tf.constant(D65_WHITE, tf.float32)
    f = _lab_f(xyz)
    fx, fy, fz = f[..., 0], f[..., 1], f[..., 2]
    return tf.stack([116.0 * fy - 16.0, 500.0 * (fx - fy), 200.0 * (fy - fz)], axis=-1)


def lab_to_rgb(lab, clip=True):
    """CIELab -> sRGB, as `skimage.color.lab2rgb`: the inverse of `rgb_to_lab`.

    As scikit-image does, a negative Z (a B far beyond the gamut) is set to 0 and, with `clip`
    (the default), the result is clipped into [0, 1] (colours outside the sRGB gamut map onto
    its surface; their gradient is 0 in the clipped channels).
    """
    lab = tf.convert_to_tensor(lab, tf.float32)
    fy = (lab[..., 0] + 16.0) / 116.0
    fx = fy + lab[..., 1] / 500.0
    fz = fy - lab[..., 2] / 200.0
    fz = tf.maximum(fz, 0.0)  # scikit-image: z < 0 -> 0
    xyz = _lab_f_inverse(tf.stack([fx, fy, fz], axis=-1)) * tf.constant(D65_WHITE, tf.float32)
    rgb = linear_to_srgb(_matmul_channels(xyz, RGB_FROM_XYZ))
    return tf.clip_by_value(rgb, 0.0, 1.0) if clip else rgb


def normalise_lab(lab):
    """Lab -> the release's normalised Lab: L / 100, (A + 128) / 255, (B + 128) / 255."""
    lab = tf.convert_to_tensor(lab, tf.float32)
    return (lab - tf.constant(LAB_MEAN, tf.float32)) / tf.constant(LAB_STD, tf.float32)


def denormalise_lab(normalised):
    """The inverse of `normalise_lab`: 100 L, 255 A - 128, 255 B - 128."""
    normalised = tf.convert_to_tensor(normalised, tf.float32)
    return normalised * tf.constant(LAB_STD, tf.float32) + tf.constant(LAB_MEAN, tf.float32)


def rgb_to_normalised_lab(rgb):
    """sRGB in [0, 1] -> normalised Lab (each channel about [0, 1]), the release's input space."""
    return normalise_lab(rgb_to_lab(rgb))


def normalised_lab_to_rgb(normalised, clip=True):
    """Normalised Lab -> sRGB in [0, 1] (clipped unless `clip=False`)."""
    return lab_to_rgb(denormalise_lab(normalised), clip=clip)
