"""The embedded PieNet demo set: synthetic users, each a fixed retouching style, over crops of
scikit-image photos (issue 17's CPU demo; the stand-in for section 4.2's expanded FiveK, whose
"users" are presets and conventional methods rather than people).

Users: each a fixed recipe of EXPOSURE's filters (`enhancers.filters`, natural parameters; the
filters not named in a recipe stay at their identity), applied to every photo. Six training
users, each with a strong look of its own (a cast of its own colour: warm, cool, magenta,
green, yellow; faded without one), so that a user can be told from one retouch of a photo
never seen (a logistic regression on colour statistics does so for 0.92 of the test
retouches), and two held-out users; the held-out users mix the training users' ingredients in other
proportions (brighter and cooler but soft; darker, warmer and punchier), so their styles are
new but within the family that the embedding learns (section 4.2: "the enhancement methods in
the training and test sets do not overlap"). The recipes are in `USER_RECIPES`.

Rendering: `datasets` sits below `enhancers` (DESIGN.md section 3), so the caller passes the
filter chain, `render=enhancers.filters.apply`; its qualified name is recorded in the manifest.

Photos (scikit-image's bundled colour photos, no download; `datasets.demo.SOURCES`):
  training: astronaut, rocket, motorcycle_left, motorcycle_right, immunohistochemistry, retina;
  test (held out): coffee, chelsea.
Input i of stream t (0 train, 1 test; all randomness from numpy default_rng([seed, t, i]),
drawn in this order, so input i is the same whatever the counts are):
  1. photo: one of the stream's photos, uniformly;
  2. crop: a square of U(0.5, 1.0) x the photo's shorter side at a uniform place, resized to
     image_size x image_size (Pillow, bicubic); flipped left-right with probability 1/2;
  3. light variation: x -> clip(0.5 + c (x 2^e - 0.5), 0, 1), e ~ U(-0.5, 0.3) stops,
     c ~ U(0.85, 1.15);
  4. colour variation (since recipe version 2): per-channel gains 2^u, u ~ U(-0.25, 0.25)
     each (a cast of any colour), then the saturation scaled about the luminance Y (the
     filters' `datasets.images.LUMINANCE_WEIGHTS`), x -> Y + s (x - Y), s ~ U(0.6, 1.4);
     clipped to [0, 1] and quantised to 8 bits. The six source photos are few and mostly
     warm: varied casts and saturations make every colour common in training, so that a style
     is learnt as what it does to a colour rather than to the content of those photos.
Every user's version is round(255 clip(render(input / 255, recipe), 0, 1)) of the stored input.

Output, in `output_dir` (the FiveK-like layout `datasets.pienet.collect_users` reads):
  input/train_0000.png ... test_0000.png ...   the inputs (8-bit RGB PNG)
  <user>/<same names>                          each user's versions, one folder per user
  train.txt, test.txt                          the stems of each side (`fivek.read_split_file`)
  manifest.json   parameters, users (recipe, held out or not), the photo of every input and
                  its crop; written last, so a set is complete iff its manifest is there.
                  Building again with the same parameters is a no-op.

Typical use:

    build_pienet_demo("pienet_demo/", render=enhancers.filters.apply)
    train_users = demo_users("pienet_demo/", "train")      # datasets.pienet.Users
    new_users = demo_users("pienet_demo/", "held_out")
"""
import concurrent.futures
import json
import os
import re

import numpy as np
from PIL import Image

from datasets import demo, pienet
from datasets.images import LUMINANCE_WEIGHTS, to_uint8

# 2: the training users' looks set apart (each with its own cast: warm, cool, magenta, green,
# yellow; faded without), and the inputs' colour variation (module docstring, step 4), so that
# a user is recognisable from one retouch of a photo never seen (issue 17's separation).
RECIPE_VERSION = 2
MANIFEST = "manifest.json"
INPUT_DIR = "input"
TRAIN_LIST = "train.txt"
TEST_LIST = "test.txt"
TRAIN_PHOTOS = ("astronaut", "rocket", "motorcycle_left", "motorcycle_right",
                "immunohistochemistry", "retina")
