"""losses.wasserstein: EnhanceGAN's equations 2, 7, 8, 9 and 10 on hand-worked values (f_W
lower is better), their agreement with losses.adversarial's TF-GAN sign, and the release's
gradient balancing (each term's image gradient at norm <= 1, parameter gradients at <= 100)."""
import numpy as np
import pytest
import tensorflow as tf

import losses
from losses import wasserstein


def values(tensor):
    tensor = tf.convert_to_tensor(tensor)
    assert tensor.dtype == tf.float32
    return tensor.numpy()


def test_wasserstein_losses_hand_worked():
    good = np.float32([2.0, -1.0, 0.5])
    output = np.float32([0.5, 3.0, 0.5])
    # Equations 2 and 10: f_W(good) - f_W(output) = [1.5, -4, 0].
    np.testing.assert_array_equal(values(wasserstein.wasserstein_estimate(good, output)),
                                  [1.5, -4.0, 0.0])
    np.testing.assert_array_equal(values(wasserstein.enhancegan_critic_loss(good, output)),
                                  [1.5, -4.0, 0.0])
    # Equation 7: f_W(output).
    np.testing.assert_array_equal(values(wasserstein.enhancegan_generator_loss(output)),
                                  [0.5, 3.0, 0.5])
    # (batch, 1) columns and (batch, h, w, 1) maps: averaged per example.
    column = wasserstein.enhancegan_critic_loss(good[:, None], output[:, None].astype("float64"))
    np.testing.assert_array_equal(values(column), [1.5, -4.0, 0.0])
    score_map = np.float32([[[1.0, 3.0], [5.0, 7.0]]])[..., None]  # mean 4
    np.testing.assert_array_equal(values(wasserstein.enhancegan_generator_loss(score_map)), [4.0])


def test_the_papers_sign_is_tf_gans_with_f_equal_to_minus_f_w():
    rng = np.random.default_rng(0)
    good, output = rng.normal(size=(2, 5)).astype(np.float32)
    np.testing.assert_allclose(values(wasserstein.enhancegan_generator_loss(output)),
                               values(losses.wasserstein_generator_loss(-output)))
    np.testing.assert_allclose(values(wasserstein.enhancegan_critic_loss(good, output)),
                               values(losses.wasserstein_discriminator_loss(-good, -output)))


def test_the_critic_loss_pushes_good_photos_low_and_outputs_high():
    good = tf.Variable([1.0, 2.0])
    output = tf.Variable([0.0, 5.0])
    with tf.GradientTape() as tape:
        loss = tf.reduce_sum(wasserstein.enhancegan_critic_loss(good, output))
    good_gradient, output_gradient = tape.gradient(loss, [good, output])
    np.testing.assert_array_equal(good_gradient.numpy(), [1.0, 1.0])  # descent lowers f_W(good)
    np.testing.assert_array_equal(output_gradient.numpy(), [-1.0, -1.0])


def test_feature_regulariser_hand_worked():
    output = np.float32([[1.0, 2.0, 3.0, 4.0], [0.0, 0.0, 0.0, 0.0]])
    inputs = np.float32([[1.0, 0.0, 3.0, 1.0], [0.0, 0.0, 0.0, 0.0]])
    # Squared differences [0, 4, 0, 9]: sum 13 (the paper's ||.||^2), mean 3.25 (the release's).
    np.testing.assert_allclose(values(wasserstein.feature_regulariser(output, inputs)),
                               [3.25, 0.0])
    np.testing.assert_allclose(values(wasserstein.feature_regulariser(output, inputs, "sum")),
                               [13.0, 0.0])
    # VGG's fc7 as a 1x1x4096 convolution map: the same numbers.
    maps = wasserstein.feature_regulariser(output[:, None, None, :], inputs[:, None, None, :],
                                           "sum")
    np.testing.assert_allclose(values(maps), [13.0, 0.0])
    with pytest.raises(ValueError, match="reduction"):
        wasserstein.feature_regulariser(output, inputs, "max")


def test_hinge_regulariser_hand_worked_both_sides():
    output = np.float32([3.0, 1.0, 2.0, -1.0])
    inputs = np.float32([1.0, 3.0, 2.0, 0.5])
    # Output worse (higher f_W) than input in examples 0 and 2 (equal counts as not better):
    # the paper penalises (3 - 1)^2 = 4 and 0; the release's half penalises (1 - 3)^2 = 4 and
    # (-1 - 0.5)^2 = 2.25, where the output is rated better.
    np.testing.assert_array_equal(values(wasserstein.hinge_regulariser(output, inputs)),
                                  [4.0, 0.0, 0.0, 0.0])
    np.testing.assert_array_equal(
        values(wasserstein.hinge_regulariser(output, inputs, side="release")),
        [0.0, 4.0, 0.0, 2.25])
    with pytest.raises(ValueError, match="side"):
        wasserstein.hinge_regulariser(output, inputs, side="both")


