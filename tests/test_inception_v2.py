"""Inception-v2 backbone: size, shapes, and layer-for-layer equivalence with TF-Slim.

The equivalence test builds TF-Slim's own `inception_v2` (tf-slim 1.1.0, in a subprocess,
see tests/slim_compat.py) with random weights and randomised batch-norm statistics, saves a
real TF-Slim checkpoint, converts it with `tools.convert_slim_inception_v2` and compares Mixed_5c.
"""
import os
import subprocess
import sys

import h5py
import keras
import numpy as np
import pytest
import tensorflow as tf

from nima.inception_v2 import (
    WEIGHTS_FORMAT,
    build_inception_v2,
    load_inception_v2_weights,
    slim_variable_map,
)
from tests import slim_compat
from tools import convert_slim_inception_v2
from tools.convert_slim_inception_v2 import CheckpointMismatchError, convert_checkpoint

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PAPER_PARAMS = 10.16e6  # NIMA Table 2, Inception-v2 with the 10-way head
SLIM_BASE_TRAINABLE = 10_153_336  # weights, stem biases and betas of slim's inception_v2_base
TOLERANCE = 1e-4


def _run_module(*args):
    """`python -m ARGS` in a fresh process: only for tests.slim_compat, whose TF1 graph-mode
    network (tf.compat.v1, TF-Slim) must not leak into the pytest process."""
    env = dict(os.environ, PYTHONPATH=REPO_ROOT, TF_CPP_MIN_LOG_LEVEL="3")
    return subprocess.run(
        [sys.executable, "-m", *args], cwd=REPO_ROOT, env=env, capture_output=True, text=True
    )


def _count(weights):
    return int(sum(np.prod(w.shape) for w in weights))


def _read_checkpoint(prefix):
    reader = tf.train.load_checkpoint(prefix)
    return {name: reader.get_tensor(name) for name in reader.get_variable_to_shape_map()}


def _write_checkpoint(prefix, arrays):
    """A name-based TF checkpoint (what tf.compat.v1.train.Saver writes) with exactly `arrays`."""
    names = sorted(arrays)
    tf.raw_ops.SaveV2(
        prefix=prefix,
        tensor_names=names,
        shape_and_slices=[""] * len(names),
        tensors=[tf.constant(arrays[name]) for name in names],
    )
    return prefix


@pytest.fixture(scope="module")
def backbone():
    return build_inception_v2()


@pytest.fixture(scope="module")
def slim_reference(tmp_path_factory):
    """TF-Slim checkpoint + Mixed_5c outputs on random images, made by slim in a subprocess."""
    out = tmp_path_factory.mktemp("slim_reference")
    result = _run_module("tests.slim_compat", "reference", "--out", str(out))
    assert result.returncode == 0, f"TF-Slim reference failed:\n{result.stderr[-5000:]}"
    data = np.load(out / slim_compat.REFERENCE_NAME)
    return {
        "checkpoint": str(out / slim_compat.CHECKPOINT_NAME),
        "images": [data[f"images_{i}"] for i in range(len(slim_compat.REFERENCE_IMAGE_SHAPES))],
        "mixed_5c": [data[f"mixed_5c_{i}"] for i in range(len(slim_compat.REFERENCE_IMAGE_SHAPES))],
        "variable_names": [str(n) for n in data["variable_names"]],
    }


@pytest.fixture(scope="module")
def slim_arrays(slim_reference):
    return _read_checkpoint(slim_reference["checkpoint"])


def test_trainable_parameter_count_matches_table_2(backbone):
    images = keras.Input((None, None, 3))
    pooled = keras.layers.GlobalAveragePooling2D()(backbone(images))
    pooled = keras.layers.Dropout(0.25)(pooled)
    scores = keras.layers.Dense(10, activation="softmax")(pooled)
    nima = keras.Model(images, scores)
    count = _count(nima.trainable_weights)
    print(f"NIMA Inception-v2 trainable parameters: {count}")
    assert _count(backbone.trainable_weights) == SLIM_BASE_TRAINABLE
    assert count == SLIM_BASE_TRAINABLE + 1024 * 10 + 10
    assert abs(count - PAPER_PARAMS) / PAPER_PARAMS < 0.005, count


@pytest.mark.parametrize("height, width, expected", [(224, 224, (7, 7)), (333, 500, (11, 16))])
def test_mixed_5c_shape_at_any_size(backbone, height, width, expected):
    images = np.random.default_rng(0).random((1, height, width, 3), dtype=np.float32)
    features = np.asarray(backbone(images, training=False))
    assert features.shape == (1, *expected, 1024)
    assert np.all(np.isfinite(features)) and features.min() >= 0.0  # ReLU outputs


