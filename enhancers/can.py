"""The context aggregation network (CAN) of Talebi & Milanfar, "Learned Perceptual Image
Enhancement" (section 3), and Chen, Xu & Koltun's original (ICCV 2017), from one builder.

The paper's CAN (the defaults of `build_can`): d = 10 convolutional layers of 32 feature maps;
layers k = 0..8 are 3x3 convolutions with dilation 2^k, layer 9 is an undilated 1x1
convolution to RGB; leaky ReLU (slope 0.2) after every layer but the last; "unlike [5], our
intermediate feature maps are symmetrically padded" (`tf.pad(mode="SYMMETRIC")`), to avoid the
artifacts that zero padding makes at high dilation rates.

Chen et al.'s CAN24 (`CHEN_ET_AL`): 24 feature maps, dilations 1, 2, 4, ..., 64 then an
undilated 3x3 layer, the 1x1 output layer, zero ("same") padding, and adaptive batch
normalisation w0 * x + w1 * BN(x) before each leaky ReLU.

Both start from Chen et al.'s identity initialisation: every 3x3 kernel maps channel i to
channel i through its centre tap (so the image passes through the first three channels), and
the output layer is Glorot-initialised.

The network is fully convolutional: any image size, including photos smaller than the largest
dilation, where one symmetric pad cannot reach far enough (`symmetric_pad` extends the image
by repeated mirroring then).

    can = build_can()                           # the paper's CAN
    chen = build_can(**CHEN_ET_AL)              # Chen et al.'s CAN24
    enhanced = can(images)                      # float32 [b, h, w, 3], no clipping
    fast = inference_model(can)                 # the same variables, native dilated convs

`build_can`'s Keras `Conv2D(dilation_rate=d)` layers train the CAN; `inference_model` runs the
same variables at inference through `tf.nn.conv2d(..., dilations=d)`, which computes the same
sums faster (see `CanInference`): use it to evaluate and export.
"""
import keras
import numpy as np
import tensorflow as tf

from enhancers.leaky_relu import LeakyReLU

PADDINGS = ("symmetric", "zero")
DEPTH = 10
WIDTH = 32
LEAKY_RELU_SLOPE = 0.2
CHEN_ET_AL = {
    "width": 24,
    "dilations": (1, 2, 4, 8, 16, 32, 64, 1),
    "padding": "zero",
    "adaptive_batch_norm": True,
}


def paper_dilations(depth=DEPTH):
    """Dilation 2^k of the 3x3 layers k = 0 .. depth - 2 (section 3); the last layer is 1x1."""
    if depth < 2:
        raise ValueError(f"a CAN needs at least 2 layers, got depth={depth}")
    return tuple(2**k for k in range(depth - 1))


def _reflected_indices(length, pad):
    """Indices into an axis of `length` for positions -pad .. length + pad - 1 of its symmetric
    extension (period 2 * length: ... c b a | a b c | c b a | a b c ...)."""
    positions = tf.math.floormod(tf.range(-pad, length + pad), 2 * length)
    return tf.where(positions < length, positions, 2 * length - 1 - positions)


def symmetric_pad(images, pad):
    """Pads height and width of NHWC `images` by `pad` on each side by mirroring, edge included.

    Equals `tf.pad(images, ..., mode="SYMMETRIC")` where that works (pad <= height and width)
    and NumPy's `np.pad(..., mode="symmetric")` everywhere: a side shorter than `pad` is
    extended by repeated mirroring (period 2 * side).
    """
    pad = int(pad)
    if pad == 0:
        return images

    def mirror():
        return tf.pad(images, [[0, 0], [pad, pad], [pad, pad], [0, 0]], mode="SYMMETRIC")

    def repeated_mirror():
        shape = tf.shape(images)
        rows = tf.gather(images, _reflected_indices(shape[1], pad), axis=1)
        return tf.gather(rows, _reflected_indices(shape[2], pad), axis=2)

    height, width = images.shape[1], images.shape[2]
    if height is not None and width is not None:
        return mirror() if min(height, width) >= pad else repeated_mirror()
    shape = tf.shape(images)
    return tf.cond(tf.minimum(shape[1], shape[2]) >= pad, mirror, repeated_mirror)


