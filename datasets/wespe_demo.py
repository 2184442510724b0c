"""The embedded WESPE demo set: skimage colour photos through a synthetic cheap camera, DPED layout.

DPED cannot be downloaded on machines without internet, so the WESPE code path (DPED layout,
unpaired patch streams, trainer, PSNR/SSIM on aligned test patches, full-size enhancement) is
exercised on this stand-in. The source domain is a FIXED, known degradation of real photos, so
a weakly supervised enhancer has something definite to learn, and the test pairs tell how much
of it was undone.

Photos (scikit-image's real colour photographs, bundled, no download; see datasets/demo.py):
  training: astronaut (512x512), rocket (427x640), motorcycle_left and motorcycle_right
            (500x741 each; the two views of one stereo pair);
  held out: chelsea (300x451), coffee (400x600): only the test patches and the full-size test
            images come from them.
(The other colour images that ship are a microscope slide, a retina, the Hubble deep field and
graphics; chelsea's twin `cat` is the same photo.)

The cheap camera (`cheap_camera`), on float [0, 1] RGB, in this order:
  1. blur: Gaussian, sigma 1.0 pixel (7 taps, separable, borders mirrored);
  2. colour cast: per-channel gains (R, G, B) = (1.15, 1.00, 0.80) (a warm, yellow cast),
     clipped to [0, 1];
  3. low contrast: x -> 0.5 + 0.6 (x - 0.5), i.e. black lifted to 0.2, white lowered to 0.8;
  4. noise: additive Gaussian, sigma 0.03, independent per pixel and channel, clipped to [0, 1];
then quantised to 8 bits (round(255 x) in float32: `to_uint8(..., input_precision=True)`).
A mid-grey 0.5 becomes (0.545, 0.5, 0.44).

Patches, each a crop at full resolution (no resampling), for the patch with index i (0-based)
and seed s; the crop is drawn by numpy default_rng([s, stream, i, 0]), the noise by
default_rng([s, stream, i, 1]) (`noise_generator`), streams 0 train phone, 1 train canon,
2 test, 3 full-size:
  training_data/phone/<i>.png   a training photo (chosen with probability proportional to its
                                number of crop positions), a random patch_size crop with an EVEN
                                left edge, through the cheap camera;
  training_data/canon/<i>.png   the same, but clean and with an ODD left edge: no canon patch is
                                ever the clean version of a phone patch (the two sets never pair
                                up, as WESPE's weak supervision wants);
  test_data/patches/canon/<i>.png   a random crop of a held-out photo, clean;
  test_data/patches/phone/<i>.png   that clean patch through the cheap camera: exactly
                                    to_uint8(cheap_camera(clean, noise_generator(s, "test", i)),
                                    input_precision=True) (aligned pairs for PSNR/SSIM);
  test_data/full_size_test_images/<k>.png   held-out photo k (chelsea, coffee) through the
                                    cheap camera at full size.
  crops.csv       stream, index, photo, top, left of every patch (ground truth of the recipe).
  manifest.json   the parameters and the recipe numbers; written last, so a set is complete iff
                  its manifest is there. Building again with the same parameters is a no-op.

Load it with `datasets.dped.dped_files(root, PHONE)`.
"""
import concurrent.futures
import csv
import io
import json
import os
import re

import numpy as np

from datasets import demo
from datasets.images import to_uint8

RECIPE_VERSION = 1
PHONE = "phone"
MANIFEST = "manifest.json"
CROPS_CSV = "crops.csv"
TRAIN_PHOTOS = ("astronaut", "rocket", "motorcycle_left", "motorcycle_right")
TEST_PHOTOS = ("chelsea", "coffee")

BLUR_SIGMA = 1.0
GAINS = (1.15, 1.00, 0.80)
CONTRAST = 0.6
CONTRAST_PIVOT = 0.5
NOISE_SIGMA = 0.03

STREAMS = {"train_phone": 0, "train_canon": 1, "test": 2, "full_size": 3}
_INDEXED_PNG = re.compile(r"^\d+\.png$")


def _gaussian_kernel(sigma):
    radius = int(np.ceil(3.0 * sigma))
    taps = np.arange(-radius, radius + 1, dtype=np.float64)
    kernel = np.exp(-0.5 * (taps / sigma) ** 2)
    return (kernel / kernel.sum()).astype(np.float32)


