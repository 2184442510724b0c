"""tools.export.export_enhancegan and `tools.enhance` on its exports: a tiny EnhanceGAN generator
exported, reloaded in a fresh Python process and by `saved_model_cli` (TF Serving's
session-based loader), both signatures compared with the in-memory PhotoEnhancer; then the
command line writes each photo cut to its box with a strict JSON of its parameters beside it."""
import json
import os
import re
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from datasets.images import load_rgb8, to_uint8
from enhancers import enhancegan
from enhancers.enhancegan import operators
from tools import enhance, export

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from test_enhancegan_enhancer import photo, tiny_generator  # noqa: E402

SAVED_MODEL_CLI = os.path.join(os.path.dirname(sys.executable), "saved_model_cli")
ENV = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", CUDA_VISIBLE_DEVICES="")
PARAMETERS = [*operators.COLOR_PARAMETERS, "crop_scale", "crop_translation", "filter_weights"]
ATTENTION = ["color_attention", "crop_attention", "filters_attention"]


def _run(args):
    result = subprocess.run(args, capture_output=True, text=True, env=ENV)
    assert result.returncode == 0, f"{args[:3]} failed:\n{result.stdout}\n{result.stderr[-4000:]}"
    return result


def _filters():
    return [lambda x, c=c: enhancegan.photo_filter(x, c) for c in enhancegan.FILTER_NAMES]


@pytest.fixture(scope="module")
def case(tmp_path_factory):
    root = tmp_path_factory.mktemp("export_enhancegan")
    generator = tiny_generator(heads=("color", "crop", "filters"), seed=1)
    networks = [enhancegan.build_filter_network(name) for name in enhancegan.FILTER_NAMES]
    rng = np.random.default_rng(0)
    for network in networks:  # not the identity: the filters must show in the output
        for weight in network.weights:
            weight.assign(rng.normal(0, 0.2, weight.shape).astype(np.float32))
    enhancer = enhancegan.PhotoEnhancer(generator, networks)
    export_dir = str(root / "egan")
    path = export.export_enhancegan(enhancer, export_dir, metadata={"stage": "color"})
    images = np.stack([photo((30, 44), seed=k) for k in (1, 2, 3)])
    pixels = [to_uint8(photo(shape, seed=k)) for k, shape in enumerate([(1, 1), (25, 19),
                                                                        (48, 64)])]
    inputs = str(root / "inputs.npz")
    np.savez(inputs, images=images,
             image_bytes=np.array([tf.io.encode_png(p).numpy() for p in pixels], dtype=object))
    np.save(str(root / "images.npy"), images)
    return {"root": root, "export_dir": export_dir, "path": path, "enhancer": enhancer,
            "images": images, "pixels": pixels, "inputs": inputs,
            "expected": [enhancer(image) for image in images],
            "expected_bytes": [enhancer(p) for p in pixels]}


@pytest.fixture(scope="module")
def reloaded(case):
    script = textwrap.dedent(
        """
        import sys
        import numpy as np
        import tensorflow as tf
        path, inputs, out = sys.argv[1:]
        loaded = tf.saved_model.load(path)
        data = np.load(inputs, allow_pickle=True)
        served = loaded.signatures["serving_default"](images=tf.constant(data["images"]))
        batch = tf.constant(list(data["image_bytes"]), dtype=tf.string)
        encoded = loaded.signatures["serve_image_bytes"](image_bytes=batch)
        arrays = {"f_" + k: v.numpy() for k, v in served.items()}
        arrays.update({"b_" + k: v.numpy() for k, v in encoded.items()
                       if k != "enhanced_image_bytes"})
        arrays["jpegs"] = np.array(encoded["enhanced_image_bytes"].numpy(), dtype=object)
        np.savez(out, **arrays)
        """
    )
    out = str(case["root"] / "reloaded.npz")
    _run([sys.executable, "-c", script, case["path"], case["inputs"], out])
    return dict(np.load(out, allow_pickle=True))


def test_export_writes_a_version_with_its_metadata(case):
    assert case["path"] == os.path.join(case["export_dir"], "1")
    assert sorted(os.listdir(case["export_dir"])) == ["1"]
    with open(os.path.join(case["path"], export.METADATA_FILE), encoding="utf-8") as f:
        metadata = json.load(f)
    assert metadata["stage"] == "color" and metadata["kind"] == "enhancegan"
    assert metadata["enhancegan"]["heads"] == ["color", "crop", "filters"]
    assert metadata["enhancegan"]["parameters"] == PARAMETERS
    assert metadata["enhancegan"]["input_size"] == 224
    with pytest.raises(FileExistsError, match=re.escape(case["path"])):
        export.export_enhancegan(case["enhancer"], case["export_dir"], version=1)


