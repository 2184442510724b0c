"""PIEA on MIT-Adobe FiveK, as in the paper's Table 1: `python -m tools.evaluate_piea`.

    python -m tools.evaluate_piea --fivek_dir=fivek --expert=C --split_file=FiveK_test.txt \\
        --nima_weights=nima_inception_v2.weights.h5 --output_dir=piea_fivek
    python -m tools.evaluate_piea --input_dir=raw --reference_dir=retouched \\
        --nima_weights=nima_mobilenet.weights.h5 --backbone=mobilenet --limit=50

Photos: `--fivek_dir` with `--expert` (default C, the paper's) reads FiveK's layout
(`datasets.fivek`: `<fivek_dir>/input/` and the expert's folder, paired by file stem);
`--input_dir` with `--reference_dir` pairs any two folders the same way. `--split_file` keeps
the photos it lists (FiveK ids, as EXPOSURE's data/folds/FiveK_test.txt, or stems), `--limit`
the first N pairs (natural order of the input names). Photos with no partner are listed as
warnings and left out.

What is done (section 4.1): every input photo is enhanced by PIEA (`enhancers.piea`) on its own
at its own size, M = `--iterations` (20) plain gradient steps of size `--learning_rate` (1e-3),
guided by the NIMA of `--nima_weights` (a whole-NIMA weights file, `model.save_weights`) with
`--backbone` (default inception_v2, the paper's); without `--nima_weights` the demo NIMA
(`nima.demo_model()`, not trained on AVA; the output says so). `--proxy_size` scores a
downscaled copy instead (`enhancers.piea`; off by default, as the paper). `--piea_select` and
`--initial_exposure` as in `tools.enhance`: by default (ours) each photo's output is the
highest-scoring of the input and the iterates, from the paper's +1 EV start; the paper's
Table 1 setting is `--piea_select=final` (the last iterate) with `--initial_exposure=1.0`.

What is reported, Table 1's figures in the common report layout (`tools.report`: rows input,
reference, PIEA; printed by `tools.report.format_table`):
- Histogram intersections (`tools.evaluate.histogram_intersections`, EXPOSURE's protocol: 16
  random 64 x 64 patches of 80 x 80 area-downscaled square crops per photo, 32 bins on [0, 1])
  of luminance, contrast and saturation, as fractions in [0, 1] (Table 1 prints percent), for
  the rows "input" (the unprocessed inputs against the references) and "PIEA" (the enhanced
  photos against the references); the reference row has none.
  Each of the three sets (inputs, outputs, references) draws its crops from its own
  `np.random.default_rng(--seed)`, photo after photo, so an input and its enhanced version
  (same size) are cropped at the same places.
- The mean NIMA score (of the same model) of the unmodified inputs (not PIEA's iteration 0,
  which already has the +1 EV exposure initialisation), of the PIEA outputs and of the
  references, each photo scored at its own size.
- The PIEA outputs are measured as 8-bit images (`datasets.images.to_uint8`), i.e. exactly as the
  PNG files written to `--output_dir`, so the figures can be recomputed from the files.

Photos that cannot be read (`datasets.images.load_rgb8`: grayscale, palette, RGBA and 16-bit
files are fine), that are smaller than 80 x 80 (the metric's crop size) or whose enhancement
fails are reported by name and skipped: the figures are over the pairs evaluated, which the
table states. The exit status is 1 if any pair was skipped.

`--output_dir` (optional, created): `<stem>.png` for every enhanced photo and `results.json`
(the report: the table's figures, settings, skipped and unpaired photos, and per photo the three NIMA
scores, PIEA's score at every iteration and its final filter parameters). Files there are
replaced; it may not be a folder of the inputs or references.

Library use (no flags involved):

    from datasets import fivek
    from enhancers import piea
    from tools import evaluate_piea
    pairs, _ = fivek.fivek_pairs("fivek", "C")
    model, _ = piea.load_nima("nima.weights.h5", "inception_v2")
    results = evaluate_piea.evaluate(pairs, model, iterations=20, learning_rate=1e-3,
                                     proxy_size=None, seed=0, select="final")
    print(report.format_table(results))  # from tools import report
"""
import os
import time
import uuid

import numpy as np
from absl import app, flags, logging
from PIL import Image

import nima
from datasets import fivek
from datasets.images import ImageDecodeError, load_rgb8, to_uint8
from enhancers import piea
from tools import evaluate as metrics
from tools import cli, enhance, report

__all__ = ["RESULTS_FILE", "ROWS", "evaluate", "find_pairs"]

