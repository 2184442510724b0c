"""EnhanceGAN's deep filtering-based enhancer (section 3.2.2; not in the authors' release).

    Phi(I; theta) = sum_i w_i phi_i(I),   theta = [w_1, ..., w_n] = G(I)      (equations 5-6)

Each phi_i is a 3-layer CNN trained first to mimic one colour filter (section 3.2.2,
Fig. 2c); the generator predicts the weights through a 1x1 convolution 2048 -> n + 1 whose
(n + 1)-th channel is the f x f score map of the top-K pooling, exactly as the colour head's
seventh channel is ("the (n + 1)th feature map is also a f x f softmax probability map for
Top-K average pooling"): the "+ 1" is the score map, not a bias or an identity filter.

The filters (footnote 3): Photoshop's Photo Filter "Cooling Filter (80)" #00b5ff, "Warming
Filter (85)" #ec8a00 and "Underwater" #00c2b1, at their default density 25% with "Preserve
Luminosity" on. Adobe does not publish the formula, so this package defines it
(`photo_filter`, ours):

    blend  = (1 - d) I + d c                     (towards the filter colour c at density d)
    output = clip(blend * Y(I) / Y(blend), 0, 1) (each pixel's luminance restored)

with Y the Rec. 601 luma 0.299 R + 0.587 G + 0.114 B on the sRGB values (the weights Photoshop
uses for luminosity). Y(blend) >= d Y(c) > 0 for these colours, so the ratio is always defined;
black stays black, and only the clip (a bright pixel pushed past 1) loses luminance.

The approximating network (`build_filter_network`, our choices where the paper gives only
"3-layer"): three convolutions 3 -> width -> width -> 3 with ReLU between, kernel size 1 by
default (the filters are pixel-wise, so a pixel-wise network computes the same function at
224 x 224 and at full size, without border effects; kernel_size=3 gives a spatial CNN), and a
residual output (input + the last layer's output, whose kernel starts at 0, so that the network
starts as the identity and learns the filter's change).

The weights: `filter_weights(raw, weighting)` maps the pooled head outputs to w. The paper
does not bound them; "linear" takes them as they are (the paper's letter), "softmax" (ours,
the default) makes a convex blend of the filtered images, so that the output stays a filtered
photo whatever the head predicts.
"""
import keras
import numpy as np
import tensorflow as tf

FILTER_COLORS = {
    "cooling_80": "#00b5ff",
    "warming_85": "#ec8a00",
    "underwater": "#00c2b1",
}
FILTER_NAMES = tuple(FILTER_COLORS)
DEFAULT_DENSITY = 0.25
LUMA_WEIGHTS = (0.299, 0.587, 0.114)  # Rec. 601
FILTER_WEIGHTINGS = ("softmax", "linear")
FILTER_WIDTH = 32


def hex_to_rgb(code):
    """"#rrggbb" -> (r, g, b) floats in [0, 1]."""
    code = code.lstrip("#")
    return tuple(int(code[i:i + 2], 16) / 255.0 for i in (0, 2, 4))


def luma(images):
    """Rec. 601 luma over the last axis, (..., 3) -> (..., 1)."""
    images = tf.convert_to_tensor(images, tf.float32)
    return tf.reduce_sum(images * tf.constant(LUMA_WEIGHTS, tf.float32), axis=-1, keepdims=True)


def photo_filter(images, color, density=DEFAULT_DENSITY, preserve_luminosity=True):
    """Our definition of Photoshop's Photo Filter (module docstring) on RGB in [0, 1].

    color: "#rrggbb", a name of FILTER_COLORS, or an RGB triple in [0, 1].
    """
    images = tf.convert_to_tensor(images, tf.float32)
    if isinstance(color, str):
        color = hex_to_rgb(FILTER_COLORS.get(color, color))
    color = tf.constant(np.asarray(color, np.float32))
    blend = (1.0 - density) * images + density * color
    if preserve_luminosity:
        blend = blend * luma(images) / luma(blend)
    return tf.clip_by_value(blend, 0.0, 1.0)


def apply_named_filters(images, names=FILTER_NAMES, density=DEFAULT_DENSITY):
    """The reference filters, one per name: a list of filtered images (the targets the filter
    networks learn to mimic)."""
    return [photo_filter(images, name, density) for name in names]


def build_filter_network(name="filter", width=FILTER_WIDTH, kernel_size=1):
    """The 3-layer CNN phi_i that approximates one colour filter (module docstring): RGB in
    [0, 1] of any size -> RGB, input + conv(relu(conv(relu(conv(input)))))."""
    images = keras.Input((None, None, 3), name="images")
    x = keras.layers.Conv2D(width, kernel_size, padding="same", activation="relu",
                            name=f"{name}_conv1")(images)
    x = keras.layers.Conv2D(width, kernel_size, padding="same", activation="relu",
                            name=f"{name}_conv2")(x)
    change = keras.layers.Conv2D(3, kernel_size, padding="same", kernel_initializer="zeros",
                                 name=f"{name}_conv3")(x)
    output = keras.layers.Add(dtype="float32", name=f"{name}_output")([images, change])
    return keras.Model(images, output, name=name)


def filter_weights(raw, weighting="softmax"):
    """Pooled filter-head outputs (batch, n) -> the weights w_i of equation 5 (module
    docstring): "softmax" (ours; a convex blend) or "linear" (as predicted)."""
    raw = tf.convert_to_tensor(raw, tf.float32)
    if weighting == "softmax":
        return tf.nn.softmax(raw, axis=-1)
    if weighting == "linear":
        return raw
    raise ValueError(f"weighting must be one of {FILTER_WEIGHTINGS}, got {weighting!r}")


def combine_filters(images, filter_networks, weights):
    """Equation 5: sum_i w_i phi_i(I). images (batch, h, w, 3); filter_networks, n callables
    (the trained approximators, or the reference filters); weights (batch, n). Not clipped."""
    images = tf.convert_to_tensor(images, tf.float32)
    weights = tf.convert_to_tensor(weights, tf.float32)
    if weights.shape[-1] is not None and weights.shape[-1] != len(filter_networks):
        raise ValueError(f"{weights.shape[-1]} weights for {len(filter_networks)} filters")
    filtered = tf.stack([tf.cast(network(images), tf.float32) for network in filter_networks],
                        axis=1)  # (batch, n, h, w, 3)
    return tf.einsum("bn,bnhwc->bhwc", weights, filtered)
