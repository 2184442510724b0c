"""NIMA on AVA as a task of the runner (Talebi & Milanfar, NIMA, sections 2.1.1 and 4.1).

The train step minimises the EMD with r = 2 (equation 2) with one momentum optimizer whose head
gradients are scaled by head / base learning rate (section 4.1: 3e-7 for the base, 3e-6 for the
head). Evaluation reports two-class accuracy, LCC, SRCC and EMD (r = 1) on the test split.
"""
import dataclasses
import math
import os

import keras
import numpy as np
import tensorflow as tf
from absl import logging

import nima
from datasets import ava, demo, pipeline
from nima.demo import DEMO_SETTINGS
from nima.emd import emd_loss
from nima.metrics import nima_metrics
from tools import report as reports
from train.config import MAX_IMAGE_SIDE, RunConfig, setting
from train.task import Export, Task

FINAL_WEIGHTS = "nima.weights.h5"
TEST_IDS_FILE = "test_ids.txt"


@dataclasses.dataclass
class NimaConfig(RunConfig):
    backbone: str = setting("mobilenet", "NIMA base network.", choices=nima.BACKBONES)
    backbone_weights: str | None = setting(None, "Local ImageNet weights for the backbone.")
    init_weights: str | None = setting(None, "Local whole-NIMA weights (*.weights.h5) to start "
                                       "from.")
    dataset: str = setting("ava", "AVA on disk, or the embedded demo set.",
                           choices=("ava", "demo"))
    ava_txt: str | None = setting(None, "Path of AVA.txt.")
    image_dir: str | None = setting(None, "Directory of the AVA images, <id>.jpg.")
    split_file: str | None = setting(None, "Test image ids, one per line (default: 80/20 split).")
    test_fraction: float = setting(0.2, "Test fraction of the seeded split.",
                                   above=0.0, maximum=0.9)
    skip_missing_images: bool = setting(False, "Drop AVA.txt ids that have no image file.")
    demo_dir: str | None = setting(None, "Where the demo set is built (default "
                                   "<model_dir>/demo_data).", directory=True)
    demo_num_images: int = setting(1200, "Images in the demo set.", minimum=10)
    demo_image_size: int = setting(256, "Side of the demo images.", minimum=32,
                                   maximum=MAX_IMAGE_SIDE)
    augmentation: str = setting("crop", "Resize 256 + random crop 224 + flip (public ports) or "
                                "rescale to 480x640 + flip (paper).", choices=("crop", "paper"))
    crop_size: int = setting(224, "Crop side of --augmentation=crop (resize: x 256/224).",
                             minimum=32, maximum=MAX_IMAGE_SIDE)
    dropout: float = setting(0.25, "Dropout before the 10-way head (keep 0.75).",
                             minimum=0.0, maximum=0.9)
    # Section 4.1: momentum optimiser, 3e-7 (base) / 3e-6 (head), decay every 10 epochs.
    base_learning_rate: float = setting(3e-7, "Backbone learning rate (paper: 3e-7).", minimum=0.0)
    head_learning_rate: float = setting(3e-6, "Head learning rate (paper: 3e-6).", above=0.0)
    momentum: float = setting(0.9, "Momentum of the SGD optimizer.", minimum=0.0, maximum=1.0)
    lr_decay_epochs: float = setting(10.0, "Epochs between exponential decays (paper: 10).",
                                     above=0.0, maximum=1e6)
    lr_decay_rate: float = setting(0.95, "Factor of each decay (not given by the paper).",
                                   above=0.0, maximum=1.0)
    eval_batch_size: int = setting(32, "Batch size of evaluation.", minimum=1)


def demo_config(model_dir, **overrides):
    """The demo preset's NimaConfig (`nima.demo.DEMO_SETTINGS`), exported into
    <model_dir>/export."""
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


