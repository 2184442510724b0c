"""WESPE's content consistency loss on VGG-19 features (WESPE paper section 3.1, equation 1).

    L_content = 1 / (C_j H_j W_j) * || psi_j(x) - psi_j(F(G(x))) ||^2

psi_j is VGG-19's relu5_4 (DPED's `CONTENT_LAYER`). Equation 1 prints the norm without the
square; DPED's reference code, which WESPE adapts, squares it (`2 * l2_loss(diff) / size`), i.e.
the mean squared feature difference, and so does this module.

`build_vgg19_features` wraps `keras.applications.VGG19` (no top) with its preprocessing inside
the model (DESIGN.md section 4): float RGB in [0, 1] goes in, the chosen layer's activations come
out, and the network is frozen.
"""
import os

import keras
from absl import logging
from keras import ops

from nima.preprocessing import CaffePreprocess

CONTENT_LAYER = "relu5_4"
VGG19_WEIGHTS_FILE = "vgg19_weights_tf_dim_ordering_tf_kernels_notop.h5"
# relu<block>_<conv> (the papers' names) -> Keras layer names; Keras' convs include the ReLU.
_BLOCK_CONVS = {1: 2, 2: 2, 3: 4, 4: 4, 5: 4}
VGG19_LAYERS = {f"relu{b}_{c}": f"block{b}_conv{c}"
                for b, convs in _BLOCK_CONVS.items() for c in range(1, convs + 1)}


def build_vgg19_features(weights=None, layer=CONTENT_LAYER):
    """A frozen VGG-19 from [0, 1] RGB images of any size to the activations of `layer`.

    Args:
      weights: None (random features: the content loss then only ties x and F(G(x)) through a
        random network, so a warning is logged) or a local file of Keras' ImageNet weights
        without the top, `vgg19_weights_tf_dim_ordering_tf_kernels_notop.h5`.
      layer: "relu5_4" (the paper's) or any other `VGG19_LAYERS` name, e.g. "relu2_2".
    """
    if layer not in VGG19_LAYERS:
        raise ValueError(f"Unknown VGG-19 layer {layer!r}; choose one of {sorted(VGG19_LAYERS)}")
    if weights is not None:
        weights = os.fspath(weights)
        if not os.path.isfile(weights):
            raise FileNotFoundError(f"VGG-19 weights file not found: {weights}")
    else:
        logging.warning("VGG-19 has RANDOM weights: the content loss uses random features. Pass "
                        "the local ImageNet file %s for the paper's loss.", VGG19_WEIGHTS_FILE)
    try:
        vgg = keras.applications.VGG19(include_top=False, weights=weights,
                                       input_shape=(None, None, 3))
    except Exception as error:  # Keras raises several types for incompatible files.
        raise ValueError(f"Could not load VGG-19 weights from {weights}: {error}") from error
    features = keras.Model(vgg.input, vgg.get_layer(VGG19_LAYERS[layer]).output,
                           name=f"vgg19_{layer}")
    images = keras.Input((None, None, 3), name="images")
    outputs = features(CaffePreprocess(name="preprocess")(images))
    model = keras.Model(images, outputs, name=f"vgg19_{layer}_features")
    model.trainable = False
    return model


def content_loss(features, reconstructed_features):
    """Equation 1 per example: sum of squared feature differences / (C H W); shape (batch,)."""
    features = ops.cast(features, "float32")
    reconstructed_features = ops.cast(reconstructed_features, "float32")
    return ops.mean(ops.square(features - reconstructed_features), axis=(1, 2, 3))
