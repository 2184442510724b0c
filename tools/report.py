"""One evaluation report layout for every system (NIMA, CAN, PIEA, WESPE, and the next ones).

Every evaluator returns, and writes as strict JSON, a dict of this layout:

    {
      "format": "enhancement-report/1",
      "system": "can",
      "num_images": 3,                 # images (photos, pairs) evaluated
      "metrics": {                     # the columns, in order, each with its reading guide
        "psnr": "PSNR in dB against the reference; higher is better",
        "nima_mean": "mean NIMA aesthetic score, 1-10; higher is better"
      },
      "rows": [                        # the methods compared, in order
        {"name": "input", "metrics": {"psnr": 20.9, "nima_mean": 4.8}},
        {"name": "reference", "metrics": {"psnr": null, "nima_mean": 5.3}},
        {"name": "CAN(L2)", "metrics": {"psnr": 24.1, "nima_mean": 5.0}}
      ],
      "skipped": [{"file": "in/p7.png", "reason": "cannot read p7.png: truncated"}],
      ...                              # system-specific extras: "figures", "nima_model", ...
    }

Rules:
- Every row has every metric of "metrics"; a figure a row does not have (the reference's PSNR
  against itself) is null and the table shows "n/a".
- A metric measured on another set of images than the rest (WESPE: PSNR/SSIM on the aligned
  test pairs, entropy/bpp/NIMA on separate photos) gets its own count in the optional
  "num_images_per_metric" {metric: n}; "num_images" is then the number of distinct images
  evaluated in all, and the table's reading guide states each metric's own count.
- Rows may carry extras besides "name" and "metrics" (CAN: per-image figures, box statistics).
- Strict JSON: NaN and +-inf are not JSON. `make_report` and `write_report` turn every non-finite
  float, wherever it is, into null, and record where in "non_finite" [{"at": "rows/2/metrics/
  psnr", "value": "inf"}] (and log a warning), so none passes silently. (PSNR of identical
  images is +inf: it is written as null with that note.)
- "notes": an optional list of sentences printed under the table (which NIMA scored, why a
  figure is undefined, ...).

Functions: `make_report`, `write_report`, `read_report`, `format_table`, `nima_report`, and
`METRIC_GUIDES`, the reading guide of every metric the package reports; `strict_dumps`, the same
strict JSON (non-finite values as null, noted in "non_finite") for any other record: a run's
printed outcome, export metadata, PIEA recipes.
"""
import json
import math
import os
import uuid

import numpy as np
from absl import logging

__all__ = [
    "FORMAT",
    "METRIC_GUIDES",
    "format_table",
    "make_report",
    "nima_report",
    "read_report",
    "strict_dumps",
    "strict_json",
    "strict_record",
    "write_report",
]

FORMAT = "enhancement-report/1"

# How to read each metric: what it measures and which direction is better.
METRIC_GUIDES = {
    "psnr": "PSNR in dB against the reference; higher is better",
    "ssim": "SSIM with the reference, -1..1 (1: identical); higher is better",
    "nima_mean": "mean NIMA aesthetic score, 1..10; higher is better",
    "nima_std": "population std of the NIMA score over the images; a spread: neither higher "
                "nor lower is better",
    "entropy": "Shannon entropy of the 8-bit gray histogram in bits, 0..8; higher is better "
               "(more tonal detail; WESPE section 4.2)",
    "png_bpp": "lossless PNG bits per pixel; higher is better (more fine detail, though noise "
               "raises it too; WESPE section 4.2)",
    "luminance": "histogram intersection of patch luminance with the reference set, 0..1; "
                 "higher is better",
    "contrast": "histogram intersection of patch contrast with the reference set, 0..1; "
                "higher is better",
    "saturation": "histogram intersection of patch saturation with the reference set, 0..1; "
                  "higher is better",
    "accuracy": "two-class accuracy at mean score 5 against the ground truth, 0..1; higher is "
                "better",
    "lcc": "linear correlation of predicted and true mean scores, -1..1; higher is better",
    "srcc": "rank correlation of predicted and true mean scores, -1..1; higher is better",
    "emd": "earth mover's distance (r = 1) of predicted and true score distributions; lower "
           "is better",
}
# Digits shown in the table (default: 4 significant digits).
_DIGITS = {"psnr": 2, "ssim": 4, "nima_mean": 3, "nima_std": 3, "entropy": 3, "png_bpp": 3,
           "luminance": 3, "contrast": 3, "saturation": 3, "accuracy": 4, "lcc": 4,
           "srcc": 4, "emd": 4}