def gaussian_blur(image, sigma):
    """Separable Gaussian blur of an (H, W, C) float array, borders mirrored ("symmetric")."""
    kernel = _gaussian_kernel(sigma)
    radius = len(kernel) // 2
    x = np.pad(image, ((radius, radius), (0, 0), (0, 0)), mode="symmetric")
    x = sum(kernel[k] * x[k:k + image.shape[0]] for k in range(len(kernel)))
    x = np.pad(x, ((0, 0), (radius, radius), (0, 0)), mode="symmetric")
    x = sum(kernel[k] * x[:, k:k + image.shape[1]] for k in range(len(kernel)))
    return x.astype(np.float32)


def cheap_camera(image, rng=None):
    """The demo's source-domain camera (module docstring): blur, warm cast, low contrast, noise.

    Args:
      image: (H, W, 3) RGB, uint8 or float in [0, 1] (or (H, W) grayscale).
      rng: a numpy Generator for the noise; None leaves the noise out.

    Returns:
      float32 (H, W, 3) in [0, 1] (not yet quantised).
    """
    x = np.asarray(image)
    x = x.astype(np.float32) / 255.0 if x.dtype == np.uint8 else x.astype(np.float32)
    if x.ndim == 2:
        x = np.repeat(x[..., None], 3, axis=2)
    x = gaussian_blur(x, BLUR_SIGMA)
    x = np.clip(x * np.asarray(GAINS, np.float32), 0.0, 1.0)
    x = np.float32(CONTRAST_PIVOT) + np.float32(CONTRAST) * (x - np.float32(CONTRAST_PIVOT))
    if rng is not None:
        x = x + np.float32(NOISE_SIGMA) * rng.standard_normal(x.shape, dtype=np.float32)
    return np.clip(x, 0.0, 1.0).astype(np.float32)


def noise_generator(seed, stream, index):
    """The numpy Generator of the cheap-camera noise of patch `index` in `stream` (STREAMS)."""
    return np.random.default_rng([int(seed), STREAMS[stream], int(index), 1])


def _crop_generator(seed, stream, index):
    return np.random.default_rng([int(seed), STREAMS[stream], int(index), 0])


def _lefts(width, patch_size, parity):
    """The left edges of this parity (0 even, 1 odd, None any) that fit a patch."""
    span = width - patch_size
    if parity is None:
        return span + 1
    return span // 2 + 1 if parity == 0 else (span + 1) // 2


def _random_crop(photos, patch_size, rng, parity):
    counts = np.array([(p.shape[0] - patch_size + 1) * _lefts(p.shape[1], patch_size, parity)
                       for p in photos], dtype=np.float64)
    which = int(rng.choice(len(photos), p=counts / counts.sum()))
    photo = photos[which]
    top = int(rng.integers(0, photo.shape[0] - patch_size + 1))
    column = int(rng.integers(0, _lefts(photo.shape[1], patch_size, parity)))
    left = column if parity is None else 2 * column + parity
    return which, top, left, photo[top:top + patch_size, left:left + patch_size]


def _layout(root):
    return {
        "train_phone": os.path.join(root, "training_data", PHONE),
        "train_canon": os.path.join(root, "training_data", "canon"),
        "test_phone": os.path.join(root, "test_data", "patches", PHONE),
        "test_canon": os.path.join(root, "test_data", "patches", "canon"),
        "full_size": os.path.join(root, "test_data", "full_size_test_images"),
    }


def _counts(params):
    return {"train_phone": params["num_train_patches"], "train_canon": params["num_train_patches"],
            "test_phone": params["num_test_patches"], "test_canon": params["num_test_patches"],
            "full_size": len(TEST_PHOTOS)}


def _params(patch_size, num_train_patches, num_test_patches, seed):
    return {"recipe_version": RECIPE_VERSION, "patch_size": int(patch_size),
            "num_train_patches": int(num_train_patches),
            "num_test_patches": int(num_test_patches), "seed": int(seed)}


def _is_complete(root, params):
    if not demo.manifest_matches(os.path.join(root, MANIFEST), params):
        return False
    counts = _counts(params)
    for key, directory in _layout(root).items():
        names = demo.file_names(directory)
        if not all(f"{i}.png" in names for i in range(counts[key])):
            return False
    return True


