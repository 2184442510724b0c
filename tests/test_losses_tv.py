"""PieNet's edge-weighted total variation (equation 7); WESPE's plain TV is tested in
test_losses_wespe.py."""
import numpy as np
import tensorflow as tf

from losses import edge_weighted_total_variation_loss


def numpy_edge_weighted_tv(images, deltas):
    images, deltas = np.asarray(images, np.float64), np.asarray(deltas, np.float64)
    total = 0.0
    for axis in (2, 1):
        weights = np.exp(-np.abs(np.diff(images, axis=axis)))
        total = total + (weights * np.abs(np.diff(deltas, axis=axis))).mean(axis=(1, 2, 3))
    return total


def test_matches_numpy():
    rng = np.random.default_rng(0)
    images = rng.random((3, 9, 7, 3)).astype(np.float32)
    deltas = rng.normal(0, 0.1, (3, 9, 7, 3)).astype(np.float32)
    got = edge_weighted_total_variation_loss(images, deltas).numpy()
    assert got.shape == (3,)
    np.testing.assert_allclose(got, numpy_edge_weighted_tv(images, deltas), rtol=1e-5)


def test_hand_worked_value():
    image = np.array([[0, 1], [0, 0]], np.float32).reshape(1, 2, 2, 1)
    delta = np.array([[0, 0.5], [1, 1]], np.float32).reshape(1, 2, 2, 1)
    # x: weights (e^-1, 1) on |d delta| (0.5, 0) -> 0.25 / e; y: weights (1, e^-1) on (1, 0.5)
    # -> (1 + 0.5 / e) / 2. Sum: 0.5 + 0.5 / e.
    np.testing.assert_allclose(edge_weighted_total_variation_loss(image, delta).numpy(),
                               [0.5 + 0.5 / np.e], rtol=1e-6)


def test_edges_of_the_input_excuse_steps_of_the_delta_in_the_same_channel_only():
    step = np.zeros((1, 4, 4, 3), np.float32)
    step[:, :, 2:, :] = 1.0  # a vertical edge between columns 1 and 2
    flat = np.zeros_like(step)
    delta = 0.1 * step
    on_flat = edge_weighted_total_variation_loss(flat, delta).numpy()[0]
    on_edge = edge_weighted_total_variation_loss(step, delta).numpy()[0]
    np.testing.assert_allclose(on_flat, 0.1 * 4 / 12, rtol=1e-6)  # 4 of 12 x-differences
    np.testing.assert_allclose(on_edge, on_flat / np.e, rtol=1e-6)
    edge_in_red_only = flat.copy()
    edge_in_red_only[..., 0] = step[..., 0]
    delta_in_green_only = np.zeros_like(delta)
    delta_in_green_only[..., 1] = delta[..., 1]
    np.testing.assert_allclose(
        edge_weighted_total_variation_loss(edge_in_red_only, delta_in_green_only).numpy(),
        edge_weighted_total_variation_loss(flat, delta_in_green_only).numpy(), rtol=1e-6)
    assert edge_weighted_total_variation_loss(step, np.full_like(step, 0.3)).numpy()[0] == 0.0


def test_gradient_reaches_the_delta_not_the_image():
    rng = np.random.default_rng(1)
    images = tf.Variable(rng.random((2, 6, 6, 3)).astype(np.float32))
    deltas = tf.Variable(rng.normal(0, 0.1, (2, 6, 6, 3)).astype(np.float32))
    with tf.GradientTape() as tape:
        loss = tf.reduce_sum(edge_weighted_total_variation_loss(images, deltas))
    grad_images, grad_deltas = tape.gradient(loss, [images, deltas])
    assert grad_images is None or not np.any(grad_images.numpy())
    assert np.all(np.isfinite(grad_deltas.numpy())) and np.any(grad_deltas.numpy())
