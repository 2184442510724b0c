"""tools.evaluate_can: Figure 6's comparison, its figures recomputed independently.

In process: tiny PNG pairs in tmp_path (read by `datasets.paired.load_test_pair`), two NumPy
"enhancers" (one needs clipping) and a tiny Keras "NIMA" (global average pooling + Dense(10,
softmax) with fixed weights) whose score distribution NumPy computes directly. Through the command
line (`main(argv)`, in process too): two exported 1x1-conv enhancers (one the identity) and a
MobileNet NIMA weights file.
"""
import json
import os
import re

import keras
import numpy as np
import pytest
from PIL import Image

import nima
from datasets.images import load_rgb8, to_uint8
from datasets.pipeline import DataError
from tools import evaluate, evaluate_can, export, report

SHAPES = [(24, 32), (30, 26), (24, 32)]
ENHANCERS = {
    "CAN(L2)": lambda x: x ** np.float32(0.8),
    "CAN(L2+NIMA)": lambda x: x * np.float32(1.6) - np.float32(0.1),  # leaves [0, 1]: clipped
}
NIMA_W = np.random.default_rng(5).normal(0.0, 3.0, (3, 10))
NIMA_B = np.random.default_rng(6).normal(0.0, 0.5, (10,))


def tiny_nima():
    model = keras.Sequential([keras.Input((None, None, 3)), keras.layers.GlobalAveragePooling2D(),
                              keras.layers.Dense(10, activation="softmax")])
    model.layers[-1].set_weights([NIMA_W.astype(np.float32), NIMA_B.astype(np.float32)])
    return model


def numpy_nima(image):
    logits = np.asarray(image, np.float64).mean(axis=(0, 1)) @ NIMA_W + NIMA_B
    p = np.exp(logits - logits.max())
    p /= p.sum()
    return float(p @ np.arange(1, 11))


def numpy_psnr(a, b):
    return 10 * np.log10(1.0 / np.mean((np.asarray(a, np.float64) - b) ** 2))


@pytest.fixture(scope="module")
def nima_model():
    return tiny_nima()


def _save(pixels, path):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels).save(path)
    return str(path)


@pytest.fixture
def photos(tmp_path):
    """Three (input, reference) PNG pairs: dim inputs, brighter references."""
    rng = np.random.default_rng(0)
    pairs = []
    for k, shape in enumerate(SHAPES):
        y, x = np.mgrid[:shape[0], :shape[1]]
        base = 0.5 + 0.3 * np.sin(x[..., None] / (4.0 + k) + y[..., None] / 5.0 + np.arange(3))
        reference = np.clip(base + 0.05 * rng.standard_normal(shape + (3,)), 0, 1)
        source = reference ** 1.5 * 0.8
        pairs.append((_save(to_uint8(source), tmp_path / "in" / f"p{k}.png"),
                      _save(to_uint8(reference), tmp_path / "ref" / f"p{k}.png")))
    return pairs


def _load(path):
    return load_rgb8(path) / np.float64(255)


def _row(results, name):
    (row,) = [r for r in results["rows"] if r["name"] == name]
    return row


# --------------------------------------------------------------------------- figures


