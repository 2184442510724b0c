"""Every loss in `losses/` propagates NaN: a NaN input gives a NaN loss for that example, never a
finite number that would hide a diverged model from the trainer's non-finite check (issue 15)."""
import keras
import numpy as np
import pytest

import losses


def with_nan(shape, seed=0):
    """Random values in (0.1, 0.9) of `shape`, with one NaN in example 0 only."""
    values = np.random.default_rng(seed).uniform(0.1, 0.9, shape).astype(np.float32)
    values[(0,) * len(shape)] = np.nan
    return values


def assert_nan_only_in_example_0(loss):
    loss = np.asarray(loss)
    assert np.isnan(loss[0]) and np.all(np.isfinite(loss[1:])), loss


def tiny_features():
    images = keras.Input((None, None, 3))
    return keras.Model(images, keras.layers.Conv2D(4, 3, padding="same")(images))


@pytest.mark.parametrize("name", sorted(losses.FIDELITY_LOSSES))
def test_fidelity_losses(name):
    reference = with_nan((3, 8, 8, 3), seed=1)
    reference[0, 0, 0, 0] = 0.5
    assert_nan_only_in_example_0(losses.fidelity_loss(name)(reference, with_nan((3, 8, 8, 3))))


def test_emd_tv_content_and_nima_losses():
    target = np.full((3, 10), 0.1, np.float32)
    for r in (1, 2):
        assert_nan_only_in_example_0(losses.emd_loss(target, with_nan((3, 10)), r=r))
    assert_nan_only_in_example_0(losses.total_variation_loss(with_nan((3, 8, 8, 3))))
    features = tiny_features()
    clean = np.random.default_rng(2).uniform(size=(3, 8, 8, 3)).astype(np.float32)
    assert_nan_only_in_example_0(losses.content_loss(features(clean),
                                                     features(with_nan((3, 8, 8, 3)))))
    images = keras.Input((None, None, 3))
    pooled = keras.layers.GlobalAveragePooling2D()(images)
    toy_nima = keras.Model(images, keras.layers.Dense(10, activation="softmax")(pooled))
    assert_nan_only_in_example_0(losses.nima_loss(toy_nima)(with_nan((3, 8, 8, 3))))


def test_adversarial_losses():
    real, fake = with_nan((3, 1), seed=3), with_nan((3, 1), seed=4)
    assert_nan_only_in_example_0(losses.modified_generator_loss(fake))
    assert_nan_only_in_example_0(losses.modified_discriminator_loss(real, fake))
    assert_nan_only_in_example_0(losses.modified_discriminator_loss(real * 0 + 0.5, fake))
    assert_nan_only_in_example_0(losses.wasserstein_generator_loss(fake))
    assert_nan_only_in_example_0(losses.wasserstein_discriminator_loss(real, fake))


def test_enhancegan_losses():
    good, output = with_nan((3, 1), seed=5), with_nan((3,), seed=6)
    assert_nan_only_in_example_0(losses.enhancegan_generator_loss(output))
    assert_nan_only_in_example_0(losses.enhancegan_critic_loss(good, output))
    assert_nan_only_in_example_0(losses.wasserstein_estimate(good, output))
    for reduction in ("mean", "sum"):
        assert_nan_only_in_example_0(losses.feature_regulariser(
            with_nan((3, 4096), seed=7), np.full((3, 4096), 0.5, np.float32), reduction))
    input_score = np.float32([0.5, 0.5, 0.5])
    for side in ("paper", "release"):
        # A NaN on either side, whichever half the regulariser penalises.
        assert_nan_only_in_example_0(losses.hinge_regulariser(output, input_score, side))
        assert_nan_only_in_example_0(losses.hinge_regulariser(input_score, output, side))
    assert_nan_only_in_example_0(losses.weighted_generator_loss(output, input_score,
                                                                input_score))
