"""EnhanceGAN as a task of the runner (Deng, Loy & Tang, "Aesthetic-Driven Image Enhancement by
Adversarial Learning", ACM MM 2018), trained in stages as the authors' Torch7 release does
(issue 16).

Stages (`--stage`); each runs in its own directory `<model_dir>/<stage>/` (checkpoints, final
weights, eval.json) and finds the stages before it there (or where `--critic_weights`,
`--crop_weights`, `--filter_weights` point):

  filter_fit  Section 3.2.2 (Fig. 2c): the three 3-layer CNNs phi_i learn to mimic the colour
              filters (`enhancers.enhancegan.filters.photo_filter`: cooling 80, warming 85,
              underwater) on the pixels of the training photos (mean squared error). Evaluated
              on the held-out photos: PSNR and mean absolute error (8-bit levels) of each
              network against its true filter, beside the unfiltered photo's.
  critic      Sections 3.3 and 4.1: the critic's body (ResNet-101, from --backbone_weights) and
              its 2-way fc learn good/bad with cross-entropy, class-balanced (`--critic_balance`);
              evaluated by the balanced accuracy on the held-out 10% (94.3% on CUHK-PQ in the
              paper), with each class's recall; on the demo set also the zoom check
              (`zoom_preference`: does the critic prefer the crop that removes margins, and
              only that one?).
  crop        Section 3.2.3: the WGAN with the generator's crop head alone; the colour stays as
              it is and the critic sees the lightness only (the release's `maskColor`:
              `critic(x, luminance_only=True)`).
  color       Section 3.2.1: heads ("color", "crop"), the crop head loaded from the crop stage
              and frozen (`--crop_weights=none`: no crop head); the critic sees colour.
  filters     Section 3.2.2: deep filtering, heads ("filters", "crop"); the filter CNNs from
              filter_fit and the crop head frozen.
  all         critic, crop, color in turn (the release's sequence); with --deep_filtering
              filter_fit first and filters last. Each stage runs its own --<stage>_steps
              (--train_steps is for a single stage) and only the last exports.

The GAN stages (crop, color, filters), per replica and runner step:
  1. the critic: L_D = E[f_W(good)] - E[f_W(output)] (equation 10; lower f_W is better) on a
     batch of good photos and G's outputs on the paired bad photos, RMSprop with 5e-5 on the
     head (2-way fc, PReLU, Linear(2, 1)) and --critic_body_multiplier x that (0.01: the
     paper's 5e-7) on the body, every critic weight clipped to [-critic_clip, critic_clip]
     after the update (2, the release's; WGAN's 0.01 would erase a pre-trained body), the
     rates divided by 10 every --critic_decay_epochs (4) epochs of the bad training photos;
  2. the generator, once the critic has had --critic_warmup_steps (50) updates: G predicts
     the operators' parameters from its frozen backbone, the operators make the output
     (`operators.enhance_batch`), and G minimises
        L_gan = f_W(output) (7), L_reg1 = |f_vgg(output) - f_vgg(input)|^2 on VGG-16 fc7 (8),
        L_reg2 = (f_W(output) - f_W(input))^2 where the output is rated worse (9, the paper's
        side; --hinge_side=release keeps the release's other half),
     balanced as the release does (--loss_balance=gradient): each term's gradient with
     respect to the output image, over each micro-batch, scaled to norm <= 1, the three
     summed and back-propagated to G's parameters (`tape.gradient(output, variables,
     output_gradients=...)`), the parameter gradient clipped at norm 100; or as the paper
     writes (--loss_balance=weighted): a weighted sum of the three terms.
  So a runner step is one critic update and, past the warm-up, one generator update: the
  release's generator iterations are the steps after the warm-up (crop 2400-5000 and colour
  3800 in the release; the presets take 3800 each). During the warm-up the generator's
  gradients are not even computed (its optimizer applies zeros, which move nothing).
  The critic runs in inference mode in these stages (batch norm keeps its pre-trained
  statistics; ours, the release does not say). The batch of 64 is the release's 8 x 8: each
  replica's batch is split into --accumulation_steps micro-batches whose parameter gradients
  are summed (with one replica and batch 64, exactly the release's 8 sub-batches of 8; with
  several replicas the clip at 100 applies to each replica's sum).

Networks: the critic is initialised from the critic stage; G's backbone is a frozen copy of the
critic's pre-trained body (the release), or of --backbone_weights (ImageNet ResNet-101) when
there is no critic stage (logged loudly). `--backbone=tiny` (`models.build_tiny_backbone`) stands
in for ResNet-101 in tests and the CPU demo. VGG-16 (fc7 for equation 8 and the pairing) and
ResNet-101 load local files only; without them the features are random and the run says so
loudly (RANDOM_VGG_WARNING), in the log and in the export's metadata.

Data (`--dataset`): CUHK-PQ (10% held out), AVA (good: top 30%, bad: mean < 5, the paper's
semantic tags, 20,000 bad; Val100 for evaluation), or the embedded demo set
(`datasets.enhancegan_demo`, CUHK-PQ's layout); `--critic_dataset` (default --dataset) is what
the critic and filter_fit stages learn on (CUHK-PQ in the paper). Every bad photo is paired with
its 5 nearest good photos in VGG-16 fc7 space (--pairing_features=thumbnail: 8x8 block means, a
cheap stand-in for the demo, whose good and bad photos are crops of the same few scenes),
computed once and cached in `<model_dir>/pairing.npz` (or read from --pairing_file). The
streams are `datasets.enhancegan`'s, resumable and sharded.

Evaluation and export of the GAN stages go through `enhancers.enhancegan.PhotoEnhancer` (the
parameters predicted at --image_size, applied to the photo at full size),
`tools.evaluate_enhancegan.evaluate_enhancegan` (Tables 1-3: the pre-trained critic's good
probability and NIMA's score of input and output, the crop against the CUHK cropping dataset,
and on the demo set PSNR against the clean originals and the crop's IoU with the subject) and
`tools.export.export_enhancegan`. The pre-training stages export nothing.

Not in the paper nor in the release, each a flag off in the paper and release presets, used by
the CPU demo (configs/enhancegan_demo.flags says why each was needed there):
  --head_norm=affine          the heads' scale and shift without instance normalisation, which
                              takes each photo's mean off every parameter map;
  --head_init=near_identity   G starts near the gentle end of every parameter range;
  --critic_score_init=margin  f_W starts as PReLU(bad logit) - PReLU(good logit), the
                              pre-trained verdict, instead of a random Linear(2, 1);
  --nocrop_luminance_only     the crop stage's critic sees colour;
  --feature_network=vgg16_block1 (or none)   a cheap stand-in for fc7 in equation 8, and
  --nocrop_feature_regulariser               equation 8 in the colour stages only;
  --critic_iterations         WGAN's n_critic (the release and the paper: 1);
  --global_statistics         the colour and filters heads also see the photo's colour
                              statistics (`models.global_statistics`);
  --parameter_ranges=inclusive  colour ranges that hold the identity
                              (`operators.INCLUSIVE_RANGES`);
  --good_identity_weight      CycleGAN's identity loss (Zhu et al. 2017) on the good photos:
                              the mean squared change G makes to a good photo (the crop stage:
                              its crop against the whole photo; the colour stages: its colours
                              under the same crop), a fourth term beside equations 7-9, so
                              that G learns to leave a photo that needs nothing as it is.
The pre-trained critic that evaluates the GAN stages sees photos at --image_size
(`CriticAtSize`; 224 in the presets, where it changes nothing).
"""
import dataclasses
import math
import os

import keras
import numpy as np
import tensorflow as tf
from absl import logging

import nima
from datasets import enhancegan as egan_data
from datasets import enhancegan_demo
from datasets import unpaired
from datasets.images import load_rgb8
from datasets.pipeline import first_element
from enhancers.enhancegan import PhotoEnhancer, network_view
from enhancers.enhancegan import filters as filter_ops
from enhancers.enhancegan import models as egan_models
from enhancers.enhancegan import operators
from enhancers.enhancegan.pooling import POOLINGS, TOP_K
from losses import fidelity, wasserstein
from nima.backbones import build_vgg16
from tools import report as reports
from tools.evaluate_enhancegan import attention_overlay, evaluate_enhancegan
from train.config import ConfigError, RunConfig, setting
from train.task import Export, Task, gradient_norm

