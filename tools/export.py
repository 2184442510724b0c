"""SavedModel export for TensorFlow Serving (DESIGN.md section 4, "Serving").

Conventions fixed there and implemented here: a float-tensor endpoint as `serving_default`, a
bytes endpoint taking encoded images (`tf.string`, decoded on the CPU), and export into
`<export_dir>/<version>/` with integer versions, never over an existing version.

The core, `export_saved_model`, is model-agnostic: the caller passes the signature functions, so
the enhancers export through it too (`enhancer_signatures`, `export_enhancer` serve any Keras
image-to-image model; `enhancegan_signatures`, `export_enhancegan` serve EnhanceGAN's photo
enhancer with its predicted parameters). A JSON `metadata` dict (training preset, steps,
figures ...) can ride along in `<version>/assets.extra/metadata.json`. It is built on
`keras.export.ExportArchive` because a SavedModel saved with `tf.saved_model.save` from a plain
`tf.Module` holding a Keras 3 model loads in TF2 but fails in the session-based loader that TF
Serving and `saved_model_cli run` use ("Could not find variable .../moving_mean") unless every
variable is tracked by hand; ExportArchive tracks them.

    python -m tools.export --backbone=mobilenet --weights=nima.weights.h5 --export_dir=exports/nima
"""
import contextlib
import os
import shutil

import keras
import tensorflow as tf
from absl import flags, logging

import nima
from datasets.images import decode_image_tensor
from enhancers import tiling
from enhancers.enhancegan import PhotoEnhancer
from tools import cli, leftovers, report

__all__ = [
    "METADATA_FILE",
    "enhancegan_signatures",
    "enhancer_signatures",
    "enhancer_tiling",
    "export_enhancegan",
    "export_enhancer",
    "export_pienet",
    "export_saved_model",
    "export_nima",
    "map_over_image_bytes",
    "nima_signatures",
    "pienet_signatures",
    "resolve_version",
]


def _existing_versions(export_dir):
    """Integer version directories under export_dir, as TF Serving sees them: {version: name}."""
    if not os.path.isdir(export_dir):
        return {}
    versions = {}
    for name in os.listdir(export_dir):
        if name.isdigit() and os.path.isdir(os.path.join(export_dir, name)):
            versions[int(name)] = name
    return versions


def resolve_version(export_dir, version=None):
    """Returns the version to write: `version`, or the largest existing one plus 1 (1 if none).

    Raises FileExistsError naming the path when `version` already exists (DESIGN.md section 4:
    never export over an existing version), ValueError when it is not a non-negative integer.
    """
    existing = _existing_versions(export_dir)
    if version is None:
        return max(existing, default=0) + 1
    if isinstance(version, bool) or not isinstance(version, int) or version < 0:
        raise ValueError(f"version must be a non-negative integer, got {version!r}")
    path = os.path.join(export_dir, str(version))
    if version in existing or os.path.exists(path):
        found = os.path.join(export_dir, existing.get(version, str(version)))
        raise FileExistsError(f"Export version already exists, refusing to overwrite: {found}")
    return version


# TF Serving reads nothing from assets.extra except warm-up records (tf_serving_warmup_requests),
# so metadata stored there travels with the version without changing how it is served.
METADATA_FILE = os.path.join("assets.extra", "metadata.json")


@contextlib.contextmanager
def _info_logs_off():
    """TensorFlow's and absl's INFO lines off for the block; warnings and errors still show.

    Why: saving logs, for every endpoint, "input name(s) ... will be renamed" about the
    placeholders of the variables the function captures (one per variable in tf.map_fn's loop:
    40 names for WESPE's G); these are internal, not the signature's inputs, which keep their
    names (`images`, `image_bytes`). Then "Assets written to" the temporary directory and
    "Sharding callback duration". None of it needs acting on, and it buried the run's results.
    """
    verbosity, tf_level = logging.get_verbosity(), tf.get_logger().level
    logging.set_verbosity(logging.WARNING)  # as TensorFlow's own code does, which restores it
    tf.get_logger().setLevel("WARNING")
    try:
        yield
    finally:
        logging.set_verbosity(verbosity)
        tf.get_logger().setLevel(tf_level)