class NimaTask(Task):
    name = "nima"
    config_class = NimaConfig
    final_weights = {"model": FINAL_WEIGHTS}
    architecture_settings = ("backbone",)

    def architecture(self, training):
        """Also, for training, whether --base_learning_rate=0 froze the backbone: the optimizer
        then holds momenta for the head alone."""
        settings = super().architecture(training)
        if training:
            settings["base_learning_rate"] = ("0 (backbone frozen)"
                                              if self.config.base_learning_rate == 0
                                              else "above 0 (backbone trained)")
        return settings

    def load_data(self):
        """(train records, test records) of AVA's split (`load_splits`)."""
        return load_splits(self.config)

    def build_models(self, training):
        config = self.config
        if not training:  # restoring: no pre-trained files are needed
            config = dataclasses.replace(config, backbone_weights=None, init_weights=None)
        return {"model": build_model(config)}

    def load_final_weights(self, key, model, path):
        nima.load_nima_weights(model, path)

    def build_optimizers(self, models):
        """One momentum optimizer at the base rate with exponential decay every
        `lr_decay_epochs`; the head's rate comes from scaling its gradients (train step). With
        --base_learning_rate=0 the backbone is frozen: the optimizer runs at the head's rate
        and updates the head alone."""
        config = self.config
        steps_per_epoch = math.ceil(len(self.data[0]) / config.batch_size)
        frozen_backbone = config.base_learning_rate == 0
        schedule = keras.optimizers.schedules.ExponentialDecay(
            config.head_learning_rate if frozen_backbone else config.base_learning_rate,
            decay_steps=max(1, int(round(config.lr_decay_epochs * steps_per_epoch))),
            decay_rate=config.lr_decay_rate, staircase=True)
        optimizer = keras.optimizers.SGD(learning_rate=schedule, momentum=config.momentum)
        variables = (nima.head_and_backbone_variables(models["model"])[1] if frozen_backbone
                     else models["model"].trainable_weights)
        return {"optimizer": (optimizer, variables)}

    def make_train_step(self, models, optimizers):
        """EMD (r = 2) on the predicted distribution; for momentum SGD, scaling the head's
        gradients by head/base is exactly a separate head learning rate."""
        model, optimizer = models["model"], optimizers["optimizer"]
        backbone_vars, head_vars = nima.head_and_backbone_variables(model)
        if self.config.base_learning_rate == 0:  # frozen backbone (build_optimizers)
            variables, multipliers = head_vars, [1.0] * len(head_vars)
        else:
            variables = backbone_vars + head_vars
            head_multiplier = self.config.head_learning_rate / self.config.base_learning_rate
            multipliers = [1.0] * len(backbone_vars) + [head_multiplier] * len(head_vars)

        def train_step(batch):
            images, target = batch
            with tf.GradientTape() as tape:
                predicted = tf.cast(model(images, training=True), tf.float32)
                loss = self.average(emd_loss(target, predicted, r=2))  # equation 2, r = 2
                scaled_loss = optimizer.scale_loss(loss)
            gradients = tape.gradient(scaled_loss, variables)
            gradients = [g * m if m != 1.0 else g for g, m in zip(gradients, multipliers)]
            optimizer.apply_gradients(zip(gradients, variables))
            return {"emd_loss": loss}

        return train_step

    def build_inputs(self, spec):
        config = self.config
        return ava.make_dataset(
            self.data[0], batch_size=spec.batch_size, training=True,
            augmentation=config.augmentation, crop_size=config.crop_size, seed=config.seed,
            start_step=spec.start_batch, num_shards=spec.num_shards,
            shard_index=spec.shard_index, decode_failures=spec.decode_failures)

    def evaluate(self, models):
        """Accuracy, LCC, SRCC and EMD (r = 1) on the test split (section 4.1, Table 1).
        Undecodable images are skipped and counted; a `pipeline.DataError` if none decodes."""
        model, config = models["model"], self.config
        failures = pipeline.DecodeFailures()
        dataset = ava.make_dataset(
            self.data[1], batch_size=config.eval_batch_size, training=False,
            augmentation=config.augmentation, crop_size=config.crop_size,
            decode_failures=failures)
        predict = tf.function(lambda images: model(images, training=False),
                              reduce_retracing=True)
        targets, predictions = [], []
        for images, target in dataset:
            predictions.append(predict(images).numpy())
            targets.append(target.numpy())
        if not predictions:
            raise pipeline.none_usable(len(self.data[1]), "images of the eval split",
                                       failures.examples)
        metrics = nima_metrics(np.concatenate(targets), np.concatenate(predictions))
        return reports.nima_report(metrics, f"NIMA({config.backbone})",
                                   undecodable_images=failures.count)

    def export(self, models, train_step=None):
        return Export("nima", models["model"])

    def headline(self, report):
        (row,) = report["rows"]
        srcc = row["metrics"]["srcc"]
        if srcc is None:
            return f"Test SRCC {report.get('correlation_note', 'undefined')}"
        return f"Test SRCC {srcc:.3f} on {report['num_images']} test images"