TEST_PHOTOS = ("coffee", "chelsea")
DEFAULT_IMAGE_SIZE = 128
DEFAULT_NUM_TRAIN = 160
DEFAULT_NUM_TEST = 40
CROP_FRACTION = (0.5, 1.0)
EXPOSURE_STOPS = (-0.5, 0.3)
CONTRAST = (0.85, 1.15)
CHANNEL_STOPS = (-0.25, 0.25)
SATURATION = (0.6, 1.4)
_STREAMS = {"train": 0, "test": 1}
_GENERATED = re.compile(r"^(train|test)_(\d+)\.png$")
_CHUNK = 64  # images rendered at once

# The filters' identity (`enhancers.filters.identity_parameters`, checked by the tests): what a
# recipe leaves unnamed.
IDENTITY = {"exposure": 0.0, "gamma": 1.0, "white_balance": [1.0, 1.0, 1.0], "saturation": 0.0,
            "tone": [1.0] * 8, "contrast": 0.0, "black_and_white": 0.0, "color": [[1.0] * 8] * 3}

# name -> the filters' natural parameters that differ from IDENTITY (EV, gains, strengths, curve
# slopes in [0.5, 2] for tone and [0.9, 1.1] for colour).
USER_RECIPES = {
    "bright_warm": {"exposure": 0.6, "white_balance": [1.25, 1.0, 0.7]},
    "contrasty_cool": {"contrast": 0.9, "exposure": -0.25, "white_balance": [0.75, 1.0, 1.45]},
    "faded": {"black_and_white": 0.6, "contrast": -0.3,
              "tone": [2.0, 1.6, 1.3, 1.0, 0.9, 0.8, 0.7, 0.7]},
    "vivid": {"saturation": 0.95, "contrast": 0.5, "white_balance": [1.15, 0.8, 1.15]},
    "dark_moody": {"exposure": -0.6, "gamma": 1.3, "white_balance": [0.9, 1.15, 0.9]},
    "vintage": {"white_balance": [1.1, 1.1, 0.6], "black_and_white": 0.4, "gamma": 0.8,
                "color": [[0.9] * 4 + [1.1] * 4, [1.0] * 8, [1.1] * 4 + [0.9] * 4]},
    # Held out: the same ingredients, other proportions.
    "soft_bright_cool": {"exposure": 0.35, "white_balance": [0.92, 1.0, 1.12],
                         "contrast": -0.25},
    "punchy_warm_dark": {"exposure": -0.3, "contrast": 0.45, "saturation": 0.5,
                         "white_balance": [1.1, 1.0, 0.88]},
}
TRAINING_USERS = ("bright_warm", "contrasty_cool", "faded", "vivid", "dark_moody", "vintage")
HELD_OUT_USERS = ("soft_bright_cool", "punchy_warm_dark")


def recipe(name):
    """User `name`'s full natural parameters: USER_RECIPES over IDENTITY, float32 arrays."""
    if name not in USER_RECIPES:
        raise ValueError(f"no demo user {name!r}; the users are {', '.join(USER_RECIPES)}")
    merged = dict(IDENTITY, **USER_RECIPES[name])
    return {key: np.asarray(value, np.float32) for key, value in merged.items()}


def stems(stream, count):
    """The stems of a stream's inputs: train_0000, ... or test_0000, ..."""
    return [f"{stream}_{i:04d}" for i in range(int(count))]


