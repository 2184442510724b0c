"""CAN(L2) against CAN(L2 + NIMA) on a test set, as in NIMA section 4.2 and its Figure 6.

    python -m tools.evaluate_can --fivek_dir=fivek --experts=C --test_list=FiveK_test.txt \\
        --model="CAN(L2)=exports/can_l2" --model="CAN(L2+NIMA)=exports/can_l2_nima" \\
        --nima_weights=nima_inception_v2.weights.h5 --output_dir=runs/can_eval --save_images=8
    python -m tools.evaluate_can --input_dir=raw --reference_dir=retouched \\
        --model="CAN(L2)=exports/can_l2" --nima_weights=demo --max_images=20

Photos: `--fivek_dir` with `--experts` (comma list, default C) or `--input_dir` with
`--reference_dir` (`datasets.paired.collect_pairs`); `--train_list` / `--test_list` split them
(`datasets.paired.split_pairs`) and the test pairs are evaluated, the first `--max_images` of
them if given. Each pair is read at full size (`datasets.paired.load_test_pair`; the paper tests
"on the original size of images"); unreadable or mismatched pairs are reported by file name and
skipped, the others go on.

Enhancers: `--model NAME=DIR`, repeatable, each an exported enhancer (`tools.export`, loaded by
`tools.enhance.load_saved_model_enhancer`), in the order given: the rows of the table.

What is measured, per photo, with the rows "input", "reference" and then the enhancers:
- PSNR and SSIM (`tools.evaluate.psnr`, `tools.evaluate.ssim`) of the input and of every
  enhancer's output against the reference (the reference row has none). Outputs are clipped to
  [0, 1] first. PSNR of identical images is +inf: strict JSON has no infinity, so it is
  written as null and listed under "non_finite" (`tools.report`).
- With a NIMA model, the NIMA mean score (`tools.evaluate.nima_mean_scores`, each image at its
  own size) of the input, the reference and every output; over the test set its mean and
  population standard deviation (np.std), and the box-plot statistics of Figure 6
  (`box_statistics`). `--nima_weights FILE` with `--backbone` (default inception_v2, the
  paper's NIMA), or `--nima_weights=demo` for `nima.demo_model()` (a stand-in not trained on
  AVA, said in the log and the results). Without `--nima_weights` the NIMA columns are left out.

The results are a report in the common layout of `tools.report` (system "can"; rows input,
reference, then the enhancers; metrics psnr, ssim and, with NIMA, nima_mean and nima_std), printed
by `tools.report.format_table`.

`--output_dir` (created): `results.json` (`compare`'s report), `nima_box_plot.png` (`box_plot`,
matplotlib, with NIMA scores only) and, for the first `--save_images` photos evaluated,
`side_by_side/<stem>.png`: input | each enhancer | reference, at full size, each under its row
name. An existing results.json is never replaced without `--overwrite` (`overwrite=True`); the
check comes before any photo is read. The table is printed; the exit status is 1 if any pair was
skipped.

Library use (no flags involved):

    from tools import enhance, evaluate_can
    enhancers = {"CAN(L2)": enhance.load_saved_model_enhancer("exports/can_l2"),
                 "CAN(L2+NIMA)": enhance.load_saved_model_enhancer("exports/can_l2_nima")}
    results = evaluate_can.compare(pairs, enhancers, nima_model=nima_model, output_dir="out")
    print(report.format_table(results))  # from tools import report
"""
import os
import time

import numpy as np
from absl import app, flags, logging

import nima
from datasets import paired
from datasets.images import ImageDecodeError
from datasets.pipeline import none_usable
from tools import cli, enhance, figures, report
from tools import evaluate as metrics

__all__ = [
    "BOX_PLOT_FILE",
    "RESULTS_FILE",
    "SIDE_BY_SIDE_DIR",
    "box_plot",
    "box_statistics",
    "compare",
    "parse_model_flags",
]

RESULTS_FILE = "results.json"
BOX_PLOT_FILE = "nima_box_plot.png"
SIDE_BY_SIDE_DIR = "side_by_side"
INPUT, REFERENCE = "input", "reference"
WHISKER_IQR = 1.5  # Tukey's whiskers: the furthest points within 1.5 IQR of the box


# --------------------------------------------------------------------------- statistics