def export_saved_model(model, export_dir, signatures, version=None, metadata=None):
    """Writes a SavedModel for TF Serving into `<export_dir>/<version>/` and returns that path.

    `model` is a Keras model or layer, or a list of them, whose variables the signatures use.
    `signatures` maps each signature name to `(fn, input_signature)`: `fn` takes the tensors
    described by the list of `tf.TensorSpec` (their names become the signature's input names)
    and returns a dict whose keys become the output names. Name the float-tensor endpoint
    `serving_default` (DESIGN.md section 4, "Serving").

    `version=None` takes the next integer after the largest existing version (1 if none). An
    existing version is never overwritten (FileExistsError). The SavedModel is written to a
    hidden, non-integer sibling directory (which Serving ignores; named with the writer's pid,
    `tools.leftovers`) and renamed into place at the end, so a crash never leaves a half-written
    version for Serving to load. Local paths only.

    `metadata`, a JSON-serialisable dict, is written to `<version>/assets.extra/metadata.json`
    (`METADATA_FILE`; UTF-8, keys sorted) before that rename, so a version never appears without
    it. TF Serving ignores assets.extra apart from warm-up records, and `tf.saved_model.load` does
    not read it either: read it back with `json.load`. It is strict JSON: a non-finite float is
    written as null and listed under "non_finite" (`tools.report.strict_dumps`); a value that
    JSON cannot encode raises TypeError before anything is written.
    """
    if not signatures:
        raise ValueError("signatures must name at least one endpoint")
    metadata_json = None
    if metadata is not None:
        if not isinstance(metadata, dict):
            raise TypeError(f"metadata must be a dict, got {type(metadata).__name__}")
        metadata_json = report.strict_dumps(metadata, "Export metadata", indent=2,
                                            sort_keys=True)
    export_dir = os.fspath(export_dir)
    version = resolve_version(export_dir, version)
    final_path = os.path.join(export_dir, str(version))

    archive = keras.export.ExportArchive()
    for resource in model if isinstance(model, (list, tuple)) else [model]:
        archive.track(resource)
    for name, (fn, input_signature) in signatures.items():
        archive.add_endpoint(name, fn, input_signature=list(input_signature))

    os.makedirs(export_dir, exist_ok=True)
    tmp_path = os.path.join(export_dir, leftovers.export_temp_name(version))
    try:
        with _info_logs_off():
            archive.write_out(tmp_path, verbose=False)
        if metadata_json is not None:
            metadata_path = os.path.join(tmp_path, METADATA_FILE)
            os.makedirs(os.path.dirname(metadata_path), exist_ok=True)
            with open(metadata_path, "w", encoding="utf-8") as f:
                f.write(metadata_json + "\n")
        # os.rename replaces an empty directory silently, so check again just before it.
        resolve_version(export_dir, version)
        try:
            os.rename(tmp_path, final_path)
        except OSError as error:
            raise FileExistsError(
                f"Export version already exists, refusing to overwrite: {final_path}"
            ) from error
    finally:
        if os.path.exists(tmp_path):
            shutil.rmtree(tmp_path, ignore_errors=True)
    return final_path


