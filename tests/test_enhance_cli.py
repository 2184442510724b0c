"""tools.enhance: the I/O loop, and its command line (`main(argv)`, in process) on an exported
enhancer.

The command-line runs use real exports of tiny conv enhancers (tests/test_export_enhancer.py)
and photos of the kinds users have: an EXIF-rotated JPEG, grayscale, 16-bit and RGBA PNGs, and a
corrupt file.
"""
import hashlib
import io
import os
import re
import shutil
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf
from absl import flags
from PIL import Image

from datasets.images import load_rgb8, to_uint8
from tests.fifos import guarded_fifo
from tools import enhance, export

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from test_export_enhancer import expected_output, tiny_enhancer  # noqa: E402


def _digest(path):
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def _save(pixels, path, **kwargs):
    Image.fromarray(pixels).save(path, **kwargs)
    return str(path)


def _invert(image):
    return 1.0 - image


# --------------------------------------------------------------------------- in process


@pytest.fixture
def photos(tmp_path):
    rng = np.random.default_rng(0)
    folder = tmp_path / "photos"
    folder.mkdir()
    paths = {
        "a": _save(rng.integers(0, 256, (12, 16, 3), dtype=np.uint8), folder / "a.png"),
        "b": _save(rng.integers(0, 256, (10, 9, 3), dtype=np.uint8), folder / "b.png"),
    }
    (folder / "notes.txt").write_text("not an image")
    (folder / ".hidden.png").write_bytes(b"")
    return folder, paths


def test_enhance_files_writes_png_outputs(photos, tmp_path):
    folder, paths = photos
    out = tmp_path / "out" / "nested"
    report = enhance.enhance_files(_invert, [str(folder)], str(out))
    assert report.ok and len(report.written) == 2
    assert sorted(os.listdir(out)) == ["a.png", "b.png"]  # no temporary files left
    for name in ("a", "b"):
        written = np.asarray(Image.open(out / f"{name}.png"))
        np.testing.assert_array_equal(written, 255 - load_rgb8(paths[name]))
    assert "Enhanced 2 of 2 photos." in report.summary()


def test_enhance_files_refuses_existing_outputs_unless_overwrite(photos, tmp_path):
    folder, paths = photos
    out = tmp_path / "out"
    out.mkdir()
    existing = out / "a.png"
    existing.write_bytes(b"keep me")
    report = enhance.enhance_files(_invert, [paths["a"], paths["b"]], str(out))
    assert [path for path, _ in report.written] == [paths["b"]]
    ((path, reason),) = report.failed
    assert path == paths["a"] and str(existing) in reason and "exists" in reason
    assert existing.read_bytes() == b"keep me"

    report = enhance.enhance_files(_invert, [paths["a"]], str(out), overwrite=True)
    assert report.ok
    np.testing.assert_array_equal(np.asarray(Image.open(existing)), 255 - load_rgb8(paths["a"]))


def test_enhance_files_never_overwrites_inputs(photos):
    folder, paths = photos
    before = {name: _digest(path) for name, path in paths.items()}
    report = enhance.enhance_files(_invert, [str(folder)], str(folder), overwrite=True)
    assert not report.written and len(report.failed) == 2
    for (path, reason), name in zip(report.failed, ("a", "b")):
        assert path == paths[name] and f"refusing to overwrite input file {paths[name]}" in reason
    assert {name: _digest(path) for name, path in paths.items()} == before
    # As JPEG next to the inputs it is fine.
    report = enhance.enhance_files(_invert, [str(folder)], str(folder), output_format="jpg",
                                   jpeg_quality=90)
    assert report.ok and os.path.isfile(folder / "a.jpg") and os.path.isfile(folder / "b.jpg")
    assert Image.open(folder / "a.jpg").format == "JPEG"


def test_enhance_files_reports_bad_inputs_and_continues(photos, tmp_path):
    folder, paths = photos
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    twin = _save(np.zeros((8, 8, 3), np.uint8), tmp_path / "a.jpg")  # same stem as a.png
    empty = tmp_path / "empty"
    empty.mkdir()
    missing = str(tmp_path / "missing.png")
    calls = []

    def picky(image):
        calls.append(image.shape)
        if image.shape == (10, 9, 3):
            raise RuntimeError("out of memory")
        return image[1:, 2:]  # an enhancer may change the size (cropping)

    inputs = [paths["a"], str(broken), missing, str(empty), paths["b"], twin, paths["a"]]
    report = enhance.enhance_files(picky, inputs, str(tmp_path / "out"))
    assert [path for path, _ in report.written] == [paths["a"]]
    assert Image.open(tmp_path / "out" / "a.png").size == (14, 11)
    reasons = dict(report.failed)
    assert set(reasons) == {str(broken), missing, str(empty), paths["b"], twin}
    assert "cannot read image" in reasons[str(broken)]
    assert "no such file" in reasons[missing]
    assert "no images" in reasons[str(empty)]
    assert "RuntimeError: out of memory" in reasons[paths["b"]]
    assert paths["a"] in reasons[twin]
    assert len(calls) == 2  # a.png once (its duplicate dropped), b.png
    assert "Enhanced 1 of 6 photos." in report.summary() and "broken.jpg" in report.summary()


