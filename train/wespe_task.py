"""Training, evaluation and export of WESPE (Ignatov et al., "WESPE", sections 3 and 4).

`python -m train.wespe` is a thin flag parser around `run(WespeConfig(...))`; tests and the
benchmark call the functions here directly.

One training step (section 3, Figure 2), per replica:
  1. the discriminators: D_c on Gaussian-blurred RGB and D_t on grayscale learn real
     target-domain patches y (label 1) against enhanced source patches G(x) (label 0);
  2. the generators: G and F minimise
     L_total = L_content(x, F(G(x))) + 5e-3 (L_color + L_texture) + 10 L_tv     (equation 6),
     with L_content on VGG-19 relu5_4 (equation 1), L_color / L_texture = -log D(G(x))
     (equations 3-4) and L_tv on G(x) (equation 5).
Source and target patches are drawn independently: the pairing of DPED's training patches is
never used (weak supervision, section 4.1).
"""
import dataclasses
import hashlib
import os

import keras
import numpy as np
import tensorflow as tf
from absl import logging

from datasets import dped, unpaired, wespe_demo
from datasets.ava import DecodeFailures
from enhancers import wespe
from losses import (build_vgg19_features, content_loss, discriminator_accuracy,
                    discriminator_loss, generator_adversarial_loss, total_variation_loss)
from train import loop, strategies
from train.config import RunConfig

GENERATOR_WEIGHTS = "generator.weights.h5"
INVERSE_GENERATOR_WEIGHTS = "inverse_generator.weights.h5"
DATASETS = ("dped", "folders", "demo")
RANDOM_VGG_WARNING = (
    "RANDOM VGG-19 FEATURES: no --vgg_weights was given, so the content loss compares x and "
    "F(G(x)) through a randomly initialised VGG-19, not the ImageNet network of the paper."
)


@dataclasses.dataclass
class WespeConfig(RunConfig):
    dataset: str = "dped"  # "dped", "folders" (two photo collections) or "demo"
    dped_dir: str | None = None  # dped/ or dped/<phone>/
    phone: str = "iphone"
    source_dir: str | None = None  # --dataset=folders: source-domain photos (e.g. a phone's)
    target_dir: str | None = None  # target-domain photos (e.g. DIV2K); replaces DPED's canon
    eval_source_dir: str | None = None  # optional aligned test pairs, matched by file name
    eval_target_dir: str | None = None
    eval_dir: str | None = None  # photos for the no-reference figures
    demo_dir: str | None = None  # default <model_dir>/demo_data
    demo_num_train_patches: int = 3000
    demo_num_test_patches: int = 100
    patch_size: int = 100  # section 3.6
    augment: bool = True  # random flips and 90-degree rotations of the training patches
    filters: int = wespe.FILTERS
    residual_blocks: int = wespe.RESIDUAL_BLOCKS
    vgg_weights: str | None = None  # local vgg19_weights_tf_dim_ordering_tf_kernels_notop.h5
    content_layer: str = "relu5_4"
    content_weight: float = 1.0  # equation 6
    color_weight: float = 5e-3
    texture_weight: float = 5e-3
    tv_weight: float = 10.0
    # Not in WESPE (0 = off, the paper): CycleGAN's identity-mapping loss (Zhu et al. 2017,
    # section 5.2; WESPE's reference [36]), ||G(y) - y||^2 + ||F(x) - x||^2 on pixels: G should
    # leave photos that are already in the target domain alone. Used by the short CPU demo.
    identity_weight: float = 0.0
    # Adam (section 3.6); the paper gives no rate: DPED's 5e-4.
    generator_learning_rate: float = 5e-4
    discriminator_learning_rate: float = 5e-4
    adam_beta_1: float = 0.9
    train_steps: int = 20000  # section 3.6
    batch_size: int = 30
    nima_weights: str | None = None  # whole-NIMA weights file, or "demo" for nima.demo_model()
    nima_backbone: str = "mobilenet"
    eval_max_images: int | None = None  # cap on no-reference images (full-size photos are slow)
    eval_save_images: int = 4  # enhanced photos written to <model_dir>/eval/


