"""enhancers.enhancegan.filters: our Photo Filter definition (hand-worked), the filter networks,
the weights and their combination (equation 5) against NumPy."""
import keras
import numpy as np
import pytest
import tensorflow as tf

from enhancers.enhancegan import filters

LUMA = np.array([0.299, 0.587, 0.114])


def numpy_photo_filter(images, rgb, density=0.25):
    blend = (1 - density) * images + density * np.asarray(rgb)
    blend = blend * (images @ LUMA)[..., None] / (blend @ LUMA)[..., None]
    return np.clip(blend, 0, 1)


def test_filter_colours_are_photoshops():
    assert filters.hex_to_rgb("#00b5ff") == (0.0, 181 / 255, 1.0)
    assert filters.hex_to_rgb(filters.FILTER_COLORS["warming_85"]) == (236 / 255, 138 / 255, 0.0)
    assert filters.FILTER_COLORS["underwater"] == "#00c2b1"
    assert filters.FILTER_NAMES == ("cooling_80", "warming_85", "underwater")


def test_photo_filter_hand_worked_grey():
    # Mid grey 0.5 under cooling 80 at 25%: blend = 0.75 * 0.5 + 0.25 * (0, 181/255, 1)
    # = (0.375, 0.55245, 0.625); luma 0.50772; rescaled by 0.5 / 0.50772.
    blend = np.array([0.375, 0.375 + 0.25 * 181 / 255, 0.625])
    expected = blend * 0.5 / (blend @ LUMA)
    got = filters.photo_filter(np.float32([[[0.5, 0.5, 0.5]]]), "cooling_80").numpy()[0, 0]
    np.testing.assert_allclose(got, expected, rtol=1e-5)
    assert got[2] > got[0]  # bluer
    np.testing.assert_allclose(got @ LUMA, 0.5, rtol=1e-5)  # same luminance


@pytest.mark.parametrize("name", filters.FILTER_NAMES)
def test_photo_filter_preserves_luminance_keeps_black_and_matches_numpy(name):
    rng = np.random.default_rng(0)
    images = rng.uniform(0.0, 0.8, size=(2, 9, 9, 3))
    images[0, 0, 0] = 0.0
    got = filters.photo_filter(images.astype(np.float32), name).numpy()
    rgb = filters.hex_to_rgb(filters.FILTER_COLORS[name])
    np.testing.assert_allclose(got, numpy_photo_filter(images, rgb), atol=1e-5)
    np.testing.assert_array_equal(got[0, 0, 0], [0.0, 0.0, 0.0])
    unclipped = np.all(numpy_photo_filter(images, rgb) < 1, axis=-1)
    np.testing.assert_allclose((got @ LUMA)[unclipped], (images @ LUMA)[unclipped], atol=1e-5)
    assert got.min() >= 0 and got.max() <= 1
    # Without "preserve luminosity": the plain blend.
    plain = filters.photo_filter(images.astype(np.float32), name,
                                 preserve_luminosity=False).numpy()
    np.testing.assert_allclose(plain, 0.75 * images + 0.25 * np.asarray(rgb), atol=1e-6)


def test_filter_network_starts_as_the_identity_on_any_size():
    network = filters.build_filter_network("cooling")
    for size in ((16, 16), (23, 41)):
        images = np.random.default_rng(1).uniform(size=(2, *size, 3)).astype(np.float32)
        np.testing.assert_allclose(network(images).numpy(), images, atol=1e-7)
    assert len(network.layers) == 5  # input, three convolutions, the residual sum
    spatial = filters.build_filter_network("spatial", kernel_size=3)
    assert spatial.get_layer("spatial_conv1").kernel.shape == (3, 3, 3, filters.FILTER_WIDTH)


def test_a_filter_network_learns_its_filter():
    keras.utils.set_random_seed(0)
    network = filters.build_filter_network("warming", width=16)
    rng = np.random.default_rng(2)
    images = rng.uniform(size=(8, 16, 16, 3)).astype(np.float32)
    target = filters.photo_filter(images, "warming_85").numpy()
    network.compile(optimizer=keras.optimizers.Adam(1e-2), loss="mse")
    repeats = 150  # one epoch of 150 steps: far less overhead than 150 epochs
    network.fit(np.tile(images, (repeats, 1, 1, 1)), np.tile(target, (repeats, 1, 1, 1)),
                epochs=1, batch_size=8, verbose=0)
    held_out = rng.uniform(size=(2, 20, 20, 3)).astype(np.float32)
    error = np.mean((network(held_out).numpy()
                     - filters.photo_filter(held_out, "warming_85").numpy()) ** 2)
    start = np.mean((held_out - filters.photo_filter(held_out, "warming_85").numpy()) ** 2)
    assert error < start / 10, (error, start)


def test_filter_weights():
    raw = np.float32([[1.0, 2.0, 3.0], [-50.0, 0.0, 50.0]])
    softmax = filters.filter_weights(raw).numpy()
    np.testing.assert_allclose(softmax.sum(axis=1), 1.0, rtol=1e-6)
    np.testing.assert_allclose(softmax[0], np.exp([1, 2, 3]) / np.exp([1, 2, 3]).sum(),
                               rtol=1e-6)
    np.testing.assert_array_equal(filters.filter_weights(raw, "linear").numpy(), raw)
    with pytest.raises(ValueError, match="weighting"):
        filters.filter_weights(raw, "sigmoid")


def test_combine_filters_is_equation_5():
    rng = np.random.default_rng(3)
    images = rng.uniform(size=(2, 8, 8, 3)).astype(np.float32)
    weights = np.float32([[0.2, 0.5, 0.3], [1.0, -1.0, 0.5]])
    phis = [lambda x, name=name: filters.photo_filter(x, name) for name in filters.FILTER_NAMES]
    got = filters.combine_filters(images, phis, weights).numpy()
    filtered = [phi(images).numpy() for phi in phis]
    expected = sum(weights[:, i, None, None, None] * filtered[i] for i in range(3))
    np.testing.assert_allclose(got, expected, atol=1e-6)
    named = filters.apply_named_filters(images)
    np.testing.assert_allclose(np.stack([x.numpy() for x in named]), np.stack(filtered))
    with pytest.raises(ValueError, match="3 filters"):
        filters.combine_filters(images, phis, weights[:, :2])


def test_combination_is_differentiable_in_the_weights():
    images = tf.constant(np.random.default_rng(4).uniform(size=(1, 8, 8, 3)), tf.float32)
    weights = tf.Variable([[0.3, 0.3, 0.4]])
    phis = [lambda x, name=name: filters.photo_filter(x, name) for name in filters.FILTER_NAMES]
    with tf.GradientTape() as tape:
        loss = tf.reduce_mean(filters.combine_filters(images, phis, weights))
    gradient = tape.gradient(loss, weights).numpy()
    expected = [np.mean(phi(images).numpy()) for phi in phis]
    np.testing.assert_allclose(gradient[0], expected, rtol=1e-5)
