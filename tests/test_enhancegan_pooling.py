"""enhancers.enhancegan.pooling against NumPy: top-K (the release's) and whole-map softmax (the
paper's) pooling, their attention maps and gradients."""
import numpy as np
import pytest
import tensorflow as tf

from enhancers.enhancegan import pooling


def numpy_top_k(parameter_maps, score_map, k):
    batch, height, width, n = parameter_maps.shape
    pooled = np.zeros((batch, n))
    attention = np.zeros((batch, height * width))
    for i in range(batch):
        scores = score_map[i].reshape(-1).astype(np.float64)
        order = np.argsort(-scores, kind="stable")[:k]
        weights = np.exp(scores[order] - scores[order].max())
        weights /= weights.sum()
        pooled[i] = weights @ parameter_maps[i].reshape(-1, n)[order]
        attention[i, order] = weights
    return pooled, attention.reshape(batch, height, width)


def numpy_softmax(parameter_maps, score_map):
    batch, height, width, n = parameter_maps.shape
    scores = score_map.reshape(batch, -1).astype(np.float64)
    weights = np.exp(scores - scores.max(axis=1, keepdims=True))
    weights /= weights.sum(axis=1, keepdims=True)
    pooled = np.einsum("bp,bpn->bn", weights, parameter_maps.reshape(batch, -1, n))
    return pooled, weights.reshape(batch, height, width)


def maps(seed, batch=4, height=7, width=7, n=6):
    rng = np.random.default_rng(seed)
    return (rng.normal(size=(batch, height, width, n)).astype(np.float32),
            rng.normal(scale=2.0, size=(batch, height, width)).astype(np.float32))


@pytest.mark.parametrize("k", [1, 3, 5])
def test_top_k_equals_numpy(k):
    parameter_maps, score_map = maps(k)
    pooled, attention = pooling.top_k_pool(parameter_maps, score_map, k)
    expected_pooled, expected_attention = numpy_top_k(parameter_maps, score_map, k)
    np.testing.assert_allclose(pooled.numpy(), expected_pooled, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(attention.numpy(), expected_attention, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(attention.numpy().sum(axis=(1, 2)), 1.0, rtol=1e-6)
    assert np.all((attention.numpy() > 0).sum(axis=(1, 2)) == k)


def test_top_k_hand_worked():
    # Scores 3, 1, 2, 0 on a 2x2 map; K = 2 keeps 3 and 2: softmax weights e/(e + 1), 1/(e + 1).
    score_map = np.float32([[[3.0, 1.0], [2.0, 0.0]]])
    parameter_maps = np.float32([[[[10.0], [20.0]], [[30.0], [40.0]]]])
    pooled, attention = pooling.top_k_pool(parameter_maps, score_map, 2)
    e = np.e
    np.testing.assert_allclose(pooled.numpy(), [[(10 * e + 30) / (e + 1)]], rtol=1e-6)
    np.testing.assert_allclose(attention.numpy(), [[[e / (e + 1), 0], [1 / (e + 1), 0]]],
                               rtol=1e-6)


def test_softmax_pool_equals_numpy_and_top_k_of_the_whole_map():
    parameter_maps, score_map = maps(10, height=3, width=5)
    pooled, attention = pooling.softmax_pool(parameter_maps, score_map)
    expected_pooled, expected_attention = numpy_softmax(parameter_maps, score_map)
    np.testing.assert_allclose(pooled.numpy(), expected_pooled, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(attention.numpy(), expected_attention, rtol=1e-5, atol=1e-7)
    everything, _ = pooling.top_k_pool(parameter_maps, score_map, 15)
    np.testing.assert_allclose(everything.numpy(), pooled.numpy(), rtol=1e-5, atol=1e-6)


def test_k_larger_than_the_map_takes_every_position():
    parameter_maps, score_map = maps(11, height=1, width=2)
    pooled, attention = pooling.pool(parameter_maps, score_map, "top_k", k=3)
    expected, _ = numpy_softmax(parameter_maps, score_map)
    np.testing.assert_allclose(pooled.numpy(), expected, rtol=1e-5, atol=1e-6)
    assert attention.shape == (4, 1, 2)


def test_gradients_reach_only_the_top_k_positions():
    parameter_maps, score_map = maps(12, batch=1, height=3, width=3, n=2)
    parameter_maps, score_map = tf.Variable(parameter_maps), tf.Variable(score_map)
    with tf.GradientTape() as tape:
        pooled, _ = pooling.top_k_pool(parameter_maps, score_map, 3)
        loss = tf.reduce_sum(pooled * [1.0, -2.0])
    parameter_gradient, score_gradient = tape.gradient(loss, [parameter_maps, score_map])
    chosen = np.argsort(-score_map.numpy().reshape(-1))[:3]
    reached = np.flatnonzero(np.any(parameter_gradient.numpy().reshape(9, 2) != 0, axis=1))
    assert set(reached) == set(chosen)
    assert set(np.flatnonzero(score_gradient.numpy().reshape(9))) <= set(chosen)


def test_unknown_pooling_is_refused():
    with pytest.raises(ValueError, match="pooling"):
        pooling.pool(*maps(0), pooling="max")