def box_statistics(values):
    """Box-plot statistics of `values` (a non-empty sequence of finite numbers).

    Quartiles by `np.percentile` with linear interpolation (NumPy's default); the whiskers end at
    the furthest values within 1.5 IQR of the box (Tukey; matplotlib's `boxplot` default); the
    values beyond them are outliers.

    Returns a dict of floats: "n" (int), "mean", "std" (population), "min", "q1", "median",
    "q3", "max", "iqr", "whisker_low", "whisker_high", and "outliers" (a sorted list).
    """
    values = np.asarray(values, np.float64).ravel()
    if values.size == 0:
        raise ValueError("box statistics of no values")
    if not np.all(np.isfinite(values)):
        raise ValueError(f"box statistics need finite values, got {values[~np.isfinite(values)]}")
    q1, median, q3 = np.percentile(values, [25, 50, 75])
    iqr = q3 - q1
    low_fence, high_fence = q1 - WHISKER_IQR * iqr, q3 + WHISKER_IQR * iqr
    # Never empty: the values next to the quartiles lie within the fences.
    inside = values[(values >= low_fence) & (values <= high_fence)]
    outliers = np.sort(values[(values < low_fence) | (values > high_fence)])
    return {
        "n": int(values.size),
        "mean": float(values.mean()),
        "std": float(values.std()),
        "min": float(values.min()),
        "q1": float(q1),
        "median": float(median),
        "q3": float(q3),
        "max": float(values.max()),
        "iqr": float(iqr),
        "whisker_low": float(inside.min()),
        "whisker_high": float(inside.max()),
        "outliers": [float(v) for v in outliers],
    }


def _row(name, psnrs, ssims, nimas):
    """A report row: the means (and NIMA std) as metrics, the per-photo figures under
    "per_image" and the NIMA box statistics under "nima_box" (None without NIMA scores)."""
    metrics = {"psnr": None if psnrs is None else float(np.mean(psnrs)),
               "ssim": None if ssims is None else float(np.mean(ssims))}
    per_image = {"psnr": psnrs, "ssim": ssims}
    box = None
    if nimas is not None:
        box = box_statistics(nimas)
        metrics.update(nima_mean=box["mean"], nima_std=box["std"])
        per_image["nima"] = nimas
    return {"name": name, "metrics": metrics, "per_image": per_image, "nima_box": box}


# --------------------------------------------------------------------------- comparison


def _load_pair(input_path, reference_path):

    return paired.load_test_pair(input_path, reference_path)


def _photo_names(pairs):
    """[(name, side-by-side file name)]: the input file name and `<stem>.png`; where an input
    recurs (one pair per expert), both carry the reference's folder: `a1.tif (expertC)`,
    `a1_expertC.png`."""
    names = [os.path.basename(a) for a, _ in pairs]
    counts = {name: names.count(name) for name in names}
    result = []
    for name, (_, reference) in zip(names, pairs):
        stem = os.path.splitext(name)[0]
        if counts[name] > 1:
            folder = os.path.basename(os.path.dirname(os.path.abspath(reference)))
            name, stem = f"{name} ({folder})", f"{stem}_{folder}"
        result.append((name, stem + ".png"))
    return result


def _enhance(name, enhancer, image):
    output = np.asarray(enhancer(image.copy()), np.float32)
    if output.shape != image.shape:
        raise ValueError(f"{name} returned shape {output.shape} for an input of {image.shape}")
    if not np.all(np.isfinite(output)):
        raise ValueError(f"{name} returned non-finite values")
    return np.clip(output, 0.0, 1.0)