def map_over_image_bytes(fn, image_bytes, fn_output_signature):
    """Runs `fn` on each encoded image of a `tf.string [batch]`, one image at a time.

    Each element (JPEG or PNG, any size, grayscale and 16-bit included) is decoded on the CPU
    (DESIGN.md section 4, "Serving") by `datasets.images.decode_image_tensor` to float32 RGB in
    [0, 1] and passed to `fn` as a batch of one, `[1, h, w, 3]`, so images of different sizes can
    share a request. `fn` returns a tensor or a nest of tensors with leading dimension 1;
    `fn_output_signature` describes one image's output without that dimension (for example
    `tf.TensorSpec([10], tf.float32)`), so it suits models whose outputs have a fixed size, or
    enhancers whose `fn` encodes its image to a scalar `tf.string`. Returns the per-image outputs
    stacked along a new batch dimension.
    """

    def one_image(encoded):
        with tf.device("/cpu:0"):
            image = decode_image_tensor(encoded)
        outputs = fn(image[tf.newaxis])
        return tf.nest.map_structure(lambda tensor: tensor[0], outputs)

    return tf.map_fn(one_image, image_bytes, fn_output_signature=fn_output_signature)


def _image_signatures(serve_images, serve_image_bytes):
    """The two endpoints every exported model has: float `images` as `serving_default`, and
    encoded `image_bytes` (tf.string [batch]) as `serve_image_bytes`."""
    return {
        "serving_default": (
            serve_images,
            [tf.TensorSpec([None, None, None, 3], tf.float32, name="images")],
        ),
        "serve_image_bytes": (
            serve_image_bytes,
            [tf.TensorSpec([None], tf.string, name="image_bytes")],
        ),
    }


def _nima_outputs(distribution):
    distribution = tf.cast(distribution, tf.float32)
    return {
        "distribution": distribution,
        "mean_score": nima.mean_score(distribution),
        "std_score": nima.std_score(distribution),
    }


def nima_signatures(model):
    """The NIMA serving signatures for `export_saved_model` (DESIGN.md section 4, "Serving").

    `serving_default` takes `images`, float32 [batch, h, w, 3] in [0, 1]; `serve_image_bytes`
    takes `image_bytes`, tf.string [batch] of encoded JPEG/PNG images, possibly of different
    sizes. Both return `distribution` (float32 [batch, 10]), `mean_score` and `std_score`
    (float32 [batch]). Photos above `nima.SCORING_MAX_PIXELS` (2 MP) are scored after an area
    downscale to that many pixels (`nima.downscale_for_scoring`), so that a 24 MP photo is
    scored in bounded memory; smaller ones at their own size, as before.
    """

    def score(images):
        return model(nima.downscale_for_scoring(images), training=False)

    def serve_images(images):
        return _nima_outputs(score(images))

    def serve_image_bytes(image_bytes):
        distribution = map_over_image_bytes(
            lambda image: tf.cast(score(image), tf.float32),
            image_bytes,
            fn_output_signature=tf.TensorSpec([nima.NUM_BUCKETS], tf.float32),
        )
        return _nima_outputs(distribution)

    return _image_signatures(serve_images, serve_image_bytes)


def export_nima(model, export_dir, version=None, metadata=None):
    """Exports a NIMA model (from `nima.build_nima`) for TF Serving; returns the version path.

    Signatures as in `nima_signatures`; versioning and `metadata` as in `export_saved_model`.
    """
    logging.info("NIMA export: photos above %d pixels are scored after an area downscale to "
                 "that size (nima.downscale_for_scoring).", nima.SCORING_MAX_PIXELS)
    return export_saved_model(
        model, export_dir, nima_signatures(model), version=version, metadata=metadata
    )


def _encode_jpeg(image, quality):
    """One float image [h, w, 3] -> scalar JPEG tf.string; pixels as
    `datasets.images.to_uint8(image, input_precision=True)` (round(255 x) in float32)."""
    with tf.device("/cpu:0"):
        pixels = tf.cast(tf.round(tf.clip_by_value(image, 0.0, 1.0) * 255.0), tf.uint8)
        return tf.io.encode_jpeg(pixels, quality=quality)


