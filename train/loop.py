"""The explicit `strategy.run` training loop that every system trains through (DESIGN.md 3-4).

Keras 3's `model.fit` fails under MultiWorkerMirroredStrategy (keras-team/keras#20585), so each
system supplies a per-replica `train_step(batch) -> {name: scalar}` and this loop does the rest:
distributed input, the step counter, checkpoints and resumption, SIGTERM/SIGINT, non-finite
loss detection, progress logging and TensorBoard scalars.

Every value a train step returns must be that replica's share of a global-batch mean (reduce
per-example losses with `tf.nn.compute_average_loss(..., global_batch_size=...)`); the loop
sums the shares over replicas, so figures do not depend on the number of replicas.
"""
import dataclasses
import glob
import math
import os
import re
import shutil
import signal
import tempfile
import threading
import time
import traceback

import keras
import tensorflow as tf
from absl import logging

from datasets.pipeline import free_dropped_iterators
from train import strategies
from train.config import ConfigError


class NonFiniteLossError(RuntimeError):
    """A train step returned NaN or infinity, or the weights about to be saved hold one; the
    last good checkpoint is left as it was."""


class SaveError(OSError):
    """A checkpoint, weights file, export or report could not be written (a full disk, a
    read-only directory); the message names the path and what is kept, and nothing partial is
    left under that path."""

    def __init__(self, what, path, error, kept):
        super().__init__(f"Could not write {what} {path}: {failure_reason(error)}. {kept}")


def failure_reason(error):
    """The operating system's reason in an OSError or a TensorFlow I/O error, in a few words
    ("No space left on device")."""
    if isinstance(error, tf.errors.OpError):
        text = re.sub(r"\{\{.*?\}\}\s*|\s*\[Op:\w+\]", "", error.message)
        return text.rsplit("; ", 1)[-1].strip()
    return error.strerror or str(error)


def mismatch_error(model_dir, path, error):
    """The ConfigError for a checkpoint or weights file `path` that does not fit the networks
    the flags build (a variable of another shape, or one it lacks), naming model_dir."""
    gist = re.split(r"(?<=\.)\s", str(error).strip().splitlines()[0], maxsplit=1)[0]
    return ConfigError(
        f"{path} does not fit the networks these flags build ({gist.rstrip(':')}): "
        f"--model_dir={model_dir} was trained with other architecture settings. Run with the "
        "flags it was trained with, or give another --model_dir.")


@dataclasses.dataclass
class LoopConfig:
    model_dir: str
    train_steps: int
    global_batch_size: int
    checkpoint_every: int = 1000
    log_every: int = 100
    max_checkpoints: int = 3


@dataclasses.dataclass
class LoopResult:
    step: int
    last_values: dict
    interrupted: bool
    checkpoint_path: str | None
    is_chief: bool = True


