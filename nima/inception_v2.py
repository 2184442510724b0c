"""BN-Inception ("Inception-v2") as TF-Slim builds it: the NIMA Inception-v2 backbone.

NIMA (Talebi & Milanfar, paper section 2.1) uses Inception-v2 pre-trained on ImageNet as one of
its three baseline CNNs. The network is BN-Inception (Ioffe & Szegedy 2015, "Batch
Normalization: Accelerating Deep Network Training by Reducing Internal Covariate Shift", Fig. 5)
exactly as TF-Slim's `nets/inception_v2.py` defines it, whose ImageNet checkpoint
(`inception_v2_2016_08_28`, `inception_v2.ckpt`) the NIMA ports start from. It is not Keras'
InceptionV3.

`build_inception_v2()` mirrors `inception_v2_base(inputs)` with its default arguments
(final_endpoint='Mixed_5c', depth_multiplier=1.0, min_depth=16; in the later models/research
copy also use_separable_conv=True, data_format='NHWC') under `inception_v2_arg_scope()`:

- stride 1 and SAME padding for every convolution and pooling (the base never uses VALID);
- `Conv2d_1a_7x7` is a separable 7x7/2 convolution with depthwise multiplier
  min(int(64 / 3), 8) = 8 (3 -> 24 -> 64 channels). slim's arg scope gives batch norm only to
  `conv2d`, not to `separable_conv2d`, so this layer keeps slim's defaults: a bias and a ReLU,
  no batch norm (slim's checkpoints hold `Conv2d_1a_7x7/biases`);
- every other convolution has no bias and is followed by batch norm without gamma
  (center=True, scale=False), epsilon 0.001, decay (Keras momentum) 0.9997, then ReLU;
- Mixed_3b ... Mixed_5b pool with a 3x3/1 average pool in Branch_3; Mixed_5c with a 3x3/1 max
  pool (`Mixed_5c/Branch_3/MaxPool_0a_3x3`); Mixed_4a and Mixed_5a reduce with stride-2 SAME
  convolutions and a 3x3/2 max pool.

Slim's Inception preprocessing maps [0, 1] to [-1, 1] (x - 0.5) * 2; that happens inside the
model (`SymmetricScale`, layer "preprocess"), so the model takes float RGB in [0, 1] of any size
and returns the Mixed_5c feature map (batch, ceil(H/32), ceil(W/32), 1024): 7x7 at 224x224.

Keras layers are named after the slim scopes with "/" written as "." (Keras forbids "/"), e.g.
`Mixed_3b.Branch_1.Conv2d_0a_1x1` and `Mixed_3b.Branch_1.Conv2d_0a_1x1.BatchNorm`, so
`slim_variable_map` turns every model variable into its checkpoint name mechanically.

Weights: `tools.convert_slim_inception_v2` converts a TF-Slim checkpoint into an HDF5 file keyed
by those checkpoint names; `load_inception_v2_weights` reads it and fails, naming the file, on
any missing, extra or mis-shaped array.
"""
import os

import h5py
import keras
import numpy as np

from nima.preprocessing import SymmetricScale

SLIM_SCOPE = "InceptionV2"
SEPARATOR = "."  # stands for slim's "/" in Keras layer names

BATCH_NORM_EPSILON = 0.001
BATCH_NORM_DECAY = 0.9997

# What the weights file says it is (root attributes), so a wrong file fails with a clear error.
WEIGHTS_FORMAT = "nima.inception_v2/slim-checkpoint-names"
WEIGHTS_FORMAT_VERSION = 1

# Keras variable name -> TF-Slim variable name, per layer kind.
_SLIM_VARIABLE_NAMES = {
    "kernel": "weights",
    "depthwise_kernel": "depthwise_weights",
    "pointwise_kernel": "pointwise_weights",
    "bias": "biases",
    "beta": "beta",
    "gamma": "gamma",
    "moving_mean": "moving_mean",
    "moving_variance": "moving_variance",
}


def _layer_name(*scopes):
    return SEPARATOR.join(scopes)