def _input(photos, size, seed, stream, i):
    """Input i of `stream` (module docstring, steps 1-4): (uint8 (size, size, 3), record)."""
    rng = np.random.default_rng([int(seed), _STREAMS[stream], int(i)])
    which = int(rng.integers(len(photos)))
    fraction = rng.uniform(*CROP_FRACTION)
    place = rng.uniform(0.0, 1.0, size=2)
    flip = bool(rng.random() < 0.5)
    stops = rng.uniform(*EXPOSURE_STOPS)
    contrast = rng.uniform(*CONTRAST)
    channel_stops = rng.uniform(*CHANNEL_STOPS, size=3)
    saturation = rng.uniform(*SATURATION)
    photo = photos[which]
    height, width = photo.shape[:2]
    side = fraction * min(height, width)
    left, top = place[0] * (width - side), place[1] * (height - side)
    image = Image.fromarray(photo).resize((size, size), Image.Resampling.BICUBIC,
                                          box=(left, top, left + side, top + side))
    if flip:
        image = image.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    x = np.asarray(image, np.float64) / 255.0
    x = 0.5 + contrast * (x * 2.0 ** stops - 0.5)
    x = np.clip(x, 0.0, 1.0) * 2.0 ** channel_stops
    luma = (x @ np.asarray(LUMINANCE_WEIGHTS, np.float64))[..., np.newaxis]
    x = luma + saturation * (x - luma)
    names = TRAIN_PHOTOS if stream == "train" else TEST_PHOTOS
    record = {"photo": names[which], "box": [left, top, side], "flip": flip,
              "exposure_stops": stops, "contrast": contrast,
              "channel_stops": channel_stops.tolist(), "saturation": saturation}
    return to_uint8(x, input_precision=True), record


def _render_name(render):
    return f"{getattr(render, '__module__', '?')}.{getattr(render, '__qualname__', repr(render))}"


def _params(image_size, num_train, num_test, seed, render):
    return {"recipe_version": RECIPE_VERSION, "image_size": int(image_size),
            "num_train": int(num_train), "num_test": int(num_test), "seed": int(seed),
            "render": _render_name(render)}


def _all_files(params):
    names = [f"{s}.png" for s in stems("train", params["num_train"])
             + stems("test", params["num_test"])]
    return [(folder, name) for folder in (INPUT_DIR,) + tuple(USER_RECIPES) for name in names]


def _is_complete(root, params):
    if not demo.manifest_matches(os.path.join(root, MANIFEST), params):
        return False
    if not all(os.path.isfile(os.path.join(root, n)) for n in (TRAIN_LIST, TEST_LIST)):
        return False
    listed = {}
    for folder, name in _all_files(params):
        if folder not in listed:
            listed[folder] = demo.file_names(os.path.join(root, folder))
        if name not in listed[folder]:
            return False
    return True


