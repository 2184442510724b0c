import keras
import numpy as np

from enhancers.pienet import (PREFERENCE_NOISE_NORM, l2_normalize, perturb_preferences,
                              random_directions)


def test_noise_has_norm_exactly_0_1():
    vectors = np.asarray(l2_normalize(np.random.default_rng(0).standard_normal((64, 512))))
    perturbed = np.asarray(perturb_preferences(vectors, seed=1))
    noise = perturbed.astype(np.float64) - vectors
    assert PREFERENCE_NOISE_NORM == 0.1
    np.testing.assert_allclose(np.linalg.norm(noise, axis=1), 0.1, rtol=0, atol=1e-6)
    assert perturbed.dtype == np.float32 and perturbed.shape == (64, 512)


def test_noise_directions_are_uniform_and_differ_per_row_and_step():
    directions = np.asarray(random_directions((4000, 8), seed=2), np.float64)
    np.testing.assert_allclose(np.linalg.norm(directions, axis=1), 1.0, atol=1e-6)
    # Uniform on the sphere in d = 8: mean 0, E[u u^T] = I / 8.
    np.testing.assert_allclose(directions.mean(0), 0.0, atol=0.03)
    np.testing.assert_allclose(directions.T @ directions / 4000, np.eye(8) / 8, atol=0.015)
    generator = keras.random.SeedGenerator(3)
    vectors = np.zeros((2, 16), np.float32)
    first = np.asarray(perturb_preferences(vectors, seed=generator))
    second = np.asarray(perturb_preferences(vectors, seed=generator))
    assert not np.allclose(first[0], first[1]) and not np.allclose(first, second)
    np.testing.assert_array_equal(np.asarray(perturb_preferences(vectors, seed=4)),
                                  np.asarray(perturb_preferences(vectors, seed=4)))


def test_other_noise_norms():
    vectors = np.ones((3, 5), np.float32)
    noise = np.asarray(perturb_preferences(vectors, norm=0.5, seed=5)) - vectors
    np.testing.assert_allclose(np.linalg.norm(noise, axis=1), 0.5, atol=1e-6)


def test_l2_normalize_gives_unit_norm_and_keeps_zero_finite():
    vectors = np.random.default_rng(6).standard_normal((5, 512)) * [[1e-3], [1], [10], [1e3], [0]]
    unit = np.asarray(l2_normalize(vectors))
    np.testing.assert_allclose(np.linalg.norm(unit[:4], axis=1), 1.0, atol=1e-6)
    np.testing.assert_allclose(unit[:4], vectors[:4] / np.linalg.norm(vectors[:4], axis=1,
                                                                      keepdims=True), rtol=1e-5)
    np.testing.assert_array_equal(unit[4], 0.0)
