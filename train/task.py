"""The Task protocol: what a system supplies to the runner (DESIGN.md section 3), in the spirit
of Model Garden's `official/core` Task.

A task holds the paper's logic: its config class, data, models, optimizers, the per-replica train
step, optional summaries, its evaluation and what it exports. `train.runner` does everything
else once: seeding, precision, strategy and scope, optimizer building and loss scaling, the
loop, checkpoints, resume, final weights, restoring, the mode dispatch and the export call.

The runner calls, in this order:
  training:  data (load_data), then build_models(training=True) and
             build_optimizers(models) inside the strategy's scope,
             make_train_step(models, optimizers), build_inputs(InputSpec) per input pipeline,
             make_summary_fn(models) on the chief;
  afterwards (and for --mode=eval/export): build_models(training=False), restored from the
             checkpoint or the final weights, then evaluate(models) and export(models).
"""
import abc
import dataclasses
import functools

import keras
import tensorflow as tf


@dataclasses.dataclass
class InputSpec:
    """What one input pipeline must produce: per-replica batches of `batch_size`, sharded
    `shard_index` of `num_shards`, starting after `start_batch` of this pipeline's batches (a
    resumed run sees the data it has not seen); undecodable files are counted in
    `decode_failures` (`datasets.pipeline.DecodeFailures`)."""
    batch_size: int
    start_batch: int
    num_shards: int
    shard_index: int
    decode_failures: object


@dataclasses.dataclass
class Export:
    """A model to export: `kind` ("nima", "enhancer", "enhancegan", "pienet") picks the signatures
    (`tools.export`); `metadata` goes to assets.extra/metadata.json. `Task.export` returns
    None for a run with nothing to export (a pre-training stage)."""
    kind: str
    model: keras.Model
    metadata: dict | None = None


class Task(abc.ABC):
    """Base class of a system's task; subclasses set the class attributes and the methods."""

    name = None  # "nima", "wespe", "can": the system, as in `python -m train.<name>`
    config_class = None  # a `train.config.RunConfig` subclass
    # Checkpoint key of each model whose weights are written at the end of training -> file
    # name in model_dir; these models are restored for evaluation and export.
    final_weights = {}
    # Config fields that fix the networks of `final_weights` (their variables and what they
    # compute), and those that fix only the rest of the training state (e.g. discriminators):
    # a checkpoint fits only the values it was trained with. The runner records them in
    # model_dir and checks them on every resume, evaluation and export (`architecture`).
    architecture_settings = ()
    training_architecture_settings = ()

    def __init__(self, config):
        self.config = config

    @abc.abstractmethod
    def load_data(self):
        """The system's data (file lists, splits); read once, on first use of `self.data`
        (the runner reads it before building the models; a demo set is built then)."""

    @functools.cached_property
    def data(self):
        return self.load_data()

    @abc.abstractmethod
    def build_models(self, training):
        """{checkpoint key: keras.Model}; `training` False builds them for restoring (no
        pre-trained backbone files, no frozen loss networks)."""

    @abc.abstractmethod
    def build_optimizers(self, models):
        """{checkpoint key: (optimizer, variables it updates)}; the runner adds loss scaling
        under mixed_float16 and builds each optimizer for its variables."""

    @abc.abstractmethod
    def make_train_step(self, models, optimizers):
        """The per-replica step `batch -> {name: scalar}`; each value is this replica's share of
        a global-batch mean (`self.average`), as `train.loop.TrainingLoop` expects."""

    @abc.abstractmethod
    def build_inputs(self, spec):
        """The training `tf.data.Dataset` of one input pipeline (see `InputSpec`)."""

    @classmethod
    def stage_configs(cls, config):
        """The configs `train.runner.run` runs, in order, for `config`: a system trained in
        stages (EnhanceGAN: critic, crop, colour) returns one per stage; default `[config]`."""
        return [config]

    def make_summary_fn(self, models):
        """Optional: `fn(step)` writing TensorBoard summaries beyond the scalars, or None."""
        return None

    def architecture(self, training):
        """{flag name: value} of what a checkpoint fixes: the architecture settings, and with
        `training` the training ones too."""
        names = self.architecture_settings
        if training:
            names += self.training_architecture_settings
        return {name: getattr(self.config, name) for name in names}

    def load_final_weights(self, key, model, path):
        """Loads a final weights file written by `model.save_weights`."""
        model.load_weights(path)

    @abc.abstractmethod
    def evaluate(self, models):
        """The evaluation report (`tools.report` layout), or None when there is nothing to
        evaluate."""

    @abc.abstractmethod
    def export(self, models, train_step=None):
        """The `Export` of the restored `models` (`train_step`: the step trained, if known)."""

    def headline(self, report):
        """Optional: one line that sums up the evaluation for the console."""
        return None

    # -- helpers for train steps ---------------------------------------------------------------
    def average(self, per_example):
        """This replica's share of the global-batch mean of per-example values."""
        return tf.nn.compute_average_loss(per_example, global_batch_size=self.config.batch_size)


def gradient_norm(optimizer, gradients):
    """Global norm of `gradients`, unscaled when `optimizer` scales the loss (mixed_float16)."""
    norm = tf.linalg.global_norm(gradients)
    if isinstance(optimizer, keras.optimizers.LossScaleOptimizer):
        norm = norm / tf.cast(optimizer.dynamic_scale, norm.dtype)
    return norm
