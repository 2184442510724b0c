"""The held-out real-photo check: an enhancer must not make photos it never saw worse.

DESIGN.md section 6. Every enhancer is run on the held-out photos of `datasets.heldout`
(another source than any demo set), at full size, twice:

- degraded by its demo's own degradation (`datasets.heldout.degrade`): the output must come
  closer to the clean original than the input was: PSNR and SSIM against the original both rise
  (within the output's box when the enhancer crops), and it keeps its detail: `detail_kept`,
  the original's fine detail found in the output over that found in the input, must be at
  least DEGRADED_LIMITS["detail_kept"] (below it, the output is smoothed to a blur: a denoiser
  that removed the detail with the noise raises SSIM but makes the photo worse). The detail
  found in an image is its fine detail (`fine_detail`: Laplacian of Gaussian of the luma,
  sigma DETAIL_SIGMA) projected on the original's: noise, uncorrelated with the original, adds
  nothing to it, so a perfect denoiser keeps 1, and an enhancer is not asked to sharpen beyond
  what its blurred input still holds;
- clean: the output must not get worse. Measured against the input (cut to the output's box
  when the enhancer crops: `check_enhancer`):
    psnr_vs_input  how far the output moves (dB; infinite when unchanged): reported, not judged,
                   since an enhancer may rightly move a clean photo;
    delta_e        mean CIELab distance per pixel (CIE76): reported, not judged;
    colour_cast    the shift of chroma common to all colours, greys included, once changes of
                   lightness and of saturation (`chroma_gain`, reported) are fitted out: a
                   colour drift (limit CLEAN_LIMITS["colour_cast"]; `colour_cast` says how);
    clipped        fraction of 8-bit channel values at 0 or 255, in the input and in the
                   output: reported; judged is `newly_clipped`, the fraction the enhancer drove
                   to 0 or 255 from more than `photo_checks.CLIP_MARGIN` levels inside: blown
                   highlights or crushed shadows (limit "newly_clipped");
    border_ratio   mean luminance of a frame of `photo_checks.BORDER_FRACTION` of the short
                   side, output over input, divided by the same ratio inside the frame: 1 when
                   the border is treated like the rest, below 1 for a dark frame (limit
                   "border_ratio");
    detail_ratio   mean |Laplacian| of the luma, output over input: above 1 when texture or
                   noise is added, e.g. a grid pattern (limit "detail_ratio");
    nima_input, nima_output   the NIMA mean score (when a NIMA is given): reported; for an
                   enhancer steered by that NIMA (PIEA) the output must not score lower.

A personalised enhancer (PieNet) is judged against its user's retouch of the clean photo instead
(`check_enhancer`'s `target`): the output must come closer to it than the photo is, and the
clean rules compare the output with the retouch.

The measures and the limits (CLEAN_LIMITS = `photo_checks.LIMITS`) are `tools.photo_checks`'s,
which `tools.enhance` also applies to every photo it writes. `check_enhancer` measures,
`failures` applies the limits, `heldout_report` makes the table
(`tools.report`); `benchmarks/heldout.py` runs it on the demo exports and PIEA and writes the
pictures; `tests/test_heldout.py` runs it on crops.
"""
import math
import os

import numpy as np
from scipy import ndimage

from datasets import heldout, pienet_demo
from datasets.images import to_uint8
from datasets.pienet import central_view
from enhancers import filters
from enhancers.pienet import preference_from_photos
from tools import enhance, evaluate, figures, personalize, photo_checks, report
from tools.photo_checks import as_float, luma

DETAIL_SIGMA = 1.0  # pixels: the scale of the fine detail `detail_kept` follows
CLEAN_LIMITS = photo_checks.LIMITS
DEGRADED_METRICS = {
    "psnr_input": "PSNR of the degraded input against the clean original, dB",
    "psnr_output": "PSNR of the output against the clean original, dB; must be above "
                   "psnr_input",
    "ssim_input": "SSIM of the degraded input against the clean original",
    "ssim_output": "SSIM of the output against the clean original; must be above ssim_input",
    "detail_kept": "the original's fine detail found in the output, over that found in the "
                   "input (noise adds none); at least 0.5 (below: detail smoothed away)",
}
DEGRADED_LIMITS = {"detail_kept": 0.5}
CLEAN_METRICS = {
    "psnr_vs_input": "PSNR of the output against the clean input, dB: how far it moved "
                     "(reported, not judged)",
    "delta_e": "mean CIELab distance of output and input per pixel (reported, not judged)",
    "colour_cast": f"chroma shift of every colour, output vs input, lightness and saturation "
                   f"changes fitted out; lower is better, at most {CLEAN_LIMITS['colour_cast']}",
    "chroma_gain": "saturation change, output vs input (1: none; reported, not judged)",
    "clipped_input": "fraction of 8-bit values at 0 or 255 in the input (reported)",
    "clipped_output": "the same in the output (reported)",
    "newly_clipped": f"fraction of 8-bit values the output puts at 0 or 255 that were more "
                     f"than {photo_checks.CLIP_MARGIN} levels inside in the input; at most "
                     f"{CLEAN_LIMITS['newly_clipped']} (above: blown highlights, crushed "
                     f"shadows)",
    "border_ratio": f"border over interior luminance change; 1 is best, at least "
                    f"{CLEAN_LIMITS['border_ratio']} (below: a dark frame)",
    "detail_ratio": f"mean |Laplacian| of the luma, output over input; at most "
                    f"{CLEAN_LIMITS['detail_ratio']} (above: added texture or noise)",
    "nima_input": "NIMA mean score of the input, 1..10",
    "nima_output": "NIMA mean score of the output; higher is better (must not be lower for an "
                   "enhancer steered by this NIMA)",
}


