"""Enhance photos with a trained enhancer: `python -m tools.enhance`.

    python -m tools.enhance --saved_model=exports/wespe photo1.jpg photo2.png holidays/ \\
        --output_dir=enhanced

Each photo is enhanced at its own size, one at a time, and written to
`<output_dir>/<stem>.png` (`--format=jpg` for `<stem>.jpg`, quality `--jpeg_quality`, default 95).

Inputs:
- Files, and directories, which stand for the images directly inside them (not recursive;
  extensions .jpg .jpeg .png .bmp .gif .tif .tiff .webp in any case; hidden files skipped).
- Photos are decoded by `datasets.images.load_rgb8`: the EXIF orientation is applied (the output
  is upright and carries no EXIF), grayscale, palette, CMYK and 16-bit images become 8-bit RGB,
  alpha is dropped. No metadata (EXIF, ICC profile) is copied to the output.
- `--max_pixels` (default 50,000,000, e.g. 8000 x 6000 passes): a photo with more pixels is
  refused before it is decoded (Pillow reads the size from the header), with an error naming it,
  its size and the flag; the others are still processed. Exported enhancers are tiled
  (`enhancers.tiling`), so their memory stays bounded whatever the size, but the decoded photo
  and its output still take about 30 bytes a pixel; raise the flag for larger photos.
- A file that cannot be read or enhanced is reported by name and skipped; the others are still
  processed. A summary is printed at the end, and the exit status is 1 if any photo failed.

Checks (ours, DESIGN.md section 6): an enhancer must not make a photo worse and call it done.
- Every output written is compared with its photo (cut to the box when the enhancer crops) by
  `tools.photo_checks.damage`: values newly clipped to black or white (blown highlights,
  crushed shadows), a dark frame, added texture or noise, at the limits of the held-out check.
  What it finds is logged as a warning naming the photo and the output, and listed again in
  the summary under "Look at these before using them"; the output is still written (a user may
  want it) and the exit status is unchanged.
- Loading an export logs, as warnings, the warning in its metadata.json (random backbone or VGG
  weights) and, for a model trained on an embedded demo set, that it is a demonstration.

Outputs:
- `--output_dir` is created if needed; a file there (or above it) is refused in one line before
  anything is read. An existing output file is never replaced unless `--overwrite` is given,
  and an input file is never replaced, even with `--overwrite` (for example `photo.png`
  enhanced into its own directory as PNG). Two inputs that would give the same output name
  (`a.jpg` and `a.png`) are reported: the first one wins. Files are written to a temporary name
  and moved into place, so an interrupted run leaves no half-written photo.

Methods (`--method`):
- `saved_model` (default): a SavedModel exported by `tools.export.export_enhancer` (any
  enhancer: WESPE, CAN, ...). `--saved_model` is a version directory (`exports/wespe/3`) or the
  base directory that TF Serving would be given (`exports/wespe`), in which case the largest
  integer version holding a saved_model.pb is used, and the log says which. Its
  `serving_default` signature is called with float32 [1, h, w, 3] images in [0, 1]; the export
  tiles photos larger than one window (its metadata.json says how), so a 24 MP photo
  enhances in a few GB.
  An EnhanceGAN export (`tools.export.export_enhancegan`, recognised by its `boxes` output)
  works the same way: the output is the enhanced photo cut to the predicted box (its own size),
  and beside it `<stem>.json` records the predicted parameters (strict JSON, UTF-8): "source"
  (the input path), "saved_model" (the version used), "photo" {"height", "width"}, "box"
  {"top", "left", "height", "width"} in the input's pixels, "color" {alpha, beta, a, b, p, q}
  or null, "crop" {"scale": [s1, s2], "translation": [t1, t2]} (rows first) or null,
  "filter_weights" [w_1 ... w_n] or null (`enhancers.enhancegan.parameter_record`; attention
  maps are left out). The JSON follows the photo's rules (never replaces an input, nor an
  existing file without `--overwrite`).

- `pienet`: a PieNet export (`tools.export.export_pienet`, Kim et al. ECCV 2020), which takes a
  preference vector beside each photo: `--preference=<file>` (from `tools.personalize`, section
  3.4) or `--preference_user=<name>`, a training user's vector from the export's metadata.json
  ("users"; `mean` picks "mean_vector", the non-personalised row of Table 1). Photos of any size
  go in whole (not tiled: the encoder pools the whole photo); a vector whose dimension is not
  the export's preference input is refused in one line naming the file.

- `piea`: PIEA (`enhancers.piea`), training-free: each photo's filter parameters are searched
  under the guidance of a NIMA model (`--nima_weights=<whole-NIMA weights file>` with its
  `--backbone`, default inception_v2 as in the paper; without `--nima_weights` the demo NIMA of
  `nima.demo_model()`, which the log says). `--iterations` (20), `--learning_rate` (1e-3) and
  `--proxy_size` (off) as in `enhancers.piea`. PIEA cannot tile (its filters are global and
  scored by NIMA on the whole photo), so without `--proxy_size` a photo above
  `nima.SCORING_MAX_PIXELS` (2 MP) is scored through a proxy of that many pixels (ours, logged
  and kept in the recipe's settings); the parameters found are applied at full size.
  `--piea_select=best` (default, ours) returns the highest-scoring of the input itself and the
  iterates, so a photo never comes back scoring lower than it went in (and an iterate must gain
  at least `--piea_min_gain`, 0.05, over the input); `--piea_select=final`
  returns the last iterate (the paper).
  `--initial_exposure` is the start's exposure in EV (default 1.0, the paper's) or `auto`
  (chosen from the photo's luminance, ours: `enhancers.piea.auto_exposure`). The log gives the
  input's score and the returned photo's, and warns (naming the photo) when the guide is
  saturated. Besides `<stem>.png` it writes `<stem>.recipe.json` (the scores before and after,
  which candidate was returned and why, the adjustments made in a photographer's units,
  warnings, the parameters, score and parameters per iteration;
  `enhancers.piea_report.replay` re-renders the photo from it) and `<stem>.figure.png` (the
  paper's Figure 4 for this photo). A photo smaller than its guide can score
  (`nima.min_input_side`: 32 pixels a side, 224 for VGG16) is skipped by name.

To add a method, write a function that returns `enhance_fn(image) -> image` (float32 (h, w, 3)
RGB in [0, 1] in and out) and register it in `_METHODS`; `enhance_files` does all the I/O. A
method that also writes side files sets `enhance_fn.side_suffixes` (for example
`(".recipe.json",)`), takes `enhance_fn(image, source=<input path>)` and returns
`Enhanced(image, {suffix: bytes})`; the side files `<stem><suffix>` follow the same rules as
the photo (never replace an input, nor an existing file without `--overwrite`).

Library use (no flags involved):

    from tools import enhance
    enhance_fn = enhance.load_saved_model_enhancer("exports/wespe")
    report = enhance.enhance_files(enhance_fn, ["photo.jpg"], "enhanced")
"""
import dataclasses
import io
import json
import os
import time
import uuid