def _conv_bn_relu(x, filters, kernel_size, scope, strides=1):
    """slim.conv2d under inception_v2_arg_scope: conv (no bias) -> BatchNorm (no gamma) -> ReLU."""
    x = keras.layers.Conv2D(
        filters,
        kernel_size,
        strides=strides,
        padding="same",
        use_bias=False,
        name=_layer_name(*scope),
    )(x)
    x = keras.layers.BatchNormalization(
        axis=-1,
        momentum=BATCH_NORM_DECAY,
        epsilon=BATCH_NORM_EPSILON,
        center=True,
        scale=False,
        name=_layer_name(*scope, "BatchNorm"),
    )(x)
    return keras.layers.ReLU(name=_layer_name(*scope, "Relu"))(x)


def _inception_module(x, end_point, branch_0, branch_1, branch_2, branch_3, pool="avg"):
    """Mixed_3b/3c/4b-4e/5b/5c: 1x1 | 1x1-3x3 | 1x1-3x3-3x3 | 3x3/1 pool-1x1, concatenated."""
    b0 = _conv_bn_relu(x, branch_0, 1, (end_point, "Branch_0", "Conv2d_0a_1x1"))

    b1 = _conv_bn_relu(x, branch_1[0], 1, (end_point, "Branch_1", "Conv2d_0a_1x1"))
    b1 = _conv_bn_relu(b1, branch_1[1], 3, (end_point, "Branch_1", "Conv2d_0b_3x3"))

    b2 = _conv_bn_relu(x, branch_2[0], 1, (end_point, "Branch_2", "Conv2d_0a_1x1"))
    b2 = _conv_bn_relu(b2, branch_2[1], 3, (end_point, "Branch_2", "Conv2d_0b_3x3"))
    b2 = _conv_bn_relu(b2, branch_2[1], 3, (end_point, "Branch_2", "Conv2d_0c_3x3"))

    if pool == "avg":
        b3 = keras.layers.AveragePooling2D(
            3, strides=1, padding="same", name=_layer_name(end_point, "Branch_3", "AvgPool_0a_3x3")
        )(x)
    else:
        b3 = keras.layers.MaxPooling2D(
            3, strides=1, padding="same", name=_layer_name(end_point, "Branch_3", "MaxPool_0a_3x3")
        )(x)
    b3 = _conv_bn_relu(b3, branch_3, 1, (end_point, "Branch_3", "Conv2d_0b_1x1"))
    return keras.layers.Concatenate(axis=-1, name=_layer_name(end_point, "concat"))(
        [b0, b1, b2, b3]
    )


def _reduction_module(x, end_point, branch_0, branch_1):
    """Mixed_4a/5a: 1x1-3x3/2 | 1x1-3x3-3x3/2 | 3x3/2 max pool (all SAME), concatenated."""
    b0 = _conv_bn_relu(x, branch_0[0], 1, (end_point, "Branch_0", "Conv2d_0a_1x1"))
    b0 = _conv_bn_relu(b0, branch_0[1], 3, (end_point, "Branch_0", "Conv2d_1a_3x3"), strides=2)

    b1 = _conv_bn_relu(x, branch_1[0], 1, (end_point, "Branch_1", "Conv2d_0a_1x1"))
    b1 = _conv_bn_relu(b1, branch_1[1], 3, (end_point, "Branch_1", "Conv2d_0b_3x3"))
    b1 = _conv_bn_relu(b1, branch_1[1], 3, (end_point, "Branch_1", "Conv2d_1a_3x3"), strides=2)

    b2 = keras.layers.MaxPooling2D(
        3, strides=2, padding="same", name=_layer_name(end_point, "Branch_2", "MaxPool_1a_3x3")
    )(x)
    return keras.layers.Concatenate(axis=-1, name=_layer_name(end_point, "concat"))([b0, b1, b2])


