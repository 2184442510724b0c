"""tools.export: SavedModels that TF Serving loads (DESIGN.md section 4, "Serving").

Round trips reload the export in a fresh Python process and through `saved_model_cli`, whose
`run` uses the same session-based loader as TF Serving.
"""
import os
import re
import subprocess
import sys
import textwrap

import keras
import numpy as np
import pytest
import tensorflow as tf

import nima
from datasets.images import decode_image_tensor
from tools import export

SAVED_MODEL_CLI = os.path.join(os.path.dirname(sys.executable), "saved_model_cli")
SCORES = np.arange(1, 11, dtype=np.float64)
ENV = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", CUDA_VISIBLE_DEVICES="")


def _numpy_mean_std(distribution):
    distribution = np.asarray(distribution, np.float64)
    mean = distribution @ SCORES
    std = np.sqrt(((SCORES[None, :] - mean[:, None]) ** 2 * distribution).sum(-1))
    return mean, std


# A separate process is the point here, not a way to run a tool: the export is reloaded by a
# fresh Python process (no state shared with the exporting one) and by `saved_model_cli`, whose
# session-based loader is TF Serving's. The command line itself runs in process (`main(argv)`).
def _run(args, **kwargs):
    result = subprocess.run(args, capture_output=True, text=True, env=ENV, **kwargs)
    assert result.returncode == 0, f"{args[:3]} failed:\n{result.stdout}\n{result.stderr[-4000:]}"
    return result


@pytest.fixture(scope="module")
def model():
    """Random-weight MobileNet NIMA whose outputs depend on the input.

    With identity batch-norm statistics the random features vanish (~1e-19) and every image gets
    the uniform distribution, so the moving statistics are set from one batch first.
    """
    keras.utils.set_random_seed(1234)
    model = nima.build_nima("mobilenet")
    for layer in model._flatten_layers():
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.momentum = 0.0
    calibration = np.random.default_rng(0).random((4, 48, 48, 3)).astype(np.float32)
    model(calibration, training=True)
    distribution = model(calibration, training=False).numpy()
    assert np.ptp(distribution, axis=0).max() > 1e-2, "outputs should depend on the image"
    return model


@pytest.fixture(scope="module")
def case(model, tmp_path_factory):
    """Exports version 1, builds inputs and the in-memory model's expected outputs."""
    root = tmp_path_factory.mktemp("export")
    export_dir = str(root / "nima")
    path = export.export_nima(model, export_dir)
    rng = np.random.default_rng(7)

    images = rng.random((2, 40, 56, 3)).astype(np.float32)
    # PNG is lossless, so the served model sees exactly these pixels / 255 (or / 65535).
    pixels = [
        rng.integers(0, 256, (48, 64, 3), dtype=np.uint8),
        rng.integers(0, 256, (36, 40, 3), dtype=np.uint8),
    ]
    gray = rng.integers(0, 256, (44, 50, 1), dtype=np.uint8)
    deep = rng.integers(0, 65536, (38, 46, 3), dtype=np.uint16)
    encoded = {
        "mixed": [tf.io.encode_png(p).numpy() for p in pixels],
        "gray_and_16bit": [tf.io.encode_png(gray).numpy(), tf.io.encode_png(deep).numpy()],
    }
    # The served model sees the PNG decoder's pixels; they are the arrays / 255 (or / 65535) up
    # to one float32 ulp (the decoder scales 8-bit via 16-bit), and this random network is
    # sensitive enough to such ulps to move its scores by ~1e-5, so the expected values are
    # computed from the decoder's pixels after checking them against the arrays.
    references = {
        "mixed": [p.astype(np.float32) / 255.0 for p in pixels],
        "gray_and_16bit": [
            np.repeat(gray.astype(np.float32) / 255.0, 3, axis=-1),
            deep.astype(np.float32) / 65535.0,
        ],
    }
    decoded = {}
    for key in encoded:
        decoded[key] = [decode_image_tensor(tf.constant(b)).numpy() for b in encoded[key]]
        for image, reference in zip(decoded[key], references[key]):
            assert image.shape == reference.shape
            np.testing.assert_allclose(image, reference, rtol=0, atol=1e-7)
    expected = {"images": model(images, training=False).numpy()}
    for key, arrays in decoded.items():
        expected[key] = np.concatenate(
            [model(a[None], training=False).numpy() for a in arrays], axis=0
        )

    inputs = str(root / "inputs.npz")
    np.savez(inputs, images=images, **{k: np.array(v, dtype=object) for k, v in encoded.items()})
    np.save(str(root / "images.npy"), images)
    np.save(str(root / "image_bytes.npy"), np.array(encoded["mixed"], dtype=object))
    return {"root": root, "export_dir": export_dir, "path": path, "inputs": inputs,
            "expected": expected}