class TrainingLoop:
    """Runs `train_step` under `strategy` until `config.train_steps`, resuming from `model_dir`.

    `trackables` (models, optimizers, anything with state) are checkpointed with the step;
    build optimizers (`optimizer.build(variables)`) inside `strategy.scope()` beforehand, since
    a mirrored variable cannot be created inside the traced step.
    `make_dataset(input_context, start_step)` returns this input pipeline's tf.data.Dataset,
    batched per replica (`input_context.get_per_replica_batch_size(global_batch_size)`) and
    positioned after `start_step` global steps, so a resumed run sees the data it has not seen.
    `summary_fn(step)`, if given, runs on the chief at every progress line inside the
    TensorBoard writer's context, to write summaries beyond the scalars (e.g. sample images).
    """

    def __init__(self, strategy, config, train_step, trackables, make_dataset, summary_fn=None):
        self.strategy = strategy
        self._summary_fn = summary_fn
        self.config = config
        self._train_step = train_step
        self._make_dataset = make_dataset
        with strategy.scope():
            self.step = tf.Variable(0, dtype=tf.int64, trainable=False, name="global_step")
        self.checkpoint = tf.train.Checkpoint(step=self.step, **trackables)
        self.checkpoint_trackables = dict(trackables)
        # Checked before every save: a loss can look finite while the weights are not (a loss
        # that masks NaN, or a NaN in a part of the model the loss does not read).
        self._weights = [w for trackable in trackables.values()
                         if isinstance(trackable, keras.layers.Layer)
                         for w in trackable.weights if tf.as_dtype(w.dtype).is_floating]
        self.is_chief = strategies.is_chief(strategy)
        directory = os.path.join(config.model_dir, "checkpoints")
        if not self.is_chief:  # Every worker must save; only the chief's copy is kept.
            directory = tempfile.mkdtemp(prefix=f"worker{strategies.worker_id(strategy)}_ckpt_")
        self.manager = tf.train.CheckpointManager(
            self.checkpoint, directory, max_to_keep=config.max_checkpoints
        )
        self._stop_signal = None

    # -- checkpoints -------------------------------------------------------------------------
    def _constant_rates(self):
        """{optimizer: its constant learning rate as configured}; schedules are left out (they
        are not checkpointed: only the step they read is)."""
        rates = {}
        for trackable in self.checkpoint_trackables.values():
            optimizer = getattr(trackable, "inner_optimizer", trackable)  # loss scaling wraps
            if isinstance(optimizer, keras.optimizers.Optimizer):
                rate = optimizer.get_config()["learning_rate"]
                if isinstance(rate, (int, float)):
                    rates[optimizer] = float(rate)
        return rates

    def restore(self):
        """Restores the latest checkpoint in model_dir, if any; returns the step it holds.

        Learning rates come from the configuration, not the checkpoint: a constant rate that the
        checkpoint restored differently is set back to the configured one, and logged."""
        latest = tf.train.latest_checkpoint(os.path.join(self.config.model_dir, "checkpoints"))
        if latest:
            configured = self._constant_rates()
            try:
                self.checkpoint.restore(latest).assert_existing_objects_matched()
            except (AssertionError, ValueError) as error:
                raise mismatch_error(self.config.model_dir, latest, error) from error
            logging.info("Resumed from %s at step %d", latest, int(self.step.numpy()))
            for optimizer, rate in configured.items():
                restored = float(keras.ops.convert_to_numpy(optimizer.learning_rate))
                if restored != rate:
                    optimizer.learning_rate = rate
                    logging.info("Learning rate of %s: %g as configured (the checkpoint had %g).",
                                 optimizer.name, rate, restored)
        return int(self.step.numpy())

    def _check_weights(self, last_path):
        """NonFiniteLossError naming the first model weight with a NaN or infinity, if any."""
        for weight in self._weights:
            if not bool(tf.reduce_all(tf.math.is_finite(weight))):
                raise NonFiniteLossError(
                    f"Non-finite weights ({weight.path}) at step {int(self.step.numpy())}; "
                    f"stopped without saving them. The last good checkpoint is kept: "
                    f"{last_path or 'none was written yet'}.")

    def save(self):
        """Checkpoints the trackables, after checking that the model weights are finite.
        SaveError if the write fails: what it wrote is removed, the last good checkpoint kept."""
        last = self.manager.latest_checkpoint
        self._check_weights(last)
        try:
            path = self.manager.save(checkpoint_number=self.step)
        except (OSError, tf.errors.OpError) as error:
            prefix = os.path.join(self.manager.directory, f"ckpt-{int(self.step.numpy())}")
            self._remove_partial(prefix)
            raise SaveError("the checkpoint", prefix, error, (
                f"The last good checkpoint is kept: {last or 'none was written yet'}; free "
                "space (or fix the folder) and run the same command to resume.")) from error
        if self.is_chief:
            logging.info("Saved checkpoint %s", path)
        return path

    def _remove_partial(self, prefix):
        """Removes what a failed save of `prefix` left (its `_temp` folder, and the index or
        data files of a failed merge), unless the manager holds that checkpoint."""
        if prefix in self.manager.checkpoints:
            return
        for path in glob.glob(glob.escape(prefix) + "_temp") + glob.glob(
                glob.escape(prefix) + ".index") + glob.glob(glob.escape(prefix) + ".data-*"):
            try:
                if os.path.isdir(path):
                    shutil.rmtree(path)
                else:
                    os.remove(path)
            except OSError as error:
                logging.warning("Could not remove %s after the failed save: %s", path, error)

    # -- signals -----------------------------------------------------------------------------
    def _install_signal_handlers(self):
        if threading.current_thread() is not threading.main_thread():
            return {}

        def request_stop(signum, frame):
            del frame
            self._stop_signal = signum
            logging.warning("Got %s: checkpointing and stopping.", signal.Signals(signum).name)

        return {sig: signal.signal(sig, request_stop) for sig in (signal.SIGTERM, signal.SIGINT)}

    @staticmethod
    def _restore_signal_handlers(previous):
        for sig, handler in previous.items():
            signal.signal(sig, handler)

    # -- the loop ----------------------------------------------------------------------------
    def _distributed_step_fn(self):
        strategy = self.strategy

        @tf.function
        def distributed_step(iterator):
            values = strategy.run(self._train_step, args=(next(iterator),))
            return {
                name: strategy.reduce(tf.distribute.ReduceOp.SUM, value, axis=None)
                for name, value in values.items()
            }

        return distributed_step

    def run(self):
        config = self.config
        start_step = self.restore()
        last_path = self.manager.latest_checkpoint
        if start_step >= config.train_steps:
            logging.info("Already trained %d of %d steps.", start_step, config.train_steps)
            return LoopResult(start_step, {}, False, last_path, self.is_chief)

        dataset = self.strategy.distribute_datasets_from_function(
            lambda context: self._make_dataset(context, start_step)
        )
        iterator = iter(dataset)
        try:
            return self._train(iterator, start_step, last_path)
        except BaseException as error:
            # The traceback would keep the frames below, and in them the iterator decoding
            # ahead, alive for as long as the error is kept.
            traceback.clear_frames(error.__traceback__)
            raise
        finally:  # the stream decodes ahead; end it here, not on one of its own threads
            del iterator, dataset
            free_dropped_iterators()

    def _train(self, iterator, start_step, last_path):
        config = self.config
        distributed_step = self._distributed_step_fn()
        writer = (
            tf.summary.create_file_writer(os.path.join(config.model_dir, "train"))
            if self.is_chief
            else tf.summary.create_noop_writer()
        )
        previous_handlers = self._install_signal_handlers()
        sums, count, tick = {}, 0, time.perf_counter()
        values = {}
        step = start_step
        try:
            while step < config.train_steps and self._stop_signal is None:
                values = {k: float(v) for k, v in distributed_step(iterator).items()}
                step += 1
                bad = {k: v for k, v in values.items() if not math.isfinite(v)}
                if bad:
                    raise NonFiniteLossError(
                        f"Non-finite training values {bad} at step {step}; stopped. The last good "
                        f"checkpoint is kept: {last_path or 'none was written yet'}."
                    )
                self.step.assign(step)
                for k, v in values.items():
                    sums[k] = sums.get(k, 0.0) + v
                count += 1
                if step % config.log_every == 0 or step == config.train_steps:
                    elapsed = time.perf_counter() - tick
                    self._log(writer, step, {k: s / count for k, s in sums.items()}, count / elapsed)
                    sums, count, tick = {}, 0, time.perf_counter()
                if step % config.checkpoint_every == 0:
                    last_path = self.save()
            interrupted = self._stop_signal is not None
            if step > start_step and step % config.checkpoint_every:
                last_path = self.save()
        finally:
            self._restore_signal_handlers(previous_handlers)
            writer.flush()
        return LoopResult(step, values, interrupted, last_path, self.is_chief)

    def _log(self, writer, step, means, steps_per_sec):
        images_per_sec = steps_per_sec * self.config.global_batch_size
        text = " ".join(f"{k} {v:.5g}" for k, v in means.items())
        logging.info(
            "step %d/%d %s | %.2f steps/s %.1f images/s",
            step, self.config.train_steps, text, steps_per_sec, images_per_sec,
        )
        with writer.as_default(step=step):
            for k, v in means.items():
                tf.summary.scalar(k, v)
            tf.summary.scalar("steps_per_sec", steps_per_sec)
            tf.summary.scalar("images_per_sec", images_per_sec)
            if self._summary_fn is not None and self.is_chief:
                self._summary_fn(step)


def set_mixed_precision(enabled):
    """`--mixed_precision`: float16 (with loss scaling) on GPUs, bfloat16 elsewhere."""
    if not enabled:
        keras.mixed_precision.set_global_policy("float32")
        return "float32"
    policy = "mixed_float16" if tf.config.list_physical_devices("GPU") else "mixed_bfloat16"
    keras.mixed_precision.set_global_policy(policy)
    return policy
