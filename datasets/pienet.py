"""PieNet's users (Kim et al., ECCV 2020, sections 4.1-4.2): photos, each user's retouches of
them, the photo split, and the two training streams (triplets for the embedding, pairs for the
enhancer).

Users (`collect_users`), over one folder of input photos:
- FiveK (section 4.1): experts A-E are five users over the same inputs; folder names and pairing
  by file stem as `datasets.fivek` reads them (`<fivek_dir>/input`, `<fivek_dir>/expertC`, ...).
- Extra users (section 4.2's expanded set of 28 "users": presets, conventional methods): any
  number of folders (`user_dirs`), each one user's retouched versions of the same inputs, paired
  by stem; the user is named after the folder unless `user_names` are given. Experts come first.
A photo a user lacks is skipped for that user only, and told by name (`Users.missing`, logged);
an input no user has is dropped; a retouch without input is told by name.

Split (section 4.1: "we randomly select 500 images to compose the test set ... and use the
remaining 4,500 images as the training set"; the paper gives no list). Ours: the photos in
natural order of their stems, permuted by numpy default_rng(split_seed = 0); the first
`num_test` are the test photos, num_test = round(n / 10) by default (500 of FiveK's 5,000, at
least 1 and at most n - 1 when n >= 2). Or by list files (`fivek.read_split_file`: FiveK ids or
stems), as `datasets.paired` reads them: one list alone leaves the rest to the other side. A
photo's versions by all users stay on one side.

Streams: position q of the endless stream (`datasets.pipeline.index_stream`: epoch e is a
seeded permutation of the items) gives one element; everything random in it comes from numpy
default_rng([s, q]), s derived from `seed`, so an element is a function of (users, seed, q)
only: resuming at step n skips n * batch_size * num_shards positions without decoding them, and
shard i of S takes the positions q % S == i. An item is a (user k, training photo j) with k's
retouch of j; every user's retouches are visited once an epoch.

View of a photo (both streams, our choice; the paper gives only the sizes and the rotations):
a square of side f x the photo's shorter side, f ~ U(crop_scale), at a uniform place, resized
to size x size (Pillow, bilinear, antialiased), then rotated by t x 90 degrees, t ~ U{0..3}
(section 4.1: "we randomly rotate image pairs by multiples of 90 degrees").

Triplet stream (`make_triplet_dataset`, sections 3.1 and 4.1): (k, positive, negative). The
positive is user k's retouch of photo j. "When the preference vector for photographer A is
trained, we regard his or her retouched images as the positive set, but the input images and the
other photographers' retouched images as the negative set": the negative is the input or another
user's retouch, never user k's own. Ours: its photo j' is j with probability
`same_photo_fraction` (default 0: the paper's sets, drawn independently), else uniform over the
training photos; its version is uniform over {the input} + {every other user who has j'}. The
whole photo (crop_scale (1, 1)) at 256 x 256 by default: style is a property of the whole photo.

Paired stream (`make_paired_dataset`, sections 3.2 and 4.1): (input view, user k's retouch view,
k) at 512 x 512 by default, the same square and rotation on both (a retouch of another size but
the same aspect, within 1%, gets the same square in relative coordinates); crop_scale
(0.5, 1.0) by default (ours).

Bad files: an element whose image cannot be decoded (or whose retouch's aspect ratio differs) is
recorded in `decode_failures` by name and skipped, so the stream shifts by one element (as
`datasets.paired`); if the first min(n, 1000) elements all fail, iterating raises `DataError`.
"""
import dataclasses
import os

import numpy as np
import tensorflow as tf
from absl import logging
from PIL import Image

from datasets import fivek
from datasets.images import ImageDecodeError, load_rgb8
from datasets.paired import ASPECT_TOLERANCE
from datasets.pipeline import (GIVE_UP_AFTER, DecodeFailures, DecodeWorker,
                               check_stream_position, index_stream, map_decoded,
                               stream_options)
