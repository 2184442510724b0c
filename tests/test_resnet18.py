import keras
import numpy as np
import pytest

from enhancers.resnet18 import (TAPS, TRAINABLE_PARAMETERS, build_resnet18, imagenet_preprocess,
                                load_resnet18_weights, torch_names)
from tests.numpy_resnet18 import random_state_dict, resnet18_taps


def count(weights):
    return sum(int(np.prod(w.shape)) for w in weights)


@pytest.fixture(scope="module")
def state_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("resnet18") / "state.npz"
    state = random_state_dict(seed=0)
    np.savez(path, **state)
    return path, state


@pytest.fixture(scope="module")
def loaded(state_file):
    return build_resnet18(weights=state_file[0])


def test_parameter_count_is_torchvision_resnet18_without_fc():
    model = build_resnet18()
    # torchvision: 11,689,512 parameters, of which fc holds 512 * 1000 + 1000.
    assert count(model.trainable_weights) == TRAINABLE_PARAMETERS == 11_689_512 - 513_000
    # BN moving mean and variance of 4,800 channels (torch's running buffers).
    assert count(model.non_trainable_weights) == 2 * (64 + 4 * 64 + 5 * 128 + 5 * 256 + 5 * 512)


@pytest.mark.parametrize("size", [256, 512])
def test_tap_shapes(size):
    model = build_resnet18(input_shape=(size, size, 3))
    shapes = {name: tuple(model.output[name].shape) for name in TAPS}
    s = size
    assert shapes == {"conv1": (None, s // 2, s // 2, 64), "block2": (None, s // 4, s // 4, 64),
                      "block4": (None, s // 8, s // 8, 128),
                      "block6": (None, s // 16, s // 16, 256), "pool": (None, 512)}


def test_random_weights_say_so_loudly(caplog):
    build_resnet18()
    assert any("RANDOM" in record.getMessage() and record.levelname == "WARNING"
               for record in caplog.records)


def test_preprocessing_is_torchvision_imagenet_normalisation():
    images = np.random.default_rng(1).random((2, 5, 7, 3)).astype(np.float32)
    expected = (images - [0.485, 0.456, 0.406]) / [0.229, 0.224, 0.225]
    np.testing.assert_allclose(np.asarray(imagenet_preprocess(images)), expected, rtol=1e-6,
                               atol=1e-6)


@pytest.mark.parametrize("height, width", [(64, 64), (45, 38)])
def test_converted_weights_match_independent_numpy_resnet18(loaded, state_file, height, width):
    """The converter (OIHW -> HWIO, BN statistics) and the architecture (torch's symmetric
    padding also on odd sizes, -inf max-pool padding) against tests/numpy_resnet18.py."""
    images = np.random.default_rng(2).random((2, height, width, 3)).astype(np.float32)
    normalised = (images - np.array([0.485, 0.456, 0.406])) / np.array([0.229, 0.224, 0.225])
    expected = resnet18_taps(normalised, state_file[1])
    got = loaded(images, training=False)
    assert set(got) == set(TAPS)
    for name in TAPS:
        value, reference = np.asarray(got[name]), expected[name]
        assert value.shape == reference.shape, name
        scale = np.abs(reference).max()
        assert scale > 1e-2, name  # the comparison is not between near-zero maps
        np.testing.assert_allclose(value, reference, rtol=1e-4, atol=1e-4 * scale, err_msg=name)


def test_load_into_an_existing_model_and_preprocess_false(loaded, state_file):
    model = build_resnet18(preprocess=False)
    assert load_resnet18_weights(model, state_file[0]) is model
    images = np.random.default_rng(3).random((1, 32, 32, 3)).astype(np.float32)
    np.testing.assert_allclose(np.asarray(model(imagenet_preprocess(images))["pool"]),
                               np.asarray(loaded(images)["pool"]), rtol=1e-5, atol=1e-6)


def _write(tmp_path, state, name="bad.npz"):
    path = tmp_path / name
    np.savez(path, **state)
    return path


def _assert_unchanged_after_error(model, path, match):
    before = [np.array(w) for w in model.weights]
    with pytest.raises(ValueError, match=match):
        load_resnet18_weights(model, path)
    assert all(np.array_equal(a, np.array(w)) for a, w in zip(before, model.weights))


def test_missing_key_names_the_file_and_the_key(state_file, tmp_path):
    state = dict(state_file[1])
    del state["layer3.1.bn2.running_var"]
    path = _write(tmp_path, state)
    _assert_unchanged_after_error(build_resnet18(), path,
                                  f"{path}.*layer3.1.bn2.running_var")


def test_misshapen_key_names_the_file_the_key_and_the_shapes(state_file, tmp_path):
    state = dict(state_file[1])
    state["layer2.0.downsample.0.weight"] = np.zeros((128, 64, 3, 3), np.float32)
    path = _write(tmp_path, state)
    _assert_unchanged_after_error(build_resnet18(), path,
                                  r"layer2.0.downsample.0.weight has shape \(128, 64, 3, 3\)")


def test_another_networks_state_dict_is_refused(state_file, tmp_path):
    state = dict(state_file[1])  # a ResNet-34 has a third block in layer1
    state["layer1.2.conv1.weight"] = np.zeros((64, 64, 3, 3), np.float32)
    path = _write(tmp_path, state)
    _assert_unchanged_after_error(build_resnet18(), path, f"{path}.*layer1.2.conv1.weight")


def test_unreadable_files(tmp_path):
    model = build_resnet18()
    with pytest.raises(FileNotFoundError, match="nowhere.npz"):
        load_resnet18_weights(model, tmp_path / "nowhere.npz")
    (tmp_path / "text.npz").write_text("not a zip")
    with pytest.raises(ValueError, match="text.npz"):
        load_resnet18_weights(model, tmp_path / "text.npz")
    np.save(tmp_path / "single.npy", np.zeros(3))
    with pytest.raises(ValueError, match="single.npy"):
        load_resnet18_weights(model, tmp_path / "single.npy")


def test_data_parallel_prefix_is_accepted(state_file, tmp_path, loaded):
    state = {f"module.{key}": value for key, value in state_file[1].items()}
    model = build_resnet18(weights=_write(tmp_path, state, "module.npz"))
    images = np.random.default_rng(4).random((1, 32, 32, 3)).astype(np.float32)
    np.testing.assert_array_equal(np.asarray(model(images)["pool"]),
                                  np.asarray(loaded(images)["pool"]))


def test_config_round_trip_keeps_the_taps_and_the_torch_names(loaded):
    clone = keras.Model.from_config(loaded.get_config())
    clone.set_weights(loaded.get_weights())
    images = np.random.default_rng(5).random((1, 32, 32, 3)).astype(np.float32)
    got, expected = clone(images), loaded(images)
    assert set(got) == set(TAPS)
    for name in TAPS:
        np.testing.assert_array_equal(np.asarray(got[name]), np.asarray(expected[name]))
    assert sorted(torch_names(clone)) == sorted(torch_names(loaded))
    assert len(torch_names(loaded)) == 2 * (1 + 8 * 2 + 3)  # conv+BN: conv1, blocks, shortcuts
