"""Paired photos (input, reference) for full-reference training: CAN on MIT-Adobe FiveK.

NIMA's CAN experiment (Talebi & Milanfar, section 4.2) trains a context aggregation network on
(input, reference) pairs: "We split the FiveK dataset to training and testing sets with 2500
images. At training, images are rescaled to 480x640. However, testing is performed on the
original size of images. Also, pixel values are mapped to [0, 1]." Its references come from an
operator (a tone mapper, a dehazer) run on FiveK; an expert's retouches (A-E) are the other
common choice.

Sources (`collect_pairs`), exactly one of:

    --fivek_dir  (+ experts)    <fivek_dir>/input/ and <fivek_dir>/expert<X>/ for each expert X
                                (folder names and pairing rules: `datasets.fivek`)
    --input_dir + --reference_dir
                                any two folders, paired by file stem: the input photos and the
                                output of an operator run on them (tone mapping, dehazing)

Photos pair up by file stem whatever the extensions (`input/a0001-x.tif` with
`expertC/a0001-x.jpg`); a photo without its partner is reported by name (`missing`) and left
out. With several experts, each input gives one pair per expert: the pairs are listed expert by
expert, each expert's in natural order of the input names.

Split (`split_pairs`):
- With list files (`fivek.read_split_file`: one name a line; `17`, `0017`, `a0017` are FiveK
  ids, any other name is an exact stem): the pairs whose INPUT is selected by the train list
  (test list) are the training (test) pairs; given one list only, the other side is every pair
  it does not select. A listed name that selects no pair is an error naming the list file, and
  so is an input selected by both lists.
- Without lists, the paper's split, 2,500 training and 2,500 test photos (section 4.2; the
  paper does not say which). When every input stem carries a FiveK number in 1..5000 (the
  files are named as FiveK names them, `a0001-...` to `a5000-...`), numbers 1-2500 train and
  2501-5000 test. Otherwise the distinct inputs in natural order of their names are cut in two:
  the first ceil(n / 2) train, the rest test.
Either way every pair of one input (one per expert) lands on the same side, so a test photo is
never seen in training through another expert's version.

Training stream (`make_training_dataset`): endless batches of (inputs, references), float32 in
[0, 1], both images of a pair rescaled to `size` = (height, width) = (480, 640) for landscape
photos (width >= height) and to (width, height) = (640, 480) for portrait ones, with
`tf.image.resize(..., "bilinear", antialias=True)`: the orientation is kept, not distorted.
With batch_size > 1 the images of a batch must share one shape, so portrait pairs are first
rotated by 90 degrees counter-clockwise (`np.rot90`, k = 1) to landscape and every example is
`size`. Order, resumption and sharding are those of `datasets.pipeline.index_stream` (an epoch
is a seeded permutation of the pairs); no augmentation (the paper names none). Test pairs are
loaded one by one at full size (`load_test_pair`).

Typical use:

    pairs, missing = collect_pairs(fivek_dir="fivek/", experts=("C",))
    train, test = split_pairs(pairs)                     # or train_list=..., test_list=...
    failures = DecodeFailures()
    ds = make_training_dataset(train, batch_size=1, seed=0, start_step=step,
                               decode_failures=failures)
    for inputs, references in ds: ...                    # [1, 480, 640, 3] or [1, 640, 480, 3]
    for input_path, reference_path in test:
        x, y = load_test_pair(input_path, reference_path)  # full size, float32 [H, W, 3]
"""
import math
import os

import numpy as np
import tensorflow as tf
from absl import logging

from datasets import fivek
from datasets.images import ImageDecodeError, load_rgb8, natural_key
from datasets.pipeline import (GIVE_UP_AFTER, DecodeFailures, DecodeWorker,
                               check_stream_position, index_stream, map_decoded,
                               stream_options)

__all__ = [
    "ASPECT_TOLERANCE",
    "FIVEK_SPLIT",
    "PAPER_SIZE",
    "collect_pairs",
    "load_test_pair",
    "make_training_dataset",
    "split_pairs",
]

PAPER_SIZE = (480, 640)  # (height, width) of the training images, section 4.2
FIVEK_SPLIT = 2500  # FiveK numbers 1..2500 train, 2501..5000 test
FIVEK_SIZE = 5000
# Input and reference may differ in aspect ratio (width / height) by this relative amount.
ASPECT_TOLERANCE = 0.01
_FIRST_NAMES = 5  # how many names an error message lists


def _stem(path):
    return os.path.splitext(os.path.basename(path))[0]


# ----------------------------------------------------------------------------- pairs


