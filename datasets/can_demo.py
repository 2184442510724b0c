"""The embedded CAN demo set: scikit-image photos and a fixed local tone operator as reference.

FiveK and the operators of the paper's references (section 4.2: the tone enhancement of [28],
non-local dehazing [2]) are not available offline, so the CAN code path (paired folders, split
files, the 480x640-style training stream, full-size testing, PSNR) is exercised on this
stand-in. The reference of every input is `local_tone_operator(input)`: a fixed, smooth, local
tone curve of the kind Chen et al. (ICCV 2017) showed a CAN approximates, so that a CAN trained
on it for a few minutes on a CPU raises the PSNR over the untouched inputs.

Photos (scikit-image's real colour photographs, bundled, no download; `datasets.demo.SOURCES`):
  training crops from: rocket (427x640), motorcycle_left and motorcycle_right (500x741, the two
      views of one stereo pair), immunohistochemistry (512x512, bright), retina (1411x1411) and
      hubble_deep_field (872x1000, dark);
  held out, full size, test only: astronaut (512x512), coffee (400x600), chelsea (300x451).

Training input i (all randomness from numpy default_rng([seed, i]), drawn in this order, so
input i is the same whatever `num_train` is):
  1. photo: one of TRAIN_PHOTOS, uniformly;
  2. crop: of the aspect of `train_size` (height, width), covering a fraction U(0.35, 1.0) of
     the side of the largest such crop, at a uniform place; resized to `train_size` with
     Pillow's bicubic filter; flipped left-right with probability 1/2;
  3. exposure and contrast: x -> clip(0.5 + c (x 2^e - 0.5), 0, 1), e ~ U(-1, 0.5) stops,
     c ~ U(0.8, 1.2);
  4. quantised to 8 bits: round(255 x) (`to_uint8(..., input_precision=True)`).
Test input k is held-out photo k, unchanged. Every reference is
round(255 local_tone_operator(input / 255)) of the 8-bit input as stored.

Output, in `output_dir`:
  input/train_0000.png ...     training inputs (8-bit RGB PNG)
  input/test_astronaut.png ... the held-out photos
  reference/<same names>       the operator's outputs
  train.txt, test.txt          the stems of each side, one a line (`fivek.read_split_file`)
  manifest.json                the parameters; written last, so a set is complete iff its
                               manifest is there. Building again with the same parameters is a
                               no-op.

Load it with:

    demo = build_can_demo("can_demo/")
    pairs, _ = paired.collect_pairs(input_dir=demo.input_dir, reference_dir=demo.reference_dir)
    train, test = paired.split_pairs(pairs, train_list=demo.train_list,
                                     test_list=demo.test_list)
"""
import concurrent.futures
import dataclasses
import json
import os
import re

import numpy as np
from PIL import Image
from scipy import ndimage

from datasets import demo
from datasets.images import to_uint8

RECIPE_VERSION = 1
MANIFEST = "manifest.json"
INPUT_DIR = "input"
REFERENCE_DIR = "reference"
TRAIN_LIST = "train.txt"
TEST_LIST = "test.txt"
TRAIN_PHOTOS = ("rocket", "motorcycle_left", "motorcycle_right", "immunohistochemistry",
                "retina", "hubble_deep_field")
TEST_PHOTOS = ("astronaut", "coffee", "chelsea")
DEFAULT_NUM_TRAIN = 200
DEFAULT_TRAIN_SIZE = (192, 256)  # (height, width)

# The operator (`local_tone_operator`).
LUMA_WEIGHTS = (0.2126, 0.7152, 0.0722)  # Rec. 709 luminance
SIGMA_FRACTION = 0.04  # blur sigma = SIGMA_FRACTION * the image's longer side, in pixels
CURVE_STRENGTH = 3.0  # A in T(b) = ln(1 + A b) / ln(1 + A)
DETAIL_GAIN = 1.5
RATIO_FLOOR = 1.0 / 255.0

# The training crops.
CROP_FRACTION = (0.35, 1.0)
EXPOSURE_STOPS = (-1.0, 0.5)
CONTRAST = (0.8, 1.2)

_TRAIN_PNG = re.compile(r"^train_(\d+)\.png$")


def tone_curve(base):
    """T(b) = ln(1 + A b) / ln(1 + A), A = CURVE_STRENGTH: T(0) = 0, T(1) = 1, lifts shadows."""
    base = np.asarray(base, dtype=np.float64)
    return np.log1p(CURVE_STRENGTH * base) / np.log1p(CURVE_STRENGTH)


