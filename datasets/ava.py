"""AVA (Murray et al., CVPR 2012) for NIMA: AVA.txt parsing, 80/20 split and the tf.data pipeline.

NIMA (Talebi & Milanfar, section 4.1) trains on the vote histograms of AVA: "The AVA dataset is
divided to 80% training and 20% test sets. All images are scaled to 480x640"; the public ports
instead resize to 256x256, take a random 224x224 crop and flip (DESIGN.md section 5). Both are
offered here (`augmentation="paper"` / `"crop"`).

AVA.txt (one image per line, whitespace separated):

    <row index> <image id> <votes for 1> ... <votes for 10> <tag 1> <tag 2> <challenge id>

Images live in one directory as `<image id>.jpg`.

Typical use:

    records = load_ava("AVA.txt", "images/", skip_missing=True)
    train, test = split_ava(records, seed=0)          # or split_file="test_ids.txt"
    write_split_file("run/test_ids.txt", test)        # the run records its split
    failures = DecodeFailures()
    ds = make_dataset(train, batch_size=64, training=True, decode_failures=failures)

Resizing is `tf.image.resize(..., "bilinear", antialias=True)` on float32 [0, 1] images, the same
operation for every augmentation and for evaluation; big JPEGs are first decoded at a reduced
DCT scale by Pillow (`load_rgb8(min_size=...)`) no smaller than the resize target.
"""
import dataclasses
import hashlib
import os

import numpy as np
import tensorflow as tf
from absl import logging

from datasets.images import ImageDecodeError, load_rgb8
from datasets.pipeline import (GIVE_UP_AFTER, DataError, DecodeFailures, DecodeWorker,
                               check_stream_position, index_stream, map_decoded,
                               stream_options)

NUM_SCORES = 10
AUGMENTATIONS = ("crop", "paper", "none")
# (resize target, training crop) per augmentation; sizes are (height, width).
DEFAULT_CROP_SIZE = 224  # the public ports' crop; the resize before it scales by 256 / 224


def crop_sizes(crop_size):
    """(resize, crop) sides of the "crop" augmentation: 256 and 224 by default."""
    return int(round(crop_size * 256 / 224)), int(crop_size)
_PAPER_SIZE = (480, 640)
_FIRST_NAMES = 5  # How many missing / unknown ids an error message lists.


@dataclasses.dataclass
class AvaRecords:
    """The labelled images of (a part of) AVA.

    Attributes:
      ids: image ids, as in AVA.txt.
      paths: the image file of each id.
      distributions: float32 (n, 10); row i is the normalised vote histogram over scores 1..10.
    """

    ids: list
    paths: list
    distributions: np.ndarray

    def __post_init__(self):
        self.ids = [str(i) for i in self.ids]
        self.paths = [os.fspath(p) for p in self.paths]
        self.distributions = np.asarray(self.distributions, dtype=np.float32).reshape(
            -1, NUM_SCORES)
        if not len(self.ids) == len(self.paths) == len(self.distributions):
            raise ValueError(
                f"AvaRecords: {len(self.ids)} ids, {len(self.paths)} paths and "
                f"{len(self.distributions)} distributions; they must be equally many")

    def __len__(self):
        return len(self.ids)

    def subset(self, indices):
        """The records at `indices` (a sequence of ints or a boolean mask), in that order."""
        indices = np.asarray(indices)
        if indices.dtype == bool:
            indices = np.flatnonzero(indices)
        indices = indices.astype(np.int64).reshape(-1)
        return AvaRecords(
            ids=[self.ids[i] for i in indices],
            paths=[self.paths[i] for i in indices],
            distributions=self.distributions[indices])

    @property
    def mean_scores(self):
        """float32 (n,): sum_i i * p_i, the mean score of each image (NIMA eq. 1's mu)."""
        return (self.distributions @ np.arange(1, NUM_SCORES + 1, dtype=np.float32)).astype(
            np.float32)


