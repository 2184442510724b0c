"""tools.report (one report layout, strict JSON, one table) and tools.figures (matplotlib)."""
import json

import numpy as np
import pytest
from PIL import Image

from tools import figures, report


def _report(**extras):
    return report.make_report(
        "can",
        [{"name": "input", "metrics": {"psnr": 20.5, "ssim": 0.71, "nima_mean": 4.25}},
         {"name": "reference", "metrics": {"nima_mean": 5.5}},
         {"name": "CAN(L2)", "metrics": {"psnr": float("nan"), "ssim": 0.8,
                                         "nima_mean": np.float32(4.75)}}],
        ["psnr", "ssim", "nima_mean"], num_images=3,
        skipped=[{"file": "in/p7.png", "reason": "truncated"}], **extras)


def test_layout_and_strict_json_round_trip(tmp_path):
    results = _report(figures={"box": "x.png"}, pairs=[["a", "b"]])
    assert results["format"] == report.FORMAT and results["system"] == "can"
    assert results["num_images"] == 3
    assert list(results["metrics"]) == ["psnr", "ssim", "nima_mean"]
    assert results["metrics"]["psnr"] == report.METRIC_GUIDES["psnr"]
    assert [row["name"] for row in results["rows"]] == ["input", "reference", "CAN(L2)"]
    # Every row has every metric; missing ones are None; NumPy scalars become floats.
    assert results["rows"][1]["metrics"] == {"psnr": None, "ssim": None, "nima_mean": 5.5}
    assert type(results["rows"][2]["metrics"]["nima_mean"]) is float
    # The NaN is null, and said so.
    assert results["rows"][2]["metrics"]["psnr"] is None
    assert results["non_finite"] == [{"at": "rows/2/metrics/psnr", "value": "nan"}]
    assert results["skipped"] == [{"file": "in/p7.png", "reason": "truncated"}]
    assert results["figures"] == {"box": "x.png"} and results["pairs"] == [["a", "b"]]

    path = tmp_path / "sub" / "eval.json"
    written = report.write_report(path, results)
    text = path.read_text()
    assert "NaN" not in text and "Infinity" not in text and '"psnr": null' in text
    assert report.read_report(path) == written == results


def test_write_report_converts_late_non_finite_values(tmp_path):
    results = _report()
    results["extra"] = {"psnr_per_photo": [float("inf"), 3.0, float("-inf")]}
    written = report.write_report(tmp_path / "r.json", results)
    assert written["extra"]["psnr_per_photo"] == [None, 3.0, None]
    assert {"at": "extra/psnr_per_photo/0", "value": "inf"} in written["non_finite"]
    assert {"at": "extra/psnr_per_photo/2", "value": "-inf"} in written["non_finite"]
    assert len(written["non_finite"]) == 3  # the NaN of make_report is kept, not repeated
    json.loads((tmp_path / "r.json").read_text(), parse_constant=pytest.fail)


def test_a_nan_metric_reaches_eval_json_and_the_printed_outcome_as_strict_json(
        tmp_path, capsys, monkeypatch):
    """Issue 15, item 8: the outcome a run prints was json.dumps(allow_nan=False) of whatever it
    held, so a NaN there raised. Both the run's eval.json and its printed outcome are strict
    JSON, the NaN written as null and noted."""
    from train import runner
    from train.nima_task import NimaConfig, NimaTask

    metrics = {"accuracy": float("nan"), "lcc": 0.5, "srcc": 0.25, "emd": 0.1, "num_images": 4}
    monkeypatch.setattr(NimaTask, "evaluate",
                        lambda self, models: report.nima_report(metrics, "NIMA(toy)"))
    config = NimaConfig(model_dir=str(tmp_path))
    evaluated = runner.evaluate(NimaTask(config), models=None)
    written = json.loads((tmp_path / "eval.json").read_text(), parse_constant=pytest.fail)
    assert written == evaluated and written["rows"][0]["metrics"]["accuracy"] is None
    assert written["non_finite"] == [{"at": "rows/0/metrics/accuracy", "value": "nan"}]

    runner.print_outcome(NimaTask, config, {"eval": evaluated, "loss": np.float32("nan")})
    out = capsys.readouterr().out
    printed, end = json.JSONDecoder(parse_constant=pytest.fail).raw_decode(out)
    assert printed["eval"] == written and printed["loss"] is None
    assert printed["non_finite"] == [{"at": "loss", "value": "nan"}]
    assert "n/a" in out[end:] and "Test SRCC 0.250 on 4 test images" in out[end:]


