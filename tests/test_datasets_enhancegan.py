"""datasets.enhancegan: CUHK-PQ and AVA good/bad sets, the k-NN pairing and its cache, and the
GAN and critic streams (determinism, resume, shards, bad files)."""
import logging
import os

import numpy as np
import pytest
from PIL import Image

from datasets import ava
from datasets import enhancegan as eg
from datasets.pipeline import DecodeFailures

SIZES = ((20, 30), (30, 20), (24, 24))
CATEGORIES = ("animal", "night", "static")


def _colour(index, good):
    """The flat colour of image `index` of a side: R names the image (bad ones one above the
    good ones, so that no two good images are equally near a bad one), G the side."""
    return (10 + 3 * index + (0 if good else 1), 200 if good else 50, 100)


def _flat(path, colour, size):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full(size + (3,), colour, np.uint8)).save(path)


def _cuhk(root, n_good=6, n_bad=9, categories=CATEGORIES):
    """A CUHK-PQ folder of flat PNGs: image i of a side is in category i % len(categories)."""
    for side, n, good in ((eg.HIGH_QUALITY, n_good, True), (eg.LOW_QUALITY, n_bad, False)):
        for i in range(n):
            category = categories[i % len(categories)]
            _flat(root / side / category / f"{i}.png", _colour(i, good), SIZES[i % len(SIZES)])
    return root


def _index_of(images, good):
    """Which image (by the R channel of its flat colour) each of `images` [B, h, w, 3] is."""
    images = np.asarray(images)
    rgb = np.rint(images.mean(axis=(1, 2)) * 255.0)
    assert np.all(np.abs(images * 255.0 - rgb[:, None, None, :]) < 1.0), "not a flat image"
    assert np.all(rgb[:, 1] == (200 if good else 50))
    return [int(r - (10 if good else 11)) // 3 for r in rgb[:, 0]]


def _number(key):
    """The image number of a key ("HighQuality/night/4.png" -> 4)."""
    return int(os.path.splitext(key.split("/")[-1])[0])


def _take(ds, n):
    return [tuple(np.asarray(t) for t in element) for element, _ in zip(ds, range(n))]


def mean_colour(images):
    """A features_fn for tests: the mean colour of each image."""
    return np.asarray(images).mean(axis=(1, 2))


# ----------------------------------------------------------------------------- CUHK-PQ


def test_cuhkpq_listing_keeps_categories_and_relative_keys(tmp_path):
    root = _cuhk(tmp_path / "cuhk", n_good=4, n_bad=3)
    (root / eg.HIGH_QUALITY / "animal" / ".hidden.png").write_bytes(b"x")
    (root / eg.HIGH_QUALITY / "animal" / "notes.txt").write_text("x")
    _flat(root / eg.LOW_QUALITY / "loose.png", (1, 2, 3), (8, 8))  # no category
    sets = eg.list_cuhkpq(root)
    assert sets.good.keys == ["HighQuality/animal/0.png", "HighQuality/animal/3.png",
                              "HighQuality/night/1.png", "HighQuality/static/2.png"]
    assert sets.good.categories == ["animal", "animal", "night", "static"]
    assert sets.bad.keys[0] == "LowQuality/loose.png" and sets.bad.categories[0] == ""
    assert sets.good.paths[0] == os.path.join(str(root), "HighQuality", "animal", "0.png")
    assert sets.bad.category_counts() == {"": 1, "animal": 1, "night": 1, "static": 1}


def test_cuhkpq_missing_or_empty_folders_are_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="nowhere"):
        eg.list_cuhkpq(tmp_path / "nowhere")
    (tmp_path / "HighQuality" / "animal").mkdir(parents=True)
    with pytest.raises(FileNotFoundError, match="LowQuality"):
        eg.list_cuhkpq(tmp_path)
    (tmp_path / "lowquality" / "animal").mkdir(parents=True)  # any case
    with pytest.raises(ValueError, match="HighQuality.* holds no images"):
        eg.list_cuhkpq(tmp_path)
    _flat(tmp_path / "HighQuality" / "animal" / "a.jpg", (1, 1, 1), (4, 4))
    with pytest.raises(ValueError, match="lowquality.* holds no images"):
        eg.list_cuhkpq(tmp_path)
    _flat(tmp_path / "lowquality" / "night" / "b.jpg", (1, 1, 1), (4, 4))
    assert eg.list_cuhkpq(tmp_path).bad.keys == ["lowquality/night/b.jpg"]


