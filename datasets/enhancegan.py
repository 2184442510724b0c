"""EnhanceGAN's data (Deng, Loy & Tang, ACM MM 2018, section 4.1): good/bad image sets, the k-NN
pairing of every bad image with good ones, and the two training streams.

EnhanceGAN learns from binary quality labels only. Its data, as section 4.1 and the authors'
Torch7 release fix it:

- CUHK-PQ (Tang et al. 2013): 4,072 high- and 11,812 low-quality photos in seven categories,
  "with 10% of the images reserved for validation"; used to pre-train the critic's body for
  good/bad classification (balanced accuracy, 94.3% in the paper).
- AVA (Murray et al. 2012): "the 'Real' input to the discriminator ... is chosen from the top 30%
  of the high-quality images" (high quality: mean score >= 5), "the 'Fake' inputs are the
  low-quality images that have an average score < 5", a subset of them selected by AVA's
  semantic tags (footnote 4: Landscape, Seascape, Cityscape, Rural, Sky, Water, Nature, Animals,
  Portraiture); 20,000 of them, "each paired with k=5 high-quality images sampled from the k-NN
  in the feature space of f_vgg", all from AVA's standard training partition. Val100: "100
  random images from the standard test partition".
- The release: a bad image has its short side resized to 256, a random 224x224 crop and a random
  left-right flip; its good partner is one of its 5 neighbours drawn at random, resized whole to
  224x224 (aspect not kept).

On disk:

    CUHK-PQ    <root>/HighQuality/<category>/*.jpg, <root>/LowQuality/<category>/*.jpg
               (folder names matched ignoring case; photos directly in a quality folder get the
               category ""); `load_cuhkpq`.
    AVA        AVA.txt + images/<id>.jpg (`datasets.ava`), tags.txt (`<id> <name>` a line) for
               tag names; `load_ava_good_bad`, `val100`.

Every image has a KEY, its path relative to the set's root with "/" separators
("HighQuality/animal/a01.jpg"; "953619.jpg" for AVA): the split and the pairing cache use keys,
never absolute paths, so a copied dataset keeps both.

Split (`split_good_bad`): good and bad separately, the round(n * val_fraction) keys (at least one
when val_fraction > 0 and n >= 2) with the smallest keyed hash blake2b(seed, key) are held out,
as `datasets.ava.split_ava` does for AVA ids: deterministic by seed, independent of listing
order, and adding files moves only keys near the cut.

Pairing (`pair_good_bad`): every bad image's k = 5 nearest good images, by Euclidean distance
between features `features_fn(images)` of the images resized whole to 224x224 (VGG-16 fc7 in
the paper; any callable from float32 [n, s, s, 3] in [0, 1] to [n, d]). Exact: a brute-force
search in chunks with NumPy (`knn`). Computed once and cached; cache formats:

    .npz   (`write_pairing`; np.load(allow_pickle=False) reads it)
             format           int, PAIRING_FORMAT
             fingerprint      str: sha256 of the format, k, the feature settings (feature_id,
                              image_size) and the ordered good and bad keys (`pairing_fingerprint`)
             settings         str: JSON of {"k", "image_size", "feature_id"}
             bad_keys         str [m]: the paired bad images
             good_keys        str [g]: the candidate good images
             neighbours       int32 [m, k]: indices into good_keys, nearest first
             distances        float32 [m, k]: their Euclidean distances (NaN if unknown)
    .txt / .tsv (a user's own pairing, or `write_pairing(..., "x.txt")`): one line per bad
             image, tab-separated keys: `<bad key>\\t<good key 1>\\t...\\t<good key k>`, nearest
             first, the same k on every line; blank lines and lines starting with "#" skipped.

A cache whose fingerprint differs from the current sets and settings is stale: rebuilt
(on_stale="rebuild", logged) or rejected with an error that says what differs
(on_stale="error"). A file replaced in place under the same key does not change the
fingerprint: delete the cache to re-pair. Images that cannot be decoded while computing
features are counted in `decode_failures` and left out of the pairing (a bad image without
features has no row; a good one is no candidate).

Streams (tf.data, resumable and shardable like `datasets.ava`/`datasets.paired`: the order is
`datasets.pipeline.index_stream`, each example's randomness is seeded by its stream position,
`start_step` skips batches without decoding them, shard k of S takes positions p with
p % S == k; undecodable files are skipped by name and counted in `decode_failures`; a stream of
nothing but bad files raises):

    make_gan_dataset       (bad [B, c, c, 3], good [B, g, g, 3]): a bad image (short side to
                           `resize_short`, random c x c crop, random flip) and one of its k
                           neighbours, drawn at random, resized whole to g x g.
    make_critic_dataset    (images [B, c, c, 3], labels [B] (1 good, 0 bad), weights [B]): the
                           critic's pre-training on good/bad, the same augmentation; balanced
                           by sampling (alternately good and bad) or by weights n / (2 n_class)
                           (the paper reports balanced accuracy, `balanced_accuracy`).

Sizes default to the release's (c = g = 224, short side 256 = c * 256 / 224); the CPU demo
(`datasets.enhancegan_demo`) passes smaller ones.
"""
import concurrent.futures
import dataclasses
import hashlib
import json
import math
import os

import numpy as np
import tensorflow as tf
from absl import logging

from datasets import ava
from datasets.images import ImageDecodeError, is_image_name, load_rgb8, natural_key
from datasets.pipeline import (GIVE_UP_AFTER, DecodeFailures, DecodeWorker,
                               check_stream_position, index_stream, map_decoded,
                               stream_options)
from datasets.unpaired import derive_seed

__all__ = [
    "AVA_BAD_BELOW",
    "AVA_GOOD_FRACTION",
    "CUHKPQ_CATEGORIES",
    "GoodBad",
    "ImageSet",
    "K",
    "PAPER_NUM_BAD",
    "PAPER_TAGS",
    "Pairing",
    "ava_good_bad",
    "balanced_accuracy",
    "compute_features",
    "knn",
    "list_cuhkpq",
    "load_ava_good_bad",
    "load_cuhkpq",
    "make_critic_dataset",
    "make_gan_dataset",
    "pair_good_bad",
    "pairing_fingerprint",
    "read_ava_tags",
    "read_pairing",
    "read_tag_names",
    "split_good_bad",
    "tag_ids",
    "thumbnail_features",
    "val100",
    "write_pairing",
]

HIGH_QUALITY = "HighQuality"
LOW_QUALITY = "LowQuality"
CUHKPQ_CATEGORIES = ("animal", "architecture", "human", "landscape", "night", "plant", "static")
VAL_FRACTION = 0.1  # section 4.1: "10% of the images reserved for validation"

