"""WESPE as a task of the runner (Ignatov et al., "WESPE", sections 3 and 4).

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
import os

import keras
import tensorflow as tf
from absl import logging

import nima
from datasets import dped, unpaired, wespe_demo
from datasets.pipeline import first_element
from enhancers import wespe
from losses import (build_vgg19_features, content_loss, discriminator_accuracy,
                    modified_discriminator_loss, modified_generator_loss, total_variation_loss)
from tools import evaluate_wespe
from train.config import MAX_IMAGE_SIDE, RunConfig, setting
from train.task import Export, Task, gradient_norm

GENERATOR_WEIGHTS = "generator.weights.h5"
INVERSE_GENERATOR_WEIGHTS = "inverse_generator.weights.h5"
DATASETS = ("dped", "folders", "demo")
RANDOM_VGG_WARNING = (
    "RANDOM VGG-19 FEATURES: no --vgg_weights was given, so the content loss compares x and "
    "F(G(x)) through a randomly initialised VGG-19, not the ImageNet network of the paper."
)


@dataclasses.dataclass
class WespeConfig(RunConfig):
    # Section 3.6: batch 30 of 100x100 patches, 20,000 iterations (DPED used batch 50).
    train_steps: int = setting(20000, "Total training steps (a resumed run counts on; "
                               "paper: 20,000).", minimum=1)
    batch_size: int = setting(30, "Global batch size, split over replicas (paper: 30).",
                              minimum=1)
    dataset: str = setting("dped", "DPED on disk, two photo folders, or the demo.",
                           choices=DATASETS)
    dped_dir: str | None = setting(None, "DPED root (dped/ or dped/<phone>/).")
    phone: str = setting("iphone", f"DPED camera: {', '.join(dped.PHONES)}.")
    source_dir: str | None = setting(None, "--dataset=folders: source-domain photos.")
    target_dir: str | None = setting(None, "Target-domain photos (e.g. DIV2K): required with "
                                     "--dataset=folders; with dped it replaces the DSLR patches "
                                     "(WESPE [DIV2K]).")
    eval_source_dir: str | None = setting(None, "Aligned test inputs (pairs matched by file "
                                          "name).")
    eval_target_dir: str | None = setting(None, "Aligned test references for PSNR/SSIM.")
    eval_dir: str | None = setting(None, "Photos for the no-reference figures (entropy, bpp, "
                                   "NIMA).")
    demo_dir: str | None = setting(None, "Where the demo set is built (default "
                                   "<model_dir>/demo_data).", directory=True)
    demo_num_train_patches: int = setting(3000, "Demo training patches per domain.", minimum=1)
    demo_num_test_patches: int = setting(100, "Demo aligned test pairs.", minimum=0)
    patch_size: int = setting(100, "Training patch side (paper: 100).", minimum=16,
                              maximum=MAX_IMAGE_SIDE)
    augment: bool = setting(True, "Random flips and 90-degree rotations of training patches.")
    filters: int = setting(wespe.FILTERS, "Width of G and F (paper: 64).", minimum=1)
    residual_blocks: int = setting(wespe.RESIDUAL_BLOCKS, "Residual blocks of G and F "
                                   "(paper: 4).", minimum=0)
    # Not in WESPE (the paper's DPED generator is the default): for a G trained briefly on small
    # patches that must then enhance whole photos (enhancers.wespe.build_generator says why).
    generator_padding: str = setting("zero", "Not in the paper ('zero' = DPED's SAME padding): "
                                     "'symmetric' mirrors the borders in G and F (no dark "
                                     "frame; used by the CPU demo).",
                                     choices=wespe.GENERATOR_PADDINGS)
    generator_instance_norm: bool = setting(True, "Instance norm in G's and F's residual "
                                            "blocks (paper: on; the CPU demo turns it off so "
                                            "that G is the same function on a patch and on a "
                                            "photo).")
    generator_residual: bool = setting(False, "Not in the paper (off): G and F output x + "
                                       "0.58 tanh(.), starting as the identity and learning "
                                       "only the correction (used by the CPU demo).")
    generator_global_context: bool = setting(False, "Not in the paper (off): G's and F's "
                                             "features after the residual blocks are scaled "
                                             "and shifted by the photo's mean features "
                                             "(enhancers.global_context), so that a local G "
                                             "can tell a source photo from a clean one (tried "
                                             "in the CPU demo and left off: README, WESPE).")
    vgg_weights: str | None = setting(None, "Local vgg19_weights_tf_dim_ordering_tf_kernels_"
                                      "notop.h5 (without it the content loss uses random VGG-19 "
                                      "features, and says so).")
    content_layer: str = setting("relu5_4", "VGG-19 layer of the content loss.")
    content_weight: float = setting(1.0, "Weight of L_content (equation 6: 1).", minimum=0.0)
    color_weight: float = setting(5e-3, "Weight of L_color (equation 6: 5e-3).", minimum=0.0)
    texture_weight: float = setting(5e-3, "Weight of L_texture (equation 6: 5e-3).", minimum=0.0)
    tv_weight: float = setting(10.0, "Weight of L_tv (equation 6: 10).", minimum=0.0)
    # Not in WESPE (0 = off, the paper): CycleGAN's identity-mapping loss (Zhu et al. 2017,
    # section 5.2; WESPE's reference [36]), ||G(y) - y||^2 + ||F(x) - x||^2 on pixels: G should
    # leave photos that are already in the target domain alone. Used by the short CPU demo.
    identity_weight: float = setting(0.0, "Not in the paper (0 = off): weight of CycleGAN's "
                                     "identity loss ||G(y)-y||^2 + ||F(x)-x||^2 (used by the CPU "
                                     "demo).", minimum=0.0)
    # Adam (section 3.6); the paper gives no rate: DPED's 5e-4.
    generator_learning_rate: float = setting(5e-4, "Adam rate of G and F (DPED's 5e-4).",
                                             minimum=0.0)
    discriminator_learning_rate: float = setting(5e-4, "Adam rate of D_c and D_t.", minimum=0.0)
    adam_beta_1: float = setting(0.9, "Adam beta_1.", minimum=0.0, maximum=0.999)
    nima_weights: str | None = setting(None, "NIMA weights file for the NIMA score in "
                                       "evaluation, or 'demo' for the demo NIMA (trained once "
                                       "into the cache).")
    nima_backbone: str = setting("mobilenet", "Backbone of --nima_weights.")
    eval_max_images: int | None = setting(None, "Evaluate at most this many photos (default "
                                          "all).", minimum=0)
    eval_save_images: int = setting(4, "Enhanced photos written to <model_dir>/eval/.", minimum=0)
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


def load_nima(config):
    """The NIMA model of --nima_weights (a file, or "demo": nima.demo_model()), or None."""
    if not config.nima_weights:
        return None
    return nima.load_nima_model(config.nima_weights, config.nima_backbone)[0]


def _pixel_mse(images, reference):
    return tf.reduce_mean(tf.square(tf.cast(images, tf.float32) - reference), axis=[1, 2, 3])


class WespeTask(Task):
    name = "wespe"
    config_class = WespeConfig
    final_weights = {"generator": GENERATOR_WEIGHTS,
                     "inverse_generator": INVERSE_GENERATOR_WEIGHTS}
    architecture_settings = ("filters", "residual_blocks", "generator_padding",
                             "generator_instance_norm", "generator_residual",
                             "generator_global_context")
    training_architecture_settings = ("patch_size",)  # the discriminators' dense layer

    def load_data(self):
        """The files of --dataset (`load_data`)."""
        return load_data(self.config)

    def build_models(self, training):
        """G, F, D_c and D_t (DPED's networks, section 3.5); for training also the frozen
        VGG-19 of the content loss."""
        config = self.config
        generator_options = dict(padding=config.generator_padding,
                                 instance_norm=config.generator_instance_norm,
                                 residual=config.generator_residual,
                                 global_context=config.generator_global_context)
        models = {
            "generator": wespe.build_generator(config.filters, config.residual_blocks,
                                               name="generator", **generator_options),
            "inverse_generator": wespe.build_generator(config.filters, config.residual_blocks,
                                                       name="inverse_generator",
                                                       **generator_options),
            "color_discriminator": wespe.build_discriminator(3, config.patch_size),
            "texture_discriminator": wespe.build_discriminator(1, config.patch_size),
        }
        if training:
            if config.vgg_weights is None:
                logging.warning("*" * 80)
                logging.warning(RANDOM_VGG_WARNING)
                logging.warning("*" * 80)
            self.vgg = build_vgg19_features(config.vgg_weights, layer=config.content_layer)
        return models

    def build_optimizers(self, models):
        config = self.config
        g_variables = (models["generator"].trainable_weights
                       + models["inverse_generator"].trainable_weights)
        d_variables = (models["color_discriminator"].trainable_weights
                       + models["texture_discriminator"].trainable_weights)
        return {
            "g_optimizer": (keras.optimizers.Adam(config.generator_learning_rate,
                                                  beta_1=config.adam_beta_1), g_variables),
            "d_optimizer": (keras.optimizers.Adam(config.discriminator_learning_rate,
                                                  beta_1=config.adam_beta_1), d_variables),
        }

    def make_train_step(self, models, optimizers):
        """The per-replica step: update D_c and D_t, then G and F (see the module docstring).

        Every returned value is this replica's share of a global-batch mean, except the
        gradient norms: each is the norm of this replica's gradient, so their sum over replicas
        is the mean over replicas of the per-replica-batch gradient norm.
        """
        config, vgg, average = self.config, self.vgg, self.average
        g_net, f_net = models["generator"], models["inverse_generator"]
        d_color, d_texture = models["color_discriminator"], models["texture_discriminator"]
        g_optimizer, d_optimizer = optimizers["g_optimizer"], optimizers["d_optimizer"]
        g_variables = g_net.trainable_weights + f_net.trainable_weights
        d_variables = d_color.trainable_weights + d_texture.trainable_weights
        num_g, num_d_color = len(g_net.trainable_weights), len(d_color.trainable_weights)

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
                d_color_loss = average(modified_discriminator_loss(real_color, fake_color))
                d_texture_loss = average(modified_discriminator_loss(real_texture, fake_texture))
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
                color = average(modified_generator_loss(color_prob))
                texture = average(modified_generator_loss(texture_prob))
                tv = average(total_variation_loss(enhanced))
                total = (config.content_weight * content + config.color_weight * color
                         + config.texture_weight * texture + config.tv_weight * tv)
                scaled = g_optimizer.scale_loss(total + config.identity_weight * identity)
            g_gradients = tape.gradient(scaled, g_variables)
            g_optimizer.apply_gradients(zip(g_gradients, g_variables))

            return {
                "generator_loss": total,  # equation 6; the identity term is reported apart
                "content_loss": content,
                "color_loss": color,
                "texture_loss": texture,
                "tv_loss": tv,
                **({"identity_loss": identity} if config.identity_weight > 0 else {}),
                "d_color_loss": d_color_loss,
                "d_texture_loss": d_texture_loss,
                "d_color_accuracy": average(discriminator_accuracy(real_color, fake_color)),
                "d_texture_accuracy": average(discriminator_accuracy(real_texture, fake_texture)),
                "grad_norm/generator": gradient_norm(g_optimizer, g_gradients[:num_g]),
                "grad_norm/inverse_generator": gradient_norm(g_optimizer, g_gradients[num_g:]),
                "grad_norm/color_discriminator":
                    gradient_norm(d_optimizer, d_gradients[:num_d_color]),
                "grad_norm/texture_discriminator":
                    gradient_norm(d_optimizer, d_gradients[num_d_color:]),
            }

        return train_step

    def build_inputs(self, spec):
        config, data = self.config, self.data
        return unpaired.make_unpaired_dataset(
            data.train_source, data.train_target, patch_size=config.patch_size,
            batch_size=spec.batch_size, seed=config.seed, start_step=spec.start_batch,
            num_shards=spec.num_shards, shard_index=spec.shard_index, augment=config.augment,
            decode_failures=spec.decode_failures, source_groups=data.source_groups,
            target_groups=data.target_groups)

    def make_summary_fn(self, models):
        """Writes the grid x | G(x) | F(G(x)) of a fixed batch of source patches."""
        config, data = self.config, self.data
        preview = first_element(unpaired.make_patch_dataset(
            data.train_source, patch_size=config.patch_size, batch_size=4, seed=config.seed + 1,
            augment=False, **data.source_groups))

        def write(step):
            enhanced = models["generator"](preview, training=False)
            reconstructed = models["inverse_generator"](enhanced, training=False)
            grid = tf.concat([preview, enhanced, reconstructed], axis=2)
            tf.summary.image("x | G(x) | F(G(x))", tf.clip_by_value(grid, 0.0, 1.0), step=step,
                             max_outputs=len(preview))

        return write

    def evaluate(self, models):
        """Section 4.1-4.2: PSNR/SSIM on aligned test pairs; entropy, PNG bits per pixel and
        the NIMA mean score on the evaluation photos; input against G(x)
        (`tools.evaluate_wespe`)."""
        config, data = self.config, self.data
        return evaluate_wespe.evaluate_wespe(
            models["generator"], data.test_pairs, data.eval_images,
            nima_model=load_nima(config), output_dir=os.path.join(config.model_dir, "eval"),
            save_images=config.eval_save_images,
            extras={"vgg_weights": config.vgg_weights or "random"})

    def export(self, models, train_step=None):
        """G with the enhancer signatures; the metadata says whether VGG-19 was random."""
        config = self.config
        return Export("enhancer", models["generator"], metadata={
            "system": "wespe",
            "paper": "Ignatov et al., WESPE: Weakly Supervised Photo Enhancer for Digital "
                     "Cameras",
            "vgg_weights": config.vgg_weights or "RANDOM",
            "warning": None if config.vgg_weights else RANDOM_VGG_WARNING,
            "train_step": train_step,
            "config": dataclasses.asdict(config),
        })
