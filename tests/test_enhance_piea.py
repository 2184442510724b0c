"""`tools.enhance --method=piea`: photo, JSON recipe and Figure-4 PNG per input, bad inputs.

In process with a toy guide (tests/test_piea.py), and once through the command line
(`tools.enhance.main(argv)`, in process) with a MobileNet NIMA weights file written by the test.
"""
import io
import json
import os
import sys

import numpy as np
import pytest
from absl import flags
from PIL import Image

import nima
from datasets.images import load_rgb8
from enhancers import piea_report
from tools import enhance

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from test_piea import brightness_nima, mid_gray_nima  # noqa: E402

SIDE_FILES = (".recipe.json", ".figure.png")


def _dark(rng, shape):
    return (rng.uniform(0.0, 0.3, shape) * 255).astype(np.uint8)


@pytest.fixture
def photos(tmp_path):
    """Photos of the kinds users have: RGB JPEG, grayscale, RGBA and 16-bit PNGs, a corrupt one."""
    rng = np.random.default_rng(0)
    folder = tmp_path / "photos"
    folder.mkdir()
    Image.fromarray(_dark(rng, (24, 32, 3))).save(folder / "rgb.jpg", quality=95)
    Image.fromarray(_dark(rng, (20, 20))).save(folder / "gray.png")
    Image.fromarray(_dark(rng, (18, 26, 4)), mode="RGBA").save(folder / "rgba.png")
    sixteen = (rng.uniform(0, 0.3, (16, 22)) * 65535).astype(np.uint16)
    Image.fromarray(sixteen).save(folder / "deep.png")
    (folder / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    return folder


@pytest.fixture(scope="module")
def enhance_fn():
    return enhance.piea_enhance_fn(brightness_nima(), "toy guide", iterations=3,
                                   learning_rate=1e-2)


def test_writes_photo_recipe_and_figure_for_every_readable_input(photos, tmp_path, enhance_fn):
    out = tmp_path / "out"
    report = enhance.enhance_files(enhance_fn, [str(photos)], str(out))
    assert sorted(os.path.basename(p) for p, _ in report.failed) == ["broken.jpg"]
    assert "cannot read image" in report.failed[0][1]
    stems = ["deep", "gray", "rgb", "rgba"]
    assert sorted(os.listdir(out)) == sorted(
        stem + suffix for stem in stems for suffix in (".png", *SIDE_FILES))
    for stem in stems:
        source = str(photos / f"{stem}{'.jpg' if stem == 'rgb' else '.png'}")
        recipe = json.loads((out / f"{stem}.recipe.json").read_text())
        assert recipe["source"] == source and recipe["nima"] == "toy guide"
        assert recipe["settings"]["iterations"] == 3 and len(recipe["scores"]) == 4
        assert recipe["settings"]["select"] == "best"
        assert recipe["settings"]["initial_exposure"] == 1.0
        assert recipe["score_after"] > recipe["score_before"]  # the toy guide likes light
        assert recipe["returned"]["iteration"] == 3
        written = np.asarray(Image.open(out / f"{stem}.png"))
        original = load_rgb8(source).astype(np.float32) / 255
        assert written.shape == original.shape
        replayed = np.rint(piea_report.replay(original, recipe) * 255)
        assert np.abs(replayed - written).max() <= 1
        figure = Image.open(out / f"{stem}.figure.png")
        assert figure.mode == "RGB" and figure.width > 6 * 20


def test_side_files_never_replace_inputs_or_existing_files(tmp_path, enhance_fn):
    rng = np.random.default_rng(1)
    folder = tmp_path / "photos"
    folder.mkdir()
    Image.fromarray(_dark(rng, (16, 16, 3))).save(folder / "p.jpg")
    Image.fromarray(_dark(rng, (16, 16, 3))).save(folder / "p.figure.png")  # an input photo
    before = (folder / "p.figure.png").read_bytes()
    inputs = [str(folder / "p.jpg"), str(folder / "p.figure.png")]
    report = enhance.enhance_files(enhance_fn, inputs, str(folder), overwrite=True)
    assert not report.written and len(report.failed) == 2
    assert all("refusing to overwrite input file" in reason for _, reason in report.failed)
    assert (folder / "p.figure.png").read_bytes() == before

    out = tmp_path / "out"
    out.mkdir()
    (out / "p.recipe.json").write_text("keep me")
    report = enhance.enhance_files(enhance_fn, [str(folder / "p.jpg")], str(out))
    assert "output file exists" in report.failed[0][1]
    assert (out / "p.recipe.json").read_text() == "keep me" and not (out / "p.png").exists()
    report = enhance.enhance_files(enhance_fn, [str(folder / "p.jpg")], str(out), overwrite=True)
    assert report.ok
    assert json.loads((out / "p.recipe.json").read_text())["filter_order"][0] == "exposure"


def test_an_enhancer_returning_undeclared_side_files_fails_that_photo(tmp_path):
    rng = np.random.default_rng(2)
    path = tmp_path / "a.png"
    Image.fromarray(_dark(rng, (8, 8, 3))).save(path)

    def sloppy(image, source=None):
        return enhance.Enhanced(image, {".other": b""})

    sloppy.side_suffixes = (".recipe.json",)
    report = enhance.enhance_files(sloppy, [str(path)], str(tmp_path / "out"))
    assert "side files" in report.failed[0][1]


def test_a_bright_photo_under_a_saturating_guide_comes_back_unchanged(tmp_path, caplog):
    """The issue: +1 EV blows a well-exposed photo out and the guide scores that lower. The
    written photo is the input, the recipe says so and the log warns, naming the file."""
    photo = tmp_path / "landscape.png"
    pixels = np.random.default_rng(4).integers(150, 230, (24, 32, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(photo)
    enhance_fn = enhance.piea_enhance_fn(mid_gray_nima(), "mid-gray guide", iterations=2)
    report = enhance.enhance_files(enhance_fn, [str(photo)], str(tmp_path / "out"))
    assert report.ok
    np.testing.assert_array_equal(np.asarray(Image.open(tmp_path / "out" / "landscape.png")),
                                  pixels)
    recipe = json.loads((tmp_path / "out" / "landscape.recipe.json").read_text())
    assert recipe["unchanged"] and recipe["adjustments"] == []
    assert recipe["score_after"] == recipe["score_before"] > max(recipe["scores"])
    assert recipe["returned"]["reason"].startswith("the input itself")
    assert recipe["warnings"] and str(photo) in caplog.text and "saturated" in caplog.text


def test_command_line_with_a_nima_weights_file(photos, tmp_path, capsys, caplog):
    weights = str(tmp_path / "mobilenet_nima.weights.h5")
    nima.build_nima("mobilenet").save_weights(weights)
    # MobileNet's oneDNN gradient kernels need photos of more than a few dozen pixels.
    photo = str(tmp_path / "rgb.jpg")
    Image.fromarray(_dark(np.random.default_rng(3), (64, 96, 3))).save(photo)
    out = tmp_path / "cli_out"
    code = enhance.main(["tools.enhance", "--method=piea", f"--nima_weights={weights}",
                         "--backbone=mobilenet", "--iterations=2", f"--output_dir={out}",
                         "--piea_select=final", "--initial_exposure=auto",
                         photo, str(photos / "broken.jpg")])
    stdout = capsys.readouterr().out
    assert code == 1, caplog.text[-3000:]  # the corrupt file fails, the rest works
    assert "Enhanced 1 of 2 photos." in stdout
    assert "broken.jpg" in stdout and weights in caplog.text
    assert sorted(os.listdir(out)) == ["rgb" + s for s in (".figure.png", ".png", ".recipe.json")]
    recipe = json.loads((out / "rgb.recipe.json").read_text())
    assert "mobilenet" in recipe["nima"] and len(recipe["scores"]) == 3
    assert recipe["settings"]["select"] == "final" and recipe["returned"]["iteration"] == 2
    assert recipe["settings"]["initial_exposure"] == "auto"
    assert 0 < recipe["initial_exposure"] <= 1  # a dark photo starts brighter
    Image.open(io.BytesIO((out / "rgb.figure.png").read_bytes())).verify()


def test_photos_smaller_than_the_guide_scores_are_skipped_by_name(tmp_path):
    """Issue 15: a 1x1 photo under a MobileNet guide died in oneDNN (AbortedError). A photo
    with a side below nima.min_input_side (32) is skipped, named; the others are enhanced."""
    rng = np.random.default_rng(5)
    folder = tmp_path / "photos"
    folder.mkdir()
    sizes = {"dot": (1, 1), "row": (1, 40), "column": (40, 1), "small": (20, 31),
             "fine": (32, 48)}
    for name, size in sizes.items():
        Image.fromarray(_dark(rng, (*size, 3))).save(folder / f"{name}.png")
    enhance_fn = enhance.piea_enhance_fn(nima.build_nima("mobilenet"), "MobileNet NIMA",
                                         iterations=1)
    report = enhance.enhance_files(enhance_fn, [str(folder)], str(tmp_path / "out"))
    assert [os.path.basename(path) for path, _ in report.written] == ["fine.png"]
    reasons = dict(report.failed)
    assert len(reasons) == 4
    for name, (height, width) in sizes.items():
        if name != "fine":
            reason = reasons[str(folder / f"{name}.png")]
            assert (f"{width}x{height} pixels is below 32x32, the smallest photo its NIMA guide "
                    "can score") in reason, reason
    assert nima.min_input_side(brightness_nima()) == 1  # a guide without a known backbone


def test_bad_initial_exposure_flag_is_a_usage_error(tmp_path, photos):
    with pytest.raises(flags.IllegalFlagValueError, match="initial_exposure"):
        enhance.main(["tools.enhance", "--method=piea", "--initial_exposure=bright",
                      f"--output_dir={tmp_path / 'o'}", str(photos / "rgb.jpg")])


def test_demo_darkens_the_three_photos_by_one_stop(tmp_path):
    import skimage.data

    from tools import piea_demo

    paths = piea_demo.darkened_photos(str(tmp_path))
    assert [os.path.basename(p) for p in paths] == ["astronaut.png", "coffee.png", "chelsea.png"]
    for name, path in zip(piea_demo.PHOTOS, paths):
        original = getattr(skimage.data, name)().astype(np.float64)
        expected = np.rint(original / 2)  # -1 EV: values halved, rounded half to even
        np.testing.assert_array_equal(np.asarray(Image.open(path)), expected.astype(np.uint8))


def test_photo_above_the_scoring_limit_is_scored_through_a_proxy(monkeypatch, caplog):
    """PIEA cannot tile: above nima.SCORING_MAX_PIXELS it scores a proxy, says so in the log
    and the recipe, and returns the photo at full size."""
    monkeypatch.setattr(nima, "SCORING_MAX_PIXELS", 1200)
    enhance_fn = enhance.piea_enhance_fn(brightness_nima(), "toy guide", iterations=2)
    image = _dark(np.random.default_rng(3), (40, 60, 3)) / np.float32(255)
    with caplog.at_level("INFO"):
        result = enhance_fn(image, source="wide.png")
    assert result.image.shape == (40, 60, 3)
    recipe = json.loads(result.side_files[".recipe.json"])
    assert recipe["settings"]["proxy_size"] == max(nima.scoring_size(40, 60, 1200)) == 42
    assert "wide.png: 60x40 is above 1200 pixels; scoring a proxy" in caplog.text
    small = json.loads(enhance_fn(image[:20, :30], source="s.png").side_files[".recipe.json"])
    assert small["settings"]["proxy_size"] is None