@pytest.fixture(scope="module")
def reloaded(case):
    """Both signatures' outputs from `tf.saved_model.load` in a fresh Python process."""
    script = textwrap.dedent(
        """
        import sys
        import numpy as np
        import tensorflow as tf
        path, inputs, out = sys.argv[1:]
        loaded = tf.saved_model.load(path)
        data = np.load(inputs, allow_pickle=True)
        results = {}
        outputs = loaded.signatures["serving_default"](images=tf.constant(data["images"]))
        for name, value in outputs.items():
            results["images/" + name] = value.numpy()
        for key in ("mixed", "gray_and_16bit"):
            batch = tf.constant(list(data[key]), dtype=tf.string)
            outputs = loaded.signatures["serve_image_bytes"](image_bytes=batch)
            for name, value in outputs.items():
                results[key + "/" + name] = value.numpy()
        np.savez(out, **results)
        """
    )
    out = str(case["root"] / "reloaded.npz")
    _run([sys.executable, "-c", script, case["path"], case["inputs"], out])
    return dict(np.load(out))


def _check_outputs(outputs, expected_distribution):
    distribution = outputs["distribution"]
    assert distribution.dtype == np.float32 and distribution.shape == expected_distribution.shape
    np.testing.assert_allclose(distribution, expected_distribution, atol=1e-5)
    np.testing.assert_allclose(distribution.sum(-1), 1.0, atol=1e-5)
    # Scores against the in-memory model's distribution, both through nima and NumPy.
    np.testing.assert_allclose(
        outputs["mean_score"], nima.mean_score(expected_distribution).numpy(), atol=1e-5
    )
    np.testing.assert_allclose(
        outputs["std_score"], nima.std_score(expected_distribution).numpy(), atol=1e-5
    )
    mean, std = _numpy_mean_std(expected_distribution)
    np.testing.assert_allclose(outputs["mean_score"], mean, atol=1e-5)
    np.testing.assert_allclose(outputs["std_score"], std, atol=1e-5)


def _outputs(results, prefix):
    return {name: results[f"{prefix}/{name}"] for name in ("distribution", "mean_score", "std_score")}


def test_export_writes_version_1(case):
    assert case["path"] == os.path.join(case["export_dir"], "1")
    assert os.path.isfile(os.path.join(case["path"], "saved_model.pb"))
    assert sorted(os.listdir(case["export_dir"]))[0] == "1"  # no temporary directory left


def test_fresh_process_float_signature(case, reloaded):
    _check_outputs(_outputs(reloaded, "images"), case["expected"]["images"])


def test_fresh_process_bytes_signature_mixed_sizes(case, reloaded):
    _check_outputs(_outputs(reloaded, "mixed"), case["expected"]["mixed"])


def test_fresh_process_grayscale_and_16bit_png(case, reloaded):
    _check_outputs(_outputs(reloaded, "gray_and_16bit"), case["expected"]["gray_and_16bit"])


def test_saved_model_cli_show(case):
    shown = _run([SAVED_MODEL_CLI, "show", "--dir", case["path"], "--all"]).stdout
    assert "signature_def['serving_default']" in shown
    assert "signature_def['serve_image_bytes']" in shown
    assert "inputs['images']" in shown and "inputs['image_bytes']" in shown
    assert "DT_STRING" in shown
    for name in ("distribution", "mean_score", "std_score"):
        assert f"outputs['{name}']" in shown


@pytest.mark.parametrize(
    "signature, feed, expected_key",
    [("serving_default", "images", "images"), ("serve_image_bytes", "image_bytes", "mixed")],
)
def test_saved_model_cli_run(case, signature, feed, expected_key):
    # TF 2.21's --input_exprs only takes Python literals (no np.* calls), hence --inputs; the
    # bytes go in as an object-dtype .npy, which saved_model_cli loads with allow_pickle.
    outdir = str(case["root"] / f"cli_{signature}")
    result = _run([
        SAVED_MODEL_CLI, "run", "--dir", case["path"], "--tag_set", "serve",
        "--signature_def", signature, "--inputs", f"{feed}={case['root'] / (feed + '.npy')}",
        "--outdir", outdir,
    ])
    for name in ("distribution", "mean_score", "std_score"):
        assert f"Result for output key {name}:" in result.stdout
    outputs = {name: np.load(os.path.join(outdir, name + ".npy"))
               for name in ("distribution", "mean_score", "std_score")}
    _check_outputs(outputs, case["expected"][expected_key])


