"""The embedded CAN demo set: scikit-image photos at several exposures, and a fixed tone curve.

FiveK and the operators of the paper's references (section 4.2: the tone enhancement of [28],
non-local dehazing [2]) are not available offline, so the CAN code path (paired folders, split
files, the 480x640-style training stream, full-size testing, PSNR) is exercised on this
stand-in. The reference of every input is `tone_operator(input)`: a fixed tone curve that lifts
shadows and mid-tones and holds the highlights back, applied to each pixel's brightest channel
with the colour ratios kept (`tone_operator`), the kind of operator Chen et al. (ICCV 2017)
showed a CAN approximates. It pushes no value to white and shifts no colour, so a CAN that
learns it brightens a dark photo and leaves a bright one nearly as it is.

Why this operator (README, "The held-out check"): the first version of this demo used a local
tone curve with a detail boost, colours scaled by luminance, which brightens every photo: the
CAN blew out the bright sky of a well-exposed landscape and its detail boost lowered SSIM. (Those
runs, and the ones that trained the CAN to undo the exposure instead, also suffered from a bug
since fixed: `--can_identity_output` left the CAN nearly affine, `enhancers.can.
IdentityOutputKernel`.) With the bug fixed, the old reference still brightened bright photos,
and a curve with white kept at 1 still let the CAN's error near white clip a hazy sky, hence
the held-back highlights (`tone_operator`).

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
     Pillow's bicubic filter; flipped left-right with probability 1/2; its channels put in a
     random order (one of the 6, uniformly), so that the CAN sees every hue; its saturation
     scaled by s ~ U(0.8, 2) about each pixel's channel mean, clip(m + s (x - m), 0, 1), so that
     it sees vivid colours too (s is drawn after step 3's draws);
  3. exposure e ~ U(-1, 0.5) stops (over-exposed crops too, so that the CAN sees bright and
     clipped tones); with probability IDENTITY_FRACTION (1/2) instead e = 0;
  4. `expose(crop, e)` = clip(x 2^e, 0, 1), quantised to 8 bits: round(255 x)
     (`to_uint8(..., input_precision=True)`).
Test input k: held-out photo k exposed by TEST_EXPOSURES[k] stops (astronaut -1, coffee -0.5,
chelsea -0.75), quantised to 8 bits. Every reference is round(255 tone_operator(input / 255))
of the 8-bit input as stored.

Output, in `output_dir`:
  input/train_0000.png ...     training inputs (8-bit RGB PNG)
  input/test_astronaut.png ... the held-out photos, exposed as above
  reference/<same names>       the operator's outputs
  train.txt, test.txt          the stems of each side, one a line (`fivek.read_split_file`)
  manifest.json                the parameters and each crop's photo and exposure; written
                               last, so a set is complete iff its manifest is there. Building
                               again with the same parameters is a no-op.

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

from datasets import demo
from datasets.images import to_uint8

RECIPE_VERSION = 2  # 1: a local tone operator with detail boost; 2: `tone_operator`
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

# The operator (`tone_operator`).
CURVE_STRENGTH = 2.0  # a in T(v) = ln(1 + a v) / ln(1 + a) - p v^4
HIGHLIGHT_PULL = 0.08  # p: white goes to 1 - p
VALUE_FLOOR = 1.0 / 255.0

# The training crops.
CROP_FRACTION = (0.35, 1.0)
EXPOSURE_STOPS = (-1.0, 0.5)
IDENTITY_FRACTION = 0.5
SATURATION = (0.8, 2.0)
# Exposure (stops) of the test inputs, in the order of TEST_PHOTOS.
TEST_EXPOSURES = (-1.0, -0.5, -0.75)

_TRAIN_PNG = re.compile(r"^train_(\d+)\.png$")


def tone_curve(value):
    """T(v) = ln(1 + a v) / ln(1 + a) - p v^4, a = CURVE_STRENGTH, p = HIGHLIGHT_PULL.

    Shadows and mid-tones lifted (T(0.1) = 0.166, T(0.25) = 0.369, T(0.5) = 0.626, T(0.8) =
    0.837), the brightest tones pulled back (T(v) < v above v = 0.873: T(0.9) = 0.885, T(1) =
    0.92). Increasing (T'(v) >= T'(1) = 2 / (3 ln 3) - 4 p > 0.28) and T(0) = 0.
    """
    value = np.asarray(value, dtype=np.float64)
    return (np.log1p(CURVE_STRENGTH * value) / np.log1p(CURVE_STRENGTH)
            - HIGHLIGHT_PULL * value ** 4)


def tone_operator(image):
    """The demo's reference operator: the tone curve on each pixel's brightest channel.

    On an RGB image x in [0, 1]:

        v   = max(R, G, B)                              (HSV value)
        out = x * T(v) / max(v, 1/255),  T(v) = ln(1 + 2 v) / ln(3) - 0.08 v^4  (`tone_curve`)

    Each pixel is scaled by one factor, so greys stay grey and colours keep their ratios; its
    brightest channel becomes T(v) <= 0.92, so nothing is pushed to white, and the factor falls
    from 1.82 for the darkest pixels (T'(0) = 2 / ln 3) to 0.92 at white: shadows lifted,
    highlights held back, as a photographer's "shadows +, highlights -". The pull on the
    highlights leaves room near white: a CAN that learns the operator within a few percent does
    not blow out a bright sky (with T(1) = 1 the demo's CAN clipped 12% of the values of a hazy
    landscape that the operator itself leaves unclipped, and 4-6% with T(1) = 0.95). A global,
    pixel-wise operator: it is the same on a photo and on any crop or rescaled copy of it, as
    training on 96x128 crops and testing at full size (section 4.2) assume.

    Args:
      image: (H, W, 3) RGB, float in [0, 1] or uint8.

    Returns:
      float32 (H, W, 3) in [0, 1]; deterministic.
    """
    x = np.asarray(image)
    x = x.astype(np.float64) / 255.0 if x.dtype == np.uint8 else x.astype(np.float64)
    if x.ndim != 3 or x.shape[2] != 3 or x.shape[0] < 1 or x.shape[1] < 1:
        raise ValueError(f"tone_operator needs an (H, W, 3) RGB image, got {x.shape}")
    value = x.max(axis=2)
    ratio = tone_curve(value) / np.maximum(value, VALUE_FLOOR)
    return np.clip(x * ratio[..., None], 0.0, 1.0).astype(np.float32)


def expose(image, stops):
    """The demo's degradation: clip(x 2^stops, 0, 1) on RGB in [0, 1], the exposure filter's.

    The same gain on every channel, so greys stay grey and colours keep their ratios;
    `stops` = 0 is the identity. `datasets.heldout`'s "can" degradation is stops = -1.

    Args:
      image: (H, W, 3) RGB, float in [0, 1] or uint8.
      stops: the exposure change in stops (negative: darker).

    Returns:
      float64 (H, W, 3) in [0, 1].
    """
    x = np.asarray(image)
    x = x.astype(np.float64) / 255.0 if x.dtype == np.uint8 else x.astype(np.float64)
    return np.clip(x * 2.0 ** float(stops), 0.0, 1.0)


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
    """Training input i (module docstring, steps 1-4): (input uint8 (h, w, 3), photo name,
    stops, saturation)."""
    rng = np.random.default_rng([int(seed), int(i)])
    which = int(rng.integers(len(photos)))
    fraction = rng.uniform(*CROP_FRACTION)
    place = rng.uniform(0.0, 1.0, size=2)
    flip = rng.random() < 0.5
    channels = rng.permutation(3)
    stops = rng.uniform(*EXPOSURE_STOPS)
    if rng.random() < IDENTITY_FRACTION:
        stops = 0.0
    saturation = rng.uniform(*SATURATION)

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
    crop = np.asarray(image, dtype=np.float64)[..., channels] / 255.0
    grey = crop.mean(axis=2, keepdims=True)
    crop = np.clip(grey + saturation * (crop - grey), 0.0, 1.0)
    return (to_uint8(expose(crop, stops), input_precision=True), TRAIN_PHOTOS[which],
            float(stops), float(saturation))


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

    train_photos = demo.load_colour_photos(TRAIN_PHOTOS)
    test_photos = demo.load_colour_photos(TEST_PHOTOS)

    def write_pair(stem, pixels):
        reference = to_uint8(tone_operator(pixels), input_precision=True)
        demo.save_png(os.path.join(paths.input_dir, f"{stem}.png"), pixels)
        demo.save_png(os.path.join(paths.reference_dir, f"{stem}.png"), reference)

    def train_pair(i):
        pixels, photo, stops, saturation = _training_input(train_photos, train_size, seed, i)
        write_pair(f"train_{i:04d}", pixels)
        return {"photo": photo, "stops": round(stops, 4), "saturation": round(saturation, 4)}

    def test_pair(k):
        write_pair(TEST_STEMS[k], to_uint8(expose(test_photos[k], TEST_EXPOSURES[k]),
                                           input_precision=True))

    workers = max(1, min(4, os.cpu_count() or 1))
    with concurrent.futures.ThreadPoolExecutor(max_workers=workers) as pool:
        list(pool.map(test_pair, range(len(TEST_PHOTOS))))
        crops = list(pool.map(train_pair, range(num_train)))

    for directory in (paths.input_dir, paths.reference_dir):  # Files of a larger build.
        for name in demo.file_names(directory):
            match = _TRAIN_PNG.match(name)
            if match and int(match.group(1)) >= num_train:
                os.remove(os.path.join(directory, name))

    demo.write_atomically(paths.train_list, "".join(s + "\n" for s in train_stems(num_train)))
    demo.write_atomically(paths.test_list, "".join(s + "\n" for s in TEST_STEMS))
    manifest = dict(
        params, train_photos=list(TRAIN_PHOTOS), test_photos=list(TEST_PHOTOS),
        train_crops=crops,
        operator={"curve_strength": CURVE_STRENGTH, "highlight_pull": HIGHLIGHT_PULL,
                  "value_floor": VALUE_FLOOR},
        crops={"fraction": list(CROP_FRACTION), "exposure_stops": list(EXPOSURE_STOPS),
               "identity_fraction": IDENTITY_FRACTION, "channel_orders": "uniform",
               "saturation": list(SATURATION)},
        test_exposure_stops=dict(zip(TEST_PHOTOS, TEST_EXPOSURES)))
    demo.write_atomically(manifest_path, json.dumps(manifest, indent=2, allow_nan=False) + "\n")
    return paths
