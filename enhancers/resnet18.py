"""ResNet-18 (He et al. 2016, v1 with basic blocks) in torchvision's layout, as PieNet's
embedding network (section 3.1) and encoder (section 3.2).

Architecture (torchvision `resnet18`): conv1 7x7/2, 64 maps, no bias + BN + ReLU; max pool 3x3/2
(padding 1); layer1..layer4, two basic blocks each (3x3 conv + BN + ReLU, 3x3 conv + BN, plus
the shortcut, ReLU), 64, 128, 256, 512 maps; the first block of layer2..layer4 has stride 2 and
a 1x1/2 conv + BN shortcut ("downsample"); global average pooling. Without fc: 11,176,512
trainable parameters, as torchvision's and keras-hub's `resnet_18_imagenet`. BN epsilon 1e-5
and momentum 0.9 (torch's 0.1). Padding is explicit and symmetric as in torch (3 for conv1, 1
for the 3x3 convs and the max pool), not TensorFlow's "same", which pads stride-2 layers
unevenly; the max pool follows a ReLU, so padding it with 0 equals torch's -inf.

Taps (PieNet section 3.2): "one convolution layer, eight residual blocks, and one average
pooling layer. The encoder extracts five multi-scale features from the convolution layer, the
2nd, 4th, 6th residual blocks, and the pooling layer." Counting basic blocks 1..8, blocks 2, 4
and 6 end layer1, layer2 and layer3; "the convolution layer" is read as conv1 + BN + ReLU,
before the max pool. The model returns a dict (shapes at a 512 x 512 input):

    "conv1"  (b, 256, 256, 64)   stride 2
    "block2" (b, 128, 128, 64)   stride 4, end of layer1
    "block4" (b, 64, 64, 128)    stride 8, end of layer2
    "block6" (b, 32, 32, 256)    stride 16, end of layer3
    "pool"   (b, 512)            global average of layer4 (stride 32)

Any input size works; a side of n pixels gives floor((n - 1) / 2) + 1 at conv1, as in torch.

Input: float32 RGB in [0, 1] (DESIGN.md section 4); with `preprocess=True` (default) the model
applies torchvision's ImageNet normalisation (`imagenet_preprocess`) itself.

Weights: `weights=None` is random (logged loudly) or a local .npz of torchvision's state dict
(`load_resnet18_weights`); nothing is downloaded. To make the .npz where torch is installed:

    import numpy as np, torch, torchvision
    np.savez("resnet18_imagenet.npz", **{k: v.numpy() for k, v in torchvision.models.resnet18(
        weights="IMAGENET1K_V1").state_dict().items()})

(or `torch.load("resnet18-f37072fd.pth")` in place of the `state_dict()` call).
"""
import os
import zipfile

import keras
import numpy as np
from absl import logging
from keras import ops

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
BN_EPSILON = 1e-5  # torch.nn.BatchNorm2d's default
BN_MOMENTUM = 0.9  # torch's momentum 0.1 on the new batch
WIDTHS = (64, 128, 256, 512)
BLOCKS_PER_LAYER = 2
TAPS = ("conv1", "block2", "block4", "block6", "pool")
TRAINABLE_PARAMETERS = 11_176_512  # torchvision resnet18 without fc
_IGNORED_SUFFIXES = (".num_batches_tracked",)
_IGNORED_PREFIXES = ("fc.",)


def imagenet_preprocess(images):
    """torchvision's ImageNet input: RGB in [0, 1] -> (x - mean) / std per channel, with mean
    (0.485, 0.456, 0.406) and std (0.229, 0.224, 0.225) (`transforms.Normalize`)."""
    images = ops.convert_to_tensor(images)
    mean = ops.convert_to_tensor(IMAGENET_MEAN, dtype=images.dtype)
    std = ops.convert_to_tensor(IMAGENET_STD, dtype=images.dtype)
    return (images - mean) / std


@keras.saving.register_keras_serializable(package="enhancers")
class ImageNetNormalization(keras.layers.Layer):
    """`imagenet_preprocess` as a layer, so that the preprocessing lives inside the model."""

    def call(self, images):
        return imagenet_preprocess(images)


def _conv(x, filters, kernel, stride, pad, name):
    if pad:
        x = keras.layers.ZeroPadding2D(pad, name=f"{name}_pad")(x)
    return keras.layers.Conv2D(filters, kernel, strides=stride, padding="valid", use_bias=False,
                               kernel_initializer="he_normal", name=name)(x)


def _bn(x, name):
    return keras.layers.BatchNormalization(epsilon=BN_EPSILON, momentum=BN_MOMENTUM, name=name)(x)


def _basic_block(x, filters, stride, name):
    """torchvision's BasicBlock; `name` is its torch prefix with "_" for "." (layer2_0)."""
    shortcut = x
    y = _conv(x, filters, 3, stride, 1, f"{name}_conv1")
    y = keras.layers.ReLU(name=f"{name}_relu1")(_bn(y, f"{name}_bn1"))
    y = _bn(_conv(y, filters, 3, 1, 1, f"{name}_conv2"), f"{name}_bn2")
    if stride != 1 or x.shape[-1] != filters:
        shortcut = _conv(x, filters, 1, stride, 0, f"{name}_downsample_0")
        shortcut = _bn(shortcut, f"{name}_downsample_1")
    y = keras.layers.Add(name=f"{name}_add")([y, shortcut])
    return keras.layers.ReLU(name=f"{name}_relu2")(y)


