"""enhancers.leaky_relu: Keras' LeakyReLU with the gradient read from the output, bit for bit."""
import keras
import numpy as np
import pytest
import tensorflow as tf

from enhancers import can, wespe
from enhancers.leaky_relu import LeakyReLU, leaky_relu

# Signed zeros, values that underflow to zero once scaled, and ordinary values.
EDGES = [0.0, -0.0, 1e-45, -1e-45, 1e-39, -1e-39, -3.0, 2.5]


def values_and_gradients(fn, x, dtype):
    x = tf.constant(x, dtype)
    with tf.GradientTape() as tape:
        tape.watch(x)
        y = fn(x)
        loss = tf.reduce_sum(y * tf.cast(tf.range(1, tf.size(y) + 1), dtype))
    return y.numpy(), tape.gradient(loss, x).numpy()


@pytest.mark.parametrize("dtype", ["float32", "float16", "bfloat16"])
@pytest.mark.parametrize("slope", [0.0, 0.2, 1.5])
def test_values_and_gradients_are_tf_nn_leaky_relus_bit_for_bit(dtype, slope):
    x = np.concatenate([EDGES, np.random.default_rng(0).normal(size=200)]).astype("float32")
    ours = values_and_gradients(lambda t: leaky_relu(t, slope), x, dtype)
    expected = values_and_gradients(lambda t: tf.nn.leaky_relu(t, alpha=slope), x, dtype)
    for actual, wanted in zip(ours, expected):
        np.testing.assert_array_equal(actual.view(np.uint8), wanted.view(np.uint8))


def test_is_a_keras_leaky_relu_that_round_trips_through_its_config():
    layer = LeakyReLU(0.2, name="lrelu")
    assert isinstance(layer, keras.layers.LeakyReLU)
    clone = keras.layers.deserialize(keras.layers.serialize(layer))
    assert type(clone) is LeakyReLU and clone.negative_slope == 0.2 and clone.name == "lrelu"


def test_wespe_discriminators_and_the_can_use_it():
    for model in (wespe.build_discriminator(3, patch_size=16), can.build_can(depth=3, width=4)):
        slopes = [layer for layer in model.layers if isinstance(layer, keras.layers.LeakyReLU)]
        assert slopes and all(type(layer) is LeakyReLU for layer in slopes), model.name
