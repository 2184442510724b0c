"""CAN with the NIMA perceptual loss as a task of the runner (Talebi & Milanfar, "Learned
Perceptual Image Enhancement", sections 2-4).

One training step (equation 1), per replica, on a batch of (input x, reference x_r) pairs:

    l(W) = f(x_r, c_W(x)) + gamma * (10 - NIMA(c_W(x)))

with f the L2 (default), L1 or Huber fidelity term (`losses.fidelity_loss`), NIMA frozen and in
inference mode (`losses.nima_loss`), and Adam on the CAN weights only. Section 4.2: Adam 1e-4,
batch 1, gamma 1e-4, training pairs rescaled to 480x640, 5 x 10^6 steps; gamma = 0 is the
baseline CAN(L2) of Chen et al.

Evaluation runs the CAN on the test pairs at full size and reports PSNR and SSIM against the
references and the NIMA score distribution of input, reference and CAN output
(`tools.evaluate_can`, Figure 6), plus any exported models given to compare with (for example
CAN(L2) next to CAN(L2+NIMA)).
"""
import dataclasses
import os

import keras
import numpy as np
import tensorflow as tf
from absl import logging

import nima
from datasets import can_demo, paired
from datasets.pipeline import first_element
from enhancers import can
from losses import FIDELITY_LOSSES, HUBER_DELTA, fidelity_loss, nima_loss
from tools import evaluate_can
from tools.enhance import load_saved_model_enhancer
from train.config import MAX_IMAGE_SIDE, RunConfig, setting
from train.task import Export, Task, gradient_norm

FINAL_WEIGHTS = "can.weights.h5"
DATASETS = ("fivek", "folders", "demo")