def test_cuhkpq_split_holds_out_ten_percent_by_seed_and_is_stable(tmp_path):
    keys = [f"HighQuality/animal/{i}.jpg" for i in range(40)]
    bad_keys = [f"LowQuality/night/{i}.jpg" for i in range(60)]
    sets = eg.GoodBad(eg.ImageSet("r", keys, ["animal"] * 40),
                      eg.ImageSet("r", bad_keys, ["night"] * 60))
    train, val = eg.split_good_bad(sets, seed=3)
    assert (len(train.good), len(val.good), len(train.bad), len(val.bad)) == (36, 4, 54, 6)
    assert not set(train.good.keys) & set(val.good.keys)
    assert sorted(train.good.keys + val.good.keys) == sorted(keys)
    assert val.good.categories == ["animal"] * 4
    assert train.good.keys == [k for k in keys if k in set(train.good.keys)]  # order kept
    # The same seed gives the same split whatever the listing order; another seed another one.
    shuffled = eg.GoodBad(eg.ImageSet("r", keys[::-1]), eg.ImageSet("r", bad_keys[::-1]))
    assert set(eg.split_good_bad(shuffled, seed=3)[1].good.keys) == set(val.good.keys)
    assert set(eg.split_good_bad(sets, seed=4)[1].good.keys) != set(val.good.keys)
    # Ten more files: the old held-out keys stay held out, but for the ones near the cut.
    more = eg.GoodBad(eg.ImageSet("r", keys + [f"HighQuality/x/{i}.jpg" for i in range(10)]),
                      sets.bad)
    new_val = set(eg.split_good_bad(more, seed=3)[1].good.keys)
    assert len(new_val) == 5 and len(set(val.good.keys) - new_val) <= 1
    # Tiny sets still hold one out; 0 holds none out.
    tiny = eg.GoodBad(eg.ImageSet("r", ["a", "b"]), eg.ImageSet("r", ["c", "d", "e"]))
    assert [len(s) for s in (eg.split_good_bad(tiny)[1].good,
                             eg.split_good_bad(tiny)[1].bad)] == [1, 1]
    assert len(eg.split_good_bad(tiny, val_fraction=0)[1].bad) == 0
    with pytest.raises(ValueError, match="val_fraction"):
        eg.split_good_bad(tiny, val_fraction=1.0)


def test_load_cuhkpq_reads_the_layout(tmp_path):
    train, val = eg.load_cuhkpq(_cuhk(tmp_path, n_good=10, n_bad=20), seed=0)
    assert (len(train.good), len(val.good), len(train.bad), len(val.bad)) == (9, 1, 18, 2)
    assert all(key.startswith("LowQuality/") for key in val.bad.keys)


# ----------------------------------------------------------------------------- AVA


def _ava(tmp_path, means_and_tags):
    """AVA.txt with one image per (mean score, tag 1, tag 2); all votes on floor/ceil of mean."""
    image_dir = tmp_path / "images"
    lines = []
    for i, (mean, tag1, tag2) in enumerate(means_and_tags):
        counts = [0] * 10
        low = int(np.floor(mean))
        frac = mean - low
        counts[low - 1] = int(round(100 * (1 - frac)))
        if frac:
            counts[low] = int(round(100 * frac))
        lines.append(f"{i + 1} {1000 + i} {' '.join(map(str, counts))} {tag1} {tag2} 5\n")
        _flat(image_dir / f"{1000 + i}.jpg", (10 * i, 0, 0), (8, 8))
    (tmp_path / "AVA.txt").write_text("".join(lines))
    (tmp_path / "tags.txt").write_text("1 Abstract\n14 Landscape\n15 Seascape\n19 Black and "
                                       "White\n21 Animals\n")
    return tmp_path / "AVA.txt", image_dir