def test_fresh_process_float_signature(case, reloaded):
    boxes = reloaded["f_boxes"]
    assert boxes.dtype == np.int32 and boxes.shape == (3, 4)
    images = reloaded["f_enhanced_images"]
    assert images.shape == (3, boxes[:, 2].max(), boxes[:, 3].max(), 3)
    for k, expected in enumerate(case["expected"]):
        np.testing.assert_array_equal(boxes[k], expected["box"].numpy())
        top, left, height, width = boxes[k]
        np.testing.assert_allclose(images[k, :height, :width], expected["image"].numpy(),
                                   atol=1e-5)
        assert not images[k, height:].any() and not images[k, :, width:].any()  # zero padding
        for name in PARAMETERS + ATTENTION:
            np.testing.assert_allclose(reloaded["f_" + name][k], expected[name].numpy(),
                                       atol=1e-5, err_msg=name)
    assert reloaded["f_filter_weights"].shape == (3, 3)
    assert reloaded["f_crop_attention"].shape == (3, 7, 7)


def test_fresh_process_bytes_signature_photos_of_any_size(case, reloaded):
    jpegs = reloaded["jpegs"]
    for k, (pixels, expected) in enumerate(zip(case["pixels"], case["expected_bytes"])):
        np.testing.assert_array_equal(reloaded["b_boxes"][k], expected["box"].numpy())
        decoded = tf.io.decode_jpeg(jpegs[k]).numpy()
        reference = tf.io.decode_jpeg(tf.io.encode_jpeg(
            to_uint8(expected["image"].numpy()), quality=95)).numpy()
        assert decoded.shape == reference.shape == tuple(expected["box"].numpy()[2:]) + (3,)
        assert np.abs(decoded.astype(int) - reference).max() <= 2
        for name in PARAMETERS:
            np.testing.assert_allclose(reloaded["b_" + name][k], expected[name].numpy(),
                                       atol=1e-5, err_msg=name)
        for name in ATTENTION:
            served, wanted = reloaded["b_" + name][k], expected[name].numpy()
            if k == 0:
                # The 1x1 photo is uniform at 224: the score map ties at the inner positions,
                # and which tied positions top-K takes follows float noise of another process
                # (the parameters there are equal, so the pooled ones above match): the same
                # weights, placed anywhere among the ties.
                served, wanted = np.sort(served, axis=None), np.sort(wanted, axis=None)
            np.testing.assert_allclose(served, wanted, atol=1e-5, err_msg=name)
    np.testing.assert_array_equal(reloaded["b_boxes"][0], [0, 0, 1, 1])  # a 1x1 photo


def test_saved_model_cli_show_and_run(case):
    shown = _run([SAVED_MODEL_CLI, "show", "--dir", case["path"], "--all"]).stdout
    for name in ["images", "image_bytes"]:
        assert f"inputs['{name}']" in shown
    for name in ["enhanced_images", "enhanced_image_bytes", "boxes"] + PARAMETERS + ATTENTION:
        assert f"outputs['{name}']" in shown, name
    outdir = str(case["root"] / "cli")
    _run([SAVED_MODEL_CLI, "run", "--dir", case["path"], "--tag_set", "serve",
          "--signature_def", "serving_default",
          "--inputs", f"images={case['root'] / 'images.npy'}", "--outdir", outdir])
    boxes = np.load(os.path.join(outdir, "boxes.npy"))
    served = np.load(os.path.join(outdir, "enhanced_images.npy"))
    for k, expected in enumerate(case["expected"]):
        np.testing.assert_array_equal(boxes[k], expected["box"].numpy())
        _, _, height, width = boxes[k]
        np.testing.assert_allclose(served[k, :height, :width], expected["image"].numpy(),
                                   atol=1e-5)
    np.testing.assert_allclose(np.load(os.path.join(outdir, "alpha.npy")),
                               [float(e["alpha"]) for e in case["expected"]], atol=1e-6)