@dataclasses.dataclass
class CanConfig(RunConfig):
    # Section 4.2: batch 1, 5 x 10^6 steps.
    train_steps: int = setting(5_000_000, "Total training steps (a resumed run counts on; "
                               "paper: 5 x 10^6).", minimum=1)
    batch_size: int = setting(1, "Global batch size, split over replicas (paper: 1).",
                              minimum=1)
    dataset: str = setting("fivek", "FiveK with expert folders, an input folder and an "
                           "operator's reference folder, or the embedded demo set.",
                           choices=DATASETS)
    fivek_dir: str | None = setting(None, "FiveK root: input/ and expert<X>/ folders.")
    experts: tuple[str, ...] = setting(("C",), "FiveK experts (A..E) whose retouches are "
                                       "references; each gives one pair per input.")
    input_dir: str | None = setting(None, "--dataset=folders: the input photos.")
    reference_dir: str | None = setting(None, "--dataset=folders: the operator's outputs, "
                                        "matched to the inputs by file name.")
    train_list: str | None = setting(None, "Training photos (FiveK ids or stems, one a line); "
                                     "default: the paper's 2,500/2,500 split.")
    test_list: str | None = setting(None, "Test photos, as --train_list.")
    demo_dir: str | None = setting(None, "Where the demo set is built (default "
                                   "<model_dir>/demo_data).", directory=True)
    demo_num_train: int = setting(can_demo.DEFAULT_NUM_TRAIN, "Training pairs of the demo set.",
                                  minimum=1)
    train_height: int = setting(480, "Height of the rescaled training pairs (paper: 480; "
                                "portrait photos swap height and width).", minimum=8,
                                maximum=MAX_IMAGE_SIDE)
    train_width: int = setting(640, "Width of the rescaled training pairs (paper: 640).", minimum=8,
                               maximum=MAX_IMAGE_SIDE)
    # The CAN (section 3): 10 layers, 32 maps, dilations 2^k, symmetric padding.
    can_depth: int = setting(can.DEPTH, "CAN layers (paper: 10).", minimum=2)
    can_width: int = setting(can.WIDTH, "CAN feature maps (paper: 32; Chen et al.: 24).", minimum=3)
    can_dilations: tuple[int, ...] | None = setting(
        None, "Dilations of the 3x3 layers (default 1,2,...,2^(depth-2); Chen et al.: "
        "1,2,4,8,16,32,64,1).")
    can_padding: str = setting("symmetric", "Padding of the dilated layers (paper: symmetric; "
                               "Chen et al.: zero).", choices=can.PADDINGS)
    can_adaptive_batch_norm: bool = setting(False, "Chen et al.'s w0 x + w1 BN(x).")
    can_identity_output: bool = setting(False, "Start the 1x1 output layer at the identity, so "
                                        "the CAN starts as the identity (not the papers': "
                                        "Glorot; the demo's).")
    # Equation 1 and section 4.2.
    fidelity: str = setting("l2", "Fidelity term f of equation 1.", choices=FIDELITY_LOSSES)
    huber_delta: float = setting(HUBER_DELTA, "Delta of --fidelity=huber (pixel values in [0, 1]).",
                                 above=0.0)
    nima_weight: float = setting(1e-4, "gamma of equation 1 (paper: 1e-4; 0: CAN(L2)).",
                                 minimum=0.0)
    nima_weights: str | None = setting(None, "NIMA weights file for --backbone (the loss "
                                       "network and the evaluation's scores), or 'demo' for "
                                       "nima.demo_model().")
    backbone: str = setting("inception_v2", "Backbone of --nima_weights (paper: inception_v2).",
                            choices=nima.BACKBONES)
    learning_rate: float = setting(1e-4, "Adam learning rate (paper: 1e-4).", minimum=0.0)
    learning_rate_decay: str = setting(
        "none", "'cosine': the rate falls to 0 over --train_steps along a half cosine (not in "
        "the paper, whose rate is constant: for short demo runs, whose last step should not be "
        "a noisy one).", choices=("none", "cosine"))
    eval_max_images: int | None = setting(None, "Evaluate at most this many test pairs.", minimum=0)
    eval_save_images: int = setting(4, "Test photos written side by side to <model_dir>/eval.",
                                    minimum=0)
    compare_models: tuple[str, ...] = setting(
        (), "NAME=SAVED_MODEL_DIR: an exported enhancer evaluated alongside (e.g. "
        "'CAN(L2)=runs/can_l2/export'); repeatable.", multi=True)

    def model_name(self):
        """The row name of this model in the evaluation, e.g. CAN(L2+NIMA)."""
        fidelity = {"l2": "L2", "l1": "L1", "huber": "Huber"}.get(self.fidelity, self.fidelity)
        return f"CAN({fidelity}{'+NIMA' if self.nima_weight > 0 else ''})"


def build_model(config):
    return can.build_can(depth=config.can_depth, width=config.can_width,
                         dilations=config.can_dilations or None, padding=config.can_padding,
                         adaptive_batch_norm=config.can_adaptive_batch_norm,
                         identity_output=config.can_identity_output)
def load_pairs(config):
    """(train_pairs, test_pairs, missing) of config.dataset; builds the demo set on first use."""
    if config.dataset == "demo":
        demo = can_demo.build_can_demo(config.demo_dir or os.path.join(config.model_dir, "demo_data"),
                                       num_train=config.demo_num_train, seed=config.seed)
        sources = dict(input_dir=demo.input_dir, reference_dir=demo.reference_dir)
        lists = dict(train_list=demo.train_list, test_list=demo.test_list)
    elif config.dataset == "fivek":
        if not config.fivek_dir:
            raise ValueError("--dataset=fivek needs --fivek_dir (with input/ and expert folders).")
        sources = dict(fivek_dir=config.fivek_dir, experts=tuple(config.experts))
        lists = dict(train_list=config.train_list, test_list=config.test_list)
    elif config.dataset == "folders":
        if not (config.input_dir and config.reference_dir):
            raise ValueError("--dataset=folders needs --input_dir and --reference_dir (an "
                             "operator's outputs, matched to the inputs by file name).")
        sources = dict(input_dir=config.input_dir, reference_dir=config.reference_dir)
        lists = dict(train_list=config.train_list, test_list=config.test_list)
    else:
        raise ValueError(f"Unknown --dataset={config.dataset!r}; choose one of {DATASETS}.")
    pairs, missing = paired.collect_pairs(**sources)
    train_pairs, test_pairs = paired.split_pairs(pairs, **lists)
    logging.info("CAN data: %d training and %d test pairs (%d photos without a partner)",
                 len(train_pairs), len(test_pairs), len(missing))
    return train_pairs, test_pairs, missing