def test_every_kind_of_encoding_is_enhanced_or_skipped_by_name(tmp_path):
    """Issue 15: each unusual encoding decodes to 8-bit RGB (load_rgb8) and is enhanced; a
    zero-byte or truncated file is skipped by name and the rest go on."""
    rng = np.random.default_rng(3)
    rgb = rng.integers(0, 256, (12, 10, 3), dtype=np.uint8)
    folder = tmp_path / "photos"
    folder.mkdir()
    base = Image.fromarray(rgb)
    exif = Image.Exif()
    exif[0x0112] = 8  # stored rotated
    palette = base.convert("P", palette=Image.Palette.ADAPTIVE, colors=8)
    base.save(folder / "exif.jpg", exif=exif)
    palette.save(folder / "palette.png", transparency=bytes(range(0, 256, 32)))
    base.convert("LA").save(folder / "gray_alpha.png")
    base.convert("RGBA").save(folder / "rgba.png")
    base.convert("CMYK").save(folder / "cmyk.jpg")
    base.convert("1").save(folder / "bits.png")
    base.save(folder / "anim.gif", save_all=True, append_images=[palette], loop=0)
    base.save(folder / "tiff.tif")
    base.save(folder / "webp.webp")
    (folder / "deep.png").write_bytes(tf.io.encode_png(rgb.astype(np.uint16) * 257).numpy())
    (folder / "empty.jpg").write_bytes(b"")
    (folder / "truncated.jpg").write_bytes((folder / "exif.jpg").read_bytes()[:300])
    report = enhance.enhance_files(_invert, [str(folder)], str(tmp_path / "out"))
    assert dict(report.failed).keys() == {str(folder / "empty.jpg"), str(folder / "truncated.jpg")}
    assert all("cannot read image" in reason for _, reason in report.failed)
    assert len(report.written) == 10
    for source, output in report.written:
        written = np.asarray(Image.open(output))
        assert written.dtype == np.uint8 and written.shape[2] == 3, source
        np.testing.assert_array_equal(written, 255 - load_rgb8(source))
    assert np.asarray(Image.open(tmp_path / "out" / "exif.png")).shape == (10, 12, 3)  # upright
    np.testing.assert_array_equal(load_rgb8(folder / "deep.png"), rgb)  # 16 bits scaled


def test_a_fifo_given_or_in_a_folder_is_skipped_by_name_and_never_opened(photos, tmp_path):
    # Issue 15: a FIFO named like a photo hung the run, and the photos after it were never done.
    folder, paths = photos
    inside, given = folder / "photo.jpg", tmp_path / "given.jpg"
    with guarded_fifo(inside) as fifo_inside, guarded_fifo(given) as fifo_given:
        report = enhance.enhance_files(_invert, [str(given), str(folder)], str(tmp_path / "out"))
    assert not fifo_inside["opened"] and not fifo_given["opened"]
    assert sorted(path for path, _ in report.written) == sorted(paths.values())
    assert dict(report.failed) == {str(given): "not a regular file",
                                   str(inside): "not a regular file"}


def test_an_output_dir_that_is_a_file_is_refused_in_one_line(photos, tmp_path):
    """Issue 15: a bare FileExistsError / NotADirectoryError traceback. Now the flag is refused
    when parsing (absl's one line naming it), and enhance_files refuses before reading."""
    folder, paths = photos
    afile = tmp_path / "afile"
    afile.write_text("keep me")
    for output, reason in ((afile, "is a file, not a directory"),
                           (afile / "out", f"cannot be created: {afile} is not a directory")):
        with pytest.raises(flags.IllegalFlagValueError,
                           match=re.escape(f"--output_dir={output}: {reason}")):
            enhance.main(["tools.enhance", "--saved_model=unused", f"--output_dir={output}",
                          paths["a"]])
        with pytest.raises(NotADirectoryError, match=re.escape(f"{output}: {reason}")):
            enhance.enhance_files(_invert, [str(folder)], str(output))
    assert afile.read_text() == "keep me"
    with pytest.raises(flags.IllegalFlagValueError, match="--learning_rate=nan: must be a finite"):
        enhance.main(["tools.enhance", "--method=piea", "--learning_rate=nan",
                      f"--output_dir={tmp_path}", paths["a"]])


