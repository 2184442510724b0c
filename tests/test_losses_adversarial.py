"""losses.adversarial: outputs of any rank, patch maps averaged per example, hand-worked values of
the modified (WESPE) and Wasserstein (EnhanceGAN) losses, and every map value's gradient."""
import importlib
import pathlib

import numpy as np
import pytest
import tensorflow as tf
from keras import ops

import losses
from losses import (discriminator_accuracy, modified_discriminator_loss, modified_generator_loss,
                    wasserstein_discriminator_loss, wasserstein_generator_loss)

LOG_2 = 0.69314718  # -log 0.5
MINUS_LOG_08 = 0.22314355  # -log 0.8
MINUS_LOG_02 = 1.60943791  # -log 0.2


def values(tensor):
    tensor = tf.convert_to_tensor(tensor)
    assert tensor.dtype == tf.float32
    return tensor.numpy()


def test_modified_losses_hand_worked():
    np.testing.assert_allclose(values(modified_generator_loss(np.array([0.8, 0.5], "float32"))),
                               [MINUS_LOG_08, LOG_2], rtol=1e-6)
    # Real 0.8, fake 0.2: -log 0.8 - log(1 - 0.2) = 0.4462871.
    np.testing.assert_allclose(values(modified_discriminator_loss([[0.8]], [[0.2]])),
                               [0.4462871], rtol=1e-6)


def test_wasserstein_losses_hand_worked():
    real = np.array([2.0, -1.0], "float32")
    fake = np.array([0.5, 3.0], "float32")
    # Generator: -f(G(x)) = [-0.5, -3]; critic: f(G(x)) - f(real) = [0.5 - 2, 3 + 1] = [-1.5, 4].
    np.testing.assert_array_equal(values(wasserstein_generator_loss(fake)), [-0.5, -3.0])
    np.testing.assert_array_equal(values(wasserstein_discriminator_loss(real, fake)), [-1.5, 4.0])
    # Raw scores, no sigmoid: the same numbers as (batch, 1) columns, from float64 inputs too.
    np.testing.assert_array_equal(
        values(wasserstein_discriminator_loss(real[:, None].astype("float64"), fake[:, None])),
        [-1.5, 4.0])


def test_a_patch_map_is_averaged_per_example_never_cut_to_its_first_value():
    # (2, 2, 2, 1) maps; the first value of each example differs from its mean.
    fake_probability = np.array([[[0.5, 0.5], [0.5, 0.5]],
                                 [[0.8, 0.8], [0.2, 0.2]]], "float32")[..., None]
    real_probability = np.array([[[0.9, 0.9], [0.1, 0.9]],
                                 [[0.8, 0.8], [0.8, 0.8]]], "float32")[..., None]
    # Example 1: (2 (-log 0.8) + 2 (-log 0.2)) / 4 = (0.4462871 + 3.2188758) / 4 = 0.91629073,
    # not -log 0.8 = 0.22314355.
    np.testing.assert_allclose(values(modified_generator_loss(fake_probability)),
                               [LOG_2, 0.91629073], rtol=1e-6)
    # Example 0: real (3 (-log 0.9) + (-log 0.1)) / 4 = (0.31608154 + 2.30258509) / 4
    # = 0.65466666, fake -log(1 - 0.5) = log 2 -> 1.34781384.
    # Example 1: real -log 0.8 = 0.22314355, fake (2 (-log 0.2) + 2 (-log 0.8)) / 4 = 0.91629073
    # -> 1.13943428.
    np.testing.assert_allclose(values(modified_discriminator_loss(real_probability,
                                                                  fake_probability)),
                               [1.34781384, 1.13943428], rtol=1e-6)
    # Accuracy: example 0 real 3/4 above 0.5, fake 0/4 below 0.5 (0.5 is not) -> 0.375;
    # example 1 real 4/4, fake 2/4 -> 0.75.
    np.testing.assert_array_equal(values(discriminator_accuracy(real_probability,
                                                                fake_probability)),
                                  [0.375, 0.75])

    real_score = np.array([[[1.0, 2.0], [3.0, 4.0]],
                           [[0.0, 0.0], [0.0, -8.0]]], "float32")[..., None]
    fake_score = np.array([[[0.0, 0.0], [0.0, 2.0]],
                           [[1.0, 1.0], [1.0, 1.0]]], "float32")[..., None]
    # Means per example: real [2.5, -2], fake [0.5, 1].
    np.testing.assert_array_equal(values(wasserstein_generator_loss(fake_score)), [-0.5, -1.0])
    np.testing.assert_array_equal(values(wasserstein_discriminator_loss(real_score, fake_score)),
                                  [0.5 - 2.5, 1.0 + 2.0])


