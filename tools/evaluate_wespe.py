"""WESPE's evaluation (Ignatov et al., "WESPE", sections 4.1-4.2) in the common report layout.

    from tools import evaluate_wespe, report
    results = evaluate_wespe.evaluate_wespe(generator, test_pairs, eval_images,
                                            nima_model=nima_model, output_dir="runs/wespe/eval")
    report.write_report("runs/wespe/eval.json", results)
    print(report.format_table(results))

WESPE is judged on two sets of images, with different counts:
- full-reference, on aligned test pairs (DPED's phone/DSLR patches): PSNR and SSIM against the
  reference (`tools.evaluate.psnr`, `ssim`) of the input and of G(x);
- no-reference, on separate photos without a reference (DPED's full-size test photos, or any
  folder): entropy, PNG bits per pixel and, with a NIMA model, the NIMA mean score
  (`tools.evaluate.no_reference_figures`), of the input and of G(x).
Both go into ONE report (system "wespe", rows "input" and "WESPE G(x)"): the metrics psnr and
ssim are the pairs', entropy, png_bpp and nima_mean the photos'; "num_images_per_metric" gives
each metric's own count (the pairs' or the photos'), "num_images" the two together, and the
reading guide of each metric names its set. A set that is empty leaves its metrics out.

Files under `output_dir`: the first `save_images` enhanced photos as `enhanced/<stem>.png`, and
one side-by-side PNG (`tools.figures.side_by_side`), `<stem>_side_by_side.png`: input | G(x) of
the first photo, or, without photos, input | G(x) | reference of the first pair
(`pair_<stem>_side_by_side.png`). The report lists them under "figures". Unreadable files are
skipped and listed with the reason; a pair whose two images differ in size is an error, and so
is a set of which no image can be read (`datasets.pipeline.DataError`).
"""
import os

import numpy as np
import tensorflow as tf
from PIL import Image

from datasets.images import ImageDecodeError, load_rgb8, to_uint8
from datasets.pipeline import none_usable
from tools import evaluate as metrics
from tools import figures, report

__all__ = ["ENHANCED", "INPUT", "evaluate_wespe"]

INPUT, ENHANCED = "input", "WESPE G(x)"
FULL_REFERENCE = ("psnr", "ssim")
NO_REFERENCE = ("entropy", "png_bpp", "nima_mean")
_ON_PAIRS = "; on the aligned test pairs"
_ON_PHOTOS = "; on the evaluation photos (no reference)"


def _load(path):
    return load_rgb8(path).astype(np.float32) / 255.0


def _save_png(path, image):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    Image.fromarray(to_uint8(image)).save(path)


def evaluate_wespe(generator, test_pairs, eval_images, *, nima_model=None, output_dir,
                   save_images=4, extras=None):
    """PSNR/SSIM on `test_pairs`, entropy, PNG bpp and NIMA on `eval_images` (module docstring).

    Args:
      generator: G, a Keras model: float32 (1, h, w, 3) in [0, 1] -> same shape (clipped here).
      test_pairs: [(source_path, reference_path)], aligned images of equal size; may be empty.
      eval_images: [path] of photos for the no-reference figures; may be empty.
      nima_model: None, or a NIMA Keras model for the nima_mean metric.
      output_dir: where `enhanced/` and the side-by-side PNG go.
      save_images: how many of the first evaluation photos to write enhanced.
      extras: more entries for the report (e.g. {"vgg_weights": "random"}).

    Returns:
      The report (`tools.report` layout; module docstring), not written: the caller writes it
      with `tools.report.write_report`.

    Raises:
      ValueError: a test pair's images differ in size.
      DataError: `test_pairs` or `eval_images` is not empty but none of its images can be
        read (`datasets.pipeline.none_usable`: it names the folders and some files).
    """
    enhance = tf.function(lambda images: tf.clip_by_value(generator(images, training=False), 0, 1),
                          input_signature=[tf.TensorSpec([1, None, None, 3], tf.float32)])
    output_dir = os.fspath(output_dir)
    skipped, guides, counts = [], {}, {}
    values = {INPUT: {}, ENHANCED: {}}
    side_by_side = None
    saved = []

    def skip(error):
        skipped.append({"file": os.fspath(error.path), "reason": error.reason})

    def check_any(what, count, total, failures):
        if not count:
            raise none_usable(total, what, [(s["file"], s["reason"]) for s in failures])

    if test_pairs:
        figures_per_pair = {INPUT: {"psnr": [], "ssim": []}, ENHANCED: {"psnr": [], "ssim": []}}
        for source_path, reference_path in test_pairs:
            try:
                source, reference = _load(source_path), _load(reference_path)
            except ImageDecodeError as error:
                skip(error)
                continue
            if source.shape != reference.shape:
                raise ValueError(f"Test pair sizes differ: {source_path} {source.shape[:2]} vs "
                                 f"{reference_path} {reference.shape[:2]}")
            enhanced = enhance(source[None]).numpy()[0]
            for name, image in ((INPUT, source), (ENHANCED, enhanced)):
                figures_per_pair[name]["psnr"].append(metrics.psnr(image, reference))
                figures_per_pair[name]["ssim"].append(metrics.ssim(image, reference))
            if side_by_side is None:
                stem = os.path.splitext(os.path.basename(source_path))[0]
                side_by_side = ("pair_" + stem, {INPUT: source, ENHANCED: enhanced,
                                                 "reference": reference})
        count = len(figures_per_pair[INPUT]["psnr"])
        check_any("aligned test pairs", count, len(test_pairs), skipped)
        for metric in FULL_REFERENCE:
            guides[metric] = report.METRIC_GUIDES[metric] + _ON_PAIRS
            counts[metric] = count
            for name in values:
                values[name][metric] = float(np.mean(figures_per_pair[name][metric]))

    if eval_images:
        photos = {INPUT: [], ENHANCED: []}
        pair_failures = len(skipped)
        for index, path in enumerate(eval_images):
            try:
                source = _load(path)
            except ImageDecodeError as error:
                skip(error)
                continue
            enhanced = enhance(source[None]).numpy()[0]
            photos[INPUT].append(source)
            photos[ENHANCED].append(enhanced)
            stem = os.path.splitext(os.path.basename(path))[0]
            if index < save_images:
                saved.append(os.path.join(output_dir, "enhanced", stem + ".png"))
                _save_png(saved[-1], enhanced)
            if index == 0:
                side_by_side = (stem, {INPUT: source, ENHANCED: enhanced})
        count = len(photos[INPUT])
        check_any("evaluation photos", count, len(eval_images), skipped[pair_failures:])
        names = NO_REFERENCE if nima_model is not None else NO_REFERENCE[:2]
        for metric in names:
            guides[metric] = report.METRIC_GUIDES[metric] + _ON_PHOTOS
            counts[metric] = count
        for name, images in photos.items():
            values[name].update(metrics.no_reference_figures(images, nima_model=nima_model))

    files = {"enhanced": saved}
    if side_by_side is not None:
        stem, images = side_by_side
        files["side_by_side"] = os.path.join(output_dir, stem + "_side_by_side.png")
        figures.side_by_side(images, files["side_by_side"])
    return report.make_report(
        "wespe", [{"name": name, "metrics": figures_of} for name, figures_of in values.items()],
        guides, num_images=counts.get("psnr", 0) + counts.get("entropy", 0),
        num_images_per_metric=counts, skipped=skipped, figures=files, **(extras or {}))
