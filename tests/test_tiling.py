"""enhancers.tiling: tiled inference equals untiled inference, receptive fields, errors.

Tiny random models on 40x70-pixel images with window budgets small enough to force several
tiles, clamped border tiles and unequal last cores.
"""
import keras
import numpy as np
import pytest
import tensorflow as tf

from enhancers import can, tiling, wespe
from tests.test_can_model import randomise_like_trained

TOLERANCE = 1.0 / 255


def _images(shape=(2, 40, 70, 3), seed=0):
    return np.random.default_rng(seed).random(shape).astype(np.float32)


def _graph_call(tiler, images):
    """The tiler inside a tf.function with unknown sizes, as in an exported SavedModel."""
    function = tf.function(tiler, input_signature=[tf.TensorSpec([None, None, None, 3])])
    return function(images).numpy()


def _random_generator(seed=0):
    """WESPE's G at width 4 with one residual block (radius 12), weights that make the
    instance norms matter: gammas around 1, betas and kernels of order 1."""
    model = wespe.build_generator(filters=4, residual_blocks=1)
    rng = np.random.default_rng(seed)
    for weight in model.weights:
        offset = 1.0 if "gamma" in weight.path else 0.0
        weight.assign(rng.normal(offset, 0.3, weight.shape).astype(np.float32))
    return model


def test_receptive_field_radius_by_hand():
    assert tiling.receptive_field_radius(wespe.build_generator()) == 4 + 8 + 2 + 4
    assert tiling.receptive_field_radius(can.build_can()) == 511
    assert tiling.receptive_field_radius(can.build_can(**can.CHEN_ET_AL)) == 127 + 1
    assert tiling.receptive_field_radius(can.inference_model(can.build_can(depth=4))) == 7

    # The longest path counts: 5x5 dilation 2 (4) then a 2x2 kernel (1) beside a 3x3 skip.
    inputs = keras.Input((None, None, 3))
    a = keras.layers.Conv2D(4, 5, dilation_rate=2, padding="same")(inputs)
    a = keras.layers.Conv2D(4, 2, padding="same")(a)
    b = keras.layers.DepthwiseConv2D(3, padding="same")(keras.layers.Conv2D(4, 1)(inputs))
    outputs = keras.layers.Concatenate()([a, keras.layers.ReLU()(b)])
    assert tiling.receptive_field_radius(keras.Model(inputs, outputs)) == 5


@pytest.mark.parametrize("layer", [keras.layers.Conv2D(3, 3, strides=2, padding="same",
                                                       name="strided"),
                                   keras.layers.MaxPooling2D(name="pooling")])
def test_unsupported_layer_is_named(layer):
    inputs = keras.Input((None, None, 3))
    model = keras.Model(inputs, layer(keras.layers.Conv2D(3, 3, padding="same")(inputs)))
    with pytest.raises(ValueError, match=f"cannot tile.*{layer.name}"):
        tiling.tiled(model)


def test_window_too_small_for_the_receptive_field():
    with pytest.raises(ValueError, match="receptive-field radius 15"):
        tiling.plan_tiles(can.build_can(depth=5), window_pixels=30 * 30)


def test_default_plan_from_the_widest_layer():
    plan = tiling.plan_tiles(wespe.build_generator())  # 64 maps
    assert plan.window == 1024 and plan.halo == 18 and plan.global_norms == 8
    assert plan.as_dict()["core"] == 1024 - 36
    assert tiling.plan_tiles(can.build_can()).window == 4 * 511 + 2  # at least 4 radii


def test_wespe_generator_tiled_equals_untiled():
    model = _random_generator()
    images = _images()
    tiler = tiling.tiled(model, window_pixels=36 * 36)  # cores of 12: 4 x 6 tiles per image
    assert tiler.plan.halo == 12 and tiler.plan.global_norms == 2
    expected = model(images, training=False).numpy()
    tiled = _graph_call(tiler, images)
    assert tiled.shape == expected.shape
    np.testing.assert_allclose(tiled, expected, rtol=0, atol=TOLERANCE)
    assert np.abs(tiled - expected).max() < 1e-4
    # Eagerly too, on one odd-sized image.
    one = images[:1, :37, :41]
    np.testing.assert_allclose(tiler(one).numpy(), model(one).numpy(), rtol=0, atol=1e-4)