def read_ava_txt(path):
    """Parses AVA.txt.

    Column 1 (row index) and columns 13+ (semantic tags, challenge id) are ignored; column 2 is
    the image id and columns 3-12 the vote counts for scores 1..10. Blank lines are skipped.
    Rows whose votes sum to zero carry no label: they are dropped and their number is logged.
    A repeated id keeps its first line; the repeats are dropped and logged (a warning, not an
    error, so that one odd line does not stop a 255k-image run).

    Returns:
      (ids, counts): list of str, and int64 array (n, 10) of vote counts.

    Raises:
      ValueError: a line has fewer than 12 columns or a count that is not a non-negative
        integer; the message names the file and the line number.
      DataError: no row is left: the file is empty, or every row has zero votes (it names the
        file).
    """
    path = os.fspath(path)
    ids, rows, first_line = [], [], {}
    zero_total, duplicates = [], []
    with open(path, "r", encoding="utf-8") as f:
        for line_number, line in enumerate(f, start=1):
            fields = line.split()
            if not fields:
                continue
            if len(fields) < 2 + NUM_SCORES:
                raise ValueError(
                    f"{path}, line {line_number}: expected at least {2 + NUM_SCORES} "
                    f"whitespace-separated columns (row index, image id, {NUM_SCORES} vote "
                    f"counts, ...), got {len(fields)}: {line.strip()[:120]!r}")
            image_id = fields[1]
            try:
                counts = [int(v) for v in fields[2:2 + NUM_SCORES]]
            except ValueError:
                raise ValueError(
                    f"{path}, line {line_number}: columns 3-12 must be integer vote counts, "
                    f"got {fields[2:2 + NUM_SCORES]}") from None
            if min(counts) < 0:
                raise ValueError(
                    f"{path}, line {line_number}: negative vote count in {counts}")
            if image_id in first_line:
                duplicates.append(f"{image_id} (lines {first_line[image_id]}, {line_number})")
                continue
            first_line[image_id] = line_number
            if sum(counts) == 0:
                zero_total.append(image_id)
                continue
            ids.append(image_id)
            rows.append(counts)
    if not ids:
        why = (f"every one of its {len(zero_total)} rows has zero votes (no label)" if zero_total
               else "it is empty")
        raise DataError(f"{path} lists no image: {why}; is it AVA.txt?")
    if zero_total:
        logging.warning("%s: dropped %d rows with zero votes (first: %s)", path,
                        len(zero_total), ", ".join(zero_total[:_FIRST_NAMES]))
    if duplicates:
        logging.warning("%s: %d image ids appear more than once; kept the first line of each "
                        "(first: %s)", path, len(duplicates),
                        ", ".join(duplicates[:_FIRST_NAMES]))
    counts = np.asarray(rows, dtype=np.int64).reshape(-1, NUM_SCORES)
    return ids, counts