def enhancer_tiling(model, tile=True, window_pixels=None):
    """(run, description): `model` tiled by `enhancers.tiling` where it can be (any photo size
    in bounded memory, the same output), else `model` itself; `description` is the tiling plan
    (`TilePlan.as_dict()`) or {"tiled": False, "reason": ...}, for the export's metadata."""
    if not tile:
        return (lambda images: model(images, training=False)), {"tiled": False,
                                                                "reason": "tile=False"}
    try:
        tiler = tiling.tiled(model, window_pixels)
    except ValueError as error:
        logging.warning("Exporting %s untiled (memory grows with the photo): %s",
                        model.name, error)
        return (lambda images: model(images, training=False)), {"tiled": False,
                                                                "reason": str(error)}
    return tiler, {"tiled": True, **tiler.plan.as_dict()}


def enhancer_signatures(model, jpeg_quality=95, tile=True, window_pixels=None):
    """Serving signatures of an image enhancer, for `export_saved_model` (DESIGN.md section 4).

    `model` is any Keras image-to-image model: float32 RGB [batch, h, w, 3] in [0, 1] in, an
    image of the same size out (any float dtype; mixed-precision outputs are cast to float32).
    Fully convolutional models (and `enhancers.can.inference_model`) are tiled by default
    (`enhancer_tiling`): a photo larger than one window of `window_pixels` is enhanced window
    by window in bounded memory with the same result; a smaller one exactly as untiled.

    - `serving_default`: `images`, float32 [batch, h, w, 3] in [0, 1] ->
      `enhanced_images`, float32 [batch, h, w, 3] clipped to [0, 1].
    - `serve_image_bytes`: `image_bytes`, tf.string [batch] of encoded JPEG/PNG/BMP/GIF images,
      of any and different sizes, grayscale, RGBA (alpha dropped) and 16-bit PNG included,
      decoded on the CPU (`map_over_image_bytes`) and enhanced one at a time at their own size ->
      `enhanced_image_bytes`, tf.string [batch] of JPEGs of quality `jpeg_quality` (pixels
      round(clip(x, 0, 1) * 255)). TF Serving's REST API base64-encodes this output because its
      name ends in `_bytes`; send the input as {"b64": ...} for the same reason.
    """
    if isinstance(jpeg_quality, bool) or not isinstance(jpeg_quality, int) or not (
        0 <= jpeg_quality <= 100
    ):
        raise ValueError(f"jpeg_quality must be an integer in [0, 100], got {jpeg_quality!r}")

    run, _ = enhancer_tiling(model, tile, window_pixels)

    def enhance(images):
        enhanced = tf.cast(run(images), tf.float32)
        return tf.clip_by_value(enhanced, 0.0, 1.0)

    def serve_images(images):
        return {"enhanced_images": enhance(images)}

    def serve_image_bytes(image_bytes):
        encoded = map_over_image_bytes(
            lambda image: _encode_jpeg(enhance(image)[0], jpeg_quality)[tf.newaxis],
            image_bytes,
            fn_output_signature=tf.TensorSpec([], tf.string),
        )
        return {"enhanced_image_bytes": encoded}

    return _image_signatures(serve_images, serve_image_bytes)


def export_enhancer(model, export_dir, version=None, metadata=None, jpeg_quality=95,
                    tile=True, window_pixels=None):
    """Exports an image enhancer for TF Serving and `tools.enhance`; returns the version path.

    Signatures (tiling included) as in `enhancer_signatures`; versioning and `metadata` as in
    `export_saved_model`, with the tiling plan added to the metadata under "tiling".
    """
    _, description = enhancer_tiling(model, tile, window_pixels)
    return export_saved_model(
        model,
        export_dir,
        enhancer_signatures(model, jpeg_quality=jpeg_quality, tile=tile,
                            window_pixels=window_pixels),
        version=version,
        metadata=({**(metadata or {}), "tiling": description}
                  if metadata is None or isinstance(metadata, dict) else metadata),
    )


# --------------------------------------------------------------------------- EnhanceGAN