AVA_GOOD_FRACTION = 0.3  # "the top 30% of the high-quality images"
AVA_BAD_BELOW = 5.0  # "low-quality images that have an average score < 5"
PAPER_NUM_BAD = 20000  # "A total of 20,000 low-quality images"
PAPER_TAGS = ("Landscape", "Seascape", "Cityscape", "Rural", "Sky", "Water", "Nature", "Animals",
              "Portraiture")  # footnote 4
GOOD_POOLS = ("high_quality", "all")
VAL100_SIZE = 100

K = 5  # "each paired with k=5 high-quality images"
FEATURE_SIZE = 224  # the feature network's input: images resized whole to 224x224
CROP_SIZE = 224  # the release's crop of the bad image and size of the good one
PAIRING_FORMAT = 1
TEXT_PAIRING_EXTENSIONS = (".txt", ".tsv")
BALANCES = ("sample", "weight")
_FIRST_NAMES = 5  # how many names an error message lists
_EXACT_ROWS = 32  # queries whose candidate distances knn recomputes at once


def _hash_rank(seed, key):
    return hashlib.blake2b(f"{seed}\x00{key}".encode("utf-8"), digest_size=8).digest()


def _first(names):
    names = list(names)
    more = " ..." if len(names) > _FIRST_NAMES else ""
    return ", ".join(str(n) for n in names[:_FIRST_NAMES]) + more


# ----------------------------------------------------------------------------- image sets


@dataclasses.dataclass
class ImageSet:
    """Images of one quality (all good or all bad).

    Attributes:
      root: the folder the keys are relative to.
      keys: each image's path relative to `root`, "/"-separated: its stable name.
      categories: each image's category (CUHK-PQ's folder; AVA's semantic tag ids "a,b").
      paths: (derived) root joined with each key.
    """

    root: str
    keys: list
    categories: list = None
    paths: list = dataclasses.field(init=False, repr=False)

    def __post_init__(self):
        self.root = os.fspath(self.root)
        self.keys = [str(k) for k in self.keys]
        if self.categories is None:
            self.categories = [""] * len(self.keys)
        self.categories = [str(c) for c in self.categories]
        if len(self.categories) != len(self.keys):
            raise ValueError(f"ImageSet: {len(self.keys)} keys but {len(self.categories)} "
                             f"categories")
        self.paths = [os.path.join(self.root, *k.split("/")) for k in self.keys]

    def __len__(self):
        return len(self.keys)

    def subset(self, indices):
        """The images at `indices` (ints or a boolean mask), in that order."""
        indices = np.asarray(indices)
        if indices.dtype == bool:
            indices = np.flatnonzero(indices)
        indices = indices.astype(np.int64).reshape(-1)
        return ImageSet(self.root, [self.keys[i] for i in indices],
                        [self.categories[i] for i in indices])

    def category_counts(self):
        """{category: number of images}, in order of first appearance."""
        counts = {}
        for category in self.categories:
            counts[category] = counts.get(category, 0) + 1
        return counts


@dataclasses.dataclass
class GoodBad:
    """A good (label 1) and a bad (label 0) `ImageSet`."""

    good: ImageSet
    bad: ImageSet

    def __repr__(self):
        return f"GoodBad(good={len(self.good)} images, bad={len(self.bad)} images)"


# ----------------------------------------------------------------------------- CUHK-PQ


def _child_dir(root, name):
    """`<root>/<name>`, matched ignoring case; FileNotFoundError naming it when absent."""
    exact = os.path.join(root, name)
    if os.path.isdir(exact):
        return exact
    try:
        with os.scandir(root) as entries:
            for entry in entries:
                if entry.name.lower() == name.lower() and entry.is_dir():
                    return entry.path
    except OSError:
        pass
    raise FileNotFoundError(
        f"CUHK-PQ folder {exact!r} does not exist (expected {root}/{HIGH_QUALITY}/<category>/"
        f"*.jpg and {root}/{LOW_QUALITY}/<category>/*.jpg)")


def _list_quality(root, folder):
    """(keys, categories) of the images in `folder` and its category subfolders."""
    keys, categories = [], []
    prefix = os.path.relpath(folder, root).replace(os.sep, "/")
    with os.scandir(folder) as entries:
        entries = sorted(entries, key=lambda e: natural_key(e.name))
    direct = [e.name for e in entries if is_image_name(e.name) and e.is_file()]
    for name in direct:
        keys.append(f"{prefix}/{name}")
        categories.append("")
    for entry in entries:
        if entry.name.startswith(".") or not entry.is_dir():
            continue
        with os.scandir(entry.path) as files:
            names = sorted((f.name for f in files if is_image_name(f.name) and f.is_file()),
                           key=natural_key)
        for name in names:
            keys.append(f"{prefix}/{entry.name}/{name}")
            categories.append(entry.name)
    if not keys:
        raise ValueError(f"CUHK-PQ folder {folder!r} holds no images (expected "
                         f"{folder}/<category>/*.jpg, categories such as "
                         f"{', '.join(CUHKPQ_CATEGORIES)})")
    return keys, categories


def list_cuhkpq(root):
    """All of CUHK-PQ under `root` as a GoodBad (HighQuality good, LowQuality bad).

    Categories are the subfolder names (any names; CUHK-PQ's are CUHKPQ_CATEGORIES), listed in
    natural order, files in natural order within each; non-image and hidden files are ignored.

    Raises:
      FileNotFoundError: `root` or one of its two quality folders is missing (named).
      ValueError: a quality folder holds no images (named).
    """
    root = os.fspath(root)
    if not os.path.isdir(root):
        raise FileNotFoundError(f"CUHK-PQ root {root!r} does not exist or is not a directory")
    folders = [_child_dir(root, name) for name in (HIGH_QUALITY, LOW_QUALITY)]
    sets = []
    for folder in folders:
        keys, categories = _list_quality(root, folder)
        sets.append(ImageSet(root, keys, categories))
    return GoodBad(*sets)


def _split_set(images, val_fraction, seed):
    n = len(images)
    n_val = int(round(n * val_fraction))
    if val_fraction > 0 and n >= 2:
        n_val = min(max(n_val, 1), n - 1)
    order = sorted(range(n), key=lambda i: _hash_rank(seed, images.keys[i]))
    is_val = np.zeros(n, bool)
    is_val[order[:n_val]] = True
    return images.subset(~is_val), images.subset(is_val)


def split_good_bad(good_bad, *, val_fraction=VAL_FRACTION, seed=0):
    """(train, val) GoodBad: good and bad each split by keyed hash (module docstring).

    Both keep their listing order. val_fraction 0 leaves val empty.
    """
    val_fraction = float(val_fraction)
    if not 0.0 <= val_fraction < 1.0:
        raise ValueError(f"val_fraction must be in [0, 1), got {val_fraction}")
    good_train, good_val = _split_set(good_bad.good, val_fraction, seed)
    bad_train, bad_val = _split_set(good_bad.bad, val_fraction, seed)
    return GoodBad(good_train, bad_train), GoodBad(good_val, bad_val)