@pytest.mark.slow
def test_exported_can_and_wespe_enhance_one_pixel_wide_photos(tmp_path):
    """Issue 15: 1x1, 1xN and Nx1 photos through real CAN and WESPE exports (tiled, symmetric
    and zero padding) come back at their own size, as the Keras model computes them."""
    from enhancers import can, wespe

    rng = np.random.default_rng(7)
    folder = tmp_path / "photos"
    folder.mkdir()
    sizes = {"dot": (1, 1), "row": (1, 40), "column": (40, 1)}
    for name, size in sizes.items():
        _save(rng.integers(0, 256, (*size, 3), dtype=np.uint8), folder / f"{name}.png")
    keras.utils.set_random_seed(0)
    models = {"can": can.inference_model(can.build_can(depth=5, width=8)),
              "wespe": wespe.build_generator(8, 1)}
    for system, model in models.items():
        export.export_enhancer(model, str(tmp_path / system), version=1)
        enhance_fn = enhance.load_saved_model_enhancer(str(tmp_path / system))
        report = enhance.enhance_files(enhance_fn, [str(folder)], str(tmp_path / f"{system}_out"))
        assert report.ok and len(report.written) == 3, report.summary()
        for name in sizes:
            source = str(folder / f"{name}.png")
            written = np.asarray(Image.open(tmp_path / f"{system}_out" / f"{name}.png"))
            expected = to_uint8(expected_output(model, load_rgb8(source)[None] / np.float32(255)))
            assert written.shape == load_rgb8(source).shape, (system, name)
            assert np.abs(written.astype(int) - expected[0]).max() <= 1, (system, name)


def test_resolve_saved_model_dir(tmp_path):
    base = tmp_path / "exports"
    for version in ("1", "2", "10"):
        (base / version).mkdir(parents=True)
        (base / version / "saved_model.pb").write_bytes(b"")
    (base / "11").mkdir()  # no saved_model.pb: not a version
    (base / "latest").mkdir()
    assert enhance.resolve_saved_model_dir(str(base)) == str(base / "10")  # 10 > 2, numerically
    assert enhance.resolve_saved_model_dir(str(base / "2")) == str(base / "2")
    with pytest.raises(FileNotFoundError, match=re.escape(str(base / "11"))):
        enhance.resolve_saved_model_dir(str(base / "11"))
    with pytest.raises(FileNotFoundError, match="no such directory"):
        enhance.resolve_saved_model_dir(str(tmp_path / "nothing"))


# --------------------------------------------------------------------------- command line


@pytest.fixture(scope="module")
def cli_case(tmp_path_factory):
    """Versions 1 and 2 of two different tiny enhancers, and photos of several kinds."""
    root = tmp_path_factory.mktemp("enhance_cli")
    export_dir = str(root / "export")
    models = {1: tiny_enhancer(seed=0), 2: tiny_enhancer(seed=1)}
    for version, model in models.items():
        export.export_enhancer(model, export_dir, version=version)

    rng = np.random.default_rng(11)
    photos, more = root / "photos", root / "more"
    photos.mkdir()
    more.mkdir()
    exif = Image.Exif()
    exif[0x0112] = 6  # stored sideways: 40 wide, 30 high; upright 30 wide, 40 high
    deep = rng.integers(0, 65536, (26, 21, 3), dtype=np.uint16)
    rgba = rng.integers(0, 256, (22, 28, 4), dtype=np.uint8)
    inputs = {
        "photo": _save(rng.integers(0, 256, (30, 40, 3), dtype=np.uint8), photos / "photo.jpg",
                       exif=exif, quality=90),
        "gray": _save(rng.integers(0, 256, (26, 34), dtype=np.uint8), photos / "gray.png"),
        "deep": str(more / "deep.png"),
        "rgba": _save(rgba, more / "rgba.png"),
        "broken": str(more / "broken.jpg"),
    }
    (more / "deep.png").write_bytes(tf.io.encode_png(deep).numpy())
    with open(inputs["photo"], "rb") as f:
        (more / "broken.jpg").write_bytes(f.read()[:200])  # truncated JPEG
    assert Image.open(inputs["gray"]).mode == "L" and Image.open(inputs["rgba"]).mode == "RGBA"
    # 16-bit is scaled to 8 bits, not truncated.
    assert np.abs(load_rgb8(inputs["deep"]) / 255.0 - deep / 65535.0).max() <= 1 / 255
    return {"root": root, "export_dir": export_dir, "models": models, "inputs": inputs,
            "photos": str(photos), "digests": {k: _digest(v) for k, v in inputs.items()}}


