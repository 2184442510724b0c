"""Training, evaluation and export of CAN with the NIMA perceptual loss (Talebi & Milanfar,
"Learned Perceptual Image Enhancement", sections 2-4).

`python -m train.can` is a thin flag parser around `run(CanConfig(...))`; tests and the
benchmark call the functions here directly.

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

from datasets import can_demo, paired
from datasets.ava import DecodeFailures
from enhancers import can
from losses import fidelity_loss, nima_loss
from train import loop, strategies
from train.config import RunConfig

FINAL_WEIGHTS = "can.weights.h5"
DATASETS = ("fivek", "folders", "demo")


@dataclasses.dataclass
class CanConfig(RunConfig):
    dataset: str = "fivek"  # "fivek", "folders" (inputs + an operator's references) or "demo"
    fivek_dir: str | None = None
    experts: tuple = ("C",)  # FiveK expert folders A..E; each gives one pair per input
    input_dir: str | None = None  # --dataset=folders
    reference_dir: str | None = None
    train_list: str | None = None  # optional split files (FiveK ids or stems); default: paper's
    test_list: str | None = None
    demo_dir: str | None = None  # default <model_dir>/demo_data
    demo_num_train: int = can_demo.DEFAULT_NUM_TRAIN
    train_height: int = 480  # section 4.2: training pairs rescaled to 480x640
    train_width: int = 640
    # The CAN (section 3): 10 layers, 32 maps, dilations 2^k, symmetric padding.
    can_depth: int = can.DEPTH
    can_width: int = can.WIDTH
    can_dilations: tuple | None = None  # default 1, 2, ..., 2^(depth - 2)
    can_padding: str = "symmetric"
    can_adaptive_batch_norm: bool = False
    can_identity_output: bool = False  # not the papers' (Glorot): the demo starts at identity
    # Equation 1 and section 4.2.
    fidelity: str = "l2"
    huber_delta: float = 0.1
    nima_weight: float = 1e-4  # gamma; 0 trains the CAN(L2) baseline
    nima_weights: str | None = None  # whole-NIMA weights file, or "demo"
    backbone: str = "inception_v2"  # the paper's loss network
    learning_rate: float = 1e-4
    train_steps: int = 5_000_000
    batch_size: int = 1
    eval_max_images: int | None = None
    eval_save_images: int = 4  # photos written side by side to <model_dir>/eval/
    compare_models: tuple = ()  # "NAME=SAVED_MODEL_DIR" exports evaluated alongside

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
        import nima

        return nima.load_nima_model(config.nima_weights, config.backbone)
    if config.nima_weight > 0:
        raise ValueError(f"--nima_weight={config.nima_weight} (gamma) needs --nima_weights: a "
                         "NIMA weights file (e.g. from train.nima) for --backbone, or 'demo'; "
                         "--nima_weight=0 trains the CAN(L2) baseline without one.")
    return None, None


def _adam(learning_rate):
    optimizer = keras.optimizers.Adam(learning_rate)
    if keras.mixed_precision.global_policy().name == "mixed_float16":
        optimizer = keras.optimizers.LossScaleOptimizer(optimizer)
    return optimizer


def psnr_per_example(references, outputs):
    """PSNR (dB) of outputs clipped to [0, 1] against the references, per example."""
    outputs = tf.clip_by_value(tf.cast(outputs, tf.float32), 0.0, 1.0)
    mse = tf.reduce_mean(tf.square(outputs - references), axis=[1, 2, 3])
    return -10.0 * tf.math.log(tf.maximum(mse, 1e-10)) / tf.math.log(10.0)


def make_train_step(model, optimizer, config, global_batch_size, quality=None):
    """The per-replica step of equation 1; `quality` is `losses.nima_loss(nima)` or None.

    Returns each replica's share of the global-batch means (the training loop sums them):
    the total loss, its fidelity term, the mean NIMA score of the outputs (with a NIMA), the
    PSNR of the clipped outputs, and the CAN's gradient norm.
    """
    fidelity = fidelity_loss(config.fidelity, config.huber_delta)
    gamma = float(config.nima_weight)
    if gamma > 0 and quality is None:
        raise ValueError("gamma > 0 needs a NIMA model (quality = losses.nima_loss(nima))")
    variables = model.trainable_weights

    def average(per_example):
        return tf.nn.compute_average_loss(per_example, global_batch_size=global_batch_size)

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
        norm = tf.linalg.global_norm(gradients)
        if isinstance(optimizer, keras.optimizers.LossScaleOptimizer):
            norm = norm / tf.cast(optimizer.dynamic_scale, norm.dtype)
        values = {"loss": loss, f"{config.fidelity}_loss": average(fidelity_term),
                  "psnr": average(psnr_per_example(references, outputs)), "grad_norm": norm}
        if quality is not None:
            values["nima_score"] = average(10.0 - quality_term)
        return values

    return train_step


def _image_summary_fn(model, preview):
    inputs, references = preview

    def write(step):
        outputs = tf.clip_by_value(tf.cast(model(inputs, training=False), tf.float32), 0, 1)
        grid = tf.concat([inputs, outputs, references], axis=2)
        tf.summary.image("x | CAN(x) | reference", grid, step=step, max_outputs=len(inputs))

    return write


def train(config):
    """Trains (or resumes) under config.strategy; saves the CAN's weights to model_dir."""
    keras.utils.set_random_seed(config.seed)
    logging.info("Precision policy: %s", loop.set_mixed_precision(config.mixed_precision))
    strategy = strategies.make_strategy(config.strategy, config.num_cpu_devices)
    train_pairs, _, _ = load_pairs(config)
    if config.nima_weights == "demo":  # train the demo NIMA into its cache outside the scope
        import nima

        nima.demo_model()
    with strategy.scope():
        model = build_model(config)
        nima_model, description = load_nima(config)
        quality = nima_loss(nima_model) if nima_model is not None else None
        optimizer = _adam(config.learning_rate)
        optimizer.build(model.trainable_weights)
    logging.info("Training %s: gamma %g, %s fidelity, NIMA: %s", config.model_name(),
                 config.nima_weight, config.fidelity, description or "none")
    train_step = make_train_step(model, optimizer, config, config.batch_size, quality)
    failures = DecodeFailures()
    size = (config.train_height, config.train_width)

    def make_dataset(context, start_step):
        return paired.make_training_dataset(
            train_pairs, batch_size=context.get_per_replica_batch_size(config.batch_size),
            seed=config.seed, size=size,
            start_step=start_step * (context.num_replicas_in_sync // context.num_input_pipelines),
            num_shards=context.num_input_pipelines, shard_index=context.input_pipeline_id,
            decode_failures=failures)

    preview = next(iter(paired.make_training_dataset(train_pairs, batch_size=1,
                                                     seed=config.seed + 1, size=size)))
    loop_config = loop.LoopConfig(
        model_dir=config.model_dir, train_steps=config.train_steps,
        global_batch_size=config.batch_size, checkpoint_every=config.checkpoint_every,
        log_every=config.log_every)
    training = loop.TrainingLoop(strategy, loop_config, train_step,
                                 {"can": model, "optimizer": optimizer}, make_dataset,
                                 summary_fn=_image_summary_fn(model, preview))
    result = training.run()
    if failures.count:
        logging.warning("%d training pairs could not be decoded and were skipped, e.g. %s",
                        failures.count, failures.examples[:5])
    if not result.interrupted and training.is_chief:
        model.save_weights(os.path.join(config.model_dir, FINAL_WEIGHTS))
        logging.info("Wrote %s to %s", FINAL_WEIGHTS, config.model_dir)
    return model, result


def restore_model(config):
    """The CAN of model_dir's latest checkpoint, else of its final weights file."""
    return loop.restore_trained(build_model(config), config.model_dir, "can", FINAL_WEIGHTS,
                                "CAN")


def enhance_fn(model):
    """float (h, w, 3) image -> the CAN's output clipped to [0, 1], one traced function for every
    size."""
    @tf.function(input_signature=[tf.TensorSpec([1, None, None, 3], tf.float32)])
    def enhance(images):
        return tf.clip_by_value(tf.cast(model(images, training=False), tf.float32), 0.0, 1.0)

    return lambda image: enhance(tf.constant(np.asarray(image, np.float32)[None])).numpy()[0]


def evaluate(config, model=None):
    """Section 4.2 / Figure 6 on the test pairs at full size; writes <model_dir>/eval/.

    Returns `tools.evaluate_can.compare`'s report (`tools.report` layout), or None when the
    split has no test pairs.
    """
    from tools import evaluate_can, report
    from tools.enhance import load_saved_model_enhancer

    _, test_pairs, missing = load_pairs(config)
    if not test_pairs:
        logging.warning("No test pairs (the split left none): nothing to evaluate.")
        return None
    model = model or restore_model(config)
    nima_model, description = (load_nima(config) if config.nima_weights else (None, None))
    enhancers = {config.model_name(): enhance_fn(model)}
    for name, path in evaluate_can.parse_model_flags(list(config.compare_models)).items():
        enhancers[name] = load_saved_model_enhancer(path)
    results = evaluate_can.compare(
        test_pairs, enhancers, nima_model=nima_model, nima_description=description,
        output_dir=os.path.join(config.model_dir, "eval"), save_images=config.eval_save_images,
        max_images=config.eval_max_images, overwrite=True, missing=missing)
    logging.info("CAN evaluation:\n%s", report.format_table(results))
    return results


def summary(results):
    """The evaluation's figures per row, {row name: {metric: value}}, for the run's printed
    outcome (None without results)."""
    if results is None:
        return None
    return {row["name"]: row["metrics"] for row in results["rows"]}


def export(config, model=None, train_step=None):
    """Exports the CAN with the enhancer signatures (`tools.export.export_enhancer`)."""
    from tools import export as export_tools

    if not config.export_dir:
        raise ValueError("--export_dir is required to export.")
    model = model or restore_model(config)
    metadata = {
        "system": "can",
        "paper": "Talebi & Milanfar, Learned Perceptual Image Enhancement (CAN + NIMA loss)",
        "model": config.model_name(),
        "nima_weights": config.nima_weights,
        "train_step": train_step,
        "config": dataclasses.asdict(config),
    }
    path = export_tools.export_enhancer(model, config.export_dir, version=config.export_version,
                                        metadata=metadata)
    logging.info("Exported %s as a SavedModel to %s", config.model_name(), path)
    return path


def run(config):
    """`--mode=train` trains, then (on the chief) evaluates and, with --export_dir, exports."""
    if config.mode == "train":
        model, result = train(config)
        outcome = {"step": result.step, "interrupted": result.interrupted}
        if result.interrupted or not result.is_chief:
            return outcome
        loop.set_mixed_precision(False)  # evaluate and export in float32
        model = restore_model(config)
        outcome["eval"] = summary(evaluate(config, model))
        if config.export_dir:
            outcome["export_path"] = export(config, model, train_step=result.step)
        return outcome
    if config.mode == "eval":
        return {"eval": summary(evaluate(config))}
    if config.mode == "export":
        return {"export_path": export(config)}
    raise ValueError(f"Unknown --mode={config.mode!r}; choose train, eval or export.")