def fine_detail(image):
    """The luma's fine detail: its Laplacian of Gaussian at DETAIL_SIGMA (borders mirrored)."""
    return ndimage.gaussian_laplace(luma(image), DETAIL_SIGMA, mode="reflect")


def detail_found(image, original):
    """How much of `original`'s fine detail `image` holds: the least-squares gain of `image`'s
    fine detail on the original's (1 for the original, 0.5 for it at half contrast; noise or
    texture uncorrelated with the original adds nothing, blur lowers it)."""
    reference = fine_detail(original)
    return float((fine_detail(image) * reference).sum() / max((reference ** 2).sum(), 1e-12))


def detail_kept(degraded, output, original):
    """The original's fine detail found in `output` over that found in `degraded`, the input it
    was given (module docstring): about 1 when nothing was smoothed away, more when contrast
    or sharpness came back."""
    return detail_found(output, original) / max(detail_found(degraded, original), 1e-9)


def _nima_score(nima_model, image):
    scores = evaluate.nima_mean_scores(nima_model, [as_float(image).astype(np.float32)])
    return float(scores[0])


def _psnr(a, b):
    """PSNR in dB; None for identical images (infinite; strict JSON has no Infinity)."""
    value = evaluate.psnr(as_float(a), as_float(b))
    return value if math.isfinite(value) else None


def _box_region(box, output, shape, name):
    """The (rows, cols) slices of `box` = (top, left, height, width) in a photo of `shape`,
    checked: inside the photo and of the output's size."""
    try:
        top, left, height, width = (int(v) for v in np.asarray(box).reshape(4))
    except (TypeError, ValueError) as error:
        raise ValueError(f"{name}: the box must be 4 integers (top, left, height, width), got "
                         f"{box!r}") from error
    if (top < 0 or left < 0 or height < 1 or width < 1 or top + height > shape[0]
            or left + width > shape[1]):
        raise ValueError(f"{name}: box {(top, left, height, width)} is not inside the "
                         f"{shape[0]}x{shape[1]} photo")
    if output.shape[:2] != (height, width):
        raise ValueError(f"{name}: the output is {output.shape[0]}x{output.shape[1]}, its box "
                         f"{height}x{width}")
    return slice(top, top + height), slice(left, left + width)


def _enhance(enhance_fn, image, name):
    """(uint8 output, region, box): what `enhance_fn` makes of uint8 `image`; region is the
    (rows, cols) slices of the input the output stands for (the whole photo without a box)."""
    returned = enhance_fn(as_float(image).astype(np.float32))
    box = None
    if isinstance(returned, dict):
        box = returned.get("box")
        returned = returned["image"]
    elif isinstance(returned, tuple) and len(returned) == 2:
        returned, box = returned
    output = to_uint8(np.asarray(returned))
    if box is None:
        if output.shape != image.shape:
            raise ValueError(f"{name}: the output is {output.shape}, the input {image.shape}; "
                             "an enhancer that crops returns its box too")
        return output, (slice(None), slice(None)), None
    region = _box_region(box, output, image.shape, name)
    return output, region, [int(v) for v in np.asarray(box).reshape(4)]