def collect_pairs(*, fivek_dir=None, experts=("C",), input_dir=None, reference_dir=None):
    """The (input, reference) pairs of one source (module docstring); returns (pairs, missing).

    Args:
      fivek_dir: a FiveK folder (`datasets.fivek` layout); pairs (input, expert X) for each X
        in `experts`, listed expert by expert.
      experts: expert letters A..E: a sequence, or a string such as "C" or "A,C".
      input_dir, reference_dir: two folders paired by stem (an operator's outputs), used
        instead of `fivek_dir`.

    Returns:
      pairs: [(input_path, reference_path)].
      missing: one line per photo without a partner, naming the file (`fivek.match_by_stem`),
        over all experts.

    Raises:
      ValueError: both sources or neither, only one of input_dir/reference_dir, no expert, or
        what `fivek.match_by_stem` raises (missing folder, no pair at all).
    """
    folders = input_dir is not None or reference_dir is not None
    if fivek_dir is not None and folders:
        raise ValueError("give either --fivek_dir (FiveK with expert folders) or --input_dir "
                         "and --reference_dir (two folders paired by file name), not both")
    if fivek_dir is None and not folders:
        raise ValueError("no paired photos given: set --fivek_dir (FiveK with expert folders) "
                         "or --input_dir and --reference_dir (two folders paired by file name)")
    if folders:
        if input_dir is None or reference_dir is None:
            given, lacking = (("--input_dir", "--reference_dir") if input_dir is not None
                              else ("--reference_dir", "--input_dir"))
            raise ValueError(f"{given} needs {lacking} too (or use --fivek_dir instead)")
        return fivek.match_by_stem(input_dir, reference_dir)

    if isinstance(experts, str):
        experts = experts.split(",")
    experts = [str(e).strip() for e in experts if str(e).strip()]
    if not experts:
        raise ValueError("--fivek_dir needs at least one expert (A..E)")
    inputs = fivek.input_dir(fivek_dir)
    pairs, missing, seen = [], [], []
    for expert in experts:
        folder = fivek.expert_dir(fivek_dir, expert)
        if folder in seen:
            continue  # "C,c" names one folder once
        seen.append(folder)
        expert_pairs, expert_missing = fivek.match_by_stem(inputs, folder)
        pairs.extend(expert_pairs)
        missing.extend(expert_missing)
    return pairs, missing


def _by_input(pairs):
    """{input stem: [pair indices]} in order of first appearance."""
    groups = {}
    for i, (input_path, _) in enumerate(pairs):
        groups.setdefault(_stem(input_path), []).append(i)
    return groups


def _select_by_list(stems, path):
    """The stems a split file selects; ValueError naming the file for names selecting none."""
    path = os.fspath(path)
    select, wanted = fivek.selector(fivek.read_split_file(path))
    chosen, used = set(), set()
    for stem in stems:
        hits = select(stem)
        if hits:
            chosen.add(stem)
            used.update(hits)
    unused = [name for name in wanted if name not in used]
    if unused:
        raise ValueError(
            f"{len(unused)} of the {len(wanted)} names in split file {path!r} match no input "
            f"photo of the pairs: {', '.join(unused[:_FIRST_NAMES])}"
            + (" ..." if len(unused) > _FIRST_NAMES else ""))
    return chosen


def split_pairs(pairs, *, train_list=None, test_list=None):
    """Splits pairs into (train_pairs, test_pairs), each in the order of `pairs`.

    The rules are in the module docstring: list files select by input photo (FiveK ids or
    stems), one list alone leaves the rest for the other side; without lists, FiveK numbers
    1-2500 / 2501-5000 when every input has one in 1..5000, else the first half of the inputs
    in natural order / the second half. All pairs of one input stay on one side.

    Raises:
      ValueError: `pairs` is empty; a list names something that selects no input (the message
        names the list file); an input selected by both lists; no training pair. An empty test
        side is only logged.
    """
    pairs = [(os.fspath(a), os.fspath(b)) for a, b in pairs]
    if not pairs:
        raise ValueError("split_pairs: no pairs to split")
    groups = _by_input(pairs)
    stems = list(groups)
    if train_list is not None or test_list is not None:
        train = _select_by_list(stems, train_list) if train_list is not None else None
        test = _select_by_list(stems, test_list) if test_list is not None else None
        if train is not None and test is not None:
            both = [s for s in stems if s in train and s in test]
            if both:
                raise ValueError(
                    f"{len(both)} input photos are selected by both split files "
                    f"{os.fspath(train_list)!r} and {os.fspath(test_list)!r}: "
                    f"{', '.join(both[:_FIRST_NAMES])}" + (" ..." if len(both) > _FIRST_NAMES
                                                          else ""))
            neither = [s for s in stems if s not in train and s not in test]
            if neither:
                logging.info("split files: %d input photos are in neither list and are not "
                             "used (first: %s)", len(neither),
                             ", ".join(neither[:_FIRST_NAMES]))
        elif train is None:
            train = set(stems) - test
        else:
            test = set(stems) - train
        rule = "split files"
    else:
        numbers = [fivek.fivek_number(s) for s in stems]
        if all(n is not None and 1 <= n <= FIVEK_SIZE for n in numbers):
            train = {s for s, n in zip(stems, numbers) if n <= FIVEK_SPLIT}
            rule = f"FiveK numbers 1-{FIVEK_SPLIT} / {FIVEK_SPLIT + 1}-{FIVEK_SIZE}"
        else:
            ordered = sorted(stems, key=natural_key)
            train = set(ordered[:math.ceil(len(ordered) / 2)])
            rule = "first half / second half of the inputs in natural order"
        test = set(stems) - train
    train_pairs = [p for p in pairs if _stem(p[0]) in train]
    test_pairs = [p for p in pairs if _stem(p[0]) in test]
    if not train_pairs:
        raise ValueError(f"the split ({rule}) leaves no training pair among the {len(stems)} "
                         "input photos")
    if not test_pairs:
        logging.warning("the split (%s) leaves no test pair among the %d input photos", rule,
                        len(stems))
    logging.info("split (%s): %d training pairs, %d test pairs", rule, len(train_pairs),
                 len(test_pairs))
    return train_pairs, test_pairs


