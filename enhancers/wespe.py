"""WESPE's networks (Ignatov et al., "WESPE: Weakly Supervised Photo Enhancer", section 3.6).

The paper adapts its networks from DPED (Ignatov et al., ICCV 2017, `models.py`), whose numbers
this module follows (DESIGN.md section 5, WESPE):

- `build_generator()`: G (source -> target domain) and the inverse generator F (target ->
  source) share this architecture: 9x9 conv 3 -> 64 + ReLU; four residual blocks of
  2 x [3x3 conv 64, instance norm, ReLU] with an identity skip; 2 x [3x3 conv 64 + ReLU]; 9x9
  conv 64 -> 3; output tanh(.) * 0.58 + 0.5. Fully convolutional with SAME padding: trained on
  100x100 patches, it enhances photos of any size.
- `build_discriminator(channels)`: D_c (channels 3, on Gaussian-blurred RGB, section 3.2) and
  D_t (channels 1, on grayscale, section 3.3): conv 11x11/4 48, 5x5/2 128, 3x3/1 192,
  3x3/1 192, 3x3/2 128, each followed by LeakyReLU(0.2) and (all but the first) instance norm,
  as DPED's `_conv_layer` orders them; fc 1024 + LeakyReLU(0.2); one sigmoid unit, the
  probability that the patch is a real target-domain photo. The fc layer fixes the patch size.
- `gaussian_blur` and `to_grayscale`: the discriminators' input transforms.

Initialisation is DPED's: kernels truncated normal with standard deviation 0.01, biases 0.01.
Instance norm is `GroupNormalization(groups=-1)`: per image and channel over H x W, with
epsilon 1e-3 and a learned scale and shift, exactly DPED's `_instance_norm`.
"""
import math

import keras
import numpy as np
import tensorflow as tf

from enhancers.can import SymmetricPadding2D
from enhancers.global_context import GlobalContext
from enhancers.leaky_relu import LeakyReLU

FILTERS = 64
GENERATOR_PADDINGS = ("zero", "symmetric")  # DPED's SAME zero padding; mirrored (not in paper)
RESIDUAL_BLOCKS = 4
OUTPUT_SCALE, OUTPUT_SHIFT = 0.58, 0.5  # DPED: tanh(.) * 0.58 + 0.5
# (kernel, stride, width, instance norm) of the five discriminator convolutions (section 3.6).
DISCRIMINATOR_CONVS = ((11, 4, 48, False), (5, 2, 128, True), (3, 1, 192, True),
                       (3, 1, 192, True), (3, 2, 128, True))
DISCRIMINATOR_FC = 1024
LEAKY_SLOPE = 0.2
BLUR_SIGMA = 3.0  # section 3.2, equation 2
BLUR_KERNEL_SIZE = 21  # DPED's gauss_kernel(21, 3, 3): +-10 pixels, about 3.3 sigma
INSTANCE_NORM_EPSILON = 1e-3
# ITU-R 601 luma, the weights of tf.image.rgb_to_grayscale that DPED applies before D_t.
GRAY_WEIGHTS = (0.2989, 0.5870, 0.1140)


def _initializers():
    return dict(
        kernel_initializer=keras.initializers.TruncatedNormal(stddev=0.01),
        bias_initializer=keras.initializers.Constant(0.01),
    )


def _conv(filters, size, name, strides=1, activation=None):
    return keras.layers.Conv2D(filters, size, strides=strides, padding="same",
                               activation=activation, name=name, **_initializers())