def local_tone_operator(image):
    """The demo's reference operator: a local tone curve with detail boost, colour kept.

    On an RGB image x in [0, 1] of height H and width W:

        L      = 0.2126 R + 0.7152 G + 0.0722 B                  (luminance, Rec. 709)
        base   = Gaussian blur of L, sigma = 0.04 * max(H, W) pixels
                 (scipy.ndimage.gaussian_filter, borders mirrored ("reflect"), truncate 4)
        L'     = T(base) + 1.5 (L - base),  T(b) = ln(1 + 3 b) / ln(4)
        out    = clip(x * L' / max(L, 1/255), 0, 1)              (each channel, ratios kept)

    The tone curve compresses the smooth base and lifts its shadows (T(0.1) = 0.189,
    T(0.5) = 0.661), the detail L - base is boosted by half, and colours keep their ratios. On
    a constant grey image of value c >= 1/255 the output is T(c). Bright saturated colours can
    clip (a channel pushed past 1), as the paper notes of its tone-mapped references. The blur
    scales with the image, so the operator commutes (approximately) with resizing: the
    reference of a photo rescaled to 480x640 is about the rescaled reference, as training at
    480x640 and testing at full size (section 4.2) assume.

    Args:
      image: (H, W, 3) RGB, float in [0, 1] or uint8.

    Returns:
      float32 (H, W, 3) in [0, 1]; deterministic.
    """
    x = np.asarray(image)
    x = x.astype(np.float64) / 255.0 if x.dtype == np.uint8 else x.astype(np.float64)
    if x.ndim != 3 or x.shape[2] != 3 or x.shape[0] < 1 or x.shape[1] < 1:
        raise ValueError(f"local_tone_operator needs an (H, W, 3) RGB image, got {x.shape}")
    luminance = x @ np.asarray(LUMA_WEIGHTS, np.float64)
    sigma = SIGMA_FRACTION * max(x.shape[0], x.shape[1])
    base = ndimage.gaussian_filter(luminance, sigma, mode="reflect", truncate=4.0)
    target = tone_curve(base) + DETAIL_GAIN * (luminance - base)
    ratio = target / np.maximum(luminance, RATIO_FLOOR)
    return np.clip(x * ratio[..., None], 0.0, 1.0).astype(np.float32)


@dataclasses.dataclass(frozen=True)
class CanDemoSet:
    """Where a built demo set lives: pass these to `datasets.paired`."""

    root: str
    input_dir: str
    reference_dir: str
    train_list: str
    test_list: str


def demo_set(root):
    """The paths of the demo set in `root` (built or not)."""
    root = os.fspath(root)
    return CanDemoSet(root=root, input_dir=os.path.join(root, INPUT_DIR),
                      reference_dir=os.path.join(root, REFERENCE_DIR),
                      train_list=os.path.join(root, TRAIN_LIST),
                      test_list=os.path.join(root, TEST_LIST))


def train_stems(num_train):
    """The stems of the training pairs: train_0000, train_0001, ..."""
    return [f"train_{i:04d}" for i in range(int(num_train))]


# The stems of the test pairs, in the order of TEST_PHOTOS.
TEST_STEMS = tuple(f"test_{name}" for name in TEST_PHOTOS)


def _training_input(photos, train_size, seed, i):
    """Training input i (module docstring, steps 1-4) as uint8 (h, w, 3)."""
    rng = np.random.default_rng([int(seed), int(i)])
    which = int(rng.integers(len(photos)))
    fraction = rng.uniform(*CROP_FRACTION)
    place = rng.uniform(0.0, 1.0, size=2)
    flip = rng.random() < 0.5
    stops = rng.uniform(*EXPOSURE_STOPS)
    contrast = rng.uniform(*CONTRAST)

    out_h, out_w = train_size
    photo = Image.fromarray(photos[which])
    src_w, src_h = photo.size
    scale = min(src_w / out_w, src_h / out_h) * fraction
    crop_w, crop_h = out_w * scale, out_h * scale
    left, top = place[0] * (src_w - crop_w), place[1] * (src_h - crop_h)
    image = photo.resize((out_w, out_h), Image.Resampling.BICUBIC,
                         box=(left, top, left + crop_w, top + crop_h))
    if flip:
        image = image.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    x = np.asarray(image, dtype=np.float64) / 255.0
    x = 0.5 + contrast * (x * 2.0 ** stops - 0.5)
    return to_uint8(x, input_precision=True), TRAIN_PHOTOS[which]