ENHANCEGAN_KIND = "enhancegan"  # metadata.json's "kind" for an EnhanceGAN export


def _photo_enhancer(enhancer):
    """`enhancer` itself, or a bare EnhanceGAN generator wrapped in a `PhotoEnhancer`."""
    if isinstance(enhancer, PhotoEnhancer):
        return enhancer
    if isinstance(enhancer, keras.Model):
        return PhotoEnhancer(enhancer)
    raise TypeError(f"expected an enhancers.enhancegan.PhotoEnhancer (or its generator), got "
                    f"{type(enhancer).__name__}")


def _enhancegan_parameter_specs(enhancer):
    """{name: tf.TensorSpec} of one photo's outputs besides the image and the box (parameters
    and attention maps; all of fixed shape), read from a call on a small photo."""
    outputs = enhancer(tf.fill([8, 8, 3], 0.5))
    return {name: tf.TensorSpec(value.shape, value.dtype) for name, value in outputs.items()
            if name not in ("image", "box")}


def enhancegan_signatures(enhancer, jpeg_quality=95):
    """Serving signatures of EnhanceGAN's photo enhancer, for `export_saved_model` (DESIGN.md
    section 4, "Serving"; issue 16: "the enhanced image plus every predicted parameter").

    `enhancer` is an `enhancers.enhancegan.PhotoEnhancer`: each photo of a batch is enhanced on
    its own (`tf.map_fn`), the generator seeing it resized to 224 x 224 and the parameters
    applied at its full size.

    - `serving_default`: `images`, float32 [N, H, W, 3] in [0, 1] (same-size photos) ->
        `enhanced_images` float32 [N, h, w, 3]: photo i's enhanced output, cut to its box, at
          the top left, zero below and to the right of it; h, w are the largest box height and
          width of the batch, so with one photo, or boxes of one size (always without a crop
          head), there is no padding;
        `boxes` int32 [N, 4]: (top, left, height, width) of each box in its photo's pixels,
          also the valid extent of its `enhanced_images` (rows [0, height), cols [0, width));
        the parameters: `alpha`, `beta`, `a`, `b`, `p`, `q` [N] (colour head);
          `crop_scale`, `crop_translation` [N, 2], rows first (crop head); `filter_weights`
          [N, n] (filters head);
        `<head>_attention` [N, h', w']: each head's pooling weights on its feature map (7 x 7),
          summing to 1 (the paper's Fig. 5).
      An empty batch gives empty outputs (`enhanced_images` [0, 0, 0, 3]).
    - `serve_image_bytes`: `image_bytes`, tf.string [N] of encoded images of any and different
      sizes (decoded on the CPU, `map_over_image_bytes`) -> `enhanced_image_bytes`, tf.string
      [N] of JPEGs of quality `jpeg_quality` of each output at its own size, and the same
      `boxes`, parameters and attention maps as above.
    """
    if isinstance(jpeg_quality, bool) or not isinstance(jpeg_quality, int) or not (
        0 <= jpeg_quality <= 100
    ):
        raise ValueError(f"jpeg_quality must be an integer in [0, 100], got {jpeg_quality!r}")
    enhancer = _photo_enhancer(enhancer)
    specs = _enhancegan_parameter_specs(enhancer)
    box_spec = tf.TensorSpec([4], tf.int32)

    def parameters(outputs):
        return {name: outputs[name] for name in specs}

    def serve_images(images):
        shape = tf.shape(images)

        def one(photo):
            outputs = enhancer(photo)
            image = tf.image.pad_to_bounding_box(outputs["image"], 0, 0, shape[1], shape[2])
            return {"enhanced_images": image, "boxes": outputs["box"], **parameters(outputs)}

        def enhance_all():
            served = tf.map_fn(one, images, fn_output_signature={
                "enhanced_images": tf.TensorSpec([None, None, 3], tf.float32),
                "boxes": box_spec, **specs})
            boxes = served["boxes"]
            height, width = tf.reduce_max(boxes[:, 2]), tf.reduce_max(boxes[:, 3])
            served["enhanced_images"] = served["enhanced_images"][:, :height, :width]
            return served

        def nothing():  # map_fn cannot stack zero images of an unknown size
            return {"enhanced_images": tf.zeros([0, 0, 0, 3]),
                    "boxes": tf.zeros([0, 4], tf.int32),
                    **{name: tf.zeros([0, *spec.shape], spec.dtype)
                       for name, spec in specs.items()}}

        return tf.cond(shape[0] > 0, enhance_all, nothing)

    def serve_image_bytes(image_bytes):
        def one(image):
            outputs = enhancer(image[0])
            served = {"enhanced_image_bytes": _encode_jpeg(outputs["image"], jpeg_quality),
                      "boxes": outputs["box"], **parameters(outputs)}
            return tf.nest.map_structure(lambda tensor: tensor[tf.newaxis], served)

        return map_over_image_bytes(one, image_bytes, fn_output_signature={
            "enhanced_image_bytes": tf.TensorSpec([], tf.string), "boxes": box_spec, **specs})

    return _image_signatures(serve_images, serve_image_bytes)