def check_enhancer(name, enhance_fn, photos, degradation, *, nima_model=None, steered=False,
                   picture_dir=None, target=None):
    """Runs `enhance_fn` on the clean and degraded held-out `photos`; returns the results.

    Args:
      name: the enhancer's name in the table ("WESPE demo", ...).
      enhance_fn: float32 (h, w, 3) in [0, 1] -> (h, w, 3) (clipped and quantised to 8 bits
        here, as a written photo is). An enhancer that crops (EnhanceGAN) returns
        (image, box) or a dict with "image" and "box" (an `enhancers.enhancegan.
        PhotoEnhancer`'s output), box = (top, left, height, width) in the input's pixels and
        image of the box's size; every comparison is then made within the box: the clean
        rules compare the output with the input cut to the box (a crop alone changes nothing),
        and the degraded figures compare both the degraded input and the output, cut to the
        box, with the clean original cut to it (so a crop alone does not raise PSNR or SSIM).
        nima_input stays the whole input's score: cropping may rightly raise it.
      photos: {photo name: uint8 (H, W, 3)} (`datasets.heldout.load_photos`, or crops).
      degradation: the enhancer's demo degradation (`datasets.heldout.DEGRADATIONS`).
      nima_model: None, or a NIMA model for nima_input / nima_output on the clean photos.
      steered: the enhancer is steered by `nima_model` (PIEA): its output must not score lower.
      picture_dir: None, or where to write `<name>_<photo>_{degraded,clean}.png` side by sides.
      target: None, or for a personalised enhancer (PieNet) fn(uint8 photo) -> uint8, the photo
        it is asked for (its user's retouch, `datasets.heldout.retouch`); `degradation` is then
        only the table's label. The enhancer runs once, on the clean photo; the "degraded"
        figures compare the photo and the output with the target (PSNR and SSIM must rise:
        the output comes closer to the user's retouch), and the clean figures compare the
        output with the target instead of the input (a cast, clipping, frame or texture the
        user did not ask for); nima_input is the photo's score.

    Returns:
      {"name", "degradation", "steered", "target" (bool), "photos": {photo: {"degraded": {...},
      "clean": {...}}}} with "box" in "degraded" and "clean" when the enhancer returned one.

    Raises:
      ValueError: a box outside the photo or of another size than the output, or an output of
        another size than its input without a box.
    """
    results = {"name": name, "degradation": degradation, "steered": steered,
               "target": target is not None, "photos": {}}
    for photo_name, original in photos.items():
        if target is None:
            degraded, wanted = heldout.degrade(original, degradation), original
        else:
            degraded, wanted = original, target(original)
        restored, region, restored_box = _enhance(enhance_fn, degraded, name)
        if target is None:
            output, clean_region, clean_box = _enhance(enhance_fn, original, name)
            reference = original[clean_region]  # the clean input, cut to the output's box
        else:
            output, clean_region, clean_box = restored, region, restored_box
            reference = wanted[clean_region]
        truth, degraded_in_box = wanted[region], degraded[region]
        cast, gain = photo_checks.colour_cast(reference, output)
        results["photos"][photo_name] = {
            "degraded": {
                "psnr_input": _psnr(degraded_in_box, truth),
                "psnr_output": _psnr(restored, truth),
                "ssim_input": evaluate.ssim(as_float(degraded_in_box), as_float(truth)),
                "ssim_output": evaluate.ssim(as_float(restored), as_float(truth)),
                "detail_kept": detail_kept(degraded_in_box, restored, truth),
            },
            "clean": {
                "psnr_vs_input": _psnr(output, reference),
                "delta_e": photo_checks.mean_delta_e(reference, output),
                "colour_cast": cast,
                "chroma_gain": gain,
                "clipped_input": photo_checks.clipped_fraction(reference),
                "clipped_output": photo_checks.clipped_fraction(output),
                "newly_clipped": photo_checks.newly_clipped(reference, output),
                "border_ratio": photo_checks.border_ratio(reference, output),
                "detail_ratio": photo_checks.detail_ratio(reference, output),
                "nima_input": None if nima_model is None else _nima_score(nima_model, original),
                "nima_output": None if nima_model is None else _nima_score(nima_model, output),
            },
        }
        if restored_box is not None:
            results["photos"][photo_name]["degraded"]["box"] = restored_box
        if clean_box is not None:
            results["photos"][photo_name]["clean"]["box"] = clean_box
        if picture_dir:
            stem = os.path.join(picture_dir, f"{_slug(name)}_{photo_name}")
            if target is None:
                figures.side_by_side({"degraded": degraded_in_box, name: restored,
                                      "original": truth}, f"{stem}_degraded.png")
                figures.side_by_side({"clean input": reference, name: output},
                                     f"{stem}_clean.png")
            else:
                figures.side_by_side({"photo": degraded_in_box, name: restored,
                                      "the user's retouch": truth}, f"{stem}_retouch.png")
    return results


def _slug(text):
    return "".join(c if c.isalnum() else "_" for c in text.lower()).strip("_")