import numpy as np
import tensorflow as tf
from absl import app, flags, logging
from PIL import Image

import nima
from datasets.images import IMAGE_EXTENSIONS, ImageDecodeError, is_image_name, load_rgb8, to_uint8
from enhancers import piea, piea_report
from enhancers.enhancegan import parameter_record
from tools import cli, figures, photo_checks
from tools import report as reports

__all__ = [
    "MAX_PIXELS",
    "OUTPUT_FORMATS",
    "Enhanced",
    "EnhanceReport",
    "enhance_files",
    "expand_inputs",
    "load_pienet_enhancer",
    "load_saved_model_enhancer",
    "define_piea_choice_flags",
    "enhancegan_enhance_fn",
    "piea_enhance_fn",
    "resolve_saved_model_dir",
]

OUTPUT_FORMATS = {"png": ".png", "jpg": ".jpg"}
MAX_PIXELS = 50_000_000  # --max_pixels: 8000 x 6000 passes (module docstring)
_SAVED_MODEL_FILES = ("saved_model.pb", "saved_model.pbtxt")
_METADATA_FILE = os.path.join("assets.extra", "metadata.json")  # tools.export.METADATA_FILE


# --------------------------------------------------------------------------- SavedModel method


def _has_saved_model(path):
    return any(os.path.isfile(os.path.join(path, name)) for name in _SAVED_MODEL_FILES)


def resolve_saved_model_dir(path):
    """A SavedModel directory from a version directory or a TF Serving base directory.

    Returns `path` itself if it holds a saved_model.pb, otherwise its largest integer
    subdirectory that does (logged). Raises FileNotFoundError naming `path` if neither.
    """
    path = os.fspath(path)
    if _has_saved_model(path):
        return path
    if not os.path.isdir(path):
        raise FileNotFoundError(f"No SavedModel at {path!r}: no such directory")
    versions = {
        int(name): name
        for name in os.listdir(path)
        if name.isdigit() and _has_saved_model(os.path.join(path, name))
    }
    if not versions:
        raise FileNotFoundError(
            f"No SavedModel at {path!r}: it holds neither a saved_model.pb nor integer version "
            "directories with one"
        )
    version = max(versions)
    chosen = os.path.join(path, versions[version])
    logging.info("Using version %d of %s (the largest of %d): %s", version, path, len(versions),
                 chosen)
    return chosen