STAGES = ("filter_fit", "critic", "crop", "color", "filters", "all")
GAN_STAGES = ("crop", "color", "filters")
PRETRAINING_STAGES = ("filter_fit", "critic")
DATASETS = ("cuhkpq", "ava", "demo")
BACKBONES = ("resnet101", "tiny")
PAIRING_FEATURES = ("vgg16_fc7", "thumbnail")
FEATURE_NETWORKS = ("vgg16_fc7", "vgg16_block1", "none")
LOSS_BALANCES = ("gradient", "weighted")
PRETRAIN_OPTIMIZERS = ("sgd", "adam", "rmsprop")
SCORE_INITS = ("random", "margin")
HEAD_INITS = ("release", "near_identity")
# --head_init=near_identity: each head channel's shift (raw value before the ranges' hardtanh),
# close to the end of the range that changes the photo least (not at it: hardtanh's gradient
# is 0 beyond it). Colour: alpha, beta, a, b, p at their low ends, q at its high end; crop:
# scales 0.96, no translation; filters: equal weights; score maps 0.
NEAR_IDENTITY_SHIFTS = {"color": (-0.9, -0.9, -0.9, -0.9, -0.9, 0.9, 0.0),
                        "crop": (0.9, 0.9, 0.0, 0.0, 0.0)}

CRITIC_WEIGHTS = "critic.weights.h5"
GENERATOR_WEIGHTS = "generator.weights.h5"
FILTER_WEIGHTS = "filters.weights.h5"
PAIRING_CACHE = "pairing.npz"
NONE = "none"
VGG_SIZE = 224  # VGG-16's fc6 is a 7x7 VALID convolution: fc7 needs 224 x 224
THUMBNAIL_SIZE = 64
RANDOM_VGG_WARNING = (
    "RANDOM VGG-16 FEATURES: no --vgg_weights was given, so the k-NN pairing and the feature "
    "regulariser (equation 8) use a randomly initialised VGG-16, not the ImageNet fc7 of the "
    "paper.")
RANDOM_BACKBONE_WARNING = (
    "RANDOM RESNET-101: no critic stage and no --backbone_weights, so the generator's frozen "
    "backbone and the critic's body hold random weights, not the paper's pre-trained "
    "network.")
NO_CRITIC_STAGE_WARNING = (
    "NO PRE-TRAINED CRITIC: {path} does not exist (run --stage=critic first, or give "
    "--critic_weights); the critic's body and the generator's frozen backbone start from "
    "--backbone_weights ({weights}) and the critic's head is random.")
TERMS = ("adversarial", "feature", "hinge")