def compare(pairs, enhancers, *, nima_model=None, output_dir=None, save_images=0, max_images=None,
            overwrite=False, nima_description=None, missing=()):
    """Scores the inputs, the references and every enhancer's outputs (module docstring).

    Args:
      pairs: [(input_path, reference_path)].
      enhancers: an ordered mapping name -> callable(float32 (h, w, 3) in [0, 1]) -> float32
        (h, w, 3); its outputs are clipped to [0, 1]. Names may not be "input" or "reference".
      nima_model: None, or a NIMA Keras model (images in [0, 1] of any size -> (batch, 10)).
      output_dir: None, or where results.json, the box plot and the side-by-side images go.
      save_images: how many photos (the first evaluated) to write side by side.
      max_images: None, or evaluate only the first this many pairs.
      overwrite: whether an existing `<output_dir>/results.json` may be replaced.
      nima_description: which NIMA it is, recorded in the results.
      missing: photos that found no partner, recorded as given.

    Returns:
      A report in the layout of `tools.report` (strict JSON), system "can":
        "num_images": the number of photos evaluated;
        "metrics": psnr, ssim (means over the photos, against the reference) and, with a NIMA
          model, nima_mean and nima_std (np.std, population);
        "rows": in the order input, reference, then `enhancers`, each with "name", "metrics"
          (None where a row has no figure: the reference's PSNR and SSIM), "per_image"
          {"psnr", "ssim" (per photo; None for the reference), "nima" (without a model: absent)}
          and "nima_box" (`box_statistics`, None without a model);
        "skipped": [{"file" (the input), "reference", "reason"}] for the pairs not evaluated;
        extras: "photos" (names), "pairs" ([input, reference] paths), "unpaired" (`missing`),
        "nima_model" (`nima_description`, None without a model), "figures" {"nima_box_plot":
        path, "side_by_side": [paths]} (with `output_dir`).

    Raises:
      FileExistsError: results.json exists in `output_dir` and `overwrite` is false.
      ValueError: bad arguments.
      DataError: none of the pairs could be evaluated (`datasets.pipeline.none_usable`: the
        folder and the first reasons given).
    """
    enhancers = dict(enhancers)
    for name in enhancers:
        if name in (INPUT, REFERENCE):
            raise ValueError(f"an enhancer may not be named {name!r}: that row is built in")
    if max_images is not None and max_images < 1:
        raise ValueError(f"max_images must be at least 1, got {max_images}")
    if save_images < 0:
        raise ValueError(f"save_images must be >= 0, got {save_images}")
    pairs = [(os.fspath(a), os.fspath(b)) for a, b in pairs]
    if max_images is not None:
        pairs = pairs[:max_images]
    if not pairs:
        raise ValueError("no pairs to evaluate")
    results_path = None
    if output_dir is not None:
        output_dir = os.fspath(output_dir)
        results_path = os.path.join(output_dir, RESULTS_FILE)
        if os.path.exists(results_path) and not overwrite:
            raise FileExistsError(f"{results_path} exists; pass overwrite=True (--overwrite) to "
                                  "replace it, or choose another output directory")
        os.makedirs(output_dir, exist_ok=True)

    row_names = [INPUT, REFERENCE, *enhancers]
    scores = {name: {"psnr": [], "ssim": [], "nima": []} for name in row_names}
    names, evaluated, skipped, side_by_side_files = [], [], [], []
    for index, ((input_path, reference_path), (name, image_file)) in enumerate(
            zip(pairs, _photo_names(pairs)), 1):
        start = time.perf_counter()

        def skip(reason):
            skipped.append({"file": input_path, "reference": reference_path, "reason": reason})
            logging.error("Skipping %s / %s: %s", os.path.basename(input_path),
                          os.path.basename(reference_path), reason)

        try:
            source, reference = _load_pair(input_path, reference_path)
        except ImageDecodeError as error:
            skip(f"cannot read {os.path.basename(error.path)}: {error.reason}")
            continue
        except ValueError as error:  # mismatched pair (sizes)
            skip(str(error))
            continue
        source = np.asarray(source, np.float32)
        reference = np.asarray(reference, np.float32)
        images = {INPUT: source, REFERENCE: reference}
        try:
            for row, enhancer in enhancers.items():
                images[row] = _enhance(row, enhancer, source)
        except Exception as error:  # one photo's failure must not stop the evaluation
            skip(f"enhancement failed: {type(error).__name__}: {error}")
            continue
        try:
            figures = {row: (metrics.psnr(images[row], reference),
                             metrics.ssim(images[row], reference))
                       for row in row_names if row != REFERENCE}
        except ValueError as error:  # e.g. smaller than SSIM's 11 x 11 window
            skip(str(error))
            continue
        nimas = None
        if nima_model is not None:
            nimas = dict(zip(row_names, metrics.nima_mean_scores(
                nima_model, [images[row] for row in row_names]).tolist()))
        for row in row_names:
            if row != REFERENCE:
                scores[row]["psnr"].append(figures[row][0])
                scores[row]["ssim"].append(figures[row][1])
            if nimas is not None:
                scores[row]["nima"].append(nimas[row])
        names.append(name)
        evaluated.append([input_path, reference_path])
        if output_dir is not None and len(names) <= save_images:
            side_by_side_files.append(
                _write_side_by_side(images, row_names, output_dir, image_file))
        parts = []
        for row in row_names:
            part = [row] + ([f"PSNR {figures[row][0]:.2f}", f"SSIM {figures[row][1]:.3f}"]
                            if row in figures else [])
            parts.append(" ".join(part + ([f"NIMA {nimas[row]:.3f}"] if nimas else [])))
        logging.info("[%d/%d] %s (%dx%d): %s; %.1f s", index, len(pairs), name, source.shape[1],
                     source.shape[0], ", ".join(parts), time.perf_counter() - start)

    if not names:
        raise none_usable(len(pairs), "pairs", [(s["file"], s["reason"]) for s in skipped],
                          verb="evaluated")
    rows = [_row(row, None if row == REFERENCE else scores[row]["psnr"],
                 None if row == REFERENCE else scores[row]["ssim"],
                 None if nima_model is None else scores[row]["nima"]) for row in row_names]
    description = (nima_description or "given model") if nima_model is not None else None
    figure_files = {"side_by_side": side_by_side_files}
    if output_dir is not None and nima_model is not None:
        figure_files["nima_box_plot"] = os.path.join(output_dir, BOX_PLOT_FILE)
        box_plot({"rows": rows, "num_images": len(names)}, figure_files["nima_box_plot"])
    elif output_dir is not None:
        logging.info("No NIMA model: no box plot.")
    results = report.make_report(
        "can", rows, ["psnr", "ssim"] + (["nima_mean", "nima_std"] if nima_model else []),
        num_images=len(names), skipped=skipped,
        notes=[f"NIMA model: {description}"] if description else (),
        photos=names, pairs=evaluated, nima_model=description, unpaired=list(missing),
        figures=figure_files if output_dir is not None else {})
    if output_dir is not None:
        results = report.write_report(results_path, results)
        logging.info("Wrote %s to %s", RESULTS_FILE, output_dir)
    return results


