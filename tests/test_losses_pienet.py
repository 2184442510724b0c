"""PieNet's loss, equation 6, against NumPy with a stand-in embedding."""
import numpy as np
import pytest
import tensorflow as tf
from keras import ops

from losses import PERCEPTUAL_WEIGHT, TV_WEIGHT, pienet_loss, pienet_loss_terms

WEIGHTS = np.random.default_rng(0).standard_normal((6, 5))


def stand_in_embedding(images):
    """A small differentiable embedding: per-channel means and mean squares, a fixed linear map,
    L2-normalised; (b, 5)."""
    features = ops.concatenate([ops.mean(images, axis=(1, 2)),
                                ops.mean(ops.square(images), axis=(1, 2))], axis=-1)
    projected = ops.matmul(features, ops.convert_to_tensor(WEIGHTS, "float32"))
    return projected / ops.norm(projected, axis=-1, keepdims=True)


def numpy_embedding(images):
    features = np.concatenate([images.mean((1, 2)), (images ** 2).mean((1, 2))], axis=-1)
    projected = features @ WEIGHTS
    return projected / np.linalg.norm(projected, axis=-1, keepdims=True)


def numpy_terms(images, deltas, targets):
    enhanced = images + deltas
    color = np.abs(enhanced - targets).mean((1, 2, 3))
    difference = np.abs(numpy_embedding(enhanced) - numpy_embedding(targets))
    tv = 0
    for axis in (2, 1):  # equation 7: exp(-|grad I|) |grad dI|, each direction a mean
        weight = np.exp(-np.abs(np.diff(images, axis=axis)))
        tv = tv + (weight * np.abs(np.diff(deltas, axis=axis))).mean((1, 2, 3))
    return color, difference, tv


def _data(seed, shape=(3, 9, 11, 3)):
    rng = np.random.default_rng(seed)
    images = rng.random(shape)
    return images, 0.2 * rng.standard_normal(shape), rng.random(shape)


def test_paper_weights():
    assert (PERCEPTUAL_WEIGHT, TV_WEIGHT) == (0.4, 0.01)


@pytest.mark.parametrize("reduction", ["mean", "sum"])
def test_terms_and_total_match_numpy(reduction):
    images, deltas, targets = _data(1)
    color, difference, tv = numpy_terms(images, deltas, targets)
    perceptual = difference.mean(-1) if reduction == "mean" else difference.sum(-1)
    args = [x.astype(np.float32) for x in (images, deltas, targets)]
    terms = pienet_loss_terms(*args, stand_in_embedding, perceptual_reduction=reduction)
    for name, expected in (("color", color), ("perceptual", perceptual), ("tv", tv)):
        assert tuple(terms[name].shape) == (3,)
        np.testing.assert_allclose(np.asarray(terms[name]), expected, rtol=1e-4, atol=1e-6,
                                   err_msg=name)
    total = pienet_loss(*args, stand_in_embedding, perceptual_reduction=reduction)
    np.testing.assert_allclose(np.asarray(total), color + 0.4 * perceptual + 0.01 * tv,
                               rtol=1e-4, atol=1e-6)
    other = pienet_loss(*args, stand_in_embedding, perceptual_weight=2.0, tv_weight=0.5,
                        perceptual_reduction=reduction)
    np.testing.assert_allclose(np.asarray(other), color + 2.0 * perceptual + 0.5 * tv, rtol=1e-4,
                               atol=1e-6)


def test_no_gradient_through_the_target_embedding():
    """Only the colour term reaches the target: d/dI* = -sign(I + dI - I*) / (h w c)."""
    images, deltas, targets = (tf.constant(x, tf.float32) for x in _data(2, (2, 5, 6, 3)))
    with tf.GradientTape() as tape:
        tape.watch(targets)
        loss = tf.reduce_sum(pienet_loss(images, deltas, targets, stand_in_embedding))
    expected = -np.sign(np.asarray(images + deltas - targets)) / (5 * 6 * 3)
    np.testing.assert_allclose(np.asarray(tape.gradient(loss, targets)), expected, rtol=1e-5)


def test_unknown_reduction():
    images, deltas, targets = _data(3)
    with pytest.raises(ValueError, match="perceptual_reduction"):
        pienet_loss_terms(images, deltas, targets, stand_in_embedding, perceptual_reduction="max")