def build_inception_v2(name="inception_v2", weights=None):
    """TF-Slim's `inception_v2_base` up to Mixed_5c as a Keras functional model.

    Input: float32 RGB in [0, 1], shape (batch, H, W, 3), any H and W (at least 32 for a
    meaningful map; every stride-2 stage rounds up). Output: Mixed_5c, (batch, ceil(H/32),
    ceil(W/32), 1024). Channel counts follow slim (and Ioffe & Szegedy 2015, Fig. 5 / the
    slim comments); 10,153,336 trainable parameters. `weights` is None (random initialisation)
    or a file written by `tools.convert_slim_inception_v2` (see `load_inception_v2_weights`).
    """
    images = keras.Input((None, None, 3), name="images")
    x = SymmetricScale(name="preprocess")(images)

    # 224 x 224 x 3 -> 112 x 112 x 64. Depthwise multiplier min(int(64 / 3), 8) = 8.
    x = keras.layers.SeparableConv2D(
        64,
        7,
        strides=2,
        padding="same",
        depth_multiplier=8,
        use_bias=True,
        name="Conv2d_1a_7x7",
    )(x)
    x = keras.layers.ReLU(name=_layer_name("Conv2d_1a_7x7", "Relu"))(x)
    # -> 56 x 56 x 64
    x = keras.layers.MaxPooling2D(3, strides=2, padding="same", name="MaxPool_2a_3x3")(x)
    x = _conv_bn_relu(x, 64, 1, ("Conv2d_2b_1x1",))
    x = _conv_bn_relu(x, 192, 3, ("Conv2d_2c_3x3",))
    # -> 28 x 28 x 192
    x = keras.layers.MaxPooling2D(3, strides=2, padding="same", name="MaxPool_3a_3x3")(x)

    x = _inception_module(x, "Mixed_3b", 64, (64, 64), (64, 96), 32)  # 28 x 28 x 256
    x = _inception_module(x, "Mixed_3c", 64, (64, 96), (64, 96), 64)  # 28 x 28 x 320
    x = _reduction_module(x, "Mixed_4a", (128, 160), (64, 96))  # 14 x 14 x 576
    x = _inception_module(x, "Mixed_4b", 224, (64, 96), (96, 128), 128)
    x = _inception_module(x, "Mixed_4c", 192, (96, 128), (96, 128), 128)
    x = _inception_module(x, "Mixed_4d", 160, (128, 160), (128, 160), 96)
    x = _inception_module(x, "Mixed_4e", 96, (128, 192), (160, 192), 96)  # 14 x 14 x 576
    x = _reduction_module(x, "Mixed_5a", (128, 192), (192, 256))  # 7 x 7 x 1024
    x = _inception_module(x, "Mixed_5b", 352, (192, 320), (160, 224), 128)
    x = _inception_module(x, "Mixed_5c", 352, (192, 320), (192, 224), 128, pool="max")

    model = keras.Model(images, x, name=name)
    if weights is not None:
        load_inception_v2_weights(model, weights)
    return model


def slim_variable_name(layer_name, variable_name):
    """The TF-Slim checkpoint name of Keras variable `variable_name` of layer `layer_name`."""
    if variable_name not in _SLIM_VARIABLE_NAMES:
        raise ValueError(
            f"Layer {layer_name!r} has a variable {variable_name!r} with no TF-Slim counterpart."
        )
    scope = layer_name.replace(SEPARATOR, "/")
    return f"{SLIM_SCOPE}/{scope}/{_SLIM_VARIABLE_NAMES[variable_name]}"


def slim_variable_map(model):
    """{TF-Slim checkpoint name: Keras variable} for every variable of `model`, in model order.

    E.g. "InceptionV2/Conv2d_1a_7x7/depthwise_weights" -> Conv2d_1a_7x7's depthwise_kernel,
    "InceptionV2/Mixed_3b/Branch_0/Conv2d_0a_1x1/BatchNorm/moving_mean" -> that layer's
    moving_mean. Slim and Keras store kernels in the same layout (HWIO; depthwise HW, in,
    multiplier), so arrays copy over unchanged.
    """
    mapping = {}
    for layer in model.layers:
        for variable in layer.weights:
            name = slim_variable_name(layer.name, variable.name)
            if name in mapping:
                raise ValueError(f"Two variables of {model.name} map to the TF-Slim name {name}.")
            mapping[name] = variable
    return mapping


