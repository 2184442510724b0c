"""datasets.pipeline: the resumable, shardable index stream, DecodeFailures and DecodeWorker."""
import logging
import threading
import time

import numpy as np
import pytest
import tensorflow as tf

from datasets.pipeline import (DataError, DecodeFailures, DecodeWorker, check_stream_position,
                               first_element, free_dropped_iterators, index_stream, map_decoded)


def _take(ds, k):
    pairs = [(int(i), int(q)) for i, q in ds.take(k)]
    return [i for i, _ in pairs], [q for _, q in pairs]


def _permutation(n, seed, epoch):
    return tf.random.experimental.stateless_shuffle(
        tf.range(n, dtype=tf.int64), seed=tf.constant([seed, epoch], tf.int64)).numpy().tolist()


# ----------------------------------------------------------------------------- index stream


def test_epochs_are_the_seeded_permutations_in_order():
    n, seed = 7, 5
    indices, positions = _take(index_stream(n, seed, 0), 3 * n)
    assert positions == list(range(3 * n))
    for epoch in range(3):
        assert indices[epoch * n:(epoch + 1) * n] == _permutation(n, seed, epoch)
    assert indices[:n] != indices[n:2 * n]
    assert _take(index_stream(n, seed + 1, 0), n)[0] != indices[:n]


@pytest.mark.parametrize("start", [1, 6, 7, 16])
def test_a_stream_started_at_a_position_is_the_rest_of_the_full_one(start):
    full = _take(index_stream(7, 3, 0), 30)
    resumed = _take(index_stream(7, 3, start), 30 - start)
    assert resumed == (full[0][start:], full[1][start:])


@pytest.mark.parametrize("n", [1, 2, 7, 10])
@pytest.mark.parametrize("start", [0, 6, 9])
def test_shards_take_every_num_shards_th_position(n, start):
    shards, k = 3, 12
    full = _take(index_stream(n, 2, start), shards * k)
    per_shard = [_take(index_stream(n, 2, start, shards, s), k) for s in range(shards)]
    index_at = dict(zip(full[1], full[0]))
    for s, (indices, positions) in enumerate(per_shard):
        assert all(q % shards == s and q >= start for q in positions)
        assert indices == [index_at[q] for q in positions]
    merged = sorted(q for _, positions in per_shard for q in positions)
    assert merged[:len(full[1])] == full[1]


def test_groups_are_dealt_to_the_shards_round_robin():
    n, group, shards = 10, 4, 3
    full = _take(index_stream(n, 9, 0), 48)
    for s in range(shards):
        indices, positions = _take(index_stream(n, 9, s * group, shards, s, group=group), 16)
        expected = [q for q in full[1] if (q // group) % shards == s][:16]
        assert positions == expected
        assert indices == [full[0][q] for q in positions]


def test_check_stream_position():
    check_stream_position(0, 1, 0)
    check_stream_position(5, 4, 3)
    with pytest.raises(ValueError, match="start_step"):
        check_stream_position(-1, 1, 0)
    for shards, index in ((0, 0), (2, 2), (2, -1)):
        with pytest.raises(ValueError, match="shard_index"):
            check_stream_position(0, shards, index)


# ----------------------------------------------------------------------------- failures


def test_decode_failures_counts_keeps_distinct_examples_and_logs_the_first(caplog):
    failures = DecodeFailures(max_examples=2, log_first=3)
    with caplog.at_level(logging.WARNING):
        for path in ("a.jpg", "a.jpg", "b.jpg", "c.jpg", "d.jpg"):
            failures.record(path, f"bad {path}")
    assert failures.count == 5
    assert failures.examples == [("a.jpg", "bad a.jpg"), ("b.jpg", "bad b.jpg")]
    assert "b.jpg" in caplog.text and "c.jpg" not in caplog.text
    assert "count=5" in repr(failures)


def test_decode_failures_is_thread_safe():
    failures = DecodeFailures(log_first=0)

    def record():
        for i in range(500):
            failures.record(f"{i}.jpg", "bad")

    threads = [threading.Thread(target=record) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert failures.count == 2000 and len(failures.examples) == 10


class _Worker(DecodeWorker):
    """Decodes a path that is good unless it starts with "bad"."""

    def decode(self, path):
        if path.startswith("bad"):
            return self.fail(path, "unreadable")
        self.succeed()
        return path, True

    def skipped(self):
        return None, False

    def give_up_message(self, path, reason):
        return f"gave up after {self.failed} at {path}: {reason}"


_SKIPPED = (None, False, np.bool_(False))


def test_worker_gives_up_only_if_nothing_decoded_first():
    worker = _Worker(DecodeFailures(log_first=0), 3)
    assert worker("bad1") == _SKIPPED and worker("bad2") == _SKIPPED
    with pytest.raises(DataError, match="gave up after 3 at bad3: unreadable"):
        worker("bad3")
    worker = _Worker(DecodeFailures(log_first=0), 3)
    assert worker("good") == ("good", True, np.bool_(False))
    assert [worker(f"bad{i}") for i in range(5)] == [_SKIPPED] * 5
    assert worker.failures.count == 5
    never = _Worker(DecodeFailures(log_first=0), None)
    assert [never(f"bad{i}") for i in range(5)] == [_SKIPPED] * 5


def test_worker_in_a_row_counts_from_the_last_success():
    worker = _Worker(DecodeFailures(log_first=0), 3, in_a_row=True)
    for path in ("bad", "bad", "good", "bad", "bad", "good"):
        worker(path)
    assert worker.failed == 0
    worker("bad")
    worker("bad")
    with pytest.raises(DataError, match="gave up after 3"):
        worker("bad")


def test_every_worker_adds_the_stop_flag_and_tracks_its_calls():
    worker = _Worker(DecodeFailures(log_first=0), None)
    assert worker("good") == ("good", True, np.bool_(False))
    assert worker("bad") == _SKIPPED
    assert worker.in_flight == 0 and worker.last_return > 0


def test_map_decoded_ends_the_stream_at_stop_and_drops_the_flag():
    ds = map_decoded(tf.data.Dataset.range(6), lambda i: (i * 10, i >= 3))
    assert [int(x) for (x,) in ds] == [0, 10, 20]



class _Counter(DecodeWorker):
    """Counts its calls; every element decodes."""

    def __init__(self):
        super().__init__(DecodeFailures(log_first=0), None)
        self.calls = 0

    def decode(self, index):
        self.calls += 1
        return np.zeros((8, 8, 3), np.uint8), np.bool_(True)

    def skipped(self):
        return np.zeros((1, 1, 3), np.uint8), np.bool_(False)

    def give_up_message(self, path, reason):
        return reason


def test_first_element_stops_the_endless_stream_before_it_returns():
    """An endless stream decodes ahead after its last `next`; `first_element` frees its
    iterator on this thread (`free_dropped_iterators`), so nothing decodes after it returns."""
    worker = _Counter()

    def decode(index, position):
        return worker.numpy_function([index], [tf.uint8, tf.bool], "count")

    stream = map_decoded(index_stream(5, 0, 0), decode).prefetch(tf.data.AUTOTUNE)
    image, ok = first_element(stream)
    assert image.shape == (8, 8, 3) and bool(ok)
    calls = worker.calls
    time.sleep(0.3)
    assert worker.calls == calls and worker.in_flight == 0
    free_dropped_iterators()  # nothing else to free: no error
