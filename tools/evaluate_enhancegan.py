"""EnhanceGAN's evaluation (Deng, Loy & Tang, ACM MM 2018, section 4.2) in the common report
layout (`tools.report`).

    from tools import evaluate_enhancegan, report
    results = evaluate_enhancegan.evaluate_enhancegan(
        enhancer, images=val100_paths, critic=critic, nima_model=nima_model,
        cropping_records=datasets.cropping.load_cropping_dataset(parameters_file, image_dir),
        demo_test=datasets.enhancegan_demo.demo_test_images(demo_root), output_dir="eval")
    report.write_report("eval.json", results)
    print(report.format_table(results))

`enhancer` is an `enhancers.enhancegan.PhotoEnhancer`, or any callable with its contract: one
photo, float32 (H, W, 3) RGB in [0, 1] -> a dict with "image" (the enhanced photo, cut to
"box"), "box" (top, left, height, width) in the photo's pixels and, for the attention figures,
"<head>_attention" maps (`tools.enhance.load_saved_model_enhancer(...).predict` of an export is
one). Every photo is enhanced at its own size.

One report, system "enhancegan", rows "input" (the photo as it is; its box is the whole photo)
and "output" (the enhancer's). Each set given adds its columns, with its own image count in
"num_images_per_metric" ("num_images" is all the images evaluated, "num_images_per_set" the
count of each set):

- `images` (Val100, FiveK or any folder; paths): the paper's Tables 1-2, one column per
  evaluator:
    critic_good  (with `critic`) the mean probability of "good" of the critic's good/bad
                 classifier (`models.good_probability` of its 2-way logits), each photo resized
                 whole to 224 x 224 (`enhancers.enhancegan.network_view`, the generator's own
                 view; the paper's AVA-net and CUHK-net are such classifiers, fine-tuned ResNets
                 whose softmax scores Tables 1-2 average);
    nima_mean    (with `nima_model`) the mean NIMA score (`tools.evaluate.nima_mean_scores`:
                 each photo at its own size, area-downscaled above 2 MP, as the WESPE and CAN
                 evaluations score).
  Undecodable files are listed by name under "skipped" and left out.
- `cropping_records` (`datasets.cropping.load_cropping_dataset`): Table 3, per photographer k
  the average overlap ratio (IoU, `overlap_<k>`) and boundary displacement error (`bde_<k>`)
  of the predicted box against photographer k's (`datasets.cropping`). The input row is the
  uncropped photo (a baseline the paper does not print). The notes repeat the output row in the
  paper's form, "0.715 (0.077)".
- `demo_test` (`datasets.enhancegan_demo.demo_test_images` records): the CPU demo's figures.
    psnr      PSNR (`tools.evaluate.psnr`) against the clean original, compared within the box:
              the input (whole) against the whole clean image, the output (cut to its box)
              against the clean image cut to the same box. The demo's clean image has the test
              image's geometry, margins included, so the crop alone neither gains nor loses
              PSNR; the colour operators do. Identical images give +inf, written as null with a
              note (`tools.report`).
    crop_iou  IoU of the box with the recorded subject box (the manifest's y1 y2 x1 x2), the
              input's box being the whole image.

Figures, with `output_dir`: for the first `save_images` photos evaluated (`images` first, then
the demo's, then the cropping set's), `examples/<nn>_<stem>.png`: the input with the predicted
box drawn (yellow; the recorded subject box or photographer 1's box in green) | the output at
its own size (white below it); and `attention/<nn>_<stem>.png`: the input, then for each head
the paper's Fig. 5, the head's attention map upsampled over the input (`attention_overlay`).
The report lists them under "figures".
"""
import os

import numpy as np
import tensorflow as tf
from matplotlib import colormaps

from datasets import cropping
from datasets.images import ImageDecodeError, load_rgb8, to_uint8
from enhancers.enhancegan import good_probability, network_view
from tools import evaluate as metrics
from tools import figures, report

__all__ = ["INPUT", "OUTPUT", "attention_overlay", "box_corners", "critic_good_probability",
           "draw_box", "evaluate_enhancegan"]

