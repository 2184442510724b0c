"""tools.evaluate_piea: PIEA on FiveK-like folders, Table 1's figures recomputed independently.

In process with the toy brightness guide of tests/test_piea.py (its score rises with the mean
luminance, so PIEA's outputs must get brighter), and once through the command line (`main(argv)`,
also in process) with a MobileNet NIMA weights file written by the test.
"""
import os
import re
import sys

import numpy as np
import pytest
from PIL import Image

import nima
from datasets.images import load_rgb8, to_uint8
from enhancers import piea
from tools import evaluate, evaluate_piea, report

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from test_piea import brightness_nima  # noqa: E402

STEMS = ["a0001-jmac_DSC1459", "a0002-dgw_005", "a0003-NKIM_MG_8178"]
SETTINGS = {"iterations": 2, "learning_rate": 1e-2, "proxy_size": None, "seed": 0}


def _save(pixels, path):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels).save(path)
    return str(path)


@pytest.fixture(scope="module")
def guide():
    return brightness_nima()


@pytest.fixture
def fivek_dir(tmp_path):
    """Dark inputs (TIFF, one grayscale) and brighter expert C retouches (JPEG), 80-96 px."""
    rng = np.random.default_rng(0)
    root = tmp_path / "fivek"
    shapes = [(80, 96), (96, 80), (88, 88)]
    for stem, shape in zip(STEMS, shapes):
        dark = rng.uniform(0.02, 0.3, shape + (3,))
        if stem == STEMS[1]:
            _save((dark[..., 0] * 255).astype(np.uint8), root / "input" / f"{stem}.tif")
        else:
            _save((dark * 255).astype(np.uint8), root / "input" / f"{stem}.tif")
        bright = np.clip(dark * 2.5 + rng.uniform(0, 0.1, shape + (3,)), 0, 1)
        _save((bright * 255).astype(np.uint8), root / "expertC" / f"{stem}.jpg")
    return root


def _pairs(root, stems=STEMS):
    return [(str(root / "input" / f"{s}.tif"), str(root / "expertC" / f"{s}.jpg")) for s in stems]


# --------------------------------------------------------------------------- in process


def test_figures_match_an_independent_computation(fivek_dir, tmp_path, guide):
    out = tmp_path / "out"
    pairs = _pairs(fivek_dir)
    results = evaluate_piea.evaluate(pairs, guide, output_dir=str(out),
                                     reference_label="Expert C", **SETTINGS)
    assert results["system"] == "piea"
    assert results["num_images"] == 3 and results["skipped"] == []
    assert [row["name"] for row in results["rows"]] == ["input", "reference", "PIEA"]
    assert list(results["metrics"]) == ["luminance", "contrast", "saturation", "nima_mean"]
    rows = {row["name"]: row["metrics"] for row in results["rows"]}
    assert sorted(os.listdir(out)) == sorted([f"{s}.png" for s in STEMS] + ["results.json"])

    inputs = [load_rgb8(a) for a, _ in pairs]
    references = [load_rgb8(b) for _, b in pairs]
    outputs = [load_rgb8(out / f"{s}.png") for s in STEMS]
    # The written photos are PIEA's, one photo per call, rounded to 8 bits.
    for image, written in zip(inputs, outputs):
        result = piea.enhance(image[None] / np.float32(255), guide, iterations=2,
                              learning_rate=1e-2)
        assert np.abs(written.astype(int) - to_uint8(result.images[0])).max() <= 1
        assert written.mean() > image.mean() + 5  # the guide wants brighter photos

    # Table 1: the metric on the three sets of files, each set with default_rng(seed).
    histogram = ("luminance", "contrast", "saturation")
    for name, images in (("input", inputs), ("PIEA", outputs)):
        assert {k: rows[name][k] for k in histogram} == pytest.approx(
            evaluate.histogram_intersections(images, references, seed=0), abs=1e-12)
    assert all(rows["reference"][k] is None for k in histogram)
    assert rows["PIEA"]["nima_mean"] > rows["input"]["nima_mean"] + 0.1  # the guide's direction
    for name, images in (("input", inputs), ("PIEA", outputs), ("reference", references)):
        assert rows[name]["nima_mean"] == pytest.approx(
            evaluate.nima_mean_scores(guide, images).mean(), abs=1e-6), name

    # Per photo: the input's own score, not iteration 0 (already +1 EV brighter).
    for record, image in zip(results["per_photo"], inputs):
        assert len(record["piea_scores"]) == 3
        assert record["nima_input"] == pytest.approx(
            evaluate.nima_mean_scores(guide, [image])[0], abs=1e-6)
        assert record["piea_scores"][0] > record["nima_input"] + 1e-3
        assert 1.0 < record["parameters"]["exposure"] < 1.5  # +1 EV, then brighter still
        assert record["piea_selected_iteration"] == 2  # the guide's score rises every step
        assert record["piea_selection"].startswith("iteration 2 of 2: highest NIMA score")
        assert record["piea_warnings"] == []
    assert results["settings"]["select"] == "best"
    assert results["settings"]["initial_exposure"] == 1.0
    assert report.read_report(out / "results.json") == results
    assert results["reference_label"] == "Expert C"