# ----------------------------------------------------------------------------- images


def _aspect_gap(shape_a, shape_b):
    """Relative difference of the aspect ratios (width / height) of two (H, W, ...) shapes."""
    aspect_a = shape_a[1] / shape_a[0]
    aspect_b = shape_b[1] / shape_b[0]
    return abs(aspect_a / aspect_b - 1.0)


def _aspect_message(input_path, input_shape, reference_path, reference_shape):
    return (f"input {input_path} ({input_shape[1]}x{input_shape[0]}) and reference "
            f"{reference_path} ({reference_shape[1]}x{reference_shape[0]}) differ in aspect "
            f"ratio by more than {ASPECT_TOLERANCE:.0%}")


def load_test_pair(input_path, reference_path):
    """A test pair at full size (section 4.2: "testing is performed on the original size").

    Returns:
      (input, reference): float32 [H, W, 3] in [0, 1], H x W the input's size. A reference of
      the same aspect ratio (within 1%) but another size is resized to the input's size
      (bilinear, antialiased) and a warning is logged.

    Raises:
      ImageDecodeError: either file cannot be decoded (as `load_rgb8` raises it).
      ValueError: the aspect ratios differ by more than 1% (the message names both files).
    """
    x = load_rgb8(input_path)
    y = load_rgb8(reference_path)
    if _aspect_gap(x.shape, y.shape) > ASPECT_TOLERANCE:
        raise ValueError(_aspect_message(input_path, x.shape, reference_path, y.shape))
    x = x.astype(np.float32) / 255.0
    y = y.astype(np.float32) / 255.0
    if x.shape != y.shape:
        logging.warning("reference %s (%dx%d) resized to the size of its input %s (%dx%d)",
                        reference_path, y.shape[1], y.shape[0], input_path, x.shape[1],
                        x.shape[0])
        y = tf.image.resize(y, x.shape[:2], method="bilinear", antialias=True)
        y = np.clip(y.numpy(), 0.0, 1.0).astype(np.float32)
    return x, y


class _PairDecoder(DecodeWorker):
    """Decodes and checks one pair: (input, reference, ok) as uint8 arrays, portrait pairs turned
    to landscape when `rotate`; a bad pair is recorded in `failures` and skipped."""

    def __init__(self, pairs, failures, min_size, rotate):
        super().__init__(failures, min(len(pairs), GIVE_UP_AFTER))
        self.pairs = pairs
        self.min_size = min_size
        self.rotate = rotate

    def skipped(self):
        empty = np.zeros((1, 1, 3), np.uint8)
        return empty, empty, np.bool_(False)

    def give_up_message(self, path, reason):
        return (f"none of the first {self.failed} training pairs could be used (e.g. {path}: "
                f"{reason}); are the input and reference folders right?")

    def decode(self, index):
        input_path, reference_path = self.pairs[int(index)]
        try:
            x = load_rgb8(input_path, min_size=self.min_size)
        except ImageDecodeError as e:
            return self.fail(input_path, e.reason)
        try:
            y = load_rgb8(reference_path, min_size=self.min_size)
        except ImageDecodeError as e:
            return self.fail(reference_path, f"{e.reason} (reference of {input_path})")
        if _aspect_gap(x.shape, y.shape) > ASPECT_TOLERANCE:
            return self.fail(input_path, _aspect_message(input_path, x.shape, reference_path,
                                                         y.shape))
        self.succeed()
        if self.rotate and x.shape[0] > x.shape[1]:
            x = np.ascontiguousarray(np.rot90(x))
            y = np.ascontiguousarray(np.rot90(y))
        return x, y, np.bool_(True)