def load_saved_model_enhancer(path, signature="serving_default"):
    """Loads an exported enhancer (`tools.export.export_enhancer` or `export_enhancegan`);
    returns `enhance_fn`.

    `path` as in `resolve_saved_model_dir`. `enhance_fn(image)` takes one float (h, w, 3) RGB
    image in [0, 1] and returns the enhanced float32 (h', w', 3) image, calling the signature
    (one float image input, output `enhanced_images` or its only output) with a batch of one.
    The function keeps the loaded SavedModel alive in its `saved_model` attribute; its `path`
    attribute is the version directory used, its `kind` "enhancegan" for an EnhanceGAN export
    (a signature with a `boxes` output) and "enhancer" otherwise.

    For an EnhanceGAN export the image returned is the enhanced photo cut to its predicted box,
    and `enhance_fn.predict(image)` returns everything the export predicts for the photo, laid
    out as `enhancers.enhancegan.PhotoEnhancer` returns it, as NumPy: "image", "box" (top,
    left, height, width), the parameters and the "<head>_attention" maps.
    """
    version_dir = resolve_saved_model_dir(path)
    loaded = tf.saved_model.load(version_dir)
    if signature not in loaded.signatures:
        raise ValueError(
            f"SavedModel {version_dir!r} has no signature {signature!r}; it has "
            f"{sorted(loaded.signatures)}"
        )
    function = loaded.signatures[signature]
    _, inputs = function.structured_input_signature
    if len(inputs) != 1:
        hint = "; a PieNet export: use --method=pienet" if "preference" in inputs else ""
        raise ValueError(f"Signature {signature!r} of {version_dir!r} takes {sorted(inputs)}; "
                         f"an enhancer takes one float image batch{hint}")
    (input_name,) = inputs
    outputs = list(function.structured_outputs)
    if "enhanced_images" in outputs:
        output_name = "enhanced_images"
    elif len(outputs) == 1:
        output_name = outputs[0]
    else:
        raise ValueError(f"Signature {signature!r} of {version_dir!r} returns {sorted(outputs)}; "
                         "expected 'enhanced_images'")
    crops = "boxes" in outputs and output_name == "enhanced_images"

    def call(image):
        image = np.asarray(image, np.float32)
        if image.ndim != 3 or image.shape[-1] != 3:
            raise ValueError(f"expected an (h, w, 3) image, got shape {image.shape}")
        return function(**{input_name: tf.constant(image[np.newaxis])})

    def predict(image):
        served = call(image)
        box = np.asarray(served["boxes"][0], np.int32)
        result = {"image": np.asarray(served[output_name][0, :box[2], :box[3]], np.float32),
                  "box": box}
        result.update({name: np.asarray(value[0]) for name, value in served.items()
                       if name not in (output_name, "boxes")})
        return result

    def enhance_fn(image):
        if crops:
            return predict(image)["image"]
        return np.asarray(call(image)[output_name][0], np.float32)

    enhance_fn.saved_model = loaded  # signature functions need their object alive
    enhance_fn.path = version_dir
    enhance_fn.kind = "enhancegan" if crops else "enhancer"
    if crops:
        enhance_fn.predict = predict
    logging.info("Loaded enhancer %s (signature %s: %s -> %s%s)", version_dir, signature,
                 input_name, output_name, ", boxes and parameters" if crops else "")
    _log_export_warnings(version_dir)
    return enhance_fn


def enhancegan_enhance_fn(loaded):
    """`enhance_fn` for an EnhanceGAN export loaded by `load_saved_model_enhancer`: the photo cut
    to its box, and `<stem>.json`, its parameters (module docstring, "Methods")."""

    def enhance_fn(image, source=None):
        outputs = loaded.predict(image)
        record = {"source": None if source is None else os.fspath(source),
                  "saved_model": loaded.path,
                  "photo": {"height": int(np.shape(image)[0]), "width": int(np.shape(image)[1])},
                  **parameter_record(outputs)}
        text = reports.strict_dumps(record, f"EnhanceGAN parameters of {source}", indent=2) + "\n"
        return Enhanced(outputs["image"], {".json": text.encode("utf-8")},
                        box=tuple(int(v) for v in outputs["box"]))

    enhance_fn.side_suffixes = (".json",)
    enhance_fn.path = loaded.path
    return enhance_fn


# --------------------------------------------------------------------------- PieNet method


def read_metadata(version_dir):
    """An export's metadata.json (`tools.export.METADATA_FILE`) as a dict; None without one."""
    path = os.path.join(version_dir, _METADATA_FILE)
    if not os.path.isfile(path):
        return None
    with open(path) as stream:
        return json.load(stream)


