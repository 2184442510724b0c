"""The three NIMA backbones (paper section 2.1): MobileNet, VGG16 and Inception-v2.

Each is a fully convolutional Keras model that takes float RGB images in [0, 1] of any size,
does its own preprocessing inside, and returns the last feature map before the classifier.
"""
import keras
import numpy as np

from nima import inception_v2, keras_h5
from nima.preprocessing import CaffePreprocess, SymmetricScale

BACKBONES = ("mobilenet", "vgg16", "inception_v2")
# The smallest height and width each backbone scores: its total stride, one cell of its last
# feature map (oneDNN's depthwise-convolution gradient fails below it for MobileNet); VGG16's fc6
# is a 7x7 "valid" convolution over that map, so 7 x 32.
MIN_INPUT_SIDE = {"mobilenet": 32, "vgg16": 224, "inception_v2": 32}

# The Keras ImageNet files that `weights=` takes (download them on a machine with internet).
KERAS_WEIGHT_FILES = {
    "mobilenet": "mobilenet_1_0_224_tf_no_top.h5",
    "vgg16": "vgg16_weights_tf_dim_ordering_tf_kernels.h5",
}


def build_mobilenet(weights=None):
    """MobileNet v1 (Howard et al. 2017), width 1.0, up to its last 1024-channel ReLU."""
    images = keras.Input((None, None, 3), name="images")
    scaled = SymmetricScale(name="preprocess")(images)
    base = keras.applications.MobileNet(
        input_tensor=scaled, include_top=False, weights=None, alpha=1.0, depth_multiplier=1
    )
    model = keras.Model(images, base.output, name="mobilenet")
    if weights is not None:
        keras_h5.assign_layer_weights(model, keras_h5.read_layer_weights(weights), weights)
    return model


def _vgg_dense_as_conv(kernel_size):
    def reshape(arrays):
        kernel, bias = arrays
        channels_in = kernel.shape[0] // (kernel_size * kernel_size)
        return [kernel.reshape(kernel_size, kernel_size, channels_in, -1), bias]

    return reshape


def build_vgg16(weights=None, fc_dropout=0.5):
    """VGG16 (Simonyan & Zisserman 2014) with fc6/fc7 kept as convolutions (NIMA section 2.1).

    fc6 is a 7x7 VALID convolution and fc7 a 1x1 convolution, as in TF-Slim's vgg_16, so the
    network is fully convolutional; inputs must be at least 224x224. Dropout (rate 0.5) follows
    fc6 and fc7 as in TF-Slim. Layer names follow Keras' VGG16 so its ImageNet file loads, its
    Dense fc1/fc2 kernels reshaped to convolution kernels (Flatten is row-major over H, W, C).
    """
    images = keras.Input((None, None, 3), name="images")
    x = CaffePreprocess(name="preprocess")(images)
    for block, (convs, filters) in enumerate([(2, 64), (2, 128), (3, 256), (3, 512), (3, 512)], 1):
        for index in range(1, convs + 1):
            x = keras.layers.Conv2D(
                filters, 3, padding="same", activation="relu", name=f"block{block}_conv{index}"
            )(x)
        x = keras.layers.MaxPooling2D(2, strides=2, name=f"block{block}_pool")(x)
    x = keras.layers.Conv2D(4096, 7, padding="valid", activation="relu", name="fc1")(x)
    x = keras.layers.Dropout(fc_dropout, name="fc1_dropout")(x)
    x = keras.layers.Conv2D(4096, 1, activation="relu", name="fc2")(x)
    x = keras.layers.Dropout(fc_dropout, name="fc2_dropout")(x)
    model = keras.Model(images, x, name="vgg16")
    if weights is not None:
        reshape = {"fc1": _vgg_dense_as_conv(7), "fc2": _vgg_dense_as_conv(1)}
        keras_h5.assign_layer_weights(
            model, keras_h5.read_layer_weights(weights), weights, reshape=reshape
        )
    return model


def build_backbone(name, weights=None):
    """Builds backbone `name` ("mobilenet", "vgg16" or "inception_v2").

    `weights` is None (random initialisation) or a local file: the Keras ImageNet HDF5 file for
    MobileNet and VGG16 (see KERAS_WEIGHT_FILES), the output of
    `python -m tools.convert_slim_inception_v2` for Inception-v2. Nothing is downloaded.
    """
    if weights is not None and not isinstance(weights, str):
        weights = str(weights)
    if name == "mobilenet":
        return build_mobilenet(weights)
    if name == "vgg16":
        return build_vgg16(weights)
    if name == "inception_v2":
        model = inception_v2.build_inception_v2()
        if weights is not None:
            inception_v2.load_inception_v2_weights(model, weights)
        return model
    raise ValueError(f"Unknown NIMA backbone {name!r}; choose one of {', '.join(BACKBONES)}.")


def count_trainable_params(model):
    return int(sum(np.prod(w.shape) for w in model.trainable_weights))