def test_outputs_as_references_give_one(fivek_dir, tmp_path, guide):
    """References that are PIEA's own outputs: the PIEA row is exactly 100% (same sizes, same
    order, same seed: the same patches), the Input row is not."""
    first = tmp_path / "first"
    evaluate_piea.evaluate(_pairs(fivek_dir), guide, output_dir=str(first), **SETTINGS)
    pairs = [(a, str(first / f"{s}.png")) for (a, _), s in zip(_pairs(fivek_dir), STEMS)]
    results = evaluate_piea.evaluate(pairs, guide, **SETTINGS)
    rows = {row["name"]: row["metrics"] for row in results["rows"]}
    assert rows["PIEA"] == {"luminance": 1.0, "contrast": 1.0, "saturation": 1.0,
                            "nima_mean": pytest.approx(rows["reference"]["nima_mean"], abs=1e-6)}
    assert rows["input"]["luminance"] < 0.5


def test_bad_photos_are_reported_by_name_and_skipped(fivek_dir, tmp_path, guide):
    pairs = _pairs(fivek_dir)
    broken = fivek_dir / "input" / "a0004-broken.tif"
    broken.write_bytes(b"II*\x00 not really a tiff")
    small = _save(np.zeros((60, 120, 3), np.uint8), fivek_dir / "input" / "a0005-small.png")
    missing_ref = str(fivek_dir / "expertC" / "a0006-gone.jpg")
    rgba = np.random.default_rng(1).integers(0, 80, (81, 82, 4), dtype=np.uint8)
    odd = _save(rgba, fivek_dir / "input" / "a0007-rgba.png")  # RGBA: alpha dropped, fine
    _save(rgba[..., :3], fivek_dir / "expertC" / "a0007-rgba.jpg")
    pairs += [(str(broken), pairs[0][1]), (small, pairs[1][1]), (pairs[2][0], missing_ref),
              (odd, str(fivek_dir / "expertC" / "a0007-rgba.jpg"))]
    results = evaluate_piea.evaluate(pairs, guide, **SETTINGS)
    assert results["num_images"] == 4
    reasons = {f["file"]: f["reason"] for f in results["skipped"]}
    assert set(reasons) == {str(broken), small, missing_ref}
    assert "cannot read image" in reasons[str(broken)]
    assert "120x60 is smaller than the 80x80" in reasons[small]
    assert "cannot read image" in reasons[missing_ref]
    # The figures are those of the pairs evaluated.
    good = _pairs(fivek_dir) + [pairs[-1]]
    (input_row,) = [row["metrics"] for row in results["rows"] if row["name"] == "input"]
    assert {k: input_row[k] for k in ("luminance", "contrast", "saturation")} == pytest.approx(
        evaluate.histogram_intersections([load_rgb8(a) for a, _ in good],
                                         [load_rgb8(b) for _, b in good], seed=0), abs=1e-12)
    table = report.format_table(results)
    assert "Expert C" not in table and "piea: 4 images evaluated (3 skipped)" in table
    assert "Note: reference: Reference" in table

    with pytest.raises(ValueError, match="none of the 1 pairs.*a0004-broken.tif"):
        evaluate_piea.evaluate(pairs[3:4], guide, **SETTINGS)


def test_output_dir_may_not_hold_the_photos(fivek_dir, guide):
    with pytest.raises(ValueError, match="holds the photo"):
        evaluate_piea.evaluate(_pairs(fivek_dir), guide, output_dir=str(fivek_dir / "expertC"),
                               **SETTINGS)