def build_resnet18(input_shape=(None, None, 3), weights=None, preprocess=True, name="resnet18"):
    """ResNet-18 returning the dict of taps `TAPS` (module docstring).

    Args:
      input_shape: (h, w, 3); any size by default.
      weights: None (random, logged loudly) or a local .npz of torchvision's state dict.
      preprocess: apply `imagenet_preprocess` inside the model (inputs RGB in [0, 1]); False
        for inputs already normalised.
    """
    images = keras.Input(input_shape, name="images")
    x = ImageNetNormalization(name="imagenet_normalization")(images) if preprocess else images
    x = _conv(x, WIDTHS[0], 7, 2, 3, "conv1")
    conv1 = keras.layers.ReLU(name="relu")(_bn(x, "bn1"))
    x = keras.layers.ZeroPadding2D(1, name="maxpool_pad")(conv1)  # >= 0 after ReLU: as -inf
    x = keras.layers.MaxPooling2D(3, strides=2, name="maxpool")(x)
    taps = {"conv1": conv1}
    block = 0
    for layer, filters in enumerate(WIDTHS, start=1):
        for index in range(BLOCKS_PER_LAYER):
            stride = 2 if layer > 1 and index == 0 else 1
            x = _basic_block(x, filters, stride, f"layer{layer}_{index}")
            block += 1
            if block in (2, 4, 6):
                taps[f"block{block}"] = x
    taps["pool"] = keras.layers.GlobalAveragePooling2D(name="avgpool")(x)
    model = keras.Model(images, taps, name=name)
    if weights is None:
        logging.warning("ResNet-18 has RANDOM weights: PieNet's embedding and encoder then see "
                        "random features. Pass a local .npz of torchvision's resnet18 state "
                        "dict (enhancers.resnet18's docstring says how to make it) for the "
                        "paper's ImageNet initialisation (section 3.1).")
    else:
        load_resnet18_weights(model, weights)
    return model


def torch_names(model):
    """{torch state-dict prefix: Keras layer} for the conv and BN layers of `model` (a model from
    `build_resnet18`): layer "layer2_0_downsample_0" holds torch's "layer2.0.downsample.0"."""
    names = {}
    for layer in model.layers:
        if isinstance(layer, (keras.layers.Conv2D, keras.layers.BatchNormalization)):
            names[layer.name.replace("_", ".")] = layer
    return names


def _expected_arrays(model):
    """{state-dict key: (Keras variable, torch shape, to_keras)} for every weight of `model`."""
    expected = {}
    for prefix, layer in torch_names(model).items():
        if isinstance(layer, keras.layers.Conv2D):
            kh, kw, cin, cout = layer.kernel.shape
            expected[f"{prefix}.weight"] = (layer.kernel, (cout, cin, kh, kw),
                                            lambda w: np.transpose(w, (2, 3, 1, 0)))
        else:
            for key, variable in (("weight", layer.gamma), ("bias", layer.beta),
                                  ("running_mean", layer.moving_mean),
                                  ("running_var", layer.moving_variance)):
                expected[f"{prefix}.{key}"] = (variable, tuple(variable.shape), lambda w: w)
    return expected


def read_state_dict(path):
    """{key: array} from a .npz of a torch state dict; a "module." prefix (DataParallel) is
    dropped. FileNotFoundError or ValueError naming `path` if it cannot be read."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"ResNet-18 weights file not found: {path}")
    try:
        archive = np.load(path, allow_pickle=False)
        if not isinstance(archive, np.lib.npyio.NpzFile):
            raise ValueError("it holds a single array")
        with archive:
            state = {key: np.asarray(archive[key]) for key in archive.files}
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as error:
        raise ValueError(f"{path} is not an .npz of a torch state dict (name -> array): "
                         f"{error}") from error
    return {key[len("module."):] if key.startswith("module.") else key: value
            for key, value in state.items()}


def load_resnet18_weights(model, path):
    """Loads torchvision's resnet18 state dict, saved as an .npz (module docstring), into a
    model from `build_resnet18`: conv weights OIHW -> HWIO, BN weight/bias/running_mean/
    running_var -> gamma/beta/moving_mean/moving_variance. fc.* and num_batches_tracked are
    ignored; a missing, misshapen or unexpected key is a ValueError naming the file and the key,
    and nothing is assigned then. Returns `model`."""
    path = os.fspath(path)
    state = read_state_dict(path)
    expected = _expected_arrays(model)
    if not expected:
        raise ValueError(f"{model.name} has no ResNet-18 layers to load {path} into")
    missing = sorted(set(expected) - set(state))
    if missing:
        raise ValueError(f"{path} lacks {len(missing)} ResNet-18 key(s): "
                         f"{', '.join(missing[:5])}{' ...' if len(missing) > 5 else ''}")
    unexpected = sorted(key for key in state if key not in expected
                        and not key.startswith(_IGNORED_PREFIXES)
                        and not key.endswith(_IGNORED_SUFFIXES))
    if unexpected:
        raise ValueError(f"{path} has key(s) that ResNet-18 does not (another network?): "
                         f"{', '.join(unexpected[:5])}{' ...' if len(unexpected) > 5 else ''}")
    for key, (_, shape, _) in expected.items():
        if tuple(state[key].shape) != shape:
            raise ValueError(f"{path}: {key} has shape {tuple(state[key].shape)}, ResNet-18 "
                             f"expects {shape}")
    for key, (variable, _, to_keras) in expected.items():
        variable.assign(to_keras(state[key].astype(np.float32)))
    logging.info("Loaded ResNet-18 weights from %s (%d arrays)", path, len(expected))
    return model
