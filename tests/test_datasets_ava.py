"""datasets.ava: AVA.txt parsing, missing images, the split and the tf.data pipeline."""
import logging
import os
import subprocess
import sys
import time

import numpy as np
import pytest
from PIL import Image

from datasets.ava import (AvaRecords, load_ava, make_dataset, read_ava_txt, read_split_file,
                          split_ava, write_split_file)
from datasets.pipeline import DataError, DecodeFailures
from tests.fifos import guarded_fifo

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

AVA_TXT = """\
1 953619 0 1 5 17 38 36 15 6 5 1 1 22 1396
2 953958 10 7 15 33 30 13 5 2 1 2 1 1396

3 954184 0 0 0 0 0 0 0 0 0 0 0 0 1396
4 954113 0 1 4 6 48 37 23 5 2 2 15 21 1396
"""


def _write(path, text):
    path.write_text(text)
    return path


def _make_set(tmp_path, n, sizes=((30, 40), (48, 32), (40, 40))):
    """n JPEGs of varying sizes; record i has a distinct histogram so it can be recognised."""
    image_dir = tmp_path / "images"
    image_dir.mkdir()
    rng = np.random.default_rng(0)
    lines = []
    for i in range(n):
        h, w = sizes[i % len(sizes)]
        Image.fromarray(rng.integers(0, 256, (h, w, 3), np.uint8)).save(image_dir / f"{100 + i}.jpg")
        counts = [1] * 10
        counts[i % 10] += 5 + i  # unique per i
        lines.append(f"{i + 1} {100 + i} {' '.join(map(str, counts))} 0 0 7\n")
    ava_txt = _write(tmp_path / "AVA.txt", "".join(lines))
    return ava_txt, image_dir


def _ids_of(distributions, records):
    """Which record each row of `distributions` is (rows are exact copies)."""
    out = []
    for row in np.asarray(distributions).reshape(-1, 10):
        match = np.flatnonzero(np.all(np.isclose(records.distributions, row[None], atol=1e-6),
                                      axis=1))
        assert len(match) == 1
        out.append(records.ids[match[0]])
    return out


# ------------------------------------------------------------------------------- AVA.txt


def test_read_ava_txt(tmp_path, caplog):
    path = _write(tmp_path / "AVA.txt", AVA_TXT)
    with caplog.at_level(logging.WARNING):
        ids, counts = read_ava_txt(path)
    assert ids == ["953619", "953958", "954113"]  # the zero-vote row is dropped
    np.testing.assert_array_equal(counts[1], [10, 7, 15, 33, 30, 13, 5, 2, 1, 2])
    assert counts.dtype == np.int64 and counts.shape == (3, 10)
    assert "1 rows with zero votes" in caplog.text


def test_load_ava_distributions_by_hand(tmp_path):
    path = _write(tmp_path / "AVA.txt", AVA_TXT)
    image_dir = tmp_path / "images"
    image_dir.mkdir()
    for image_id in ("953619", "953958", "954113"):
        (image_dir / f"{image_id}.jpg").write_bytes(b"not decoded here")
    records = load_ava(path, image_dir)
    assert isinstance(records, AvaRecords) and len(records) == 3
    assert records.distributions.dtype == np.float32
    # Line 1: votes 0 1 5 17 38 36 15 6 5 1 sum to 124.
    expected = np.array([0, 1, 5, 17, 38, 36, 15, 6, 5, 1]) / 124.0
    np.testing.assert_allclose(records.distributions[0], expected, rtol=1e-6)
    # Line 2: sum 118; mean score = (10 + 14 + 45 + 132 + 150 + 78 + 35 + 16 + 9 + 20) / 118.
    np.testing.assert_allclose(records.distributions[1, 0], 10 / 118.0, rtol=1e-6)
    np.testing.assert_allclose(records.mean_scores[1], 509 / 118.0, rtol=1e-5)
    assert records.paths[2] == os.path.join(str(image_dir), "954113.jpg")
    sub = records.subset([2, 0])
    assert sub.ids == ["954113", "953619"]
    np.testing.assert_array_equal(sub.distributions[1], records.distributions[0])