# --------------------------------------------------------------------------- figures


def box_plot(results, path, *, width=None, height=480):
    """Figure 6 (`tools.figures.box_plot`) of a `compare` report (or one read back with
    `tools.report.read_report`): one box per row with NIMA scores, the per-photo NIMA scores of
    its "per_image". Writes the PNG `path`; returns the uint8 (height, width, 3) image."""
    scores = {row["name"]: row["per_image"]["nima"] for row in results["rows"]
              if (row.get("per_image") or {}).get("nima")}
    if not scores:
        raise ValueError("no NIMA scores to plot (the results were made without a NIMA model)")
    return figures.box_plot(scores, path, title=f"NIMA scores ({results['num_images']} test "
                            "photos)", width=width, height=height)


def _write_side_by_side(images, row_names, output_dir, image_file):
    """input | each enhancer | reference at full size, each under its row name
    (`tools.figures.side_by_side`); returns the file's path."""
    order = [INPUT] + [r for r in row_names if r not in (INPUT, REFERENCE)] + [REFERENCE]
    path = os.path.join(output_dir, SIDE_BY_SIDE_DIR, image_file)
    figures.side_by_side({row: images[row] for row in order}, path)
    return path


# --------------------------------------------------------------------------- command line


def parse_model_flags(values):
    """["NAME=DIR", ...] -> {NAME: DIR} in the order given; ValueError on a bad or repeated one."""
    models = {}
    for value in values or ():
        name, sep, path = value.partition("=")
        name, path = name.strip(), path.strip()
        if not sep or not name or not path:
            raise ValueError(f"--model takes NAME=SAVED_MODEL_DIR, got {value!r}")
        if name in models:
            raise ValueError(f"--model {name!r} is given twice")
        if name in (INPUT, REFERENCE):
            raise ValueError(f"--model may not be named {name!r}: that row is built in")
        models[name] = path
    return models


def _load_nima(weights, backbone):
    """(model, description) for --nima_weights: None -> (None, None); "demo"; or a file."""
    if weights is None:
        logging.warning("No --nima_weights: the NIMA columns and the box plot are left out.")
        return None, None
    return nima.load_nima_model(weights, backbone)