def test_ava_tags_and_tag_names(tmp_path):
    ava_txt, _ = _ava(tmp_path, [(5.0, 14, 0), (4.0, 1, 21)])
    with open(ava_txt, "a") as f:
        f.write("3 77 1 1 1 1 1 1 1 1 1 1\n")  # no tag columns
    assert eg.read_ava_tags(ava_txt) == {"1000": (14, 0), "1001": (1, 21), "77": (0, 0)}
    names = eg.read_tag_names(tmp_path / "tags.txt")
    assert names[19] == "Black and White"
    assert eg.tag_ids("Landscape, 21", tmp_path / "tags.txt") == (14, 21)
    assert eg.tag_ids(["black-and-white", "SEASCAPE"], tmp_path / "tags.txt") == (15, 19)
    assert eg.tag_ids([21, "14"]) == (14, 21)
    with pytest.raises(ValueError, match="tags.txt"):
        eg.tag_ids(eg.PAPER_TAGS)
    with pytest.raises(ValueError, match="no semantic tag named Rural.*Abstract, Landscape"):
        eg.tag_ids(["Landscape", "Rural"], tmp_path / "tags.txt")


def test_ava_good_is_the_top_30_percent_and_bad_is_below_5(tmp_path):
    # Means 2.0 ... 7.5 by 0.5 (12 images); mean >= 5 (high quality): 5.0 ... 7.5, 6 images.
    means = [2.0 + 0.5 * i for i in range(12)]
    tags = [(14 if i % 2 else 1, 21 if i % 3 == 0 else 0) for i in range(12)]
    ava_txt, image_dir = _ava(tmp_path, [(m, *t) for m, t in zip(means, tags)])
    records = ava.load_ava(ava_txt, image_dir)
    tags_of = eg.read_ava_tags(ava_txt)
    sets = eg.ava_good_bad(records, tags_of=tags_of)
    # Top 30% of 6 high-quality images = round(1.8) = 2: means 7.5 and 7.0 (ids 1011, 1010).
    assert sets.good.keys == ["1011.jpg", "1010.jpg"]
    assert sets.good.root == str(image_dir) and sets.good.categories == ["14", "1"]
    # Bad: mean < 5: 2.0 ... 4.5, ids 1000-1005.
    assert sets.bad.keys == [f"{1000 + i}.jpg" for i in range(6)]
    # Of all 12 images: round(3.6) = 4.
    assert len(eg.ava_good_bad(records, good_pool="all").good) == 4
    # Tags filter the bad images only: Landscape (14) or Animals (21): i odd or i % 3 == 0.
    tagged = eg.ava_good_bad(records, tags_of=tags_of, tags=("Landscape", "Animals"),
                             tags_txt=tmp_path / "tags.txt")
    assert tagged.bad.keys == [f"{1000 + i}.jpg" for i in (0, 1, 3, 5)]
    assert tagged.good.keys == sets.good.keys
    assert eg.ava_good_bad(records, tags_of=tags_of, tags=[14], tag_good=True).good.keys == [
        "1011.jpg"]  # of the 3 tagged high-quality images, round(0.9) = 1
    # A seeded sample of the bad images.
    sample = eg.ava_good_bad(records, max_bad=3, seed=1).bad.keys
    assert len(sample) == 3 and sample == eg.ava_good_bad(records, max_bad=3, seed=1).bad.keys
    assert set(sample) <= set(sets.bad.keys)
    with pytest.raises(ValueError, match="tags_of"):
        eg.ava_good_bad(records, tags=[14])
    with pytest.raises(ValueError, match="qualifies as bad"):
        eg.ava_good_bad(records, bad_below=1.5)


def test_load_ava_good_bad_uses_the_training_partition_and_val100(tmp_path):
    means = [2.0 + 0.25 * i for i in range(24)]
    ava_txt, image_dir = _ava(tmp_path, [(m, 14, 0) for m in means])
    split = tmp_path / "test_ids.txt"
    split.write_text("1023\n1000\n1005\n")
    sets, test = eg.load_ava_good_bad(ava_txt, image_dir, split_file=split)
    assert sorted(test.ids) == ["1000", "1005", "1023"]
    assert "1023.jpg" not in sets.good.keys and "1000.jpg" not in sets.bad.keys
    assert sets.good.keys[0] == "1022.jpg"
    # Val100 of a larger test partition: 100 seeded ids, deterministic, from the test side only.
    many = ava.AvaRecords([str(i) for i in range(300)], [f"{i}.jpg" for i in range(300)],
                          np.full((300, 10), 0.1))
    chosen = eg.val100(many, seed=0)
    assert len(chosen) == 100 and len(set(chosen.ids)) == 100
    assert chosen.ids == eg.val100(many.subset(np.arange(299, -1, -1)), seed=0).ids
    assert chosen.ids != eg.val100(many, seed=1).ids
    assert len(eg.val100(test)) == 3