def export_warnings(version_dir):
    """What a user of the export in `version_dir` must be told before its photos: the warning
    its metadata carries (random backbone or VGG weights: the run was a pipeline test, not a
    model), and that a model trained on an embedded demo set is a demonstration (README, "The
    held-out check", says what each demo does to real photos). [] when there is neither."""
    metadata = read_metadata(version_dir) or {}
    found = [metadata["warning"]] if metadata.get("warning") else []
    config = metadata.get("config") or {}
    if config.get("dataset") == "demo":
        system = str(metadata.get("system") or "this").upper()
        found.append(f"{version_dir} is the {system} demo, trained for minutes on the embedded "
                     "demo set: a demonstration of the pipeline, not a model for your photos; "
                     "the README's held-out check says what it does to real photos.")
    return found


def _log_export_warnings(version_dir):
    for warning in export_warnings(version_dir):
        logging.warning("%s", warning)


def pienet_users(version_dir):
    """{name: vector} of a PieNet export's training users, "mean" their mean (metadata.json)."""
    metadata = read_metadata(version_dir)
    path = os.path.join(version_dir, _METADATA_FILE)
    if metadata is None:
        raise FileNotFoundError(f"{version_dir} has no {_METADATA_FILE}: not a PieNet export of "
                                "tools.export.export_pienet")
    if metadata.get("kind") != "pienet":
        raise ValueError(f"{path}: a {metadata.get('kind')!r} export, not a PieNet one")
    users = {name: np.asarray(v, np.float32) for name, v in (metadata.get("users") or {}).items()}
    if metadata.get("mean_vector") is not None:
        users.setdefault("mean", np.asarray(metadata["mean_vector"], np.float32))
    return users


def load_pienet_enhancer(path, preference=None, preference_user=None):
    """`enhance_fn(image)` for a PieNet export (module docstring, "Methods") with one preference
    vector: the file `preference` (`enhancers.pienet.save_preference`) or the metadata's user
    `preference_user`, or a vector given as an array in `preference`. ValueError naming the
    file or user when it does not fit the export."""
    from enhancers.pienet import load_preference

    if (preference is None) == (preference_user is None):
        raise ValueError("--method=pienet needs one of --preference=<file from "
                         "tools.personalize> or --preference_user=<a training user's name>")
    version_dir = resolve_saved_model_dir(path)
    loaded = tf.saved_model.load(version_dir)
    function = loaded.signatures["serving_default"]
    _, inputs = function.structured_input_signature
    if set(inputs) != {"images", "preference"}:
        raise ValueError(f"{version_dir} takes {sorted(inputs)}, not a PieNet export (images "
                         "and preference)")
    dim = int(inputs["preference"].shape[-1])
    if isinstance(preference, np.ndarray):
        vector, source = np.asarray(preference, np.float32).reshape(-1), "the vector given"
    elif preference is not None:
        vector = load_preference(preference, dimension=None)
        source = preference
    else:
        users = pienet_users(version_dir)
        if preference_user not in users:
            raise ValueError(f"--preference_user={preference_user}: not a user of {version_dir} "
                             f"({', '.join(users) or 'its metadata lists none'})")
        vector, source = users[preference_user], f"user {preference_user} of {version_dir}"
    if vector.shape != (dim,):
        raise ValueError(f"{source}: a preference vector of dimension {vector.shape[0]}, the "
                         f"export {version_dir} takes {dim}")
    batch_vector = tf.constant(vector[np.newaxis])

    def enhance_fn(image):
        image = np.asarray(image, np.float32)
        if image.ndim != 3 or image.shape[-1] != 3:
            raise ValueError(f"expected an (h, w, 3) image, got shape {image.shape}")
        served = function(images=tf.constant(image[np.newaxis]), preference=batch_vector)
        return np.asarray(served["enhanced_images"][0], np.float32)

    enhance_fn.saved_model = loaded
    enhance_fn.path = version_dir
    enhance_fn.kind = "pienet"
    enhance_fn.preference = vector
    logging.info("Loaded PieNet %s with the preference of %s (|f| = %.3f)", version_dir, source,
                 float(np.linalg.norm(vector)))
    _log_export_warnings(version_dir)
    return enhance_fn


# --------------------------------------------------------------------------- PIEA method