def test_global_context_generator_tiled_equals_untiled():
    """The WESPE demo's G (no instance norm, mirrored borders, residual, `GlobalContext`): the
    context's mean comes from the whole photo, so the windows agree with the untiled run."""
    model = wespe.build_generator(filters=4, residual_blocks=1, padding="symmetric",
                                  instance_norm=False, residual=True, global_context=True)
    rng = np.random.default_rng(5)
    for weight in model.weights:
        weight.assign(rng.normal(0.0, 0.5, weight.shape).astype(np.float32))
    images = _images(seed=6)
    tiler = tiling.tiled(model, window_pixels=36 * 36)
    assert tiler.plan.global_norms == 1
    expected = model(images, training=False).numpy()
    window = model(images[:, :36, :36]).numpy()[:, :12, :12]
    assert np.abs(window - expected[:, :12, :12]).max() > 10 * TOLERANCE  # the mean matters
    # Features reach several hundred here (no norm), so float32 summation order shows at 1e-3.
    np.testing.assert_allclose(_graph_call(tiler, images), expected, rtol=0, atol=TOLERANCE)


def test_window_statistics_alone_would_show_seams():
    """Why the statistics passes exist: per-window instance norm differs from the photo's."""
    model = _random_generator()
    images = _images()
    window = images[:, :36, :36]
    assert np.abs(model(window).numpy()[:, :12, :12]
                  - model(images).numpy()[:, :12, :12]).max() > 10 * TOLERANCE


def test_instance_norm_numerics_match_keras():
    """A large epsilon and a large mean make the epsilon placement and variance definition
    (population, over the whole photo) visible."""
    inputs = keras.Input((None, None, 3))
    x = keras.layers.Conv2D(5, 3, padding="same")(inputs)
    x = keras.layers.GroupNormalization(groups=-1, epsilon=0.5)(x)
    model = keras.Model(inputs, keras.layers.Conv2D(3, 1)(x))
    rng = np.random.default_rng(3)
    for weight in model.weights:
        weight.assign(rng.normal(0.5, 1.0, weight.shape).astype(np.float32))
    images = 20.0 + _images(seed=4)
    expected = model(images).numpy()
    tiled = _graph_call(tiling.tiled(model, window_pixels=20 * 20), images)
    np.testing.assert_allclose(tiled, expected, rtol=0, atol=1e-4 * np.abs(expected).max())


@pytest.mark.parametrize("options", [dict(depth=5, width=5),
                                     dict(dilations=(1, 2, 4, 8, 1), width=5, padding="zero",
                                          adaptive_batch_norm=True)],
                         ids=["symmetric", "chen_zero_padding_adaptive_bn"])
def test_can_tiled_equals_untiled(options):
    model = can.build_can(**options)
    randomise_like_trained(model, seed=7)
    images = _images((2, 45, 70, 3), seed=1)
    expected = model(images, training=False).numpy()
    for target in (model, can.inference_model(model)):
        tiler = tiling.tiled(target, window_pixels=41 * 41)  # halo 15 or 16: several cores
        assert tiler.plan.window == 41
        np.testing.assert_allclose(_graph_call(tiler, images), expected, rtol=0, atol=1e-5)
    one = images[:1, :43, :44]  # eagerly, on an odd size
    np.testing.assert_allclose(tiler(one).numpy(), model(one).numpy(), rtol=0, atol=1e-5)


def test_photo_within_one_window_runs_untiled():
    model = _random_generator()
    images = _images((1, 20, 30, 3))
    np.testing.assert_array_equal(tiling.tiled(model)(images).numpy(), model(images).numpy())