# ----------------------------------------------------------------------------- k-NN, pairing


def test_knn_is_exact_in_chunks_with_ties_by_index():
    rng = np.random.default_rng(0)
    references = rng.normal(size=(50, 6)).astype(np.float32)
    references[7] = references[3]  # a tie: index 3 comes first
    queries = np.concatenate([rng.normal(size=(36, 6)), references[3:4] + 1e-4]).astype(
        np.float32)
    naive = np.sqrt(((queries[:, None].astype(np.float64) - references[None]) ** 2).sum(-1))
    expected = np.lexsort((np.broadcast_to(np.arange(50), naive.shape), naive), axis=1)[:, :5]
    for chunk in (1, 8, 512):
        indices, distances = eg.knn(queries, references, 5, chunk_size=chunk)
        np.testing.assert_array_equal(indices, expected)
        np.testing.assert_allclose(distances, np.take_along_axis(naive, expected, 1), rtol=1e-6)
    assert list(indices[-1][:2]) == [3, 7]
    # Fewer references than k + 8 candidates: all are compared.
    indices, _ = eg.knn(queries[:3], references[:6], 6)
    np.testing.assert_array_equal(indices, np.argsort(naive[:3, :6], axis=1, kind="stable"))
    with pytest.raises(ValueError, match="k must be"):
        eg.knn(queries, references[:4], 5)


def test_thumbnail_features():
    images = np.zeros((2, 16, 8, 3), np.float32)
    images[1, :8] = 1.0  # top half white
    features = eg.thumbnail_features(images, size=2)
    assert features.shape == (2, 12)
    np.testing.assert_array_equal(features[1].reshape(2, 2, 3)[:, :, 0], [[1, 1], [0, 0]])
    with pytest.raises(ValueError, match="multiple"):
        eg.thumbnail_features(np.zeros((1, 9, 8, 3)), size=2)


def _expected_neighbours(sets, k=eg.K):
    """Neighbours by mean colour, written out: the good images with the nearest R value."""
    good_r = np.array([_colour(_number(key), True)[0] for key in sets.good.keys])
    rows = []
    for key in sets.bad.keys:
        r = _colour(_number(key), False)[0]
        rows.append([sets.good.keys[j] for j in
                     np.lexsort((np.arange(len(good_r)), np.abs(good_r - r)))[:k]])
    return rows


def test_pairing_is_the_nearest_good_images_cached_and_rebuilt_when_stale(tmp_path, caplog):
    sets = eg.list_cuhkpq(_cuhk(tmp_path / "cuhk", n_good=8, n_bad=5))
    calls = []

    def features(images):
        calls.append(images.shape)
        return mean_colour(images)

    cache = tmp_path / "cache" / "pairs.npz"
    pairing = eg.pair_good_bad(sets, features, feature_id="mean", cache_path=cache,
                               image_size=16, batch_size=3)
    assert calls[0] == (3, 16, 16, 3) and os.path.isfile(cache)
    assert pairing.bad_keys == sets.bad.keys and pairing.k == 5
    assert [pairing.neighbour_keys(key) for key in sets.bad.keys] == _expected_neighbours(sets)
    assert np.all(np.diff(pairing.distances, axis=1) >= 0)
    # The cache is read back, features_fn not called.
    count = len(calls)
    again = eg.pair_good_bad(sets, features, feature_id="mean", cache_path=cache,
                             image_size=16)
    assert len(calls) == count
    np.testing.assert_array_equal(again.neighbours, pairing.neighbours)
    assert again.fingerprint == pairing.fingerprint and again.settings["feature_id"] == "mean"
    # Other features, or another image, make it stale: an error that says so, or a rebuild.
    with pytest.raises(ValueError, match="feature_id 'mean' -> 'vgg'.*delete it"):
        eg.pair_good_bad(sets, features, feature_id="vgg", cache_path=cache, image_size=16,
                         on_stale="error")
    _flat(tmp_path / "cuhk" / eg.HIGH_QUALITY / "night" / "8.png", _colour(8, True), (9, 9))
    more = eg.list_cuhkpq(tmp_path / "cuhk")
    with pytest.raises(ValueError, match="good images: 1 not in the cache .*8.png"):
        eg.pair_good_bad(more, features, feature_id="mean", cache_path=cache, image_size=16,
                         on_stale="error")
    with caplog.at_level(logging.WARNING):
        rebuilt = eg.pair_good_bad(more, features, feature_id="mean", cache_path=cache,
                                   image_size=16)
    assert "stale" in caplog.text and len(calls) > count
    assert [rebuilt.neighbour_keys(key) for key in more.bad.keys] == _expected_neighbours(more)
    assert eg.read_pairing(cache).fingerprint == rebuilt.fingerprint