def make_training_dataset(pairs, *, batch_size, seed, size=PAPER_SIZE, start_step=0, num_shards=1,
                          shard_index=0, decode_failures=None):
    """The CAN training stream: endless batches of (inputs, references) (module docstring).

    Args:
      pairs: [(input_path, reference_path)] (`collect_pairs`, `split_pairs`).
      batch_size: pairs per batch (per shard). With batch_size 1 a batch is [1, h, w, 3] with
        (h, w) = size for landscape photos and (size[1], size[0]) for portrait ones; with
        batch_size > 1 portrait pairs are rotated 90 degrees counter-clockwise and every batch
        is [batch_size, size[0], size[1], 3].
      seed: int; epoch e visits the pairs in the permutation stateless_shuffle(range(n),
        seed=(seed, e)) (`datasets.pipeline.index_stream`).
      size: (height, width) for landscape photos; default 480x640 (section 4.2).
      start_step: batches already consumed: the first start_step * batch_size * num_shards
        global positions are skipped without decoding anything, so a run resumed at step k sees
        what the uninterrupted run saw from step k on (exactly, as long as no pair failed in
        the skipped part: a skipped failure shifts the stream by one pair).
      num_shards, shard_index: this input pipeline's share: global positions p with
        p % num_shards == shard_index (disjoint within every epoch; tf.data auto-sharding is
        switched off when num_shards > 1).
      decode_failures: a `datasets.pipeline.DecodeFailures` (a private one if None). A pair whose
        input or reference cannot be decoded, or whose aspect ratios differ by more than 1%, is
        recorded there (naming the file, or both files) and skipped. If the first min(n, 1000)
        pairs all fail, iterating raises an error instead of spinning forever.

    Returns:
      tf.data.Dataset of (float32 [B, h, w, 3], float32 [B, h, w, 3]), values in [0, 1];
      deterministic. Decoding runs in this Python process (`tf.numpy_function`, Pillow's
      `load_rgb8`, parallel, order kept); big JPEGs are decoded at the smallest DCT scale that
      keeps both sides at least max(size).
    """
    pairs = [(os.fspath(a), os.fspath(b)) for a, b in pairs]
    n = len(pairs)
    if n == 0:
        raise ValueError("make_training_dataset: no training pairs")
    batch_size, seed, start_step = int(batch_size), int(seed), int(start_step)
    num_shards, shard_index = int(num_shards), int(shard_index)
    height, width = (int(v) for v in size)
    if height < 1 or width < 1:
        raise ValueError(f"size must be two positive ints (height, width), got {size!r}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    check_stream_position(start_step, num_shards, shard_index)
    if decode_failures is None:
        decode_failures = DecodeFailures()

    rotate = batch_size > 1
    side = max(height, width)
    decoder = _PairDecoder(pairs, decode_failures, (side, side), rotate)
    indices = index_stream(n, seed, start_step * batch_size * num_shards, num_shards,
                           shard_index)

    def decode(index, position):
        del position
        x, y, ok, stop = decoder.numpy_function([index], [tf.uint8, tf.uint8, tf.bool],
                                                name="load_rgb8_pair")
        x.set_shape([None, None, 3])
        y.set_shape([None, None, 3])
        ok.set_shape([])
        return x, y, ok, stop

    landscape = tf.constant([height, width], tf.int32)
    portrait = tf.constant([width, height], tf.int32)

    def rescale(x, y):
        shape = tf.shape(x)
        target = landscape if rotate else tf.where(shape[0] > shape[1], portrait, landscape)
        out = []
        for image in (x, y):
            image = tf.image.convert_image_dtype(image, tf.float32)
            image = tf.image.resize(image, target, method="bilinear", antialias=True)
            image = tf.clip_by_value(image, 0.0, 1.0)
            if rotate:
                image.set_shape([height, width, 3])
            out.append(image)
        return tuple(out)

    ds = map_decoded(indices, decode)
    ds = ds.filter(lambda x, y, ok: ok)
    ds = ds.map(lambda x, y, ok: rescale(x, y), num_parallel_calls=tf.data.AUTOTUNE,
                deterministic=True)
    ds = ds.batch(batch_size, drop_remainder=True)
    ds = ds.prefetch(tf.data.AUTOTUNE)
    return ds.with_options(stream_options(num_shards))
