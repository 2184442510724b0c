"""PieNet's enhancer (section 3.2): any size, I + dI, the PUBs' resizing, parameter count."""
import keras
import numpy as np
import pytest
import tensorflow as tf

from enhancers.pienet import ResizeLike, TileLike, build_pienet, enhance
from enhancers.resnet18 import TRAINABLE_PARAMETERS

TINY = dict(widths=(8, 6, 4), preference_channels=3, zero_init_output=False)


@pytest.fixture(scope="module")
def tiny():
    keras.utils.set_random_seed(0)
    return build_pienet(**TINY)


def _inputs(seed, batch, height, width, dim=512):
    rng = np.random.default_rng(seed)
    return {"images": rng.random((batch, height, width, 3)).astype(np.float32),
            "preference": rng.standard_normal((batch, dim)).astype(np.float32)}


@pytest.mark.parametrize("height, width", [(37, 50), (64, 64)])
def test_any_size_and_enhanced_is_input_plus_delta(tiny, height, width):
    inputs = _inputs(1, 2, height, width)
    outputs = tiny(inputs, training=False)
    delta, enhanced = np.asarray(outputs["delta"]), np.asarray(outputs["enhanced"])
    assert delta.shape == enhanced.shape == (2, height, width, 3)
    assert delta.dtype == enhanced.dtype == np.float32
    assert np.abs(delta).max() > 1e-3  # a real delta, not the zero start
    np.testing.assert_allclose(enhanced, inputs["images"] + delta, rtol=0, atol=1e-6)


def test_the_preference_vector_changes_the_delta(tiny):
    inputs = _inputs(2, 1, 32, 40)
    other = dict(inputs, preference=-inputs["preference"])
    assert np.abs(np.asarray(tiny(inputs)["delta"]) - np.asarray(tiny(other)["delta"])).max() > 1e-4


def test_zero_initialised_output_starts_as_the_identity():
    keras.utils.set_random_seed(1)
    model = build_pienet(widths=(4, 4, 4), preference_channels=2)
    inputs = _inputs(3, 1, 33, 35)
    np.testing.assert_array_equal(np.asarray(model(inputs)["enhanced"]), inputs["images"])


def test_pixel_head_sees_each_pixel_and_starts_as_the_identity():
    keras.utils.set_random_seed(4)
    model = build_pienet(widths=(4, 4, 4), preference_channels=2, pixel_head=5, output_kernel=1)
    inputs = _inputs(5, 1, 33, 35)
    np.testing.assert_array_equal(np.asarray(model(inputs)["enhanced"]), inputs["images"])
    head_widths = [layer.filters for layer in model.layers if layer.name.startswith("pixel_head")]
    assert head_widths == [5, 5]
    # The head's first convolution reads [last PUB (4), conv1 (64), the image (3)]: with the
    # last convolution set, the image's own rows of its kernel move the delta.
    head = model.get_layer("pixel_head1")
    assert tuple(head.kernel.shape) == (1, 1, 4 + 64 + 3, 5)
    delta = model.get_layer("delta")
    delta.kernel.assign(np.random.default_rng(6).standard_normal(delta.kernel.shape))
    before = np.asarray(model(inputs)["delta"])
    head.kernel.assign(np.asarray(head.kernel) * (np.arange(71) < 68)[None, None, :, None])
    assert np.abs(np.asarray(model(inputs)["delta"]) - before).max() > 1e-3
    with pytest.raises(ValueError, match="pixel_head"):
        build_pienet(pixel_head=-1)


def test_pixel_head_preference_reaches_the_head_directly():
    keras.utils.set_random_seed(7)
    model = build_pienet(widths=(4, 4, 4), preference_channels=2, pixel_head=5,
                         pixel_head_preference=3, output_kernel=1)
    inputs = _inputs(8, 1, 33, 35)
    np.testing.assert_array_equal(np.asarray(model(inputs)["enhanced"]), inputs["images"])
    # [last PUB (4), conv1 (64), the image (3), the preference's dense layer (3)], the last
    # three the same at every pixel: the dense layer of the vector, tiled.
    head = model.get_layer("pixel_head1")
    assert tuple(head.kernel.shape) == (1, 1, 4 + 64 + 3 + 3, 5)
    dense = model.get_layer("pixel_preference")
    assert tuple(dense.kernel.shape) == (512, 3)
    tiled = keras.Model(model.inputs, model.get_layer("pixel_preference_tile").output)(inputs)
    expected = inputs["preference"] @ np.asarray(dense.kernel) + np.asarray(dense.bias)
    np.testing.assert_allclose(np.asarray(tiled), np.broadcast_to(
        expected[:, None, None, :], (1, 33, 35, 3)), rtol=1e-5, atol=1e-5)
    # With the delta convolution set, the preference's own rows of the head's kernel move the
    # delta: the vector reaches the head, not only through the PUBs.
    delta = model.get_layer("delta")
    delta.kernel.assign(np.random.default_rng(9).standard_normal(delta.kernel.shape))
    before = np.asarray(model(inputs)["delta"])
    head.kernel.assign(np.asarray(head.kernel) * (np.arange(74) < 71)[None, None, :, None])
    assert np.abs(np.asarray(model(inputs)["delta"]) - before).max() > 1e-3
    for bad in ({"pixel_head": 0, "pixel_head_preference": 3},
                {"pixel_head": 5, "pixel_head_preference": -1}):
        with pytest.raises(ValueError, match="pixel_head_preference"):
            build_pienet(widths=(4, 4, 4), preference_channels=2, **bad)


