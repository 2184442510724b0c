"""enhancers.can: the paper's CAN and Chen et al.'s, checked against a NumPy forward pass."""
import keras
import numpy as np
import pytest
import tensorflow as tf

from enhancers import can


def numpy_pad(x, pad, mode):
    widths = [(0, 0), (pad, pad), (pad, pad), (0, 0)]
    return np.pad(x, widths, mode="symmetric" if mode == "symmetric" else "constant")


def numpy_dilated_conv(x, kernel, bias, dilation, padding):
    """'valid' dilated convolution after padding by `dilation` (3x3) or none (1x1), in NumPy."""
    kh = kernel.shape[0]
    pad = dilation * (kh // 2)
    padded = numpy_pad(x, pad, padding) if pad else x
    height, width = x.shape[1], x.shape[2]
    out = np.zeros(x.shape[:3] + (kernel.shape[3],), np.float64)
    for i in range(kh):
        for j in range(kernel.shape[1]):
            window = padded[:, i * dilation:i * dilation + height, j * dilation:j * dilation + width]
            out += window @ kernel[i, j]
    return out + (0 if bias is None else bias)


def numpy_can(model, x, dilations, padding, slope=0.2):
    for k, dilation in enumerate(dilations):
        layer = model.get_layer(f"conv{k}")
        weights = [np.asarray(w, np.float64) for w in layer.get_weights()]
        x = numpy_dilated_conv(x, weights[0], weights[1] if len(weights) > 1 else None, dilation,
                               padding)
        x = np.where(x > 0, x, slope * x)
    kernel, bias = [np.asarray(w, np.float64) for w in model.get_layer("conv_out").get_weights()]
    return numpy_dilated_conv(x, kernel, bias, 1, padding)


def randomise(model, seed=0, scale=0.3):
    rng = np.random.default_rng(seed)
    for weight in model.weights:
        weight.assign(rng.normal(0, scale, weight.shape).astype("float32"))


def test_paper_architecture():
    model = can.build_can()
    convs = [layer for layer in model.layers if isinstance(layer, keras.layers.Conv2D)]
    assert len(convs) == 10  # d = 10 layers (section 3)
    assert [c.dilation_rate[0] for c in convs[:-1]] == [1, 2, 4, 8, 16, 32, 64, 128, 256]
    assert all(c.kernel_size == (3, 3) and c.filters == 32 for c in convs[:-1])
    assert convs[-1].kernel_size == (1, 1) and convs[-1].filters == 3
    assert convs[-1].dilation_rate == (1, 1) and convs[-1].activation is keras.activations.linear
    slopes = {layer.negative_slope for layer in model.layers
              if isinstance(layer, keras.layers.LeakyReLU)}
    assert slopes == {0.2}
    # 3x3x3x32 + 32, eight of 3x3x32x32 + 32, 1x1x32x3 + 3.
    assert model.count_params() == (3 * 9 * 32 + 32) + 8 * (32 * 9 * 32 + 32) + (32 * 3 + 3)


def test_chen_et_al_architecture():
    model = can.build_can(**can.CHEN_ET_AL)
    convs = [layer for layer in model.layers if isinstance(layer, keras.layers.Conv2D)]
    assert [c.dilation_rate[0] for c in convs] == [1, 2, 4, 8, 16, 32, 64, 1, 1]
    assert [c.kernel_size[0] for c in convs] == [3] * 8 + [1]
    assert all(not c.use_bias for c in convs[:-1])
    norms = [layer for layer in model.layers if isinstance(layer, can.AdaptiveBatchNormalization)]
    assert len(norms) == 8
    assert not any(isinstance(layer, can.SymmetricPadding2D) for layer in model.layers)


def test_depth_and_dilations_arguments():
    assert can.paper_dilations(4) == (1, 2, 4)
    assert len(can.build_can(depth=4).layers) < len(can.build_can().layers)
    with pytest.raises(ValueError, match="depth=5 disagrees"):
        can.build_can(depth=5, dilations=(1, 2))
    with pytest.raises(ValueError, match="padding"):
        can.build_can(padding="reflect")
    with pytest.raises(ValueError, match="at least 2"):
        can.build_can(depth=1)


@pytest.mark.parametrize("height,width,pad", [(5, 7, 1), (5, 7, 5), (5, 7, 6), (3, 40, 16),
                                              (1, 1, 4), (2, 9, 64)])
def test_symmetric_pad_matches_numpy_including_pads_larger_than_the_image(height, width, pad):
    x = np.random.default_rng(1).random((2, height, width, 3)).astype("float32")
    expected = numpy_pad(x, pad, "symmetric")
    np.testing.assert_array_equal(can.symmetric_pad(tf.constant(x), pad).numpy(), expected)
    dynamic = tf.function(lambda t: can.symmetric_pad(t, pad),
                          input_signature=[tf.TensorSpec([None, None, None, 3], tf.float32)])
    np.testing.assert_array_equal(dynamic(tf.constant(x)).numpy(), expected)


def test_symmetric_pad_gradient_is_the_sum_over_mirror_images():
    x = tf.constant(np.random.default_rng(2).random((1, 3, 4, 1)).astype("float32"))
    upstream = np.random.default_rng(3).random((1, 3 + 10, 4 + 10, 1)).astype("float32")
    with tf.GradientTape() as tape:
        tape.watch(x)
        y = can.symmetric_pad(x, 5)
    gradient = tape.gradient(y, x, output_gradients=tf.constant(upstream)).numpy()
    # Independent: each padded position copies one source pixel; find it by padding indices.
    index = np.arange(12, dtype=np.float64).reshape(1, 3, 4, 1)
    source = numpy_pad(index, 5, "symmetric").astype(int).ravel()
    expected = np.bincount(source, weights=upstream.ravel(), minlength=12).reshape(1, 3, 4, 1)
    np.testing.assert_allclose(gradient, expected, rtol=1e-5)


@pytest.mark.parametrize("padding", ["symmetric", "zero"])
@pytest.mark.parametrize("height,width", [(19, 23), (6, 300)])
def test_forward_pass_matches_numpy(padding, height, width):
    model = can.build_can(padding=padding)  # dilations up to 256: larger than these photos
    randomise(model, scale=0.15)
    x = np.random.default_rng(4).random((1, height, width, 3))
    expected = numpy_can(model, x, can.paper_dilations(10), padding)
    np.testing.assert_allclose(model(x.astype("float32")).numpy(), expected, rtol=1e-3,
                               atol=1e-4)


def test_identity_initialisation_passes_the_image_through():
    model = can.build_can()
    kernel = np.zeros((1, 1, 32, 3), np.float32)
    kernel[0, 0, [0, 1, 2], [0, 1, 2]] = 1.0
    model.get_layer("conv_out").set_weights([kernel, np.zeros(3, np.float32)])
    x = np.random.default_rng(5).random((1, 33, 45, 3)).astype("float32")
    np.testing.assert_allclose(model(x).numpy(), x, atol=1e-6)


@pytest.mark.parametrize("adaptive_batch_norm", [False, True])
def test_identity_output_starts_as_the_identity_and_every_feature_map_learns(adaptive_batch_norm):
    # With the output layer's weights from feature maps 3.. at 0 as well, those maps (0 at the
    # start) would get no gradient at any layer, ever: the CAN would stay a 3-channel network.
    keras.utils.set_random_seed(3)
    model = can.build_can(depth=5, width=8, identity_output=True,
                          adaptive_batch_norm=adaptive_batch_norm)
    x = tf.constant(np.random.default_rng(5).random((2, 24, 28, 3)), tf.float32)
    np.testing.assert_allclose(model(x).numpy(), x.numpy(), atol=1e-6)
    kernel = model.get_layer("conv_out").get_weights()[0]
    np.testing.assert_array_equal(kernel[0, 0, :3], np.eye(3))
    assert np.abs(kernel[0, 0, 3:]).min() > 0
    with tf.GradientTape() as tape:
        loss = tf.reduce_mean((model(x, training=True) - tf.sqrt(x)) ** 2)
    gradients = dict(zip([v.path for v in model.trainable_variables],
                         tape.gradient(loss, model.trainable_variables)))
    for k in range(4):  # every 3x3 layer's weights into maps 3.. move
        assert np.abs(gradients[f"conv{k}/kernel"].numpy()[..., 3:]).max() > 1e-6, k


def test_any_size_runs_under_one_trace():
    model = can.build_can(depth=6, width=8)
    traces = []

    @tf.function(input_signature=[tf.TensorSpec([None, None, None, 3], tf.float32)])
    def enhance(images):
        traces.append(1)
        return model(images, training=False)

    for shape in [(1, 1, 1, 3), (2, 7, 300, 3), (1, 64, 48, 3)]:
        assert enhance(tf.zeros(shape)).shape == shape
    assert len(traces) == 1


def test_adaptive_batch_norm_matches_its_formula():
    layer = can.AdaptiveBatchNormalization()
    x = np.random.default_rng(6).normal(2.0, 3.0, (2, 5, 6, 4)).astype("float32")
    np.testing.assert_allclose(layer(x, training=True).numpy(), x, atol=1e-6)  # w0=1, w1=0
    layer.w0.assign(0.7)
    layer.w1.assign(1.3)
    beta = np.array([0.1, -0.2, 0.3, 0.0], np.float32)
    layer.batch_norm.beta.assign(beta)
    mean, var = x.mean(axis=(0, 1, 2)), x.var(axis=(0, 1, 2))
    expected = 0.7 * x + 1.3 * ((x - mean) / np.sqrt(var + 1e-3) + beta)
    np.testing.assert_allclose(layer(x, training=True).numpy(), expected, rtol=1e-4, atol=1e-4)
    moving = layer.batch_norm.moving_mean.numpy()
    np.testing.assert_allclose(moving, 0.001 * mean * 2, rtol=1e-3)  # two updates, decay 0.999


def test_saved_and_loaded_model_gives_the_same_output(tmp_path):
    for kwargs in ({}, can.CHEN_ET_AL):
        model = can.build_can(**kwargs)
        randomise(model, seed=7, scale=0.1)
        path = str(tmp_path / "can.keras")
        model.save(path)
        loaded = keras.models.load_model(path)
        x = np.random.default_rng(8).random((1, 20, 30, 3)).astype("float32")
        np.testing.assert_allclose(loaded(x).numpy(), model(x).numpy(), rtol=1e-5, atol=1e-6)


def graph_op_types(function, *args):
    """Op types of a tf.function's graph for `args`, nested functions included."""
    graph_def = function.get_concrete_function(*args).graph.as_graph_def()
    nodes = list(graph_def.node)
    for nested in graph_def.library.function:
        nodes.extend(nested.node_def)
    return {node.op for node in nodes}


def randomise_like_trained(model, seed=0):
    """Random weights that keep activations of order 1 (He-like kernels, moving variances in
    [0.5, 2]), so that a tolerance relative to the output means what it says."""
    rng = np.random.default_rng(seed)
    for weight in model.weights:
        if "moving_variance" in weight.path:
            weight.assign(rng.uniform(0.5, 2.0, weight.shape).astype("float32"))
        else:
            fan_in = int(np.prod(weight.shape[:-1])) if len(weight.shape) == 4 else 1
            weight.assign(rng.normal(0, fan_in ** -0.5, weight.shape).astype("float32"))


# Native dilated conv2d and Keras' SpaceToBatchND path add the same products; oneDNN may pick a
# kernel that sums them in another order for some layer shapes, so outputs agree bit for bit in
# most cases (the paper's tiny CAN here) and otherwise to a few float32 roundings: measured at
# most 8.5e-7 x max|output| on the paper's full CAN (10 layers, 32 maps) at 240x320.
INFERENCE_TOLERANCE = 2e-6
INFERENCE_CASES = {
    "paper_tiny": dict(depth=5, width=8),
    "zero_padding": dict(depth=5, width=8, padding="zero"),
    "chen_et_al_small": dict(can.CHEN_ET_AL, width=6),  # dilation 64 > these photos
}


@pytest.mark.parametrize("case", sorted(INFERENCE_CASES))
@pytest.mark.parametrize("shape", [(1, 37, 53, 3), (2, 5, 70, 3)])
def test_inference_model_equals_the_training_path(case, shape):
    model = can.build_can(**INFERENCE_CASES[case])
    randomise_like_trained(model)
    inference = can.inference_model(model)
    x = np.random.default_rng(9).random(shape).astype("float32")
    expected = model(x, training=False).numpy()
    traced = tf.function(lambda images: inference(images, training=False),
                         input_signature=[tf.TensorSpec([None, None, None, 3], tf.float32)])
    tolerance = INFERENCE_TOLERANCE * np.abs(expected).max()
    for actual in (inference(x).numpy(), traced(tf.constant(x)).numpy()):
        assert actual.shape == expected.shape and actual.dtype == np.float32
        np.testing.assert_allclose(actual, expected, rtol=0, atol=tolerance)


def test_inference_model_reads_the_trained_variables():
    model = can.build_can(**dict(can.CHEN_ET_AL, width=6))
    inference = can.inference_model(model)
    assert [id(w) for w in inference.weights] == [id(w) for w in model.weights]
    randomise_like_trained(model, seed=10)  # trained on after inference_model: no stale copy
    x = np.random.default_rng(11).random((1, 21, 17, 3)).astype("float32")
    expected = model(x, training=False).numpy()
    np.testing.assert_allclose(inference(x).numpy(), expected, rtol=0,
                               atol=INFERENCE_TOLERANCE * np.abs(expected).max())


@pytest.mark.parametrize("padding", can.PADDINGS)
def test_inference_graph_has_no_space_to_batch(padding):
    """The speed of the inference path is its native dilated convolutions: Keras' path shows
    SpaceToBatchND, the inference path must not."""
    model = can.build_can(depth=4, width=4, padding=padding)
    spec = tf.TensorSpec([1, None, None, 3], tf.float32)
    training_path = graph_op_types(tf.function(lambda x: model(x, training=False)), spec)
    inference = can.inference_model(model)
    inference_path = graph_op_types(tf.function(lambda x: inference(x, training=False)), spec)
    assert {"SpaceToBatchND", "BatchToSpaceND"} <= training_path
    assert not {"SpaceToBatchND", "BatchToSpaceND"} & inference_path
    assert "Conv2D" in inference_path


def test_inference_model_refuses_other_models():
    inputs = keras.Input((None, None, 3))
    strided = keras.Model(inputs, keras.layers.Conv2D(3, 3, strides=2)(inputs))
    with pytest.raises(ValueError, match="stride-1"):
        can.inference_model(strided)
    pooled = keras.Model(inputs, keras.layers.AveragePooling2D(2)(inputs))
    with pytest.raises(ValueError, match="unsupported layer"):
        can.inference_model(pooled)
    first = keras.layers.Conv2D(3, 1)(inputs)
    two_heads = keras.Model(inputs, [first, keras.layers.Conv2D(3, 1)(inputs)])
    with pytest.raises(ValueError, match="not a chain"):
        can.inference_model(two_heads)
