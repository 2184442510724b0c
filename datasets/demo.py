"""A small AVA-format dataset built offline from the real photographs that scikit-image ships.

AVA cannot be downloaded on machines without internet, so the NIMA code path (AVA.txt parser,
split, tf.data pipeline, trainer) is exercised on this stand-in. Every image is a random crop of
a real photo, degraded by a known strength s in [0, 1]; its vote histogram is drawn around the
mean score m = 8 - 6 s, so that aesthetic score is learnable from the pixels.

Recipe for image i (all randomness from numpy's default_rng([seed, i]), so image i is the same
whatever `num_images` is):

1. Source: one of the photos in `SOURCES`, uniformly; grayscale ones stay grayscale.
2. Geometry: aspect ratio (w:h) from 1:1, 4:3, 3:4, 3:2, 2:3; the shorter side is `image_size`.
   A crop of that aspect covering 45-100% of the largest such crop, at a random place, flipped
   left-right with probability 1/2, resized with Pillow's bicubic filter.
3. Strength s ~ U(0, 1). One, two or three degradations (probabilities 0.1, 0.5, 0.4), chosen
   without replacement from the five below, each at strength s. Applied in this order on
   [0, 1] pixel values:
   - blur: Gaussian, radius 0.3 * 20^s pixels at image_size 256 (0.3 to 6; Pillow
     GaussianBlur, scaled with image_size);
   - exposure: x * 2^(-3 s) (under) or x * 2^(2.5 s) (over), clipped; over for dark crops
     (mean < 0.3), under for bright ones (mean > 0.7), else either;
   - colour cast: per-channel gains 1 + 0.8 s d, d a random zero-mean direction scaled to
     max |d| = 1;
   - noise: additive Gaussian, sigma 0.01 * 25^s (0.01 to 0.25; the same on all channels of a
     gray photo);
   - jpeg: saved at quality round(75 * (3 / 75)^s) (75 at s = 0, 15 at 0.5, 3 at 1) instead
     of 95.
   Blur, noise and JPEG quality are geometric in s (roughly even steps of visibility);
   several degradations at once give the pixels more cues to the one strength (the score stays
   m(s), not a sum). With these settings a 6-layer CNN trained from scratch for 3 minutes on
   2 CPU cores (crop pipeline, EMD loss) reaches a test SRCC of about 0.65.
4. Score: m = 8 - 6 s; p_k = P(k - 1/2 < X < k + 1/2) for X ~ N(m, 1.4^2), k = 1..10, the tails
   folded into 1 and 10; the votes are a multinomial draw of N ~ U{150..250} voters from p.

Output, in `output_dir`:
  AVA.txt       `<row> <id> <10 counts> 0 0 <challenge>`, the real AVA format; ids are "1",
                "2", ...; the challenge column holds the index + 1 of the source photo.
  images/<id>.jpg
  labels.csv    id, source, strength, degradations, target mean m, JPEG quality (ground truth).
  manifest.json the parameters; written last, so a set is complete iff its manifest is there.
"""
import concurrent.futures
import csv
import io
import json
import math
import os

import numpy as np
from PIL import Image, ImageFilter

RECIPE_VERSION = 2
MANIFEST = "manifest.json"
AVA_TXT = "AVA.txt"
IMAGE_DIR = "images"
LABELS_CSV = "labels.csv"
DEGRADATIONS = ("blur", "exposure", "color_cast", "noise", "jpeg")
SCORE_STD = 1.4
_ASPECTS = ((1, 1), (4, 3), (3, 4), (3, 2), (2, 3))  # width : height


def _stereo(index):
    def load():
        from skimage import data
        return data.stereo_motorcycle()[index]
    return load


def _skimage(name):
    def load():
        from skimage import data
        return getattr(data, name)()
    return load


# Real photographs bundled with scikit-image (no download). Left out: synthetic or graphic
# images (checkerboard, colorwheel, logo, text, page, shepp_logan_phantom, binary horse),
# the already motion-blurred clock, and the tiny ones (microaneurysms, lfw_subset).
SOURCES = (
    ("astronaut", _skimage("astronaut")),
    ("chelsea", _skimage("chelsea")),
    ("coffee", _skimage("coffee")),
    ("rocket", _skimage("rocket")),
    ("hubble_deep_field", _skimage("hubble_deep_field")),
    ("retina", _skimage("retina")),
    ("immunohistochemistry", _skimage("immunohistochemistry")),
    ("motorcycle_left", _stereo(0)),
    ("motorcycle_right", _stereo(1)),
    ("camera", _skimage("camera")),
    ("moon", _skimage("moon")),
    ("coins", _skimage("coins")),
    ("brick", _skimage("brick")),
    ("grass", _skimage("grass")),
    ("gravel", _skimage("gravel")),
    ("cell", _skimage("cell")),
)


def _load_sources():
    images = []
    for name, load in SOURCES:
        array = np.asarray(load())
        if array.dtype != np.uint8:
            raise ValueError(f"skimage.data source {name!r} is {array.dtype}, expected uint8")
        if array.ndim == 3:
            array = array[..., :3]
        images.append((name, Image.fromarray(array)))
    return images


