"""Unpaired photo folders as a source and a target domain: endless streams of random patches.

WESPE (Ignatov et al. 2018, section 3) learns a mapping from a source domain X (a phone camera)
to a target domain Y (DSLR photos, DIV2K, ...) from UNPAIRED samples: "the adversarial
discriminators are trained at each iteration with a random positive (i.e., DSLR) image and a
random negative one" (section 4.1). `make_unpaired_dataset` therefore zips two independent patch
streams; no pairing between the two folders is ever used. `match_pairs` is for the aligned test
patches that full-reference metrics (PSNR, SSIM) need.

Typical use:

    failures = DecodeFailures()
    ds = make_unpaired_dataset(list_images("phone/"), list_images("dslr/"), patch_size=100,
                               batch_size=30, seed=0, start_step=step, decode_failures=failures)
    for source, target in ds: ...   # float32 [30, 100, 100, 3] each, values in [0, 1]

How a patch stream is made (`make_patch_dataset`):

- Image order: position q = e * n + j of the endless image sequence is element j of the epoch-e
  permutation stateless_shuffle(range(n), seed=(s_epoch, e)) of the n paths.
- Groups: positions q = g * G ... g * G + G - 1 form group g (G = `images_per_group`; a group may
  span an epoch boundary). Every image of a group is decoded (Pillow, `load_rgb8`, in parallel)
  and gives `patches_per_image` (M) random patch_size x patch_size crops at full resolution,
  each with a random rotation by k * 90 degrees (k in 0..3) and a random left-right flip when
  `augment` is True. The G * M patches of the group are put in the order of a seeded
  permutation (seed (s_group, g)), so that consecutive patches come from different photos
  without a shuffle buffer, and the stream is the concatenation of the groups, batched.
- Randomness: the crops and flips of the image at position q come from
  numpy.random.default_rng([s_crop, q]); s_epoch, s_group, s_crop are derived from `seed`
  (`derive_seed`). The patches are a function of (paths, seed, patch_size, augment, G, M) and
  the stream position only: not of timing, parallelism, sharding or where the stream started.
- Resuming: `start_step` k skips k * batch_size patches arithmetically: group
  t0 = k * batch_size // (G * M) is the first one decoded and only its first
  k * batch_size % (G * M) patches are dropped; nothing before it is decoded.
- Sharding: shard i of S takes the groups g with g % S == i (its t-th group is g = t * S + i).
  The shards' streams are disjoint (no image position is used by two shards) and are exactly
  the single-pipeline stream's groups dealt round-robin; each shard yields batches of
  `batch_size` (per-replica batches for `strategy.distribute_datasets_from_function`).
- Bad files: an image that cannot be decoded, or that is smaller than the patch in either side,
  is recorded in `decode_failures` and skipped: its M patch slots are filled with spare crops of
  the group's good images (each image also draws M spare crops, used only for this). A group
  therefore always yields G * M patches unless every image of it fails (then it yields none),
  so resuming stays exact when some files are bad. If a long run of decodes all fail (at least
  min(2 n, 1000) + 128 in a row: a wrong folder, an unmounted disk), the stream raises an
  error naming examples instead of spinning forever.

Files that are already patch-sized (DPED's 100x100 training patches) have one possible crop:
pass patches_per_image=1 (and a larger images_per_group) so that a group does not hold M
rotated copies of one patch (`datasets.dped.PATCH_FILE_GROUPS`).

Because decoding runs in `tf.numpy_function`, the dataset runs in this Python process (no
tf.data service). At interpreter exit (atexit) every stream is ended before Python finalises, so
that a script that exits with a live iterator does not hang on decodes still under way.
"""
import hashlib
import os

import numpy as np
import tensorflow as tf

from datasets.images import (IMAGE_EXTENSIONS, ImageDecodeError, is_image_name, load_rgb8,
                             natural_key)
from datasets.pipeline import (GIVE_UP_AFTER, DecodeFailures, DecodeWorker, check_stream_position,
                               index_stream, map_decoded, stream_options)

_FIRST_NAMES = 5  # How many missing names an error message lists.
_GIVE_UP_SLACK = 128  # Parallel decodes can finish out of order; failures may bunch up by this.