def piea_enhance_fn(nima_model, nima_description, *, iterations=20, learning_rate=1e-3,
                    proxy_size=None, initial_exposure=piea.INITIAL_EXPOSURE, select="best",
                    min_gain=piea.MIN_SCORE_GAIN):
    """`enhance_fn` for PIEA: the returned photo plus its recipe and figure as side files."""
    def enhancer(proxy):
        return piea.PieaEnhancer(nima_model, iterations=iterations, learning_rate=learning_rate,
                                 proxy_size=proxy, initial_exposure=initial_exposure,
                                 select=select, min_gain=min_gain)

    settings = {"iterations": iterations, "learning_rate": learning_rate,
                "proxy_size": proxy_size, "optimizer": "plain gradient step",
                "initial_exposure": enhancer(proxy_size).initial_exposure, "select": select,
                "min_gain": min_gain}

    def enhance_fn(image, source=None):
        height, width = np.shape(image)[:2]
        proxy = proxy_size
        if proxy is None and height * width > nima.SCORING_MAX_PIXELS:
            proxy = max(nima.scoring_size(height, width, nima.SCORING_MAX_PIXELS))
            logging.info("PIEA %s: %dx%d is above %d pixels; scoring a proxy with longer side "
                         "%d and applying its parameters at full size.", source, width, height,
                         nima.SCORING_MAX_PIXELS, proxy)
        result = enhancer(proxy).enhance(np.asarray(image, np.float32)[np.newaxis],
                                         names=[source or "photo"])
        recipe = piea_report.recipe(result, 0, source=source, nima=nima_description,
                                    settings=dict(settings, proxy_size=proxy))
        logging.info("PIEA %s: NIMA score %.3f (input) -> %.3f; returned %s", source,
                     recipe["score_before"], recipe["score_after"], result.selections[0])
        buffer = io.BytesIO()
        Image.fromarray(figures.piea_figure(image, result, 0)).save(buffer, format="PNG")
        return Enhanced(result.images[0], {
            ".recipe.json": (reports.strict_dumps(recipe, f"PIEA recipe of {source}", indent=2)
                             + "\n").encode("utf-8"),
            ".figure.png": buffer.getvalue(),
        })

    enhance_fn.side_suffixes = (".recipe.json", ".figure.png")
    return enhance_fn


# --------------------------------------------------------------------------- I/O loop


@dataclasses.dataclass
class Enhanced:
    """What an `enhance_fn` with side files returns: the photo, {suffix: file bytes} and, for
    an enhancer that crops, the box (top, left, height, width) in the input's pixels."""

    image: np.ndarray
    side_files: dict = dataclasses.field(default_factory=dict)
    box: tuple | None = None


@dataclasses.dataclass
class EnhanceReport:
    """What `enhance_files` did: `written` (input, output) pairs, `failed` (input, reason),
    `damaged` (input, [what `tools.photo_checks.damage` found]) for outputs written that may be
    worse than their photo."""

    written: list = dataclasses.field(default_factory=list)
    failed: list = dataclasses.field(default_factory=list)
    damaged: list = dataclasses.field(default_factory=list)

    @property
    def ok(self):
        return not self.failed

    def summary(self):
        total = len(self.written) + len(self.failed)
        lines = [f"Enhanced {len(self.written)} of {total} photos."]
        if self.damaged:
            lines.append(f"Look at these before using them: the output may be worse than the "
                         f"photo ({len(self.damaged)}):")
            lines.extend(f"  {path}: {'; '.join(found)}" for path, found in self.damaged)
        if self.failed:
            lines.append(f"Failed ({len(self.failed)}):")
            lines.extend(f"  {path}: {reason}" for path, reason in self.failed)
        return "\n".join(lines)


_NOT_REGULAR = "not a regular file"


def expand_inputs(paths):
    """Files to enhance from files and directories; returns (files, failures).

    Directories give the images directly inside them, sorted. Files are kept whatever their
    extension (the decoder decides). Duplicates (the same file twice) are dropped. `failures`
    lists (path, reason) for paths that do not exist, directories without images, and paths
    that are not regular files (a FIFO, a device: never opened, since reading one can block
    forever).
    """
    files, failures, seen = [], [], set()

    def add(path):
        key = os.path.realpath(path)
        if key not in seen:
            seen.add(key)
            files.append(path)

    for path in paths:
        path = os.fspath(path)
        if os.path.isdir(path):
            names = sorted(name for name in os.listdir(path) if is_image_name(name)
                           and not os.path.isdir(os.path.join(path, name)))
            if not names:
                failures.append((path, "directory holds no images "
                                       f"({', '.join(IMAGE_EXTENSIONS)})"))
            for name in names:
                name = os.path.join(path, name)
                if os.path.isfile(name):
                    add(name)
                else:
                    failures.append((name, _NOT_REGULAR))
        elif os.path.isfile(path):
            add(path)
        elif os.path.exists(path):
            failures.append((path, _NOT_REGULAR))
        else:
            failures.append((path, "no such file or directory"))
    return files, failures


def _file_id(path):
    try:
        stat = os.stat(path)
    except OSError:
        return None
    return (stat.st_dev, stat.st_ino)