RESULTS_FILE = "results.json"
INPUT, REFERENCE, PIEA = "input", "reference", "PIEA"
ROWS = (INPUT, REFERENCE, PIEA)  # Table 1's rows (the reference row has NIMA scores only)
_MIN_SIDE = metrics.HIST_DOWNSCALED


def find_pairs(*, fivek_dir=None, expert="C", split_file=None, input_dir=None,
               reference_dir=None, limit=None):
    """The (input, reference) pairs to evaluate; returns (pairs, missing, reference_label).

    Either `fivek_dir` (with `expert`) or both `input_dir` and `reference_dir`; `split_file`
    and `limit` (first N pairs) apply to either. `missing` as in `datasets.fivek.match_by_stem`;
    `reference_label` names the references for the table ("Expert C" or "Reference").

    Raises:
      ValueError: a wrong combination of arguments, or the errors of `datasets.fivek`.
    """
    if fivek_dir is not None and (input_dir is not None or reference_dir is not None):
        raise ValueError("give either --fivek_dir or --input_dir and --reference_dir, not both")
    if fivek_dir is None and (input_dir is None or reference_dir is None):
        raise ValueError("give --fivek_dir, or both --input_dir and --reference_dir")
    if limit is not None and limit < 1:
        raise ValueError(f"--limit must be at least 1, got {limit}")
    if fivek_dir is not None:
        pairs, missing = fivek.fivek_pairs(fivek_dir, expert, split_file=split_file)
        label = f"Expert {expert.upper()}"
    else:
        names = None if split_file is None else fivek.read_split_file(split_file)
        pairs, missing = fivek.match_by_stem(
            input_dir, reference_dir, names=names,
            names_source=None if split_file is None else f"split file {split_file!r}")
        label = "Reference"
    if limit is not None:
        pairs = pairs[:limit]
    return pairs, missing, label


def _write_png(image8, path):
    """Writes via a temporary name in the same folder, then replaces `path`."""
    directory, name = os.path.split(path)
    tmp = os.path.join(directory, f".{name}.tmp-{uuid.uuid4().hex}")
    try:
        Image.fromarray(image8).save(tmp, format="PNG")
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def _check_output_dir(output_dir, pairs):
    real = os.path.realpath(output_dir)
    for pair in pairs:
        for path in pair:
            if os.path.realpath(os.path.dirname(os.fspath(path)) or ".") == real:
                raise ValueError(f"output_dir {output_dir!r} holds the photo {path!r}; "
                                 "write the results elsewhere")
    os.makedirs(output_dir, exist_ok=True)


def _load(path, failures):
    try:
        image = load_rgb8(path)
    except ImageDecodeError as error:
        failures.append((os.fspath(path), f"cannot read image: {error.reason}"))
        return None
    if min(image.shape[:2]) < _MIN_SIDE:
        failures.append((os.fspath(path), f"{image.shape[1]}x{image.shape[0]} is smaller than "
                         f"the {_MIN_SIDE}x{_MIN_SIDE} of the histogram metric"))
        return None
    return image


def _nima(nima_model, image8):
    return float(metrics.nima_mean_scores(nima_model, [image8])[0])