@pytest.mark.parametrize("line, message", [
    ("2 953958 10 7 15 33 30\n", "line 2"),
    ("2 953958 10 7 15 33 30 13 5 2 x 2 1 1 1396\n", "line 2"),
    ("2 953958 10 7 15 33 30 13 5 2 -1 2 1 1 1396\n", "line 2"),
])
def test_malformed_line_names_file_and_line(tmp_path, line, message):
    path = _write(tmp_path / "AVA.txt", AVA_TXT.splitlines(keepends=True)[0] + line)
    with pytest.raises(ValueError, match=message) as info:
        read_ava_txt(path)
    assert str(path) in str(info.value)


def test_repeated_id_keeps_the_first_line(tmp_path, caplog):
    path = _write(tmp_path / "AVA.txt", AVA_TXT + "5 953619 9 9 9 9 9 9 9 9 9 9 0 0 1\n")
    with caplog.at_level(logging.WARNING):
        ids, counts = read_ava_txt(path)
    assert ids == ["953619", "953958", "954113"]
    np.testing.assert_array_equal(counts[0], [0, 1, 5, 17, 38, 36, 15, 6, 5, 1])
    assert "953619 (lines 1, 6)" in caplog.text


@pytest.mark.parametrize("text, why", [
    ("", "it is empty"),
    ("\n  \n", "it is empty"),
    ("1 953619 0 0 0 0 0 0 0 0 0 0 0 0 1\n2 953958 0 0 0 0 0 0 0 0 0 0 0 0 1\n",
     "every one of its 2 rows has zero votes"),
])
def test_an_ava_txt_without_a_labelled_row_is_an_error_naming_it(tmp_path, text, why):
    # Issue 15: "none of the 0 images listed in AVA.txt is in images/" hid the real cause.
    path = _write(tmp_path / "AVA.txt", text)
    with pytest.raises(DataError, match=why) as info:
        load_ava(path, tmp_path)
    assert str(path) in str(info.value) and "none of the 0" not in str(info.value)


def test_missing_images_error_lists_count_names_and_flag(tmp_path, caplog):
    ava_txt, image_dir = _make_set(tmp_path, 6)
    os.remove(image_dir / "101.jpg")
    os.remove(image_dir / "104.jpg")
    with caplog.at_level(logging.WARNING):
        with pytest.raises(FileNotFoundError) as info:
            load_ava(ava_txt, image_dir)
    message = str(info.value)
    for part in ("2 of 6", "101.jpg", "104.jpg", "--skip_missing_images", str(ava_txt),
                 str(image_dir)):
        assert part in message
    assert "2 of 6" in caplog.text  # reported up front, in the log too

    caplog.clear()
    with caplog.at_level(logging.WARNING):
        records = load_ava(ava_txt, image_dir, skip_missing=True)
    assert records.ids == ["100", "102", "103", "105"]
    assert "2 of 6" in caplog.text


def test_missing_image_dir(tmp_path):
    ava_txt = _write(tmp_path / "AVA.txt", AVA_TXT)
    with pytest.raises(FileNotFoundError, match="nowhere"):
        load_ava(ava_txt, tmp_path / "nowhere")


def test_extensions_and_case(tmp_path):
    ava_txt, image_dir = _make_set(tmp_path, 3)
    os.rename(image_dir / "101.jpg", image_dir / "101.JPG")
    os.rename(image_dir / "102.jpg", image_dir / "102.png")
    records = load_ava(ava_txt, image_dir, extensions=(".jpg", ".png"))
    assert [os.path.basename(p) for p in records.paths] == ["100.jpg", "101.JPG", "102.png"]


# ------------------------------------------------------------------------------- split


def _records(n):
    rng = np.random.default_rng(1)
    counts = rng.integers(1, 50, (n, 10))
    return AvaRecords(ids=[str(1000 + i) for i in range(n)],
                      paths=[f"/x/{1000 + i}.jpg" for i in range(n)],
                      distributions=counts / counts.sum(1, keepdims=True))