@dataclasses.dataclass
class WespeData:
    """File lists: training patches/photos of both domains, aligned test pairs, eval photos."""
    train_source: list
    train_target: list
    test_pairs: list
    eval_images: list
    # make_patch_dataset group settings per domain: DPED's (and the demo's) training files are
    # already patch-sized, one crop each; full-size photos give several crops per decode.
    source_groups: dict = dataclasses.field(default_factory=dict)
    target_groups: dict = dataclasses.field(default_factory=dict)


def load_data(config):
    """The files of config.dataset; builds the demo set on first use."""
    if config.dataset in ("dped", "demo"):
        if config.dataset == "demo":
            root = wespe_demo.build_wespe_demo(
                config.demo_dir or os.path.join(config.model_dir, "demo_data"),
                patch_size=config.patch_size, num_train_patches=config.demo_num_train_patches,
                num_test_patches=config.demo_num_test_patches, seed=config.seed,
            )
            files = dped.dped_files(root, "phone")
        else:
            if not config.dped_dir:
                raise ValueError("--dataset=dped needs --dped_dir (dped/ or dped/<phone>/).")
            files = dped.dped_files(config.dped_dir, config.phone)
        data = WespeData(files.train_source, files.train_target, files.test_pairs,
                         files.full_size, source_groups=dped.PATCH_FILE_GROUPS,
                         target_groups=dped.PATCH_FILE_GROUPS)
        if config.target_dir:  # WESPE [DIV2K]: DPED's phone patches, another target domain
            data.train_target = unpaired.list_images(config.target_dir)
            data.target_groups = {}
    elif config.dataset == "folders":
        if not config.source_dir or not config.target_dir:
            raise ValueError("--dataset=folders needs --source_dir and --target_dir.")
        test_pairs = []
        if config.eval_source_dir or config.eval_target_dir:
            if not (config.eval_source_dir and config.eval_target_dir):
                raise ValueError("Give both --eval_source_dir and --eval_target_dir, or neither.")
            test_pairs = unpaired.match_pairs(unpaired.list_images(config.eval_source_dir),
                                              config.eval_target_dir)
        data = WespeData(unpaired.list_images(config.source_dir),
                         unpaired.list_images(config.target_dir), test_pairs, [])
    else:
        raise ValueError(f"Unknown --dataset={config.dataset!r}; choose one of {DATASETS}.")
    if config.eval_dir:
        data.eval_images = unpaired.list_images(config.eval_dir)
    if config.eval_max_images is not None:
        data.eval_images = data.eval_images[:config.eval_max_images]
    logging.info("WESPE data: %d source and %d target training files, %d test pairs, "
                 "%d evaluation photos", len(data.train_source), len(data.train_target),
                 len(data.test_pairs), len(data.eval_images))
    return data


@dataclasses.dataclass
class WespeModels:
    generator: keras.Model  # G: source -> target domain, the enhancer
    inverse_generator: keras.Model  # F: target -> source domain
    color_discriminator: keras.Model  # D_c
    texture_discriminator: keras.Model  # D_t

    def generator_variables(self):
        return self.generator.trainable_weights + self.inverse_generator.trainable_weights

    def discriminator_variables(self):
        return (self.color_discriminator.trainable_weights
                + self.texture_discriminator.trainable_weights)

    def trackables(self):
        return {field.name: getattr(self, field.name) for field in dataclasses.fields(self)}


def build_models(config):
    return WespeModels(
        generator=wespe.build_generator(config.filters, config.residual_blocks, name="generator"),
        inverse_generator=wespe.build_generator(config.filters, config.residual_blocks,
                                                name="inverse_generator"),
        color_discriminator=wespe.build_discriminator(3, config.patch_size),
        texture_discriminator=wespe.build_discriminator(1, config.patch_size),
    )