from datasets.unpaired import derive_seed

__all__ = [
    "EMBEDDING_SIZE",
    "ENHANCER_SIZE",
    "SPLIT_SEED",
    "TEST_FRACTION",
    "Users",
    "central_view",
    "collect_users",
    "make_paired_dataset",
    "make_triplet_dataset",
    "read_photo",
    "split_photos",
]

EMBEDDING_SIZE = 256  # section 3.1
ENHANCER_SIZE = 512  # section 3.2
TEST_FRACTION = 0.1  # section 4.1: 500 of 5,000
SPLIT_SEED = 0  # ours: the paper's random selection is not published
INPUT = -1  # the version index of the input photo (`with_sources`)
_FIRST_NAMES = 5


def _stem(path):
    return os.path.splitext(os.path.basename(path))[0]


@dataclasses.dataclass(frozen=True)
class Users:
    """Photos and users: `inputs[j]` is photo j, `retouches[k][j]` user k's version (None if the
    user lacks it), `train` and `test` photo indices, `missing` the lines naming skipped files."""

    names: tuple
    inputs: tuple
    retouches: tuple
    train: tuple
    test: tuple
    missing: tuple = ()

    @property
    def stems(self):
        return tuple(_stem(path) for path in self.inputs)

    def index(self, user):
        """The index of a user given by name or index."""
        if isinstance(user, (int, np.integer)) and 0 <= int(user) < len(self.names):
            return int(user)
        if user in self.names:
            return self.names.index(user)
        raise ValueError(f"no user {user!r}; the users are {', '.join(self.names)}")

    def photos(self, user, split="train"):
        """The indices of the photos of `split` ("train", "test", "all") that `user` has."""
        k = self.index(user)
        chosen = {"train": self.train, "test": self.test,
                  "all": range(len(self.inputs))}.get(split)
        if chosen is None:
            raise ValueError(f"split must be 'train', 'test' or 'all', got {split!r}")
        return [j for j in chosen if self.retouches[k][j] is not None]

    def pairs(self, user, split="train"):
        """[(input path, user's retouch path)] of `split`, in photo order."""
        k = self.index(user)
        return [(self.inputs[j], self.retouches[k][j]) for j in self.photos(k, split)]

    def select(self, users):
        """These Users restricted to some users (names or indices, in the order given): the
        training users of section 4.2, or the held-out ones."""
        ks = [self.index(u) for u in users]
        if not ks:
            raise ValueError("select needs at least one user")
        return dataclasses.replace(self, names=tuple(self.names[k] for k in ks),
                                   retouches=tuple(self.retouches[k] for k in ks))


def _names_listed(lines, what):
    return f"{len(lines)} {what}: {', '.join(lines[:_FIRST_NAMES])}" + (
        " ..." if len(lines) > _FIRST_NAMES else "")


def _select_by_list(stems, path):
    """The photo indices a split file selects; ValueError naming the file for names that select
    no photo."""
    path = os.fspath(path)
    select, wanted = fivek.selector(fivek.read_split_file(path))
    chosen, used = [], set()
    for j, stem in enumerate(stems):
        hits = select(stem)
        if hits:
            chosen.append(j)
            used.update(hits)
    unused = [name for name in wanted if name not in used]
    if unused:
        raise ValueError(f"split file {path!r}: " + _names_listed(unused, "names match no photo"))
    return chosen