@dataclasses.dataclass
class EnhanceganConfig(RunConfig):
    stage: str = setting("all", "critic, crop, color: the release's stages; filter_fit and "
                         "filters: deep filtering; all: critic, crop, color in turn (with "
                         "--deep_filtering also filter_fit first and filters last).",
                         choices=STAGES)
    deep_filtering: bool = setting(False, "--stage=all: also the deep-filtering enhancer "
                                   "(filter_fit first, filters last; section 3.2.2).")
    stage_root: str | None = setting(None, "The directory of every stage's directory. Leave "
                                     "unset: a run puts stage S in <model_dir>/S/ and sets it; "
                                     "when set, --model_dir is the stage's own directory.")
    # Steps: --train_steps for a single --stage, else each stage's own.
    train_steps: int | None = setting(None, "Steps of a single --stage (default: that stage's "
                                      "--<stage>_steps; a resumed run counts on). A GAN step "
                                      "is one critic update plus, past the warm-up, one "
                                      "generator update.", minimum=1)
    filter_fit_steps: int = setting(2000, "Steps of the filter_fit stage (ours).", minimum=1)
    critic_steps: int = setting(5000, "Steps of the critic's pre-training (ours: the paper "
                                "gives none).", minimum=1)
    crop_steps: int = setting(3850, "Steps of the crop stage: 50 warm-up + 3800 generator "
                              "iterations (release: 2400-5000).", minimum=1)
    color_steps: int = setting(3850, "Steps of the colour stage: 50 warm-up + 3800 generator "
                               "iterations (release: 3800).", minimum=1)
    filters_steps: int = setting(3850, "Steps of the deep-filtering stage (as colour).",
                                 minimum=1)
    batch_size: int = setting(64, "Global batch size (paper: 64 = 8 x 8 accumulated).",
                              minimum=1)
    # Data (section 4.1).
    dataset: str = setting("ava", "Good/bad photos of the GAN stages: CUHK-PQ, AVA (the "
                           "paper's) or the embedded demo set.", choices=DATASETS)
    critic_dataset: str | None = setting(None, "Good/bad photos of the critic and filter_fit "
                                         "stages (paper: cuhkpq; default --dataset).",
                                         choices=DATASETS)
    cuhkpq_dir: str | None = setting(None, "CUHK-PQ root: HighQuality/<category>/ and "
                                     "LowQuality/<category>/.")
    val_fraction: float = setting(egan_data.VAL_FRACTION, "Held-out fraction of the good/bad "
                                  "photos (paper: 10% of CUHK-PQ).", minimum=0.0,
                                  maximum=0.9)
    ava_txt: str | None = setting(None, "AVA.txt.")
    ava_image_dir: str | None = setting(None, "AVA's images (<id>.jpg).")
    ava_split_file: str | None = setting(None, "AVA's standard test list (default: the seeded "
                                         "80/20 split).")
    ava_tags: tuple[str, ...] | None = setting(
        egan_data.PAPER_TAGS, "Semantic tags a bad AVA photo must carry (ids, or names with "
        "--ava_tags_txt; paper: its nine classes); empty: every bad photo.")
    ava_tags_txt: str | None = setting(None, "AVA's tags.txt, for --ava_tags by name.")
    ava_max_bad: int | None = setting(egan_data.PAPER_NUM_BAD, "Bad AVA photos kept (paper: "
                                      "20,000).", minimum=1)
    ava_skip_missing: bool = setting(False, "Leave out AVA ids without an image file.")
    demo_dir: str | None = setting(None, "Where the demo set is built (default "
                                   "<model_dir>/demo_data).")
    demo_num_good: int = setting(enhancegan_demo.DEFAULT_NUM_GOOD, "Demo good photos.",
                                 minimum=2)
    demo_num_bad: int = setting(enhancegan_demo.DEFAULT_NUM_BAD, "Demo bad photos.", minimum=2)
    demo_num_test: int = setting(enhancegan_demo.DEFAULT_NUM_TEST, "Demo held-out test "
                                 "photos.", minimum=1)
    demo_image_size: int = setting(enhancegan_demo.DEFAULT_IMAGE_SIZE, "Side of the demo's "
                                   "good and bad photos.", minimum=32, maximum=300)
    demo_test_size: int = setting(enhancegan_demo.DEFAULT_TEST_SIZE, "Side of the demo's test "
                                  "photos.", minimum=32, maximum=300)
    demo_over_enhanced: float = setting(
        enhancegan_demo.DEFAULT_OVER_ENHANCED, "Ours: the fraction of the demo's bad photos "
        "that are over-enhanced (clipped contrast, over-saturation) instead of under-enhanced, "
        "so that the critic learns those are bad too (they are G's inputs as well; test photos "
        "never are).", minimum=0.0, maximum=1.0)
    image_size: int = setting(operators.TRAINING_SIZE, "Training side: the bad photo's crop, "
                              "the good photo and G's input (paper: 224).", minimum=16)
    resize_short: int | None = setting(None, "Short side a bad photo is resized to before its "
                                       "random crop (default image_size x 256 / 224; the "
                                       "release's 256).", minimum=16)
    pairing_file: str | None = setting(None, "A pairing to use (.npz cache or a .txt list; "
                                       "default: computed once into <model_dir>/pairing.npz).")
    pairing_features: str = setting("vgg16_fc7", "Features of the k-NN pairing (paper: VGG-16 "
                                    "fc7; thumbnail: 8x8 block means, for the demo).",
                                    choices=PAIRING_FEATURES)
    # Networks.
    backbone: str = setting("resnet101", "The generator's and critic's body (paper: "
                            "ResNet-101; tiny: a small CNN for tests and the CPU demo).",
                            choices=BACKBONES)
    backbone_weights: str | None = setting(None, "Keras' ImageNet ResNet-101 file (no top): the "
                                           "critic's starting body, and G's backbone when "
                                           "there is no critic stage.")
    tiny_channels: int = setting(32, "--backbone=tiny: its widest layer.", minimum=4)
    tiny_depth: int = setting(5, "--backbone=tiny: its stride-2 layers (5: 224 -> 7).",
                              minimum=1)
    input_space: str = setting("lab", "What the networks see: the release's normalised Lab, or "
                               "ImageNet's caffe input (for an ImageNet body).",
                               choices=egan_models.INPUT_SPACES)
    pooling: str = setting("top_k", "Head pooling: the release's top-K or the paper's "
                           "whole-map softmax.", choices=POOLINGS)
    top_k: int = setting(TOP_K, "K of the top-K pooling (paper: 3).", minimum=1)
    head_norm: str = setting("instance", "The heads' normalisation: instance (the release's) "
                             "or affine (ours: scale and shift without normalising, so that a "
                             "parameter can follow how faded or dark the whole photo is).",
                             choices=egan_models.HEAD_NORMS)
    head_init: str = setting("release", "The heads' start: release (N(0, 0.02) convolutions, "
                             "instance-norm scale U(0, 1), shift 0: parameters mid-range) or "
                             "near_identity (ours: shifts at the gentle end of every range, "
                             "scales / 10, so G starts close to leaving the photo as it is).",
                             choices=HEAD_INITS)
    global_statistics: bool = setting(False, "The colour and filters heads also see the "
                                      "photo's colour statistics (ours: mean, std and "
                                      "quantiles of its normalised L, A, B on every position "
                                      "of the feature map, so that G can tell how dark, flat "
                                      "or faded it is; use with --head_norm=affine).")
    parameter_ranges: str = setting("release", "The colour parameters' ranges: release "
                                    "(alpha, beta >= 0.05, b >= 0.01, q <= 0.99: every photo "
                                    "changes) or inclusive (ours: alpha, beta, b from 0, q up "
                                    "to 1, so that the identity is inside them).",
                                    choices=tuple(operators.PARAMETER_RANGES))
    filter_weighting: str = setting("softmax", "Deep filtering's weights w_i: softmax (ours, "
                                    "a convex blend) or linear (as predicted).",
                                    choices=filter_ops.FILTER_WEIGHTINGS)
    filter_width: int = setting(filter_ops.FILTER_WIDTH, "Width of the filter CNNs.",
                                minimum=1)
    filter_kernel_size: int = setting(1, "Kernel of the filter CNNs (1: pixel-wise, as the "
                                      "filters are).", minimum=1)
    filter_density: float = setting(filter_ops.DEFAULT_DENSITY, "The filters' density "
                                    "(Photoshop's default 25%).", above=0.0, maximum=1.0)
    vgg_weights: str | None = setting(None, "Local VGG-16 file with its fc layers (Keras' "
                                      "vgg16_weights_tf_dim_ordering_tf_kernels.h5) for fc7.")
    feature_network: str = setting("vgg16_fc7", "Equation 8's features (paper: VGG-16 fc7; "
                                   "ours: vgg16_block1, the spatial mean of the same VGG-16's "
                                   "block1_conv2 at any size, cheap enough for a CPU; none: "
                                   "no feature regulariser).", choices=FEATURE_NETWORKS)
    critic_weights: str | None = setting(None, "The pre-trained critic (default "
                                         "<model_dir>/critic/critic.weights.h5).")
    crop_weights: str | None = setting(None, "The crop stage's generator (default "
                                       "<model_dir>/crop/generator.weights.h5); 'none': the "
                                       "colour and filters stages without a crop head.")
    filter_weights: str | None = setting(None, "The fitted filter CNNs (default "
                                         "<model_dir>/filter_fit/filters.weights.h5).")
    # Filter fitting and critic pre-training (ours where the paper is silent).
    filter_learning_rate: float = setting(1e-3, "Adam rate of filter_fit.", above=0.0)
    pretrain_optimizer: str = setting("sgd", "The critic's pre-training optimizer (sgd: "
                                      "momentum 0.9).", choices=PRETRAIN_OPTIMIZERS)
    pretrain_learning_rate: float = setting(1e-3, "The critic's pre-training rate on its fc "
                                            "layer.", above=0.0)
    pretrain_body_multiplier: float = setting(0.1, "The pre-training rate of the body, as a "
                                              "multiple of --pretrain_learning_rate.",
                                              minimum=0.0)
    critic_balance: str = setting("sample", "Class balance of the pre-training: sample "
                                  "(alternate good and bad) or weight.",
                                  choices=egan_data.BALANCES)
    # The WGAN (sections 3.1-3.3, 4.1; the release).
    generator_learning_rate: float = setting(5e-5, "RMSprop rate of G (paper: 5e-5).",
                                             minimum=0.0)
    critic_learning_rate: float = setting(5e-5, "RMSprop rate of the critic's head (release: "
                                          "5e-5).", minimum=0.0)
    critic_body_multiplier: float = setting(0.01, "The critic body's rate as a multiple of "
                                            "--critic_learning_rate (0.01: the paper's 5e-7).",
                                            minimum=0.0)
    critic_score_init: str = setting("random", "The critic's Linear(2, 1) f_W at the start "
                                     "of a GAN stage: random (the release's Torch default) "
                                     "or margin (ours: f_W = PReLU(bad logit) - PReLU(good "
                                     "logit), so that f_W starts as the pre-trained judgement).",
                                     choices=SCORE_INITS)
    crop_luminance_only: bool = setting(True, "The crop stage's critic sees the lightness "
                                        "only (the release's maskColor); off: it sees colour "
                                        "(ours, the CPU demo's: its small critic never saw "
                                        "masked colour).")
    critic_clip: float = setting(egan_models.CRITIC_CLIP, "Critic weights clipped to [-c, c] "
                                 "after each step (release: 2; WGAN: 0.01).", above=0.0)
    critic_iterations: int = setting(1, "Critic updates per step, on the step's batch "
                                     "(release: 1; WGAN's n_critic: 5).", minimum=1)
    critic_warmup_steps: int = setting(50, "Critic updates before the first generator update "
                                       "(release: 50).", minimum=0)
    critic_decay_epochs: float = setting(4.0, "Critic rates / 10 every this many epochs of the "
                                         "bad training photos (release: 4; 0: never).",
                                         minimum=0.0)
    accumulation_steps: int = setting(8, "Micro-batches per replica batch whose gradients are "
                                      "summed (release: 8 of 8).", minimum=1)
    loss_balance: str = setting("gradient", "gradient: each term's image gradient to norm "
                                "<= 1, summed (the release); weighted: a weighted sum (the "
                                "paper).", choices=LOSS_BALANCES)
    adversarial_weight: float = setting(1.0, "--loss_balance=weighted: weight of L_gan (7).",
                                        minimum=0.0)
    feature_weight: float = setting(1.0, "--loss_balance=weighted: weight of L_reg1 (8).",
                                    minimum=0.0)
    hinge_weight: float = setting(1.0, "--loss_balance=weighted: weight of L_reg2 (9).",
                                  minimum=0.0)
    good_identity_weight: float = setting(0.0, "Ours, not the paper's (0 = off): weight of an "
                                          "identity term on the good photos, the mean squared "
                                          "change G makes to one (its crop, or its colours "
                                          "under that crop; CycleGAN's identity loss); with "
                                          "--loss_balance=gradient its image gradient is "
                                          "normalised like the others', then weighted.",
                                          minimum=0.0)
    hinge_side: str = setting("paper", "Equation 9's penalised half: paper (output rated worse "
                              "than its input) or release (the other).",
                              choices=wasserstein.HINGE_SIDES)
    crop_feature_regulariser: bool = setting(True, "Equation 8 in the crop stage too (the "
                                             "release's); off: colour stages only (ours: a "
                                             "feature stand-in less tolerant of crops than fc7 "
                                             "holds the crop back).")
    feature_reduction: str = setting("mean", "Equation 8 over the 4096 features: mean (the "
                                     "release's MSECriterion) or sum (the paper's norm).",
                                     choices=wasserstein.FEATURE_REDUCTIONS)
    term_gradient_norm: float = setting(wasserstein.TERM_GRADIENT_NORM, "--loss_balance="
                                        "gradient: each term's image gradient at most this "
                                        "norm (release: 1).", above=0.0)
    balance_per_example: bool = setting(False, "Normalise each image's term gradient rather "
                                        "than the micro-batch's (the release: the batch's).")
    generator_gradient_clip: float = setting(wasserstein.PARAMETER_GRADIENT_NORM, "G's "
                                             "parameter gradient clipped to this global norm "
                                             "(release: 100; 0: never).", minimum=0.0)
    # Evaluation.
    eval_dir: str | None = setting(None, "Photos to evaluate the GAN stages on (default: "
                                   "Val100 for AVA, the held-out bad photos otherwise).")
    eval_max_images: int | None = setting(None, "Evaluate at most this many photos.",
                                          minimum=0)
    eval_save_images: int = setting(4, "Photos written input | output to <stage>/eval.",
                                    minimum=0)
    eval_batch_size: int = setting(16, "Batch of the pre-training stages' evaluation.",
                                   minimum=1)
    cropping_file: str | None = setting(None, "CUHK cropping dataset's 'Cropping "
                                        "parameters.txt' (Table 3).")
    cropping_dir: str | None = setting(None, "Its images (<category>/<file>).")
    nima_weights: str | None = setting(None, "NIMA weights for the evaluation's aesthetic "
                                       "score, or 'demo' for nima.demo_model().")
    nima_backbone: str = setting("mobilenet", "Backbone of --nima_weights.",
                                 choices=nima.BACKBONES)

    def __post_init__(self):
        super().__post_init__()
        if self.stage == "all" and self.train_steps is not None and self.stage_root is None:
            raise ConfigError("--train_steps is the length of one --stage; with --stage=all "
                              "each stage runs its --<stage>_steps (--critic_steps, "
                              "--crop_steps, ...).")
        if self.stage_root is not None and self.stage == "all":
            raise ConfigError("--stage_root is set by a run for one stage at a time; give a "
                              "--stage other than all with it (or leave it unset).")
        if self.batch_size % self.accumulation_steps:
            raise ConfigError(f"--batch_size={self.batch_size} must be divisible by "
                              f"--accumulation_steps={self.accumulation_steps}.")

    # -- where things are ---------------------------------------------------------------------
    @property
    def root(self):
        """The directory of every stage's directory (`stage_root`, else model_dir)."""
        return self.stage_root or self.model_dir

    def stage_path(self, stage, file_name):
        return os.path.join(self.root, stage, file_name)

    def critic_file(self):
        return self.critic_weights or self.stage_path("critic", CRITIC_WEIGHTS)

    def crop_file(self):
        """The crop stage's generator weights, or None for --crop_weights=none."""
        if self.crop_weights and self.crop_weights.lower() == NONE:
            return None
        return self.crop_weights or self.stage_path("crop", GENERATOR_WEIGHTS)

    def filter_file(self):
        return self.filter_weights or self.stage_path("filter_fit", FILTER_WEIGHTS)

    def demo_root(self):
        return self.demo_dir or os.path.join(self.root, "demo_data")

    def good_bad_dataset(self):
        """The dataset this stage learns from."""
        if self.stage in PRETRAINING_STAGES:
            return self.critic_dataset or self.dataset
        return self.dataset