def export_enhancegan(enhancer, export_dir, version=None, metadata=None, jpeg_quality=95):
    """Exports EnhanceGAN's photo enhancer (`enhancers.enhancegan.PhotoEnhancer`, or a bare
    generator, wrapped in one) for TF Serving and `tools.enhance`; returns the version path.

    Signatures as in `enhancegan_signatures`; versioning and `metadata` as in
    `export_saved_model`, with "kind": "enhancegan" and what the export predicts added under
    "enhancegan" (heads, parameters, the generator's input size and resize).
    """
    enhancer = _photo_enhancer(enhancer)
    signatures = enhancegan_signatures(enhancer, jpeg_quality=jpeg_quality)
    parameters = [name for name in _enhancegan_parameter_specs(enhancer)
                  if not name.endswith("_attention")]
    description = {
        "heads": list(getattr(enhancer.generator, "head_names", ())),
        "parameters": parameters,
        "input_size": enhancer.input_size,
        "resize": ("whole photo to input_size x input_size, aspect not kept, bilinear"
                   + (" with antialiasing" if enhancer.antialias else "")),
        "box": "(top, left, height, width) in the photo's pixels",
        "jpeg_quality": jpeg_quality,
    }
    if metadata is not None and not isinstance(metadata, dict):
        raise TypeError(f"metadata must be a dict, got {type(metadata).__name__}")
    return export_saved_model(
        enhancer.models, export_dir, signatures, version=version,
        metadata={**(metadata or {}), "kind": ENHANCEGAN_KIND, "enhancegan": description})


# --------------------------------------------------------------------------------- PieNet

PIENET_KIND = "pienet"  # metadata.json's "kind" for a PieNet export


def _pienet_dim(model):
    return int(model.input["preference"].shape[-1])