def failures(results):
    """The rules the results break, as sentences naming enhancer and photo ([] if none)."""
    found = []
    for photo, figures_ in results["photos"].items():
        where = f"{results['name']} on {photo}"
        degraded, clean = figures_["degraded"], figures_["clean"]
        task = (results["degradation"] if results.get("target")
                else f"{results['degradation']} degradation")
        against = "the target" if results.get("target") else "the original"
        if _db(degraded["psnr_output"]) <= _db(degraded["psnr_input"]):
            found.append(f"{where} ({task}): PSNR against {against} did not rise "
                         f"({degraded['psnr_input']:.2f} -> {_text(degraded['psnr_output'])} dB)")
        if degraded["ssim_output"] <= degraded["ssim_input"]:
            found.append(f"{where} ({task}): SSIM against {against} did not rise "
                         f"({degraded['ssim_input']:.4f} -> {degraded['ssim_output']:.4f})")
        if degraded["detail_kept"] < DEGRADED_LIMITS["detail_kept"]:
            found.append(f"{where} ({task}): detail smoothed away, detail kept "
                         f"{degraded['detail_kept']:.3f} < {DEGRADED_LIMITS['detail_kept']}")
        if clean["colour_cast"] > CLEAN_LIMITS["colour_cast"]:
            found.append(f"{where} (clean): colour cast {clean['colour_cast']:.2f} > "
                         f"{CLEAN_LIMITS['colour_cast']}")
        if clean["newly_clipped"] > CLEAN_LIMITS["newly_clipped"]:
            found.append(f"{where} (clean): clipped values {clean['clipped_input']:.3f} -> "
                         f"{clean['clipped_output']:.3f}, newly clipped "
                         f"{clean['newly_clipped']:.3f} > {CLEAN_LIMITS['newly_clipped']}")
        if clean["border_ratio"] < CLEAN_LIMITS["border_ratio"]:
            found.append(f"{where} (clean): dark frame, border ratio {clean['border_ratio']:.3f}"
                         f" < {CLEAN_LIMITS['border_ratio']}")
        if clean["detail_ratio"] > CLEAN_LIMITS["detail_ratio"]:
            found.append(f"{where} (clean): added texture, detail ratio "
                         f"{clean['detail_ratio']:.3f} > {CLEAN_LIMITS['detail_ratio']}")
        if (results["steered"] and clean["nima_output"] is not None
                and clean["nima_output"] < clean["nima_input"]):
            found.append(f"{where} (clean): its guide scores the output lower "
                         f"({clean['nima_input']:.3f} -> {clean['nima_output']:.3f})")
    return found


def _db(value):
    """A PSNR figure for comparison: None stands for identical images, +inf dB."""
    return math.inf if value is None else value


def _text(value):
    return "inf" if value is None else f"{value:.2f}"


def heldout_report(all_results, kind):
    """The `kind` ("degraded" or "clean") table of a list of `check_enhancer` results, as a
    `tools.report` report: one row per enhancer and photo."""
    metrics = DEGRADED_METRICS if kind == "degraded" else CLEAN_METRICS
    rows = [{"name": f"{results['name']} / {photo}",
             "metrics": {m: figures_[kind][m] for m in metrics}}
            for results in all_results for photo, figures_ in results["photos"].items()]
    what = ("degraded by each enhancer's demo degradation, against the clean original (a "
            "personalised enhancer: the photo, against its user's retouch)"
            if kind == "degraded" else "clean, output against input (a personalised enhancer: "
            "against its user's retouch)")
    return report.make_report(f"held-out photos, {what}", rows, metrics,
                              num_images=len({photo for results in all_results
                                              for photo in results["photos"]}))


def pienet_new_user(export, user, num_photos=20):
    """A PieNet demo export as the PieNet demo's held-out `user` would use it, for
    `check_enhancer`: (enhance_fn, target, vector).

    The user is new to the export: the vector is the mean embedding (section 3.4) of the first
    `num_photos` of their retouches of the demo's training photos, by the export's run's
    embedding stage (as `tools.personalize` makes it from a folder); the target is their retouch
    of a photo (`datasets.heldout.retouch`). The demo set is the one the run trained on (its
    --demo_dir, or <model_dir>/demo_data).
    """
    config = personalize.export_run_config(export)
    if config.get("dataset") != "demo":
        raise ValueError(f"{export}: trained on --dataset={config.get('dataset')}, not the demo "
                         "set whose held-out users the check personalises to")
    root = config.get("demo_dir") or os.path.join(config["stage_root"], "demo_data")
    users = pienet_demo.demo_users(root, "held_out")
    if user not in users.names:
        raise ValueError(f"{user!r} is not a held-out user of the PieNet demo "
                         f"({', '.join(users.names)})")
    k = users.names.index(user)
    chosen = users.photos(k, "train")[:num_photos]
    weights, _ = personalize.resolve_embedding(export)
    views = np.stack([central_view(users.retouches[k][j], config["embedding_size"])
                      for j in chosen])
    vector = preference_from_photos(personalize.load_embedding(weights), views)
    enhance_fn = enhance.load_pienet_enhancer(export, preference=vector)
    return enhance_fn, (lambda photo: heldout.retouch(photo, user, filters.apply)), vector
