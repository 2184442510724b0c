import numpy as np
import pytest
import tensorflow as tf

from losses import TRIPLET_MARGIN, triplet_loss


def numpy_triplet(k, p, n, margin):
    return np.maximum(((k - p) ** 2).sum(-1) - ((k - n) ** 2).sum(-1) + margin, 0.0)


def test_matches_numpy_equation_1():
    rng = np.random.default_rng(0)
    k, p, n = (rng.standard_normal((16, 512)).astype(np.float32) * 0.05 for _ in range(3))
    expected = numpy_triplet(k.astype(np.float64), p, n, 0.2)
    assert 0 < (expected > 0).sum() < 16  # both branches of the rectifier are exercised
    got = triplet_loss(k, p, n).numpy()
    assert got.shape == (16,)
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(triplet_loss(k, p, n, margin=0.5).numpy(),
                               numpy_triplet(k.astype(np.float64), p, n, 0.5),
                               rtol=1e-5, atol=1e-6)


def test_hand_worked_values():
    k = np.zeros((3, 2), np.float32)
    p = np.array([[1, 0], [0, 2], [0, 0]], np.float32)
    n = np.array([[0, 2], [1, 0], [0, 0]], np.float32)
    # D(k, p) - D(k, n) + 0.2: 1 - 4 + 0.2 < 0 -> 0; 4 - 1 + 0.2 = 3.2; 0 - 0 + 0.2.
    np.testing.assert_allclose(triplet_loss(k, p, n).numpy(), [0.0, 3.2, 0.2], rtol=1e-6)
    assert TRIPLET_MARGIN == 0.2


def test_gradients_are_equations_2_to_4():
    rng = np.random.default_rng(1)
    k, p, n = (tf.Variable(rng.standard_normal((8, 6)).astype(np.float32) * 0.3)
               for _ in range(3))
    with tf.GradientTape() as tape:
        loss = tf.reduce_sum(triplet_loss(k, p, n))
    grad_k, grad_p, grad_n = tape.gradient(loss, [k, p, n])
    k, p, n = k.numpy(), p.numpy(), n.numpy()
    active = (numpy_triplet(k, p, n, 0.2) > 0)[:, None]
    assert 0 < active.sum() < 8
    np.testing.assert_allclose(grad_p, 2 * (p - k) * active, rtol=1e-5, atol=1e-6)  # (2)
    np.testing.assert_allclose(grad_n, 2 * (k - n) * active, rtol=1e-5, atol=1e-6)  # (3)
    np.testing.assert_allclose(grad_k, 2 * (n - p) * active, rtol=1e-5, atol=1e-6)  # (4)


@pytest.mark.parametrize("dtype", ["float16", "float32"])
def test_float32_result_from_any_float_input(dtype):
    k = np.zeros((2, 4), dtype)
    assert triplet_loss(k, k, k).dtype == "float32"