def _generator_conv(x, filters, size, name, padding, activation=None, zero_init=False):
    """A stride-1 conv of G: DPED's SAME zero padding, or mirrored borders (`padding`);
    `zero_init` starts kernel and bias at 0 instead of DPED's initialisation."""
    initializers = (dict(kernel_initializer="zeros", bias_initializer="zeros") if zero_init
                    else _initializers())
    if padding == "symmetric":
        x = SymmetricPadding2D(size // 2, name=f"{name}_pad")(x)
    return keras.layers.Conv2D(filters, size, padding="valid" if padding == "symmetric" else "same",
                               activation=activation, name=name, **initializers)(x)


def _instance_norm(name):
    return keras.layers.GroupNormalization(groups=-1, epsilon=INSTANCE_NORM_EPSILON, name=name)


def build_generator(filters=FILTERS, residual_blocks=RESIDUAL_BLOCKS, name="generator", *,
                    padding="zero", instance_norm=True, residual=False, global_context=False):
    """DPED's residual generator, used for both G and F (WESPE section 3.6).

    Maps float32 RGB images in [0, 1] of any size, (batch, h, w, 3), to images of the same size
    in [-0.08, 1.08] (tanh * 0.58 + 0.5, as DPED; clip for display). `filters` and
    `residual_blocks` default to the paper's 64 and 4; smaller values are for tests and demos.

    Not in the paper (its settings are the defaults), for short trainings on small patches:
    `padding="symmetric"` mirrors the borders before each convolution instead of DPED's SAME
    zero padding, whose black surround a G trained on patches carries into a photo as a dark
    frame; `instance_norm=False` leaves the residual blocks' instance norm out, whose
    statistics over a whole photo differ from those over a training patch, so that G computes
    the same function on a patch and on a photo (and is then purely local); `residual=True`
    adds the input to the output, enhanced = x + 0.58 tanh(conv_out), with conv_out starting at
    zero, so that G starts as the identity and learns only the correction (a clean photo then
    needs nothing learnt to pass unchanged; output range [-0.58, 1.58], clip for display);
    `global_context=True` modulates the features after the residual blocks by the photo's mean
    features (`GlobalContext`, starting as the identity), so that a purely local G can still
    tell a source-domain photo from a clean one and correct only the former.
    """
    if padding not in GENERATOR_PADDINGS:
        raise ValueError(f"padding must be one of {GENERATOR_PADDINGS}, got {padding!r}")
    images = keras.Input((None, None, 3), name="images")
    x = _generator_conv(images, filters, 9, "conv_in", padding, activation="relu")
    for block in range(1, residual_blocks + 1):
        skip = x
        for layer in (1, 2):
            x = _generator_conv(x, filters, 3, f"block{block}_conv{layer}", padding)
            if instance_norm:
                x = _instance_norm(f"block{block}_norm{layer}")(x)
            x = keras.layers.ReLU(name=f"block{block}_relu{layer}")(x)
        x = keras.layers.Add(name=f"block{block}_add")([x, skip])
    if global_context:
        x = GlobalContext(name="global_context")(x)
    x = _generator_conv(x, filters, 3, "conv_post1", padding, activation="relu")
    x = _generator_conv(x, filters, 3, "conv_post2", padding, activation="relu")
    x = _generator_conv(x, 3, 9, "conv_out", padding, zero_init=residual)
    # float32 output: the image stays exact under a mixed-precision policy.
    x = keras.layers.Activation("tanh", dtype="float32", name="tanh")(x)
    if residual:
        x = keras.layers.Rescaling(OUTPUT_SCALE, dtype="float32", name="correction")(x)
        enhanced = keras.layers.Add(dtype="float32", name="enhanced")([images, x])
    else:
        enhanced = keras.layers.Rescaling(OUTPUT_SCALE, offset=OUTPUT_SHIFT, dtype="float32",
                                          name="enhanced")(x)
    return keras.Model(images, enhanced, name=name)


def discriminator_feature_size(patch_size):
    """Side of the last conv map for a patch_size input (SAME padding): 100 -> 7."""
    side = patch_size
    for _, stride, _, _ in DISCRIMINATOR_CONVS:
        side = math.ceil(side / stride)
    return side


def build_discriminator(channels, patch_size=100, name=None):
    """DPED's discriminator as WESPE uses it for D_c (channels=3) and D_t (channels=1).

    Input: (batch, patch_size, patch_size, channels), the blurred RGB (`gaussian_blur`) or the
    grayscale (`to_grayscale`) patch. Output: (batch, 1) float32 sigmoid probability that the
    patch comes from the target domain (section 3.6: "the last layer with a sigmoid
    activation"). The fc layer sees a fixed 7x7x128 map at the paper's 100x100 patches.
    """
    if channels not in (1, 3):
        raise ValueError(f"channels must be 3 (colour, D_c) or 1 (texture, D_t), got {channels}")
    name = name or ("color_discriminator" if channels == 3 else "texture_discriminator")
    patches = keras.Input((patch_size, patch_size, channels), name="patches")
    x = patches
    for index, (size, stride, width, norm) in enumerate(DISCRIMINATOR_CONVS, start=1):
        x = _conv(width, size, f"conv{index}", strides=stride)(x)
        x = LeakyReLU(LEAKY_SLOPE, name=f"conv{index}_lrelu")(x)
        if norm:
            x = _instance_norm(f"conv{index}_norm")(x)
    x = keras.layers.Flatten(name="flatten")(x)
    x = keras.layers.Dense(DISCRIMINATOR_FC, name="fc", **_initializers())(x)
    x = LeakyReLU(LEAKY_SLOPE, name="fc_lrelu")(x)
    probability = keras.layers.Dense(1, activation="sigmoid", dtype="float32", name="probability",
                                     **_initializers())(x)
    return keras.Model(patches, probability, name=name)


def gaussian_kernel(size=BLUR_KERNEL_SIZE, sigma=BLUR_SIGMA):
    """The (size, size) Gaussian of equation 2, mu = 0, normalised to sum 1 (float32)."""
    offsets = np.arange(size, dtype=np.float64) - (size - 1) / 2.0
    one_d = np.exp(-(offsets**2) / (2.0 * sigma**2))
    kernel = np.outer(one_d, one_d)
    return (kernel / kernel.sum()).astype(np.float32)


def gaussian_blur(images, sigma=BLUR_SIGMA, size=BLUR_KERNEL_SIZE):
    """Equation 2: each channel convolved with the normalised Gaussian, reflect padding.

    The colour discriminator sees only this blurred image, so that it judges brightness,
    contrast and colours but not texture or content (section 3.2).
    """
    images = tf.convert_to_tensor(images)
    channels = images.shape[-1]
    kernel = tf.constant(gaussian_kernel(size, sigma), dtype=images.dtype)
    kernel = tf.tile(kernel[:, :, None, None], [1, 1, channels, 1])
    half = size // 2
    padded = tf.pad(images, [[0, 0], [half, half], [half, half], [0, 0]], mode="REFLECT")
    return tf.nn.depthwise_conv2d(padded, kernel, strides=[1, 1, 1, 1], padding="VALID")


def to_grayscale(images):
    """(batch, h, w, 3) RGB -> (batch, h, w, 1) luma, the texture discriminator's input (3.3)."""
    images = tf.convert_to_tensor(images)
    weights = tf.constant(GRAY_WEIGHTS, dtype=images.dtype)
    return tf.reduce_sum(images * weights, axis=-1, keepdims=True)