def _encode(image, output_format, jpeg_quality):
    buffer = io.BytesIO()
    pixels = Image.fromarray(to_uint8(image))
    if output_format == "jpg":
        pixels.save(buffer, format="JPEG", quality=jpeg_quality)
    else:
        pixels.save(buffer, format="PNG")
    return buffer.getvalue()


def _write(data, output, overwrite):
    """Writes via a temporary file in the same directory; without `overwrite`, never replaces."""
    directory, name = os.path.split(output)
    tmp = os.path.join(directory, f".{name}.tmp-{uuid.uuid4().hex}")
    with open(tmp, "wb") as f:
        f.write(data)
    try:
        if overwrite:
            os.replace(tmp, output)
            return
        try:
            os.link(tmp, output)  # atomic, and fails if `output` appeared meanwhile
        except FileExistsError:
            raise
        except OSError:  # a file system without hard links
            with open(output, "xb") as f:
                f.write(data)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def _image_size(path):
    """(width, height) from the file's header, without decoding it; None if Pillow cannot."""
    if not os.path.isfile(path):  # never open a FIFO (it can block); load_rgb8 reports it
        return None
    try:
        with Image.open(path) as image:
            return image.size
    except Exception:  # the decoder reports unreadable files by name later
        return None


def _too_large(width, height, max_pixels):
    if max_pixels is None or width * height <= max_pixels:
        return None
    return (f"{width}x{height} pixels ({width * height / 1e6:.1f} MP) is above --max_pixels="
            f"{max_pixels}; not enhanced (raise --max_pixels if memory allows)")


def enhance_files(enhance_fn, paths, output_dir, *, output_format="png", jpeg_quality=95,
                  overwrite=False, max_pixels=None):
    """Enhances photo files with `enhance_fn` and writes them to `output_dir`.

    Args:
      enhance_fn: float32 (h, w, 3) RGB in [0, 1] -> enhanced (h', w', 3) image (values are
        clipped to [0, 1] and rounded to 8 bits when written).
      paths: image files and directories (module docstring, "Inputs").
      output_dir: created if missing; outputs are `<output_dir>/<stem>.png` or `.jpg`.
      output_format: "png" (lossless) or "jpg".
      jpeg_quality: Pillow JPEG quality, 1..100, for "jpg".
      overwrite: replace existing output files. Input files are never replaced.
      max_pixels: a photo with more pixels fails (checked from its header before decoding);
        None: no limit.

    Returns:
      EnhanceReport. A photo that fails (unreadable, output exists, enhance_fn raises ...) is
      logged by name and listed in `failed`; the others are processed.

    Raises:
      NotADirectoryError: `output_dir` is a file or lies under one (before any photo is read).
    """
    if output_format not in OUTPUT_FORMATS:
        raise ValueError(f"output_format must be one of {sorted(OUTPUT_FORMATS)}, "
                         f"got {output_format!r}")
    if not 1 <= int(jpeg_quality) <= 100:
        raise ValueError(f"jpeg_quality must be in [1, 100], got {jpeg_quality}")
    output_dir = os.fspath(output_dir)
    problem = cli.directory_error(output_dir)
    if problem:
        raise NotADirectoryError(f"--output_dir={output_dir}: {problem}")
    files, failures = expand_inputs(paths)
    report = EnhanceReport(failed=list(failures))
    for path, reason in failures:
        logging.error("Skipping %s: %s", path, reason)
    os.makedirs(output_dir, exist_ok=True)

    input_real_paths = {os.path.realpath(path) for path in files}
    input_ids = {_file_id(path) for path in files} - {None}
    side_suffixes = tuple(getattr(enhance_fn, "side_suffixes", ()))
    claimed = {}  # output real path -> the input that claimed it
    for index, path in enumerate(files, 1):
        stem = os.path.splitext(os.path.basename(path))[0]
        output = os.path.join(output_dir, stem + OUTPUT_FORMATS[output_format])
        side_outputs = {suffix: os.path.join(output_dir, stem + suffix) for suffix in side_suffixes}

        def fail(reason):
            logging.error("Skipping %s: %s", path, reason)
            report.failed.append((path, reason))

        problem = _output_problem([output, *side_outputs.values()], claimed, input_real_paths,
                                  input_ids, overwrite)
        if problem:
            fail(problem)
            continue
        for name in (output, *side_outputs.values()):
            claimed[os.path.realpath(name)] = path

        size = _image_size(path)
        if size and _too_large(*size, max_pixels):
            fail(_too_large(*size, max_pixels))
            continue
        start = time.perf_counter()
        try:
            image = load_rgb8(path).astype(np.float32) / np.float32(255.0)
        except ImageDecodeError as error:
            fail(f"cannot read image: {error.reason}")
            continue
        if _too_large(image.shape[1], image.shape[0], max_pixels):
            fail(_too_large(image.shape[1], image.shape[0], max_pixels))
            continue
        try:
            returned = enhance_fn(image, source=path) if side_suffixes else enhance_fn(image)
            side_files, box = {}, None
            if isinstance(returned, Enhanced):
                returned, side_files, box = returned.image, returned.side_files, returned.box
            enhanced = np.asarray(returned)
            if enhanced.ndim != 3 or enhanced.shape[-1] != 3 or 0 in enhanced.shape:
                raise ValueError(f"enhancer returned shape {enhanced.shape}, not (h, w, 3)")
            if set(side_files) != set(side_suffixes):
                raise ValueError(f"enhancer returned side files {sorted(side_files)}, declared "
                                 f"{sorted(side_suffixes)}")
        except Exception as error:  # one photo's failure must not stop the others
            fail(f"enhancement failed: {type(error).__name__}: {error}")
            continue
        seconds = time.perf_counter() - start
        writes = [(_encode(enhanced, output_format, jpeg_quality), output)]
        writes += [(side_files[suffix], name) for suffix, name in side_outputs.items()]
        try:
            for data, name in writes:
                _write(data, name, overwrite)
        except FileExistsError:
            fail(f"output file exists: {name} (use --overwrite to replace it)")
            continue
        except OSError as error:
            fail(f"cannot write {name}: {error}")
            continue
        report.written.append((path, output))
        logging.info("[%d/%d] %s (%dx%d) -> %s: enhanced in %.2f s, %.2f s with writing",
                     index, len(files), path, image.shape[1], image.shape[0], output, seconds,
                     time.perf_counter() - start)
        damage = _damage(to_uint8(image), to_uint8(enhanced), box)
        if damage:
            report.damaged.append((path, damage))
            logging.warning("%s: look at %s before using it, it may be worse than the photo: %s",
                            path, output, "; ".join(damage))
    return report