def _numpy_bilinear(x, height, width):
    """Bilinear resize with half-pixel centres and clamped edges (torch align_corners=False)."""
    def axis(out_size, in_size):
        source = np.maximum((np.arange(out_size) + 0.5) * in_size / out_size - 0.5, 0)
        low = np.minimum(np.floor(source).astype(int), in_size - 1)
        return low, np.minimum(low + 1, in_size - 1), source - low
    top, bottom, fy = axis(height, x.shape[1])
    left, right, fx = axis(width, x.shape[2])
    rows = x[:, top] * (1 - fy)[None, :, None, None] + x[:, bottom] * fy[None, :, None, None]
    return (rows[:, :, left] * (1 - fx)[None, None, :, None]
            + rows[:, :, right] * fx[None, None, :, None])


def test_resize_like_is_bilinear_to_the_reference_shape_and_tile_like_broadcasts():
    x = np.random.default_rng(4).random((2, 3, 4, 5)).astype(np.float32)
    reference = np.zeros((2, 7, 9, 1), np.float32)
    got = np.asarray(ResizeLike()([x, reference]))
    np.testing.assert_allclose(got, _numpy_bilinear(x, 7, 9), rtol=1e-5, atol=1e-6)
    vectors = x[:, 0, 0]
    np.testing.assert_array_equal(np.asarray(TileLike()([vectors, reference])),
                                  np.broadcast_to(vectors[:, None, None], (2, 7, 9, 5)))
    with pytest.raises(ValueError, match="interpolation"):
        ResizeLike("cubic")


def test_enhance_clips_and_takes_one_vector_for_all_images(tiny):
    inputs = _inputs(5, 2, 32, 32)
    inputs["images"] *= 1.5  # some outputs beyond 1
    vector = inputs["preference"][0]
    raw = np.asarray(tiny({"images": inputs["images"],
                           "preference": np.stack([vector, vector])})["enhanced"])
    assert raw.max() > 1
    np.testing.assert_allclose(enhance(tiny, inputs["images"], vector), np.clip(raw, 0, 1),
                               atol=1e-6)
    # One image alone against the same image in a batch of two: float32 convolutions of
    # another batch size may take another kernel (1.07e-6 apart seen here), so a few ULPs more.
    np.testing.assert_allclose(enhance(tiny, inputs["images"][1], vector), np.clip(raw[1], 0, 1),
                               atol=1e-5)
    np.testing.assert_allclose(enhance(tiny, inputs["images"], vector, clip=False), raw, atol=1e-6)


def test_config_round_trips(tiny):
    clone = keras.Model.from_config(tiny.get_config())
    clone.set_weights(tiny.get_weights())
    inputs = _inputs(6, 1, 37, 50)
    np.testing.assert_array_equal(np.asarray(clone(inputs)["enhanced"]),
                                  np.asarray(tiny(inputs)["enhanced"]))


def _decoder_parameters(widths, preference_channels, dim=512, features=(256, 128, 64), kernel=3):
    """Trainable parameters of the decoder, counted by hand from the module docstring."""
    total, previous = 0, 512  # the pooled vector feeds the first PUB
    for width, feature in zip(widths, features):
        total += dim * preference_channels + preference_channels  # preference 1x1 conv
        total += previous * width + width  # previous output's 1x1 conv
        concat = preference_channels + width + feature
        total += concat * width + 2 * width  # shortcut 1x1 conv + BN (gamma, beta)
        total += 9 * concat * width + 2 * width + 9 * width * width + 2 * width  # two 3x3 + BN
        previous = width
    return total + kernel * kernel * (widths[-1] + 64) * 3 + 3  # the delta convolution


def test_parameter_count_at_default_widths():
    model = build_pienet()
    trainable = sum(int(np.prod(w.shape)) for w in model.trainable_weights)
    decoder = _decoder_parameters((256, 128, 64), 64)
    print(f"PieNet at default widths: {trainable:,} trainable parameters "
          f"(ResNet-18 encoder {TRAINABLE_PARAMETERS:,}, decoder {decoder:,})")
    assert trainable == TRAINABLE_PARAMETERS + decoder
    assert 2e6 < decoder < 5e6  # the decoder is a fraction of the encoder


def test_bad_arguments():
    with pytest.raises(ValueError, match="widths"):
        build_pienet(widths=(8, 8))
    with pytest.raises(ValueError, match="normalization"):
        build_pienet(normalization="layer")


def test_without_normalisation_and_with_nearest_upsampling():
    keras.utils.set_random_seed(2)
    model = build_pienet(widths=(4, 4, 4), preference_channels=2, normalization="none",
                         upsampling="nearest", zero_init_output=False)
    assert not any(isinstance(layer, keras.layers.BatchNormalization) for layer in model.layers)
    inputs = _inputs(7, 1, 37, 50)
    outputs = model(inputs)
    assert tuple(outputs["enhanced"].shape) == (1, 37, 50, 3)
    np.testing.assert_allclose(np.asarray(outputs["enhanced"]),
                               inputs["images"] + np.asarray(outputs["delta"]), atol=1e-6)


def test_one_graph_serves_every_size(tiny):
    """A tf.function with unknown height and width (as an export has) traces once."""
    serve = tf.function(lambda images, preference: tiny(
        {"images": images, "preference": preference}, training=False)["enhanced"],
        input_signature=[tf.TensorSpec((None, None, None, 3)), tf.TensorSpec((None, 512))])
    for height, width in ((37, 50), (64, 64), (33, 20)):
        inputs = _inputs(8, 1, height, width)
        np.testing.assert_allclose(np.asarray(serve(inputs["images"], inputs["preference"])),
                                   np.asarray(tiny(inputs)["enhanced"]), atol=1e-5)
    assert serve.experimental_get_tracing_count() == 1