INPUT, OUTPUT = "input", "output"
PREDICTED_COLOUR = (255, 214, 0)
REFERENCE_COLOUR = (0, 200, 80)
OVERLAY_ALPHA = 0.5
_ON_IMAGES = "; on the evaluation photos (Tables 1-2)"
_ON_DEMO = "; on the demo's held-out test images"
GUIDES = {
    "critic_good": "mean probability of 'good' by the critic's good/bad classifier (softmax of "
                   "its 2-way fc, photo resized to 224 x 224), 0..1; higher is better" + _ON_IMAGES,
    "nima_mean": report.METRIC_GUIDES["nima_mean"] + _ON_IMAGES,
    "psnr": "PSNR in dB against the clean original within the box (input: whole; output: the "
            "clean original cut to the predicted box); higher is better" + _ON_DEMO,
    "crop_iou": "IoU of the box (input: the whole image) with the recorded subject box, 0..1; "
                "higher is better" + _ON_DEMO,
}


def _overlap_guide(k):
    return (f"photographer {k}: average overlap ratio (IoU) of the box (input: the whole "
            f"photo) with the photographer's crop, 0..1; higher is better (Table 3)")


def _bde_guide(k):
    return (f"photographer {k}: average boundary displacement error of the box, 0..1; lower is "
            f"better (Table 3)")


def box_corners(box):
    """(top, left, height, width) -> (y1, y2, x1, x2), the layout of `datasets.cropping`."""
    top, left, height, width = (int(v) for v in np.asarray(box).reshape(4))
    return (top, top + height, left, left + width)


def critic_good_probability(critic, photo):
    """The critic's probability that `photo` (H, W, 3) in [0, 1] is good, on its 224 x 224
    view (`network_view`)."""
    logits = critic(network_view(np.asarray(photo, np.float32)[np.newaxis]),
                    training=False)["logits"]
    return float(good_probability(logits)[0])


def _photo(image):
    image = np.asarray(image)
    if image.dtype == np.uint8:
        return image.astype(np.float32) / np.float32(255.0)
    return image.astype(np.float32)


def attention_overlay(photo, attention, alpha=OVERLAY_ALPHA, colormap="jet"):
    """The paper's Fig. 5: a head's attention map over the photo, as uint8 (H, W, 3).

    photo: (H, W, 3) float in [0, 1] or uint8. attention: (h, w) (or (1, h, w)), the head's
    pooling weights on its feature map (`PhotoEnhancer`'s "<head>_attention"). The map is
    divided by its largest weight (the strongest position reads 1; an all-zero map stays 0),
    upsampled bilinearly to H x W (`tf.image.resize`, half-pixel centres: each cell covers its
    1/h x 1/w of the photo, as the feature map covers the generator's whole-photo view),
    coloured with the matplotlib colormap `colormap` and blended: (1 - alpha) photo + alpha
    colour.
    """
    photo = _photo(photo)
    if photo.ndim != 3 or photo.shape[-1] != 3:
        raise ValueError(f"expected an (H, W, 3) photo, got shape {photo.shape}")
    weights = np.asarray(attention, np.float32)
    while weights.ndim > 2 and weights.shape[0] == 1:
        weights = weights[0]
    if weights.ndim != 2:
        raise ValueError(f"expected an (h, w) attention map, got shape {weights.shape}")
    peak = float(weights.max())
    weights = weights / peak if peak > 0 else np.zeros_like(weights)
    upsampled = tf.image.resize(weights[..., np.newaxis], photo.shape[:2], method="bilinear")
    upsampled = np.clip(upsampled.numpy()[..., 0], 0.0, 1.0)
    colour = colormaps[colormap](upsampled)[..., :3].astype(np.float32)
    return to_uint8((1.0 - alpha) * photo + alpha * colour)