def load_ava(ava_txt, image_dir, *, skip_missing=False, extensions=(".jpg",)):
    """AVA.txt + the image directory -> AvaRecords (file order of AVA.txt).

    The image of id X is `<image_dir>/X<ext>` for the first of `extensions` that exists (exact
    name first, then ignoring case). The directory is listed once, so 255k ids cost one
    `os.scandir`, not 255k stat calls.

    Ids without an image are counted and logged before anything else happens. Unless
    `skip_missing` is True that is an error (a silently smaller training set changes the
    results); with it they are dropped.

    Raises:
      FileNotFoundError: `image_dir` does not exist, or images are missing and skip_missing is
        False (the message names AVA.txt, the directory, the count, the first ids and the flag
        `--skip_missing_images`).
      ValueError: AVA.txt is malformed (see `read_ava_txt`).
      DataError: AVA.txt lists no labelled image, or none of its images exists.
    """
    ava_txt, image_dir = os.fspath(ava_txt), os.fspath(image_dir)
    if isinstance(extensions, str):
        extensions = (extensions,)
    extensions = tuple(e if e.startswith(".") else "." + e for e in extensions)
    if not extensions:
        raise ValueError("load_ava: extensions must name at least one file extension")
    ids, counts = read_ava_txt(ava_txt)
    if not os.path.isdir(image_dir):
        raise FileNotFoundError(f"AVA image directory {image_dir!r} does not exist "
                                f"(AVA.txt: {ava_txt!r})")
    with os.scandir(image_dir) as entries:
        names = {entry.name for entry in entries}
    by_lower = {}
    for name in names:
        by_lower.setdefault(name.lower(), name)

    keep, paths, missing = [], [], []
    for i, image_id in enumerate(ids):
        found = None
        for ext in extensions:
            name = image_id + ext
            if name in names:
                found = name
                break
            found = by_lower.get(name.lower())
            if found is not None:
                break
        if found is None:
            missing.append(image_id)
        else:
            keep.append(i)
            paths.append(os.path.join(image_dir, found))

    if missing:
        first = ", ".join(m + extensions[0] for m in missing[:_FIRST_NAMES])
        summary = (f"{len(missing)} of {len(ids)} images listed in {ava_txt} are missing from "
                   f"{image_dir} (first: {first})")
        if not skip_missing:
            logging.error("%s", summary)
            raise FileNotFoundError(
                f"{summary}. Pass --skip_missing_images (load_ava(..., skip_missing=True)) to "
                f"drop them and use the {len(keep)} images that are present.")
        logging.warning("%s; skipping them (--skip_missing_images), %d images remain",
                        summary, len(keep))
    if not keep:
        raise DataError(f"none of the {len(ids)} images listed in {ava_txt} is in {image_dir}")
    counts = counts[keep]
    distributions = (counts / counts.sum(axis=1, keepdims=True)).astype(np.float32)
    return AvaRecords(ids=[ids[i] for i in keep], paths=paths, distributions=distributions)


# ----------------------------------------------------------------------------- split


def _split_rank_key(seed, image_id):
    return hashlib.blake2b(f"{seed}\x00{image_id}".encode("utf-8"), digest_size=8).digest()


def split_ava(records, *, test_fraction=0.2, seed=0, split_file=None):
    """Splits records into (train, test); both keep the records' order.

    Without `split_file`: the test set is the round(n * test_fraction) ids with the smallest
    keyed hash blake2b(seed, id). The split therefore depends only on the seed and the SET of
    ids: not on the order of AVA.txt's lines, not on the machine or library versions, and
    dropping a few ids (missing images) moves only ids near the cut, never reshuffles the rest.

    With `split_file` (one test id per line, see `write_split_file`): test = the records listed
    there, train = all others; `test_fraction` and `seed` are ignored. Listed ids that are not
    in the records (e.g. images skipped as missing) are logged with their count and ignored; if
    none of the listed ids is in the records, that is an error (wrong file or dataset).

    Raises:
      ValueError: test_fraction outside (0, 1), a split that leaves train or test empty, or a
        split file that matches no record.
    """
    n = len(records)
    if split_file is not None:
        test_ids = read_split_file(split_file)
        wanted = set(test_ids)
        is_test = np.array([i in wanted for i in records.ids], dtype=bool)
        unknown = wanted.difference(records.ids)
        if not is_test.any():
            raise ValueError(
                f"split file {os.fspath(split_file)!r} lists {len(wanted)} test ids and none of "
                f"them is among the {n} records (first listed: "
                f"{', '.join(test_ids[:_FIRST_NAMES])})")
        if unknown:
            first = ", ".join([i for i in test_ids if i in unknown][:_FIRST_NAMES])
            logging.warning("split file %s: %d of its %d test ids are not in the records "
                            "(ignored; first: %s)", os.fspath(split_file), len(unknown),
                            len(wanted), first)
    else:
        if not 0.0 < float(test_fraction) < 1.0:
            raise ValueError(f"test_fraction must be in (0, 1), got {test_fraction}")
        n_test = int(round(n * float(test_fraction)))
        order = sorted(range(n), key=lambda i: _split_rank_key(seed, records.ids[i]))
        is_test = np.zeros(n, dtype=bool)
        is_test[order[:n_test]] = True
    if is_test.all() or not is_test.any():
        raise ValueError(f"the split of {n} records leaves {int(is_test.sum())} for test and "
                         f"{int((~is_test).sum())} for training; both must be non-empty")
    return records.subset(~is_test), records.subset(is_test)