def save_inception_v2_weights(model, path, source=""):
    """Writes every variable of `model` to a new HDF5 file keyed by its TF-Slim name.

    Refuses to overwrite an existing file. `source` (e.g. the checkpoint it came from) is kept
    as a root attribute for provenance.
    """
    path = os.fspath(path)
    if os.path.exists(path):
        raise FileExistsError(f"Refusing to overwrite existing weights file: {path}")
    mapping = slim_variable_map(model)
    handle = h5py.File(path, "w-")  # "w-": fail if the file appeared meanwhile
    try:
        with handle:
            handle.attrs["format"] = WEIGHTS_FORMAT
            handle.attrs["format_version"] = WEIGHTS_FORMAT_VERSION
            handle.attrs["source"] = str(source)
            for name, variable in mapping.items():
                handle.create_dataset(name, data=variable.numpy())
    except BaseException:
        # Never leave a half-written file behind for the loader (or a re-run) to trip over.
        os.remove(path)
        raise
    return path


def _list_arrays(handle):
    names = []
    handle.visititems(lambda name, item: names.append(name) if isinstance(item, h5py.Dataset) else None)
    return names


def _names_preview(names, limit=20):
    names = sorted(names)
    more = f" ... and {len(names) - limit} more" if len(names) > limit else ""
    return ", ".join(names[:limit]) + more


def load_inception_v2_weights(model, path):
    """Loads a file written by `tools.convert_slim_inception_v2` into `build_inception_v2()`.

    Every variable of `model` must be in the file with the right shape and the file must hold
    nothing else; otherwise a FileNotFoundError or ValueError names the file and the offending
    arrays, and the model is left unchanged.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(
            f"Inception-v2 weights file not found: {path} (write it with "
            "`python -m tools.convert_slim_inception_v2 --checkpoint=... --output=...`)."
        )
    try:
        handle = h5py.File(path, "r")
    except OSError as error:
        raise ValueError(f"{path} is not a readable HDF5 Inception-v2 weights file: {error}") from error
    mapping = slim_variable_map(model)
    with handle:
        file_format = handle.attrs.get("format")
        if isinstance(file_format, bytes):
            file_format = file_format.decode("utf8")
        if file_format != WEIGHTS_FORMAT:
            raise ValueError(
                f"{path} is not an Inception-v2 weights file written by "
                f"tools.convert_slim_inception_v2 (format attribute {file_format!r}, expected "
                f"{WEIGHTS_FORMAT!r})."
            )
        version = int(handle.attrs.get("format_version", -1))
        if version != WEIGHTS_FORMAT_VERSION:
            raise ValueError(
                f"{path} has Inception-v2 weights format version {version}; this code reads "
                f"version {WEIGHTS_FORMAT_VERSION}."
            )
        in_file = set(_list_arrays(handle))
        missing = set(mapping) - in_file
        extra = in_file - set(mapping)
        mismatched = [
            f"{name}: file {handle[name].shape} vs model {tuple(mapping[name].shape)}"
            for name in sorted(set(mapping) & in_file)
            if tuple(handle[name].shape) != tuple(mapping[name].shape)
        ]
        if missing or extra or mismatched:
            problems = []
            if missing:
                problems.append(f"missing from the file: {_names_preview(missing)}")
            if extra:
                problems.append(f"not in the model: {_names_preview(extra)}")
            if mismatched:
                problems.append(f"shape mismatches: {'; '.join(mismatched[:20])}")
            raise ValueError(
                f"{path} does not fit the Inception-v2 model {model.name!r}: " + " | ".join(problems)
            )
        arrays = {name: np.asarray(handle[name]) for name in mapping}
    for name, variable in mapping.items():
        variable.assign(arrays[name].astype(variable.dtype))
    return model