def test_hinge_gradient_flows_only_where_penalised():
    output = tf.Variable([3.0, 1.0])
    inputs = tf.constant([1.0, 3.0])
    for side, expected in (("paper", [4.0, 0.0]), ("release", [0.0, -4.0])):
        with tf.GradientTape() as tape:
            loss = tf.reduce_sum(wasserstein.hinge_regulariser(output, inputs, side))
        np.testing.assert_array_equal(tape.gradient(loss, output).numpy(), expected)


def test_weighted_generator_loss():
    np.testing.assert_allclose(
        values(wasserstein.weighted_generator_loss([1.0, 2.0], [10.0, 20.0], [100.0, 0.0],
                                                   weights=(1.0, 0.1, 0.01))),
        [3.0, 4.0])


def test_term_gradients_are_normalised_to_norm_at_most_1_then_summed():
    rng = np.random.default_rng(1)
    large = rng.normal(scale=50.0, size=(2, 8, 8, 3)).astype(np.float32)
    small = rng.normal(scale=1e-3, size=(2, 8, 8, 3)).astype(np.float32)
    medium = rng.normal(scale=0.5, size=(2, 8, 8, 3)).astype(np.float32)
    for per_example in (False, True):
        normalised = [wasserstein.normalise_gradient(g, per_example=per_example).numpy()
                      for g in (large, small, medium)]
        for gradient in normalised:
            norms = (np.sqrt((gradient**2).sum(axis=(1, 2, 3))) if per_example
                     else np.linalg.norm(gradient))
            assert np.all(norms <= 1.0 + 1e-5), norms
        # Scaled by 1 / norm where the norm passes 1 -- the whole batch's norm (the release's)
        # or each image's -- and untouched below it.
        if per_example:
            expected = large / np.sqrt((large**2).sum(axis=(1, 2, 3)))[:, None, None, None]
        else:
            expected = large / np.linalg.norm(large)
        np.testing.assert_allclose(normalised[0], expected, rtol=1e-5)
        np.testing.assert_array_equal(normalised[1], small)
        total = wasserstein.balance_term_gradients([large, small, medium],
                                                   per_example=per_example).numpy()
        np.testing.assert_allclose(total, sum(normalised), rtol=1e-5, atol=1e-7)
        assert np.linalg.norm(total) <= 3.0 * (2.0 if per_example else 1.0) + 1e-5
    # The medium term's batch norm is above 1 (about 0.5 sqrt(384) = 9.8), its images' too.
    assert np.linalg.norm(medium) > 1.0


def test_normalisation_leaves_zero_and_keeps_nan():
    zero = np.zeros((2, 4, 4, 3), np.float32)
    np.testing.assert_array_equal(wasserstein.normalise_gradient(zero).numpy(), zero)
    broken = np.ones((2, 4, 4, 3), np.float32)
    broken[0, 0, 0, 0] = np.nan
    assert np.isnan(wasserstein.normalise_gradient(broken).numpy()).any()
    per_example = wasserstein.normalise_gradient(broken, per_example=True).numpy()
    assert np.isnan(per_example[0]).any() and np.all(np.isfinite(per_example[1]))
    with pytest.raises(ValueError):
        wasserstein.balance_term_gradients([])


def test_parameter_gradients_are_clipped_at_global_norm_100():
    gradients = [tf.fill([10, 10], 30.0), None, tf.fill([3], 40.0)]
    clipped, norm = wasserstein.clip_parameter_gradients(gradients)
    np.testing.assert_allclose(norm.numpy(), np.sqrt(100 * 900 + 3 * 1600), rtol=1e-6)
    assert clipped[1] is None
    total = np.sqrt(sum(np.sum(g.numpy() ** 2) for g in clipped if g is not None))
    np.testing.assert_allclose(total, 100.0, rtol=1e-5)
    small, _ = wasserstein.clip_parameter_gradients([tf.fill([2], 3.0)])
    np.testing.assert_array_equal(small[0].numpy(), [3.0, 3.0])


def test_balanced_gradients_drive_a_generator_through_output_gradients():
    """How a train step uses the balancing: per-term image gradients, their balanced sum pushed
    through G with output_gradients, then the parameter clip."""
    weights = tf.Variable(tf.ones([3]))
    images = tf.constant(np.random.default_rng(2).uniform(size=(2, 4, 4, 3)), tf.float32)
    with tf.GradientTape(persistent=True) as tape:
        enhanced = images * weights
        tape.watch(enhanced)
        terms = [tf.reduce_sum(enhanced) * 1e3, tf.reduce_mean(tf.square(enhanced - images))]
    term_gradients = [tape.gradient(term, enhanced) for term in terms]
    balanced = wasserstein.balance_term_gradients(term_gradients)
    parameter_gradients = tape.gradient(enhanced, [weights], output_gradients=balanced)
    clipped, _ = wasserstein.clip_parameter_gradients(parameter_gradients)
    assert np.all(np.isfinite(clipped[0].numpy()))
    np.testing.assert_allclose(np.linalg.norm(term_gradients[0].numpy()), 1e3 * np.sqrt(96),
                               rtol=1e-5)
    np.testing.assert_allclose(clipped[0].numpy(),
                               np.sum(images.numpy() / np.sqrt(96), axis=(0, 1, 2)), rtol=1e-5)