def test_split_is_deterministic_disjoint_and_80_20():
    records = _records(50)
    train, test = split_ava(records, seed=3)
    assert (len(train), len(test)) == (40, 10)
    assert set(train.ids).isdisjoint(test.ids)
    assert set(train.ids) | set(test.ids) == set(records.ids)
    again_train, again_test = split_ava(records, seed=3)
    assert again_test.ids == test.ids and again_train.ids == train.ids
    assert split_ava(records, seed=4)[1].ids != test.ids
    # Order-independent: the same ids in another order give the same test set.
    shuffled = records.subset(np.random.default_rng(0).permutation(50))
    assert set(split_ava(shuffled, seed=3)[1].ids) == set(test.ids)
    # Rows stay with their ids.
    i = records.ids.index(test.ids[0])
    np.testing.assert_array_equal(test.distributions[0], records.distributions[i])
    with pytest.raises(ValueError, match="test_fraction"):
        split_ava(records, test_fraction=1.0)


def test_split_file_round_trip(tmp_path, caplog):
    records = _records(30)
    train, test = split_ava(records, seed=0)
    path = write_split_file(tmp_path / "run" / "test_ids.txt", test)
    assert read_split_file(path) == test.ids
    train2, test2 = split_ava(records, split_file=path)
    assert test2.ids == test.ids and train2.ids == train.ids

    # Ids of the file that are not in the records (skipped images) are ignored with a warning.
    write_split_file(tmp_path / "more.txt", test.ids + ["999999", "888888"])
    with caplog.at_level(logging.WARNING):
        _, test3 = split_ava(records, split_file=tmp_path / "more.txt")
    assert test3.ids == test.ids
    assert "2 of its" in caplog.text and "999999" in caplog.text
    # A file that matches nothing is an error.
    write_split_file(tmp_path / "wrong.txt", ["1", "2"])
    with pytest.raises(ValueError, match="none of them"):
        split_ava(records, split_file=tmp_path / "wrong.txt")


# ------------------------------------------------------------------------------- pipeline


def _collect(ds, take=None):
    images, dists = [], []
    for x, y in (ds if take is None else ds.take(take)):
        images.append(x.numpy())
        dists.append(y.numpy())
    return images, dists


@pytest.mark.parametrize("augmentation, training, shape", [
    ("crop", True, (224, 224)),
    ("crop", False, (224, 224)),
    ("paper", True, (480, 640)),
    ("paper", False, (480, 640)),
])
def test_shapes_dtypes_range(tmp_path, augmentation, training, shape):
    records = load_ava(*_make_set(tmp_path, 5))
    ds = make_dataset(records, batch_size=2, training=training, augmentation=augmentation)
    images, dists = _collect(ds, take=3)
    for x, y in zip(images, dists):
        assert x.dtype == np.float32 and y.dtype == np.float32
        assert x.shape[1:] == (*shape, 3) and y.shape[1:] == (10,)
        assert x.min() >= 0.0 and x.max() <= 1.0 and x.max() > 0.5
        np.testing.assert_allclose(y.sum(axis=1), 1.0, rtol=1e-5)
    if training:
        assert len(images) == 3 and all(x.shape[0] == 2 for x in images)
    else:  # one pass, file order, last batch smaller
        assert [x.shape[0] for x in images] == [2, 2, 1]
        assert _ids_of(np.concatenate(dists), records) == records.ids


def test_none_keeps_original_size_and_needs_batch_1(tmp_path):
    records = load_ava(*_make_set(tmp_path, 3))
    images, _ = _collect(make_dataset(records, batch_size=1, training=False, augmentation="none"))
    assert [x.shape for x in images] == [(1, 30, 40, 3), (1, 48, 32, 3), (1, 40, 40, 3)]
    with pytest.raises(ValueError, match="batch_size must be 1"):
        make_dataset(records, batch_size=2, training=True, augmentation="none")
    with pytest.raises(ValueError, match="augmentation must be one of"):
        make_dataset(records, batch_size=2, training=True, augmentation="crop256")