@pytest.mark.parametrize("shape", [(3,), (3, 1), (3, 1, 1, 1), (3, 1, 1)])
def test_every_rank_gives_per_example_values(shape):
    rng = np.random.default_rng(0)
    real = rng.uniform(0.05, 0.95, 3).astype("float32")
    fake = rng.uniform(0.05, 0.95, 3).astype("float32")
    expected = {
        modified_generator_loss: modified_generator_loss(real[:, None]),
        wasserstein_generator_loss: wasserstein_generator_loss(real[:, None]),
    }
    for loss, reference in expected.items():
        got = values(loss(real.reshape(shape)))
        assert got.shape == (3,)
        np.testing.assert_array_equal(got, values(reference))
    for loss in (modified_discriminator_loss, wasserstein_discriminator_loss,
                 discriminator_accuracy):
        got = values(loss(real.reshape(shape), fake.reshape(shape)))
        assert got.shape == (3,)
        np.testing.assert_array_equal(got, values(loss(real[:, None], fake[:, None])))


def test_wespe_outputs_are_bit_identical_to_the_elementwise_formulas():
    """(batch, 1) outputs, as WESPE's discriminators give: the mean over one value changes no bit,
    so the numbers are those of the per-example formulas before patch maps were averaged."""
    rng = np.random.default_rng(1)
    real = rng.uniform(0, 1, (64, 1)).astype("float32")
    fake = rng.uniform(0, 1, (64, 1)).astype("float32")
    real[0], fake[1] = 0.0, 1.0  # saturated: the clipping applies

    def log(p):
        return ops.log(ops.clip(ops.cast(p, "float32"), 1e-7, 1.0 - 1e-7))

    np.testing.assert_array_equal(values(modified_generator_loss(fake)),
                                  ops.convert_to_numpy(-log(fake))[:, 0])
    np.testing.assert_array_equal(values(modified_discriminator_loss(real, fake)),
                                  ops.convert_to_numpy(-log(real) + -log(1.0 - fake))[:, 0])
    accuracy = ((real > 0.5).astype("float32") + (fake < 0.5).astype("float32")) / 2.0
    np.testing.assert_array_equal(values(discriminator_accuracy(real, fake)), accuracy[:, 0])


def test_every_patch_contributes_to_the_gradient():
    """Each value of an (batch, h, w, 1) map gets gradient 1 / (h w) (times the loss' own
    derivative), so no patch of a patch critic is silently dropped."""
    h, w = 2, 3
    rng = np.random.default_rng(2)
    real = tf.constant(rng.normal(size=(2, h, w, 1)).astype("float32"))
    fake = tf.constant(rng.normal(size=(2, h, w, 1)).astype("float32"))
    with tf.GradientTape(persistent=True) as tape:
        tape.watch([real, fake])
        generator = tf.reduce_sum(wasserstein_generator_loss(fake))
        critic = tf.reduce_sum(wasserstein_discriminator_loss(real, fake))
    np.testing.assert_allclose(tape.gradient(generator, fake).numpy(), -1.0 / (h * w), rtol=1e-6)
    real_gradient, fake_gradient = tape.gradient(critic, [real, fake])
    np.testing.assert_allclose(real_gradient.numpy(), -1.0 / (h * w), rtol=1e-6)
    np.testing.assert_allclose(fake_gradient.numpy(), 1.0 / (h * w), rtol=1e-6)

    # -log p has derivative -1/p: with every p = 0.5, each value's gradient is -2 / (h w).
    probability = tf.constant(np.full((2, h, w, 1), 0.5, "float32"))
    with tf.GradientTape() as tape:
        tape.watch(probability)
        loss = tf.reduce_sum(modified_generator_loss(probability))
    np.testing.assert_allclose(tape.gradient(loss, probability).numpy(), -2.0 / (h * w),
                               rtol=1e-6)
    # The critic's real side: -log D(y) also gives -2 / (h w) to each value at D(y) = 0.5.
    with tf.GradientTape() as tape:
        tape.watch(probability)
        loss = tf.reduce_sum(modified_discriminator_loss(probability, tf.zeros_like(probability)))
    np.testing.assert_allclose(tape.gradient(loss, probability).numpy(), -2.0 / (h * w),
                               rtol=1e-6)


def test_the_old_names_are_gone_and_losses_imports_no_training_code():
    assert not hasattr(losses, "generator_adversarial_loss")
    assert not hasattr(losses, "discriminator_loss")
    adversarial = importlib.import_module("losses.adversarial")
    assert "EnhanceGAN" in adversarial.__doc__ and "f = -f_W" in adversarial.__doc__
    for source in pathlib.Path(losses.__file__).parent.glob("*.py"):
        for line in source.read_text().splitlines():
            words = line.split()
            if words[:1] in (["import"], ["from"]):
                assert words[1].split(".")[0] not in ("train", "tools", "enhancers"), line