def build_pienet_demo(output_dir, *, render, image_size=DEFAULT_IMAGE_SIZE,
                      num_train=DEFAULT_NUM_TRAIN, num_test=DEFAULT_NUM_TEST, seed=0):
    """Builds (or reuses) the demo set in `output_dir` (module docstring); returns its root.

    Idempotent: a complete set built with the same parameters (and recipe version, and render
    function's name) is left as it is; otherwise it is rebuilt, and the generated inputs and
    versions of an earlier, larger build are removed. The defaults (160 + 40 photos of 128 x 128,
    8 users) build in seconds.

    Args:
      output_dir: the set's root.
      render: the filter chain, `enhancers.filters.apply` (images float32 [N, h, w, 3] in
        [0, 1], natural parameters) -> images.
      image_size: side of the square inputs, 32 to 300 (the smallest photo is 300 high).
      num_train, num_test: inputs of each side (>= 1).
      seed: the same seed gives the same set, file for file.
    """
    params = _params(image_size, num_train, num_test, seed, render)
    if not 32 <= params["image_size"] <= 300:
        raise ValueError(f"image_size must be in [32, 300], got {image_size}")
    if params["num_train"] < 1 or params["num_test"] < 1:
        raise ValueError(f"num_train and num_test must be >= 1, got {num_train}, {num_test}")
    root = os.fspath(output_dir)
    if _is_complete(root, params):
        return root
    manifest_path = os.path.join(root, MANIFEST)
    for folder in (INPUT_DIR,) + tuple(USER_RECIPES):
        os.makedirs(os.path.join(root, folder), exist_ok=True)
    if os.path.exists(manifest_path):
        os.remove(manifest_path)  # Incomplete until the new manifest is written.

    size, seed = params["image_size"], params["seed"]
    photos = {"train": demo.load_colour_photos(TRAIN_PHOTOS),
              "test": demo.load_colour_photos(TEST_PHOTOS)}
    jobs = ([("train", i) for i in range(params["num_train"])]
            + [("test", i) for i in range(params["num_test"])])
    workers = max(1, min(4, os.cpu_count() or 1))
    with concurrent.futures.ThreadPoolExecutor(max_workers=workers) as pool:
        made = list(pool.map(lambda job: _input(photos[job[0]], size, seed, *job), jobs))
    names = [f"{stream}_{i:04d}.png" for stream, i in jobs]
    inputs = np.stack([pixels for pixels, _ in made])
    for name, pixels in zip(names, inputs):
        demo.save_png(os.path.join(root, INPUT_DIR, name), pixels)
    for user in USER_RECIPES:
        params_k = recipe(user)
        for start in range(0, len(names), _CHUNK):
            batch = inputs[start:start + _CHUNK].astype(np.float32) / 255.0
            out = to_uint8(np.clip(np.asarray(render(batch, params_k)), 0.0, 1.0))
            for name, pixels in zip(names[start:start + _CHUNK], out):
                demo.save_png(os.path.join(root, user, name), pixels)

    wanted = set(names)
    for folder in (INPUT_DIR,) + tuple(USER_RECIPES):  # Files of a larger build.
        for name in demo.file_names(os.path.join(root, folder)):
            if _GENERATED.match(name) and name not in wanted:
                os.remove(os.path.join(root, folder, name))

    train, test = stems("train", params["num_train"]), stems("test", params["num_test"])
    demo.write_atomically(os.path.join(root, TRAIN_LIST), "".join(s + "\n" for s in train))
    demo.write_atomically(os.path.join(root, TEST_LIST), "".join(s + "\n" for s in test))
    users = {name: {"held_out": name in HELD_OUT_USERS,
                    "recipe": {k: v.tolist() for k, v in recipe(name).items()}}
             for name in USER_RECIPES}
    manifest = dict(
        params, training_users=list(TRAINING_USERS), held_out_users=list(HELD_OUT_USERS),
        users=users, train_photos=list(TRAIN_PHOTOS), test_photos=list(TEST_PHOTOS),
        crops={"fraction": list(CROP_FRACTION), "exposure_stops": list(EXPOSURE_STOPS),
               "contrast": list(CONTRAST), "channel_stops": list(CHANNEL_STOPS),
               "saturation": list(SATURATION)},
        inputs={name[:-4]: record for name, (_, record) in zip(names, made)})
    demo.write_atomically(manifest_path, json.dumps(manifest, indent=1, allow_nan=False) + "\n")
    return root


def read_demo_manifest(root):
    """The manifest of a built set (dict), or None if there is none (not built, or not
    complete)."""
    return demo.read_manifest(os.path.join(os.fspath(root), MANIFEST))


def demo_users(root, which="train"):
    """The users of a built set as `datasets.pienet.Users`: "train" (the training users),
    "held_out" or "all"; the split is the set's train.txt / test.txt."""
    root = os.fspath(root)
    manifest = read_demo_manifest(root)
    if manifest is None:
        raise FileNotFoundError(f"no complete PieNet demo set in {root!r} (no {MANIFEST})")
    names = {"train": manifest["training_users"], "held_out": manifest["held_out_users"],
             "all": manifest["training_users"] + manifest["held_out_users"]}.get(which)
    if names is None:
        raise ValueError(f"which must be 'train', 'held_out' or 'all', got {which!r}")
    return pienet.collect_users(input_dir=os.path.join(root, INPUT_DIR),
                                user_dirs=[os.path.join(root, name) for name in names],
                                train_list=os.path.join(root, TRAIN_LIST),
                                test_list=os.path.join(root, TEST_LIST))