def derive_seed(seed, *keys):
    """A 63-bit seed derived from `seed` and string/int keys (SHA-256; stable across runs)."""
    text = "/".join([str(int(seed))] + [str(k) for k in keys])
    return int.from_bytes(hashlib.sha256(text.encode("utf-8")).digest()[:8], "little") >> 1


def list_images(directory):
    """The image files directly in `directory`, sorted by name with numbers compared as numbers.

    Not recursive; hidden files (names starting with ".") and files whose extension is not in
    IMAGE_EXTENSIONS (compared case-insensitively) are ignored. The order is "1.jpg", "2.jpg",
    "10.jpg" (DPED numbers its patches), ties broken by the plain name.

    Raises:
      ValueError: `directory` does not exist, is not a directory, or holds no image file; the
        message names it.
    """
    directory = os.fspath(directory)
    if not os.path.isdir(directory):
        raise ValueError(f"image directory {directory!r} does not exist or is not a directory")
    with os.scandir(directory) as entries:
        names = [e.name for e in entries if is_image_name(e.name) and e.is_file()]
    if not names:
        raise ValueError(f"no image files ({', '.join(IMAGE_EXTENSIONS)}) in {directory!r}")
    names.sort(key=natural_key)
    return [os.path.join(directory, name) for name in names]


def _as_paths(paths, what):
    if isinstance(paths, (str, bytes, os.PathLike)):
        return list_images(paths)
    paths = [os.fspath(p) for p in paths]
    if not paths:
        raise ValueError(f"{what}: no image paths given")
    return paths


def match_pairs(source_paths, target_dir_or_paths):
    """Pairs images by file name (without extension): [(source, target), ...] in source order.

    For aligned test patches and references (DPED's test_data/patches/{<phone>,canon}). The
    extension is ignored, so "7.jpg" pairs with "7.png".

    Args:
      source_paths: a list of paths, or a directory (listed with `list_images`).
      target_dir_or_paths: a directory, or a list of paths.

    Raises:
      ValueError: a name is present on one side only (the message gives the count and the first
        few names of each side), or a name occurs twice on one side.
    """
    source_paths = _as_paths(source_paths, "match_pairs source")
    target_paths = _as_paths(target_dir_or_paths, "match_pairs target")

    def by_name(paths, side):
        table = {}
        for path in paths:
            stem = os.path.splitext(os.path.basename(path))[0]
            if stem in table:
                raise ValueError(f"match_pairs: the name {stem!r} occurs twice among the {side} "
                                 f"images ({table[stem]!r}, {path!r})")
            table[stem] = path
        return table

    sources, targets = by_name(source_paths, "source"), by_name(target_paths, "target")
    only_source = sorted((s for s in sources if s not in targets), key=natural_key)
    only_target = sorted((t for t in targets if t not in sources), key=natural_key)
    if only_source or only_target:
        problems = []
        for names, here, there in ((only_source, "source", "target"),
                                   (only_target, "target", "source")):
            if names:
                problems.append(f"{len(names)} {here} image(s) have no {there} of the same name "
                                f"(first: {', '.join(names[:_FIRST_NAMES])})")
        raise ValueError("match_pairs: " + "; ".join(problems))
    return [(path, targets[stem]) for stem, path in sources.items()]