def split_photos(stems, *, train_list=None, test_list=None, seed=SPLIT_SEED, num_test=None):
    """(train, test) photo indices, each sorted (module docstring).

    Args:
      stems: the photos' stems, in natural order.
      train_list, test_list: split files; given, they decide (one alone: the rest is the other).
      seed: the permutation's seed without lists (ours: 0).
      num_test: test photos without lists; default round(n / 10), within [1, n - 1] for n >= 2.
    """
    n = len(stems)
    if n == 0:
        raise ValueError("split_photos: no photos")
    if train_list is not None or test_list is not None:
        train = _select_by_list(stems, train_list) if train_list is not None else None
        test = _select_by_list(stems, test_list) if test_list is not None else None
        if train is None:
            train = sorted(set(range(n)) - set(test))
        elif test is None:
            test = sorted(set(range(n)) - set(train))
        both = sorted(set(train) & set(test))
        if both:
            raise ValueError("the split files select the same photos for training and test: "
                             + _names_listed([stems[j] for j in both], "photos"))
        return train, test
    if num_test is None:
        num_test = min(max(round(n * TEST_FRACTION), 1), n - 1)
    num_test = int(num_test)
    if not 0 <= num_test < n:
        raise ValueError(f"num_test must be in [0, {n - 1}] for {n} photos, got {num_test}")
    permutation = np.random.default_rng(int(seed)).permutation(n)
    test = sorted(int(j) for j in permutation[:num_test])
    train = sorted(int(j) for j in permutation[num_test:])
    return train, test


def collect_users(*, fivek_dir=None, experts=fivek.EXPERTS, input_dir=None, user_dirs=(),
                  user_names=None, train_list=None, test_list=None, split_seed=SPLIT_SEED,
                  num_test=None):
    """The users of one photo collection (module docstring); returns `Users`.

    Args:
      fivek_dir: a FiveK folder: its `input` folder and the folders of `experts` (A..E, a
        sequence or a string such as "ABCDE" or "A,C"; empty for none), users named "A".."E".
      input_dir: the input photos, instead of `fivek_dir`.
      user_dirs: folders of further users' retouches, one user each.
      user_names: names of the `user_dirs` users (default: the folders' base names).
      train_list, test_list, split_seed, num_test: the split (`split_photos`).

    Raises:
      ValueError: both or neither of fivek_dir and input_dir; no user; two users of one name;
        a folder that is missing (`datasets.fivek` names it) or shares no photo with the inputs;
        a split file naming no photo.
    """
    if (fivek_dir is None) == (input_dir is None):
        raise ValueError("give exactly one of --fivek_dir (FiveK: input/ and expert folders) "
                         "and --input_dir (the input photos of --user_dirs)")
    folders, names = [], []
    if fivek_dir is not None:
        input_dir = fivek.input_dir(fivek_dir)
        if isinstance(experts, str):
            experts = experts.replace(",", "")
        for expert in experts:
            letter = str(expert).strip().upper()
            if not letter:
                continue
            folders.append(fivek.expert_dir(fivek_dir, letter))
            names.append(letter)
    user_dirs = [os.fspath(d) for d in user_dirs]
    if user_names is None:
        user_names = [os.path.basename(os.path.normpath(d)) for d in user_dirs]
    if len(user_names) != len(user_dirs):
        raise ValueError(f"{len(user_names)} user names for {len(user_dirs)} user folders")
    folders += user_dirs
    names += [str(name) for name in user_names]
    if not folders:
        raise ValueError("no users: give FiveK experts or --user_dirs")
    repeated = sorted({name for name in names if names.count(name) > 1})
    if repeated:
        raise ValueError(f"several users are named {', '.join(repeated)}; give --user_names")

    inputs = fivek.list_photos(input_dir)
    row = {_stem(path): j for j, path in enumerate(inputs)}
    retouches, missing = [], []
    for folder in folders:
        pairs, lines = fivek.match_by_stem(input_dir, folder)
        versions = [None] * len(inputs)
        for input_path, retouch in pairs:
            versions[row[_stem(input_path)]] = retouch
        retouches.append(versions)
        missing.extend(lines)
    kept = [j for j in range(len(inputs)) if any(v[j] is not None for v in retouches)]
    inputs = [inputs[j] for j in kept]
    retouches = tuple(tuple(v[j] for j in kept) for v in retouches)
    train, test = split_photos([_stem(p) for p in inputs], train_list=train_list,
                               test_list=test_list, seed=split_seed, num_test=num_test)
    logging.info("PieNet users %s: %d photos (%d train, %d test); %d files without a partner",
                 ", ".join(names), len(inputs), len(train), len(test), len(missing))
    return Users(names=tuple(names), inputs=tuple(inputs), retouches=retouches,
                 train=tuple(train), test=tuple(test), missing=tuple(missing))


