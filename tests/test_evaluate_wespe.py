"""tools.evaluate_wespe: WESPE's two sections in one common report, figures recomputed here.

G is a fixed affine Keras layer (0.8 x + 0.15), so its outputs are known without training.
"""
import os
import sys

import keras
import numpy as np
import pytest

from datasets.images import load_rgb8
from datasets.pipeline import DataError
from tools import evaluate, evaluate_wespe, report

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from test_evaluate_can import _save, numpy_nima, tiny_nima  # noqa: E402


def _generator():
    inputs = keras.Input((None, None, 3))
    return keras.Model(inputs, keras.layers.Rescaling(0.8, 0.15)(inputs))


def _g(image):
    return np.clip(image * np.float32(0.8) + np.float32(0.15), 0, 1)


@pytest.fixture
def data(tmp_path):
    rng = np.random.default_rng(0)
    pairs = []
    for k in range(3):
        reference = rng.integers(40, 220, (24, 28, 3), dtype=np.uint8)
        source = (reference * 0.7).astype(np.uint8)
        pairs.append((_save(source, tmp_path / "src" / f"{k}.png"),
                      _save(reference, tmp_path / "ref" / f"{k}.png")))
    broken = tmp_path / "src" / "broken.png"
    broken.write_bytes(b"not a png")
    pairs.append((str(broken), pairs[0][1]))
    photos = [_save(rng.integers(0, 255, (20 + 4 * k, 30, 3), dtype=np.uint8),
                    tmp_path / "photos" / f"photo{k}.png") for k in range(2)]
    return pairs, photos


def test_one_report_with_both_sections(data, tmp_path):
    pairs, photos = data
    out = tmp_path / "eval"
    results = evaluate_wespe.evaluate_wespe(_generator(), pairs, photos, nima_model=tiny_nima(),
                                            output_dir=str(out), save_images=1,
                                            extras={"vgg_weights": "random"})
    assert results["system"] == "wespe" and results["vgg_weights"] == "random"
    assert results["num_images"] == 3 + 2
    assert results["num_images_per_metric"] == {"psnr": 3, "ssim": 3, "entropy": 2,
                                                "png_bpp": 2, "nima_mean": 2}
    assert [s["file"] for s in results["skipped"]] == [pairs[3][0]]
    rows = {row["name"]: row["metrics"] for row in results["rows"]}
    assert list(rows) == ["input", "WESPE G(x)"]

    sources = [load_rgb8(a) / np.float32(255) for a, _ in pairs[:3]]
    references = [load_rgb8(b) / np.float32(255) for _, b in pairs[:3]]
    images = [load_rgb8(p) / np.float32(255) for p in photos]
    for name, transform in (("input", lambda x: x), ("WESPE G(x)", _g)):
        outputs = [transform(x) for x in sources]
        assert rows[name]["psnr"] == pytest.approx(
            np.mean([evaluate.psnr(o, r) for o, r in zip(outputs, references)]), rel=1e-5)
        assert rows[name]["ssim"] == pytest.approx(
            np.mean([evaluate.ssim(o, r) for o, r in zip(outputs, references)]), rel=1e-4)
        shown = [transform(x) for x in images]
        assert rows[name]["entropy"] == pytest.approx(
            np.mean([evaluate.entropy(x) for x in shown]), abs=1e-6)
        assert rows[name]["png_bpp"] == pytest.approx(
            np.mean([evaluate.png_bits_per_pixel(x) for x in shown]), abs=1e-6)
        assert rows[name]["nima_mean"] == pytest.approx(
            np.mean([numpy_nima(x) for x in shown]), rel=1e-4)
    assert rows["WESPE G(x)"]["psnr"] != pytest.approx(rows["input"]["psnr"])

    # Files: the first photo enhanced, its side by side (input | G(x), labelled).
    assert results["figures"]["enhanced"] == [str(out / "enhanced" / "photo0.png")]
    np.testing.assert_array_equal(load_rgb8(out / "enhanced" / "photo0.png"),
                                  evaluate.to_uint8(_g(images[0])))
    path = results["figures"]["side_by_side"]
    assert path == str(out / "photo0_side_by_side.png")
    strip = load_rgb8(path)
    assert strip.shape[1] == 2 * 30 + 4 and strip.shape[0] > 20

    table = report.format_table(results)
    assert "psnr: PSNR in dB against the reference; higher is better; on the aligned test " \
           "pairs [3 images]" in table
    assert "on the evaluation photos (no reference) [2 images]" in table


def test_pairs_only_side_by_side_has_the_reference(data, tmp_path):
    pairs, _ = data
    results = evaluate_wespe.evaluate_wespe(_generator(), pairs[:2], [],
                                            output_dir=str(tmp_path / "eval"))
    assert list(results["metrics"]) == ["psnr", "ssim"] and results["num_images"] == 2
    assert results["figures"]["enhanced"] == []
    strip = load_rgb8(results["figures"]["side_by_side"])
    assert os.path.basename(results["figures"]["side_by_side"]) == "pair_0_side_by_side.png"
    assert strip.shape[1] == 3 * 28 + 2 * 4


def test_mismatched_pair_is_an_error(data, tmp_path):
    pairs, photos = data
    with pytest.raises(ValueError, match="sizes differ"):
        evaluate_wespe.evaluate_wespe(_generator(), [(pairs[0][0], photos[0])], [],
                                      output_dir=str(tmp_path))


def test_a_set_of_which_nothing_decodes_is_one_error_naming_the_folder(data, tmp_path):
    # Issue 15: a report of nulls (or a deep error) instead of saying no image could be read.
    pairs, photos = data
    broken = pairs[3]
    with pytest.raises(DataError, match="none of the 1 aligned test pairs could be decoded") as e:
        evaluate_wespe.evaluate_wespe(_generator(), [broken], photos, output_dir=str(tmp_path))
    assert "broken.png" in str(e.value) and str(tmp_path / "src") in str(e.value)
    with pytest.raises(DataError, match="none of the 2 evaluation photos could be decoded") as e:
        evaluate_wespe.evaluate_wespe(_generator(), pairs, [broken[0], broken[0] + ".gone"],
                                      output_dir=str(tmp_path))
    assert "broken.png" in str(e.value) and "broken.png.gone" in str(e.value)
