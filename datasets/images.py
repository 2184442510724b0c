"""Image decoding shared by every pipeline and by the serving signatures.

Every module passes images around as float32 NHWC RGB in [0, 1] (DESIGN.md section 4).

Two decoders live here:

- `decode_image_tensor`: in-graph (`tf.io.decode_image`), for serving signatures that receive
  encoded bytes.
- `load_rgb8`: Pillow, for the training pipelines. Pillow copes with what real photo collections
  contain (EXIF rotation, CMYK JPEGs, 16-bit and palette PNGs, grayscale TIFFs) and tells a
  corrupt file apart from a good one, so that a pipeline can skip and count it
  (`ImageDecodeError`).

Alpha is DROPPED by both decoders (the colour under a transparent pixel is kept as stored), so
that an RGBA image gives the same pixels at training time and at serving time.
"""
import os
import re
import stat

import numpy as np
import tensorflow as tf
from PIL import Image, ImageOps

# The file extensions (lower case) taken for photos when a folder is listed.
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp")
# EXPOSURE's rgb2lum (Hu et al. 2018; PIEA's filters and its histogram metric): luminance =
# 0.27 R + 0.67 G + 0.06 B. Defined here, at the bottom layer, so that enhancers.filters and
# tools.evaluate share one definition without tools depending on enhancers for it.
LUMINANCE_WEIGHTS = (0.27, 0.67, 0.06)
# EXIF orientations 5..8 swap width and height.
_TRANSPOSING_ORIENTATIONS = (5, 6, 7, 8)
_EXIF_ORIENTATION_TAG = 0x0112


def is_image_name(name):
    """True for a file name with an IMAGE_EXTENSIONS extension (any case) that is not hidden."""
    return not name.startswith(".") and os.path.splitext(name)[1].lower() in IMAGE_EXTENSIONS


def natural_key(name):
    """Sort key comparing the digit runs of `name` as numbers ("2.jpg" before "10.jpg"), ties
    broken by the plain name."""
    parts = re.split(r"(\d+)", name)
    return tuple(int(p) if i % 2 else p for i, p in enumerate(parts)), name


def to_uint8(image, *, input_precision=False):
    """round(clip(x, 0, 1) * 255) as uint8 (rounding half to even, as np.rint); NaN -> 0.

    uint8 input is returned unchanged. The product is computed in float64, so the rounding is
    exact. With `input_precision` it is computed in the input's own float dtype (float32 stays
    float32, whose product can round onto k + 0.5): how the demo sets quantise, kept so that
    they stay the same file for file.
    """
    image = np.asarray(image)
    if image.dtype == np.uint8:
        return image
    floating = input_precision and np.issubdtype(image.dtype, np.floating)
    image = np.nan_to_num(image.astype(image.dtype if floating else np.float64), nan=0.0)
    return np.rint(np.clip(image, 0.0, 1.0) * 255.0).astype(np.uint8)


def decode_image_tensor(image_bytes):
    """Decodes one encoded JPEG/PNG/BMP/GIF (scalar tf.string) to float32 RGB in [0, 1], in graph.

    Grayscale becomes RGB, alpha is dropped and 16-bit PNGs are scaled, not truncated, because
    `decode_image(..., dtype=tf.float32)` converts from the file's own bit depth.
    """
    image = tf.io.decode_image(image_bytes, channels=3, dtype=tf.float32, expand_animations=False)
    image.set_shape([None, None, 3])
    return image


class ImageDecodeError(ValueError):
    """A file could not be turned into RGB pixels.

    Attributes:
      path: the file, as given.
      reason: what went wrong, in words (the underlying exception's message).
    """

    def __init__(self, path, reason):
        self.path = os.fspath(path)
        self.reason = str(reason)
        super().__init__(f"cannot decode image {self.path!r}: {self.reason}")

    def __reduce__(self):  # Keeps the exception picklable with its two arguments.
        return (type(self), (self.path, self.reason))


def _orientation(image):
    try:
        return int(image.getexif().get(_EXIF_ORIENTATION_TAG, 1))
    except Exception:  # A broken EXIF block must not make a good image unreadable.
        return 1


def _scale_16bit(array):
    """uint16 / int32 values in [0, 65535] -> uint8 by v * 255 / 65535, rounded (65535 -> 255)."""
    array = np.clip(array.astype(np.float64), 0.0, 65535.0)
    return np.rint(array / 257.0).astype(np.uint8)


def _float_to_uint8(array):
    """Mode "F": [0, 1] if the image's max is <= 1, else [0, 255] if <= 255, else [0, 65535]."""
    array = np.nan_to_num(array.astype(np.float64), nan=0.0, posinf=0.0, neginf=0.0)
    peak = float(array.max()) if array.size else 0.0
    full_scale = 1.0 if peak <= 1.0 else 255.0 if peak <= 255.0 else 65535.0
    return np.rint(np.clip(array / full_scale, 0.0, 1.0) * 255.0).astype(np.uint8)