def load_colour_photos(names):
    """The scikit-image colour photos of SOURCES called `names`, as uint8 (h, w, 3) arrays."""
    loaders = dict(SOURCES)
    photos = []
    for name in names:
        array = np.asarray(loaders[name]())
        if array.dtype != np.uint8 or array.ndim != 3:
            raise ValueError(f"skimage.data photo {name!r} is {array.dtype} {array.shape}, "
                             f"expected uint8 colour")
        photos.append(np.ascontiguousarray(array[..., :3]))
    return photos


def score_distribution(mean, std=SCORE_STD):
    """p over scores 1..10 of N(mean, std^2) discretised to unit bins, tails folded in."""
    edges = np.arange(1.5, 10.0, 1.0)  # 1.5 ... 9.5
    cdf = np.array([0.5 * (1.0 + math.erf((e - mean) / (std * math.sqrt(2.0)))) for e in edges])
    cdf = np.concatenate([[0.0], cdf, [1.0]])
    return np.diff(cdf)


def _blur_radius(strength):
    return 0.3 * 20.0 ** strength


def _noise_sigma(strength):
    return 0.01 * 25.0 ** strength


def _jpeg_quality(strength):
    return int(round(75.0 * (3.0 / 75.0) ** strength))


def _make_one(i, sources, image_size, seed, image_dir):
    rng = np.random.default_rng([seed, i])
    source_index = int(rng.integers(len(sources)))
    source_name, source = sources[source_index]
    gray = source.mode == "L"

    aspect_w, aspect_h = _ASPECTS[int(rng.integers(len(_ASPECTS)))]
    if aspect_w >= aspect_h:
        out_h, out_w = image_size, int(round(image_size * aspect_w / aspect_h))
    else:
        out_w, out_h = image_size, int(round(image_size * aspect_h / aspect_w))
    src_w, src_h = source.size
    full = min(src_w / out_w, src_h / out_h)  # the largest crop of this aspect: out * full
    scale = full * rng.uniform(0.45, 1.0)
    crop_w, crop_h = out_w * scale, out_h * scale
    left = rng.uniform(0.0, src_w - crop_w)
    top = rng.uniform(0.0, src_h - crop_h)
    image = source.resize((out_w, out_h), Image.Resampling.BICUBIC,
                          box=(left, top, left + crop_w, top + crop_h))
    if rng.random() < 0.5:
        image = image.transpose(Image.Transpose.FLIP_LEFT_RIGHT)

    strength = float(rng.uniform(0.0, 1.0))
    count = int(rng.choice([1, 2, 3], p=[0.1, 0.5, 0.4]))
    chosen = [DEGRADATIONS[k] for k in rng.choice(len(DEGRADATIONS), size=count, replace=False)]
    amount = {name: strength for name in chosen}
    # Draw every random number in a fixed order, used or not, so the recipe stays readable.
    exposure_coin = rng.random()
    cast = rng.normal(size=3)
    noise_seed = int(rng.integers(2**31))
    votes_total = int(rng.integers(150, 251))

    if "blur" in amount:
        image = image.filter(ImageFilter.GaussianBlur(_blur_radius(amount["blur"]) * image_size / 256.0))
    x = np.asarray(image, dtype=np.float32) / 255.0
    if gray:
        x = x[..., None]
    if "exposure" in amount:
        mean = float(x.mean())
        over = mean < 0.3 or (mean <= 0.7 and exposure_coin < 0.5)
        ev = 2.5 * amount["exposure"] if over else -3.0 * amount["exposure"]
        x = x * np.float32(2.0 ** ev)
    if "color_cast" in amount:
        cast = cast - cast.mean()
        cast = cast / max(np.abs(cast).max(), 1e-6)
        x = x * (1.0 + 0.8 * amount["color_cast"] * cast).astype(np.float32)  # gray -> RGB
    if "noise" in amount:
        noise_rng = np.random.default_rng(noise_seed)
        noise = noise_rng.standard_normal(x.shape[:2] + (1 if gray else 3,), dtype=np.float32)
        x = x + np.float32(_noise_sigma(amount["noise"])) * noise
    pixels = np.rint(np.clip(x, 0.0, 1.0) * 255.0).astype(np.uint8)
    pixels = pixels[..., 0] if pixels.shape[-1] == 1 else pixels
    quality = _jpeg_quality(amount["jpeg"]) if "jpeg" in amount else 95

    image_id = str(i + 1)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="JPEG", quality=quality)
    with open(os.path.join(image_dir, image_id + ".jpg"), "wb") as f:
        f.write(buffer.getvalue())

    target_mean = 8.0 - 6.0 * strength
    counts = rng.multinomial(votes_total, score_distribution(target_mean))
    return {
        "id": image_id,
        "source_index": source_index,
        "source": source_name,
        "strength": strength,
        "degradations": "+".join(chosen),
        "target_mean": target_mean,
        "quality": quality,
        "counts": [int(c) for c in counts],
    }


