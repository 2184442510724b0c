"""What every training stream shares: the index stream, decode workers and their failure count.

- `index_stream`: the endless, seeded, shardable sequence of (example index, position) that the
  AVA (`datasets.ava`), paired (`datasets.paired`) and patch (`datasets.unpaired`) streams
  decode; resuming at a position materialises nothing before it.
- `DecodeWorker`: the Python side of a stream's `tf.numpy_function` decode step. It never raises
  for one bad file (the file is recorded in a `DecodeFailures` and skipped), gives up with an
  error when nothing decodes, and answers "stop" once the interpreter is exiting.
- `map_decoded`: the parallel decode map of every stream, ended on that "stop", so that a
  process exits with a live iterator, or after a stream gave up with an error.
- `first_element`, `free_dropped_iterators`: end an endless stream's iterator on the calling
  thread (below).
- `check_stream_position`, `stream_options`: the argument check and tf.data options of every
  training stream.
- `DataError`, `none_usable`: a data set that cannot be used as given (no usable line, no
  decodable image), told in one line naming the files.
"""
import abc
import atexit
import gc
import os
import threading
import time
import weakref

import numpy as np
import tensorflow as tf
from absl import logging

__all__ = [
    "GIVE_UP_AFTER",
    "DataError",
    "DecodeFailures",
    "DecodeWorker",
    "check_stream_position",
    "first_element",
    "free_dropped_iterators",
    "index_stream",
    "map_decoded",
    "none_usable",
    "stream_options",
]

# A stream whose first min(n, this many) examples all fail to decode raises.
GIVE_UP_AFTER = 1000
_SHOWN = 3  # failures a DataError names


class DataError(ValueError):
    """A data set that cannot be used as given: a list file without one usable line, a split
    none of whose images decodes. The message names the file or the folder and some files; the
    training command lines print it in one line and exit 1."""


def none_usable(total, what, failures, verb="decoded"):
    """The DataError when none of the `total` `what` ("images of the eval split") could be
    `verb`: it names their folders and the first of `failures`, (path, reason) pairs."""
    failures = list(failures)
    folders = sorted({os.path.dirname(os.path.abspath(path)) for path, _ in failures})
    folders = folders[:_SHOWN] + (["..."] if len(folders) > _SHOWN else [])
    shown = "; ".join(f"{os.path.basename(path)}: {reason}" for path, reason in failures[:_SHOWN])
    return DataError(f"none of the {total} {what} could be {verb} (in {', '.join(folders)}; "
                     f"e.g. {shown})")


def free_dropped_iterators():
    """Frees every iterator the program has dropped, now, on the calling thread.

    An iterator of an endless stream keeps decoding ahead (parallel map, prefetch) after its
    last `next`. One that something keeps in a reference cycle (a kept traceback, say) is freed
    by Python's cyclic garbage collector on whichever thread allocates next, possibly one of
    its own decode threads inside a `numpy_function`. That is a suspect, not a proven cause, of
    a segfault seen in CI (README, Reliability); calling this on the main thread as soon as an
    iterator is dropped rules it out (the training loop does at its end).
    """
    gc.collect()


def first_element(dataset):
    """The first element of `dataset`, its iterator freed on this thread before returning
    (`free_dropped_iterators`): for a fixed preview batch of an endless stream."""
    iterator = iter(dataset)
    element = next(iterator)
    del iterator
    free_dropped_iterators()
    return element