def _adam(learning_rate, beta_1):
    optimizer = keras.optimizers.Adam(learning_rate, beta_1=beta_1)
    if keras.mixed_precision.global_policy().name == "mixed_float16":
        optimizer = keras.optimizers.LossScaleOptimizer(optimizer)
    return optimizer


def _unscaled_norm(optimizer, gradients):
    norm = tf.linalg.global_norm(gradients)
    if isinstance(optimizer, keras.optimizers.LossScaleOptimizer):
        norm = norm / tf.cast(optimizer.dynamic_scale, norm.dtype)
    return norm


def _pixel_mse(images, reference):
    return tf.reduce_mean(tf.square(tf.cast(images, tf.float32) - reference), axis=[1, 2, 3])


def make_train_step(models, vgg, g_optimizer, d_optimizer, config, global_batch_size):
    """The per-replica step: update D_c and D_t, then G and F (see the module docstring).

    Every returned value is this replica's share of a global-batch mean, as the training loop
    expects, except the gradient norms: each is the norm of this replica's gradient, so their
    sum over replicas is the mean over replicas of the per-replica-batch gradient norm (with
    one replica, the gradient norm of the batch).
    """
    g_net, f_net = models.generator, models.inverse_generator
    d_color, d_texture = models.color_discriminator, models.texture_discriminator
    d_variables = models.discriminator_variables()
    g_variables = models.generator_variables()
    num_g = len(g_net.trainable_weights)
    num_d_color = len(d_color.trainable_weights)

    def average(per_example):
        return tf.nn.compute_average_loss(per_example, global_batch_size=global_batch_size)

    def discriminate(images):
        return (d_color(wespe.gaussian_blur(images), training=True),
                d_texture(wespe.to_grayscale(images), training=True))

    def train_step(batch):
        source, target = batch
        # 1. Discriminators: real target patches (1) against enhanced source patches (0).
        enhanced = tf.stop_gradient(g_net(source, training=True))
        with tf.GradientTape() as tape:
            real_color, real_texture = discriminate(target)
            fake_color, fake_texture = discriminate(enhanced)
            d_color_loss = average(discriminator_loss(real_color, fake_color))
            d_texture_loss = average(discriminator_loss(real_texture, fake_texture))
            scaled = d_optimizer.scale_loss(d_color_loss + d_texture_loss)
        d_gradients = tape.gradient(scaled, d_variables)
        d_optimizer.apply_gradients(zip(d_gradients, d_variables))

        # 2. Generators: equation 6.
        with tf.GradientTape() as tape:
            enhanced = g_net(source, training=True)
            reconstructed = f_net(enhanced, training=True)
            identity = 0.0
            if config.identity_weight > 0:
                identity = average(_pixel_mse(g_net(target, training=True), target)
                                   + _pixel_mse(f_net(source, training=True), source))
            content = average(content_loss(vgg(source, training=False),
                                           vgg(reconstructed, training=False)))
            color_prob, texture_prob = discriminate(enhanced)
            color = average(generator_adversarial_loss(color_prob))
            texture = average(generator_adversarial_loss(texture_prob))
            tv = average(total_variation_loss(enhanced))
            total = (config.content_weight * content + config.color_weight * color
                     + config.texture_weight * texture + config.tv_weight * tv)
            scaled = g_optimizer.scale_loss(total + config.identity_weight * identity)
        g_gradients = tape.gradient(scaled, g_variables)
        g_optimizer.apply_gradients(zip(g_gradients, g_variables))

        return {
            "generator_loss": total,  # equation 6; the optional identity term is reported apart
            "content_loss": content,
            "color_loss": color,
            "texture_loss": texture,
            "tv_loss": tv,
            **({"identity_loss": identity} if config.identity_weight > 0 else {}),
            "d_color_loss": d_color_loss,
            "d_texture_loss": d_texture_loss,
            "d_color_accuracy": average(discriminator_accuracy(real_color, fake_color)),
            "d_texture_accuracy": average(discriminator_accuracy(real_texture, fake_texture)),
            "grad_norm/generator": _unscaled_norm(g_optimizer, g_gradients[:num_g]),
            "grad_norm/inverse_generator": _unscaled_norm(g_optimizer, g_gradients[num_g:]),
            "grad_norm/color_discriminator":
                _unscaled_norm(d_optimizer, d_gradients[:num_d_color]),
            "grad_norm/texture_discriminator":
                _unscaled_norm(d_optimizer, d_gradients[num_d_color:]),
        }

    return train_step