def _damage(image, enhanced, box):
    """`tools.photo_checks.damage` of an output against its photo (uint8; the photo cut to
    `box` when the enhancer crops); [] for an output of another size without a box."""
    if box is not None:
        top, left, height, width = box
        image = image[top:top + height, left:left + width]
    if image.shape != enhanced.shape:
        return []
    return photo_checks.damage(image, enhanced)


def _output_problem(outputs, claimed, input_real_paths, input_ids, overwrite):
    """Why these output files must not be written for this input, or None."""
    for output in outputs:
        real_output = os.path.realpath(output)
        if real_output in claimed:
            return f"its output {output} is already the output of {claimed[real_output]}"
        if real_output in input_real_paths or _file_id(output) in input_ids:
            return f"refusing to overwrite input file {output}"
        if os.path.lexists(output) and not overwrite:
            return f"output file exists: {output} (use --overwrite to replace it)"
    return None


# --------------------------------------------------------------------------- command line


def _saved_model_method(FLAGS):
    if not FLAGS.saved_model:
        raise app.UsageError("--method=saved_model needs --saved_model=<export dir>")
    loaded = load_saved_model_enhancer(FLAGS.saved_model)
    if loaded.kind == "enhancegan":
        return enhancegan_enhance_fn(loaded)
    return loaded


def _pienet_method(FLAGS):
    if not FLAGS.saved_model:
        raise app.UsageError("--method=pienet needs --saved_model=<PieNet export dir>")
    return load_pienet_enhancer(FLAGS.saved_model, FLAGS.preference, FLAGS.preference_user)


def _piea_method(FLAGS):
    nima_model, description = piea.load_nima(FLAGS.nima_weights, FLAGS.backbone)
    logging.info("PIEA guided by %s; %d iterations, learning rate %g, proxy size %s, initial "
                 "exposure %s, returning the %s candidate.", description, FLAGS.iterations,
                 FLAGS.learning_rate, FLAGS.proxy_size or "off", FLAGS.initial_exposure,
                 FLAGS.piea_select)
    return piea_enhance_fn(nima_model, description, iterations=FLAGS.iterations,
                           learning_rate=FLAGS.learning_rate, proxy_size=FLAGS.proxy_size,
                           initial_exposure=FLAGS.initial_exposure, select=FLAGS.piea_select,
                           min_gain=FLAGS.piea_min_gain)


def _valid_initial_exposure(text):
    try:
        piea.parse_initial_exposure(text)
    except ValueError:
        return False
    return True


