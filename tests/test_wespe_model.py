"""WESPE's G/F and D_c/D_t against NumPy forward passes, DPED's sizes, and the input transforms."""
import keras
import numpy as np
import pytest
import scipy.ndimage
import tensorflow as tf

from enhancers import wespe
from tests.numpy_nets import conv2d_same, instance_norm, leaky_relu, relu


def randomise(model, seed=0, scale=0.2):
    """Weights large enough that every layer visibly matters (DPED's init is 0.01)."""
    rng = np.random.default_rng(seed)
    model.set_weights([
        rng.normal(0.0, scale, w.shape).astype("float32") + (1.0 if "gamma" in v.path else 0.0)
        for w, v in zip(model.get_weights(), model.weights)
    ])


def layer_weights(model, name):
    return [np.asarray(w, np.float64) for w in model.get_layer(name).get_weights()]


def numpy_generator(model, x, blocks, padding="zero", norm=True):
    def conv(h, name):
        kernel, bias = layer_weights(model, name)
        if padding == "symmetric":  # mirror, then a 'valid' conv = the centre of a SAME conv
            r = kernel.shape[0] // 2
            h = np.pad(h, ((0, 0), (r, r), (r, r), (0, 0)), mode="symmetric")
            return conv2d_same(h, kernel, bias)[:, r:-r, r:-r]
        return conv2d_same(h, kernel, bias)

    h = relu(conv(x, "conv_in"))
    for b in range(1, blocks + 1):
        skip = h
        for c in (1, 2):
            h = conv(h, f"block{b}_conv{c}")
            if norm:
                h = instance_norm(h, *layer_weights(model, f"block{b}_norm{c}"))
            h = relu(h)
        h = h + skip  # DPED adds the skip after the second ReLU
    h = relu(conv(h, "conv_post1"))
    h = relu(conv(h, "conv_post2"))
    return np.tanh(conv(h, "conv_out")) * 0.58 + 0.5


def test_generator_matches_numpy_dped_generator():
    model = wespe.build_generator(filters=6, residual_blocks=2)
    randomise(model)
    x = np.random.default_rng(1).uniform(size=(2, 13, 17, 3))
    expected = numpy_generator(model, x, blocks=2)
    np.testing.assert_allclose(model(x.astype("float32")).numpy(), expected, atol=2e-5)


def test_demo_generator_options_match_numpy_and_have_no_border_or_scale_effects():
    """Not in the paper: mirrored borders and no instance norm (the CPU demo's G). A flat photo
    stays flat to the border (no dark frame), and G on a crop equals G on the photo away from
    the crop's edges (the same function on a training patch and on a whole photo)."""
    model = wespe.build_generator(filters=6, residual_blocks=2, padding="symmetric",
                                  instance_norm=False)
    randomise(model)
    assert not any("norm" in layer.name for layer in model.layers)
    x = np.random.default_rng(1).uniform(size=(1, 23, 29, 3))
    np.testing.assert_allclose(model(x.astype("float32")).numpy(),
                               numpy_generator(model, x, 2, padding="symmetric", norm=False),
                               atol=2e-5)
    flat = model(np.full((1, 30, 40, 3), 0.4, np.float32)).numpy()
    np.testing.assert_allclose(flat, np.broadcast_to(flat[:, 15:16, 20:21], flat.shape),
                               atol=1e-5)
    zero_padded = wespe.build_generator(filters=6, residual_blocks=2)
    randomise(zero_padded)
    flat = zero_padded(np.full((1, 30, 40, 3), 0.4, np.float32)).numpy()
    assert np.abs(flat[:, 0] - flat[:, 15]).max() > 1e-3  # zero padding: a border effect
    radius = 4 + 2 * 2 + 2 + 4
    crop = model(x[:, 2:, 3:].astype("float32")).numpy()
    whole = model(x.astype("float32")).numpy()
    np.testing.assert_allclose(crop[:, radius:-radius, radius:-radius],
                               whole[:, 2 + radius:-radius, 3 + radius:-radius], atol=1e-5)
    with pytest.raises(ValueError, match="padding"):
        wespe.build_generator(padding="reflect")