def test_figures_match_an_independent_computation(photos, nima_model):
    results = evaluate_can.compare(photos, ENHANCERS, nima_model=nima_model,
                                   nima_description="tiny")
    assert [r["name"] for r in results["rows"]] == ["input", "reference", "CAN(L2)",
                                                    "CAN(L2+NIMA)"]
    assert results["system"] == "can" and results["num_images"] == 3 and results["skipped"] == []
    assert list(results["metrics"]) == ["psnr", "ssim", "nima_mean", "nima_std"]
    assert results["photos"] == ["p0.png", "p1.png", "p2.png"]
    assert results["pairs"] == [list(p) for p in photos]
    assert results["nima_model"] == "tiny"
    json.loads(json.dumps(results, allow_nan=False))  # strict JSON

    expected = {name: {"psnr": [], "ssim": [], "nima": []} for name in
                ["input", "reference", *ENHANCERS]}
    for input_path, reference_path in photos:
        source, reference = _load(input_path), _load(reference_path)
        images = {"input": source, "reference": reference}
        for name, enhancer in ENHANCERS.items():
            images[name] = np.clip(enhancer(source.astype(np.float32)), 0, 1)
        for name, image in images.items():
            expected[name]["nima"].append(numpy_nima(image))
            if name != "reference":
                expected[name]["psnr"].append(numpy_psnr(image, reference))
                expected[name]["ssim"].append(evaluate.ssim(image, reference))
    for name, figures in expected.items():
        row = _row(results, name)
        summary, per_image = row["metrics"], row["per_image"]
        np.testing.assert_allclose(per_image["nima"], figures["nima"], rtol=1e-5)
        assert summary["nima_mean"] == pytest.approx(np.mean(figures["nima"]), rel=1e-5)
        assert summary["nima_std"] == pytest.approx(np.std(figures["nima"]), rel=1e-4)
        assert row["nima_box"] == evaluate_can.box_statistics(per_image["nima"])
        if name == "reference":
            assert per_image["psnr"] is per_image["ssim"] is summary["psnr"] is None
            assert summary["ssim"] is None
            continue
        np.testing.assert_allclose(per_image["psnr"], figures["psnr"], rtol=1e-5)
        np.testing.assert_allclose(per_image["ssim"], figures["ssim"], rtol=1e-5, atol=1e-6)
        assert summary["psnr"] == pytest.approx(np.mean(figures["psnr"]), rel=1e-5)
        assert summary["ssim"] == pytest.approx(np.mean(figures["ssim"]), rel=1e-5)
    # The input row is the unmodified photo: exactly the library's own figures.
    source, reference = _load(photos[0][0]), _load(photos[0][1])
    assert _row(results, "input")["per_image"]["psnr"][0] == pytest.approx(
        evaluate.psnr(source, reference))
    # Clipping mattered for the second enhancer, and the scores differ between rows.
    assert (ENHANCERS["CAN(L2+NIMA)"](source) > 1).any()
    assert len({round(_row(results, n)["metrics"]["nima_mean"], 6) for n in expected}) == 4

    table = report.format_table(results)
    for name in expected:
        assert name in table
    for name in ["input", *ENHANCERS]:
        summary = _row(results, name)["metrics"]
        line = next(line for line in table.splitlines() if line.startswith(name + " "))
        assert f"{summary['psnr']:.2f}" in line and f"{summary['ssim']:.4f}" in line
        assert f"{summary['nima_mean']:.3f}" in line and f"{summary['nima_std']:.3f}" in line
    reference_line = next(line for line in table.splitlines() if line.startswith("reference"))
    assert reference_line.split()[1:3] == ["n/a", "n/a"]
    assert "3 images evaluated" in table and "NIMA model: tiny" in table


def test_without_nima_the_nima_columns_are_left_out(photos, tmp_path):
    results = evaluate_can.compare(photos, {"CAN(L2)": ENHANCERS["CAN(L2)"]}, max_images=2,
                                   output_dir=str(tmp_path / "out"), save_images=1)
    assert results["num_images"] == 2 and results["nima_model"] is None
    assert list(results["metrics"]) == ["psnr", "ssim"]
    for row in results["rows"]:
        assert "nima" not in row["per_image"] and row["nima_box"] is None
        assert set(row["metrics"]) == {"psnr", "ssim"}
    table = report.format_table(results)
    assert "nima" not in table.lower() and "CAN(L2)" in table
    assert sorted(os.listdir(tmp_path / "out")) == ["results.json", "side_by_side"]
    with pytest.raises(ValueError, match="no NIMA scores"):
        evaluate_can.box_plot(results, str(tmp_path / "plot.png"))


# --------------------------------------------------------------------------- box statistics