_NIMA_METRICS = ("accuracy", "lcc", "srcc", "emd")


def strict_json(value, at="", found=None):
    """`value` with every non-finite float replaced by None (NumPy scalars and arrays become
    Python numbers and lists); `found` (a list), if given, receives {"at", "value"} for each."""
    if isinstance(value, dict):
        return {str(k): strict_json(v, f"{at}/{k}" if at else str(k), found)
                for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [strict_json(v, f"{at}/{i}" if at else str(i), found) for i, v in enumerate(value)]
    if isinstance(value, np.ndarray):
        return strict_json(value.tolist(), at, found)
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        if found is not None:
            found.append({"at": at, "value": str(value)})
        return None
    return value


def strict_record(record, what):
    """The dict `record` as strict JSON data (`strict_json`), each non-finite value it held
    listed in its "non_finite" [{"at", "value"}] (after those listed before) and logged as a
    warning naming `what` ("Report of nima")."""
    found = []
    clean = strict_json({k: v for k, v in record.items() if k != "non_finite"}, found=found)
    non_finite = list(record.get("non_finite", [])) + found
    if found:
        logging.warning("%s: non-finite values written as null: %s", what,
                        ", ".join(f"{f['at']}={f['value']}" for f in found))
    if non_finite:
        clean["non_finite"] = non_finite
    return clean


def strict_dumps(record, what, **options):
    """The dict `record` as strict JSON text (`strict_record`; `json.dumps` options such as
    indent): every JSON the package writes or prints goes through this or `write_report`."""
    return json.dumps(strict_record(record, what), allow_nan=False, **options)


def _strict_report(report):
    return strict_record(report, f"Report of {report.get('system')}")


def make_report(system, rows, metrics, *, num_images, skipped=(), num_images_per_metric=None,
                notes=(), **extras):
    """A report in the common layout (module docstring), already strict JSON.

    Args:
      system: "nima", "can", "piea", "wespe", ...
      rows: [{"name": str, "metrics": {metric: number or None}, ...extras}], in table order.
        A metric missing from a row is None.
      metrics: the column names in order (reading guides from METRIC_GUIDES), or an ordered
        mapping name -> reading guide (to say more, e.g. on which images).
      num_images: the number of images (or pairs) evaluated.
      skipped: [{"file": path, "reason": str, ...}] for inputs not evaluated.
      num_images_per_metric: None, or {metric: count} where metrics were measured on different
        sets of images.
      notes: sentences printed under the table.
      **extras: system-specific entries ("figures", "nima_model", "settings", ...).

    Raises:
      ValueError: a metric without a reading guide, a row with an unknown metric or without a
        name, repeated row names, or a skipped entry without "file" and "reason".
    """
    if isinstance(metrics, dict):
        guides = dict(metrics)
    else:
        unknown = [m for m in metrics if m not in METRIC_GUIDES]
        if unknown:
            raise ValueError(f"no reading guide for {unknown}: pass metrics as a mapping "
                             "name -> guide")
        guides = {m: METRIC_GUIDES[m] for m in metrics}
    names = []
    clean_rows = []
    for row in rows:
        if not row.get("name"):
            raise ValueError(f"a report row needs a name: {row}")
        unknown = set(row.get("metrics", {})) - set(guides)
        if unknown:
            raise ValueError(f"row {row['name']!r} has metrics {sorted(unknown)} that are not "
                             f"columns of the report ({list(guides)})")
        names.append(row["name"])
        values = {m: row.get("metrics", {}).get(m) for m in guides}
        clean_rows.append({"name": row["name"], "metrics": values,
                           **{k: v for k, v in row.items() if k not in ("name", "metrics")}})
    if len(set(names)) != len(names):
        raise ValueError(f"repeated row names: {names}")
    skipped = [dict(entry) for entry in skipped]
    for entry in skipped:
        if "file" not in entry or "reason" not in entry:
            raise ValueError(f"a skipped entry needs 'file' and 'reason': {entry}")
    report = {"format": FORMAT, "system": system, "num_images": int(num_images),
              "metrics": guides, "rows": clean_rows, "skipped": skipped}
    if num_images_per_metric:
        report["num_images_per_metric"] = {m: int(n) for m, n in num_images_per_metric.items()}
    if notes:
        report["notes"] = [str(n) for n in notes]
    clash = set(extras) & set(report)
    if clash:
        raise ValueError(f"extras may not replace {sorted(clash)}")
    report.update(extras)
    return _strict_report(report)


def write_report(path, report):
    """Writes `report` as strict JSON (non-finite floats as null, noted in "non_finite"; see the
    module docstring) to `path`, atomically; creates the folder. Returns the dict written."""
    report = _strict_report(report)
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    tmp = os.path.join(directory, f".{os.path.basename(path)}.tmp-{uuid.uuid4().hex}")
    try:
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump(report, f, indent=2, allow_nan=False)
            f.write("\n")
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    return report


def _reject_constant(name):
    raise ValueError(f"not strict JSON: {name}")


def read_report(path):
    """The report in `path` (strict JSON: NaN or Infinity in the file is an error)."""
    with open(path, encoding="utf-8") as f:
        report = json.load(f, parse_constant=_reject_constant)
    for key in ("system", "num_images", "metrics", "rows"):
        if key not in report:
            raise ValueError(f"{path} is not an evaluation report: no {key!r}")
    return report


def _cell(metric, value):
    if value is None:
        return "n/a"
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    digits = _DIGITS.get(metric)
    return f"{value:.{digits}f}" if digits is not None else f"{value:.4g}"


def format_table(report, *, list_skipped=False):
    """The report as text: a title line (system, images, skipped), one line per row with its
    figure for every metric ("n/a" where it has none), then one reading-guide line per metric
    (what it measures and which direction is better, with its own image count where that
    differs), then the report's notes; with `list_skipped`, then "Skipped (n):" and one
    "  file: reason" line per skipped file."""
    metrics = list(report["metrics"])
    lines = [["", *metrics]]
    for row in report["rows"]:
        lines.append([row["name"], *(_cell(m, row["metrics"].get(m)) for m in metrics)])
    widths = [max(len(cells[k]) for cells in lines) for k in range(len(metrics) + 1)]

    def line(cells):
        return "  ".join([cells[0].ljust(widths[0])]
                         + [c.rjust(w) for c, w in zip(cells[1:], widths[1:])]).rstrip()

    skipped = len(report.get("skipped", []))
    title = (f"{report['system']}: {report['num_images']} images evaluated"
             + (f" ({skipped} skipped)" if skipped else ""))
    out = [title] + [line(cells) for cells in lines] + ["How to read:"]
    per_metric = report.get("num_images_per_metric") or {}
    for metric, guide in report["metrics"].items():
        count = f" [{per_metric[metric]} images]" if metric in per_metric else ""
        out.append(f"  {metric}: {guide}{count}")
    for note in report.get("notes", []):
        out.append(f"Note: {note}")
    for entry in report.get("non_finite", []):
        out.append(f"Note: {entry['at']} was {entry['value']}, written as null")
    if list_skipped and skipped:
        out.append(f"Skipped ({skipped}):")
        out.extend(f"  {entry['file']}: {entry['reason']}" for entry in report["skipped"])
    return "\n".join(out)


def nima_report(metrics, model_name, **extras):
    """NIMA's evaluation (`nima.metrics.nima_metrics`' dict) as a report: one row, the model,
    with accuracy, lcc, srcc and emd; "num_images" from the metrics; a "correlation_note"
    (LCC/SRCC undefined) is kept as that key and as a note. Other keys of `metrics` (e.g.
    "undecodable_images") are kept as extras."""
    known = set(_NIMA_METRICS) | {"num_images", "correlation_note"}
    note = metrics.get("correlation_note")
    return make_report(
        "nima", [{"name": model_name, "metrics": {m: metrics.get(m) for m in _NIMA_METRICS}}],
        list(_NIMA_METRICS), num_images=metrics["num_images"],
        notes=[f"LCC and SRCC are {note}"] if note else (),
        **({"correlation_note": note} if note else {}),
        **{k: v for k, v in metrics.items() if k not in known}, **extras)