# ----------------------------------------------------------------------------- views


def _box(shape, fraction, place):
    """The square (left, top, right, bottom) of side fraction x the shorter side at `place`."""
    height, width = shape[:2]
    side = max(1.0, fraction * min(height, width))
    left, top = place[0] * (width - side), place[1] * (height - side)
    return left, top, left + side, top + side


def _view(image, box, turns, size):
    """`box` of `image` resized to size x size (bilinear, antialiased), turned t x 90 degrees."""
    out = Image.fromarray(image).resize((size, size), Image.Resampling.BILINEAR, box=box)
    return np.ascontiguousarray(np.rot90(np.asarray(out), k=int(turns)))


def _draw_view(rng, crop_scale):
    """(fraction, place, turns), always drawn in this order."""
    return rng.uniform(*crop_scale), rng.uniform(0.0, 1.0, size=2), int(rng.integers(4))


def _items(users, split):
    """[(user k, photo j)] of the photos of `split` each user has, user by user."""
    items = [(k, j) for k in range(len(users.names)) for j in users.photos(k, split)]
    if not items:
        raise ValueError(f"users {', '.join(users.names)} have no photo in the {split} split")
    return items


class _Decoder(DecodeWorker):
    """Common part of the two streams' decode steps."""

    def __init__(self, users, items, failures, size, crop_scale, seed, what):
        super().__init__(failures, min(len(items), GIVE_UP_AFTER))
        self.users, self.items, self.size = users, items, size
        self.crop_scale, self.seed, self.what = crop_scale, seed, what

    def give_up_message(self, path, reason):
        return (f"none of the first {self.failed} {self.what} could be decoded (e.g. {path}: "
                f"{reason}); are the input and user folders right?")

    def load(self, path):
        return load_rgb8(path, min_size=(self.size, self.size))

    def blank(self):
        return np.zeros((self.size, self.size, 3), np.uint8)


class _TripletDecoder(_Decoder):

    def __init__(self, users, items, failures, size, crop_scale, seed, split,
                 same_photo_fraction):
        super().__init__(users, items, failures, size, crop_scale, seed, "triplets")
        self.photos = list({"train": users.train, "test": users.test,
                            "all": range(len(users.inputs))}[split])
        self.same_photo_fraction = same_photo_fraction

    def skipped(self):
        return np.int32(0), self.blank(), self.blank(), np.zeros(3, np.int32), np.bool_(False)

    def decode(self, index, position):
        k, j = self.items[int(index)]
        rng = np.random.default_rng([self.seed, int(position)])
        positive_view = _draw_view(rng, self.crop_scale)
        same = rng.random() < self.same_photo_fraction
        other = self.photos[int(rng.integers(len(self.photos)))]
        photo = j if same else other
        versions = [INPUT] + [u for u, row in enumerate(self.users.retouches)
                              if u != k and row[photo] is not None]
        version = versions[int(rng.integers(len(versions)))]
        negative_view = _draw_view(rng, self.crop_scale)
        out = []
        for path, (fraction, place, turns) in (
                (self.users.retouches[k][j], positive_view),
                (self.users.inputs[photo] if version == INPUT
                 else self.users.retouches[version][photo], negative_view)):
            try:
                image = self.load(path)
            except ImageDecodeError as e:
                return self.fail(path, e.reason)
            out.append(_view(image, _box(image.shape, fraction, place), turns, self.size))
        self.succeed()
        sources = np.array([j, photo, version], np.int32)
        return np.int32(k), out[0], out[1], sources, np.bool_(True)