def test_box_statistics_hand_worked():
    # n = 9: the quartiles fall on data points (positions 2, 4, 6 of 0..8).
    box = evaluate_can.box_statistics([7, 3, 100, 1, 5, 2, 8, 4, 6])
    assert (box["q1"], box["median"], box["q3"], box["iqr"]) == (3.0, 5.0, 7.0, 4.0)
    assert (box["whisker_low"], box["whisker_high"]) == (1.0, 8.0)  # fences -3 and 13
    assert box["outliers"] == [100.0]
    assert box["mean"] == pytest.approx(136 / 9) and (box["min"], box["max"]) == (1.0, 100.0)
    assert box["n"] == 9
    # n = 8: linear interpolation. Positions 1.75, 3.5, 5.25 of the sorted
    # [-20, 2, 4, 4, 5, 7, 9, 29]: q1 = 2 + 0.75 * 2, median = 4.5, q3 = 7 + 0.25 * 2.
    box = evaluate_can.box_statistics([4, 29, 2, 9, -20, 5, 4, 7])
    assert (box["q1"], box["median"], box["q3"]) == (3.5, 4.5, 7.5)
    assert (box["whisker_low"], box["whisker_high"]) == (2.0, 9.0)  # fences -2.5 and 13.5
    assert box["outliers"] == [-20.0, 29.0]
    assert box["mean"] == 5.0  # 40 / 8
    # Deviations from 5: -25 -3 -1 -1 0 2 4 24; squares sum to 1232; population std.
    assert box["std"] == pytest.approx(np.sqrt(1232 / 8))
    # A value exactly on a fence is inside: q1 = 1, q3 = 3, upper fence 3 + 1.5 * 2 = 6.
    box = evaluate_can.box_statistics([0, 1, 2, 3, 6])
    assert box["whisker_high"] == 6.0 and box["outliers"] == []
    box = evaluate_can.box_statistics([4.5])
    assert box["q1"] == box["q3"] == box["whisker_low"] == box["whisker_high"] == 4.5
    assert box["std"] == 0.0 and box["outliers"] == []
    with pytest.raises(ValueError):
        evaluate_can.box_statistics([])
    with pytest.raises(ValueError):
        evaluate_can.box_statistics([1.0, float("nan")])


# --------------------------------------------------------------------------- files


def test_output_files_box_plot_and_no_overwrite(photos, nima_model, tmp_path):
    out = tmp_path / "out"
    results = evaluate_can.compare(photos, ENHANCERS, nima_model=nima_model,
                                   output_dir=str(out), save_images=2)
    assert sorted(os.listdir(out)) == ["nima_box_plot.png", "results.json", "side_by_side"]
    assert report.read_report(out / "results.json") == results
    assert results["figures"] == {
        "nima_box_plot": str(out / "nima_box_plot.png"),
        "side_by_side": [str(out / "side_by_side" / "p0.png"),
                         str(out / "side_by_side" / "p1.png")]}

    # Side by side: input | CAN(L2) | CAN(L2+NIMA) | reference, the photos at full size.
    assert sorted(os.listdir(out / "side_by_side")) == ["p0.png", "p1.png"]
    strip = np.asarray(Image.open(out / "side_by_side" / "p1.png").convert("RGB"))
    h, w = SHAPES[1]
    gap, band = 4, strip.shape[0] - h  # the names' band above the photos
    assert strip.shape[1:] == (4 * w + 3 * gap, 3) and band > 12
    assert (strip[:band] != 255).any()  # names written
    source = load_rgb8(photos[1][0])
    panels = [source, to_uint8(np.clip(ENHANCERS["CAN(L2)"](source / np.float32(255)), 0, 1)),
              to_uint8(np.clip(ENHANCERS["CAN(L2+NIMA)"](source / np.float32(255)), 0, 1)),
              load_rgb8(photos[1][1])]
    for k, panel in enumerate(panels):
        np.testing.assert_array_equal(strip[band:, k * (w + gap):k * (w + gap) + w], panel)

    # The box plot (matplotlib): 160 + 150 px per row wide, 480 high, ink on a white page,
    # with the mean markers' green.
    with Image.open(out / "nima_box_plot.png") as image:
        assert image.format == "PNG" and image.size == (160 + 150 * 4, 480)
        pixels = np.asarray(image.convert("RGB"))
    assert (pixels != 255).any(axis=-1).mean() > 0.02
    assert (np.abs(pixels.astype(int) - (30, 140, 60)).sum(axis=-1) < 10).sum() > 4 * 20

    # Not overwritten without being told; the message names the file.
    before = (out / "results.json").read_bytes()
    with pytest.raises(FileExistsError, match=re.escape(str(out / "results.json"))):
        evaluate_can.compare(photos[:1], ENHANCERS, output_dir=str(out))
    assert (out / "results.json").read_bytes() == before
    again = evaluate_can.compare(photos[:1], ENHANCERS, output_dir=str(out), overwrite=True)
    assert report.read_report(out / "results.json")["num_images"] == again["num_images"] == 1


def test_box_plot_from_results_json_with_a_given_size(photos, nima_model, tmp_path):
    results = evaluate_can.compare(photos, {"CAN(L2)": ENHANCERS["CAN(L2)"]},
                                   nima_model=nima_model)
    report.write_report(tmp_path / "results.json", results)
    reloaded = report.read_report(tmp_path / "results.json")
    path = tmp_path / "plots" / "box.png"
    image = evaluate_can.box_plot(reloaded, str(path), width=500, height=360)
    assert image.shape == (360, 500, 3)
    with Image.open(path) as png:
        assert png.size == (500, 360)
        np.testing.assert_array_equal(np.asarray(png.convert("RGB")), image)
    assert len(np.unique(image.reshape(-1, 3), axis=0)) > 10