def pienet_signatures(model, jpeg_quality=95):
    """Serving signatures of PieNet (`enhancers.pienet.build_pienet`), for `export_saved_model`:
    an image input and a preference-vector input (Kim et al., section 3.2), any image size.

    - `serving_default`: `images`, float32 [N, H, W, 3] in [0, 1], and `preference`, float32
      [N, d] (one vector per image, e.g. a user's from `enhancers.pienet.load_preference` or the
      metadata's training users) -> `enhanced_images`, float32 [N, H, W, 3], I + dI clipped to
      [0, 1].
    - `serve_image_bytes`: `image_bytes`, tf.string [N] of encoded images of any and different
      sizes (decoded on the CPU as `map_over_image_bytes` does), and `preference` [N, d] ->
      `enhanced_image_bytes`, tf.string [N] of JPEGs of quality `jpeg_quality`.
    Not tiled: the encoder's global pooling sees the whole photo.
    """
    if isinstance(jpeg_quality, bool) or not isinstance(jpeg_quality, int) or not (
        0 <= jpeg_quality <= 100
    ):
        raise ValueError(f"jpeg_quality must be an integer in [0, 100], got {jpeg_quality!r}")
    dim = _pienet_dim(model)

    def enhance(images, preference):
        outputs = model({"images": images, "preference": preference}, training=False)
        return tf.clip_by_value(tf.cast(outputs["enhanced"], tf.float32), 0.0, 1.0)

    def serve_images(images, preference):
        return {"enhanced_images": enhance(images, preference)}

    def serve_image_bytes(image_bytes, preference):
        def one(element):
            encoded, vector = element
            with tf.device("/cpu:0"):
                image = decode_image_tensor(encoded)
            return _encode_jpeg(enhance(image[tf.newaxis], vector[tf.newaxis])[0], jpeg_quality)

        encoded = tf.map_fn(one, (image_bytes, preference),
                            fn_output_signature=tf.TensorSpec([], tf.string))
        return {"enhanced_image_bytes": encoded}

    preference_spec = tf.TensorSpec([None, dim], tf.float32, name="preference")
    return {
        "serving_default": (serve_images, [
            tf.TensorSpec([None, None, None, 3], tf.float32, name="images"), preference_spec]),
        "serve_image_bytes": (serve_image_bytes, [
            tf.TensorSpec([None], tf.string, name="image_bytes"), preference_spec]),
    }


def export_pienet(model, export_dir, version=None, metadata=None, jpeg_quality=95):
    """Exports PieNet for TF Serving and `tools.enhance`; returns the version path.

    Signatures as in `pienet_signatures`; versioning and `metadata` as in `export_saved_model`,
    with "kind": "pienet" and "pienet": {"preference_dim", the inputs and outputs} added; the
    caller's metadata carries the training users' vectors ("users") so that a user can pick one.
    """
    if metadata is not None and not isinstance(metadata, dict):
        raise TypeError(f"metadata must be a dict, got {type(metadata).__name__}")
    description = {
        "preference_dim": _pienet_dim(model),
        "inputs": "images float32 [N, H, W, 3] in [0, 1] (or image_bytes) and preference "
                  "float32 [N, preference_dim]",
        "output": "enhanced_images: input + delta, clipped to [0, 1], the input's size",
        "tiled": False,
        "jpeg_quality": jpeg_quality,
    }
    return export_saved_model(
        model, export_dir, pienet_signatures(model, jpeg_quality=jpeg_quality), version=version,
        metadata={**(metadata or {}), "kind": PIENET_KIND, "pienet": description})


def define_flags(flag_values):
    flags.DEFINE_enum("backbone", "mobilenet", list(nima.BACKBONES), "NIMA backbone.",
                      flag_values=flag_values)
    flags.DEFINE_string("weights", None, "Whole NIMA model weights file (*.weights.h5).",
                        flag_values=flag_values)
    flags.DEFINE_string("export_dir", None, "Model base path; versions go in <export_dir>/<N>/.",
                        flag_values=flag_values)
    flags.DEFINE_integer("version", None, "Version to write; default: next after the largest.",
                         flag_values=flag_values)
    flags.mark_flags_as_required(["weights", "export_dir"], flag_values=flag_values)
    cli.require_directory("export_dir", flag_values)


def run(FLAGS, args):
    del args  # positional arguments are ignored, as they always were
    model = nima.build_nima(FLAGS.backbone, weights=FLAGS.weights)
    path = export_nima(model, FLAGS.export_dir, version=FLAGS.version)
    logging.info("Exported %s to %s", model.name, path)
    print(path)
    return 0


def main(argv=None):
    """`python -m tools.export` in this process: `argv` as sys.argv; returns the exit code."""
    return cli.main(define_flags, run, argv)


if __name__ == "__main__":
    cli.run_main(define_flags, run)