class _PairDecoder(_Decoder):

    def __init__(self, users, items, failures, size, crop_scale, seed):
        super().__init__(users, items, failures, size, crop_scale, seed, "pairs")

    def skipped(self):
        return self.blank(), self.blank(), np.int32(0), np.int32(0), np.bool_(False)

    def decode(self, index, position):
        k, j = self.items[int(index)]
        rng = np.random.default_rng([self.seed, int(position)])
        fraction, place, turns = _draw_view(rng, self.crop_scale)
        input_path, retouch_path = self.users.inputs[j], self.users.retouches[k][j]
        try:
            x = self.load(input_path)
        except ImageDecodeError as e:
            return self.fail(input_path, e.reason)
        try:
            y = self.load(retouch_path)
        except ImageDecodeError as e:
            return self.fail(retouch_path, f"{e.reason} (user {self.users.names[k]}'s retouch "
                                           f"of {input_path})")
        if abs((x.shape[1] / x.shape[0]) / (y.shape[1] / y.shape[0]) - 1.0) > ASPECT_TOLERANCE:
            return self.fail(retouch_path, f"its aspect ratio ({y.shape[1]}x{y.shape[0]}) "
                                           f"differs from its input's ({x.shape[1]}x"
                                           f"{x.shape[0]}, {input_path})")
        self.succeed()
        box = _box(x.shape, fraction, place)
        sy, sx = y.shape[0] / x.shape[0], y.shape[1] / x.shape[1]
        box_y = (box[0] * sx, box[1] * sy, box[2] * sx, box[3] * sy)
        return (_view(x, box, turns, self.size), _view(y, box_y, turns, self.size), np.int32(k),
                np.int32(j), np.bool_(True))


def _check(users, batch_size, size, crop_scale, start_step, num_shards, shard_index):
    if not isinstance(users, Users):
        raise TypeError(f"need a datasets.pienet.Users (collect_users), got {type(users)}")
    if int(batch_size) < 1 or int(size) < 1:
        raise ValueError(f"batch_size and size must be >= 1, got {batch_size}, {size}")
    low, high = (float(v) for v in crop_scale)
    if not 0.0 < low <= high <= 1.0:
        raise ValueError(f"crop_scale must be (low, high) with 0 < low <= high <= 1, got "
                         f"{crop_scale!r}")
    check_stream_position(int(start_step), int(num_shards), int(shard_index))
    return (low, high)