def test_corrupt_image_is_skipped_and_counted(tmp_path, caplog):
    ava_txt, image_dir = _make_set(tmp_path, 6)
    data = (image_dir / "102.jpg").read_bytes()
    (image_dir / "102.jpg").write_bytes(data[: len(data) // 3])
    records = load_ava(ava_txt, image_dir)
    failures = DecodeFailures()
    with caplog.at_level(logging.WARNING):
        _, dists = _collect(make_dataset(records, batch_size=4, training=False,
                                         decode_failures=failures))
    assert _ids_of(np.concatenate(dists), records) == ["100", "101", "103", "104", "105"]
    assert failures.count == 1
    assert failures.examples[0][0] == str(image_dir / "102.jpg")
    assert "102.jpg" in caplog.text

    # Training goes on past it, epoch after epoch.
    failures = DecodeFailures()
    _, dists = _collect(make_dataset(records, batch_size=4, training=True,
                                     decode_failures=failures), take=5)
    assert len(dists) == 5 and "102" not in _ids_of(np.concatenate(dists), records)
    assert failures.count >= 2


def test_same_seed_same_stream_and_start_step_resumes_exactly(tmp_path):
    records = load_ava(*_make_set(tmp_path, 7))
    kwargs = dict(batch_size=3, training=True, seed=5)
    fresh_images, fresh = _collect(make_dataset(records, **kwargs), take=9)
    again_images, again = _collect(make_dataset(records, **kwargs), take=9)
    np.testing.assert_array_equal(np.stack(fresh), np.stack(again))
    np.testing.assert_array_equal(np.stack(fresh_images), np.stack(again_images))
    other = _collect(make_dataset(records, batch_size=3, training=True, seed=6), take=9)[1]
    assert not np.array_equal(np.stack(other), np.stack(fresh))

    # Every epoch of 7 is a permutation of the records.
    order = _ids_of(np.concatenate(fresh), records)
    assert sorted(order[:7]) == sorted(records.ids) == sorted(order[7:14])
    assert order[:7] != order[7:14]

    for start in (1, 4):  # step 4 starts mid-way through the second epoch
        resumed_images, resumed = _collect(make_dataset(records, start_step=start, **kwargs),
                                           take=9 - start)
        np.testing.assert_array_equal(np.stack(resumed), np.stack(fresh[start:]))
        # Crops and flips are seeded by stream position, so the pixels match too.
        np.testing.assert_array_equal(np.stack(resumed_images), np.stack(fresh_images[start:]))


def test_shards_are_disjoint_cover_and_interleave_to_the_unsharded_stream(tmp_path):
    records = load_ava(*_make_set(tmp_path, 7))
    shards = 3
    # Training: shard k sees global positions k, k + 3, ...; 5 batches of 1 per shard = 15.
    single = _ids_of(np.concatenate(_collect(make_dataset(
        records, batch_size=1, training=True, seed=2), take=15)[1]), records)
    per_shard = [
        _ids_of(np.concatenate(_collect(make_dataset(
            records, batch_size=1, training=True, seed=2, num_shards=shards, shard_index=k),
            take=5)[1]), records)
        for k in range(shards)]
    interleaved = [per_shard[p % shards][p // shards] for p in range(15)]
    assert interleaved == single
    epoch0 = [per_shard[p % shards][p // shards] for p in range(7)]
    assert sorted(epoch0) == sorted(records.ids)  # disjoint and covering within an epoch

    # Resuming a sharded run skips start_step steps of every shard.
    resumed = _ids_of(np.concatenate(_collect(make_dataset(
        records, batch_size=1, training=True, seed=2, num_shards=shards, shard_index=1,
        start_step=2), take=3)[1]), records)
    assert resumed == per_shard[1][2:5]

    # Eval: disjoint, covering, one pass.
    seen = []
    for k in range(shards):
        dists = _collect(make_dataset(records, batch_size=2, training=False,
                                      num_shards=shards, shard_index=k))[1]
        seen.append(_ids_of(np.concatenate(dists), records))
    assert sum(len(s) for s in seen) == 7
    assert sorted(sum(seen, [])) == sorted(records.ids)
    with pytest.raises(ValueError, match="shard_index"):
        make_dataset(records, batch_size=1, training=True, num_shards=2, shard_index=2)


def test_images_stay_with_their_labels(tmp_path):
    ava_txt, image_dir = _make_set(tmp_path, 6)
    for i in range(6):  # flat images whose brightness names the record
        Image.fromarray(np.full((20 + 4 * i, 30, 3), 40 * i + 10, np.uint8)).save(
            image_dir / f"{100 + i}.png")
    records = load_ava(ava_txt, image_dir, extensions=(".png",))
    for training in (False, True):
        images, dists = _collect(make_dataset(records, batch_size=3, training=training,
                                              seed=1), take=4)
        ids = _ids_of(np.concatenate(dists), records)
        brightness = np.concatenate(images).mean(axis=(1, 2, 3)) * 255.0
        np.testing.assert_allclose(brightness, [40 * (int(i) - 100) + 10 for i in ids],
                                   atol=0.6)


def test_training_stream_of_nothing_but_bad_files_raises(tmp_path):
    ava_txt, image_dir = _make_set(tmp_path, 3)
    for name in os.listdir(image_dir):
        (image_dir / name).write_bytes(b"not an image")
    ds = make_dataset(load_ava(ava_txt, image_dir), batch_size=2, training=True)
    with pytest.raises(Exception, match="could be decoded"):
        next(iter(ds))


_GIVE_UP_SCRIPT = """
import sys
import time
from datasets import ava
def slow_load(path, **kwargs):  # keeps decodes under way when the stream gives up
    time.sleep(0.5)
    return load(path, **kwargs)
load, ava.load_rgb8 = ava.load_rgb8, slow_load
ds = ava.make_dataset(ava.load_ava(sys.argv[1], sys.argv[2]), batch_size=2, training=True)
next(iter(ds))
"""


def test_a_process_exits_after_a_stream_of_bad_files_gave_up(tmp_path):
    # Issue 15: decodes still under way when the error ended the script hung its exit forever.
    ava_txt, image_dir = _make_set(tmp_path, 4)
    for name in os.listdir(image_dir):
        (image_dir / name).write_bytes(b"not an image")
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", CUDA_VISIBLE_DEVICES="")
    runs = [subprocess.Popen([sys.executable, "-c", _GIVE_UP_SCRIPT, str(ava_txt), str(image_dir)],
                             cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             text=True) for _ in range(3)]
    deadline, hung = time.monotonic() + 60, 0
    for run in runs:
        try:
            _, stderr = run.communicate(timeout=max(deadline - time.monotonic(), 1))
        except subprocess.TimeoutExpired:
            run.kill()
            run.communicate()
            hung += 1
            continue
        assert run.returncode == 1, stderr[-2000:]
        assert "could be decoded" in stderr and str(image_dir) in stderr, stderr[-2000:]
    assert hung == 0, f"{hung} of {len(runs)} runs did not exit within 60 s"


def test_a_fifo_among_the_images_is_skipped_by_name_without_being_opened(tmp_path):
    # Issue 15: a training listing must never open a FIFO (it blocks until someone writes).
    ava_txt, image_dir = _make_set(tmp_path, 3)
    fifo_path = image_dir / "101.jpg"
    os.remove(fifo_path)
    failures = DecodeFailures()
    with guarded_fifo(fifo_path) as fifo:
        ds = make_dataset(load_ava(ava_txt, image_dir), batch_size=1, training=False,
                          decode_failures=failures)
        assert len(list(ds)) == 2
    assert failures.examples == [(str(fifo_path), "not a regular file")]
    assert not fifo["opened"]