def weights_fingerprint(models):
    """SHA-256 of every weight of G, F, D_c and D_t: equal iff the weights are identical."""
    digest = hashlib.sha256()
    for model in models.trackables().values():
        for weight in model.weights:
            digest.update(np.ascontiguousarray(keras.ops.convert_to_numpy(weight)).tobytes())
    return digest.hexdigest()


def _image_summary_fn(models, preview):
    """Writes the grid x | G(x) | F(G(x)) of a fixed batch of source patches (TensorBoard)."""

    def write(step):
        enhanced = models.generator(preview, training=False)
        reconstructed = models.inverse_generator(enhanced, training=False)
        grid = tf.concat([preview, enhanced, reconstructed], axis=2)
        tf.summary.image("x | G(x) | F(G(x))", tf.clip_by_value(grid, 0.0, 1.0), step=step,
                         max_outputs=len(preview))

    return write


def train(config):
    """Trains (or resumes) under config.strategy; saves G and F to model_dir at the end."""
    keras.utils.set_random_seed(config.seed)
    policy = loop.set_mixed_precision(config.mixed_precision)
    logging.info("Precision policy: %s", policy)
    strategy = strategies.make_strategy(config.strategy, config.num_cpu_devices)
    data = load_data(config)
    if config.vgg_weights is None:
        logging.warning("*" * 80)
        logging.warning(RANDOM_VGG_WARNING)
        logging.warning("*" * 80)
    with strategy.scope():
        models = build_models(config)
        vgg = build_vgg19_features(config.vgg_weights, layer=config.content_layer)
        g_optimizer = _adam(config.generator_learning_rate, config.adam_beta_1)
        d_optimizer = _adam(config.discriminator_learning_rate, config.adam_beta_1)
        # Slot variables must exist before the distributed step is traced.
        g_optimizer.build(models.generator_variables())
        d_optimizer.build(models.discriminator_variables())
    train_step = make_train_step(models, vgg, g_optimizer, d_optimizer, config,
                                 config.batch_size)
    failures = DecodeFailures()

    def make_dataset(context, start_step):
        return unpaired.make_unpaired_dataset(
            data.train_source, data.train_target, patch_size=config.patch_size,
            batch_size=context.get_per_replica_batch_size(config.batch_size), seed=config.seed,
            start_step=start_step * (context.num_replicas_in_sync // context.num_input_pipelines),
            num_shards=context.num_input_pipelines, shard_index=context.input_pipeline_id,
            augment=config.augment, decode_failures=failures,
            source_groups=data.source_groups, target_groups=data.target_groups,
        )

    preview = next(iter(unpaired.make_patch_dataset(
        data.train_source, patch_size=config.patch_size, batch_size=4, seed=config.seed + 1,
        augment=False, **data.source_groups)))
    loop_config = loop.LoopConfig(
        model_dir=config.model_dir, train_steps=config.train_steps,
        global_batch_size=config.batch_size, checkpoint_every=config.checkpoint_every,
        log_every=config.log_every,
    )
    trackables = dict(models.trackables(), g_optimizer=g_optimizer, d_optimizer=d_optimizer)
    training = loop.TrainingLoop(strategy, loop_config, train_step, trackables, make_dataset,
                                 summary_fn=_image_summary_fn(models, preview))
    result = training.run()
    if failures.count:
        logging.warning("%d images could not be decoded and were skipped, e.g. %s",
                        failures.count, failures.examples[:5])
    if not result.interrupted and training.is_chief:
        models.generator.save_weights(os.path.join(config.model_dir, GENERATOR_WEIGHTS))
        models.inverse_generator.save_weights(
            os.path.join(config.model_dir, INVERSE_GENERATOR_WEIGHTS))
        logging.info("Wrote %s and %s to %s", GENERATOR_WEIGHTS, INVERSE_GENERATOR_WEIGHTS,
                     config.model_dir)
    return models, result


def restore_generator(config):
    """G of model_dir's latest checkpoint, else of its final weights file."""
    generator = wespe.build_generator(config.filters, config.residual_blocks, name="generator")
    return loop.restore_trained(generator, config.model_dir, "generator", GENERATOR_WEIGHTS,
                                "WESPE")


def load_nima(config):
    """The NIMA model of --nima_weights (a file, or "demo": nima.demo_model()), or None."""
    if not config.nima_weights:
        return None
    import nima

    return nima.load_nima_model(config.nima_weights, config.nima_backbone)[0]


def evaluate(config, generator=None):
    """Section 4.1-4.2 (`tools.evaluate_wespe`): PSNR/SSIM on the aligned test pairs; entropy,
    PNG bits per pixel and the NIMA mean score on the evaluation photos; for the input and G(x).

    Writes <model_dir>/eval.json (the `tools.report` layout), a side-by-side PNG and the first
    `eval_save_images` enhanced photos into <model_dir>/eval/; returns the report.
    """
    from tools import evaluate_wespe, report

    data = load_data(config)
    generator = generator or restore_generator(config)
    results = evaluate_wespe.evaluate_wespe(
        generator, data.test_pairs, data.eval_images, nima_model=load_nima(config),
        output_dir=os.path.join(config.model_dir, "eval"), save_images=config.eval_save_images,
        extras={"vgg_weights": config.vgg_weights or "random"})
    results = report.write_report(os.path.join(config.model_dir, "eval.json"), results)
    logging.info("WESPE evaluation:\n%s", report.format_table(results))
    return results


def export(config, generator=None, train_step=None):
    """Exports G with the enhancer signatures; the metadata says whether VGG-19 was random."""
    from tools import export as export_tools

    if not config.export_dir:
        raise ValueError("--export_dir is required to export.")
    generator = generator or restore_generator(config)
    metadata = {
        "system": "wespe",
        "paper": "Ignatov et al., WESPE: Weakly Supervised Photo Enhancer for Digital Cameras",
        "vgg_weights": config.vgg_weights or "RANDOM",
        "warning": None if config.vgg_weights else RANDOM_VGG_WARNING,
        "train_step": train_step,
        "config": dataclasses.asdict(config),
    }
    path = export_tools.export_enhancer(generator, config.export_dir,
                                        version=config.export_version, metadata=metadata)
    logging.info("Exported G as a SavedModel to %s", path)
    return path


def run(config):
    """`--mode=train` trains, then (on the chief) evaluates and, with --export_dir, exports."""
    if config.mode == "train":
        models, result = train(config)
        outcome = {"step": result.step, "interrupted": result.interrupted,
                   "weights_fingerprint": weights_fingerprint(models)}
        if result.interrupted or not result.is_chief:
            return outcome
        loop.set_mixed_precision(False)  # evaluate and export in float32
        generator = restore_generator(config)
        outcome["eval"] = evaluate(config, generator)
        if config.export_dir:
            outcome["export_path"] = export(config, generator, train_step=result.step)
        return outcome
    if config.mode == "eval":
        return {"eval": evaluate(config)}
    if config.mode == "export":
        return {"export_path": export(config)}
    raise ValueError(f"Unknown --mode={config.mode!r}; choose train, eval or export.")