def load_cuhkpq(root, *, val_fraction=VAL_FRACTION, seed=0):
    """CUHK-PQ under `root` split into (train, val) GoodBad sets (`list_cuhkpq`,
    `split_good_bad`); each image keeps its category."""
    train, val = split_good_bad(list_cuhkpq(root), val_fraction=val_fraction, seed=seed)
    logging.info("CUHK-PQ %s: %d good + %d bad for training, %d good + %d bad held out",
                 os.fspath(root), len(train.good), len(train.bad), len(val.good), len(val.bad))
    return train, val


# ----------------------------------------------------------------------------- AVA


def read_ava_tags(ava_txt):
    """{image id: (tag 1, tag 2)} from AVA.txt's columns 13 and 14 (0: no tag).

    A line with fewer than 14 columns has no tags: (0, 0). Blank lines are skipped; a repeated
    id keeps its first line (as `datasets.ava.read_ava_txt`).

    Raises:
      ValueError: a tag column that is not an integer (the message names file and line).
    """
    path = os.fspath(ava_txt)
    tags = {}
    with open(path, "r", encoding="utf-8") as f:
        for line_number, line in enumerate(f, start=1):
            fields = line.split()
            if len(fields) < 2 or fields[1] in tags:
                continue
            pair = fields[2 + ava.NUM_SCORES:4 + ava.NUM_SCORES]
            try:
                pair = tuple(int(v) for v in pair) + (0,) * (2 - len(pair))
            except ValueError:
                raise ValueError(f"{path}, line {line_number}: columns 13-14 must be integer "
                                 f"semantic tag ids, got {pair}") from None
            tags[fields[1]] = pair
    return tags


def read_tag_names(tags_txt):
    """{tag id: name} from AVA's tags.txt (`<id> <name>` a line; the name may hold spaces)."""
    path = os.fspath(tags_txt)
    names = {}
    with open(path, "r", encoding="utf-8") as f:
        for line_number, line in enumerate(f, start=1):
            fields = line.split()
            if not fields or fields[0].startswith("#"):
                continue
            try:
                tag = int(fields[0])
            except ValueError:
                raise ValueError(f"{path}, line {line_number}: expected `<tag id> <name>`, got "
                                 f"{line.strip()[:80]!r}") from None
            names[tag] = " ".join(fields[1:])
    return names


def _normalised_name(name):
    return "".join(c for c in str(name).lower() if c.isalnum())


def tag_ids(tags, tags_txt=None):
    """The semantic tag ids named by `tags`: ids (ints or digit strings) or names (matched
    ignoring case, spaces and punctuation, looked up in `tags_txt`). A string is split at
    commas. Returns a sorted tuple of ints.

    Raises:
      ValueError: a name without `tags_txt`, or a name tags.txt does not list (the message
        lists the names it does).
    """
    if isinstance(tags, str):
        tags = tags.split(",")
    wanted, names = set(), []
    for tag in tags:
        if isinstance(tag, (int, np.integer)):
            wanted.add(int(tag))
            continue
        tag = str(tag).strip()
        if not tag:
            continue
        if tag.isdigit():
            wanted.add(int(tag))
        else:
            names.append(tag)
    if names:
        if tags_txt is None:
            raise ValueError(f"semantic tags given by name ({_first(names)}) need AVA's "
                             f"tags.txt (tags_txt=..., `<id> <name>` a line); or give tag ids")
        table = read_tag_names(tags_txt)
        by_name = {_normalised_name(name): tag for tag, name in table.items()}
        unknown = [n for n in names if _normalised_name(n) not in by_name]
        if unknown:
            raise ValueError(f"{os.fspath(tags_txt)} lists no semantic tag named "
                             f"{_first(unknown)}; it lists: {', '.join(table.values())}")
        wanted.update(by_name[_normalised_name(n)] for n in names)
    wanted.discard(0)
    if not wanted:
        raise ValueError(f"no semantic tag named in {tags!r}")
    return tuple(sorted(wanted))


def _ava_image_set(records, tags_of):
    if not len(records):
        return ImageSet("", [], [])
    root = os.path.dirname(records.paths[0])
    keys = [os.path.relpath(p, root).replace(os.sep, "/") for p in records.paths]
    categories = [",".join(str(t) for t in tags_of.get(i, (0, 0)) if t) for i in records.ids]
    return ImageSet(root, keys, categories)


def ava_good_bad(records, *, tags_of=None, tags=None, tags_txt=None,
                 good_fraction=AVA_GOOD_FRACTION, good_pool="high_quality",
                 bad_below=AVA_BAD_BELOW, tag_good=False, max_bad=None, seed=0):
    """AVA records (the training partition) -> GoodBad (section 4.1).

    Args:
      records: `datasets.ava.AvaRecords`, all in one image folder.
      tags_of: {id: (tag 1, tag 2)} (`read_ava_tags`); needed when `tags` is given, and
        recorded as each image's category.
      tags: semantic tags (ids or names, `tag_ids`) a bad image must carry one of, e.g.
        PAPER_TAGS; None keeps every bad image.
      tags_txt: AVA's tags.txt, for tag names.
      good_fraction, good_pool: good = the top `good_fraction` by mean score of the pool:
        "high_quality" (the images with mean >= bad_below, as the paper's "top 30% of the
        high-quality images" reads) or "all" (every record). round(n * fraction), at least 1;
        ties broken by id.
      bad_below: bad = mean score < bad_below.
      tag_good: apply the tag filter to the good images too (the paper filters the bad only).
      max_bad: keep at most this many bad images (PAPER_NUM_BAD = 20,000), the ones with the
        smallest keyed hash (seed, id): a seeded sample, stable when records are added.

    Returns:
      GoodBad; good in decreasing mean score, bad in the records' order.
    """
    if not isinstance(records, ava.AvaRecords):
        raise TypeError(f"records must be datasets.ava.AvaRecords, got {type(records).__name__}")
    if good_pool not in GOOD_POOLS:
        raise ValueError(f"good_pool must be one of {GOOD_POOLS}, got {good_pool!r}")
    if not 0.0 < float(good_fraction) <= 1.0:
        raise ValueError(f"good_fraction must be in (0, 1], got {good_fraction}")
    tags_of = tags_of or {}
    means = records.mean_scores.astype(np.float64)
    ids = np.asarray(records.ids)
    pool = np.flatnonzero(means >= bad_below) if good_pool == "high_quality" else np.arange(
        len(records))
    is_bad = means < bad_below
    if tags is not None:
        if not tags_of:
            raise ValueError("filtering by semantic tags needs tags_of (read_ava_tags(AVA.txt))")
        wanted = set(tag_ids(tags, tags_txt))
        tagged = np.array([bool(wanted.intersection(tags_of.get(i, ()))) for i in records.ids],
                          dtype=bool)
        is_bad &= tagged
        if tag_good:
            pool = pool[tagged[pool]]
    if not len(pool):
        raise ValueError(f"no AVA image qualifies as good (pool {good_pool!r}, mean >= "
                         f"{bad_below} for high_quality)")
    n_good = max(1, int(round(len(pool) * float(good_fraction))))
    order = pool[np.lexsort((ids[pool], -means[pool]))]
    good = order[:n_good]
    bad = np.flatnonzero(is_bad)
    if max_bad is not None and len(bad) > int(max_bad):
        ranked = sorted(bad, key=lambda i: _hash_rank(seed, records.ids[i]))
        bad = np.sort(np.asarray(ranked[:int(max_bad)], dtype=np.int64))
    if not len(bad):
        raise ValueError(f"no AVA image qualifies as bad (mean < {bad_below}"
                         + (f", tags {tags!r})" if tags is not None else ")"))
    logging.info("AVA good/bad: %d good (top %.0f%% of %d, %s), %d bad (mean < %g%s)",
                 len(good), 100 * float(good_fraction), len(pool), good_pool, len(bad),
                 bad_below, f", tags {tags}" if tags is not None else "")
    return GoodBad(_ava_image_set(records.subset(good), tags_of),
                   _ava_image_set(records.subset(bad), tags_of))