def test_preprocessing_and_config_live_in_the_model(backbone):
    assert backbone.get_layer("preprocess") is not None
    clone = keras.Model.from_config(backbone.get_config())
    assert [layer.name for layer in clone.layers] == [layer.name for layer in backbone.layers]
    # Mirrors slim: Mixed_5c pools with max, Mixed_5b with average; BN has no gamma.
    assert isinstance(backbone.get_layer("Mixed_5c.Branch_3.MaxPool_0a_3x3"), keras.layers.MaxPooling2D)
    assert isinstance(backbone.get_layer("Mixed_5b.Branch_3.AvgPool_0a_3x3"), keras.layers.AveragePooling2D)
    assert not any(name.endswith("/gamma") for name in slim_variable_map(backbone))


@pytest.mark.slow
def test_variable_names_are_exactly_slims(backbone, slim_reference):
    base = {n for n in slim_reference["variable_names"] if not n.startswith("InceptionV2/Logits/")}
    base.discard("global_step")
    assert set(slim_variable_map(backbone)) == base


@pytest.mark.slow
def test_converted_checkpoint_reproduces_slim_mixed_5c(slim_reference, tmp_path):
    output = tmp_path / "inception_v2.h5"
    report = convert_checkpoint(slim_reference["checkpoint"], output)
    assert report["assigned"] == 275
    assert report["trainable_parameters"] == SLIM_BASE_TRAINABLE
    assert report["ignored"]["classifier"] == [
        "InceptionV2/Logits/Conv2d_1c_1x1/biases",
        "InceptionV2/Logits/Conv2d_1c_1x1/weights",
    ]
    assert report["ignored"]["global_step"] == ["global_step"]

    model = build_inception_v2(weights=str(output))
    differences = []
    for images, expected in zip(slim_reference["images"], slim_reference["mixed_5c"]):
        features = np.asarray(model(images, training=False))
        assert features.shape == expected.shape
        differences.append(float(np.max(np.abs(features - expected))))
    print(f"max |keras - slim| on Mixed_5c: {differences} (slim max |y| "
          f"{max(float(np.abs(y).max()) for y in slim_reference['mixed_5c']):.3f})")
    assert max(differences) <= TOLERANCE, differences
    # Not trivially equal: the outputs vary and are of order one.
    assert all(np.std(y) > 0.1 for y in slim_reference["mixed_5c"])


@pytest.mark.slow
@pytest.mark.parametrize(
    "extra",
    [
        "InceptionV2/Mixed_3b/Branch_0/Conv2d_0a_1x1/BatchNorm/gamma",  # scale=True checkpoint
        "InceptionV2/Mixed_6a/Branch_0/Conv2d_0a_1x1/weights",
        "SomeOtherNet/weights",
    ],
)
def test_converter_refuses_an_unknown_variable(slim_arrays, tmp_path, extra):
    arrays = dict(slim_arrays, **{extra: np.ones((64,), np.float32)})
    prefix = _write_checkpoint(str(tmp_path / "extra.ckpt"), arrays)
    output = tmp_path / "out.h5"
    with pytest.raises(CheckpointMismatchError, match="cannot place") as error:
        convert_checkpoint(prefix, output)
    assert error.value.unknown == [extra] and extra in str(error.value)
    assert not output.exists()


@pytest.mark.slow
def test_converter_refuses_a_missing_variable(slim_arrays, tmp_path):
    gone = "InceptionV2/Mixed_5c/Branch_3/Conv2d_0b_1x1/BatchNorm/moving_variance"
    arrays = {k: v for k, v in slim_arrays.items() if k != gone}
    prefix = _write_checkpoint(str(tmp_path / "missing.ckpt"), arrays)
    output = tmp_path / "out.h5"
    with pytest.raises(CheckpointMismatchError, match="no checkpoint variable") as error:
        convert_checkpoint(prefix, output)
    assert error.value.missing == [gone] and gone in str(error.value)
    assert not output.exists()


@pytest.mark.slow
def test_converter_refuses_a_shape_mismatch(slim_arrays, tmp_path):
    name = "InceptionV2/Conv2d_1a_7x7/depthwise_weights"  # (7, 7, 3, 8)
    arrays = dict(slim_arrays, **{name: np.zeros((7, 7, 3, 1), np.float32)})
    prefix = _write_checkpoint(str(tmp_path / "shape.ckpt"), arrays)
    with pytest.raises(CheckpointMismatchError, match="shape mismatch") as error:
        convert_checkpoint(prefix, tmp_path / "out.h5")
    assert name in error.value.mismatched[0]