def run(FLAGS, args):
    """The command line's work: FLAGS are the parsed flags, args the positional arguments."""
    if args:
        raise app.UsageError(f"Unexpected arguments: {' '.join(args)}")
    try:
        if FLAGS.output_dir is not None and not FLAGS.overwrite:
            existing = os.path.join(FLAGS.output_dir, RESULTS_FILE)
            if os.path.exists(existing):  # before loading any model (compare checks it too)
                raise FileExistsError(f"{existing} exists; pass --overwrite to replace it, or "
                                      "choose another --output_dir")
        models = parse_model_flags(FLAGS.model)
        experts = [e.strip() for e in FLAGS.experts.split(",") if e.strip()]
        if FLAGS.fivek_dir is not None:
            pairs, missing = paired.collect_pairs(fivek_dir=FLAGS.fivek_dir, experts=experts)
        else:
            pairs, missing = paired.collect_pairs(input_dir=FLAGS.input_dir,
                                                  reference_dir=FLAGS.reference_dir)
        if missing:
            logging.warning("%d photos have no partner and are left out.", len(missing))
        _, test = paired.split_pairs(pairs, train_list=FLAGS.train_list,
                                     test_list=FLAGS.test_list)
        logging.info("%d pairs, %d of them in the test set.", len(pairs), len(test))
        if not models:
            logging.warning("No --model given: only the inputs and references are scored.")
        nima_model, description = _load_nima(FLAGS.nima_weights, FLAGS.backbone)
        enhancers = {name: enhance.load_saved_model_enhancer(path)
                     for name, path in models.items()}
        results = compare(test, enhancers, nima_model=nima_model, output_dir=FLAGS.output_dir,
                          save_images=FLAGS.save_images, max_images=FLAGS.max_images,
                          overwrite=FLAGS.overwrite, nima_description=description,
                          missing=missing)
    except (FileNotFoundError, FileExistsError, ValueError) as error:
        logging.error("%s", error)
        return 1
    print(report.format_table(results, list_skipped=True))
    return 1 if results["skipped"] else 0


def define_flags(flag_values):
    """Defines this tool's flags in `flag_values` (`tools.cli`)."""
    flags.DEFINE_string("fivek_dir", None, "FiveK folder: input/ and the experts' folders.",
                        flag_values=flag_values)
    flags.DEFINE_string("experts", "C", "--fivek_dir: the reference experts, a comma list.",
                        flag_values=flag_values)
    flags.DEFINE_string("input_dir", None, "Input photos (instead of --fivek_dir).",
                        flag_values=flag_values)
    flags.DEFINE_string("reference_dir", None, "Their references, paired by file stem.",
                        flag_values=flag_values)
    flags.DEFINE_string("train_list", None, "Optional split file of the training photos.",
                        flag_values=flag_values)
    flags.DEFINE_string("test_list", None, "Optional split file of the test photos.",
                        flag_values=flag_values)
    flags.DEFINE_multi_string("model", [], "NAME=SAVED_MODEL_DIR of an exported enhancer, "
                              "repeatable; the rows of the table, in this order.",
                              flag_values=flag_values)
    flags.DEFINE_string("nima_weights", None, "Whole-NIMA weights file, or 'demo' for the demo "
                        "NIMA; without it the NIMA columns are left out.", flag_values=flag_values)
    flags.DEFINE_enum("backbone", "inception_v2", list(nima.BACKBONES),
                      "The backbone of --nima_weights (the paper: inception_v2).",
                      flag_values=flag_values)
    flags.DEFINE_integer("max_images", None, "Evaluate the first N test pairs only.",
                         lower_bound=1, flag_values=flag_values)
    flags.DEFINE_integer("save_images", 0, "Write the first N photos side by side "
                         "(input | enhancers | reference) to --output_dir.", lower_bound=0,
                         flag_values=flag_values)
    flags.DEFINE_string("output_dir", None, f"Optional: {RESULTS_FILE}, {BOX_PLOT_FILE} and "
                        f"{SIDE_BY_SIDE_DIR}/ go here (created).", flag_values=flag_values)
    cli.require_directory("output_dir", flag_values)
    flags.DEFINE_boolean("overwrite", False, f"Replace an existing {RESULTS_FILE}.",
                         flag_values=flag_values)
    flags.mark_flags_as_mutual_exclusive(["fivek_dir", "input_dir"], required=True,
                                         flag_values=flag_values)


def main(argv=None):
    return cli.main(define_flags, run, argv)


if __name__ == "__main__":
    cli.run_main(define_flags, run)