def draw_box(image, box, colour=PREDICTED_COLOUR, width=None):
    """A uint8 copy of `image` with the outline of `box` (top, left, height, width) drawn inside
    its edges, `width` pixels wide (default: 1/100 of the shorter side, at least 1)."""
    pixels = to_uint8(image).copy()
    height, full_width = pixels.shape[:2]
    top, bottom, left, right = box_corners(box)
    top, left = max(top, 0), max(left, 0)
    bottom, right = min(bottom, height), min(right, full_width)
    if bottom <= top or right <= left:
        return pixels
    line = max(1, min(height, full_width) // 100) if width is None else int(width)
    colour = np.asarray(colour, np.uint8)
    pixels[top:min(top + line, bottom), left:right] = colour
    pixels[max(bottom - line, top):bottom, left:right] = colour
    pixels[top:bottom, left:min(left + line, right)] = colour
    pixels[top:bottom, max(right - line, left):right] = colour
    return pixels


def _padded(image, height):
    """`image` on a white canvas `height` high (below it), for a side by side."""
    pixels = to_uint8(image)
    if pixels.shape[0] >= height:
        return pixels
    canvas = np.full((height,) + pixels.shape[1:], 255, np.uint8)
    canvas[:pixels.shape[0]] = pixels
    return canvas


def _run(enhancer, photo):
    outputs = {name: np.asarray(value) for name, value in enhancer(photo).items()}
    if "image" not in outputs or "box" not in outputs:
        raise ValueError(f"the enhancer must return 'image' and 'box', got {sorted(outputs)}")
    outputs["image"] = np.clip(outputs["image"].astype(np.float32), 0.0, 1.0)
    outputs["box"] = outputs["box"].astype(np.int64).reshape(4)
    return outputs


def _mean(values):
    return float(np.mean(values)) if len(values) else None


def _whole(photo):
    return (0, 0, photo.shape[0], photo.shape[1])


class _Figures:
    """The example and attention PNGs of the first `limit` photos (module docstring)."""

    def __init__(self, output_dir, limit):
        self.output_dir = None if output_dir is None else os.fspath(output_dir)
        self.limit = int(limit) if output_dir is not None else 0
        self.files = {"examples": [], "attention": []}

    def add(self, path, photo, outputs, reference_box=None):
        index = len(self.files["examples"])
        if index >= self.limit:
            return
        stem = f"{index:02d}_{os.path.splitext(os.path.basename(os.fspath(path)))[0]}"
        marked = photo
        if reference_box is not None:
            marked = draw_box(marked, reference_box, REFERENCE_COLOUR)
        marked = draw_box(marked, outputs["box"], PREDICTED_COLOUR)
        example = os.path.join(self.output_dir, "examples", stem + ".png")
        figures.side_by_side({"input (box)": marked,
                              "output": _padded(outputs["image"], photo.shape[0])}, example)
        self.files["examples"].append(example)
        heads = sorted(name[:-len("_attention")] for name in outputs
                       if name.endswith("_attention"))
        if heads:
            panels = {"input": photo}
            for head in heads:
                panels[f"{head} attention"] = attention_overlay(photo,
                                                                outputs[f"{head}_attention"])
            overlay = os.path.join(self.output_dir, "attention", stem + ".png")
            figures.side_by_side(panels, overlay)
            self.files["attention"].append(overlay)


def _load(path, skipped):
    try:
        return load_rgb8(path).astype(np.float32) / np.float32(255.0)
    except ImageDecodeError as error:
        skipped.append({"file": os.fspath(error.path), "reason": error.reason})
        return None


def evaluate_enhancegan(enhancer, *, images=(), critic=None, nima_model=None,
                        cropping_records=None, demo_test=None, output_dir=None, save_images=4,
                        extras=None):
    """Tables 1-3 and the demo's figures of an EnhanceGAN enhancer (module docstring).

    Args:
      enhancer: a `PhotoEnhancer` or a callable with its contract (module docstring).
      images: paths of photos for Tables 1-2 (critic and NIMA columns); may be empty.
      critic: None, or an `EnhanceGANCritic` (its "logits" give critic_good).
      nima_model: None, or a NIMA Keras model (nima_mean).
      cropping_records: None, or `datasets.cropping.CropRecord`s with their paths (Table 3).
      demo_test: None, or `datasets.enhancegan_demo.demo_test_images` records (psnr, crop_iou).
      output_dir: None (no figures), or where `examples/` and `attention/` go.
      save_images: how many photos get an example and an attention figure.
      extras: more entries for the report (e.g. {"stage": "color"}).

    Returns:
      The report (`tools.report` layout), not written: write it with `report.write_report`.
    """
    skipped, guides, counts, notes = [], {}, {}, []
    evaluated = {"images": 0, "demo_test": 0, "cropping": 0}  # photos enhanced, per set
    values = {INPUT: {}, OUTPUT: {}}
    saved = _Figures(output_dir, save_images)

    if images:
        evaluators = {}
        if critic is not None:
            evaluators["critic_good"] = lambda photo: critic_good_probability(critic, photo)
        if nima_model is not None:
            evaluators["nima_mean"] = lambda photo: float(
                metrics.nima_mean_scores(nima_model, [photo])[0])
        scores = {row: {metric: [] for metric in evaluators} for row in values}
        count = 0
        for path in images:
            photo = _load(path, skipped)
            if photo is None:
                continue
            outputs = _run(enhancer, photo)
            count += 1
            for row, image in ((INPUT, photo), (OUTPUT, outputs["image"])):
                for metric, evaluate in evaluators.items():
                    scores[row][metric].append(evaluate(image))
            saved.add(path, photo, outputs)
        evaluated["images"] = count
        for metric in evaluators:
            guides[metric], counts[metric] = GUIDES[metric], count
            for row in values:
                values[row][metric] = _mean(scores[row][metric])

    if demo_test is not None:
        figures_of = {row: {"psnr": [], "crop_iou": []} for row in values}
        count = 0
        for record in demo_test:
            degraded = _load(record["degraded"], skipped)
            clean = _load(record["clean"], skipped) if degraded is not None else None
            if clean is None:
                continue
            if clean.shape != degraded.shape:
                raise ValueError(f"demo test image {record['degraded']} {degraded.shape[:2]} and "
                                 f"its clean original {clean.shape[:2]} differ in size")
            outputs = _run(enhancer, degraded)
            top, bottom, left, right = box_corners(outputs["box"])
            subject = np.asarray(record["box"], np.float64)
            count += 1
            figures_of[INPUT]["psnr"].append(metrics.psnr(degraded, clean))
            figures_of[OUTPUT]["psnr"].append(
                metrics.psnr(outputs["image"], clean[top:bottom, left:right]))
            for row, box in ((INPUT, _whole(degraded)), (OUTPUT, outputs["box"])):
                figures_of[row]["crop_iou"].append(
                    float(cropping.overlap_ratio(box_corners(box), subject)))
            y1, y2, x1, x2 = (int(v) for v in subject)
            saved.add(record["degraded"], degraded, outputs, (y1, x1, y2 - y1, x2 - x1))
        evaluated["demo_test"] = count
        for metric in ("psnr", "crop_iou"):
            guides[metric], counts[metric] = GUIDES[metric], count
            for row in values:
                values[row][metric] = _mean(figures_of[row][metric])

    if cropping_records is not None:
        records = list(cropping_records)
        photographers = max((len(record.boxes) for record in records), default=0)
        per_row = {row: {"overlap": [[] for _ in range(photographers)],
                         "bde": [[] for _ in range(photographers)]} for row in values}
        count = 0
        for record in records:
            photo = _load(record.path, skipped)
            if photo is None:
                continue
            outputs = _run(enhancer, photo)
            count += 1
            height, width = photo.shape[:2]
            for row, box in ((INPUT, _whole(photo)), (OUTPUT, outputs["box"])):
                corners = np.asarray(box_corners(box), np.float64)
                for k, truth in enumerate(np.asarray(record.boxes, np.float64)):
                    per_row[row]["overlap"][k].append(float(cropping.overlap_ratio(corners,
                                                                                   truth)))
                    per_row[row]["bde"][k].append(float(cropping.boundary_displacement_error(
                        corners, truth, height, width)))
            y1, y2, x1, x2 = (int(v) for v in record.boxes[0])
            saved.add(record.path, photo, outputs, (y1, x1, y2 - y1, x2 - x1))
        evaluated["cropping"] = count
        paper_form = []
        for k in range(photographers):
            overlap, bde = f"overlap_{k + 1}", f"bde_{k + 1}"
            guides[overlap], guides[bde] = _overlap_guide(k + 1), _bde_guide(k + 1)
            counts[overlap] = counts[bde] = count
            for row in values:
                values[row][overlap] = _mean(per_row[row]["overlap"][k])
                values[row][bde] = _mean(per_row[row]["bde"][k])
            if count:
                paper_form.append(f"Photographer{k + 1} {values[OUTPUT][overlap]:.3f} "
                                  f"({values[OUTPUT][bde]:.3f})")
        if paper_form:
            notes.append("Table 3 (output; average overlap ratio, boundary displacement error "
                         "in parentheses): " + ", ".join(paper_form))

    return report.make_report(
        "enhancegan", [{"name": row, "metrics": figures_} for row, figures_ in values.items()],
        guides, num_images=sum(evaluated.values()), num_images_per_metric=counts,
        skipped=skipped, notes=notes, num_images_per_set=evaluated, figures=saved.files,
        **(extras or {}))