def _params(num_train, train_size, seed):
    return {"recipe_version": RECIPE_VERSION, "num_train": int(num_train),
            "train_size": [int(v) for v in train_size], "seed": int(seed)}


def _is_complete(root, params):
    if not demo.manifest_matches(os.path.join(root, MANIFEST), params):
        return False
    paths = demo_set(root)
    if not (os.path.isfile(paths.train_list) and os.path.isfile(paths.test_list)):
        return False
    wanted = {f"{stem}.png" for stem in train_stems(params["num_train"]) + list(TEST_STEMS)}
    return (wanted <= demo.file_names(paths.input_dir)
            and wanted <= demo.file_names(paths.reference_dir))


def build_can_demo(output_dir, *, num_train=DEFAULT_NUM_TRAIN, train_size=DEFAULT_TRAIN_SIZE,
                   seed=0):
    """Builds (or reuses) the demo set in `output_dir` (module docstring); returns a CanDemoSet.

    Idempotent: a complete set built with the same parameters and recipe version is left as it
    is; otherwise it is rebuilt, and training files of an earlier, larger build are removed.
    The defaults (200 crops of 192x256) build in a few seconds.

    Args:
      output_dir: the set's root.
      num_train: number of training crops.
      train_size: (height, width) of the training crops, each 16 to 300 pixels (the smallest
        training photo is 427 pixels high).
      seed: the same seed gives the same set, file for file.
    """
    num_train, seed = int(num_train), int(seed)
    train_size = tuple(int(v) for v in train_size)
    if num_train < 1:
        raise ValueError(f"num_train must be >= 1, got {num_train}")
    if len(train_size) != 2 or not all(16 <= v <= 300 for v in train_size):
        raise ValueError(f"train_size must be (height, width) with sides in [16, 300], got "
                         f"{train_size}")
    paths = demo_set(output_dir)
    params = _params(num_train, train_size, seed)
    if _is_complete(paths.root, params):
        return paths

    os.makedirs(paths.input_dir, exist_ok=True)
    os.makedirs(paths.reference_dir, exist_ok=True)
    manifest_path = os.path.join(paths.root, MANIFEST)
    if os.path.exists(manifest_path):
        os.remove(manifest_path)  # Incomplete until the new manifest is written.

    train_photos, test_photos = demo.load_colour_photos(TRAIN_PHOTOS), demo.load_colour_photos(TEST_PHOTOS)

    def write_pair(stem, pixels):
        reference = to_uint8(local_tone_operator(pixels), input_precision=True)
        demo.save_png(os.path.join(paths.input_dir, f"{stem}.png"), pixels)
        demo.save_png(os.path.join(paths.reference_dir, f"{stem}.png"), reference)

    def train_pair(i):
        pixels, photo = _training_input(train_photos, train_size, seed, i)
        write_pair(f"train_{i:04d}", pixels)
        return photo

    def test_pair(k):
        write_pair(TEST_STEMS[k], test_photos[k])

    workers = max(1, min(4, os.cpu_count() or 1))
    with concurrent.futures.ThreadPoolExecutor(max_workers=workers) as pool:
        list(pool.map(test_pair, range(len(TEST_PHOTOS))))
        crop_photos = list(pool.map(train_pair, range(num_train)))

    for directory in (paths.input_dir, paths.reference_dir):  # Files of a larger build.
        for name in demo.file_names(directory):
            match = _TRAIN_PNG.match(name)
            if match and int(match.group(1)) >= num_train:
                os.remove(os.path.join(directory, name))

    demo.write_atomically(paths.train_list, "".join(s + "\n" for s in train_stems(num_train)))
    demo.write_atomically(paths.test_list, "".join(s + "\n" for s in TEST_STEMS))
    manifest = dict(
        params, train_photos=list(TRAIN_PHOTOS), test_photos=list(TEST_PHOTOS),
        train_crop_photos=crop_photos,
        operator={"luma_weights": list(LUMA_WEIGHTS), "sigma_fraction": SIGMA_FRACTION,
                  "curve_strength": CURVE_STRENGTH, "detail_gain": DETAIL_GAIN,
                  "ratio_floor": RATIO_FLOOR},
        crops={"fraction": list(CROP_FRACTION), "exposure_stops": list(EXPOSURE_STOPS),
               "contrast": list(CONTRAST)})
    demo.write_atomically(manifest_path, json.dumps(manifest, indent=2, allow_nan=False) + "\n")
    return paths