def load_nima(config):
    """(model, description) of --nima_weights, or (None, None) without weights.

    The NIMA term needs a model: gamma > 0 without --nima_weights is an error, since a random
    NIMA is no perceptual loss.
    """
    if config.nima_weights:
        return nima.load_nima_model(config.nima_weights, config.backbone)
    if config.nima_weight > 0:
        raise ValueError(f"--nima_weight={config.nima_weight} (gamma) needs --nima_weights: a "
                         "NIMA weights file (e.g. from train.nima) for --backbone, or 'demo'; "
                         "--nima_weight=0 trains the CAN(L2) baseline without one.")
    return None, None


def psnr_per_example(references, outputs):
    """PSNR (dB) of outputs clipped to [0, 1] against the references, per example."""
    outputs = tf.clip_by_value(tf.cast(outputs, tf.float32), 0.0, 1.0)
    mse = tf.reduce_mean(tf.square(outputs - references), axis=[1, 2, 3])
    return -10.0 * tf.math.log(tf.maximum(mse, 1e-10)) / tf.math.log(10.0)



def enhance_fn(model):
    """float (h, w, 3) image -> the CAN's output clipped to [0, 1], one traced function for every
    size. Runs `enhancers.can.inference_model(model)`: the same variables through native dilated
    convolutions, about 1.2x faster on a 1-megapixel photo than the Keras layers that train."""
    inference = can.inference_model(model)

    @tf.function(input_signature=[tf.TensorSpec([1, None, None, 3], tf.float32)])
    def enhance(images):
        return tf.clip_by_value(tf.cast(inference(images, training=False), tf.float32), 0.0, 1.0)

    return lambda image: enhance(tf.constant(np.asarray(image, np.float32)[None])).numpy()[0]