@pytest.mark.slow
def test_optimizer_state_is_ignored_and_moving_averages_are_optional(slim_arrays, tmp_path):
    kernel = "InceptionV2/Mixed_4a/Branch_0/Conv2d_1a_3x3/weights"
    arrays = dict(slim_arrays)
    for name in [n for n in slim_arrays if n.startswith("InceptionV2/") and "Logits" not in n]:
        arrays[f"{name}/ExponentialMovingAverage"] = slim_arrays[name] * 0.5
    arrays[f"{kernel}/Momentum"] = np.zeros_like(slim_arrays[kernel])
    arrays[f"{kernel}/RMSProp_1"] = np.zeros_like(slim_arrays[kernel])
    arrays["InceptionV2/Logits/Conv2d_1c_1x1/weights/Momentum"] = np.zeros((1, 1, 1024, 1001), np.float32)
    arrays["beta1_power"] = np.float32(0.9)
    prefix = _write_checkpoint(str(tmp_path / "train.ckpt"), arrays)

    raw = convert_checkpoint(prefix, tmp_path / "raw.h5")
    assert raw["ignored"]["optimizer_slots"] == [f"{kernel}/Momentum", f"{kernel}/RMSProp_1"]
    assert raw["ignored"]["optimizer_state"] == ["beta1_power"]
    assert len(raw["ignored"]["moving_averages"]) == 275
    assert "InceptionV2/Logits/Conv2d_1c_1x1/weights/Momentum" in raw["ignored"]["classifier"]

    averaged = convert_checkpoint(prefix, tmp_path / "ema.h5", use_moving_averages=True)
    assert averaged["used_moving_averages"] and averaged["ignored"]["moving_averages"] == []
    with h5py.File(tmp_path / "raw.h5", "r") as a, h5py.File(tmp_path / "ema.h5", "r") as b:
        np.testing.assert_array_equal(a[kernel][()], slim_arrays[kernel])
        np.testing.assert_array_equal(b[kernel][()], slim_arrays[kernel] * 0.5)

    no_shadows = _write_checkpoint(str(tmp_path / "plain.ckpt"), slim_arrays)
    with pytest.raises(CheckpointMismatchError, match="ExponentialMovingAverage"):
        convert_checkpoint(no_shadows, tmp_path / "none.h5", use_moving_averages=True)


@pytest.mark.slow
def test_converter_never_overwrites_and_names_a_missing_checkpoint(slim_reference, tmp_path):
    output = tmp_path / "exists.h5"
    output.write_bytes(b"keep me")
    with pytest.raises(FileExistsError, match="exists.h5"):
        convert_checkpoint(slim_reference["checkpoint"], output)
    assert output.read_bytes() == b"keep me"
    with pytest.raises(FileNotFoundError, match="no_such.ckpt"):
        convert_checkpoint(str(tmp_path / "no_such.ckpt"), tmp_path / "new.h5")


@pytest.mark.slow
def test_command_line(slim_reference, tmp_path, capsys):
    output = tmp_path / "cli.h5"
    args = ["tools.convert_slim_inception_v2", f"--checkpoint={slim_reference['checkpoint']}",
            f"--output={output}"]
    assert convert_slim_inception_v2.main(args) == 0
    assert f"Wrote {output}" in capsys.readouterr().out
    with h5py.File(output, "r") as handle:
        assert handle.attrs["format"] == WEIGHTS_FORMAT
    # A second run stops with the error (on the command line: its traceback, exit status 1).
    with pytest.raises(FileExistsError, match="Refusing to overwrite"):
        convert_slim_inception_v2.main(args)


def test_loader_names_the_file_when_missing_or_incompatible(backbone, tmp_path):
    with pytest.raises(FileNotFoundError, match="nowhere.h5"):
        load_inception_v2_weights(backbone, tmp_path / "nowhere.h5")

    not_hdf5 = tmp_path / "text.h5"
    not_hdf5.write_text("not weights")
    with pytest.raises(ValueError, match="text.h5"):
        load_inception_v2_weights(backbone, not_hdf5)

    keras_native = tmp_path / "native.weights.h5"
    backbone.save_weights(keras_native)
    with pytest.raises(ValueError, match="native.weights.h5.*format"):
        load_inception_v2_weights(backbone, keras_native)


def test_loader_refuses_a_file_with_a_missing_array(backbone, tmp_path):
    from nima.inception_v2 import save_inception_v2_weights

    path = tmp_path / "weights.h5"
    save_inception_v2_weights(backbone, path)
    with pytest.raises(FileExistsError):
        save_inception_v2_weights(backbone, path)
    gone = "InceptionV2/Mixed_4e/Branch_2/Conv2d_0c_3x3/weights"
    with h5py.File(path, "a") as handle:
        del handle[gone]
    before = [np.array(v) for v in backbone.weights]
    with pytest.raises(ValueError, match=f"weights.h5.*{gone}"):
        load_inception_v2_weights(backbone, path)
    for old, new in zip(before, backbone.weights):  # left unchanged
        np.testing.assert_array_equal(old, np.array(new))