@keras.saving.register_keras_serializable(package="enhancers")
class SymmetricPadding2D(keras.layers.Layer):
    """`symmetric_pad` as a layer: pads height and width by `pad` on each side."""

    def __init__(self, pad, **kwargs):
        super().__init__(**kwargs)
        self.pad = int(pad)

    def call(self, images):
        return symmetric_pad(images, self.pad)

    def compute_output_shape(self, input_shape):
        grow = lambda size: None if size is None else size + 2 * self.pad  # noqa: E731
        return (input_shape[0], grow(input_shape[1]), grow(input_shape[2]), input_shape[3])

    def get_config(self):
        return {**super().get_config(), "pad": self.pad}


@keras.saving.register_keras_serializable(package="enhancers")
class IdentityKernel(keras.initializers.Initializer):
    """Chen et al.'s identity initialisation of a conv kernel [kh, kw, in, out]: the centre tap
    maps input channel i to output channel i for i < min(in, out); everything else is 0."""

    def __call__(self, shape, dtype=None):
        kernel = np.zeros(shape, np.float32)
        centre_h, centre_w = shape[0] // 2, shape[1] // 2
        for channel in range(min(shape[2], shape[3])):
            kernel[centre_h, centre_w, channel, channel] = 1.0
        return keras.ops.convert_to_tensor(kernel, dtype=dtype or "float32")

    def get_config(self):
        return {}


@keras.saving.register_keras_serializable(package="enhancers")
class IdentityOutputKernel(keras.initializers.Initializer):
    """The 1x1 output layer started at the identity on the image's three channels, Glorot-
    uniform from every other feature map.

    At the start those other maps are exactly 0 (`IdentityKernel` passes only the image through
    the 3x3 layers), so the CAN is the identity whatever their weights. Zero weights there too
    would be a saddle the training never leaves: a feature map with no path to the output gets
    no gradient, and a path whose feature map is 0 gets none either, so the CAN would stay a
    3-channel network, a nearly affine map of the photo on images in [0, 1].
    """

    def __call__(self, shape, dtype=None):
        kernel = np.array(keras.initializers.GlorotUniform()(shape, "float32"))
        channels = min(shape[2], shape[3])
        kernel[:, :, :channels, :] = IdentityKernel()(
            tuple(shape[:2]) + (channels, shape[3]), "float32")
        return keras.ops.convert_to_tensor(kernel, dtype=dtype or "float32")

    def get_config(self):
        return {}


@keras.saving.register_keras_serializable(package="enhancers")
class AdaptiveBatchNormalization(keras.layers.Layer):
    """Chen et al.'s adaptive normalisation w0 * x + w1 * BN(x), with w0 = 1 and w1 = 0 at the
    start (section 3.3 of Chen et al.); BN as TF-Slim's default: a learned offset, no scale,
    moving-average decay 0.999, epsilon 0.001."""

    def __init__(self, momentum=0.999, epsilon=1e-3, **kwargs):
        super().__init__(**kwargs)
        self.momentum = momentum
        self.epsilon = epsilon
        self.batch_norm = keras.layers.BatchNormalization(
            momentum=momentum, epsilon=epsilon, center=True, scale=False, name="batch_norm")

    def build(self, input_shape):
        self.batch_norm.build(input_shape)
        self.w0 = self.add_weight(shape=(), initializer="ones", name="w0")
        self.w1 = self.add_weight(shape=(), initializer="zeros", name="w1")

    def call(self, inputs, training=None):
        normalised = self.batch_norm(inputs, training=training)
        return (keras.ops.cast(self.w0, inputs.dtype) * inputs
                + keras.ops.cast(self.w1, inputs.dtype) * normalised)

    def get_config(self):
        return {**super().get_config(), "momentum": self.momentum, "epsilon": self.epsilon}


