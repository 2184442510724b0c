"""tools.export for enhancers: `enhancer_signatures`, `export_enhancer`, metadata.json.

The export is reloaded in a fresh Python process and through `saved_model_cli`, whose `run` uses
the session-based loader of TF Serving (the pattern of tests/test_export.py).
"""
import json
import os
import re
import subprocess
import sys
import textwrap

import keras
import numpy as np
import pytest
import tensorflow as tf

from datasets.images import to_uint8
from tools import evaluate, export

SAVED_MODEL_CLI = os.path.join(os.path.dirname(sys.executable), "saved_model_cli")
ENV = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", CUDA_VISIBLE_DEVICES="")
METADATA = {"system": "tiny", "steps": 3, "figures": {"psnr": 21.5}, "note": "ü"}


# A separate process is the point here, not a way to run a tool: the export is reloaded by a
# fresh Python process (no state shared with the exporting one) and by `saved_model_cli`, whose
# session-based loader is TF Serving's. The command line itself runs in process (`main(argv)`).
def _run(args, **kwargs):
    result = subprocess.run(args, capture_output=True, text=True, env=ENV, **kwargs)
    assert result.returncode == 0, f"{args[:3]} failed:\n{result.stdout}\n{result.stderr[-4000:]}"
    return result


def tiny_enhancer(seed=0):
    """3x3 conv 3 -> 3 with a sigmoid, random weights, stretched to (-0.2, 1.2) so that the
    signatures' clipping to [0, 1] matters."""
    keras.utils.set_random_seed(seed)
    inputs = keras.Input((None, None, 3))
    x = keras.layers.Conv2D(3, 3, padding="same", activation="sigmoid",
                            kernel_initializer=keras.initializers.RandomNormal(stddev=0.8))(inputs)
    outputs = keras.layers.Rescaling(1.4, offset=-0.2)(x)
    return keras.Model(inputs, outputs, name="tiny_enhancer")


def expected_output(model, images):
    return np.clip(model(np.asarray(images, np.float32), training=False).numpy(), 0.0, 1.0)


def _smooth_pixels(rng, height, width):
    """An 8-bit photo-like image (gradients and a little noise) that JPEG keeps well."""
    y, x = np.mgrid[:height, :width]
    base = 0.5 + 0.35 * np.sin(x[..., None] / 6.0 + y[..., None] / 9.0 + np.arange(3) * 2.0)
    return to_uint8(base + 0.01 * rng.standard_normal((height, width, 3)))


@pytest.fixture(scope="module")
def model():
    return tiny_enhancer()