def write_split_file(path, test):
    """Writes the test ids (an AvaRecords or a sequence of ids), one per line, atomically.

    Lines starting with '#' are comments; `split_ava(split_file=path)` reads the file back.
    """
    path = os.fspath(path)
    ids = test.ids if isinstance(test, AvaRecords) else [str(i) for i in test]
    directory = os.path.dirname(path)
    if directory:
        os.makedirs(directory, exist_ok=True)
    tmp = f"{path}.tmp-{os.getpid()}"
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(f"# AVA test split: {len(ids)} image ids, one per line\n")
        for image_id in ids:
            f.write(image_id + "\n")
    os.replace(tmp, path)
    return path


def read_split_file(path):
    """The ids of a split file, in file order, without blank lines, comments or duplicates."""
    ids, seen = [], set()
    with open(os.fspath(path), "r", encoding="utf-8") as f:
        for line in f:
            image_id = line.strip()
            if image_id and not image_id.startswith("#") and image_id not in seen:
                seen.add(image_id)
                ids.append(image_id)
    return ids


# ----------------------------------------------------------------------------- pipeline


class _Decoder(DecodeWorker):
    """`load_rgb8` of one path that never raises; a training stream gives up if nothing decodes."""

    def __init__(self, failures, min_size, num_examples, endless):
        super().__init__(failures, min(num_examples, GIVE_UP_AFTER) if endless else None)
        self.min_size = min_size

    def decode(self, path):
        path = path.decode("utf-8") if isinstance(path, bytes) else str(path)
        try:
            image = load_rgb8(path, min_size=self.min_size)
        except ImageDecodeError as e:
            return self.fail(path, e.reason, cause=e)
        self.succeed()
        return image, np.bool_(True)

    def skipped(self):
        return np.zeros((1, 1, 3), np.uint8), np.bool_(False)

    def give_up_message(self, path, reason):
        return (f"none of the first {self.failed} images could be decoded (e.g. {path}: "
                f"{reason}); is the image directory right?")


def _resize(image, size):
    return tf.image.resize(image, size, method="bilinear", antialias=True)