def test_generator_paper_size_and_any_image_size():
    model = wespe.build_generator()
    # conv_in 9*9*3*64+64; 4 blocks of 2 x (3*3*64*64+64 + 2*64); 2 x (3*3*64*64+64); 9*9*64*3+3
    assert model.count_params() == 15616 + 4 * 2 * (36928 + 128) + 2 * 36928 + 15555 == 401475
    for shape in [(1, 100, 100, 3), (1, 37, 61, 3)]:
        out = model(np.random.default_rng(0).uniform(size=shape).astype("float32"))
        assert out.shape == shape
        assert np.all(out.numpy() >= -0.08) and np.all(out.numpy() <= 1.08)


def numpy_discriminator(model, x):
    h = x
    for index, (_, stride, _, norm) in enumerate(wespe.DISCRIMINATOR_CONVS, start=1):
        h = leaky_relu(conv2d_same(h, *layer_weights(model, f"conv{index}"), stride=stride))
        if norm:  # DPED's _conv_layer: conv, LeakyReLU, then instance norm
            h = instance_norm(h, *layer_weights(model, f"conv{index}_norm"))
    fc_kernel, fc_bias = layer_weights(model, "fc")
    h = leaky_relu(h.reshape(len(h), -1) @ fc_kernel + fc_bias)
    kernel, bias = layer_weights(model, "probability")
    return 1.0 / (1.0 + np.exp(-(h @ kernel + bias)))


@pytest.mark.parametrize("channels", [3, 1])
def test_discriminator_matches_numpy_dped_discriminator(channels):
    model = wespe.build_discriminator(channels, patch_size=24)
    randomise(model, scale=0.05)
    x = np.random.default_rng(2).uniform(size=(3, 24, 24, channels))
    np.testing.assert_allclose(model(x.astype("float32")).numpy(), numpy_discriminator(model, x),
                               atol=2e-5)


def test_discriminator_paper_sizes():
    model = wespe.build_discriminator(3)
    sides = [model.get_layer(f"conv{i}").output.shape[1] for i in range(1, 6)]
    assert sides == [25, 13, 13, 13, 7] and wespe.discriminator_feature_size(100) == 7
    assert [model.get_layer(f"conv{i}").filters for i in range(1, 6)] == [48, 128, 192, 192, 128]
    assert model.get_layer("fc").units == 1024 and model.output.shape == (None, 1)
    convs = 17472 + 153728 + 221376 + 331968 + 221312
    norms = 2 * (128 + 192 + 192 + 128)
    assert model.count_params() == convs + norms + (7 * 7 * 128 + 1) * 1024 + 1025
    texture = wespe.build_discriminator(1)
    assert texture.count_params() == model.count_params() - 11 * 11 * 2 * 48
    with pytest.raises(ValueError, match="channels"):
        wespe.build_discriminator(2)


def test_models_round_trip_through_config():
    rng = np.random.default_rng(3)
    cases = [(wespe.build_generator(8, 1), (1, 20, 20, 3)),
             (wespe.build_discriminator(1, patch_size=32), (2, 32, 32, 1))]
    for model, shape in cases:
        clone = keras.Model.from_config(model.get_config())
        clone.set_weights(model.get_weights())
        x = rng.uniform(size=shape).astype("float32")
        np.testing.assert_allclose(clone(x).numpy(), model(x).numpy(), atol=1e-6)


def test_gaussian_blur_is_scipy_gaussian_filter_with_mirror_padding():
    kernel = wespe.gaussian_kernel()
    assert kernel.shape == (21, 21) and abs(kernel.sum() - 1.0) < 1e-6
    x = np.random.default_rng(4).uniform(size=(2, 30, 26, 3)).astype("float32")
    # scipy's "mirror" is TF's REFLECT (edge pixel not repeated); radius 10 = truncate 10/3.
    expected = scipy.ndimage.gaussian_filter(x.astype(np.float64), sigma=(0, 3, 3, 0),
                                             truncate=10 / 3, mode="mirror")
    np.testing.assert_allclose(wespe.gaussian_blur(x).numpy(), expected, atol=1e-5)


def test_grayscale_is_tf_rgb_to_grayscale():
    x = np.random.default_rng(5).uniform(size=(2, 5, 7, 3)).astype("float32")
    np.testing.assert_allclose(wespe.to_grayscale(x).numpy(),
                               tf.image.rgb_to_grayscale(x).numpy(), atol=1e-6)
    np.testing.assert_allclose(wespe.to_grayscale(x).numpy()[..., 0],
                               x @ np.array([0.2989, 0.587, 0.114], np.float32), atol=1e-6)
