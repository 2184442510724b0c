"""Training, evaluation and export of NIMA on AVA (paper sections 2.1.1 and 4.1).

`python -m train.nima` is a thin flag parser around `run(NimaConfig(...))`; tests and
`nima.demo_model()` call the functions here directly.
"""
import dataclasses
import json
import math
import os

import keras
import numpy as np
import tensorflow as tf
from absl import logging

import nima
from datasets import ava, demo
from losses.emd import emd_loss
from nima.metrics import nima_metrics
from train import loop, strategies
from train.config import RunConfig

FINAL_WEIGHTS = "nima.weights.h5"
TEST_IDS_FILE = "test_ids.txt"


@dataclasses.dataclass
class NimaConfig(RunConfig):
    backbone: str = "mobilenet"
    backbone_weights: str | None = None  # Keras/converted ImageNet weights (local file)
    init_weights: str | None = None  # whole-NIMA weights to fine-tune from
    dataset: str = "ava"  # "ava" or "demo"
    ava_txt: str | None = None
    image_dir: str | None = None
    split_file: str | None = None  # test ids, one per line; default: seeded 80/20 split
    test_fraction: float = 0.2
    skip_missing_images: bool = False
    demo_dir: str | None = None  # where the demo set is built (default <model_dir>/demo_data)
    demo_num_images: int = 1200
    demo_image_size: int = 256
    augmentation: str = "crop"  # resize 256 + random crop 224, or "paper" (480x640)
    crop_size: int = 224
    dropout: float = 0.25
    # Paper section 4.1: momentum optimiser, 3e-7 (base) / 3e-6 (head), decay every 10 epochs.
    base_learning_rate: float = 3e-7
    head_learning_rate: float = 3e-6
    momentum: float = 0.9
    lr_decay_epochs: float = 10.0
    lr_decay_rate: float = 0.95
    eval_batch_size: int = 32


# The demo preset (configs/nima_demo.flags holds the same values; a test keeps them equal):
# a MobileNet NIMA trained from scratch on the embedded demo set in a few CPU minutes. Small
# images and large learning rates are for the demo only; the AVA presets use the paper's.
DEMO_SETTINGS = dict(
    backbone="mobilenet",
    dataset="demo",
    demo_num_images=1200,
    demo_image_size=128,
    augmentation="crop",
    crop_size=112,
    batch_size=32,
    base_learning_rate=0.05,
    head_learning_rate=0.1,
    lr_decay_epochs=10,
    train_steps=500,
    checkpoint_every=100,
    log_every=50,
)


def demo_config(model_dir, **overrides):
    """The demo preset's NimaConfig, exported into <model_dir>/export."""
    settings = dict(DEMO_SETTINGS, export_dir=os.path.join(model_dir, "export"))
    settings.update(overrides)
    return NimaConfig(model_dir=model_dir, **settings)


def load_splits(config):
    """AVA records split into (train, test); the test ids are recorded in model_dir so that a
    resumed run, `--mode=eval` and `--mode=export` use the split the model was trained on."""
    if config.dataset == "demo":
        demo_dir = config.demo_dir or os.path.join(config.model_dir, "demo_data")
        ava_txt, image_dir = demo.build_demo_ava(
            demo_dir, num_images=config.demo_num_images, image_size=config.demo_image_size,
            seed=config.seed,
        )
    elif config.dataset == "ava":
        if not config.ava_txt or not config.image_dir:
            raise ValueError("--dataset=ava needs --ava_txt and --image_dir.")
        ava_txt, image_dir = config.ava_txt, config.image_dir
    else:
        raise ValueError(f"Unknown --dataset={config.dataset!r}; choose ava or demo.")
    records = ava.load_ava(ava_txt, image_dir, skip_missing=config.skip_missing_images)
    recorded = os.path.join(config.model_dir, TEST_IDS_FILE)
    split_file = config.split_file or (recorded if os.path.exists(recorded) else None)
    train_records, test_records = ava.split_ava(
        records, test_fraction=config.test_fraction, seed=config.seed, split_file=split_file
    )
    if not os.path.exists(recorded):
        os.makedirs(config.model_dir, exist_ok=True)
        ava.write_split_file(recorded, test_records)
    logging.info("AVA: %d train, %d test images", len(train_records), len(test_records))
    return train_records, test_records


def build_model(config):
    backbone = nima.build_backbone(config.backbone, weights=config.backbone_weights)
    return nima.build_nima(backbone, weights=config.init_weights, dropout=config.dropout)


def make_optimizer(config, steps_per_epoch):
    """One momentum optimizer at the base rate; the head's gradients are scaled by
    head/base, which for momentum SGD is exactly a separate head learning rate."""
    schedule = keras.optimizers.schedules.ExponentialDecay(
        config.base_learning_rate,
        decay_steps=max(1, int(round(config.lr_decay_epochs * steps_per_epoch))),
        decay_rate=config.lr_decay_rate,
        staircase=True,
    )
    optimizer = keras.optimizers.SGD(learning_rate=schedule, momentum=config.momentum)
    if keras.mixed_precision.global_policy().name == "mixed_float16":
        optimizer = keras.optimizers.LossScaleOptimizer(optimizer)
    return optimizer