def build_can(depth=None, width=WIDTH, dilations=None, padding="symmetric",
              adaptive_batch_norm=False, leaky_relu_slope=LEAKY_RELU_SLOPE, identity_output=False,
              name="can"):
    """A CAN mapping float RGB images [b, h, w, 3] to [b, h, w, 3] (module docstring).

    Args:
      depth: number of conv layers: depth - 1 dilated 3x3 layers and the 1x1 output layer
        (default and paper: 10; with `dilations` it defaults to, and must equal,
        len(dilations) + 1).
      width: feature maps of the 3x3 layers (paper: 32; Chen et al.: 24).
      dilations: the dilation of each 3x3 layer; default 2^k, k = 0 .. depth - 2
        (`paper_dilations`). Chen et al.: (1, 2, 4, 8, 16, 32, 64, 1).
      padding: "symmetric" (paper) or "zero" (Chen et al.).
      adaptive_batch_norm: Chen et al.'s w0 * x + w1 * BN(x) before each leaky ReLU (the
        3x3 layers then have no bias, as in TF-Slim with a normaliser).
      leaky_relu_slope: the leaky ReLU's negative slope (0.2).
      identity_output: start the 1x1 output layer as the identity on the first three feature
        maps too, so that the whole CAN starts as the identity on images in [0, 1] (not in the
        papers, whose output layer is Glorot-initialised; the short CPU demo uses it). Its
        weights from the other maps stay Glorot-initialised (`IdentityOutputKernel`).
    """
    if dilations is None:
        dilations = paper_dilations(DEPTH if depth is None else depth)
    else:
        dilations = tuple(int(d) for d in dilations)
        if depth is not None and depth != len(dilations) + 1:
            raise ValueError(f"depth={depth} disagrees with {len(dilations)} dilations "
                             f"{dilations} (depth = number of dilations + 1)")
    if not dilations or any(d < 1 for d in dilations):
        raise ValueError(f"dilations must be positive integers, got {dilations}")
    if padding not in PADDINGS:
        raise ValueError(f"padding must be one of {PADDINGS}, got {padding!r}")
    if width < 3:
        raise ValueError(f"width must be at least 3 (the image passes through), got {width}")

    images = keras.Input((None, None, 3), name="images")
    x = images
    for k, dilation in enumerate(dilations):
        if padding == "symmetric":
            x = SymmetricPadding2D(dilation, name=f"pad{k}")(x)
        x = keras.layers.Conv2D(
            width, 3, dilation_rate=dilation, padding="valid" if padding == "symmetric" else "same",
            use_bias=not adaptive_batch_norm, kernel_initializer=IdentityKernel(),
            name=f"conv{k}")(x)
        if adaptive_batch_norm:
            x = AdaptiveBatchNormalization(name=f"norm{k}")(x)
        x = LeakyReLU(negative_slope=leaky_relu_slope, name=f"lrelu{k}")(x)
    outputs = keras.layers.Conv2D(
        3, 1, kernel_initializer=IdentityOutputKernel() if identity_output else "glorot_uniform",
        name="conv_out", dtype="float32")(x)
    return keras.Model(images, outputs, name=name)


def _native_conv(layer, x):
    """Keras `Conv2D` `layer` on `x` as `tf.nn.conv2d(dilations=d)` + `tf.nn.bias_add`, with the
    layer's own variables, cast to its compute dtype as Keras does."""
    dtype = layer.compute_dtype
    x = tf.cast(x, dtype)
    outputs = tf.nn.conv2d(x, tf.cast(layer.kernel, dtype), strides=1,
                           padding=layer.padding.upper(), dilations=list(layer.dilation_rate))
    if layer.use_bias:
        outputs = tf.nn.bias_add(outputs, tf.cast(layer.bias, dtype))
    return layer.activation(outputs)