def test_pairing_files_round_trip_and_resolve(tmp_path):
    sets = eg.list_cuhkpq(_cuhk(tmp_path / "cuhk", n_good=6, n_bad=4))
    pairing = eg.pair_good_bad(sets, mean_colour, feature_id="mean", image_size=8, k=3)
    text = eg.write_pairing(tmp_path / "pairs.txt", pairing)
    lines = [line for line in open(text).read().splitlines() if not line.startswith("#")]
    assert lines[0].split("\t") == [sets.bad.keys[0]] + pairing.neighbour_keys(sets.bad.keys[0])
    from_text = eg.read_pairing(text)
    assert from_text.fingerprint == "" and np.isnan(from_text.distances).all()
    for key in sets.bad.keys:
        assert from_text.neighbour_keys(key) == pairing.neighbour_keys(key)
    bad_index, neighbours = from_text.resolve(sets)
    np.testing.assert_array_equal(bad_index, np.arange(4))
    assert [[sets.good.keys[j] for j in row] for row in neighbours] == [
        pairing.neighbour_keys(key) for key in sets.bad.keys]
    # A row whose images are not in the sets is dropped; none left is an error.
    smaller = eg.GoodBad(sets.good.subset([j for j in range(6) if j != neighbours[0][0]]),
                         sets.bad)
    kept, _ = from_text.resolve(smaller)
    assert 0 not in kept
    with pytest.raises(ValueError, match="none of the pairing"):
        from_text.resolve(eg.GoodBad(sets.good, eg.ImageSet("x", ["other.png"])))
    # Malformed files name the line; a broken cache says how to recover.
    (tmp_path / "bad.tsv").write_text("a\tb\tc\nd\te\n")
    with pytest.raises(ValueError, match="bad.tsv, line 2: 1 neighbours"):
        eg.read_pairing(tmp_path / "bad.tsv")
    (tmp_path / "broken.npz").write_bytes(b"not a zip")
    with pytest.raises(ValueError, match="delete it"):
        eg.read_pairing(tmp_path / "broken.npz")
    with pytest.raises(FileNotFoundError):
        eg.read_pairing(tmp_path / "none.npz")


def test_undecodable_files_are_counted_and_left_out_of_the_pairing(tmp_path):
    root = _cuhk(tmp_path / "cuhk", n_good=7, n_bad=4)
    (root / eg.HIGH_QUALITY / "night" / "1.png").write_bytes(b"broken")
    (root / eg.LOW_QUALITY / "static" / "2.png").write_bytes(b"broken")
    sets = eg.list_cuhkpq(root)
    failures = DecodeFailures()
    pairing = eg.pair_good_bad(sets, mean_colour, feature_id="mean", image_size=8,
                               decode_failures=failures)
    assert failures.count == 2
    assert {os.path.basename(p) for p, _ in failures.examples} == {"1.png", "2.png"}
    assert "LowQuality/static/2.png" not in pairing.bad_keys and len(pairing) == 3
    assert all("HighQuality/night/1.png" not in pairing.neighbour_keys(k)
               for k in pairing.bad_keys)


# ----------------------------------------------------------------------------- streams


@pytest.fixture
def paired(tmp_path):
    sets = eg.list_cuhkpq(_cuhk(tmp_path / "cuhk", n_good=8, n_bad=7))
    return sets, eg.pair_good_bad(sets, mean_colour, feature_id="mean", image_size=8)


GAN = dict(crop_size=8, resize_short=10, good_size=6)


