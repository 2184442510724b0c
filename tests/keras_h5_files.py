"""Writes weight files in the layout of Keras' published ImageNet .h5 files, with h5py alone,
so that tests can load "pretrained" files without downloading any."""
import h5py
import numpy as np


def write_keras_legacy_h5(model, path):
    with h5py.File(path, "w") as handle:
        handle.attrs["layer_names"] = [layer.name.encode("utf8") for layer in model.layers]
        handle.attrs["backend"] = b"tensorflow"
        handle.attrs["keras_version"] = b"2.2.4"
        for layer in model.layers:
            group = handle.create_group(layer.name)
            names = [f"{layer.name}/{w.name}:0".encode("utf8") for w in layer.weights]
            group.attrs["weight_names"] = names
            for name, weight in zip(names, layer.weights):
                group.create_dataset(name.decode("utf8"), data=np.asarray(weight.numpy()))