class CanInference(keras.Model):
    """A trained CAN (`build_can`) at inference, with native dilated convolutions.

    Why: Keras `Conv2D(dilation_rate=d)` calls `tf.nn.convolution`, which runs every dilated
    convolution as SpaceToBatchND -> Conv2D -> BatchToSpaceND. `tf.nn.conv2d(..., dilations=d)`
    adds the same products, and in a graph oneDNN also fuses it with the bias and the leaky
    ReLU: measured on a 1-megapixel photo on CPU, the Keras path is 1.2-1.5x slower
    (benchmarks/can_speed.py). Outputs are bit-identical for most layer shapes; where oneDNN
    picks kernels that sum in another order they differ by float32 rounding (at most 8.5e-7 x
    max|output| measured on the paper's CAN; tests/test_can_model.py allows 2e-6). For training
    the Keras path is the faster one (about 6%), so `build_can` keeps it and this model is only
    for inference (`training` is ignored: the adaptive BN always uses its moving statistics).

    It holds no variables of its own: it reads the trained model's (`self.can`) at every call,
    so it never drifts from the weights being trained, restored or loaded, and exporting it
    (`tools.export.export_enhancer`) saves exactly those variables. Symmetric padding stays
    `symmetric_pad` (`tf.pad(mode="SYMMETRIC")`); zero padding is the convolution's "SAME", as
    in the Keras layer.
    """

    def __init__(self, can, **kwargs):
        super().__init__(name=kwargs.pop("name", f"{can.name}_inference"), **kwargs)
        self.can = can
        self._steps = _inference_steps(can)
        self.built = True  # no variables of its own; the CAN's are built

    def call(self, images, training=None):
        del training
        x = images
        for kind, layer in self._steps:
            if kind == "pad":
                x = symmetric_pad(x, layer.pad)
            elif kind == "conv":
                x = _native_conv(layer, x)
            elif kind == "norm":
                x = layer(x, training=False)
            else:
                x = tf.nn.leaky_relu(tf.cast(x, layer.compute_dtype), alpha=layer.negative_slope)
        return x

    def compute_output_shape(self, input_shape):
        return self.can.compute_output_shape(input_shape)


def _inference_steps(model):
    """[(kind, layer)] of `model`'s layers after its input, in order; ValueError unless they form
    a chain of what `build_can` makes (stride-1, ungrouped Conv2D, SymmetricPadding2D,
    AdaptiveBatchNormalization, LeakyReLU)."""
    kinds = ((SymmetricPadding2D, "pad"), (keras.layers.Conv2D, "conv"),
             (AdaptiveBatchNormalization, "norm"), (keras.layers.LeakyReLU, "lrelu"))
    layers = model.layers
    if not layers or not isinstance(layers[0], keras.layers.InputLayer):
        raise ValueError(f"{model.name} is not a functional CAN (from enhancers.can.build_can)")
    steps, previous = [], layers[0]
    for layer in layers[1:]:
        kind = next((kind for cls, kind in kinds if isinstance(layer, cls)), None)
        if kind is None:
            raise ValueError(f"inference_model: unsupported layer {layer.name} "
                             f"({type(layer).__name__}) in {model.name}")
        if kind == "conv" and (tuple(layer.strides) != (1, 1) or layer.groups != 1
                               or layer.data_format != "channels_last"):
            raise ValueError(f"inference_model: {layer.name} is not a stride-1, ungrouped, "
                             "channels-last convolution")
        if layer.input is not previous.output:
            raise ValueError(f"inference_model: {model.name} is not a chain of layers "
                             f"({layer.name} does not take {previous.name}'s output)")
        steps.append((kind, layer))
        previous = layer
    if previous.output is not model.outputs[0] or len(model.outputs) != 1:
        raise ValueError(f"inference_model: {model.name} does not end at {previous.name}")
    return steps


def inference_model(model):
    """The inference path of a CAN from `build_can`: a `CanInference` reading `model`'s
    variables, equal to `model(images, training=False)` up to float32 summation order and faster (native dilated
    convolutions; `CanInference` says why). Used for evaluation and export; train `model`."""
    return CanInference(model)
