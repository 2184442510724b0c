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
  [0, 1] first. PSNR of identical images is +inf (written `Infinity` in results.json, which
  Python's json reads back).
- With a NIMA model, the NIMA mean score (`tools.evaluate.nima_mean_scores`, each image at its
  own size) of the input, the reference and every output; over the test set its mean and
  population standard deviation (np.std), and the box-plot statistics of Figure 6
  (`box_statistics`). `--nima_weights FILE` with `--backbone` (default inception_v2, the
  paper's NIMA), or `--nima_weights=demo` for `nima.demo_model()` (a stand-in not trained on
  AVA, said in the log and the results). Without `--nima_weights` the NIMA columns are left out.

`--output_dir` (created): `results.json` (`compare`'s dict), `nima_box_plot.png` (`box_plot`,
with NIMA scores only) and, for the first `--save_images` photos evaluated,
`side_by_side/<stem>.png`: input | each enhancer | reference, at full size, each under its row
name. An existing results.json is never replaced without `--overwrite` (`overwrite=True`); the
check comes before any photo is read. The table is printed; the exit status is 1 if any pair was
skipped.

Library use (no flags involved):

    from tools import enhance, evaluate_can
    enhancers = {"CAN(L2)": enhance.load_saved_model_enhancer("exports/can_l2"),
                 "CAN(L2+NIMA)": enhance.load_saved_model_enhancer("exports/can_l2_nima")}
    results = evaluate_can.compare(pairs, enhancers, nima_model=nima_model, output_dir="out")
    print(evaluate_can.format_table(results))
"""
import json
import os
import time
import uuid

import numpy as np
from absl import logging
from PIL import Image, ImageDraw, ImageFont

from datasets.images import ImageDecodeError, to_uint8
from tools import evaluate as metrics

__all__ = [
    "BOX_PLOT_FILE",
    "RESULTS_FILE",
    "SIDE_BY_SIDE_DIR",
    "box_plot",
    "box_statistics",
    "compare",
    "format_table",
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


def _summary(psnrs, ssims, nimas):
    summary = {
        "psnr_mean": None if psnrs is None else float(np.mean(psnrs)),
        "ssim_mean": None if ssims is None else float(np.mean(ssims)),
        "nima_mean": None,
        "nima_std": None,
        "nima_box": None,
    }
    if nimas is not None:
        box = box_statistics(nimas)
        summary.update(nima_mean=box["mean"], nima_std=box["std"], nima_box=box)
    return summary


# --------------------------------------------------------------------------- comparison


def _load_pair(input_path, reference_path):
    from datasets import paired  # only the evaluation itself needs it

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


def _write_atomic(path, write):
    directory, name = os.path.split(path)
    tmp = os.path.join(directory, f".{name}.tmp-{uuid.uuid4().hex}")
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


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
      A JSON-ready dict:
        "count": the number of photos evaluated;
        "photos": their names (input file names) and "pairs": their [input, reference] paths;
        "rows": in the order input, reference, then `enhancers`, each a dict with "name",
          "psnr" and "ssim" (per photo, against the reference; None for the reference row),
          "nima" (per-photo NIMA mean scores, None without a model) and "summary"
          {"psnr_mean", "ssim_mean", "nima_mean", "nima_std" (np.std, population),
          "nima_box" (`box_statistics`)}, None where there is nothing to summarise;
        "skipped": [{"input", "reference", "reason"}] for the pairs not evaluated;
        "unpaired": `missing`; "nima_model": `nima_description` (or None without a model).

    Raises:
      FileExistsError: results.json exists in `output_dir` and `overwrite` is false.
      ValueError: bad arguments, or none of the pairs could be evaluated (first reasons given).
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
    names, evaluated, skipped = [], [], []
    for index, ((input_path, reference_path), (name, image_file)) in enumerate(
            zip(pairs, _photo_names(pairs)), 1):
        start = time.perf_counter()

        def skip(reason):
            skipped.append({"input": input_path, "reference": reference_path, "reason": reason})
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
            _write_side_by_side(images, row_names, output_dir, image_file)
        parts = []
        for row in row_names:
            part = [row] + ([f"PSNR {figures[row][0]:.2f}", f"SSIM {figures[row][1]:.3f}"]
                            if row in figures else [])
            parts.append(" ".join(part + ([f"NIMA {nimas[row]:.3f}"] if nimas else [])))
        logging.info("[%d/%d] %s (%dx%d): %s; %.1f s", index, len(pairs), name, source.shape[1],
                     source.shape[0], ", ".join(parts), time.perf_counter() - start)

    if not names:
        shown = "; ".join(f"{os.path.basename(s['input'])}: {s['reason']}" for s in skipped[:3])
        raise ValueError(f"none of the {len(pairs)} pairs could be evaluated ({shown})")
    rows = []
    for row in row_names:
        psnrs = None if row == REFERENCE else scores[row]["psnr"]
        ssims = None if row == REFERENCE else scores[row]["ssim"]
        nimas = None if nima_model is None else scores[row]["nima"]
        rows.append({"name": row, "psnr": psnrs, "ssim": ssims, "nima": nimas,
                     "summary": _summary(psnrs, ssims, nimas)})
    results = {
        "count": len(names),
        "photos": names,
        "pairs": evaluated,
        "rows": rows,
        "nima_model": (nima_description or "given model") if nima_model is not None else None,
        "skipped": skipped,
        "unpaired": list(missing),
    }
    if output_dir is not None:
        if nima_model is not None:
            box_plot(results, os.path.join(output_dir, BOX_PLOT_FILE))
        else:
            logging.info("No NIMA model: no box plot.")

        def write_json(tmp):
            with open(tmp, "w", encoding="utf-8") as f:
                json.dump(results, f, indent=2)
                f.write("\n")

        _write_atomic(results_path, write_json)
        logging.info("Wrote %s to %s", RESULTS_FILE, output_dir)
    return results


# --------------------------------------------------------------------------- table


def _number(value, digits):
    if value is None:
        return "-"
    return "inf" if value == float("inf") else f"{value:.{digits}f}"


def format_table(results):
    """One line per row (input, reference, the enhancers): PSNR (dB), SSIM, NIMA mean and NIMA
    std (population, over the test set), under a title line; "-" where a row has no figure (the
    reference's PSNR and SSIM). The NIMA columns are left out of results without NIMA scores."""
    with_nima = results.get("nima_model") is not None
    header = ["", "PSNR (dB)", "SSIM"] + (["NIMA mean", "NIMA std"] if with_nima else [])
    lines = [header]
    for row in results["rows"]:
        summary = row["summary"]
        cells = [row["name"], _number(summary["psnr_mean"], 2), _number(summary["ssim_mean"], 4)]
        if with_nima:
            cells += [_number(summary["nima_mean"], 3), _number(summary["nima_std"], 3)]
        lines.append(cells)
    widths = [max(len(cells[k]) for cells in lines) for k in range(len(header))]

    def line(cells):
        return "  ".join([cells[0].ljust(widths[0])]
                         + [c.rjust(w) for c, w in zip(cells[1:], widths[1:])]).rstrip()

    skipped = len(results.get("skipped", []))
    title = [f"{results['count']} test photos" + (f" ({skipped} skipped)" if skipped else "")
             + "; PSNR and SSIM against the reference"
             + ("; NIMA mean score: mean and std over the photos" if with_nima else "")]
    if with_nima:
        title.append(f"NIMA model: {results['nima_model']}")
    return "\n".join(title + [line(cells) for cells in lines])


# --------------------------------------------------------------------------- drawing

_BACKGROUND = (255, 255, 255)
_INK = (20, 20, 20)
_GRID = (225, 225, 225)
_MEAN = (30, 140, 60)
_FILLS = [(200, 200, 200), (150, 185, 225), (240, 180, 130), (160, 215, 160), (215, 170, 215),
          (230, 215, 140)]


def _font(size):
    try:
        return ImageFont.load_default(size=size)
    except (TypeError, OSError):  # Pillow without FreeType: the fixed bitmap font
        return ImageFont.load_default()


def _text_size(draw, text, font):
    left, top, right, bottom = draw.textbbox((0, 0), text, font=font)
    return right - left, bottom - top


def nice_ticks(low, high, count=6):
    """Round tick values (steps 1, 2, 2.5 or 5 times a power of ten) covering [low, high]."""
    if not high > low:
        low, high = low - 0.5, high + 0.5
    raw = (high - low) / max(count - 1, 1)
    power = 10.0 ** np.floor(np.log10(raw))
    step = next(m * power for m in (1, 2, 2.5, 5, 10) if m * power >= raw)
    first = np.floor(low / step) * step
    last = np.ceil(high / step) * step
    return [float(round(v, 10)) for v in np.arange(first, last + step / 2, step)]


def box_plot(results, path, *, width=None, height=480):
    """Draws Figure 6 (module docstring) into the PNG `path`; returns the (height, width, 3) uint8
    image. One box per row of `results` (`compare`'s dict, or one read back from results.json):
    the box from the first to the third quartile, the median as a line, whiskers to the
    furthest scores within 1.5 IQR, the other scores as hollow dots, the mean as a diamond;
    the row names and "mean ± std" under the boxes, a labelled score axis with ticks. `width`
    defaults to 160 + 150 per row. Pillow only."""
    rows = [row for row in results["rows"] if row.get("nima")]
    if not rows:
        raise ValueError("no NIMA scores to plot (the results were made without a NIMA model)")
    boxes = [box_statistics(row["nima"]) for row in rows]
    width = 160 + 150 * len(rows) if width is None else int(width)
    height = int(height)
    font, title_font = _font(13), _font(17)
    canvas = Image.new("RGB", (width, height), _BACKGROUND)
    draw = ImageDraw.Draw(canvas)

    title = f"NIMA scores ({results['count']} test photos)"
    title_w, title_h = _text_size(draw, title, title_font)
    draw.text(((width - title_w) / 2, 12), title, fill=_INK, font=title_font)
    plot = (84, 24 + title_h + 16, width - 20, height - 76)  # left, top, right, bottom
    low = min(b["min"] for b in boxes)
    high = max(b["max"] for b in boxes)
    ticks = nice_ticks(low, high)
    low, high = ticks[0], ticks[-1]

    def y_of(value):
        return plot[3] - (plot[3] - plot[1]) * (value - low) / (high - low)

    for tick in ticks:
        y = y_of(tick)
        draw.line((plot[0], y, plot[2], y), fill=_GRID)
        draw.line((plot[0] - 5, y, plot[0], y), fill=_INK)
        label = f"{tick:g}"
        label_w, label_h = _text_size(draw, label, font)
        draw.text((plot[0] - 9 - label_w, y - label_h / 2 - 2), label, fill=_INK, font=font)
    draw.line((plot[0], plot[1], plot[0], plot[3]), fill=_INK)
    draw.line((plot[0], plot[3], plot[2], plot[3]), fill=_INK)
    axis_label = "NIMA mean score"
    label_w, label_h = _text_size(draw, axis_label, font)
    label_image = Image.new("RGB", (label_w + 4, label_h + 6), _BACKGROUND)
    ImageDraw.Draw(label_image).text((2, 0), axis_label, fill=_INK, font=font)
    label_image = label_image.rotate(90, expand=True)
    canvas.paste(label_image, (12, int((plot[1] + plot[3] - label_image.height) / 2)))

    slot = (plot[2] - plot[0]) / len(rows)
    half = min(40.0, slot * 0.3)
    for k, (row, box) in enumerate(zip(rows, boxes)):
        x = plot[0] + slot * (k + 0.5)
        fill = _FILLS[k % len(_FILLS)]
        for end, edge in ((box["whisker_low"], box["q1"]), (box["whisker_high"], box["q3"])):
            draw.line((x, y_of(edge), x, y_of(end)), fill=_INK, width=1)
            draw.line((x - half / 2, y_of(end), x + half / 2, y_of(end)), fill=_INK, width=1)
        top, bottom = y_of(box["q3"]), y_of(box["q1"])
        draw.rectangle((x - half, top, x + half, max(bottom, top + 1)), fill=fill, outline=_INK)
        draw.line((x - half, y_of(box["median"]), x + half, y_of(box["median"])), fill=_INK,
                  width=3)
        for value in box["outliers"]:
            y = y_of(value)
            draw.ellipse((x - 3, y - 3, x + 3, y + 3), outline=_INK)
        y = y_of(box["mean"])
        draw.polygon([(x, y - 6), (x + 6, y), (x, y + 6), (x - 6, y)], fill=_MEAN, outline=_INK)
        for line_no, text in enumerate(
                (row["name"], f"{box['mean']:.3f} \u00b1 {box['std']:.3f}")):
            text_w, _ = _text_size(draw, text, font)
            draw.text((x - text_w / 2, plot[3] + 10 + 20 * line_no), text, fill=_INK, font=font)

    # Legend, bottom right: shapes drawn, not glyphs (the default font lacks some).
    grey = (110, 110, 110)
    y = height - 12
    x = width - 20
    for text, marker in (("beyond 1.5 IQR", "dot"), ("mean", "diamond"), ("median", "bar")):
        text_w, text_h = _text_size(draw, text, font)
        x -= text_w
        draw.text((x, y - text_h / 2 - 3), text, fill=grey, font=font)
        x -= 6
        if marker == "dot":
            draw.ellipse((x - 6, y - 3, x, y + 3), outline=_INK)
        elif marker == "diamond":
            draw.polygon([(x - 5, y - 5), (x, y), (x - 5, y + 5), (x - 10, y)], fill=_MEAN,
                         outline=_INK)
        else:
            draw.line((x - 14, y, x, y), fill=_INK, width=3)
        x -= 26
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    _write_atomic(os.fspath(path), lambda tmp: canvas.save(tmp, format="PNG"))
    return np.asarray(canvas)


def _write_side_by_side(images, row_names, output_dir, image_file):
    """input | each enhancer | reference at full size, each under its row name (on a band above
    the photos, its font 1/30 of the photo height, at least 13 px unless the names need less)."""
    order = [INPUT] + [r for r in row_names if r not in (INPUT, REFERENCE)] + [REFERENCE]
    h, w = images[INPUT].shape[:2]
    gap = max(4, w // 100)
    measure = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    size = max(13, h // 30)
    while size > 6 and max(_text_size(measure, row, _font(size))[0] for row in order) > w - 8:
        size -= 1  # small photos: the names must not run into the next panel
    font = _font(size)
    band = size + 12
    canvas = Image.new("RGB", (len(order) * w + (len(order) - 1) * gap, h + band), _BACKGROUND)
    draw = ImageDraw.Draw(canvas)
    for k, row in enumerate(order):
        x = k * (w + gap)
        draw.text((x + 4, 4), row, fill=_INK, font=font)
        canvas.paste(Image.fromarray(to_uint8(images[row])), (x, band))
    directory = os.path.join(output_dir, SIDE_BY_SIDE_DIR)
    os.makedirs(directory, exist_ok=True)
    path = os.path.join(directory, image_file)
    _write_atomic(path, lambda tmp: canvas.save(tmp, format="PNG"))


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
    import nima

    if weights is None:
        logging.warning("No --nima_weights: the NIMA columns and the box plot are left out.")
        return None, None
    return nima.load_nima_model(weights, backbone)


def main(argv):
    from absl import app, flags

    from datasets import paired
    from tools import enhance

    FLAGS = flags.FLAGS
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {' '.join(argv[1:])}")
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
    print(format_table(results))
    if results["skipped"]:
        print(f"Skipped ({len(results['skipped'])}):")
        for entry in results["skipped"]:
            print(f"  {entry['input']}: {entry['reason']}")
    return 1 if results["skipped"] else 0


def _define_flags():
    """Flags live here, not at import, so that tests can import this module next to others."""
    from absl import flags

    import nima

    flags.DEFINE_string("fivek_dir", None, "FiveK folder: input/ and the experts' folders.")
    flags.DEFINE_string("experts", "C", "--fivek_dir: the reference experts, a comma list.")
    flags.DEFINE_string("input_dir", None, "Input photos (instead of --fivek_dir).")
    flags.DEFINE_string("reference_dir", None, "Their references, paired by file stem.")
    flags.DEFINE_string("train_list", None, "Optional split file of the training photos.")
    flags.DEFINE_string("test_list", None, "Optional split file of the test photos.")
    flags.DEFINE_multi_string("model", [], "NAME=SAVED_MODEL_DIR of an exported enhancer, "
                              "repeatable; the rows of the table, in this order.")
    flags.DEFINE_string("nima_weights", None, "Whole-NIMA weights file, or 'demo' for the demo "
                        "NIMA; without it the NIMA columns are left out.")
    flags.DEFINE_enum("backbone", "inception_v2", list(nima.BACKBONES),
                      "The backbone of --nima_weights (the paper: inception_v2).")
    flags.DEFINE_integer("max_images", None, "Evaluate the first N test pairs only.",
                         lower_bound=1)
    flags.DEFINE_integer("save_images", 0, "Write the first N photos side by side "
                         "(input | enhancers | reference) to --output_dir.", lower_bound=0)
    flags.DEFINE_string("output_dir", None, f"Optional: {RESULTS_FILE}, {BOX_PLOT_FILE} and "
                        f"{SIDE_BY_SIDE_DIR}/ go here (created).")
    flags.DEFINE_boolean("overwrite", False, f"Replace an existing {RESULTS_FILE}.")
    flags.mark_flags_as_mutual_exclusive(["fivek_dir", "input_dir"], required=True)


if __name__ == "__main__":
    from absl import app

    _define_flags()
    app.run(main)