# --------------------------------------------------------------------------- bad pairs


def test_a_corrupt_file_and_a_mismatched_pair_are_reported_and_skipped(photos, nima_model,
                                                                      tmp_path):
    broken = tmp_path / "in" / "broken.png"
    broken.write_bytes(b"\x89PNG\r\n\x1a\n not really a png")
    odd = _save(np.zeros((20, 20, 3), np.uint8), tmp_path / "ref" / "odd.png")
    pairs = [photos[0], (str(broken), photos[1][1]), (photos[2][0], odd), photos[1]]
    results = evaluate_can.compare(pairs, ENHANCERS, nima_model=nima_model)
    assert results["photos"] == ["p0.png", "p1.png"] and results["num_images"] == 2
    assert [s["file"] for s in results["skipped"]] == [str(broken), photos[2][0]]
    assert [s["reference"] for s in results["skipped"]] == [photos[1][1], odd]
    assert "broken.png" in results["skipped"][0]["reason"]
    for row in results["rows"]:
        assert len(row["per_image"]["nima"]) == 2
    assert "(2 skipped)" in report.format_table(results)

    # Nothing evaluated: one error naming the folder and the file (issue 15).
    with pytest.raises(DataError, match="none of the 1 pairs could be evaluated") as error:
        evaluate_can.compare([(str(broken), photos[1][1])], ENHANCERS)
    assert str(tmp_path / "in") in str(error.value) and "broken.png" in str(error.value)


def test_a_failing_enhancer_skips_the_photo(photos):
    def fails_on_narrow(image):
        if image.shape[1] < 30:
            raise RuntimeError("too narrow")
        return image

    results = evaluate_can.compare(photos, {"x": fails_on_narrow})
    assert results["photos"] == ["p0.png", "p2.png"]
    assert "too narrow" in results["skipped"][0]["reason"]


def test_argument_checks(photos, tmp_path):
    with pytest.raises(ValueError, match="'reference'"):
        evaluate_can.compare(photos, {"reference": ENHANCERS["CAN(L2)"]})
    assert evaluate_can.parse_model_flags(["B=dir/b", "A = dir/a"]) == {"B": "dir/b", "A": "dir/a"}
    assert list(evaluate_can.parse_model_flags(["B=x", "A=y"])) == ["B", "A"]
    for bad in (["nodir"], ["=x"], ["A=x", "A=y"], ["input=x"]):
        with pytest.raises(ValueError):
            evaluate_can.parse_model_flags(bad)


# --------------------------------------------------------------------------- command line


def _pointwise_enhancer(gain, name):
    """A 1x1 Conv2D with kernel gain * I and no bias: out = gain * x (the identity for gain 1)."""
    inputs = keras.Input((None, None, 3))
    outputs = keras.layers.Conv2D(
        3, 1, use_bias=False, name="pointwise",
        kernel_initializer=keras.initializers.Constant(gain * np.eye(3).reshape(1, 1, 3, 3)))(inputs)
    return keras.Model(inputs, outputs, name=name)


def _lively_mobilenet_nima():
    """A random-weight MobileNet NIMA whose scores differ between photos: with Keras' initial
    weights the features vanish (about 1e-21) and every photo scores 5.5, so the conv kernels
    are scaled by 6 and the head's by 30."""
    keras.utils.set_random_seed(0)
    model = nima.build_nima("mobilenet")
    for layer in model.get_layer("mobilenet").layers:
        if isinstance(layer, (keras.layers.Conv2D, keras.layers.DepthwiseConv2D)):
            layer.set_weights([w * 6 for w in layer.get_weights()])
    head = model.get_layer("scores")
    kernel, bias = head.get_weights()
    head.set_weights([kernel * 30, bias])
    return model


def _run_cli(capsys, *args):
    """`python -m tools.evaluate_can ARGS`, in this process: (exit code, what it printed)."""
    code = evaluate_can.main(["tools.evaluate_can", *args])
    return code, capsys.readouterr().out


