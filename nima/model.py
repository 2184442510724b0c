"""The NIMA model and its scores (Talebi & Milanfar, paper sections 2.1 and 2.1.1)."""
import os

import keras
import tensorflow as tf
from keras import ops

from nima.backbones import BACKBONES, MIN_INPUT_SIDE, build_backbone

NUM_BUCKETS = 10  # AVA scores 1..10
# Photos above this many pixels are scored after an area downscale to it (`downscale_for_scoring`).
# 2**21 keeps 1920 x 1080 and every AVA photo (about 0.2 MP) at its own size.
SCORING_MAX_PIXELS = 2**21


def build_nima(backbone, weights=None, dropout=0.25, name=None):
    """Backbone + global average pooling + dropout + Dense(10, softmax) (paper Fig. 3).

    `backbone` is a backbone name or a model from `build_backbone`. `weights` is None or a local
    file of a whole NIMA model's weights (`*.weights.h5`, as `model.save_weights` writes it);
    to start from ImageNet weights pass them to `build_backbone` instead. The dropout rate 0.25
    is the public ports' keep probability 0.75. The model maps float RGB images in [0, 1] of any
    size to a (batch, 10) distribution over the scores 1..10.
    """
    if isinstance(backbone, str):
        backbone = build_backbone(backbone)
    images = keras.Input((None, None, 3), name="images")
    features = backbone(images)
    pooled = keras.layers.GlobalAveragePooling2D(name="global_pool")(features)
    pooled = keras.layers.Dropout(dropout, name="head_dropout")(pooled)
    # float32 head: the softmax stays exact under a mixed-precision policy.
    distribution = keras.layers.Dense(
        NUM_BUCKETS, activation="softmax", name="scores", dtype="float32"
    )(pooled)
    model = keras.Model(images, distribution, name=name or f"nima_{backbone.name}")
    if weights is not None:
        load_nima_weights(model, weights)
    return model


def load_nima_weights(model, path):
    """Loads a whole NIMA model's weights from a local file, with an error naming the file."""
    path = str(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"NIMA weights file not found: {path}")
    try:
        model.load_weights(path)
    except Exception as error:  # Keras raises several types for incompatible files.
        raise ValueError(f"Could not load NIMA weights from {path} into {model.name}: {error}") from error
    return model


def min_input_side(model):
    """The smallest height and width `model`, a NIMA of `build_nima`, can score: its backbone's
    MIN_INPUT_SIDE; 1 for a model without one of the known backbones."""
    names = {layer.name for layer in model.layers}
    return max([MIN_INPUT_SIDE[name] for name in BACKBONES if name in names], default=1)


def head_and_backbone_variables(model):
    """Splits a NIMA model's trainable variables into (backbone, head) for their two learning
    rates (paper section 4.1: 3e-7 for the baseline CNN, 3e-6 for the last layer)."""
    head = model.get_layer("scores").trainable_weights
    head_ids = {id(v) for v in head}
    backbone = [v for v in model.trainable_weights if id(v) not in head_ids]
    return backbone, head


def _scores(dtype):
    return ops.arange(1, NUM_BUCKETS + 1, dtype=dtype)


def mean_score(distribution):
    """Mean score sum_i s_i p_i over s = 1..10 (section 2.1.1); shape (batch,)."""
    distribution = ops.convert_to_tensor(distribution)
    return ops.sum(distribution * _scores(distribution.dtype), axis=-1)


def std_score(distribution):
    """Standard deviation sqrt(sum_i (s_i - mean)^2 p_i) of the score distribution; (batch,)."""
    distribution = ops.convert_to_tensor(distribution)
    mean = mean_score(distribution)
    deviation = _scores(distribution.dtype) - ops.expand_dims(mean, -1)
    return ops.sqrt(ops.sum(deviation**2 * distribution, axis=-1))


def scoring_size(height, width, max_pixels=SCORING_MAX_PIXELS):
    """(height, width) at which a photo is scored: its own up to `max_pixels` pixels, else the
    largest of the same aspect ratio within `max_pixels` (each side at least 1)."""
    if height * width <= max_pixels:
        return height, width
    scale = (max_pixels / (height * width)) ** 0.5
    return max(1, int(height * scale)), max(1, int(width * scale))


def downscale_for_scoring(images, max_pixels=SCORING_MAX_PIXELS):
    """Float images [b, h, w, 3] unchanged up to `max_pixels` pixels, else area-downscaled to
    `scoring_size` (eagerly or in a graph).

    Why: NIMA is fully convolutional but trained on 224 x 224 crops, and its activations grow
    with the photo: an 8000 x 6000 photo gives MobileNet a 4000 x 3000 x 32 first map (1.5 GB)
    and VGG16 a 48-megapixel x 64 one (12 GB), enough to kill the process. Scoring a 2 MP copy
    costs little memory and changes the score little; smaller photos are scored as they are.
    """
    images = tf.convert_to_tensor(images)
    shape = tf.shape(images)
    pixels = tf.cast(shape[1], tf.float64) * tf.cast(shape[2], tf.float64)
    scale = tf.sqrt(tf.cast(max_pixels, tf.float64) / pixels)
    size = tf.maximum(1, tf.cast(tf.cast(shape[1:3], tf.float64) * scale, tf.int32))
    return tf.cond(pixels > max_pixels,
                   lambda: tf.cast(tf.image.resize(images, size, method="area"), images.dtype),
                   lambda: images)