def stage_sequence(config):
    """The stages `config.stage` stands for, in order."""
    if config.stage != "all":
        return (config.stage,)
    if config.deep_filtering:
        return ("filter_fit", "critic", "crop", "color", "filters")
    return ("critic", "crop", "color")


def stage_configs(config):
    """One config per stage of `config` (module docstring): model_dir <root>/<stage>, the
    stage's steps, only the last GAN stage exporting; --mode=export exports the last stage."""
    if config.stage_root is not None:
        if config.train_steps is None:
            config = dataclasses.replace(
                config, train_steps=getattr(config, f"{config.stage}_steps"))
        return [config]
    stages = stage_sequence(config)
    if config.mode == "export":
        stages = stages[-1:]
    configs = []
    for index, stage in enumerate(stages):
        last = index == len(stages) - 1
        steps = config.train_steps or getattr(config, f"{stage}_steps")
        configs.append(dataclasses.replace(
            config, stage=stage, stage_root=config.model_dir, train_steps=steps,
            model_dir=os.path.join(config.model_dir, stage),
            export_dir=config.export_dir if last else None,
            export_version=config.export_version if last else None))
    return configs


# --------------------------------------------------------------------------------- networks


def build_backbone(config, weights=None):
    if config.backbone == "resnet101":
        return egan_models.build_resnet101(weights)
    return egan_models.build_tiny_backbone(config.tiny_channels, config.tiny_depth)


def _built(model, config):
    model(tf.zeros([1, config.image_size, config.image_size, 3]), training=False)
    return model


def build_critic(config, backbone_weights=None):
    return _built(egan_models.EnhanceGANCritic(build_backbone(config, backbone_weights),
                                               input_space=config.input_space, name="critic"),
                  config)


def build_generator(config, heads):
    generator = _built(egan_models.EnhanceGANGenerator(
        build_backbone(config), heads=heads, pooling=config.pooling, top_k=config.top_k,
        filter_weighting=config.filter_weighting, input_space=config.input_space,
        head_norm=config.head_norm, global_statistics=config.global_statistics,
        parameter_ranges=config.parameter_ranges, name="generator"), config)
    if config.head_init == "near_identity":
        for name, head in generator.parameter_heads.items():
            scale, shift = head.norm.get_weights()
            shift = np.asarray(NEAR_IDENTITY_SHIFTS.get(name, np.zeros_like(shift)), np.float32)
            head.norm.set_weights([scale * 0.1, shift])
    return generator


class FilterBank(keras.Model):
    """The n filter CNNs phi_i (section 3.2.2) in one model, for one weights file: images ->
    a list of the n filtered images. `networks` are the phi_i themselves."""

    def __init__(self, names=filter_ops.FILTER_NAMES, width=filter_ops.FILTER_WIDTH,
                 kernel_size=1, **kwargs):
        super().__init__(**kwargs)
        self.filter_names = tuple(names)
        self.networks = [filter_ops.build_filter_network(f"filter_{name}", width, kernel_size)
                         for name in self.filter_names]
        # Attributes of their own: tf.train.Checkpoint does not see layers in a list of a
        # Keras 3 model (see `models.EnhanceGANGenerator`).
        for name, network in zip(self.filter_names, self.networks):
            setattr(self, f"filter_{name}", network)

    def call(self, images):
        return [network(images) for network in self.networks]


def build_filter_bank(config):
    bank = FilterBank(width=config.filter_width, kernel_size=config.filter_kernel_size,
                      name="filter_bank")
    bank(tf.zeros([1, 8, 8, 3]))
    return bank


def critic_parts(critic):
    """(head variables, body variables) of the critic's trainable weights."""
    body = {id(v) for v in critic.backbone.trainable_weights}
    head = [v for v in critic.trainable_weights if id(v) not in body]
    return head, list(critic.backbone.trainable_weights)


def stage_heads(config):
    """The generator's heads in a GAN stage (module docstring)."""
    if config.stage == "crop":
        return ("crop",)
    crop = ("crop",) if config.crop_file() is not None else ()
    return ("color" if config.stage == "color" else "filters",) + crop


def load_vgg(config):
    """VGG-16 to fc7 (frozen), from --vgg_weights; random weights said loudly."""
    if config.vgg_weights is None:
        logging.warning("*" * 80)
        logging.warning(RANDOM_VGG_WARNING)
        logging.warning("*" * 80)
    vgg = build_vgg16(config.vgg_weights)
    vgg.trainable = False
    return vgg


def feature_extractor(config):
    """Equation 8's features (`--feature_network`): images in [0, 1] -> (b, d), or None."""
    if config.feature_network == "none":
        return None
    vgg = load_vgg(config)
    if config.feature_network == "vgg16_fc7":
        return lambda images: fc7_features(vgg, images)
    block1 = keras.Model(vgg.input, vgg.get_layer("block1_conv2").output, name="vgg16_block1")
    block1.trainable = False

    def features(images):
        return tf.reduce_mean(tf.cast(block1(tf.cast(images, tf.float32), training=False),
                                      tf.float32), axis=[1, 2])

    return features


def fc7_features(vgg, images):
    """VGG-16 fc7 of RGB images in [0, 1], resized to 224 x 224 when they are not: (b, 4096)."""
    images = tf.cast(images, tf.float32)
    if images.shape[1] != VGG_SIZE or images.shape[2] != VGG_SIZE:
        images = tf.image.resize(images, (VGG_SIZE, VGG_SIZE), method="bilinear")
    return tf.reduce_mean(tf.cast(vgg(images, training=False), tf.float32), axis=[1, 2])


def load_nima(config):
    if not config.nima_weights:
        return None
    return nima.load_nima_model(config.nima_weights, config.nima_backbone)[0]


# --------------------------------------------------------------------------------- data


@dataclasses.dataclass
class EnhanceganData:
    """A stage's data: `train` and `val` GoodBad sets, the evaluation photos, the pairing (GAN
    stages), the demo set's root (--dataset=demo) and the cropping records (Table 3)."""
    train: object
    val: object
    eval_images: list
    pairing: object = None
    demo_root: str | None = None
    cropping_records: list | None = None


def load_good_bad(config, dataset):
    """(train GoodBad, val GoodBad, evaluation photos, demo root or None) of `dataset`."""
    demo_root = None
    if dataset == "cuhkpq":
        if not config.cuhkpq_dir:
            raise ValueError("--dataset=cuhkpq needs --cuhkpq_dir (HighQuality/ and "
                             "LowQuality/ folders).")
        train, val = egan_data.load_cuhkpq(config.cuhkpq_dir, val_fraction=config.val_fraction,
                                           seed=config.seed)
        eval_images = list(val.bad.paths)
    elif dataset == "ava":
        if not (config.ava_txt and config.ava_image_dir):
            raise ValueError("--dataset=ava needs --ava_txt and --ava_image_dir.")
        good_bad, test = egan_data.load_ava_good_bad(
            config.ava_txt, config.ava_image_dir, split_file=config.ava_split_file,
            seed=config.seed, skip_missing=config.ava_skip_missing,
            tags=list(config.ava_tags) if config.ava_tags else None,
            tags_txt=config.ava_tags_txt, max_bad=config.ava_max_bad)
        train, val = egan_data.split_good_bad(good_bad, val_fraction=config.val_fraction,
                                              seed=config.seed)
        eval_images = list(egan_data.val100(test, seed=config.seed).paths)
    elif dataset == "demo":
        demo_root = enhancegan_demo.build_enhancegan_demo(
            config.demo_root(), image_size=config.demo_image_size,
            test_size=config.demo_test_size, num_good=config.demo_num_good,
            num_bad=config.demo_num_bad, num_test=config.demo_num_test, seed=config.seed,
            over_enhanced=config.demo_over_enhanced).root
        train, val = egan_data.load_cuhkpq(demo_root, val_fraction=config.val_fraction,
                                           seed=config.seed)
        eval_images = list(val.bad.paths)
    else:
        raise ValueError(f"Unknown --dataset={dataset!r}; choose one of {DATASETS}.")
    return train, val, eval_images, demo_root


