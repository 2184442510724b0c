"""Preference-vector helpers of PieNet (sections 3.1 and 4.1).

Embeddings are L2-normalised (section 3.1: "we perform L2 normalization to each output feature
vector"): `l2_normalize`. While PieNet trains, each preference vector gets noise n "sampled from
the hypersphere, ||n||_2 = 0.1" (section 4.1) so that the enhancer does not react to small
changes of it: `perturb_preferences` adds 0.1 times a direction drawn uniformly on the unit
sphere (a normalised Gaussian). The sum itself is not renormalised; the paper does not say to.
"""
import keras
from keras import ops

PREFERENCE_NOISE_NORM = 0.1  # section 4.1
L2_EPSILON = 1e-12  # on the squared norm, as tf.math.l2_normalize


def l2_normalize(vectors, axis=-1, epsilon=L2_EPSILON):
    """vectors / ||vectors||_2 along `axis`, float32; a zero vector stays zero."""
    vectors = ops.cast(vectors, "float32")
    squared = ops.sum(ops.square(vectors), axis=axis, keepdims=True)
    return vectors * ops.rsqrt(ops.maximum(squared, epsilon))


def random_directions(shape, seed=None):
    """Unit vectors along the last axis of `shape`, uniform on the sphere (normalised standard
    Gaussians). `seed`: an int, None, or a `keras.random.SeedGenerator` (in a train step, so
    that every step draws anew)."""
    return l2_normalize(keras.random.normal(shape, dtype="float32", seed=seed))


def perturb_preferences(vectors, norm=PREFERENCE_NOISE_NORM, seed=None):
    """vectors (batch, d) + noise of L2 norm exactly `norm` in a uniformly random direction, one
    draw per row (section 4.1); float32."""
    vectors = ops.cast(vectors, "float32")
    return vectors + norm * random_directions(ops.shape(vectors), seed=seed)
