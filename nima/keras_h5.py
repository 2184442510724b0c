"""Reads the legacy HDF5 weight files that Keras publishes for its ImageNet models.

The files (for example `mobilenet_1_0_224_tf_no_top.h5`,
`vgg16_weights_tf_dim_ordering_tf_kernels.h5`) hold one group per layer, listed in the root
attribute `layer_names`, each group listing its arrays in the attribute `weight_names`.
Reading them with h5py keeps the loader independent of Keras' private legacy-format code.
"""
import os

import h5py
import numpy as np


def _as_str(value):
    return value.decode("utf8") if isinstance(value, bytes) else str(value)


def read_layer_weights(path):
    """Returns {layer name: [arrays in the file's order]} for the layers that hold weights."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"Weights file not found: {path}")
    try:
        handle = h5py.File(path, "r")
    except OSError as error:
        raise ValueError(f"{path} is not a readable HDF5 weights file: {error}") from error
    with handle:
        root = handle["model_weights"] if "model_weights" in handle else handle
        if "layer_names" not in root.attrs:
            raise ValueError(
                f"{path} is not a Keras legacy HDF5 weights file (no 'layer_names' attribute)."
            )
        weights = {}
        for layer_name in (_as_str(n) for n in root.attrs["layer_names"]):
            group = root[layer_name]
            names = [_as_str(n) for n in group.attrs.get("weight_names", [])]
            if names:
                weights[layer_name] = [np.asarray(group[name]) for name in names]
        return weights


def assign_layer_weights(model, file_weights, path, reshape=None):
    """Sets every weighted layer of `model` from `file_weights` (as read by read_layer_weights).

    `reshape` maps a layer name to a function applied to its arrays first (VGG16's fc6/fc7 are
    Dense in the file and convolutions here). A layer of the model missing from the file, or an
    array whose shape does not match, raises an error naming the file: weights are never loaded
    partially by accident. Layers in the file that the model lacks (a classifier) are ignored.
    """
    reshape = reshape or {}
    missing, mismatched = [], []
    for layer in model.layers:
        if not layer.weights:
            continue
        if layer.name not in file_weights:
            missing.append(layer.name)
            continue
        arrays = file_weights[layer.name]
        if layer.name in reshape:
            arrays = reshape[layer.name](arrays)
        expected = [tuple(w.shape) for w in layer.weights]
        if [a.shape for a in arrays] != expected:
            mismatched.append(f"{layer.name}: file {[a.shape for a in arrays]} vs model {expected}")
            continue
        layer.set_weights(arrays)
    if missing or mismatched:
        raise ValueError(
            f"{path} does not fit the model {model.name}: "
            f"missing layers {missing[:10]}{'...' if len(missing) > 10 else ''}; "
            f"shape mismatches {mismatched[:10]}"
        )