def test_read_report_rejects_nan_and_non_reports(tmp_path):
    (tmp_path / "nan.json").write_text('{"system": "x", "num_images": 1, "metrics": {}, '
                                       '"rows": [], "v": NaN}')
    with pytest.raises(ValueError, match="strict JSON"):
        report.read_report(tmp_path / "nan.json")
    (tmp_path / "other.json").write_text('{"count": 1}')
    with pytest.raises(ValueError, match="not an evaluation report"):
        report.read_report(tmp_path / "other.json")


def test_make_report_checks_its_arguments():
    with pytest.raises(ValueError, match="no reading guide"):
        report.make_report("x", [], ["sharpness"], num_images=0)
    with pytest.raises(ValueError, match="not columns"):
        report.make_report("x", [{"name": "a", "metrics": {"ssim": 1.0}}], ["psnr"],
                           num_images=1)
    with pytest.raises(ValueError, match="repeated"):
        report.make_report("x", [{"name": "a"}, {"name": "a"}], ["psnr"], num_images=1)
    with pytest.raises(ValueError, match="'file' and 'reason'"):
        report.make_report("x", [], ["psnr"], num_images=1, skipped=[{"path": "a"}])
    custom = report.make_report("x", [{"name": "a", "metrics": {"sharpness": 2.0}}],
                                {"sharpness": "mean gradient; higher is sharper"}, num_images=1)
    assert custom["metrics"] == {"sharpness": "mean gradient; higher is sharper"}


def test_table_shows_every_row_and_metric_na_and_a_guide_per_metric():
    results = _report(notes=["NIMA model: tiny"])
    table = report.format_table(results)
    lines = table.splitlines()
    assert lines[0] == "can: 3 images evaluated (1 skipped)"
    assert lines[1].split() == ["psnr", "ssim", "nima_mean"]
    assert lines[2].split() == ["input", "20.50", "0.7100", "4.250"]
    assert lines[3].split() == ["reference", "n/a", "n/a", "5.500"]
    assert lines[4].split() == ["CAN(L2)", "n/a", "0.8000", "4.750"]
    assert lines[5] == "How to read:"
    guides = lines[6:9]
    for line, metric in zip(guides, ["psnr", "ssim", "nima_mean"]):
        assert line == f"  {metric}: {report.METRIC_GUIDES[metric]}"
        assert "better" in line  # the direction
    assert "Note: NIMA model: tiny" in lines
    assert "Note: rows/2/metrics/psnr was nan, written as null" in lines
    assert "Skipped" not in table
    listed = report.format_table(results, list_skipped=True).splitlines()
    assert listed[-2:] == ["Skipped (1):", "  in/p7.png: truncated"]
    for metric, guide in report.METRIC_GUIDES.items():  # every guide says how to read it
        assert "better" in guide, metric


def test_per_metric_counts_are_in_the_guide():
    results = report.make_report(
        "wespe", [{"name": "input", "metrics": {"psnr": 20.0, "entropy": 7.0}}],
        ["psnr", "entropy"], num_images=7, num_images_per_metric={"psnr": 5, "entropy": 2})
    table = report.format_table(results)
    assert f"  psnr: {report.METRIC_GUIDES['psnr']} [5 images]" in table
    assert f"  entropy: {report.METRIC_GUIDES['entropy']} [2 images]" in table