def define_piea_choice_flags(flag_values, prefix=""):
    """--initial_exposure and --piea_select, PIEA's choices beyond the paper, shared by every
    tool that runs PIEA (`prefix` starts their help)."""
    flags.DEFINE_string(
        "initial_exposure", str(piea.INITIAL_EXPOSURE),
        f"{prefix}the exposure PIEA starts from, in EV (1.0: the paper's), or 'auto': chosen "
        "from the photo's luminance (ours; enhancers.piea.auto_exposure).",
        flag_values=flag_values)
    flags.register_validator(
        "initial_exposure", _valid_initial_exposure,
        message="--initial_exposure must be 'auto' or a number of EV in (-3.5, 3.5)",
        flag_values=flag_values)
    flags.DEFINE_enum(
        "piea_select", "best", list(piea.SELECTIONS),
        f"{prefix}which candidate PIEA returns: 'best' (ours): the highest-scoring of the input "
        "and the iterates, never a photo the guide scores lower than the input; 'final': the "
        "last iterate (the paper's Algorithm 1).", flag_values=flag_values)
    flags.DEFINE_float(
        "piea_min_gain", piea.MIN_SCORE_GAIN,
        f"{prefix}with --piea_select=best, an iterate is returned instead of the input only if "
        "its NIMA score is at least this much higher (ours; 0: any gain).", lower_bound=0.0,
        upper_bound=piea.MAX_SCORE - 1e-6, flag_values=flag_values)


# --method name -> function(FLAGS) returning enhance_fn.
_METHODS = {"saved_model": _saved_model_method, "pienet": _pienet_method, "piea": _piea_method}


def define_flags(flag_values):
    flags.DEFINE_enum("method", "saved_model", list(_METHODS), "How to enhance.",
                      flag_values=flag_values)
    flags.DEFINE_string("saved_model", None, "Exported enhancer: a version directory or the "
                        "base directory (then its largest version).", flag_values=flag_values)
    flags.DEFINE_string("preference", None, "--method=pienet: a preference file "
                        "(tools.personalize).", flag_values=flag_values)
    flags.DEFINE_string("preference_user", None, "--method=pienet: a training user of the "
                        "export's metadata.json, or 'mean'.", flag_values=flag_values)
    flags.DEFINE_string("nima_weights", None, "--method=piea: whole-NIMA weights file "
                        "(model.save_weights); default: the demo NIMA.", flag_values=flag_values)
    flags.DEFINE_enum("backbone", "inception_v2", list(nima.BACKBONES),
                      "--method=piea: the backbone of --nima_weights.", flag_values=flag_values)
    flags.DEFINE_integer("iterations", 20, "--method=piea: M, the gradient steps per photo.",
                         lower_bound=0, flag_values=flag_values)
    flags.DEFINE_float("learning_rate", 1e-3, "--method=piea: lambda of the gradient step.",
                       flag_values=flag_values)
    cli.require_finite("learning_rate", flag_values)
    flags.DEFINE_integer("proxy_size", None, "--method=piea: score a copy with this longer "
                         "side and apply the parameters found at full size (default: off, "
                         "score at full size as the paper).", lower_bound=32,
                         flag_values=flag_values)
    define_piea_choice_flags(flag_values, prefix="--method=piea: ")
    flags.DEFINE_string("output_dir", None, "Where the enhanced photos go (created).",
                        flag_values=flag_values)
    cli.require_directory("output_dir", flag_values)
    flags.DEFINE_enum("format", "png", list(OUTPUT_FORMATS), "Output file format.",
                      flag_values=flag_values)
    flags.DEFINE_integer("jpeg_quality", 95, "JPEG quality of --format=jpg.", lower_bound=1,
                         upper_bound=100, flag_values=flag_values)
    flags.DEFINE_integer("max_pixels", MAX_PIXELS, "Refuse (with an error naming it) a photo "
                         "with more pixels, before decoding it; the other photos go on.",
                         lower_bound=1, flag_values=flag_values)
    flags.DEFINE_bool("overwrite", False, "Replace existing output files (never input files).",
                      flag_values=flag_values)
    flags.mark_flag_as_required("output_dir", flag_values=flag_values)


def run(FLAGS, args):
    paths = args
    if not paths:
        raise app.UsageError("Name at least one photo or directory to enhance.")
    try:
        enhance_fn = _METHODS[FLAGS.method](FLAGS)
    except (FileNotFoundError, ValueError) as error:
        logging.error("%s", error)
        return 1
    report = enhance_files(
        enhance_fn, paths, FLAGS.output_dir, output_format=FLAGS.format,
        jpeg_quality=FLAGS.jpeg_quality, overwrite=FLAGS.overwrite, max_pixels=FLAGS.max_pixels,
    )
    print(report.summary())
    return 0 if report.ok else 1


def main(argv=None):
    """`python -m tools.enhance` in this process: `argv` as sys.argv; returns the exit code."""
    return cli.main(define_flags, run, argv)


if __name__ == "__main__":
    cli.run_main(define_flags, run)