def build_wespe_demo(output_dir, *, patch_size=100, num_train_patches=3000, num_test_patches=100,
                     seed=0):
    """Builds (or reuses) the demo set in `output_dir` (module docstring); returns the root.

    `datasets.dped.dped_files(root, PHONE)` loads it. Idempotent: a complete set built with the
    same parameters and recipe version is left as it is; otherwise it is rebuilt, and numbered
    PNGs of an earlier, larger build are removed.

    Args:
      output_dir: the set's root (`<root>/training_data/phone/...`).
      patch_size: side of the training and test patches; 16 to 300 (the smallest held-out
        photo is 300 pixels high).
      num_train_patches: patches per domain (phone and canon each).
      num_test_patches: aligned test pairs.
      seed: the same seed gives the same set, file for file.
    """
    patch_size, seed = int(patch_size), int(seed)
    num_train_patches, num_test_patches = int(num_train_patches), int(num_test_patches)
    if not 16 <= patch_size <= 300:
        raise ValueError(f"patch_size must be in [16, 300], got {patch_size}")
    if num_train_patches < 1 or num_test_patches < 1:
        raise ValueError(f"num_train_patches and num_test_patches must be >= 1, got "
                         f"{num_train_patches} and {num_test_patches}")
    root = os.fspath(output_dir)
    params = _params(patch_size, num_train_patches, num_test_patches, seed)
    if _is_complete(root, params):
        return root

    layout = _layout(root)
    for directory in layout.values():
        os.makedirs(directory, exist_ok=True)
    manifest_path = os.path.join(root, MANIFEST)
    if os.path.exists(manifest_path):
        os.remove(manifest_path)  # Incomplete until the new manifest is written.

    train_photos, test_photos = demo.load_colour_photos(TRAIN_PHOTOS), demo.load_colour_photos(TEST_PHOTOS)

    def train_patch(args):
        stream, i = args
        phone = stream == "train_phone"
        which, top, left, crop = _random_crop(train_photos, patch_size,
                                              _crop_generator(seed, stream, i), 0 if phone else 1)
        pixels = to_uint8(cheap_camera(crop, noise_generator(seed, stream, i)),
                          input_precision=True) if phone else crop
        demo.save_png(os.path.join(layout[stream], f"{i}.png"), pixels)
        return stream, i, TRAIN_PHOTOS[which], top, left

    def test_patch(i):
        which, top, left, crop = _random_crop(test_photos, patch_size,
                                              _crop_generator(seed, "test", i), None)
        demo.save_png(os.path.join(layout["test_canon"], f"{i}.png"), crop)
        degraded = to_uint8(cheap_camera(crop, noise_generator(seed, "test", i)),
                            input_precision=True)
        demo.save_png(os.path.join(layout["test_phone"], f"{i}.png"), degraded)
        return "test", i, TEST_PHOTOS[which], top, left

    def full_size(k):
        degraded = to_uint8(cheap_camera(test_photos[k], noise_generator(seed, "full_size", k)),
                            input_precision=True)
        demo.save_png(os.path.join(layout["full_size"], f"{k}.png"), degraded)
        return "full_size", k, TEST_PHOTOS[k], 0, 0

    jobs = [(s, i) for s in ("train_phone", "train_canon") for i in range(num_train_patches)]
    workers = max(1, min(4, os.cpu_count() or 1))
    with concurrent.futures.ThreadPoolExecutor(max_workers=workers) as pool:
        rows = list(pool.map(full_size, range(len(TEST_PHOTOS))))
        rows += list(pool.map(test_patch, range(num_test_patches)))
        rows += list(pool.map(train_patch, jobs))

    counts = _counts(params)
    for key, directory in layout.items():  # Files of an earlier, larger build.
        for name in demo.file_names(directory):
            if _INDEXED_PNG.match(name) and int(name[:-4]) >= counts[key]:
                os.remove(os.path.join(directory, name))

    table = io.StringIO()
    writer = csv.writer(table, lineterminator="\n")
    writer.writerow(["stream", "index", "photo", "top", "left"])
    writer.writerows(rows)
    demo.write_atomically(os.path.join(root, CROPS_CSV), table.getvalue())

    manifest = dict(params, phone=PHONE, train_photos=list(TRAIN_PHOTOS),
                    test_photos=list(TEST_PHOTOS),
                    cheap_camera={"blur_sigma": BLUR_SIGMA, "gains": list(GAINS),
                                  "contrast": CONTRAST, "contrast_pivot": CONTRAST_PIVOT,
                                  "noise_sigma": NOISE_SIGMA})
    demo.write_atomically(manifest_path, json.dumps(manifest, indent=2, allow_nan=False) + "\n")
    return root
