"""The NIMA model and its scores (Talebi & Milanfar, paper sections 2.1 and 2.1.1)."""
import os

import keras
from keras import ops

from nima.backbones import build_backbone

NUM_BUCKETS = 10  # AVA scores 1..10


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
