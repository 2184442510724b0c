import numpy as np
import pytest
import tensorflow as tf
from scipy.stats import wasserstein_distance

from losses import emd_loss

SCORES = np.arange(1, 11)


def random_distributions(rng, n):
    p = rng.random((n, 10)) ** 3
    return p / p.sum(axis=1, keepdims=True)


def test_r1_matches_scipy_wasserstein_over_scores_divided_by_n():
    rng = np.random.default_rng(0)
    p, q = random_distributions(rng, 8), random_distributions(rng, 8)
    expected = [wasserstein_distance(SCORES, SCORES, a, b) / 10 for a, b in zip(p, q)]
    np.testing.assert_allclose(np.asarray(emd_loss(p, q, r=1)), expected, rtol=1e-6, atol=1e-9)


def test_r2_matches_numpy_equation_2():
    rng = np.random.default_rng(1)
    p, q = random_distributions(rng, 8), random_distributions(rng, 8)
    gaps = np.abs(np.cumsum(p, 1) - np.cumsum(q, 1))
    expected = np.sqrt(np.mean(gaps**2, axis=1))
    np.testing.assert_allclose(np.asarray(emd_loss(p, q)), expected, rtol=1e-6)
    assert emd_loss(p, q).shape == (8,)


def test_hand_worked_values():
    lowest, highest = np.eye(10)[[0]], np.eye(10)[[9]]
    # CDFs differ by 1 at k = 1..9 and agree at k = 10.
    assert float(emd_loss(lowest, highest, r=1)[0]) == pytest.approx(0.9)
    assert float(emd_loss(lowest, highest, r=2)[0]) == pytest.approx(np.sqrt(0.9))
    # One bucket apart: a single CDF step of 1 -> 1/10 (r = 1), sqrt(1/10) (r = 2).
    neighbour = np.eye(10)[[1]]
    assert float(emd_loss(lowest, neighbour, r=1)[0]) == pytest.approx(0.1)
    assert float(emd_loss(lowest, neighbour, r=2)[0]) == pytest.approx(np.sqrt(0.1))
    # Half the mass moved three buckets: |gap| = 0.5 at k = 1, 2, 3.
    half = np.zeros((1, 10)); half[0, [0, 3]] = 0.5
    assert float(emd_loss(lowest, half, r=1)[0]) == pytest.approx(0.15)
    assert float(emd_loss(lowest, half, r=3)[0]) == pytest.approx((3 * 0.125 / 10) ** (1 / 3))


def test_zero_distance_has_finite_gradient():
    p = tf.constant(random_distributions(np.random.default_rng(2), 3), tf.float32)
    q = tf.Variable(p)
    with tf.GradientTape() as tape:
        loss = tf.reduce_sum(emd_loss(p, q))
    assert float(loss) == 0.0
    assert np.all(np.isfinite(tape.gradient(loss, q).numpy()))


@pytest.mark.parametrize("r", [1, 2, 3])
def test_nan_propagates_instead_of_reading_as_zero_distance(r):
    """A NaN prediction (a diverged model) gives a NaN loss for that example only: with r = 2
    it used to come out as 0, so a NaN model trained on looking perfect (issue 15)."""
    target = np.full((2, 10), 0.1, np.float32)
    prediction = target.copy()
    prediction[0, 3] = np.nan
    loss = emd_loss(target, prediction, r=r).numpy()
    assert np.isnan(loss[0]) and loss[1] == 0.0