def evaluate(pairs, nima_model, *, iterations, learning_rate, proxy_size, seed, output_dir=None,
             reference_label="Reference", nima_description=None, missing=(),
             initial_exposure=piea.INITIAL_EXPOSURE, select="best",
             min_gain=piea.MIN_SCORE_GAIN):
    """Enhances every input of `pairs` with PIEA and measures Table 1 (module docstring).

    Args:
      pairs: [(input_path, reference_path)], e.g. from `datasets.fivek.fivek_pairs`.
      nima_model: the NIMA Keras model that guides PIEA and gives the NIMA scores.
      iterations, learning_rate, proxy_size, initial_exposure, select: PIEA's settings
        (`enhancers.piea.PieaEnhancer`).
      seed: of the histogram patches' crops.
      output_dir: None, or where `<stem>.png` per enhanced photo and `results.json` go.
      reference_label: the references' name in the table ("Expert C").
      nima_description: which NIMA it is, recorded in the results.
      missing: unpaired photos (`match_by_stem`'s lines), recorded in the results.

    Returns:
      A report in the layout of `tools.report`, system "piea": "num_images" (pairs evaluated);
      rows ROWS = input, reference, PIEA with the metrics luminance, contrast, saturation
      (histogram intersection with the references, a fraction in [0, 1]; None for the reference
      row) and nima_mean; "skipped" [{"file", "reason"}]; extras "reference_label",
      "nima_model", "settings", "unpaired", "per_photo" [...].

    Raises:
      ValueError: no pair could be evaluated (the message says why for the first ones), or
        `output_dir` holds inputs or references.
    """
    pairs = [(os.fspath(a), os.fspath(b)) for a, b in pairs]
    if output_dir is not None:
        output_dir = os.fspath(output_dir)
        _check_output_dir(output_dir, pairs)
    enhancer = piea.PieaEnhancer(nima_model, iterations=iterations, learning_rate=learning_rate,
                                 proxy_size=proxy_size, initial_exposure=initial_exposure,
                                 select=select, min_gain=min_gain)
    rngs = {name: np.random.default_rng(seed) for name in ("input", "piea", "reference")}
    statistics = {name: [] for name in rngs}
    failures, per_photo, outputs = [], [], {}
    for index, (input_path, reference_path) in enumerate(pairs, 1):
        start = time.perf_counter()
        before = len(failures)
        source = _load(input_path, failures)
        reference = _load(reference_path, failures)
        if len(failures) > before:
            for path, reason in failures[before:]:
                logging.error("Skipping the pair of %s: %s: %s", input_path, path, reason)
            continue
        stem = os.path.splitext(os.path.basename(input_path))[0]
        output_path = None
        if output_dir is not None:
            output_path = os.path.join(output_dir, stem + ".png")
            if output_path in outputs:
                failures.append((input_path, f"its output {output_path} is already the output "
                                             f"of {outputs[output_path]}"))
                logging.error("Skipping %s: %s", *failures[-1])
                continue
        try:
            result = enhancer.enhance(source[np.newaxis].astype(np.float32) / np.float32(255),
                                      names=[input_path])
        except Exception as error:  # one photo's failure must not stop the evaluation
            failures.append((input_path, f"enhancement failed: {type(error).__name__}: {error}"))
            logging.error("Skipping %s: %s", *failures[-1])
            continue
        enhanced = to_uint8(result.images[0])
        if output_path is not None:
            try:
                _write_png(enhanced, output_path)
            except OSError as error:
                failures.append((input_path, f"cannot write {output_path}: {error}"))
                logging.error("Skipping %s: %s", *failures[-1])
                continue
            outputs[output_path] = input_path
        for name, image in (("input", source), ("piea", enhanced), ("reference", reference)):
            statistics[name].extend(
                metrics.patch_statistics(patch)
                for patch in metrics.histogram_patches(image, rngs[name]))
        record = {
            "input": input_path,
            "reference": reference_path,
            "output": output_path,
            "nima_input": _nima(nima_model, source),
            "nima_piea": _nima(nima_model, enhanced),
            "nima_reference": _nima(nima_model, reference),
            "piea_scores": [float(s) for s in result.scores[0]],
            "piea_selected_iteration": result.selected_iterations[0],
            "piea_selection": result.selections[0],
            "piea_warnings": list(result.warnings[0]),
            "parameters": {name: np.asarray(value, np.float64).tolist()
                           for name, value in result.selected_parameters(0).items()},
        }
        per_photo.append(record)
        logging.info("[%d/%d] %s (%dx%d): NIMA %.3f -> %.3f (%s %.3f), %.1f s", index,
                     len(pairs), input_path, source.shape[1], source.shape[0],
                     record["nima_input"], record["nima_piea"], reference_label,
                     record["nima_reference"], time.perf_counter() - start)

    if not per_photo:
        shown = "; ".join(f"{path}: {reason}" for path, reason in failures[:3])
        raise ValueError(f"none of the {len(pairs)} pairs could be evaluated"
                         + (f" ({shown})" if shown else ""))
    references = np.asarray(statistics["reference"])
    intersections = {row: metrics.intersect_statistics(np.asarray(statistics[name]), references)
                     for row, name in ((INPUT, "input"), (PIEA, "piea"))}
    intersections[REFERENCE] = {}  # the references against themselves: not a figure
    nima_means = {row: float(np.mean([r[key] for r in per_photo])) for row, key in
                  ((INPUT, "nima_input"), (REFERENCE, "nima_reference"), (PIEA, "nima_piea"))}
    results = report.make_report(
        "piea", [{"name": row, "metrics": {**intersections[row], "nima_mean": nima_means[row]}}
                 for row in ROWS],
        [*metrics.HIST_STATISTICS, "nima_mean"], num_images=len(per_photo),
        skipped=[{"file": path, "reason": reason} for path, reason in failures],
        notes=[f"reference: {reference_label}"]
        + ([f"NIMA model: {nima_description}"] if nima_description else []),
        reference_label=reference_label,
        nima_model=nima_description,
        settings={"iterations": int(iterations), "learning_rate": float(learning_rate),
                  "proxy_size": proxy_size, "initial_exposure": enhancer.initial_exposure,
                  "select": select, "seed": int(seed),
                  "patches_per_photo": metrics.HIST_SQUARE_CROPS * metrics.HIST_PATCH_CROPS,
                  "bins": metrics.HIST_BINS},
        unpaired=list(missing),
        per_photo=per_photo,
    )
    if output_dir is not None:
        results = report.write_report(os.path.join(output_dir, RESULTS_FILE), results)
        logging.info("Wrote %d photos and %s to %s", len(per_photo), RESULTS_FILE, output_dir)
    return results