def _run_cli(capsys, caplog, *args):
    """`python -m tools.enhance ARGS` in this process: (exit code, stdout, stdout + the log)."""
    code = enhance.main(["tools.enhance", *args])
    stdout = capsys.readouterr().out
    return code, stdout, stdout + caplog.text


def _expected_pixels(model, path):
    return to_uint8(expected_output(model, load_rgb8(path)[None] / np.float32(255))[0])


def test_cli_base_dir_all_kinds_and_a_corrupt_file(cli_case, capsys, caplog):
    inputs = cli_case["inputs"]
    out = str(cli_case["root"] / "out")
    code, stdout, log = _run_cli(capsys, caplog, f"--saved_model={cli_case['export_dir']}",
                                 cli_case["photos"], inputs["deep"], inputs["rgba"],
                                 inputs["broken"], f"--output_dir={out}")
    assert code == 1, log
    assert f"Using version 2 of {cli_case['export_dir']}" in log
    assert "Enhanced 4 of 5 photos." in stdout
    assert re.search(re.escape(inputs["broken"]) + ".*cannot read image", stdout), log
    assert sorted(os.listdir(out)) == ["deep.png", "gray.png", "photo.png", "rgba.png"]
    for name in ("photo", "gray", "deep", "rgba"):
        written = np.asarray(Image.open(os.path.join(out, f"{name}.png")))
        expected = _expected_pixels(cli_case["models"][2], inputs[name])
        assert written.shape == expected.shape, name
        # Equal up to a rounding flip where the served float differs from Keras's by an ulp.
        assert np.abs(written.astype(int) - expected).max() <= 1, name
        other = _expected_pixels(cli_case["models"][1], inputs[name])
        assert np.abs(written.astype(int) - other).mean() > 10, "version 1 was used"
    assert np.asarray(Image.open(os.path.join(out, "photo.png"))).shape == (40, 30, 3)  # upright
    assert {k: _digest(v) for k, v in inputs.items()} == cli_case["digests"]


def test_cli_version_dir_jpeg_next_to_inputs(cli_case, capsys, caplog):
    """`<export>/1`, JPEG output into the photos' own directory: photo.jpg itself is refused."""
    photos = str(cli_case["root"] / "photos_copy")
    shutil.copytree(cli_case["photos"], photos)
    inputs = {name: os.path.join(photos, os.path.basename(cli_case["inputs"][name]))
              for name in ("photo", "gray")}
    digests = {name: _digest(path) for name, path in inputs.items()}
    code, stdout, log = _run_cli(
        capsys, caplog, f"--saved_model={os.path.join(cli_case['export_dir'], '1')}", photos,
        f"--output_dir={photos}", "--format=jpg", "--overwrite")
    assert code == 1, log
    assert f"refusing to overwrite input file {inputs['photo']}" in stdout, log
    assert "Enhanced 1 of 2 photos." in stdout
    assert "Using version" not in log
    assert {name: _digest(path) for name, path in inputs.items()} == digests
    assert sorted(os.listdir(photos)) == ["gray.jpg", "gray.png", "photo.jpg"]
    written = np.asarray(Image.open(os.path.join(photos, "gray.jpg")))
    # Version 1's output, as Pillow's JPEG at quality 95 (up to rounding flips).
    expected = _expected_pixels(cli_case["models"][1], inputs["gray"])
    buffer = io.BytesIO()
    Image.fromarray(expected).save(buffer, format="JPEG", quality=95)
    reference = np.asarray(Image.open(buffer))
    assert np.abs(written.astype(int) - reference).max() <= 2
    other = _expected_pixels(cli_case["models"][2], inputs["gray"])
    assert np.abs(written.astype(int) - other).mean() > 10, "version 2 was used"


def test_photo_above_max_pixels_is_refused_by_name_before_decoding(photos, tmp_path,
                                                                   monkeypatch):
    folder, paths = photos
    big = _save(np.zeros((30, 41, 3), np.uint8), folder / "big.png")  # 1230 pixels
    decoded = []
    monkeypatch.setattr(enhance, "load_rgb8",
                        lambda path: decoded.append(path) or load_rgb8(path))
    report = enhance.enhance_files(_invert, [str(folder)], str(tmp_path / "out"),
                                   max_pixels=1000)
    assert sorted(os.listdir(tmp_path / "out")) == ["a.png", "b.png"]
    assert sorted(decoded) == sorted(paths.values())  # big.png was never decoded
    (path, reason), = report.failed
    assert path == big
    assert "41x30 pixels" in reason and "--max_pixels=1000" in reason
    assert big in report.summary()