@pytest.mark.slow
def test_cli_on_two_folders_with_exported_models_and_a_nima_file(tmp_path, capsys, caplog):
    rng = np.random.default_rng(3)
    stems = ["p0", "p1", "p2", "p3"]
    for stem in stems:
        reference = rng.uniform(0.1, 0.9, (32, 40, 3))
        _save(to_uint8(reference * 0.7), tmp_path / "raw" / f"{stem}.png")
        _save(to_uint8(reference), tmp_path / "retouched" / f"{stem}.png")
    (tmp_path / "test.txt").write_text("p1\np3\n")
    export.export_enhancer(_pointwise_enhancer(1.0, "identity"), str(tmp_path / "identity"))
    export.export_enhancer(_pointwise_enhancer(1.3, "brighter"), str(tmp_path / "brighter"))
    nima_model = _lively_mobilenet_nima()
    nima_model.save_weights(str(tmp_path / "nima.weights.h5"))

    out = tmp_path / "out"
    args = [f"--input_dir={tmp_path / 'raw'}", f"--reference_dir={tmp_path / 'retouched'}",
            f"--test_list={tmp_path / 'test.txt'}", f"--model=identity={tmp_path / 'identity'}",
            f"--model=CAN(x1.3)={tmp_path / 'brighter'}", "--backbone=mobilenet",
            f"--nima_weights={tmp_path / 'nima.weights.h5'}", f"--output_dir={out}",
            "--save_images=1"]
    code, printed = _run_cli(capsys, *args)
    assert code == 0, printed + caplog.text[-4000:]
    with open(out / "results.json") as f:
        results = json.load(f)
    assert results["photos"] == ["p1.png", "p3.png"]
    assert [r["name"] for r in results["rows"]] == ["input", "reference", "identity", "CAN(x1.3)"]
    assert sorted(os.listdir(out)) == ["nima_box_plot.png", "results.json", "side_by_side"]
    assert os.listdir(out / "side_by_side") == ["p1.png"]

    rows = {r["name"]: r for r in results["rows"]}
    sources = [_load(tmp_path / "raw" / f"{s}.png") for s in ("p1", "p3")]
    references = [_load(tmp_path / "retouched" / f"{s}.png") for s in ("p1", "p3")]
    brighter = [np.clip(1.3 * x, 0, 1) for x in sources]
    assert results["system"] == "can" and results["num_images"] == 2
    per_image = {name: row["per_image"] for name, row in rows.items()}
    np.testing.assert_allclose(per_image["identity"]["psnr"], per_image["input"]["psnr"],
                               rtol=1e-5)
    np.testing.assert_allclose(per_image["input"]["psnr"],
                               [numpy_psnr(x, y) for x, y in zip(sources, references)], rtol=1e-5)
    np.testing.assert_allclose(per_image["CAN(x1.3)"]["psnr"],
                               [numpy_psnr(x, y) for x, y in zip(brighter, references)], rtol=1e-4)
    expected_nima = {"input": evaluate.nima_mean_scores(nima_model, sources),
                     "reference": evaluate.nima_mean_scores(nima_model, references),
                     "CAN(x1.3)": evaluate.nima_mean_scores(nima_model, brighter)}
    for name, scores in expected_nima.items():
        assert np.ptp(scores) > 0.01
        np.testing.assert_allclose(per_image[name]["nima"], scores, rtol=1e-4)
        assert rows[name]["metrics"]["nima_std"] == pytest.approx(np.std(scores), rel=1e-3)
    assert "NIMA(mobilenet)" in results["nima_model"]
    for name in rows:
        assert name in printed
    assert "nima_std" in printed and "How to read:" in printed

    # A second run may not replace results.json without --overwrite.
    before = (out / "results.json").read_bytes()
    caplog.clear()
    again, _ = _run_cli(capsys, *args)
    assert again == 1
    assert str(out / "results.json") in caplog.text and "--overwrite" in caplog.text
    assert (out / "results.json").read_bytes() == before


def test_one_input_with_several_references_keeps_them_apart(photos, tmp_path):
    """As with several FiveK experts: the names and the side-by-side files carry the folder."""
    other = _save(load_rgb8(photos[0][1]), tmp_path / "expertB" / "p0.png")
    out = tmp_path / "out"
    results = evaluate_can.compare([photos[0], (photos[0][0], other)], {}, output_dir=str(out),
                                   save_images=2)
    assert results["photos"] == ["p0.png (ref)", "p0.png (expertB)"]
    assert sorted(os.listdir(out / "side_by_side")) == ["p0_expertB.png", "p0_ref.png"]
    assert [r["name"] for r in results["rows"]] == ["input", "reference"]