def _to_rgb8(image):
    """A loaded Pillow image of any mode -> (H, W, 3) uint8 RGB array."""
    mode = image.mode
    if mode == "RGB":
        return np.asarray(image, dtype=np.uint8)
    if mode in ("RGBA", "RGBX"):  # Alpha dropped (module docstring).
        return np.asarray(image, dtype=np.uint8)[..., :3]
    if mode in ("P", "PA"):  # Palette colours; transparency dropped as alpha is.
        return np.asarray(image.convert("RGBA"), dtype=np.uint8)[..., :3]
    if mode.startswith("I;16") or mode == "I":
        # 16-bit grayscale (PNG, TIFF); "I" (32-bit int) is read as the same 0..65535 range.
        gray = _scale_16bit(np.asarray(image))
    elif mode == "F":
        gray = _float_to_uint8(np.asarray(image))
    elif mode in ("L", "LA", "La", "1"):
        gray = np.asarray(image.convert("L"), dtype=np.uint8)
    else:
        # CMYK (Adobe inverted CMYK is undone by Pillow's JPEG decoder), YCbCr, HSV, RGBa, LAB ...
        try:
            rgb = image.convert("RGB")
        except (ValueError, OSError) as e:
            raise ValueError(f"unsupported image mode {mode!r} ({e})") from e
        return np.asarray(rgb, dtype=np.uint8)
    if gray.ndim != 2:
        raise ValueError(f"unexpected array shape {gray.shape} for image mode {mode!r}")
    return np.repeat(gray[:, :, None], 3, axis=2)


def check_regular_file(path):
    """ImageDecodeError unless `path` is (a link to) an existing regular file; never opens it."""
    try:
        mode = os.stat(path).st_mode
    except OSError as e:
        raise ImageDecodeError(path, f"{type(e).__name__}: {e}") from e
    if not stat.S_ISREG(mode):
        raise ImageDecodeError(path, "not a regular file")


def load_rgb8(path, *, min_size=None):
    """Reads an image file into an (H, W, 3) uint8 RGB array, upright.

    - The EXIF orientation is applied (a phone photo stored sideways comes out upright).
    - Grayscale (1-bit, L, LA, I, I;16*, F), palette (P, PA), RGBA, CMYK and YCbCr become 8-bit
      RGB. Alpha and palette transparency are dropped, not composited (the stored colour is
      kept). 16-bit data is scaled, not clipped: v -> round(v * 255 / 65535), so 65535 -> 255
      and 32896 -> 128. (Pillow itself reads 16-bit *colour* PNGs as 8-bit RGB by keeping the
      high byte, which agrees with this to within 1.) 1-bit pixels become 0 and 255.
    - JPEG, PNG, BMP, GIF, TIFF and WebP are read (what Pillow reads); multi-frame files
      (animated GIF or WebP, TIFF) give their first frame.

    Args:
      path: the file.
      min_size: optional (height, width) the caller will downscale to anyway. For JPEGs, Pillow's
        `draft()` then decodes at the smallest DCT scale (1/2, 1/4, 1/8) that keeps the upright
        image at least this large in both dimensions, which is several times faster for big
        photos. Other formats are always decoded at full size.

    Returns:
      np.ndarray, uint8, shape (H, W, 3), C-contiguous.

    Raises:
      ImageDecodeError: the file is missing, not a regular file (a FIFO or device is never
        opened: reading one can block forever), unreadable, empty, not an image, truncated or
        corrupt. Its message names the path and the reason.
    """
    check_regular_file(path)
    try:
        with Image.open(path) as image:
            if min_size is not None and image.format == "JPEG":
                min_h, min_w = (int(v) for v in min_size)
                if _orientation(image) in _TRANSPOSING_ORIENTATIONS:
                    min_h, min_w = min_w, min_h
                image.draft(image.mode, (max(min_w, 1), max(min_h, 1)))
            image.load()
            try:
                upright = ImageOps.exif_transpose(image)
            except Exception:  # Broken EXIF: keep the pixels as stored.
                upright = image
            array = _to_rgb8(upright)
    except ImageDecodeError:
        raise
    except Exception as e:  # Pillow raises OSError, SyntaxError, ValueError, EOFError, ...
        raise ImageDecodeError(path, f"{type(e).__name__}: {e}") from e
    if array.ndim != 3 or array.shape[2] != 3 or array.shape[0] == 0 or array.shape[1] == 0:
        raise ImageDecodeError(path, f"decoded to an unusable array of shape {array.shape}")
    return np.ascontiguousarray(array)