def _manifest_params(num_images, image_size, seed):
    return {"recipe_version": RECIPE_VERSION, "num_images": int(num_images),
            "image_size": int(image_size), "seed": int(seed)}


def read_manifest(path):
    """A demo set's manifest.json as a dict, or None if it is missing or unreadable."""
    try:
        with open(path, "r", encoding="utf-8") as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def manifest_matches(path, params):
    """True if the manifest at `path` is readable and holds every key of `params` with its value:
    the set in that folder was built with these parameters (and completely: the manifest is
    written last)."""
    manifest = read_manifest(path)
    return manifest is not None and {k: manifest.get(k) for k in params} == params


def file_names(directory):
    """The names of the entries of `directory`, or an empty set if it cannot be listed."""
    try:
        with os.scandir(directory) as entries:
            return {e.name for e in entries}
    except OSError:
        return set()


def _is_complete(output_dir, params):
    if not manifest_matches(os.path.join(output_dir, MANIFEST), params):
        return False
    if not os.path.isfile(os.path.join(output_dir, AVA_TXT)):
        return False
    names = file_names(os.path.join(output_dir, IMAGE_DIR))
    return all(f"{i + 1}.jpg" in names for i in range(params["num_images"]))


def write_atomically(path, text):
    """Writes text to path through a temporary file and a rename: never a half-written file
    (nor a temporary one left behind when the write fails)."""
    tmp = f"{path}.tmp-{os.getpid()}"
    try:
        with open(tmp, "w", encoding="utf-8", newline="") as f:
            f.write(text)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def save_png(path, pixels):
    """uint8 (H, W, 3) pixels as a fast-compressed PNG, through a temporary file and a rename
    (never a half-written file): how every demo set stores its images."""
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG", compress_level=1)
    tmp = f"{path}.tmp-{os.getpid()}"
    with open(tmp, "wb") as f:
        f.write(buffer.getvalue())
    os.replace(tmp, path)


def build_demo_ava(output_dir, *, num_images=1200, image_size=256, seed=0):
    """Builds (or reuses) the demo set in `output_dir`; returns (ava_txt_path, image_dir).

    Idempotent: if `output_dir` holds a complete set built with the same parameters (and the
    same recipe version), nothing is written. Otherwise the set is (re)built; images of an
    earlier, larger build that the new AVA.txt does not list are removed.
    """
    num_images, image_size, seed = int(num_images), int(image_size), int(seed)
    if num_images < 1:
        raise ValueError(f"num_images must be >= 1, got {num_images}")
    if image_size < 16:
        raise ValueError(f"image_size must be >= 16, got {image_size}")
    output_dir = os.fspath(output_dir)
    ava_txt = os.path.join(output_dir, AVA_TXT)
    image_dir = os.path.join(output_dir, IMAGE_DIR)
    params = _manifest_params(num_images, image_size, seed)
    if _is_complete(output_dir, params):
        return ava_txt, image_dir

    os.makedirs(image_dir, exist_ok=True)
    manifest_path = os.path.join(output_dir, MANIFEST)
    previous = read_manifest(manifest_path) or {}
    if os.path.exists(manifest_path):
        os.remove(manifest_path)  # Incomplete until the new manifest is written.

    sources = _load_sources()
    workers = max(1, min(4, os.cpu_count() or 1))
    with concurrent.futures.ThreadPoolExecutor(max_workers=workers) as pool:
        rows = list(pool.map(lambda i: _make_one(i, sources, image_size, seed, image_dir),
                             range(num_images)))

    old_count = previous.get("num_images")
    if isinstance(old_count, int):
        for i in range(num_images, old_count):
            stale = os.path.join(image_dir, f"{i + 1}.jpg")
            if os.path.exists(stale):
                os.remove(stale)

    lines = []
    for row_number, row in enumerate(rows, start=1):
        counts = " ".join(str(c) for c in row["counts"])
        lines.append(f"{row_number} {row['id']} {counts} 0 0 {row['source_index'] + 1}\n")
    write_atomically(ava_txt, "".join(lines))

    labels = io.StringIO()
    writer = csv.writer(labels, lineterminator="\n")
    writer.writerow(["id", "source", "strength", "degradations", "target_mean", "quality"])
    for row in rows:
        writer.writerow([row["id"], row["source"], f"{row['strength']:.6f}", row["degradations"],
                         f"{row['target_mean']:.6f}", row["quality"]])
    write_atomically(os.path.join(output_dir, LABELS_CSV), labels.getvalue())

    manifest = dict(params, ava_txt=AVA_TXT, image_dir=IMAGE_DIR, labels=LABELS_CSV,
                    sources=[name for name, _ in SOURCES])
    write_atomically(manifest_path, json.dumps(manifest, indent=2, allow_nan=False) + "\n")
    return ava_txt, image_dir


def read_demo_labels(output_dir):
    """labels.csv of a built set -> list of dicts (strength, target_mean as float)."""
    with open(os.path.join(os.fspath(output_dir), LABELS_CSV), "r", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    for row in rows:
        row["strength"] = float(row["strength"])
        row["target_mean"] = float(row["target_mean"])
        row["quality"] = int(row["quality"])
    return rows