def test_cli_max_pixels_flag(cli_case, capsys, caplog):
    inputs = cli_case["inputs"]
    out = str(cli_case["root"] / "out_max_pixels")
    code, stdout, log = _run_cli(capsys, caplog, f"--saved_model={cli_case['export_dir']}",
                                 inputs["photo"], inputs["gray"], "--max_pixels=1000",
                                 f"--output_dir={out}")
    assert code == 1, log
    assert "Enhanced 1 of 2 photos." in stdout
    assert re.search(re.escape(inputs["photo"]) + r".*40x30 pixels.*--max_pixels=1000", stdout)
    assert sorted(os.listdir(out)) == ["gray.png"]


# --------------------------------------------------------------------------- checks


def _smooth_photo(path, height=48, width=64):
    """A smooth photo in mid-tones: nothing clipped, little fine detail."""
    rows, cols = np.mgrid[0:height, 0:width]
    pixels = np.stack([60 + rows, 90 + cols, 150 - rows], axis=-1).astype(np.uint8)
    return _save(pixels, path)


def _dark_frame(image):
    framed = image.copy()
    framed[:4], framed[-4:], framed[:, :4], framed[:, -4:] = 0.5 * framed[:4], \
        0.5 * framed[-4:], 0.5 * framed[:, :4], 0.5 * framed[:, -4:]
    return framed


def test_an_output_that_may_be_worse_is_written_and_named_in_the_log_and_summary(tmp_path,
                                                                                 caplog):
    good = _smooth_photo(tmp_path / "good.png")
    framed = _smooth_photo(tmp_path / "framed.png")
    report = enhance.enhance_files(lambda image: image, [good], str(tmp_path / "out"))
    assert report.ok and report.damaged == [] and "Look at these" not in report.summary()

    report = enhance.enhance_files(_dark_frame, [framed], str(tmp_path / "out"))
    assert report.ok and [path for path, _ in report.written] == [framed]
    (path, found), = report.damaged
    assert path == framed and "dark frame" in found[0]
    output = str(tmp_path / "out" / "framed.png")
    assert os.path.isfile(output)
    assert f"{framed}: look at {output} before using it" in caplog.text
    assert re.search(r"Look at these.*\(1\):\n  " + re.escape(framed) + ": a dark frame",
                     report.summary())


def test_a_crop_is_checked_against_the_photo_cut_to_its_box(tmp_path):
    photo = _smooth_photo(tmp_path / "photo.png")
    box = (8, 10, 30, 40)

    def crop(image, source=None):
        top, left, height, width = box
        return enhance.Enhanced(image[top:top + height, left:left + width], {}, box=box)

    def crop_and_frame(image, source=None):
        result = crop(image)
        return enhance.Enhanced(_dark_frame(result.image), {}, box=box)

    crop.side_suffixes = crop_and_frame.side_suffixes = ()
    report = enhance.enhance_files(crop, [photo], str(tmp_path / "crop"))
    assert report.ok and report.damaged == []  # a crop alone changes nothing
    report = enhance.enhance_files(crop_and_frame, [photo], str(tmp_path / "framed"))
    assert "dark frame" in report.damaged[0][1][0]


def test_an_exports_warning_and_a_demo_model_are_logged_when_it_is_loaded(tmp_path, caplog):
    export_dir = str(tmp_path / "export")
    export.export_enhancer(tiny_enhancer(), export_dir, version=1, metadata={
        "system": "wespe", "warning": "VGG-19 had RANDOM weights: not a WESPE model.",
        "config": {"dataset": "demo"}})
    export.export_enhancer(tiny_enhancer(), export_dir, version=2, metadata={
        "system": "can", "warning": None, "config": {"dataset": "fivek"}})
    version = os.path.join(export_dir, "1")
    assert enhance.export_warnings(version) == [
        "VGG-19 had RANDOM weights: not a WESPE model.",
        f"{version} is the WESPE demo, trained for minutes on the embedded demo set: a "
        "demonstration of the pipeline, not a model for your photos; the README's held-out "
        "check says what it does to real photos."]
    enhance.load_saved_model_enhancer(version)
    assert "RANDOM weights" in caplog.text and "is the WESPE demo" in caplog.text
    caplog.clear()
    assert enhance.export_warnings(os.path.join(export_dir, "2")) == []
    enhance.load_saved_model_enhancer(export_dir)
    assert "RANDOM" not in caplog.text and "demo" not in caplog.text