def _stream(decoder, n, names, types, shapes, seed, batch_size, start_step, num_shards,
            shard_index, with_sources):
    indices = index_stream(n, derive_seed(seed, "order"), start_step * batch_size * num_shards,
                           num_shards, shard_index)

    def decode(index, position):
        outputs = decoder.numpy_function([index, position], types + [tf.bool], name=names)
        *outputs, ok, stop = outputs
        for tensor, shape in zip(outputs, shapes):
            tensor.set_shape(shape)
        ok.set_shape([])
        return (*outputs, ok, stop)

    def finish(*element):
        *element, _ = element
        element = [tf.cast(t, tf.float32) / 255.0 if t.dtype == tf.uint8 else t
                   for t in element]
        return tuple(element) if with_sources else tuple(element[:-1])

    ds = map_decoded(indices, decode)
    ds = ds.filter(lambda *element: element[-1])
    ds = ds.map(finish, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    ds = ds.batch(batch_size, drop_remainder=True)
    ds = ds.prefetch(tf.data.AUTOTUNE)
    return ds.with_options(stream_options(num_shards))


def make_triplet_dataset(users, *, batch_size, seed, size=EMBEDDING_SIZE, crop_scale=(1.0, 1.0),
                         same_photo_fraction=0.0, split="train", start_step=0, num_shards=1,
                         shard_index=0, decode_failures=None, with_sources=False):
    """The embedding stage's stream (module docstring): endless batches of
    (users int32 [B], positives float32 [B, size, size, 3], negatives, same shape), in [0, 1].

    Args:
      users: `Users`; the items are each user's photos of `split` ("train" by default), and the
        negatives' photos are drawn from the same split.
      batch_size: triplets per batch (per shard); section 4.1: 64.
      seed: int; the same seed gives the same stream.
      size: side of the views (section 3.1: 256).
      crop_scale: (low, high) of the square's side as a fraction of the shorter side.
      same_photo_fraction: probability that the negative shows the positive's photo.
      start_step, num_shards, shard_index: resumption and sharding (module docstring).
      decode_failures: a `datasets.pipeline.DecodeFailures` that records skipped files.
      with_sources: also yield int32 [B, 3]: (positive's photo j, negative's photo j',
        negative's version: -1 the input, else the user index), for checks and debugging.
    """
    crop_scale = _check(users, batch_size, size, crop_scale, start_step, num_shards,
                        shard_index)
    if not 0.0 <= float(same_photo_fraction) <= 1.0:
        raise ValueError(f"same_photo_fraction must be in [0, 1], got {same_photo_fraction}")
    items = _items(users, split)
    size = int(size)
    if decode_failures is None:
        decode_failures = DecodeFailures()
    decoder = _TripletDecoder(users, items, decode_failures, size,
                              crop_scale, derive_seed(seed, "triplet"), split,
                              float(same_photo_fraction))
    image = [size, size, 3]
    return _stream(decoder, len(items), "pienet_triplet",
                   [tf.int32, tf.uint8, tf.uint8, tf.int32], [[], image, image, [3]], int(seed),
                   int(batch_size), int(start_step), int(num_shards), int(shard_index),
                   with_sources)


def make_paired_dataset(users, *, batch_size, seed, size=ENHANCER_SIZE, crop_scale=(0.5, 1.0),
                        split="train", start_step=0, num_shards=1, shard_index=0,
                        decode_failures=None, with_sources=False):
    """The enhancer stage's stream (module docstring): endless batches of
    (inputs float32 [B, size, size, 3], retouches, same shape, users int32 [B]), in [0, 1].

    Args as `make_triplet_dataset` (section 4.1: batch 8, size 512); with_sources adds the
    photo index j, int32 [B].
    """
    crop_scale = _check(users, batch_size, size, crop_scale, start_step, num_shards,
                        shard_index)
    items = _items(users, split)
    size = int(size)
    if decode_failures is None:
        decode_failures = DecodeFailures()
    decoder = _PairDecoder(users, items, decode_failures, size, crop_scale,
                           derive_seed(seed, "pair"))
    image = [size, size, 3]
    return _stream(decoder, len(items), "pienet_pair", [tf.uint8, tf.uint8, tf.int32, tf.int32],
                   [image, image, [], []], int(seed), int(batch_size), int(start_step),
                   int(num_shards), int(shard_index), with_sources)


def read_photo(path, max_side):
    """float32 RGB in [0, 1], downscaled (Pillow, bilinear, antialiased) so that its longer side
    is at most `max_side`."""
    pixels = load_rgb8(path)
    height, width = pixels.shape[:2]
    scale = max_side / max(height, width)
    if scale < 1.0:
        size = (max(1, round(width * scale)), max(1, round(height * scale)))
        pixels = np.asarray(Image.fromarray(pixels).resize(size, Image.BILINEAR, reducing_gap=None))
    return pixels.astype(np.float32) / 255.0


def central_view(path, size):
    """The central square of a photo (the shorter side), resized to size x size, float32."""
    pixels = load_rgb8(path)
    height, width = pixels.shape[:2]
    side = min(height, width)
    top, left = (height - side) // 2, (width - side) // 2
    square = Image.fromarray(pixels[top:top + side, left:left + side])
    return np.asarray(square.resize((size, size), Image.BILINEAR), np.float32) / 255.0