@pytest.fixture(scope="module")
def case(model, tmp_path_factory):
    root = tmp_path_factory.mktemp("export_enhancer")
    export_dir = str(root / "enhancer")
    path = export.export_enhancer(model, export_dir, metadata=METADATA)
    rng = np.random.default_rng(5)
    images = rng.random((2, 20, 24, 3)).astype(np.float32)
    pixels = [_smooth_pixels(rng, 36, 52), _smooth_pixels(rng, 45, 30)]
    encoded = [tf.io.encode_png(p).numpy() for p in pixels]
    np.save(str(root / "images.npy"), images)
    inputs = str(root / "inputs.npz")
    np.savez(inputs, images=images, image_bytes=np.array(encoded, dtype=object))
    expected = expected_output(model, images)
    assert expected.min() == 0.0 and expected.max() == 1.0, "clipping should be exercised"
    return {
        "root": root, "export_dir": export_dir, "path": path, "inputs": inputs, "images": images,
        "expected": expected, "pixels": pixels,
        "expected_bytes": [expected_output(model, p[None] / np.float32(255))[0] for p in pixels],
    }


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
        images = loaded.signatures["serving_default"](images=tf.constant(data["images"]))
        batch = tf.constant(list(data["image_bytes"]), dtype=tf.string)
        jpegs = loaded.signatures["serve_image_bytes"](image_bytes=batch)
        np.savez(out, images=images["enhanced_images"].numpy(),
                 jpegs=np.array(jpegs["enhanced_image_bytes"].numpy(), dtype=object),
                 keys=np.array(sorted(images) + sorted(jpegs)))
        """
    )
    out = str(case["root"] / "reloaded.npz")
    _run([sys.executable, "-c", script, case["path"], case["inputs"], out])
    return dict(np.load(out, allow_pickle=True))


def test_export_writes_version_with_metadata(case):
    assert case["path"] == os.path.join(case["export_dir"], "1")
    assert sorted(os.listdir(case["export_dir"])) == ["1"]  # no temporary directory left
    assert os.path.isfile(os.path.join(case["path"], "saved_model.pb"))
    with open(os.path.join(case["path"], "assets.extra", "metadata.json"), encoding="utf-8") as f:
        metadata = json.load(f)
    assert metadata.pop("tiling") == {"tiled": True, "window": 4729, "core": 4727, "halo": 1,
                                      "receptive_field_radius": 1, "global_norms": 0}
    assert metadata == METADATA


def test_fresh_process_float_signature(case, reloaded):
    assert list(reloaded["keys"]) == ["enhanced_images", "enhanced_image_bytes"]
    images = reloaded["images"]
    assert images.dtype == np.float32 and images.shape == (2, 20, 24, 3)
    np.testing.assert_allclose(images, case["expected"], rtol=0, atol=1e-6)
    assert images.min() >= 0.0 and images.max() <= 1.0


def test_fresh_process_bytes_signature_different_sizes(case, reloaded):
    jpegs = reloaded["jpegs"]
    assert jpegs.shape == (2,)
    for jpeg, pixels, expected in zip(jpegs, case["pixels"], case["expected_bytes"]):
        assert jpeg[:2] == b"\xff\xd8"  # a JPEG
        decoded = tf.io.decode_jpeg(jpeg).numpy()
        assert decoded.shape == pixels.shape
        # The model's output up to JPEG loss (4:2:0 chroma subsampling blurs the random conv's
        # sharp colour edges) ...
        assert np.abs(decoded / 255.0 - expected).mean() < 0.03
        assert evaluate.psnr(decoded, expected.astype(np.float64)) > 25.0
        # ... and exactly that output, rounded to 8 bits, JPEG-encoded at quality 95 (up to a
        # rounding flip where the reloaded model differs from the in-memory one by an ulp).
        reference = tf.io.decode_jpeg(
            tf.io.encode_jpeg(to_uint8(expected), quality=95)).numpy()
        difference = np.abs(decoded.astype(np.int32) - reference)
        assert difference.max() <= 2 and difference.mean() < 0.05


def test_jpeg_quality_is_used(model, case):
    batch = tf.constant([tf.io.encode_png(case["pixels"][0]).numpy()])
    sizes = {}
    for quality in (30, 95):
        serve, _ = export.enhancer_signatures(model, jpeg_quality=quality)["serve_image_bytes"]
        sizes[quality] = len(serve(batch)["enhanced_image_bytes"].numpy()[0])
    assert sizes[30] < sizes[95]
    with pytest.raises(ValueError, match="jpeg_quality"):
        export.enhancer_signatures(model, jpeg_quality=101)


def test_existing_version_raises(model, case):
    with pytest.raises(FileExistsError, match=re.escape(case["path"])):
        export.export_enhancer(model, case["export_dir"], version=1)
    assert sorted(os.listdir(case["export_dir"])) == ["1"]


def test_bad_metadata_writes_nothing_and_nan_is_written_as_null(model, tmp_path):
    export_dir = str(tmp_path / "bad")
    with pytest.raises(TypeError):
        export.export_enhancer(model, export_dir, metadata={"model": object()})
    assert not os.path.exists(export_dir) or os.listdir(export_dir) == []
    # Issue 15, item 8: strict JSON, NaN as null and noted (it used to fail after training).
    path = export.export_enhancer(model, str(tmp_path / "nan"),
                                  metadata={"psnr": float("nan"), "sizes": np.arange(2)})
    with open(os.path.join(path, export.METADATA_FILE), encoding="utf-8") as f:
        metadata = json.load(f, parse_constant=pytest.fail)
    assert metadata["psnr"] is None and metadata["sizes"] == [0, 1]
    assert metadata["non_finite"] == [{"at": "psnr", "value": "nan"}]


def test_saved_model_cli_show(case):
    shown = _run([SAVED_MODEL_CLI, "show", "--dir", case["path"], "--all"]).stdout
    assert "signature_def['serving_default']" in shown
    assert "signature_def['serve_image_bytes']" in shown
    assert "inputs['images']" in shown and "inputs['image_bytes']" in shown
    assert "outputs['enhanced_images']" in shown and "outputs['enhanced_image_bytes']" in shown
    assert "DT_STRING" in shown


def test_saved_model_cli_run(case):
    outdir = str(case["root"] / "cli_serving_default")
    result = _run([
        SAVED_MODEL_CLI, "run", "--dir", case["path"], "--tag_set", "serve",
        "--signature_def", "serving_default",
        "--inputs", f"images={case['root'] / 'images.npy'}", "--outdir", outdir,
    ])
    assert "Result for output key enhanced_images:" in result.stdout
    np.testing.assert_allclose(np.load(os.path.join(outdir, "enhanced_images.npy")),
                               case["expected"], rtol=0, atol=1e-6)


def test_can_export_serves_the_inference_path_through_the_session_loader(tmp_path):
    """`CanTask.export` exports `enhancers.can.inference_model`: the same signatures, the
    trained CAN's clipped output (adaptive BN's moving statistics included, through the
    session-based loader of TF Serving) and no SpaceToBatchND in the served graph."""
    from tensorflow.core.protobuf import saved_model_pb2

    from enhancers import can
    from tests.test_can_model import INFERENCE_TOLERANCE, randomise_like_trained

    model = can.build_can(**dict(can.CHEN_ET_AL, width=6))
    randomise_like_trained(model, seed=12)
    path = export.export_enhancer(can.inference_model(model), str(tmp_path / "can"))
    images = np.random.default_rng(13).random((2, 37, 53, 3)).astype(np.float32)
    np.save(str(tmp_path / "images.npy"), images)
    expected = expected_output(model, images)
    assert expected.min() == 0.0 and expected.max() == 1.0, "clipping should be exercised"

    outdir = str(tmp_path / "cli")
    _run([SAVED_MODEL_CLI, "run", "--dir", path, "--tag_set", "serve",
          "--signature_def", "serving_default",
          "--inputs", f"images={tmp_path / 'images.npy'}", "--outdir", outdir])
    served = np.load(os.path.join(outdir, "enhanced_images.npy"))
    np.testing.assert_allclose(served, expected, rtol=0, atol=INFERENCE_TOLERANCE)

    loaded = tf.saved_model.load(path)
    assert sorted(loaded.signatures) == ["serve_image_bytes", "serving_default"]
    _, inputs = loaded.signatures["serving_default"].structured_input_signature
    assert list(inputs) == ["images"]
    assert list(loaded.signatures["serving_default"].structured_outputs) == ["enhanced_images"]

    saved = saved_model_pb2.SavedModel()
    with open(os.path.join(path, "saved_model.pb"), "rb") as f:
        saved.ParseFromString(f.read())
    graph = saved.meta_graphs[0].graph_def
    ops = {node.op for node in graph.node}
    ops.update(node.op for function in graph.library.function for node in function.node_def)
    assert "Conv2D" in ops and "SpaceToBatchND" not in ops


def test_export_tiles_photos_larger_than_one_window(tmp_path):
    """A WESPE generator (instance norms: the statistics passes) exported with 36x36 windows
    enhances a 40x70 photo through both signatures as the untiled Keras model does."""
    from enhancers import wespe

    model = wespe.build_generator(filters=4, residual_blocks=1)
    rng = np.random.default_rng(2)
    for weight in model.weights:
        offset = 1.0 if "gamma" in weight.path else 0.0
        weight.assign(rng.normal(offset, 0.3, weight.shape).astype(np.float32))
    path = export.export_enhancer(model, str(tmp_path / "wespe"), window_pixels=36 * 36)
    with open(os.path.join(path, "assets.extra", "metadata.json"), encoding="utf-8") as f:
        assert json.load(f)["tiling"] == {"tiled": True, "window": 36, "core": 12, "halo": 12,
                                          "receptive_field_radius": 12, "global_norms": 2}
    pixels = _smooth_pixels(rng, 40, 70)
    images = (pixels / np.float32(255))[None]
    expected = expected_output(model, images)
    assert 0.0 < expected.mean() < 1.0 and expected.std() > 0.05

    loaded = tf.saved_model.load(path)
    served = loaded.signatures["serving_default"](images=tf.constant(images))["enhanced_images"]
    np.testing.assert_allclose(served.numpy(), expected, rtol=0, atol=1e-4)
    encoded = loaded.signatures["serve_image_bytes"](
        image_bytes=tf.constant([tf.io.encode_png(pixels).numpy()]))["enhanced_image_bytes"]
    reference = tf.io.decode_jpeg(tf.io.encode_jpeg(to_uint8(expected[0]), quality=95)).numpy()
    decoded = tf.io.decode_jpeg(encoded[0]).numpy().astype(np.int32)
    assert np.abs(decoded - reference).max() <= 2