class _PatchDecoder(DecodeWorker):
    """Decodes one image and takes its crops (augmented): (crops, ok); a file that fails, or is
    smaller than the patch, is recorded and skipped. Gives up after a long run of failures."""

    def __init__(self, paths, failures, patch_size, patches_per_image, augment, crop_seed):
        super().__init__(failures, min(2 * len(paths), GIVE_UP_AFTER) + _GIVE_UP_SLACK,
                         in_a_row=True)
        self.paths = paths
        self.patch_size = patch_size
        self.count = 2 * patches_per_image  # own crops, then spares for failed neighbours
        self.augment = augment
        self.crop_seed = crop_seed

    def skipped(self):
        p = self.patch_size
        return np.zeros((self.count, p, p, 3), np.uint8), np.bool_(False)

    def give_up_message(self, path, reason):
        examples = "; ".join(f"{p}: {r}" for p, r in self.failures.examples[:3])
        return (f"the last {self.failed} images could not be used as "
                f"{self.patch_size}x{self.patch_size} patch sources (e.g. {examples}); is the "
                f"image directory right, and are the images at least as large as the patch?")

    def decode(self, index, position):
        path = self.paths[int(index)]
        p = self.patch_size
        try:
            image = load_rgb8(path)
        except ImageDecodeError as e:
            return self.fail(path, e.reason)
        height, width = image.shape[:2]
        if height < p or width < p:
            return self.fail(path, f"the image ({width}x{height}) is smaller than the {p}x{p} "
                                   f"patch")
        self.succeed()
        rng = np.random.default_rng([self.crop_seed, int(position)])
        # Drawn in a fixed order whether or not they are used: augment only changes the pixels.
        tops = rng.integers(0, height - p + 1, size=self.count)
        lefts = rng.integers(0, width - p + 1, size=self.count)
        turns = rng.integers(0, 4, size=self.count)
        flips = rng.integers(0, 2, size=self.count)
        out = np.empty((self.count, p, p, 3), np.uint8)
        for i in range(self.count):
            crop = image[tops[i]:tops[i] + p, lefts[i]:lefts[i] + p]
            if self.augment:
                crop = np.rot90(crop, k=int(turns[i]))
                if flips[i]:
                    crop = crop[:, ::-1]
            out[i] = crop
        return out, np.bool_(True)