def test_existing_version_raises_and_is_kept(model, case):
    export_dir = case["export_dir"]
    version_1 = os.path.join(export_dir, "1")
    before = {name: os.stat(os.path.join(version_1, name)).st_mtime_ns
              for name in os.listdir(version_1)}
    with open(os.path.join(version_1, "saved_model.pb"), "rb") as f:
        graph_before = f.read()

    with pytest.raises(FileExistsError, match=re.escape(version_1)):
        export.export_nima(model, export_dir, version=1)

    after = {name: os.stat(os.path.join(version_1, name)).st_mtime_ns
             for name in os.listdir(version_1)}
    assert after == before
    with open(os.path.join(version_1, "saved_model.pb"), "rb") as f:
        assert f.read() == graph_before
    assert sorted(os.listdir(export_dir)) == ["1"]


def _tiny_signatures(model):
    def serve(x):
        return {"y": model(x)}

    return {"serving_default": (serve, [tf.TensorSpec([None, 4], tf.float32, name="x")])}


@pytest.fixture
def tiny():
    keras.utils.set_random_seed(0)
    inputs = keras.Input((4,))
    return keras.Model(inputs, keras.layers.Dense(2)(inputs))


def test_generic_core_versions(tiny, tmp_path):
    """Versioning lives in export_saved_model, so a tiny model checks it quickly."""
    export_dir = str(tmp_path / "models")
    signatures = _tiny_signatures(tiny)
    assert export.resolve_version(export_dir) == 1
    assert export.export_saved_model(tiny, export_dir, signatures) == os.path.join(export_dir, "1")
    assert export.export_saved_model(tiny, export_dir, signatures) == os.path.join(export_dir, "2")
    assert export.export_saved_model(tiny, export_dir, signatures, version=7) == (
        os.path.join(export_dir, "7"))
    os.makedirs(os.path.join(export_dir, "not_a_version"))
    assert export.export_saved_model(tiny, export_dir, signatures) == os.path.join(export_dir, "8")
    with pytest.raises(FileExistsError, match=re.escape(os.path.join(export_dir, "2"))):
        export.export_saved_model(tiny, export_dir, signatures, version=2)
    with pytest.raises(ValueError):
        export.resolve_version(export_dir, -1)
    assert sorted(os.listdir(export_dir)) == ["1", "2", "7", "8", "not_a_version"]
    loaded = tf.saved_model.load(os.path.join(export_dir, "2"))
    x = np.ones((3, 4), np.float32)
    np.testing.assert_allclose(
        loaded.signatures["serving_default"](x=tf.constant(x))["y"], tiny(x), atol=1e-6
    )


def test_crash_leaves_no_version(tiny, tmp_path, monkeypatch):
    export_dir = str(tmp_path / "models")

    real_archive = keras.export.ExportArchive

    def crash(filepath, **kwargs):
        os.makedirs(os.path.join(filepath, "variables"))
        with open(os.path.join(filepath, "saved_model.pb"), "wb") as f:
            f.write(b"half")
        raise RuntimeError("disk full")

    def crashing_archive(*args, **kwargs):
        archive = real_archive(*args, **kwargs)
        archive.write_out = crash
        return archive

    monkeypatch.setattr(keras.export, "ExportArchive", crashing_archive)
    with pytest.raises(RuntimeError, match="disk full"):
        export.export_saved_model(tiny, export_dir, _tiny_signatures(tiny))
    assert os.listdir(export_dir) == []


def test_command_line(model, tmp_path, capsys):
    weights = str(tmp_path / "nima.weights.h5")
    model.save_weights(weights)
    export_dir = str(tmp_path / "cli")
    assert export.main(["tools.export", "--backbone=mobilenet", f"--weights={weights}",
                        f"--export_dir={export_dir}", "--version=3"]) == 0
    path = os.path.join(export_dir, "3")
    assert capsys.readouterr().out.strip().splitlines()[-1] == path
    assert os.path.isfile(os.path.join(path, "saved_model.pb"))
    assert sorted(os.listdir(export_dir)) == ["3"]