def map_decoded(ds, decode):
    """ds.map(decode) in parallel (AUTOTUNE, order kept), ended at the first element whose last
    output, a worker's `stop` (`DecodeWorker.numpy_function`), is True; without that output.

    Every stream decodes through this, so that none can hang the interpreter's exit.
    """
    ds = ds.map(decode, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    ds = ds.take_while(lambda *element: tf.logical_not(element[-1]))
    return ds.map(lambda *element: element[:-1])


def check_stream_position(start_step, num_shards, shard_index):
    """ValueError unless start_step >= 0 and 0 <= shard_index < num_shards: the resume and shard
    arguments every training stream takes."""
    if start_step < 0:
        raise ValueError(f"start_step must be >= 0, got {start_step}")
    if num_shards < 1 or not 0 <= shard_index < num_shards:
        raise ValueError(f"need num_shards >= 1 and 0 <= shard_index < num_shards, got "
                         f"num_shards={num_shards}, shard_index={shard_index}")


def stream_options(num_shards):
    """tf.data options of every training stream: deterministic order, and no auto-sharding when
    the stream shards itself (num_shards > 1)."""
    options = tf.data.Options()
    options.deterministic = True
    if num_shards > 1:
        options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.OFF
    return options


def index_stream(n, seed, start, num_shards=1, shard_index=0, group=1):
    """Endless (example index, position q) pairs, int64, for one shard, from position `start`.

    Position q = e * n + j is element j of epoch e's permutation
    stateless_shuffle(range(n), seed=(seed, e)). This shard keeps the q >= start with
    (q // group) % num_shards == shard_index: with group 1 the shards take every num_shards-th
    position, with group G they take whole groups of G positions round-robin. Only the epochs
    from the one holding `start` on are materialised.
    """
    start = int(start)
    n_t = tf.constant(n, tf.int64)
    seed_t = tf.constant(seed, tf.int64)
    group_t = tf.constant(group, tf.int64)
    shards = tf.constant(num_shards, tf.int64)
    shard = tf.constant(shard_index, tf.int64)
    start_t = tf.constant(start, tf.int64)

    def epoch_elements(epoch):
        permutation = tf.random.experimental.stateless_shuffle(
            tf.range(n_t, dtype=tf.int64), seed=tf.stack([seed_t, epoch]))
        q = epoch * n_t + tf.range(n_t, dtype=tf.int64)
        keep = tf.logical_and(q >= start_t,
                              tf.equal(tf.math.floormod(q // group_t, shards), shard))
        return tf.data.Dataset.from_tensor_slices(
            (tf.boolean_mask(permutation, keep), tf.boolean_mask(q, keep)))

    return tf.data.Dataset.counter(start=start // n, dtype=tf.int64).flat_map(epoch_elements)


class DecodeFailures:
    """Thread-safe counter of images a pipeline could not decode and skipped.

    Pass one to a stream (`decode_failures=...`) and read it while or after iterating: `count`
    is the number of failed decode attempts (a bad file fails again every epoch), `examples` the
    first `max_examples` distinct (path, reason) pairs. The first `log_first` failures are also
    logged as warnings naming the file. `gave_up` is the message of the `DataError` a stream
    raised when it gave up (nothing decodes), else None: inside tf.data that error reaches the
    caller wrapped in a TensorFlow error, and the runner tells it in one line from here.
    """

    def __init__(self, max_examples=10, log_first=5):
        self.gave_up = None
        self._lock = threading.Lock()
        self._count = 0
        self._examples = []
        self._example_paths = set()
        self.max_examples = int(max_examples)
        self.log_first = int(log_first)

    def record(self, path, reason):
        with self._lock:
            self._count += 1
            count = self._count
            if len(self._examples) < self.max_examples and path not in self._example_paths:
                self._example_paths.add(path)
                self._examples.append((path, reason))
        if count <= self.log_first:
            logging.warning("skipping an image that cannot be decoded (%d so far): %s: %s",
                            count, path, reason)

    @property
    def count(self):
        with self._lock:
            return self._count

    @property
    def examples(self):
        with self._lock:
            return list(self._examples)

    def __repr__(self):
        return f"DecodeFailures(count={self.count}, examples={self.examples!r})"


# Interpreter exit with a live iterator: once Python starts finalising, a tf.data thread that calls
# into Python (numpy_function) never comes back, and the iterator's destructor then waits for it
# forever. So at exit (atexit runs before finalisation) every worker answers "stop" at once, its
# stream ends after the calls already under way, and we wait (at most _EXIT_WAIT_S) until no such
# worker has been busy for _EXIT_QUIET_S.
_EXITING = threading.Event()
_WORKERS = weakref.WeakSet()
_EXIT_QUIET_S = 0.2
_EXIT_WAIT_S = 10.0


def _drain_at_exit():
    _EXITING.set()
    deadline = time.monotonic() + _EXIT_WAIT_S
    while time.monotonic() < deadline:
        workers = list(_WORKERS)
        if not any(w.in_flight or time.monotonic() - w.last_return < _EXIT_QUIET_S
                   for w in workers):
            return
        time.sleep(0.02)


atexit.register(_drain_at_exit)


class DecodeWorker(abc.ABC):
    """The Python side of a decode step (`tf.numpy_function`); never raises for one bad file.

    Subclasses define `decode(*args)` (the outputs of one element, a tuple; it calls `succeed()`
    for a usable element and returns `fail(...)` for a bad one), `skipped()` (the outputs of a
    skipped element) and `give_up_message(path, reason)`.

    Giving up: with `in_a_row` False, once `give_up_after` failures have happened and nothing
    has succeeded yet; with `in_a_row` True, once `give_up_after` failures happen in a row;
    never if `give_up_after` is None. Then `fail` raises DataError(give_up_message(...)) and
    notes the message in `failures.gave_up`.

    Calls return the outputs plus a bool `stop`, True (with `skipped()`) once the interpreter
    is exiting; `map_decoded` ends the stream on it. Call it through `numpy_function`.
    """

    def __init__(self, failures, give_up_after, *, in_a_row=False):
        self.failures = failures
        self.give_up_after = give_up_after
        self.in_a_row = in_a_row
        self._lock = threading.Lock()
        self._ok = 0
        self._failed = 0  # failures so far, or in a row when in_a_row
        self.in_flight = 0
        self.last_return = 0.0
        _WORKERS.add(self)

    def __call__(self, *args):
        if _EXITING.is_set():
            return (*self.skipped(), np.bool_(True))
        with self._lock:
            self.in_flight += 1
        try:
            outputs = self.decode(*args)
        finally:
            with self._lock:
                self.in_flight -= 1
                self.last_return = time.monotonic()
        return (*outputs, np.bool_(False))

    def numpy_function(self, inputs, types, name):
        """tf.numpy_function of this worker: its outputs (of `types`), then the scalar `stop`."""
        *outputs, stop = tf.numpy_function(self, list(inputs), list(types) + [tf.bool],
                                           name=name)
        stop.set_shape([])
        return (*outputs, stop)

    @property
    def failed(self):
        """Failures so far (in a row, when in_a_row)."""
        with self._lock:
            return self._failed

    def succeed(self):
        with self._lock:
            if self.in_a_row:
                self._failed = 0
            else:
                self._ok += 1

    def fail(self, path, reason, cause=None):
        """Records `path` in `failures` and returns `skipped()`, or raises once it is time to
        give up (chained to `cause` when given)."""
        self.failures.record(path, reason)
        with self._lock:
            self._failed += 1
            dead = (self.give_up_after is not None and self._failed >= self.give_up_after
                    and (self.in_a_row or self._ok == 0))
        if dead:  # An endless stream of nothing but failures would hang the trainer.
            error = DataError(self.give_up_message(path, reason))
            self.failures.gave_up = str(error)
            if cause is not None:
                raise error from cause
            raise error
        return self.skipped()

    @abc.abstractmethod
    def decode(self, *args):
        """The subclass's decoding of one example."""

    @abc.abstractmethod
    def skipped(self):
        """What the stream yields in place of an example that could not be decoded."""

    @abc.abstractmethod
    def give_up_message(self, path, reason):
        """The error message when the stream gives up on its failures."""