def load_ava_good_bad(ava_txt, image_dir, *, split_file=None, test_fraction=0.2, seed=0,
                      skip_missing=False, tags=None, tags_txt=None, **kwargs):
    """AVA.txt + images -> (train GoodBad, test AvaRecords).

    The train/test partition is `datasets.ava.split_ava`'s: AVA's standard test list when
    `split_file` names it (one id a line), else the seeded 80/20 split. Good and bad come from
    the training partition (`ava_good_bad`, which takes the other keyword arguments); pass the
    test records to `val100`.
    """
    records = ava.load_ava(ava_txt, image_dir, skip_missing=skip_missing)
    train, test = ava.split_ava(records, test_fraction=test_fraction, seed=seed,
                                split_file=split_file)
    good_bad = ava_good_bad(train, tags_of=read_ava_tags(ava_txt), tags=tags, tags_txt=tags_txt,
                            seed=seed, **kwargs)
    return good_bad, test


def val100(test_records, *, n=VAL100_SIZE, seed=0):
    """Val100 (section 4.1, "100 random images from the standard test partition"): the n test
    records with the smallest keyed hash blake2b(seed, id), in that order; all of them when
    there are fewer. Deterministic, and independent of the records' order."""
    ids = test_records.ids
    order = sorted(range(len(ids)), key=lambda i: _hash_rank(seed, ids[i]))
    return test_records.subset(order[:int(n)])


# ----------------------------------------------------------------------------- features, k-NN


def knn(queries, references, k=K, *, chunk_size=512):
    """The k nearest references of every query by Euclidean distance, exactly.

    Brute force in chunks of `chunk_size` queries: squared distances |q|^2 - 2 q.r + |r|^2 in
    float32 to choose the candidates (argpartition), then their distances recomputed in float64
    and sorted (ties by reference index). Memory: chunk_size x len(references) floats.

    Args:
      queries: (m, d) array; references: (n, d) array, n >= k.

    Returns:
      (indices int64 (m, k), distances float32 (m, k)), nearest first.
    """
    queries = np.asarray(queries, np.float32)
    references = np.asarray(references, np.float32)
    if queries.ndim != 2 or references.ndim != 2 or queries.shape[1] != references.shape[1]:
        raise ValueError(f"knn needs (m, d) and (n, d) features, got {queries.shape} and "
                         f"{references.shape}")
    k, m, n = int(k), len(queries), len(references)
    if not 1 <= k <= n:
        raise ValueError(f"k must be in [1, {n}] (the number of references), got {k}")
    indices = np.empty((m, k), np.int64)
    distances = np.empty((m, k), np.float32)
    reference_norms = np.einsum("ij,ij->i", references, references)
    references64 = references.astype(np.float64)
    # A margin of candidates beyond k absorbs float32 rounding of near-ties.
    take = min(n, k + 8)
    for start in range(0, m, int(chunk_size)):
        chunk = queries[start:start + int(chunk_size)]
        squared = (reference_norms[None, :] - 2.0 * (chunk @ references.T)
                   + np.einsum("ij,ij->i", chunk, chunk)[:, None])
        if take < n:
            candidates = np.argpartition(squared, take - 1, axis=1)[:, :take]
        else:
            candidates = np.broadcast_to(np.arange(n), (len(chunk), n))
        exact = np.empty(candidates.shape, np.float64)
        for row in range(0, len(chunk), _EXACT_ROWS):  # (rows, take, d) float64 at a time
            block = chunk[row:row + _EXACT_ROWS].astype(np.float64)[:, None, :]
            exact[row:row + _EXACT_ROWS] = np.sqrt(
                ((block - references64[candidates[row:row + _EXACT_ROWS]]) ** 2).sum(-1))
        order = np.lexsort((candidates, exact), axis=1)[:, :k]
        indices[start:start + len(chunk)] = np.take_along_axis(candidates, order, 1)
        distances[start:start + len(chunk)] = np.take_along_axis(exact, order, 1)
    return indices, distances


def _load_resized(path, image_size):
    image = load_rgb8(path, min_size=(image_size, image_size))
    resized = tf.image.resize(tf.convert_to_tensor(image, tf.float32) / 255.0,
                              (image_size, image_size), method="bilinear", antialias=True)
    return np.clip(resized.numpy(), 0.0, 1.0)


def compute_features(paths, features_fn, *, image_size=FEATURE_SIZE, batch_size=32,
                     decode_failures=None, num_workers=4, log_every=100):
    """features_fn of every image resized whole to image_size x image_size.

    Args:
      paths: image files.
      features_fn: float32 [b, s, s, 3] in [0, 1] -> [b, d] (a NumPy array or tensor).
      batch_size: images per call of features_fn.
      decode_failures: a `DecodeFailures`; a file that cannot be decoded is recorded there and
        gets no features.
      num_workers: threads decoding and resizing (Pillow and TF release the GIL).

    Returns:
      (features float32 (n, d), ok bool (n,)); the rows of failed files are zero.
    """
    paths = [os.fspath(p) for p in paths]
    if decode_failures is None:
        decode_failures = DecodeFailures()
    n, size = len(paths), int(image_size)
    ok = np.zeros(n, bool)
    features = None

    def load(path):
        try:
            return _load_resized(path, size)
        except ImageDecodeError as e:
            decode_failures.record(path, e.reason)
            return None

    with concurrent.futures.ThreadPoolExecutor(max_workers=max(1, int(num_workers))) as pool:
        for batch_number, start in enumerate(range(0, n, int(batch_size))):
            batch_paths = paths[start:start + int(batch_size)]
            images = list(pool.map(load, batch_paths))
            good = [i for i, image in enumerate(images) if image is not None]
            if good:
                out = np.asarray(features_fn(np.stack([images[i] for i in good])), np.float32)
                out = out.reshape(len(good), -1)
                if features is None:
                    features = np.zeros((n, out.shape[1]), np.float32)
                features[[start + i for i in good]] = out
                ok[[start + i for i in good]] = True
            if log_every and (batch_number + 1) % int(log_every) == 0:
                logging.info("features: %d of %d images", min(start + int(batch_size), n), n)
    if features is None:
        features = np.zeros((n, 0), np.float32)
    return features, ok