def make_train_step(model, optimizer, global_batch_size, head_multiplier):
    backbone_vars, head_vars = nima.head_and_backbone_variables(model)
    variables = backbone_vars + head_vars
    multipliers = [1.0] * len(backbone_vars) + [head_multiplier] * len(head_vars)

    def train_step(batch):
        images, target = batch
        with tf.GradientTape() as tape:
            predicted = tf.cast(model(images, training=True), tf.float32)
            per_example = emd_loss(target, predicted, r=2)  # equation 2, r = 2 for training
            loss = tf.nn.compute_average_loss(per_example, global_batch_size=global_batch_size)
            scaled_loss = optimizer.scale_loss(loss)
        gradients = tape.gradient(scaled_loss, variables)
        gradients = [g * m if m != 1.0 else g for g, m in zip(gradients, multipliers)]
        optimizer.apply_gradients(zip(gradients, variables))
        return {"emd_loss": loss}

    return train_step


def train(config):
    """Trains (or resumes) under config.strategy; saves the final weights to model_dir."""
    keras.utils.set_random_seed(config.seed)
    policy = loop.set_mixed_precision(config.mixed_precision)
    logging.info("Precision policy: %s", policy)
    strategy = strategies.make_strategy(config.strategy, config.num_cpu_devices)
    train_records, _ = load_splits(config)
    steps_per_epoch = math.ceil(len(train_records) / config.batch_size)
    failures = ava.DecodeFailures()
    with strategy.scope():
        model = build_model(config)
        optimizer = make_optimizer(config, steps_per_epoch)
        # Slot variables must exist before the distributed step is traced.
        optimizer.build(model.trainable_weights)
    head_multiplier = config.head_learning_rate / config.base_learning_rate
    train_step = make_train_step(model, optimizer, config.batch_size, head_multiplier)

    def make_dataset(context, start_step):
        # Each input pipeline feeds num_replicas / num_pipelines per-replica batches a step.
        batches_per_step = context.num_replicas_in_sync // context.num_input_pipelines
        return ava.make_dataset(
            train_records,
            batch_size=context.get_per_replica_batch_size(config.batch_size),
            training=True,
            augmentation=config.augmentation,
            crop_size=config.crop_size,
            seed=config.seed,
            start_step=start_step * batches_per_step,
            num_shards=context.num_input_pipelines,
            shard_index=context.input_pipeline_id,
            decode_failures=failures,
        )

    loop_config = loop.LoopConfig(
        model_dir=config.model_dir,
        train_steps=config.train_steps,
        global_batch_size=config.batch_size,
        checkpoint_every=config.checkpoint_every,
        log_every=config.log_every,
    )
    training = loop.TrainingLoop(
        strategy, loop_config, train_step, {"model": model, "optimizer": optimizer}, make_dataset
    )
    result = training.run()
    if failures.count:
        logging.warning(
            "%d images could not be decoded and were skipped, e.g. %s",
            failures.count, failures.examples[:5],
        )
    if not result.interrupted and training.is_chief:
        path = os.path.join(config.model_dir, FINAL_WEIGHTS)
        model.save_weights(path)
        logging.info("Wrote %s", path)
    return model, result


def restore_model(config):
    """The model of model_dir's latest checkpoint (the newest state, also after an interrupted
    resumed run), else of its final weights file."""
    model = build_model(dataclasses.replace(config, backbone_weights=None, init_weights=None))
    return loop.restore_trained(model, config.model_dir, "model", FINAL_WEIGHTS, "NIMA",
                                load_final=nima.load_nima_weights)


def evaluate(config, model=None):
    """Accuracy, LCC, SRCC and EMD (r = 1) on the test split; written to model_dir/eval.json as
    a `tools.report` report (`nima_report`); returns `nima_metrics`' flat dict."""
    from tools import report

    _, test_records = load_splits(config)
    model = model or restore_model(config)
    failures = ava.DecodeFailures()
    dataset = ava.make_dataset(
        test_records, batch_size=config.eval_batch_size, training=False,
        augmentation=config.augmentation, crop_size=config.crop_size, decode_failures=failures,
    )
    predict = tf.function(lambda images: model(images, training=False), reduce_retracing=True)
    targets, predictions = [], []
    for images, target in dataset:
        predictions.append(predict(images).numpy())
        targets.append(target.numpy())
    metrics = nima_metrics(np.concatenate(targets), np.concatenate(predictions))
    metrics["undecodable_images"] = failures.count
    logging.info("Test split: %s", json.dumps(metrics))
    results = report.write_report(os.path.join(config.model_dir, "eval.json"),
                                  report.nima_report(metrics, f"NIMA({config.backbone})"))
    logging.info("NIMA evaluation:\n%s", report.format_table(results))
    return metrics


def export(config, model=None):
    from tools import export as export_tools

    if not config.export_dir:
        raise ValueError("--export_dir is required to export.")
    model = model or restore_model(config)
    path = export_tools.export_nima(model, config.export_dir, version=config.export_version)
    logging.info("Exported SavedModel to %s", path)
    return path


def run(config):
    """`--mode=train` trains, then evaluates and (with --export_dir) exports on the chief."""
    if config.mode == "train":
        _, result = train(config)
        if result.interrupted or not result.is_chief:
            return {"step": result.step, "interrupted": result.interrupted}
        # Evaluate and export a plain float32 copy of the final weights, outside the strategy.
        loop.set_mixed_precision(False)
        outcome = {"step": result.step, **evaluate(config)}
        if config.export_dir:
            outcome["export_path"] = export(config)
        return outcome
    if config.mode == "eval":
        return evaluate(config)
    if config.mode == "export":
        return {"export_path": export(config)}
    raise ValueError(f"Unknown --mode={config.mode!r}; choose train, eval or export.")