class CanTask(Task):
    name = "can"
    config_class = CanConfig
    final_weights = {"can": FINAL_WEIGHTS}
    architecture_settings = ("can_depth", "can_width", "can_dilations", "can_padding",
                             "can_adaptive_batch_norm")

    def load_data(self):
        """(train pairs, test pairs, photos without a partner) (`load_pairs`)."""
        return load_pairs(self.config)

    def build_models(self, training):
        """The CAN; for training also the frozen NIMA of the loss (`self.quality`), or None
        with gamma = 0 and no --nima_weights."""
        model = build_model(self.config)
        if training:
            nima_model, description = load_nima(self.config)
            self.quality = nima_loss(nima_model) if nima_model is not None else None
            logging.info("Training %s: gamma %g, %s fidelity, NIMA: %s",
                         self.config.model_name(), self.config.nima_weight,
                         self.config.fidelity, description or "none")
        return {"can": model}

    def build_optimizers(self, models):
        rate = self.config.learning_rate
        if self.config.learning_rate_decay == "cosine":
            rate = keras.optimizers.schedules.CosineDecay(rate, self.config.train_steps)
        return {"optimizer": (keras.optimizers.Adam(rate), models["can"].trainable_weights)}

    def make_train_step(self, models, optimizers):
        """The per-replica step of equation 1.

        Returns each replica's share of the global-batch means: the total loss, its fidelity
        term, the mean NIMA score of the outputs (with a NIMA), the PSNR of the clipped
        outputs, and the CAN's gradient norm.
        """
        config, quality, average = self.config, self.quality, self.average
        model, optimizer = models["can"], optimizers["optimizer"]
        fidelity = fidelity_loss(config.fidelity, config.huber_delta)
        gamma = float(config.nima_weight)
        if gamma > 0 and quality is None:
            raise ValueError("gamma > 0 needs a NIMA model (quality = losses.nima_loss(nima))")
        variables = model.trainable_weights

        def train_step(batch):
            inputs, references = batch
            with tf.GradientTape() as tape:
                outputs = model(inputs, training=True)
                fidelity_term = fidelity(references, outputs)
                per_example = fidelity_term
                if quality is not None:
                    quality_term = quality(outputs)
                    if gamma > 0:
                        per_example = per_example + gamma * quality_term
                loss = average(per_example)
                scaled = optimizer.scale_loss(loss)
            gradients = tape.gradient(scaled, variables)
            optimizer.apply_gradients(zip(gradients, variables))
            values = {"loss": loss, f"{config.fidelity}_loss": average(fidelity_term),
                      "psnr": average(psnr_per_example(references, outputs)),
                      "grad_norm": gradient_norm(optimizer, gradients)}
            if quality is not None:
                values["nima_score"] = average(10.0 - quality_term)
            return values

        return train_step

    def build_inputs(self, spec):
        config = self.config
        return paired.make_training_dataset(
            self.data[0], batch_size=spec.batch_size, seed=config.seed,
            size=(config.train_height, config.train_width), start_step=spec.start_batch,
            num_shards=spec.num_shards, shard_index=spec.shard_index,
            decode_failures=spec.decode_failures)

    def make_summary_fn(self, models):
        """Writes x | CAN(x) | reference for a fixed training pair."""
        config = self.config
        inputs, references = first_element(paired.make_training_dataset(
            self.data[0], batch_size=1, seed=config.seed + 1,
            size=(config.train_height, config.train_width)))

        def write(step):
            outputs = tf.clip_by_value(
                tf.cast(models["can"](inputs, training=False), tf.float32), 0, 1)
            grid = tf.concat([inputs, outputs, references], axis=2)
            tf.summary.image("x | CAN(x) | reference", grid, step=step, max_outputs=len(inputs))

        return write

    def evaluate(self, models):
        """Section 4.2 / Figure 6 on the test pairs at full size, beside any --compare_models;
        writes the pictures to <model_dir>/eval/. None when the split has no test pairs."""
        config = self.config
        _, test_pairs, missing = self.data
        if not test_pairs:
            logging.warning("No test pairs (the split left none): nothing to evaluate.")
            return None
        nima_model, description = (load_nima(config) if config.nima_weights else (None, None))
        enhancers = {config.model_name(): enhance_fn(models["can"])}
        for name, path in evaluate_can.parse_model_flags(list(config.compare_models)).items():
            enhancers[name] = load_saved_model_enhancer(path)
        return evaluate_can.compare(
            test_pairs, enhancers, nima_model=nima_model, nima_description=description,
            output_dir=os.path.join(config.model_dir, "eval"),
            save_images=config.eval_save_images, max_images=config.eval_max_images,
            overwrite=True, missing=missing)

    def headline(self, report):
        rows = {row["name"]: row["metrics"] for row in report["rows"]}
        before, after = rows["input"], rows.get(self.config.model_name())
        if after is None or before["psnr"] is None or after["psnr"] is None:
            return None
        return (f"Test PSNR before (input) {before['psnr']:.2f} dB, after "
                f"({self.config.model_name()}) {after['psnr']:.2f} dB; SSIM "
                f"{before['ssim']:.3f} -> {after['ssim']:.3f}")

    def export(self, models, train_step=None):
        """The CAN with the enhancer signatures (`tools.export.export_enhancer`), through its
        inference path (`enhancers.can.inference_model`: the trained variables, native dilated
        convolutions, 1.3-1.4x faster served than the Keras layers that train)."""
        config = self.config
        return Export("enhancer", can.inference_model(models["can"]), metadata={
            "system": "can",
            "paper": "Talebi & Milanfar, Learned Perceptual Image Enhancement (CAN + NIMA loss)",
            "model": config.model_name(),
            "nima_weights": config.nima_weights,
            "train_step": train_step,
            "config": dataclasses.asdict(config),
        })