# --------------------------------------------------------------------------- command line


def run(FLAGS, args):
    """The command line's work: FLAGS are the parsed flags, args the positional arguments."""
    if args:
        raise app.UsageError(f"Unexpected arguments: {' '.join(args)}")
    try:
        pairs, missing, label = find_pairs(
            fivek_dir=FLAGS.fivek_dir, expert=FLAGS.expert, split_file=FLAGS.split_file,
            input_dir=FLAGS.input_dir, reference_dir=FLAGS.reference_dir, limit=FLAGS.limit)
        if missing:
            logging.warning("%d photos have no partner and are left out (listed above).",
                            len(missing))
        nima_model, description = piea.load_nima(FLAGS.nima_weights, FLAGS.backbone)
        logging.info("Evaluating PIEA on %d pairs, guided by %s; %d iterations, learning rate "
                     "%g, proxy size %s, initial exposure %s, returning the %s candidate.",
                     len(pairs), description, FLAGS.iterations, FLAGS.learning_rate,
                     FLAGS.proxy_size or "off", FLAGS.initial_exposure, FLAGS.piea_select)
        results = evaluate(
            pairs, nima_model, iterations=FLAGS.iterations, learning_rate=FLAGS.learning_rate,
            proxy_size=FLAGS.proxy_size, seed=FLAGS.seed, output_dir=FLAGS.output_dir,
            reference_label=label, nima_description=description, missing=missing,
            initial_exposure=FLAGS.initial_exposure, select=FLAGS.piea_select,
            min_gain=FLAGS.piea_min_gain)
    except (FileNotFoundError, ValueError) as error:
        logging.error("%s", error)
        return 1
    print(report.format_table(results, list_skipped=True))
    return 1 if results["skipped"] else 0


def define_flags(flag_values):
    """Defines this tool's flags in `flag_values` (`tools.cli`)."""
    flags.DEFINE_string("fivek_dir", None, "FiveK folder: input/ and the experts' folders.",
                        flag_values=flag_values)
    flags.DEFINE_enum("expert", "C", list(fivek.EXPERTS), "--fivek_dir: the reference expert.",
                      flag_values=flag_values)
    flags.DEFINE_string("split_file", None, "Only the photos listed (FiveK ids or stems, one a "
                        "line), e.g. EXPOSURE's data/folds/FiveK_test.txt.",
                        flag_values=flag_values)
    flags.DEFINE_string("input_dir", None, "Input photos (instead of --fivek_dir).",
                        flag_values=flag_values)
    flags.DEFINE_string("reference_dir", None, "Their references, paired by file stem.",
                        flag_values=flag_values)
    flags.DEFINE_string("nima_weights", None, "Whole-NIMA weights file (model.save_weights); "
                        "default: the demo NIMA.", flag_values=flag_values)
    flags.DEFINE_enum("backbone", "inception_v2", list(nima.BACKBONES),
                      "The backbone of --nima_weights (the paper: inception_v2).",
                      flag_values=flag_values)
    flags.DEFINE_integer("iterations", 20, "M, PIEA's gradient steps per photo.", lower_bound=0,
                         flag_values=flag_values)
    flags.DEFINE_float("learning_rate", 1e-3, "lambda, PIEA's gradient step size.",
                       flag_values=flag_values)
    cli.require_finite("learning_rate", flag_values)
    flags.DEFINE_integer("proxy_size", None, "Score a copy with this longer side (default: off, "
                         "full size as the paper).", lower_bound=32, flag_values=flag_values)
    enhance.define_piea_choice_flags(flag_values)
    flags.DEFINE_integer("limit", None, "Evaluate the first N pairs only.", lower_bound=1,
                         flag_values=flag_values)
    flags.DEFINE_string("output_dir", None, "Optional: write <stem>.png per enhanced photo and "
                        f"{RESULTS_FILE} here (created; files replaced).", flag_values=flag_values)
    cli.require_directory("output_dir", flag_values)
    flags.DEFINE_integer("seed", 0, "Seed of the histogram patches' random crops.",
                         flag_values=flag_values)


def main(argv=None):
    return cli.main(define_flags, run, argv)


if __name__ == "__main__":
    cli.run_main(define_flags, run)