def test_nima_report_keeps_the_metrics_and_the_correlation_note():
    metrics = {"accuracy": 0.75, "lcc": None, "srcc": None, "emd": 0.12, "num_images": 8,
               "correlation_note": "undefined: the predicted mean scores are constant",
               "undecodable_images": 1}
    results = report.nima_report(metrics, "NIMA(mobilenet)")
    assert results["system"] == "nima" and results["num_images"] == 8
    assert results["rows"] == [{"name": "NIMA(mobilenet)", "metrics": {
        "accuracy": 0.75, "lcc": None, "srcc": None, "emd": 0.12}}]
    assert results["correlation_note"] == metrics["correlation_note"]
    assert results["undecodable_images"] == 1
    table = report.format_table(results)
    assert "n/a" in table and "LCC and SRCC are undefined" in table
    defined = report.nima_report({**metrics, "lcc": 0.5, "srcc": 0.4,
                                  "correlation_note": None}, "m")
    assert "correlation_note" not in defined and "notes" not in defined
    assert defined["rows"][0]["metrics"]["srcc"] == 0.4


# --------------------------------------------------------------------------- figures


def _png_pixels(path):
    with Image.open(path) as image:
        assert image.format == "PNG"
        pixels = np.asarray(image.convert("RGB"))
    assert pixels.size > 0
    assert len(np.unique(pixels.reshape(-1, 3), axis=0)) > 10  # not one colour: a drawing
    return pixels


def test_box_plot_is_a_matplotlib_png(tmp_path):
    path = tmp_path / "plots" / "box.png"
    drawn = figures.box_plot({"input": [4.1, 4.5, 5.0, 4.7, 9.0], "CAN": [5.2, 5.4, 5.1]},
                             str(path), width=500, height=360)
    pixels = _png_pixels(path)
    assert pixels.shape == drawn.shape == (360, 500, 3)
    np.testing.assert_array_equal(pixels, drawn)
    with Image.open(path) as image:
        assert image.info["Software"].startswith("Matplotlib")  # matplotlib wrote the file
    # The mean markers' green is drawn: the boxes are really there.
    assert (np.abs(pixels.astype(int) - (30, 140, 60)).sum(axis=-1) < 10).sum() > 20
    with pytest.raises(ValueError, match="finite"):
        figures.box_plot({"a": [1.0, float("nan")]}, None)


def test_line_plot_is_a_matplotlib_png(tmp_path):
    path = tmp_path / "curve.png"
    drawn = figures.line_plot({"PIEA": [4.0, 4.4, 4.7, 4.9], "other": [4.0, 4.1, 4.1, 4.2]},
                              str(path), width=400, height=300)
    pixels = _png_pixels(path)
    assert pixels.shape == (300, 400, 3)
    with Image.open(path) as image:
        assert image.info["Software"].startswith("Matplotlib")
    np.testing.assert_array_equal(pixels, drawn)
    # matplotlib's first two colours, C0 blue and C1 orange, draw the two lines.
    for colour in ((31, 119, 180), (255, 127, 14)):
        assert (np.abs(pixels.astype(int) - colour).sum(axis=-1) < 10).sum() > 20, colour
    with pytest.raises(ValueError):
        figures.line_plot({}, None)


def test_side_by_side_keeps_the_pixels(tmp_path):
    rng = np.random.default_rng(0)
    a = rng.integers(0, 255, (40, 30, 3), dtype=np.uint8)
    b = rng.uniform(0, 1, (40, 20, 3))
    path = tmp_path / "s.png"
    strip = figures.side_by_side({"input": a, "G(x)": b}, str(path))
    band = strip.shape[0] - 40
    np.testing.assert_array_equal(_png_pixels(path), strip)
    np.testing.assert_array_equal(strip[band:, :30], a)
    np.testing.assert_array_equal(strip[band:, 34:], np.rint(b * 255).astype(np.uint8))
    assert (strip[:band] != 255).any()  # the names
    with pytest.raises(ValueError, match="one height"):
        figures.side_by_side({"a": a, "b": b[:10]})