def test_format_table_layout():
    """A Table 1 report as tools.report prints it: rows x metrics, n/a, the reading guide."""
    results = report.make_report(
        "piea", [{"name": "input", "metrics": {"luminance": 0.71349, "contrast": 0.8365,
                                               "saturation": 0.6971, "nima_mean": 4.5}},
                 {"name": "reference", "metrics": {"nima_mean": 5.0004}},
                 {"name": "PIEA", "metrics": {"luminance": 0.864, "contrast": 0.87849,
                                              "saturation": 1.0, "nima_mean": 5.25}}],
        ["luminance", "contrast", "saturation", "nima_mean"], num_images=1000,
        notes=["reference: Expert C"])
    assert report.format_table(results).splitlines()[:5] == [
        "piea: 1000 images evaluated",
        "           luminance  contrast  saturation  nima_mean",
        "input          0.713     0.837       0.697      4.500",
        "reference        n/a       n/a         n/a      5.000",
        "PIEA           0.864     0.878       1.000      5.250",
    ]


def test_find_pairs(fivek_dir, tmp_path):
    pairs, missing, label = evaluate_piea.find_pairs(fivek_dir=str(fivek_dir), expert="c")
    assert pairs == _pairs(fivek_dir) and missing == [] and label == "Expert C"
    split = tmp_path / "test.txt"
    split.write_text("# FiveK ids\n3\n1\n")
    pairs, _, _ = evaluate_piea.find_pairs(fivek_dir=str(fivek_dir), split_file=str(split))
    assert pairs == _pairs(fivek_dir, [STEMS[0], STEMS[2]])
    pairs, _, label = evaluate_piea.find_pairs(
        input_dir=str(fivek_dir / "input"), reference_dir=str(fivek_dir / "expertC"), limit=2,
        split_file=str(split))
    assert pairs == _pairs(fivek_dir, [STEMS[0], STEMS[2]])[:2] and label == "Reference"
    assert evaluate_piea.find_pairs(fivek_dir=str(fivek_dir), limit=1)[0] == _pairs(fivek_dir)[:1]
    with pytest.raises(ValueError, match="not both"):
        evaluate_piea.find_pairs(fivek_dir=str(fivek_dir), input_dir=str(fivek_dir))
    with pytest.raises(ValueError, match="both --input_dir and --reference_dir"):
        evaluate_piea.find_pairs(input_dir=str(fivek_dir))
    with pytest.raises(ValueError, match="tried expertB"):
        evaluate_piea.find_pairs(fivek_dir=str(fivek_dir), expert="B")


# --------------------------------------------------------------------------- command line


def test_command_line_with_a_nima_weights_file(fivek_dir, tmp_path, capsys, caplog):
    weights = str(tmp_path / "mobilenet_nima.weights.h5")
    nima.build_nima("mobilenet").save_weights(weights)
    (fivek_dir / "input" / "a0009-broken.tif").write_bytes(b"not an image")
    _save(np.zeros((90, 90, 3), np.uint8), fivek_dir / "expertC" / "a0009-broken.jpg")
    split = tmp_path / "FiveK_test.txt"
    split.write_text("1\n2\n9\n")
    out = tmp_path / "cli_out"
    code = evaluate_piea.main(
        ["tools.evaluate_piea", f"--fivek_dir={fivek_dir}", "--expert=C",
         f"--split_file={split}", f"--nima_weights={weights}", "--backbone=mobilenet",
         "--iterations=2", f"--output_dir={out}", "--piea_select=final",
         "--initial_exposure=0.5"])
    printed = capsys.readouterr().out
    assert code == 1, caplog.text[-3000:]  # the broken photo was skipped
    lines = printed.splitlines()
    assert lines[0] == "piea: 2 images evaluated (1 skipped)"
    assert re.fullmatch(r" +luminance +contrast +saturation +nima_mean", lines[1])
    number = r"\d\.\d{3}"
    for row, line in zip(("input", "reference", "PIEA"), lines[2:5]):
        pattern = (rf"{row} +{number} +{number} +{number} +{number}" if row != "reference"
                   else rf"reference +n/a +n/a +n/a +{number}")
        assert re.fullmatch(pattern, line), line
    assert "Note: reference: Expert C" in lines
    assert f"Note: NIMA model: NIMA(mobilenet) from {weights}" in lines
    assert "a0009-broken.tif: cannot read image" in printed
    saved = report.read_report(out / "results.json")
    assert saved["num_images"] == 2 and saved["settings"]["iterations"] == 2
    assert saved["settings"]["select"] == "final" and saved["settings"]["initial_exposure"] == 0.5
    assert [r["piea_selected_iteration"] for r in saved["per_photo"]] == [2, 2]
    assert sorted(os.listdir(out)) == [f"{STEMS[0]}.png", f"{STEMS[1]}.png", "results.json"]
    # The printed figures are those of results.json.
    luminance = saved["rows"][2]["metrics"]["luminance"]
    assert f"{luminance:.3f}" in lines[4]