def make_patch_dataset(paths, *, patch_size, batch_size, seed, start_step=0, num_shards=1,
                       shard_index=0, augment=True, images_per_group=16, patches_per_image=8,
                       decode_failures=None):
    """An endless, reproducible stream of random patches of `paths` (see the module docstring).

    Args:
      paths: image files (a list), or a directory (listed with `list_images`).
      patch_size: side of the square patches, in pixels. Smaller images are skipped as failures.
      batch_size: patches per batch (per shard).
      seed: int; the same (paths, seed) gives the same stream.
      start_step: batches to skip; the stream then equals the start_step=0 stream without its
        first start_step batches, and only one group is decoded to get there.
      num_shards, shard_index: this input pipeline's share (groups g with g % num_shards ==
        shard_index); tf.data auto-sharding is switched off when num_shards > 1.
      augment: random 90-degree rotations and left-right flips.
      images_per_group: images decoded together (G).
      patches_per_image: crops taken from each image (M); 1 for files that are patch-sized.
      decode_failures: a `datasets.pipeline.DecodeFailures` that counts skipped files (a private one
        if None).

    Returns:
      tf.data.Dataset of float32 [batch_size, patch_size, patch_size, 3] in [0, 1], endless.
    """
    paths = _as_paths(paths, "make_patch_dataset")
    patch_size, batch_size, seed = int(patch_size), int(batch_size), int(seed)
    start_step, num_shards, shard_index = int(start_step), int(num_shards), int(shard_index)
    group, per_image = int(images_per_group), int(patches_per_image)
    for name, value in (("patch_size", patch_size), ("batch_size", batch_size),
                        ("images_per_group", group), ("patches_per_image", per_image)):
        if value < 1:
            raise ValueError(f"{name} must be >= 1, got {value}")
    check_stream_position(start_step, num_shards, shard_index)
    if decode_failures is None:
        decode_failures = DecodeFailures()

    per_group = group * per_image
    first_local_group, offset = divmod(start_step * batch_size, per_group)
    first_group = first_local_group * num_shards + shard_index
    epoch_seed = derive_seed(seed, "epoch")
    group_seed = tf.constant(derive_seed(seed, "group"), tf.int64)
    decoder = _PatchDecoder(paths, decode_failures, patch_size, per_image, bool(augment),
                            derive_seed(seed, "crop"))
    p = patch_size

    def decode(index, position):
        crops, ok, stop = decoder.numpy_function([index, position], [tf.uint8, tf.bool],
                                                 name="load_rgb8_patches")
        crops.set_shape([2 * per_image, p, p, 3])
        ok.set_shape([])
        return crops, ok, position, stop

    def assemble(crops, ok, position):
        # crops [G, 2M, p, p, 3]: M own crops, then M spares per image.
        own = tf.reshape(crops[:, :per_image], [per_group, p, p, 3])
        spare = tf.reshape(crops[:, per_image:], [per_group, p, p, 3])
        slot_ok = tf.repeat(ok, per_image)
        good = tf.cast(tf.reshape(tf.where(slot_ok), [-1]), tf.int32)
        num_good = tf.size(good)
        failed_rank = tf.cumsum(tf.cast(tf.logical_not(slot_ok), tf.int32)) - 1
        pick = tf.gather(tf.concat([good, [0]], 0),
                         tf.math.floormod(failed_rank, tf.maximum(num_good, 1)))
        source = tf.where(slot_ok, tf.range(per_group, dtype=tf.int32), per_group + pick)
        patches = tf.gather(tf.concat([own, spare], 0), source)
        g = position[0] // group
        order = tf.random.experimental.stateless_shuffle(
            tf.range(per_group, dtype=tf.int32), seed=tf.stack([group_seed, g]))
        patches = tf.gather(patches, order)
        return patches[:tf.where(num_good > 0, per_group, 0)]

    ds = index_stream(len(paths), epoch_seed, first_group * group, num_shards, shard_index,
                      group=group)
    ds = map_decoded(ds, decode)
    ds = ds.batch(group, drop_remainder=True)
    ds = ds.map(assemble, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    ds = ds.unbatch()
    if offset:
        ds = ds.skip(offset)
    ds = ds.batch(batch_size, drop_remainder=True)
    ds = ds.map(lambda x: tf.cast(x, tf.float32) * (1.0 / 255.0),
                num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    ds = ds.prefetch(tf.data.AUTOTUNE)
    return ds.with_options(stream_options(num_shards))


def make_unpaired_dataset(source_paths, target_paths, *, patch_size, batch_size, seed,
                          start_step=0, num_shards=1, shard_index=0, augment=True,
                          decode_failures=None, source_groups=None, target_groups=None,
                          **group_kwargs):
    """Batches of (source patches, target patches) from two INDEPENDENT streams, zipped.

    The source stream uses seed derive_seed(seed, "source") and the target stream
    derive_seed(seed, "target"), so even the same folder on both sides gives two different
    streams, and no source/target pairing (file names, alignment) is ever used: WESPE's weak
    supervision (section 3; section 4.1: "a random positive (i.e., DSLR) image and a random
    negative one" at each iteration).

    Args:
      source_paths, target_paths: lists of image files, or directories.
      group_kwargs: `images_per_group`, `patches_per_image`, passed to both streams.
      source_groups, target_groups: optional dicts of the same keys for one stream only (e.g.
        `dped.PATCH_FILE_GROUPS` for DPED's patch files against full-size DIV2K photos).
      Everything else as in `make_patch_dataset`; `decode_failures` counts both streams.

    Returns:
      tf.data.Dataset of (float32 [B, p, p, 3], float32 [B, p, p, 3]), values in [0, 1].
    """
    for given in (group_kwargs, source_groups or {}, target_groups or {}):
        unknown = set(given) - {"images_per_group", "patches_per_image"}
        if unknown:
            raise TypeError(f"make_unpaired_dataset: unexpected arguments {sorted(unknown)}")
    if decode_failures is None:
        decode_failures = DecodeFailures()
    common = dict(patch_size=patch_size, batch_size=batch_size, start_step=start_step,
                  num_shards=num_shards, shard_index=shard_index, augment=augment,
                  decode_failures=decode_failures)
    source = make_patch_dataset(source_paths, seed=derive_seed(seed, "source"), **common,
                                **{**group_kwargs, **(source_groups or {})})
    target = make_patch_dataset(target_paths, seed=derive_seed(seed, "target"), **common,
                                **{**group_kwargs, **(target_groups or {})})
    ds = tf.data.Dataset.zip((source, target)).prefetch(tf.data.AUTOTUNE)
    return ds.with_options(stream_options(int(num_shards)))