def pairing_for(config, good_bad):
    """The k-NN pairing of `good_bad` (module docstring): --pairing_file, else computed once
    into <root>/pairing.npz."""
    if config.pairing_file:
        return egan_data.read_pairing(config.pairing_file)
    cache = os.path.join(config.root, PAIRING_CACHE)
    if config.pairing_features == "thumbnail":
        return egan_data.pair_good_bad(good_bad, egan_data.thumbnail_features,
                                       feature_id="thumbnail8", cache_path=cache,
                                       image_size=THUMBNAIL_SIZE)
    vgg = load_vgg(config)
    weights = os.path.basename(config.vgg_weights) if config.vgg_weights else "random"
    return egan_data.pair_good_bad(
        good_bad, lambda images: fc7_features(vgg, tf.constant(images)).numpy(),
        feature_id=f"vgg16_fc7:{weights}", cache_path=cache, image_size=VGG_SIZE)


def load_data(config):
    """The stage's `EnhanceganData`; builds the demo set and the pairing on first use."""
    dataset = config.good_bad_dataset()
    train, val, eval_images, demo_root = load_good_bad(config, dataset)
    if config.eval_dir:
        eval_images = unpaired.list_images(config.eval_dir)
    if config.eval_max_images is not None:
        eval_images = eval_images[:config.eval_max_images]
    data = EnhanceganData(train, val, eval_images, demo_root=demo_root)
    if config.stage in GAN_STAGES:
        data.pairing = pairing_for(config, train)
        if config.cropping_file:
            from datasets import cropping
            data.cropping_records = cropping.load_cropping_dataset(
                config.cropping_file, config.cropping_dir or os.path.dirname(
                    config.cropping_file), skip_missing=True)
    logging.info("EnhanceGAN %s stage on %s: %d good + %d bad training photos, %d + %d held "
                 "out, %d evaluation photos", config.stage, dataset, len(train.good),
                 len(train.bad), len(val.good), len(val.bad), len(eval_images))
    return data


# --------------------------------------------------------------------------------- steps


def replicas():
    return tf.distribute.get_strategy().num_replicas_in_sync


def split_micro_batches(batch, steps):
    """The i-th of `steps` equal micro-batches of each tensor in `batch` (a tuple)."""
    size = tf.shape(batch[0])[0] // steps

    def micro(index):
        return tuple(x[index * size:(index + 1) * size] for x in batch)

    return micro


def accumulate(fn, batch, steps, variables, sums=(), maxima=()):
    """Runs `fn(micro_batch) -> (gradients, values)` on each of `steps` micro-batches of
    `batch` in a tf.while_loop: (summed gradients, values) where the names in `sums` are
    summed and those in `maxima` are the largest over the micro-batches."""
    if steps == 1:
        return fn(batch)
    micro = split_micro_batches(batch, steps)

    def body(index, gradients, values):
        new_gradients, new_values = fn(micro(index))
        gradients = [a + tf.cast(g, a.dtype) for a, g in zip(gradients, new_gradients)]
        values = {k: (values[k] + new_values[k]) if k in sums
                  else tf.maximum(values[k], new_values[k]) for k in values}
        return index + 1, gradients, values

    zeros = [tf.zeros(v.shape, v.dtype) for v in variables]
    start = {k: tf.constant(0.0) for k in (*sums, *maxima)}
    _, gradients, values = tf.while_loop(lambda index, *_: index < steps, body,
                                         (tf.constant(0), zeros, start))
    return gradients, values


def scale_to_norm(gradients, optimizer, max_norm):
    """`gradients` scaled to global norm `max_norm` where theirs (unscaled by loss scaling) is
    larger; (gradients, the norm before)."""
    norm = gradient_norm(optimizer, gradients)
    if not max_norm:
        return gradients, norm
    factor = tf.where(norm > max_norm, max_norm / tf.maximum(norm, 1e-12), 1.0)
    return [g * factor for g in gradients], norm


def _apply_two(tape_gradient, loss, groups):
    """Gradients of `loss` for each (optimizer, variables) group, each with its own loss scale,
    applied; returns the gradients. `tape_gradient(target, variables)`."""
    out = []
    for optimizer, variables in groups:
        gradients = tape_gradient(optimizer.scale_loss(loss), variables)
        optimizer.apply_gradients(zip(gradients, variables))
        out.append(gradients)
    return out


class CriticAtSize:
    """A critic seen at the size it was trained at: `tools.evaluate_enhancegan` shows a critic
    the photo's 224 x 224 view (`network_view`); at another --image_size (the demo's 64) that
    view is resized to it, so the critic judges photos as it learnt to."""

    def __init__(self, critic, size):
        self.critic = critic
        self.size = int(size)

    def __call__(self, images, training=False):
        images = tf.convert_to_tensor(images, tf.float32)
        if images.shape[1] != self.size or images.shape[2] != self.size:
            images = network_view(images, self.size)
        return self.critic(images, training=training)


ZOOM_GROUPS = ("margin", "no_margin", "good")  # datasets.enhancegan_demo.zoom_boxes
ZOOM_METRICS = {
    "zoom_preferred_margin": "fraction of the held-out bad photos with margins whose subject "
                             "crop the critic rates better (P(good)) than the whole photo; "
                             "higher is better (what the crop stage should learn)",
    "zoom_preferred_no_margin": "the same for a central 3/4 crop of the bad photos without "
                                "margins; lower is better (nothing to crop)",
    "zoom_preferred_good": "the same for a central 3/4 crop of the good photos; lower is "
                           "better",
}


def zoom_preference(good_probability, paths, boxes, size):
    """The critic's zoom check on the demo set: does it reward the crop that removes margins,
    and only that one? For each group of `datasets.enhancegan_demo.zoom_boxes` ("margin",
    "no_margin", "good"), the fraction of its photos whose box, resized to size x size, gets
    a higher `good_probability` (float32 [n, size, size, 3] in [0, 1] -> [n]) than the whole
    photo resized likewise (as the critic's evaluation stream shows a square photo); NaN for
    a group without photos. Returns {"zoom_preferred_<group>": fraction}."""
    def resized(image):
        return tf.image.resize(image, (size, size), method="bilinear", antialias=True)

    wholes, crops, groups = [], [], []
    for path, (group, (y1, y2, x1, x2)) in zip(paths, boxes):
        image = tf.image.convert_image_dtype(load_rgb8(path), tf.float32)
        wholes.append(resized(image))
        crops.append(resized(image[y1:y2, x1:x2]))
        groups.append(group)
    groups = np.asarray(groups)
    preferred = np.zeros(len(groups), bool)
    for start in range(0, len(groups), 64):
        whole = good_probability(tf.stack(wholes[start:start + 64]))
        crop = good_probability(tf.stack(crops[start:start + 64]))
        preferred[start:start + 64] = np.asarray(crop) > np.asarray(whole)
    return {f"zoom_preferred_{group}": (float(np.mean(preferred[groups == group]))
                                        if np.any(groups == group) else math.nan)
            for group in ZOOM_GROUPS}