def test_a_bare_generator_is_wrapped_and_the_runner_knows_the_kind(tmp_path):
    from train import runner

    assert runner.EXPORTERS["enhancegan"] is export.export_enhancegan
    generator = tiny_generator(heads=("crop",), seed=2)
    path = export.export_enhancegan(generator, str(tmp_path / "crop"), version=3)
    served = tf.saved_model.load(path).signatures["serving_default"](
        images=tf.constant(photo((20, 26))[None]))
    assert sorted(served) == ["boxes", "crop_attention", "crop_scale", "crop_translation",
                              "enhanced_images"]
    expected = enhancegan.PhotoEnhancer(generator)(photo((20, 26)))
    np.testing.assert_array_equal(served["boxes"][0], expected["box"])
    np.testing.assert_allclose(served["enhanced_images"][0], expected["image"], atol=1e-6)
    empty = tf.saved_model.load(path).signatures["serving_default"](images=tf.zeros([0, 9, 9, 3]))
    assert empty["enhanced_images"].shape == (0, 0, 0, 3) and empty["boxes"].shape == (0, 4)
    assert empty["crop_attention"].shape == (0, 7, 7)
    with pytest.raises(TypeError, match="PhotoEnhancer"):
        export.export_enhancegan(lambda x: x, str(tmp_path / "bad"))
    with pytest.raises(ValueError, match="jpeg_quality"):
        export.export_enhancegan(generator, str(tmp_path / "bad"), jpeg_quality=101)


# --------------------------------------------------------------------------- tools.enhance


def test_load_saved_model_enhancer_crops_and_predicts(case):
    loaded = enhance.load_saved_model_enhancer(case["export_dir"])
    assert loaded.kind == "enhancegan"
    image = photo((30, 44), seed=1)
    expected = case["expected"][0]
    np.testing.assert_allclose(loaded(image), expected["image"].numpy(), atol=1e-5)
    predicted = loaded.predict(image)
    assert sorted(predicted) == sorted(["image", "box"] + PARAMETERS + ATTENTION)
    np.testing.assert_array_equal(predicted["box"], expected["box"].numpy())


def test_cli_writes_the_cropped_photo_and_a_strict_json_of_its_parameters(case, capsys):
    folder = case["root"] / "photos"
    folder.mkdir()
    paths = {}
    for name, shape in (("wide", (36, 70)), ("tall", (50, 21)), ("dot", (1, 1))):
        paths[name] = str(folder / f"{name}.png")
        Image.fromarray(to_uint8(photo(shape, seed=len(paths)))).save(paths[name])
    out = case["root"] / "out"
    code = enhance.main(["tools.enhance", f"--saved_model={case['export_dir']}", str(folder),
                         f"--output_dir={out}"])
    assert code == 0, capsys.readouterr().out
    assert sorted(os.listdir(out)) == ["dot.json", "dot.png", "tall.json", "tall.png",
                                       "wide.json", "wide.png"]
    for name, path in paths.items():
        source = load_rgb8(path) / np.float32(255)
        expected = case["enhancer"](source)
        with open(out / f"{name}.json", encoding="utf-8") as f:
            record = json.load(f, parse_constant=lambda c: pytest.fail(f"not strict: {c}"))
        assert set(record) == {"source", "saved_model", "photo", "box", "color", "crop",
                               "filter_weights"}
        assert record["source"] == path and record["saved_model"] == case["path"]
        assert record["photo"] == {"height": source.shape[0], "width": source.shape[1]}
        top, left, height, width = expected["box"].numpy().tolist()
        assert record["box"] == {"top": top, "left": left, "height": height, "width": width}
        for key in operators.COLOR_PARAMETERS:
            assert record["color"][key] == pytest.approx(float(expected[key]), abs=1e-6)
        assert record["crop"]["scale"] == pytest.approx(expected["crop_scale"].numpy().tolist(),
                                                        abs=1e-6)
        assert record["filter_weights"] == pytest.approx(
            expected["filter_weights"].numpy().tolist(), abs=1e-6)
        written = np.asarray(Image.open(out / f"{name}.png"))
        assert written.shape == (height, width, 3)
        assert np.abs(written.astype(int) - to_uint8(expected["image"].numpy())).max() <= 1
    # The JSON follows the photo's rules: an existing one is not replaced without --overwrite.
    os.remove(out / "wide.png")
    code = enhance.main(["tools.enhance", f"--saved_model={case['export_dir']}",
                         paths["wide"], f"--output_dir={out}"])
    assert code == 1 and "wide.json" in capsys.readouterr().out
    assert not os.path.exists(out / "wide.png")