def make_dataset(records, *, batch_size, training, augmentation="crop", crop_size=DEFAULT_CROP_SIZE,
                 seed=0, start_step=0,
                 num_shards=1, shard_index=0, decode_failures=None):
    """The NIMA input pipeline: batches of (images, distributions).

    Yields `(images, distributions)`: float32 [B, H, W, 3] in [0, 1] and float32 [B, 10].

    Augmentations (sizes are height x width):
      "crop": training: resize to 256x256, random 224x224 crop, random horizontal flip (the
        public NIMA ports); eval: resize to 224x224. `crop_size` other than 224 scales both
        (the demo preset uses a smaller crop).
      "paper": resize to 480x640 (NIMA section 4.1); random horizontal flip when training.
      "none": original size, random flip when training; needs batch_size 1.

    Training (`training=True`): endless, batches of exactly `batch_size` (drop_remainder).
    Epoch e visits the records in the permutation stateless_shuffle(range(n), seed=(seed, e)),
    and the crop/flip of the example at global stream position p is drawn with stateless ops
    seeded by (seed, p): given `seed`, every batch is reproducible. `start_step` skips the first
    start_step batches without decoding anything (the position is computed, nothing is
    iterated), so a run resumed at step k sees exactly what the uninterrupted run saw from step
    k on. (Exact as long as no image failed to decode in the skipped part: a skipped failure
    shifts the stream by one example.)

    Eval (`training=False`): one pass in the records' order, the last batch may be smaller;
    `start_step` skips start_step batches of this shard.

    Sharding (MultiWorkerMirroredStrategy per-worker input, e.g. from
    `strategy.distribute_datasets_from_function` with input_context.num_input_pipelines /
    input_pipeline_id): the index stream is sharded before decoding. Training: shard k takes
    the stream positions p with p % num_shards == k, so within every epoch the shards are
    disjoint and cover the records; `batch_size` is the per-shard batch and `start_step`
    counts steps, so all shards skip start_step * batch_size * num_shards global positions.
    Eval: shard k takes records k, k + num_shards, ... . tf.data auto-sharding is switched off
    when num_shards > 1.

    Decoding: Pillow's `load_rgb8` through `tf.numpy_function`, in parallel (AUTOTUNE), order
    preserved. An image that cannot be decoded is skipped and recorded in `decode_failures`
    (a `DecodeFailures`; a private one is used if None); it never stops the run. Only if the
    first min(n, 1000) images of a training stream ALL fail (wrong directory, files that are not
    images) does it raise, instead of spinning forever.
    Because of the numpy_function the dataset runs in this Python process (no tf.data service);
    at interpreter exit the stream ends (`datasets.pipeline.map_decoded`), so that a process
    exits with a live iterator or after this error.
    """
    if not isinstance(records, AvaRecords):
        raise TypeError(f"records must be AvaRecords, got {type(records).__name__}")
    n = len(records)
    if n == 0:
        raise ValueError("make_dataset: records is empty")
    if augmentation not in AUGMENTATIONS:
        raise ValueError(f"augmentation must be one of {AUGMENTATIONS}, got {augmentation!r}")
    batch_size, start_step = int(batch_size), int(start_step)
    num_shards, shard_index, seed = int(num_shards), int(shard_index), int(seed)
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if augmentation == "none" and batch_size != 1:
        raise ValueError(
            f"augmentation='none' keeps every image at its own size, so batch_size must be 1, "
            f"got {batch_size}")
    check_stream_position(start_step, num_shards, shard_index)
    if decode_failures is None:
        decode_failures = DecodeFailures()

    resize_side, crop_side = crop_sizes(crop_size)
    if augmentation == "crop":
        min_size = (resize_side, resize_side) if training else (crop_side, crop_side)
    elif augmentation == "paper":
        min_size = _PAPER_SIZE
    else:
        min_size = None

    if training:
        indices = index_stream(n, seed, start_step * batch_size * num_shards, num_shards,
                               shard_index)
    else:
        mine = np.arange(shard_index, n, num_shards, dtype=np.int64)[start_step * batch_size:]
        indices = tf.data.Dataset.from_tensor_slices((mine, mine))

    paths = tf.constant(records.paths, dtype=tf.string)
    distributions = tf.constant(records.distributions, dtype=tf.float32)
    decoder = _Decoder(decode_failures, min_size, n, endless=training)

    def decode(index, position):
        image, ok, stop = decoder.numpy_function([tf.gather(paths, index)],
                                                 [tf.uint8, tf.bool], name="load_rgb8")
        image.set_shape([None, None, 3])
        ok.set_shape([])
        return image, tf.gather(distributions, index), position, ok, stop

    seed_t = tf.constant(seed, tf.int64)

    def augment(image, distribution, position):
        image = tf.image.convert_image_dtype(image, tf.float32)
        crop_seed = tf.stack([seed_t, 2 * position])
        flip_seed = tf.stack([seed_t, 2 * position + 1])
        if augmentation == "crop":
            if training:
                image = _resize(image, (resize_side, resize_side))
                image = tf.image.stateless_random_crop(
                    image, [crop_side, crop_side, 3], seed=crop_seed)
            else:
                image = _resize(image, (crop_side, crop_side))
        elif augmentation == "paper":
            image = _resize(image, _PAPER_SIZE)
        if training:
            image = tf.image.stateless_random_flip_left_right(image, seed=flip_seed)
        return tf.clip_by_value(image, 0.0, 1.0), distribution

    ds = map_decoded(indices, decode)
    ds = ds.filter(lambda image, distribution, position, ok: ok)
    ds = ds.map(lambda image, distribution, position, ok: augment(image, distribution, position),
                num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    ds = ds.batch(batch_size, drop_remainder=training)
    ds = ds.prefetch(tf.data.AUTOTUNE)
    return ds.with_options(stream_options(num_shards))