class EnhanceganTask(Task):
    name = "enhancegan"
    config_class = EnhanceganConfig

    @classmethod
    def stage_configs(cls, config):
        return stage_configs(config)

    @property
    def final_weights(self):
        stage = self.config.stage
        if stage == "filter_fit":
            return {"filter_bank": FILTER_WEIGHTS}
        if stage == "critic":
            return {"critic": CRITIC_WEIGHTS}
        return {"generator": GENERATOR_WEIGHTS, "critic": CRITIC_WEIGHTS}

    def load_data(self):
        """The stage's photos (`load_data`)."""
        return load_data(self.config)

    # -- models ---------------------------------------------------------------------------------
    def build_models(self, training):
        """filter_fit: the filter bank; critic: the critic; GAN stages: G and the critic (and the
        frozen filter bank in the filters stage). For training, the earlier stages' weights are
        loaded and the frozen feature network built (module docstring)."""
        config = self.config
        stage = config.stage
        if stage == "filter_fit":
            return {"filter_bank": build_filter_bank(config)}
        if stage == "critic":
            weights = config.backbone_weights if training else None
            if training and config.backbone == "resnet101" and weights is None:
                logging.warning(RANDOM_BACKBONE_WARNING)
            return {"critic": build_critic(config, weights)}
        if stage not in GAN_STAGES:
            raise ValueError(f"--stage={stage}: run it through train.runner.run, which splits "
                             "--stage=all into its stages.")
        generator = build_generator(config, stage_heads(config))
        critic = build_critic(config)
        models = {"generator": generator, "critic": critic}
        self.filter_bank = None
        if stage == "filters":
            path = config.filter_file()
            if not os.path.exists(path):
                raise FileNotFoundError(f"The filters stage needs the fitted filter CNNs: {path} "
                                        "does not exist (run --stage=filter_fit, or give "
                                        "--filter_weights).")
            self.filter_bank = build_filter_bank(config)
            self.filter_bank.load_weights(path)
            self.filter_bank.trainable = False
        if "crop" in generator.parameter_heads and stage != "crop":
            generator.parameter_heads["crop"].trainable = False
        if training:
            self._load_earlier_stages(generator, critic)
            self.features = (None if stage == "crop" and not config.crop_feature_regulariser
                             else feature_extractor(config))
        return models

    def _load_earlier_stages(self, generator, critic):
        config = self.config
        path = config.critic_file()
        if os.path.exists(path):
            critic.load_weights(path)
            logging.info("Critic from the critic stage: %s", path)
            if config.critic_score_init == "margin":
                critic.score.set_weights([np.array([[1.0], [-1.0]], np.float32),
                                          np.zeros([1], np.float32)])
        else:
            if config.critic_weights:
                raise FileNotFoundError(f"--critic_weights={path} does not exist.")
            message = NO_CRITIC_STAGE_WARNING.format(
                path=path, weights=config.backbone_weights or "none: random")
            logging.warning("*" * 80)
            logging.warning(message)
            logging.warning("*" * 80)
            if config.backbone == "resnet101":
                if config.backbone_weights is None:
                    logging.warning(RANDOM_BACKBONE_WARNING)
                else:
                    critic.backbone.set_weights(
                        egan_models.build_resnet101(config.backbone_weights).get_weights())
        # G's backbone: a frozen copy of the critic's (pre-trained) body.
        generator.backbone.set_weights(critic.backbone.get_weights())
        if "crop" in generator.parameter_heads and config.stage != "crop":
            crop_path = config.crop_file()
            if not os.path.exists(crop_path):
                raise FileNotFoundError(
                    f"The {config.stage} stage keeps the crop stage's crop head: {crop_path} "
                    "does not exist (run --stage=crop first, give --crop_weights, or "
                    "--crop_weights=none for no crop).")
            cropper = build_generator(config, ("crop",))
            cropper.load_weights(crop_path)
            generator.parameter_heads["crop"].set_weights(
                cropper.parameter_heads["crop"].get_weights())
            logging.info("Crop head from the crop stage (frozen): %s", crop_path)

    def build_optimizers(self, models):
        config = self.config
        stage = config.stage
        if stage == "filter_fit":
            bank = models["filter_bank"]
            return {"filter_optimizer": (keras.optimizers.Adam(config.filter_learning_rate),
                                         bank.trainable_weights)}
        head, body = critic_parts(models["critic"])
        if stage == "critic":
            head = list(models["critic"].classifier.trainable_weights)  # PReLU, f_W: unused
            def make(rate):
                if config.pretrain_optimizer == "sgd":
                    return keras.optimizers.SGD(rate, momentum=0.9)
                if config.pretrain_optimizer == "adam":
                    return keras.optimizers.Adam(rate)
                return keras.optimizers.RMSprop(rate)
            rate = config.pretrain_learning_rate
            return {"critic_head_optimizer": (make(rate), head),
                    "critic_body_optimizer": (make(rate * config.pretrain_body_multiplier),
                                              body)}
        # Torch's optim.rmsprop: alpha 0.99, epsilon 1e-8.
        def rmsprop(rate):
            return keras.optimizers.RMSprop(rate, rho=0.99, epsilon=1e-8)

        rate = config.critic_learning_rate
        decay_steps = 0
        if config.critic_decay_epochs > 0:
            epoch = max(1, math.ceil(len(self.data.train.bad) / config.batch_size))
            # The schedules count critic updates (the optimizers' iterations).
            decay_steps = int(round(config.critic_decay_epochs * epoch
                                    * config.critic_iterations))

        def critic_rate(multiplier):
            if decay_steps < 1:
                return rate * multiplier
            return keras.optimizers.schedules.ExponentialDecay(
                rate * multiplier, decay_steps, 0.1, staircase=True)

        return {
            "generator_optimizer": (rmsprop(config.generator_learning_rate),
                                    models["generator"].trainable_weights),
            "critic_head_optimizer": (rmsprop(critic_rate(1.0)), head),
            "critic_body_optimizer": (rmsprop(critic_rate(config.critic_body_multiplier)),
                                      body),
        }

    def make_train_step(self, models, optimizers):
        stage = self.config.stage
        if stage == "filter_fit":
            return self._filter_fit_step(models, optimizers)
        if stage == "critic":
            return self._critic_step(models, optimizers)
        return self._gan_step(models, optimizers)

    def _filter_fit_step(self, models, optimizers):
        """Each filter CNN against its true filter: mean squared error on the batch's pixels."""
        config, average = self.config, self.average
        bank, optimizer = models["filter_bank"], optimizers["filter_optimizer"]
        variables = bank.trainable_weights

        def train_step(batch):
            images = batch[0]
            targets = filter_ops.apply_named_filters(images, bank.filter_names,
                                                     config.filter_density)
            with tf.GradientTape() as tape:
                outputs = bank(images, training=True)
                errors = [tf.reduce_mean(tf.square(tf.cast(o, tf.float32) - t), axis=[1, 2, 3])
                          for o, t in zip(outputs, targets)]
                loss = average(tf.add_n(errors))
                scaled = optimizer.scale_loss(loss)
            gradients = tape.gradient(scaled, variables)
            optimizer.apply_gradients(zip(gradients, variables))
            values = {"loss": loss, "grad_norm": gradient_norm(optimizer, gradients)}
            for name, error in zip(bank.filter_names, errors):
                values[f"mse/{name}"] = average(error)
            return values

        return train_step

    def _critic_step(self, models, optimizers):
        """Good/bad cross-entropy of the 2-way fc (section 3.3), weighted per example."""
        average = self.average
        critic = models["critic"]
        head, body = list(critic.classifier.trainable_weights), critic_parts(critic)[1]
        groups = [(optimizers["critic_head_optimizer"], head),
                  (optimizers["critic_body_optimizer"], body)]

        def train_step(batch):
            images, labels, weights = batch
            with tf.GradientTape(persistent=True) as tape:
                logits = critic(images, training=True)["logits"]
                cross_entropy = tf.nn.sparse_softmax_cross_entropy_with_logits(
                    tf.cast(labels > 0.5, tf.int32), logits)
                loss = average(weights * cross_entropy)
            head_gradients, body_gradients = _apply_two(tape.gradient, loss, groups)
            del tape
            good = egan_models.good_probability(logits) > 0.5
            correct = tf.cast(tf.equal(good, labels > 0.5), tf.float32)
            return {"loss": loss, "accuracy": average(correct),
                    "grad_norm/head": gradient_norm(groups[0][0], head_gradients) / replicas(),
                    "grad_norm/body": gradient_norm(groups[1][0], body_gradients) / replicas()}

        return train_step

    def _gan_step(self, models, optimizers):
        """One critic update and, past the warm-up, one generator update (module docstring)."""
        config, average = self.config, self.average
        generator, critic = models["generator"], models["critic"]
        features = self.features
        luminance_only = config.stage == "crop" and config.crop_luminance_only
        filter_networks = self.filter_bank.networks if self.filter_bank is not None else None
        head, body = critic_parts(critic)
        critic_variables = head + body
        head_optimizer = optimizers["critic_head_optimizer"]
        body_optimizer = optimizers["critic_body_optimizer"]
        g_optimizer = optimizers["generator_optimizer"]
        g_variables = generator.trainable_weights
        steps = config.accumulation_steps
        size = config.image_size
        gradient_balance = config.loss_balance == "gradient"
        weights = (config.adversarial_weight, config.feature_weight, config.hinge_weight)
        good_identity = config.good_identity_weight > 0

        def enhance(bad):
            return operators.enhance_batch(bad, generator(bad, training=True), size,
                                           filter_networks)

        def good_identity_gradients(good):
            """The identity term (--good_identity_weight) and its gradients for G: the change
            G makes to good photos (of --image_size, resized whole): in the crop stage its crop
            against the whole photo, in the colour stages its colour operators (or filters)
            against the same crop of the photo unchanged."""
            with tf.GradientTape() as tape:
                parameters = generator(good, training=True)
                output = operators.enhance_batch(good, parameters, size, filter_networks)
            if config.stage == "crop":
                unchanged = good
            else:
                crop_only = {name: value for name, value in parameters.items()
                             if name.startswith("crop_")}
                unchanged = tf.stop_gradient(operators.enhance_batch(good, crop_only, size))
            with tf.GradientTape() as term_tape:
                term_tape.watch(output)
                per_example = fidelity.l2_loss(unchanged, output)
                if gradient_balance:  # summed over pixels: full strength (norm 1) until the
                    # change is small, like the per-photo adversarial and hinge terms
                    target = tf.reduce_mean(tf.reduce_sum(tf.square(output - unchanged),
                                                          axis=[1, 2, 3]))
                else:
                    target = average(per_example)
            image_gradient = term_tape.gradient(target, output)
            if gradient_balance:
                image_gradient = wasserstein.normalise_gradient(
                    image_gradient, config.term_gradient_norm, config.balance_per_example)
            image_gradient = (config.good_identity_weight * image_gradient
                              * g_optimizer.scale_loss(tf.constant(1.0)))
            gradients = tape.gradient(output, g_variables, output_gradients=image_gradient)
            return gradients, per_example

        def f_w(images):
            return critic(images, training=False, luminance_only=luminance_only)["f_w"]

        def critic_micro(micro):
            bad, good = micro
            output = tf.stop_gradient(enhance(bad))
            with tf.GradientTape() as tape:
                good_f_w, output_f_w = f_w(good), f_w(output)
                loss = average(wasserstein.enhancegan_critic_loss(good_f_w, output_f_w))
                scaled = head_optimizer.scale_loss(loss)
            gradients = tape.gradient(scaled, critic_variables)
            gradients = [tf.zeros(v.shape, v.dtype) if g is None else g
                         for g, v in zip(gradients, critic_variables)]
            return gradients, {"critic_loss": loss, "f_w/good": average(good_f_w),
                               "f_w/output": average(output_f_w)}

        def generator_micro(micro):
            bad, good = micro
            input_f_w = tf.stop_gradient(f_w(bad))
            input_features = (tf.stop_gradient(features(bad)) if features is not None
                              else None)
            with tf.GradientTape() as tape:
                output = enhance(bad)
            with tf.GradientTape(persistent=True) as terms_tape:
                terms_tape.watch(output)
                output_f_w = f_w(output)
                per_example = {
                    "adversarial": wasserstein.enhancegan_generator_loss(output_f_w),
                    "hinge": wasserstein.hinge_regulariser(output_f_w, input_f_w,
                                                           config.hinge_side)}
                if features is not None:
                    per_example["feature"] = wasserstein.feature_regulariser(
                        features(output), input_features, config.feature_reduction)
                else:
                    per_example["feature"] = tf.zeros_like(output_f_w)
                if gradient_balance:  # the release: each term the micro-batch's mean
                    targets = {name: tf.reduce_mean(value)
                               for name, value in per_example.items()}
                else:  # the paper: one weighted sum, a share of the global-batch mean
                    targets = {"weighted": average(wasserstein.weighted_generator_loss(
                        per_example["adversarial"], per_example["feature"],
                        per_example["hinge"], weights))}
            raw = {name: terms_tape.gradient(target, output)
                   for name, target in targets.items()}
            del terms_tape
            values = {f"generator/{name}": average(value) for name, value in per_example.items()}
            values["f_w/input"] = average(input_f_w)
            if gradient_balance:
                active = [name for name in TERMS if name != "feature" or features is not None]
                balanced = {name: wasserstein.normalise_gradient(
                    raw[name], config.term_gradient_norm, config.balance_per_example)
                    for name in active}
                image_gradient = tf.add_n(list(balanced.values()))
                for name in TERMS:
                    values[f"balance/{name}_raw_norm"] = (
                        tf.norm(raw[name]) if name in active else tf.constant(0.0))
                    values[f"balance/{name}_norm"] = (
                        tf.norm(balanced[name]) if name in active else tf.constant(0.0))
            else:
                image_gradient = raw["weighted"]
            image_gradient = image_gradient * g_optimizer.scale_loss(tf.constant(1.0))
            gradients = tape.gradient(output, g_variables, output_gradients=image_gradient)
            if good_identity:
                identity_gradients, identity = good_identity_gradients(good)
                gradients = [g if i is None else (i if g is None else g + i)
                             for g, i in zip(gradients, identity_gradients)]
                values["generator/good_identity"] = average(identity)
            gradients = [tf.zeros(v.shape, v.dtype) if g is None else g
                         for g, v in zip(gradients, g_variables)]
            return gradients, values

        value_sums = ["generator/adversarial", "generator/feature", "generator/hinge",
                      "f_w/input"] + (["generator/good_identity"] if good_identity else [])
        value_maxima = ([f"balance/{name}{kind}" for name in TERMS
                         for kind in ("_norm", "_raw_norm")] if gradient_balance else [])

        def generator_update(bad, good):
            gradients, values = accumulate(generator_micro, (bad, good), steps, g_variables,
                                           sums=value_sums, maxima=value_maxima)
            return gradients, values

        def skipped_update(bad, good):
            del bad, good
            return ([tf.zeros(v.shape, v.dtype) for v in g_variables],
                    {k: tf.constant(0.0) for k in value_sums + value_maxima})

        def train_step(batch):
            bad, good = batch
            # Before this step's critic updates: has the critic had its warm-up?
            active = (head_optimizer.iterations
                      >= config.critic_warmup_steps * config.critic_iterations)
            # 1. The critic (equation 10), clipped after each update.
            for _ in range(config.critic_iterations):
                gradients, values = accumulate(
                    critic_micro, (bad, good), steps, critic_variables,
                    sums=["critic_loss", "f_w/good", "f_w/output"])
                head_optimizer.apply_gradients(zip(gradients[:len(head)], head))
                body_optimizer.apply_gradients(zip(gradients[len(head):], body))
                egan_models.clip_weights(critic, config.critic_clip)
            values["grad_norm/critic"] = gradient_norm(head_optimizer, gradients) / replicas()
            # 2. The generator (equations 7-9), past the warm-up.
            g_gradients, g_values = tf.cond(active, lambda: generator_update(bad, good),
                                            lambda: skipped_update(bad, good))
            g_gradients, g_norm = scale_to_norm(g_gradients, g_optimizer,
                                                config.generator_gradient_clip)
            g_optimizer.apply_gradients(zip(g_gradients, g_variables))
            for name in value_maxima:
                g_values[name] = g_values[name] / replicas()
            values.update(g_values)
            values["grad_norm/generator"] = g_norm / replicas()
            values["generator_active"] = tf.cast(active, tf.float32) / replicas()
            return values

        return train_step

    # -- data -----------------------------------------------------------------------------------
    def build_inputs(self, spec):
        config, data = self.config, self.data
        common = dict(batch_size=spec.batch_size, seed=config.seed,
                      crop_size=config.image_size, resize_short=config.resize_short,
                      start_step=spec.start_batch, num_shards=spec.num_shards,
                      shard_index=spec.shard_index, decode_failures=spec.decode_failures)
        if config.stage in PRETRAINING_STAGES:
            return egan_data.make_critic_dataset(data.train, balance=config.critic_balance,
                                                 **common)
        if spec.batch_size % config.accumulation_steps:
            raise ConfigError(f"The per-replica batch {spec.batch_size} must be divisible by "
                              f"--accumulation_steps={config.accumulation_steps}.")
        return egan_data.make_gan_dataset(data.train, data.pairing, **common)

    # -- summaries ------------------------------------------------------------------------------
    def make_summary_fn(self, models):
        """GAN stages: histograms of the predicted parameters, the input | output | good grid
        and the attention map over the input (Fig. 5) of a fixed batch of bad photos."""
        config = self.config
        if config.stage not in GAN_STAGES:
            return None
        bad, good = first_element(egan_data.make_gan_dataset(
            self.data.train, self.data.pairing, batch_size=4, seed=config.seed + 1,
            crop_size=config.image_size, resize_short=config.resize_short))
        generator = models["generator"]
        filter_networks = self.filter_bank.networks if self.filter_bank is not None else None

        def write(step):
            parameters = generator(bad, training=False)
            output = operators.enhance_batch(bad, parameters, config.image_size,
                                             filter_networks)
            for name, value in parameters.items():
                if not name.endswith(("_scores", "_attention")):
                    tf.summary.histogram(f"parameters/{name}", value, step=step)
            grid = tf.concat([bad, tf.clip_by_value(output, 0.0, 1.0),
                              tf.image.resize(good, bad.shape[1:3])], axis=2)
            tf.summary.image("input | output | good", grid, step=step, max_outputs=len(bad))
            for head in generator.head_names:
                attention = parameters[f"{head}_attention"].numpy()
                overlays = np.stack([attention_overlay(photo, map_)
                                     for photo, map_ in zip(bad.numpy(), attention)])
                tf.summary.image(f"attention/{head}", overlays, step=step,
                                 max_outputs=len(bad))

        return write

    # -- evaluation and export -------------------------------------------------------------------
    def evaluate(self, models):
        stage = self.config.stage
        if stage == "filter_fit":
            return self._evaluate_filters(models["filter_bank"])
        if stage == "critic":
            return self._evaluate_critic(models["critic"])
        return self._evaluate_enhancer(models)

    def _held_out(self):
        val = self.data.val
        if not len(val.good) or not len(val.bad):
            return None
        return egan_data.make_critic_dataset(val, batch_size=self.config.eval_batch_size,
                                             training=False, crop_size=self.config.image_size,
                                             resize_short=self.config.resize_short)

    def _evaluate_filters(self, bank):
        """How close each filter CNN comes to its true filter on the held-out photos."""
        config = self.config
        held_out = self._held_out()
        if held_out is None:
            logging.warning("No held-out photos: nothing to evaluate.")
            return None
        squared = {name: [] for name in bank.filter_names}
        absolute = {name: [] for name in bank.filter_names}
        identity = {name: [] for name in bank.filter_names}
        count = 0
        for images, _, _ in held_out:
            targets = filter_ops.apply_named_filters(images, bank.filter_names,
                                                     config.filter_density)
            outputs = bank(images, training=False)
            for name, output, target in zip(bank.filter_names, outputs, targets):
                output = tf.clip_by_value(tf.cast(output, tf.float32), 0.0, 1.0)
                squared[name] += list(tf.reduce_mean(tf.square(output - target),
                                                     axis=[1, 2, 3]).numpy())
                absolute[name] += list(tf.reduce_mean(tf.abs(output - target),
                                                      axis=[1, 2, 3]).numpy())
                identity[name] += list(tf.reduce_mean(tf.square(images - target),
                                                      axis=[1, 2, 3]).numpy())
            count += int(images.shape[0])

        def psnr(errors):
            return float(np.mean(-10.0 * np.log10(np.maximum(errors, 1e-10))))

        rows = [{"name": name, "metrics": {
            "psnr": psnr(squared[name]), "mean_abs_error": 255.0 * float(np.mean(absolute[name])),
            "psnr_unfiltered": psnr(identity[name])}} for name in bank.filter_names]
        return reports.make_report(
            "enhancegan", rows, {
                "psnr": "PSNR in dB of the filter CNN's output against the true filter; "
                        "higher is better",
                "mean_abs_error": "mean absolute error against the true filter, in 8-bit "
                                  "levels; lower is better",
                "psnr_unfiltered": "PSNR of the unfiltered photo against the true filter "
                                   "(what the CNN must change); for comparison"},
            num_images=count, stage="filter_fit", filter_density=config.filter_density,
            notes=[f"Held-out photos, {config.image_size} x {config.image_size} central "
                   "crops; the filters are Photo Filter as enhancers.enhancegan.filters "
                   "defines it."])

    def _evaluate_critic(self, critic):
        """Balanced accuracy of the 2-way fc on the held-out photos (section 4.1); on the demo
        set also the zoom check (`zoom_preference`)."""
        held_out = self._held_out()
        if held_out is None:
            logging.warning("No held-out photos: nothing to evaluate.")
            return None
        labels, probabilities = [], []
        for images, batch_labels, _ in held_out:
            logits = critic(images, training=False)["logits"]
            probabilities.append(egan_models.good_probability(logits).numpy())
            labels.append(batch_labels.numpy())
        labels, probabilities = np.concatenate(labels), np.concatenate(probabilities)
        good = labels > 0.5
        row = {"name": "critic (2-way fc)", "metrics": {
            "balanced_accuracy": egan_data.balanced_accuracy(labels, probabilities),
            "recall_good": float(np.mean(probabilities[good] > 0.5)),
            "recall_bad": float(np.mean(probabilities[~good] <= 0.5)),
            "p_good_of_good": float(np.mean(probabilities[good])),
            "p_good_of_bad": float(np.mean(probabilities[~good]))}}
        descriptions = {}
        if self.data.demo_root is not None:
            paths = list(self.data.val.good.paths) + list(self.data.val.bad.paths)
            boxes = enhancegan_demo.zoom_boxes(self.data.demo_root, paths)
            row["metrics"].update(zoom_preference(
                lambda images: egan_models.good_probability(
                    critic(images, training=False)["logits"]).numpy(),
                paths, boxes, self.config.image_size))
            descriptions = ZOOM_METRICS
        return reports.make_report(
            "enhancegan", [row], {
                "balanced_accuracy": "mean of the two classes' recalls at P(good) 0.5, 0..1; "
                                     "higher is better (paper: 0.943 on CUHK-PQ)",
                "recall_good": "fraction of the held-out good photos rated good; higher is "
                               "better",
                "recall_bad": "fraction of the held-out bad photos rated bad; higher is "
                              "better",
                "p_good_of_good": "mean P(good) of the good photos; higher is better",
                "p_good_of_bad": "mean P(good) of the bad photos; lower is better",
                **descriptions},
            num_images=len(labels), stage="critic",
            num_good=int(good.sum()), num_bad=int((~good).sum()))

    def pretrained_critic(self):
        """The critic stage's critic (the paper's CUHK-Net evaluator), shown photos at
        --image_size (`CriticAtSize`), or None without a critic stage."""
        path = self.config.critic_file()
        if not os.path.exists(path):
            return None
        critic = build_critic(self.config)
        critic.load_weights(path)
        return CriticAtSize(critic, self.config.image_size)

    def photo_enhancer(self, models):
        networks = self.filter_bank.networks if self.filter_bank is not None else None
        return PhotoEnhancer(models["generator"], filter_networks=networks,
                             input_size=self.config.image_size)

    def _evaluate_enhancer(self, models):
        """Tables 1-3 (`tools.evaluate_enhancegan`): the pre-trained critic's good probability
        and NIMA's score of input and output, the crop on the CUHK cropping dataset, and on the
        demo's test photos PSNR against their clean originals and the crop's IoU."""
        config, data = self.config, self.data
        demo_test = (enhancegan_demo.demo_test_images(data.demo_root)
                     if data.demo_root is not None else None)
        return evaluate_enhancegan(
            self.photo_enhancer(models), images=data.eval_images,
            critic=self.pretrained_critic(), nima_model=load_nima(config),
            cropping_records=data.cropping_records, demo_test=demo_test,
            output_dir=os.path.join(config.model_dir, "eval"),
            save_images=config.eval_save_images, extras={
                "stage": config.stage, "heads": list(models["generator"].head_names),
                "backbone": config.backbone, "vgg_weights": config.vgg_weights or "random"})

    def headline(self, report):
        stage = report.get("stage")
        if stage == "critic":
            metrics = report["rows"][0]["metrics"]
            line = (f"Critic: balanced accuracy {metrics['balanced_accuracy']:.3f} on "
                    f"{report['num_images']} held-out photos (good recall "
                    f"{metrics['recall_good']:.3f}, bad recall {metrics['recall_bad']:.3f})")
            if metrics.get("zoom_preferred_margin") is not None:
                zooms = [metrics.get(f"zoom_preferred_{g}") for g in ZOOM_GROUPS]
                line += ("; it prefers the subject crop of {} of the photos with margins, a "
                         "central crop of {} of the other bad photos and {} of the good ones "
                         "(the crop stage needs the first high, the others low)").format(
                             *("n/a" if z is None else f"{z:.2f}" for z in zooms))
            return line
        if stage == "filter_fit":
            parts = [f"{row['name']} {row['metrics']['psnr']:.1f} dB "
                     f"(unfiltered {row['metrics']['psnr_unfiltered']:.1f})"
                     for row in report["rows"]]
            return "Filter CNNs against the true filters: " + ", ".join(parts)
        return None

    def export(self, models, train_step=None):
        """GAN stages: the whole enhancer (G, the operators at full size, the filter CNNs) with
        `tools.export.export_enhancegan`'s signatures; the pre-training stages: nothing."""
        config = self.config
        if config.stage not in GAN_STAGES:
            return None
        warnings = []
        if config.feature_network == "vgg16_fc7" and not config.vgg_weights:
            warnings.append(RANDOM_VGG_WARNING)
        if not os.path.exists(config.critic_file()):
            warnings.append(NO_CRITIC_STAGE_WARNING.format(
                path=config.critic_file(), weights=config.backbone_weights or "none: random"))
        return Export("enhancegan", self.photo_enhancer(models), metadata={
            "system": "enhancegan",
            "paper": "Deng, Loy & Tang, Aesthetic-Driven Image Enhancement by Adversarial "
                     "Learning (ACM MM 2018)",
            "stage": config.stage,
            "heads": list(models["generator"].head_names),
            "vgg_weights": config.vgg_weights or "RANDOM",
            "warning": " ".join(warnings) or None,
            "train_step": train_step,
            "config": dataclasses.asdict(config),
        })