def thumbnail_features(images, size=8):
    """A cheap NumPy `features_fn`: each image block-averaged to size x size, flattened.

    For tests and quick CPU runs in place of VGG-16 fc7: near in this space means alike in
    layout and colour. The image side must be a multiple of `size`.
    """
    images = np.asarray(images, np.float32)
    b, h, w, c = images.shape
    if h % size or w % size:
        raise ValueError(f"thumbnail_features: image side {h}x{w} is not a multiple of {size}")
    blocks = images.reshape(b, size, h // size, size, w // size, c).mean(axis=(2, 4))
    return blocks.reshape(b, -1)


# ----------------------------------------------------------------------------- pairing


@dataclasses.dataclass
class Pairing:
    """Every bad image's k nearest good images, by key (cache formats: module docstring).

    Attributes:
      bad_keys: the paired bad images.
      good_keys: the candidate good images.
      neighbours: int32 (len(bad_keys), k): indices into good_keys, nearest first.
      distances: float32, same shape; NaN where unknown (a text file).
      fingerprint: the sets and settings it was computed for ("" if unknown).
      settings: {"k", "image_size", "feature_id"} ({} if unknown).
    """

    bad_keys: list
    good_keys: list
    neighbours: np.ndarray
    distances: np.ndarray = None
    fingerprint: str = ""
    settings: dict = None

    def __post_init__(self):
        self.bad_keys = [str(k) for k in self.bad_keys]
        self.good_keys = [str(k) for k in self.good_keys]
        self.neighbours = np.asarray(self.neighbours, np.int32).reshape(len(self.bad_keys), -1)
        if self.distances is None:
            self.distances = np.full(self.neighbours.shape, np.nan, np.float32)
        self.distances = np.asarray(self.distances, np.float32).reshape(self.neighbours.shape)
        self.settings = dict(self.settings or {})
        if self.neighbours.size and (self.neighbours.min() < 0
                                     or self.neighbours.max() >= len(self.good_keys)):
            raise ValueError(f"Pairing: neighbour indices must be in [0, {len(self.good_keys)})")

    @property
    def k(self):
        return self.neighbours.shape[1]

    def __len__(self):
        return len(self.bad_keys)

    def neighbour_keys(self, bad_key):
        """The good keys paired with `bad_key`, nearest first."""
        row = self.bad_keys.index(bad_key)
        return [self.good_keys[j] for j in self.neighbours[row]]

    def resolve(self, good_bad):
        """(bad indices (m,), neighbour indices (m, k)) into good_bad.bad and good_bad.good.

        A row is dropped (and counted in a warning) when its bad image or one of its good
        images is not in `good_bad` (e.g. left out as missing since the pairing was made).

        Raises:
          ValueError: no row remains (the pairing belongs to other sets).
        """
        good_index = {key: i for i, key in enumerate(good_bad.good.keys)}
        bad_index = {key: i for i, key in enumerate(good_bad.bad.keys)}
        good_map = np.array([good_index.get(key, -1) for key in self.good_keys], np.int64)
        rows, bads, dropped = [], [], []
        for row, key in enumerate(self.bad_keys):
            mapped = good_map[self.neighbours[row]] if self.k else np.zeros(0, np.int64)
            if key not in bad_index or (mapped < 0).any():
                dropped.append(key)
                continue
            rows.append(mapped)
            bads.append(bad_index[key])
        if dropped:
            logging.warning("pairing: %d of its %d bad images are left out: they or some of "
                            "their good neighbours are not in the image sets (first: %s)",
                            len(dropped), len(self.bad_keys), _first(dropped))
        if not rows:
            raise ValueError(f"none of the pairing's {len(self.bad_keys)} bad images pairs "
                             f"with images of these sets (first bad keys of the pairing: "
                             f"{_first(self.bad_keys)}; of the sets: "
                             f"{_first(good_bad.bad.keys)})")
        return np.asarray(bads, np.int64), np.stack(rows).astype(np.int64)


def pairing_fingerprint(good_keys, bad_keys, *, k, image_size, feature_id):
    """sha256 (hex) of the format, k, feature settings and the ordered good and bad keys."""
    digest = hashlib.sha256()
    head = json.dumps({"format": PAIRING_FORMAT, "k": int(k), "image_size": int(image_size),
                       "feature_id": str(feature_id)}, sort_keys=True)
    digest.update(head.encode("utf-8"))
    for tag, keys in ((b"\x01good", good_keys), (b"\x01bad", bad_keys)):
        digest.update(tag)
        for key in keys:
            digest.update(b"\x00" + str(key).encode("utf-8"))
    return digest.hexdigest()


def _is_text_path(path):
    return os.path.splitext(os.fspath(path))[1].lower() in TEXT_PAIRING_EXTENSIONS


def write_pairing(path, pairing):
    """Writes `pairing` atomically: .txt/.tsv as text, anything else as .npz (module docstring).
    Returns the path."""
    path = os.fspath(path)
    directory = os.path.dirname(path)
    if directory:
        os.makedirs(directory, exist_ok=True)
    tmp = f"{path}.tmp-{os.getpid()}"
    if _is_text_path(path):
        with open(tmp, "w", encoding="utf-8", newline="\n") as f:
            f.write(f"# EnhanceGAN pairing: {len(pairing)} bad images, k = {pairing.k} good "
                    f"neighbours each, nearest first; tab-separated keys\n")
            for key, row in zip(pairing.bad_keys, pairing.neighbours):
                f.write("\t".join([key] + [pairing.good_keys[j] for j in row]) + "\n")
    else:
        with open(tmp, "wb") as f:
            np.savez(f, format=np.int64(PAIRING_FORMAT),
                     fingerprint=np.str_(pairing.fingerprint),
                     settings=np.str_(json.dumps(pairing.settings, sort_keys=True)),
                     bad_keys=np.asarray(pairing.bad_keys, dtype=str),
                     good_keys=np.asarray(pairing.good_keys, dtype=str),
                     neighbours=pairing.neighbours.astype(np.int32),
                     distances=pairing.distances.astype(np.float32))
    os.replace(tmp, path)
    return path


def _read_text_pairing(path):
    bad_keys, rows, good_index, good_keys = [], [], {}, []
    width = None
    with open(path, "r", encoding="utf-8") as f:
        for line_number, line in enumerate(f, start=1):
            line = line.rstrip("\r\n")
            if not line.strip() or line.lstrip().startswith("#"):
                continue
            fields = [field.strip() for field in line.split("\t")]
            if len(fields) < 2 or not all(fields):
                raise ValueError(f"{path}, line {line_number}: expected a bad image's key and "
                                 f"its good neighbours' keys, tab-separated; got "
                                 f"{line[:120]!r}")
            if width is None:
                width = len(fields)
            elif len(fields) != width:
                raise ValueError(f"{path}, line {line_number}: {len(fields) - 1} neighbours, "
                                 f"but the first line has {width - 1}; every line needs the "
                                 f"same k")
            bad_keys.append(fields[0])
            row = []
            for key in fields[1:]:
                if key not in good_index:
                    good_index[key] = len(good_keys)
                    good_keys.append(key)
                row.append(good_index[key])
            rows.append(row)
    if not rows:
        raise ValueError(f"pairing file {path!r} holds no pairs")
    return Pairing(bad_keys, good_keys, np.asarray(rows, np.int32))


def read_pairing(path):
    """A pairing file (.npz cache or a .txt/.tsv list; module docstring) -> Pairing.

    Raises:
      FileNotFoundError: no such file.
      ValueError: a malformed file (the message names it and, for text, the line).
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"pairing file {path!r} does not exist")
    if _is_text_path(path):
        return _read_text_pairing(path)
    try:
        with np.load(path, allow_pickle=False) as data:
            arrays = {name: data[name] for name in (
                "format", "fingerprint", "settings", "bad_keys", "good_keys", "neighbours",
                "distances")}
        settings = json.loads(str(arrays["settings"]))
    except (OSError, KeyError, ValueError, EOFError) as e:
        raise ValueError(f"pairing cache {path!r} cannot be read ({type(e).__name__}: {e}); "
                         f"delete it to recompute, or give a .txt pairing") from e
    version = int(arrays["format"])
    if version != PAIRING_FORMAT:
        raise ValueError(f"pairing cache {path!r} has format {version}; this version reads "
                         f"format {PAIRING_FORMAT}: delete it to recompute")
    return Pairing(bad_keys=arrays["bad_keys"].tolist(), good_keys=arrays["good_keys"].tolist(),
                   neighbours=arrays["neighbours"], distances=arrays["distances"],
                   fingerprint=str(arrays["fingerprint"]), settings=settings)


def _stale_reason(cached, settings, good_keys, bad_keys):
    old = cached.settings
    changed = [f"{name} {old.get(name)!r} -> {settings[name]!r}" for name in settings
               if old.get(name) != settings[name]]
    if changed:
        return "settings changed: " + ", ".join(changed)
    parts = []
    for side, now, then in (("good", good_keys, cached.good_keys),
                            ("bad", bad_keys, cached.bad_keys)):
        added, removed = set(now) - set(then), set(then) - set(now)
        if removed or (added and side == "good"):
            parts.append(f"{side} images: {len(added)} not in the cache (first: "
                         f"{_first(sorted(added))}), {len(removed)} in the cache only (first: "
                         f"{_first(sorted(removed))})")
        elif added:
            parts.append(f"{len(added)} bad images not in the cache (first: "
                         f"{_first(sorted(added))})")
    return "; ".join(parts) or "the image lists changed"


def pair_good_bad(good_bad, features_fn, *, feature_id, cache_path=None, k=K,
                  image_size=FEATURE_SIZE, batch_size=32, on_stale="rebuild",
                  decode_failures=None, num_workers=4):
    """Every bad image's k nearest good images in features_fn's space (module docstring).

    Args:
      good_bad: the GoodBad to pair (usually the training sets).
      features_fn: float32 [b, s, s, 3] in [0, 1] -> [b, d]; VGG-16 fc7 in the paper.
      feature_id: a name of the features (network, weights, layer), part of the fingerprint:
        another feature_id makes the cache stale.
      cache_path: where the pairing is cached (.npz; .txt/.tsv writes the text form, which has
        no fingerprint and is then always recomputed); None computes without caching.
      k: neighbours per bad image (5 in the paper).
      image_size: side of the square the images are resized to (224).
      on_stale: "rebuild" (log and recompute) or "error" (raise) when the cache is stale.
      decode_failures: counts files that cannot be decoded (left out of the pairing).

    Returns:
      Pairing; the cached one when its fingerprint matches (features_fn is not called).

    Raises:
      ValueError: a stale cache with on_stale="error" (the message says what changed and how
        to rebuild), fewer than k decodable good images, or no decodable bad image.
    """
    if on_stale not in ("rebuild", "error"):
        raise ValueError(f"on_stale must be 'rebuild' or 'error', got {on_stale!r}")
    k, image_size = int(k), int(image_size)
    settings = {"k": k, "image_size": image_size, "feature_id": str(feature_id)}
    fingerprint = pairing_fingerprint(good_bad.good.keys, good_bad.bad.keys, **settings)
    if cache_path is not None and os.path.exists(cache_path) and not _is_text_path(cache_path):
        try:
            cached = read_pairing(cache_path)
        except ValueError as e:
            if on_stale == "error":
                raise
            logging.warning("%s; recomputing it", e)
            cached = None
        if cached is not None and cached.fingerprint == fingerprint:
            logging.info("pairing: read %d bad images x %d neighbours from %s", len(cached),
                         cached.k, cache_path)
            return cached
        if cached is not None:
            reason = _stale_reason(cached, settings, good_bad.good.keys, good_bad.bad.keys)
            if on_stale == "error":
                raise ValueError(
                    f"pairing cache {os.fspath(cache_path)!r} was computed for other images or "
                    f"settings ({reason}); delete it (or choose another cache path) to "
                    f"recompute the pairing")
            logging.warning("pairing cache %s is stale (%s); recomputing it", cache_path,
                            reason)
    if decode_failures is None:
        decode_failures = DecodeFailures()
    common = dict(image_size=image_size, batch_size=batch_size, decode_failures=decode_failures,
                  num_workers=num_workers)
    good_features, good_ok = compute_features(good_bad.good.paths, features_fn, **common)
    bad_features, bad_ok = compute_features(good_bad.bad.paths, features_fn, **common)
    if good_ok.sum() < k:
        raise ValueError(f"only {int(good_ok.sum())} of the {len(good_bad.good)} good images "
                         f"could be decoded; pairing needs at least k = {k}")
    if not bad_ok.any():
        raise ValueError(f"none of the {len(good_bad.bad)} bad images could be decoded")
    good_rows, bad_rows = np.flatnonzero(good_ok), np.flatnonzero(bad_ok)
    indices, distances = knn(bad_features[bad_rows], good_features[good_rows], k)
    pairing = Pairing(bad_keys=[good_bad.bad.keys[i] for i in bad_rows],
                      good_keys=list(good_bad.good.keys),
                      neighbours=good_rows[indices], distances=distances,
                      fingerprint=fingerprint, settings=settings)
    logging.info("pairing: %d bad images x %d nearest of %d good images (%d files could not "
                 "be decoded)", len(bad_rows), k, len(good_rows),
                 len(good_bad.good) + len(good_bad.bad) - len(good_rows) - len(bad_rows))
    if cache_path is not None:
        write_pairing(cache_path, pairing)
    return pairing


# ----------------------------------------------------------------------------- streams


class _FileDecoder(DecodeWorker):
    """Decodes one file from each of `tables` ((paths, min_size) each) by index: (image, ...,
    ok); a file that cannot be decoded is recorded and the element skipped."""

    def __init__(self, tables, failures, give_up_after, what):
        super().__init__(failures, give_up_after)
        self.tables = tables
        self.what = what

    def decode(self, *indices):
        images, first = [], None
        for (paths, min_size), index in zip(self.tables, indices):
            path = paths[int(index)]
            first = first or path
            try:
                images.append(load_rgb8(path, min_size=min_size))
            except ImageDecodeError as e:
                note = "" if path == first else f" (good partner of {first})"
                return self.fail(path, e.reason + note, cause=e)
        self.succeed()
        return (*images, np.bool_(True))

    def skipped(self):
        return (*[np.zeros((1, 1, 3), np.uint8) for _ in self.tables], np.bool_(False))

    def give_up_message(self, path, reason):
        return (f"none of the first {self.failed} {self.what} could be decoded (e.g. {path}: "
                f"{reason}); are the image folders right?")


def _sizes(crop_size, resize_short):
    resize, crop = ava.crop_sizes(crop_size)
    if resize_short is not None:
        resize = int(resize_short)
    if crop < 1 or resize < crop:
        raise ValueError(f"need 1 <= crop_size <= resize_short, got crop_size {crop}, "
                         f"resize_short {resize}")
    return resize, crop


def _resize_short_side(image, side):
    """`image` (float32 [h, w, 3]) resized, aspect kept, so that its shorter side is `side`."""
    shape = tf.cast(tf.shape(image)[:2], tf.float64)
    scale = tf.cast(side, tf.float64) / tf.reduce_min(shape)
    size = tf.maximum(tf.cast(tf.round(shape * scale), tf.int32), side)
    return tf.image.resize(image, size, method="bilinear", antialias=True)


def _augment(image, side, crop, training, flip, seed):
    """Short side to `side`, then a crop x crop crop: random (seed[0]) and a random flip
    (seed[1]) when training, central otherwise."""
    image = _resize_short_side(tf.image.convert_image_dtype(image, tf.float32), side)
    if training:
        image = tf.image.stateless_random_crop(image, [crop, crop, 3], seed=seed[0])
        if flip:
            image = tf.image.stateless_random_flip_left_right(image, seed=seed[1])
    else:
        shape = tf.shape(image)
        top, left = (shape[0] - crop) // 2, (shape[1] - crop) // 2
        image = image[top:top + crop, left:left + crop]
    image.set_shape([crop, crop, 3])
    return tf.clip_by_value(image, 0.0, 1.0)


def _check_batches(batch_size, start_step, num_shards, shard_index):
    batch_size, start_step = int(batch_size), int(start_step)
    num_shards, shard_index = int(num_shards), int(shard_index)
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    check_stream_position(start_step, num_shards, shard_index)
    return batch_size, start_step, num_shards, shard_index


def make_gan_dataset(good_bad, pairing, *, batch_size, seed, crop_size=CROP_SIZE,
                     resize_short=None, good_size=None, flip=True, start_step=0, num_shards=1,
                     shard_index=0, decode_failures=None):
    """The GAN's training stream: endless batches of (bad, good) (module docstring).

    Element at stream position p (`index_stream` over the paired bad images, seed derived from
    `seed`): bad image i = order[p], its short side resized to `resize_short` (default
    round(crop_size * 256 / 224)), a random crop_size crop and, with `flip`, a random left-right
    flip; good image = neighbour j of i, j uniform in 0..k-1, resized whole to good_size x
    good_size (default crop_size; aspect not kept, as the release does). Crop, flip and j are
    drawn with stateless ops seeded by (seed, p): the stream is a function of the sets, the
    pairing, the seed and the position only.

    Args:
      good_bad: the GoodBad the pairing was made for (`Pairing.resolve` maps its keys).
      pairing: a `Pairing` (`pair_good_bad`, `read_pairing`).
      batch_size: per-shard batch.
      start_step: batches of this shard already consumed: start_step * batch_size * num_shards
        global positions are skipped without decoding (exact unless a skipped element failed
        to decode).
      num_shards, shard_index: this pipeline's share, positions p % num_shards == shard_index.
      decode_failures: `DecodeFailures` counting skipped files (the bad file, or the good one
        named as the partner of its bad image); the element is skipped.

    Returns:
      tf.data.Dataset of (float32 [B, c, c, 3], float32 [B, g, g, 3]) in [0, 1].
    """
    batch_size, start_step, num_shards, shard_index = _check_batches(
        batch_size, start_step, num_shards, shard_index)
    side, crop = _sizes(crop_size, resize_short)
    good_side = crop if good_size is None else int(good_size)
    if good_side < 1:
        raise ValueError(f"good_size must be >= 1, got {good_size}")
    if decode_failures is None:
        decode_failures = DecodeFailures()
    bad_index, neighbours = pairing.resolve(good_bad)
    m, k = neighbours.shape
    decoder = _FileDecoder(
        [(good_bad.bad.paths, (side, side)), (good_bad.good.paths, (good_side, good_side))],
        decode_failures, min(m, GIVE_UP_AFTER), "bad/good pairs")
    rows = index_stream(m, derive_seed(seed, "gan order"), start_step * batch_size * num_shards,
                        num_shards, shard_index)
    bad_t = tf.constant(bad_index, tf.int64)
    neighbours_t = tf.constant(neighbours, tf.int64)
    seed_t = tf.constant(derive_seed(seed, "gan augment"), tf.int64)

    def decode(row, position):
        pick = tf.random.stateless_uniform([], seed=tf.stack([seed_t, 3 * position + 2]),
                                           minval=0, maxval=k, dtype=tf.int64)
        bad, good, ok, stop = decoder.numpy_function(
            [tf.gather(bad_t, row), neighbours_t[row, pick]], [tf.uint8, tf.uint8, tf.bool],
            name="load_rgb8_bad_good")
        bad.set_shape([None, None, 3])
        good.set_shape([None, None, 3])
        ok.set_shape([])
        return bad, good, position, ok, stop

    def augment(bad, good, position):
        seeds = (tf.stack([seed_t, 3 * position]), tf.stack([seed_t, 3 * position + 1]))
        bad = _augment(bad, side, crop, True, flip, seeds)
        good = tf.image.resize(tf.image.convert_image_dtype(good, tf.float32),
                               (good_side, good_side), method="bilinear", antialias=True)
        return bad, tf.clip_by_value(good, 0.0, 1.0)

    return _decoded_batches(rows, decode, augment, batch_size, True, num_shards)


def _decoded_batches(stream, decode, augment, batch_size, drop_remainder, num_shards):
    """The tail both streams share: `decode` (its outputs end with ok, then the worker's stop)
    in parallel, elements that failed dropped, `augment` (on the outputs before ok) in
    parallel, batches, prefetch."""
    ds = map_decoded(stream, decode)
    ds = ds.filter(lambda *element: element[-1])
    ds = ds.map(lambda *element: augment(*element[:-1]), num_parallel_calls=tf.data.AUTOTUNE,
                deterministic=True)
    ds = ds.batch(batch_size, drop_remainder=drop_remainder)
    ds = ds.prefetch(tf.data.AUTOTUNE)
    return ds.with_options(stream_options(num_shards))


def _balanced_stream(n_good, n_bad, seed, start, num_shards, shard_index):
    """(table index, stream position, label) alternating good (even local positions) and bad:
    each class its own `index_stream`, sharded, from local position `start` of this shard."""
    good_start, bad_start = (start + 1) // 2, start // 2
    good = index_stream(n_good, derive_seed(seed, "critic good"), good_start * num_shards
                        + shard_index, num_shards, shard_index)
    bad = index_stream(n_bad, derive_seed(seed, "critic bad"), bad_start * num_shards
                       + shard_index, num_shards, shard_index)
    good = good.map(lambda i, q: (i, 2 * q, tf.constant(1.0)))
    bad = bad.map(lambda i, q: (i + n_good, 2 * q + 1, tf.constant(0.0)))
    choice = tf.data.Dataset.counter(start=start, dtype=tf.int64).map(
        lambda t: tf.math.floormod(t, 2))
    return tf.data.Dataset.choose_from_datasets([good, bad], choice)


def make_critic_dataset(good_bad, *, batch_size, seed=0, training=True, crop_size=CROP_SIZE,
                        resize_short=None, flip=True, balance="sample", start_step=0,
                        num_shards=1, shard_index=0, decode_failures=None):
    """The critic's good/bad stream: batches of (images, labels, weights).

    Every image gets the bad image's treatment of `make_gan_dataset`: short side to
    `resize_short`, a crop_size crop (random when training, central otherwise), a random flip
    (training, `flip`). Labels are float32, 1 good and 0 bad.

    Training (endless):
      balance "sample": good and bad alternate (each class its own seeded `index_stream`, its
        epochs permutations of the class), so every batch of even size is half and half; every
        weight is 1.
      balance "weight": one `index_stream` over good + bad in their natural proportion; weight
        n / (2 n_class), so a weighted mean of per-example losses weighs both classes equally
        (balanced accuracy is their mean recall).
      Resuming and sharding as `make_gan_dataset` (with "sample", each class is sharded on its
      own and shard k's elements alternate good and bad).
    Eval (`training=False`): one pass, good then bad in their order; shard k takes elements
      k, k + num_shards, ...; the last batch may be smaller; weights as with "weight".

    Returns:
      tf.data.Dataset of (float32 [B, c, c, 3], float32 [B], float32 [B]).
    """
    if balance not in BALANCES:
        raise ValueError(f"balance must be one of {BALANCES}, got {balance!r}")
    batch_size, start_step, num_shards, shard_index = _check_batches(
        batch_size, start_step, num_shards, shard_index)
    side, crop = _sizes(crop_size, resize_short)
    n_good, n_bad = len(good_bad.good), len(good_bad.bad)
    if not n_good or not n_bad:
        raise ValueError(f"the critic needs good and bad images, got {n_good} good and {n_bad} "
                         f"bad")
    if decode_failures is None:
        decode_failures = DecodeFailures()
    n = n_good + n_bad
    paths = good_bad.good.paths + good_bad.bad.paths
    labels = np.concatenate([np.ones(n_good, np.float32), np.zeros(n_bad, np.float32)])
    class_weights = (n / (2.0 * n_good), n / (2.0 * n_bad))
    decoder = _FileDecoder([(paths, (side, side))], decode_failures,
                           min(n, GIVE_UP_AFTER) if training else None, "good/bad images")
    seed_t = tf.constant(derive_seed(seed, "critic augment"), tf.int64)
    labels_t = tf.constant(labels)

    if not training:
        mine = np.arange(shard_index, n, num_shards, dtype=np.int64)[start_step * batch_size:]
        stream = tf.data.Dataset.from_tensor_slices((mine, mine)).map(
            lambda i, q: (i, q, tf.gather(labels_t, i)))
    elif balance == "sample":
        stream = _balanced_stream(n_good, n_bad, seed, start_step * batch_size, num_shards,
                                  shard_index)
    else:
        stream = index_stream(n, derive_seed(seed, "critic order"),
                              start_step * batch_size * num_shards, num_shards, shard_index)
        stream = stream.map(lambda i, q: (i, q, tf.gather(labels_t, i)))
    weighted = not training or balance == "weight"

    def decode(index, position, label):
        image, ok, stop = decoder.numpy_function([index], [tf.uint8, tf.bool],
                                                 name="load_rgb8_good_bad")
        image.set_shape([None, None, 3])
        ok.set_shape([])
        return image, label, position, ok, stop

    def augment(image, label, position):
        seeds = (tf.stack([seed_t, 2 * position]), tf.stack([seed_t, 2 * position + 1]))
        image = _augment(image, side, crop, training, flip, seeds)
        if weighted:
            weight = tf.where(label > 0.5, class_weights[0], class_weights[1])
        else:
            weight = 1.0
        return image, label, tf.cast(weight, tf.float32)

    return _decoded_batches(stream, decode, augment, batch_size, training, num_shards)


def balanced_accuracy(labels, predictions, threshold=0.5):
    """Mean of the recalls of the two classes (the paper's good/bad figure, after Deng et al.).

    labels: 1 good, 0 bad; predictions: P(good) or 0/1 decisions, good when > threshold.
    A class without examples is left out of the mean; NaN when there are no labels.
    """
    good = np.asarray(labels).reshape(-1) > 0.5
    decided = np.asarray(predictions, np.float64).reshape(-1) > threshold
    if good.shape != decided.shape:
        raise ValueError(f"{good.size} labels but {decided.size} predictions")
    recalls = [float(np.mean(decided[mask] == want))
               for want, mask in ((True, good), (False, ~good)) if mask.any()]
    return float(np.mean(recalls)) if recalls else math.nan