def test_gan_stream_pairs_each_bad_image_with_one_of_its_neighbours(paired):
    sets, pairing = paired
    elements = _take(eg.make_gan_dataset(sets, pairing, batch_size=4, seed=0, **GAN), 6)
    bad, good = elements[0]
    assert bad.shape == (4, 8, 8, 3) and good.shape == (4, 6, 6, 3)
    assert bad.dtype == good.dtype == np.float32
    bads = sum((_index_of(b, False) for b, _ in elements), [])
    goods = sum((_index_of(g, True) for _, g in elements), [])
    bad_key = {_number(key): key for key in sets.bad.keys}
    good_key = {_number(key): key for key in sets.good.keys}
    picks = set()
    for b, g in zip(bads, goods):
        neighbours = pairing.neighbour_keys(bad_key[b])
        name = good_key[g]
        assert name in neighbours
        picks.add(neighbours.index(name))
    assert len(picks) >= 3  # the partner is drawn among the 5, not always the nearest
    assert sorted(bads[:7]) == list(range(7))  # an epoch visits every bad image once


def test_gan_stream_is_deterministic_resumable_and_sharded(paired):
    sets, pairing = paired
    fresh = _take(eg.make_gan_dataset(sets, pairing, batch_size=2, seed=5, **GAN), 8)
    again = _take(eg.make_gan_dataset(sets, pairing, batch_size=2, seed=5, **GAN), 8)
    for a, b in zip(fresh, again):
        np.testing.assert_array_equal(a[0], b[0])
        np.testing.assert_array_equal(a[1], b[1])
    other = _take(eg.make_gan_dataset(sets, pairing, batch_size=2, seed=6, **GAN), 8)
    assert any(not np.array_equal(a[0], b[0]) for a, b in zip(fresh, other))
    resumed = _take(eg.make_gan_dataset(sets, pairing, batch_size=2, seed=5, start_step=3,
                                        **GAN), 5)
    for a, b in zip(fresh[3:], resumed):
        np.testing.assert_array_equal(a[0], b[0])
        np.testing.assert_array_equal(a[1], b[1])
    # Two shards of batch 1 interleave to the single stream of batch 1.
    single = _take(eg.make_gan_dataset(sets, pairing, batch_size=1, seed=5, **GAN), 8)
    shards = [_take(eg.make_gan_dataset(sets, pairing, batch_size=1, seed=5, num_shards=2,
                                        shard_index=s, **GAN), 4) for s in range(2)]
    for p in range(8):
        np.testing.assert_array_equal(single[p][0], shards[p % 2][p // 2][0])
        np.testing.assert_array_equal(single[p][1], shards[p % 2][p // 2][1])


def test_gan_stream_crops_flips_and_resizes(tmp_path):
    # One bad image, a horizontal ramp 20 high and 40 wide: short side to 10 gives 10 x 20,
    # then a random 8 x 8 crop, flipped or not; the good image is resized whole (aspect lost).
    ramp = np.tile(np.linspace(0, 255, 40).astype(np.uint8)[None, :, None], (20, 1, 3))
    (tmp_path / "HighQuality" / "a").mkdir(parents=True)
    (tmp_path / "LowQuality" / "a").mkdir(parents=True)
    Image.fromarray(ramp).save(tmp_path / "LowQuality" / "a" / "ramp.png")
    Image.fromarray(ramp).save(tmp_path / "HighQuality" / "a" / "ramp.png")
    sets = eg.list_cuhkpq(tmp_path)
    pairing = eg.Pairing(sets.bad.keys, sets.good.keys, [[0]])
    elements = _take(eg.make_gan_dataset(sets, pairing, batch_size=1, seed=0, **GAN), 12)
    directions = {bool(np.sign(np.diff(b[0, 0, :, 0]).mean()) > 0) for b, _ in elements}
    assert directions == {True, False}
    lefts = {round(float(b[0].mean()), 3) for b, _ in elements}
    assert len(lefts) > 2  # different crop positions
    for _, good in elements:
        np.testing.assert_allclose(good[0, 0, :, 0], good[0, -1, :, 0], atol=1e-6)
        assert good[0, 0, 0, 0] < 0.15 and good[0, 0, -1, 0] > 0.85  # the whole width
    with pytest.raises(ValueError, match="crop_size <= resize_short"):
        eg.make_gan_dataset(sets, pairing, batch_size=1, seed=0, crop_size=8, resize_short=6)


def test_gan_stream_skips_undecodable_files_by_name(paired, caplog):
    sets, pairing = paired
    os.remove(sets.bad.paths[2])
    with open(sets.bad.paths[2], "wb") as f:
        f.write(b"broken")
    failures = DecodeFailures()
    with caplog.at_level(logging.WARNING):
        elements = _take(eg.make_gan_dataset(sets, pairing, batch_size=3, seed=0,
                                             decode_failures=failures, **GAN), 6)
    bads = sum((_index_of(b, False) for b, _ in elements), [])
    assert _number(sets.bad.keys[2]) not in bads and len(bads) == 18
    assert failures.count >= 2 and failures.examples[0][0] == sets.bad.paths[2]
    assert sets.bad.keys[2].split("/")[-1] in caplog.text


def test_critic_stream_balances_by_sampling(paired):
    sets, _ = paired
    elements = _take(eg.make_critic_dataset(sets, batch_size=4, seed=1, crop_size=8,
                                            resize_short=10), 8)
    images, labels, weights = elements[0]
    assert images.shape == (4, 8, 8, 3) and labels.tolist() == [1, 0, 1, 0]
    assert np.all(weights == 1)
    goods, bads = [], []
    for images, labels, _ in elements:
        goods += _index_of(images[labels == 1], True)
        bads += _index_of(images[labels == 0], False)
    assert sorted(goods[:8]) == list(range(8)) and sorted(bads[:7]) == list(range(7))
    # Resuming mid-way (odd number of elements consumed) and sharding keep the stream.
    single = _take(eg.make_critic_dataset(sets, batch_size=1, seed=1, crop_size=8,
                                          resize_short=10), 12)
    resumed = _take(eg.make_critic_dataset(sets, batch_size=1, seed=1, crop_size=8,
                                           resize_short=10, start_step=5), 7)
    for a, b in zip(single[5:], resumed):
        np.testing.assert_array_equal(a[0], b[0])
        assert a[1] == b[1]
    shards = [_take(eg.make_critic_dataset(sets, batch_size=2, seed=1, crop_size=8,
                                           resize_short=10, num_shards=2, shard_index=s), 4)
              for s in range(2)]
    seen = [set(), set()]
    for s in range(2):
        for images, labels, _ in shards[s]:
            assert labels.tolist() == [1, 0]
            seen[s].update(_index_of(images[:1], True))
    assert not seen[0] & seen[1]  # each class is sharded: the shards see different images


def test_critic_stream_weights_and_evaluation_pass(paired):
    sets, _ = paired
    n_good, n_bad = 8, 7
    elements = _take(eg.make_critic_dataset(sets, batch_size=5, seed=0, crop_size=8,
                                            resize_short=10, balance="weight"), 6)
    for _, labels, weights in elements:
        np.testing.assert_allclose(weights, np.where(labels == 1, 15 / (2 * n_good),
                                                     15 / (2 * n_bad)), rtol=1e-6)
    evaluation = list(eg.make_critic_dataset(sets, batch_size=4, training=False, crop_size=8,
                                             resize_short=10).as_numpy_iterator())
    labels = np.concatenate([e[1] for e in evaluation])
    assert [len(e[1]) for e in evaluation] == [4, 4, 4, 3]
    assert labels.tolist() == [1] * n_good + [0] * n_bad
    images = np.concatenate([e[0] for e in evaluation])
    assert _index_of(images[:n_good], True) == [_number(k) for k in sets.good.keys]
    with pytest.raises(ValueError, match="balance"):
        eg.make_critic_dataset(sets, batch_size=2, balance="oversample")


def test_balanced_accuracy_by_hand():
    # Good: 3 of 4 right; bad: 1 of 2 right: (0.75 + 0.5) / 2.
    labels = [1, 1, 1, 1, 0, 0]
    predictions = [0.9, 0.8, 0.7, 0.2, 0.6, 0.1]
    assert eg.balanced_accuracy(labels, predictions) == pytest.approx(0.625)
    assert eg.balanced_accuracy([1, 1], [1, 0]) == 0.5
    assert np.isnan(eg.balanced_accuracy([], []))
