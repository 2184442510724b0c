"""PieNet as a task of the runner (Kim et al., "PieNet: Personalized Image Enhancement Network",
ECCV 2020, sections 3-4; issue 17), trained in two stages, each in `<model_dir>/<stage>/`:

  embedding  Section 3.1: the embedding network (ResNet-18, L2-normalised 512-d) and one
             preference vector per training user, learnt jointly by the triplet loss (equation
             1; gradients 2-4 to the network and the vectors at once), Adam 1e-4, 25,000 batches
             of 64 triplets at 256 x 256 with 90-degree rotations (section 4.1). Evaluated on the
             test photos of the training users: the fraction of a user's retouches whose nearest
             preference vector is the user's own (squared Euclidean, the loss's D; and by cosine,
             which differs because the vectors are not on the sphere). Exports nothing.
  enhancer   Sections 3.2-3.3: PieNet on (input, user k's retouch) pairs with f_k + n, ||n|| = 0.1
             (section 4.1), loss equation 6 with the embedding stage's network frozen; Adam 1e-4,
             100,000 batches of 8 at 512 x 512. Reads the embedding stage's weights and trained
             vectors from `<root>/embedding/` (or --embedding_dir). Evaluated as Table 1: PSNR/SSIM
             for one user and mPSNR/mSSIM over all training users on the test photos, beside the
             same PieNet with the mean of the training users' vectors (non-personalised) and the
             input; with the demo set also its held-out users, personalised from
             --new_user_photos of their training retouches (section 3.4's default, averaging).
             Exports PieNet with a preference input (`tools.export.export_pienet`).
  all        embedding, then enhancer; each stage runs its own --<stage>_steps and
             --<stage>_batch_size (--train_steps and --batch_size are for a single stage).

Ours, where the paper is silent:
- The twin embedding networks of Fig. 3 are one network called once on positives and negatives
  together, so that batch normalisation sees one batch.
- The preference noise is drawn in the input pipeline (stateless, from the seed, the shard and the
  batch's position), so that a resumed run draws what an uninterrupted one would have.
- `--preference_input=photos` (off in the presets, which keep the paper's f_k + n): the decoder
  trains on what a new user gives it (section 3.4), the mean embedding of --new_user_photos of
  user k's training retouches drawn at random (with replacement, stateless from the seed and
  the step), plus the noise. The triplet loss leaves a user's photos' mean embedding about as
  far from the user's trained vector as from the others' (distance 1.0-1.15 against 1.2-1.5
  in the demo), far outside the 0.1 of noise the decoder is trained within, so a new user's
  mean embedding lands where the paper's decoder never learnt anything. With it, the training
  users' vectors in the evaluation and the export's metadata are their own mean embeddings.
- The perceptual loss shows the embedding network I + dI and I* resized to --embedding_size (the
  size it was trained at) when the enhancer trains at another size; at evaluation, photos whose
  longer side exceeds --eval_max_side are downscaled (input and retouch alike), and the embedding
  stage's evaluation shows the central square of each photo at --embedding_size.
"""
import dataclasses
import os

import keras
import numpy as np
import tensorflow as tf
from absl import logging

from datasets import pienet as pienet_data
from datasets import pienet_demo
from datasets.pienet import central_view, read_photo
from enhancers import filters
from enhancers.pienet import (EMBEDDING_DIM, PREFERENCE_NOISE_NORM, PreferenceVectors,
                              build_embedding, build_pienet, enhance, l2_normalize,
                              preference_from_photos)
from enhancers.pienet.network import NORMALIZATIONS, UPSAMPLINGS
from losses.pienet import PERCEPTUAL_REDUCTIONS, pienet_loss_terms
from losses.triplet import TRIPLET_MARGIN, squared_distance, triplet_loss
from tools import evaluate as metrics
from tools import report as reports
from train.config import MAX_IMAGE_SIDE, ConfigError, RunConfig, setting
from train.task import Export, Task, gradient_norm

STAGES = ("embedding", "enhancer")
DATASETS = ("fivek", "folders", "demo")
EMBEDDING_WEIGHTS = "embedding.weights.h5"
PREFERENCE_WEIGHTS = "preferences.weights.h5"
PIENET_WEIGHTS = "pienet.weights.h5"
NOISE_SEED_OFFSET = 17_000  # the noise stream apart from the other seeded streams
PICK_SEED_OFFSET = 19_000  # --preference_input=photos: which photos, apart from the noise
PREFERENCE_INPUTS = ("vector", "photos")
RANDOM_BACKBONE_WARNING = (
    "RANDOM RESNET-18: no --resnet18_weights, so PieNet's embedding network and encoder start "
    "from random weights, not ImageNet's (section 3.1). Give a local .npz of torchvision's "
    "resnet18 state dict (enhancers/resnet18.py says how to make it).")


@dataclasses.dataclass
class PienetConfig(RunConfig):
    stage: str = setting("all", "embedding (section 3.1), enhancer (3.2-3.3), or all: both in "
                         "turn, each in <model_dir>/<stage>/.", choices=("all",) + STAGES)
    stage_root: str | None = setting(None, "The directory of both stages' directories. Leave "
                                     "unset: a run puts stage S in <model_dir>/S/ and sets it; "
                                     "when set, --model_dir is the stage's own directory.")
    train_steps: int | None = setting(None, "Steps of a single --stage (default: that stage's "
                                      "--<stage>_steps; a resumed run counts on).", minimum=1)
    batch_size: int | None = setting(None, "Global batch of a single --stage (default: that "
                                     "stage's --<stage>_batch_size).", minimum=1)
    # Section 4.1, the embedding.
    embedding_steps: int = setting(25_000, "Steps of the embedding stage (paper: 25,000).",
                                   minimum=1)
    embedding_batch_size: int = setting(64, "Triplets per batch (paper: 64).", minimum=1)
    embedding_learning_rate: float = setting(1e-4, "Adam rate of the network and the vectors "
                                             "(paper: 1e-4).", above=0.0)
    embedding_size: int = setting(pienet_data.EMBEDDING_SIZE, "Side of the triplets' views "
                                  "(paper: 256).", minimum=8, maximum=MAX_IMAGE_SIDE)
    embedding_crop_scale: tuple[float, ...] = setting(
        (1.0, 1.0), "low,high: the triplet view's square as a fraction of the shorter side "
        "(ours: the whole photo's central-or-random square, 1,1).")
    triplet_margin: float = setting(TRIPLET_MARGIN, "alpha of equation 1 (paper: 0.2).",
                                    minimum=0.0)
    same_photo_fraction: float = setting(0.0, "Probability that a negative shows the positive's "
                                         "photo (ours; paper: independent sets, 0).",
                                         minimum=0.0, maximum=1.0)
    # Sections 3.2-3.3 and 4.1, the enhancer.
    enhancer_steps: int = setting(100_000, "Steps of the enhancer stage (paper: 100,000).",
                                  minimum=1)
    enhancer_batch_size: int = setting(8, "Pairs per batch (paper: 8).", minimum=1)
    enhancer_learning_rate: float = setting(1e-4, "Adam rate of PieNet (paper: 1e-4).",
                                            above=0.0)
    enhancer_size: int = setting(pienet_data.ENHANCER_SIZE, "Side of the training pairs "
                                 "(paper: 512).", minimum=8, maximum=MAX_IMAGE_SIDE)
    enhancer_crop_scale: tuple[float, ...] = setting(
        (0.5, 1.0), "low,high: the pair's square as a fraction of the shorter side (ours).")
    perceptual_weight: float = setting(0.4, "lambda_p of equation 6 (paper: 0.4).", minimum=0.0)
    tv_weight: float = setting(0.01, "lambda_t of equation 6 (paper: 0.01).", minimum=0.0)
    perceptual_reduction: str = setting("mean", "L_p over the embedding: mean (ours, as L_c) or "
                                        "sum.", choices=PERCEPTUAL_REDUCTIONS)
    preference_noise: float = setting(PREFERENCE_NOISE_NORM, "Norm of the noise on the "
                                      "preference vector while PieNet trains (paper: 0.1).",
                                      minimum=0.0)
    preference_input: str = setting("vector", "What the decoder is given for training user k: "
                                    "'vector', f_k + noise (section 4.1); 'photos' (ours), the "
                                    "mean embedding of --new_user_photos of k's retouches + "
                                    "noise, as a new user's vector is made (section 3.4).",
                                    choices=PREFERENCE_INPUTS)
    # The decoder (ours: the paper gives no widths).
    decoder_widths: tuple[int, ...] = setting((256, 128, 64), "The three PUBs' widths, deepest "
                                              "first (ours: those of block6, block4, block2).")
    preference_channels: int = setting(64, "Channels of the preference map in each PUB (ours).",
                                       minimum=1)
    decoder_normalization: str = setting("batch", "Normalisation in the PUBs' residual blocks.",
                                         choices=NORMALIZATIONS)
    upsampling: str = setting("bilinear", "Interpolation of the decoder's up-sampling.",
                              choices=UPSAMPLINGS)
    output_kernel: int = setting(3, "Kernel of the last convolution (ours: 3).", minimum=1)
    pixel_head: int = setting(0, "Ours, not the paper's (0 = off): width of two 1x1 "
                              "convolutions on [up-sampled features, input image] before the "
                              "last one, so that the delta can follow each pixel's colour.",
                              minimum=0)
    pixel_head_preference: int = setting(0, "Ours (0 = off): channels of the preference vector "
                                         "(a dense layer, tiled) that --pixel_head also sees, "
                                         "besides the features and the image.", minimum=0)
    resnet18_weights: str | None = setting(None, "Local .npz of torchvision's resnet18 state "
                                           "dict: the embedding's and the encoder's start "
                                           "(paper: ImageNet); unset: random, said loudly.")
    embedding_dir: str | None = setting(None, "The embedding stage's directory the enhancer "
                                        "reads (default <root>/embedding).")
    # Data.
    dataset: str = setting("fivek", "FiveK experts as users, folders of users' retouches, or "
                           "the embedded demo users.", choices=DATASETS)
    fivek_dir: str | None = setting(None, "FiveK root: input/ and expert<X>/ folders.")
    experts: tuple[str, ...] = setting(("A", "B", "C", "D", "E"), "FiveK experts that are users "
                                       "(paper: A-E).")
    input_dir: str | None = setting(None, "--dataset=folders: the input photos.")
    user_dirs: tuple[str, ...] = setting((), "A user's retouches of the inputs, paired by file "
                                         "stem; repeatable (with --dataset=fivek: extra users).",
                                         multi=True)
    user_names: tuple[str, ...] | None = setting(None, "Names of the --user_dirs users "
                                                 "(default: the folders' names).")
    train_list: str | None = setting(None, "Training photos (FiveK ids or stems, one a line); "
                                     "default: the seeded 90/10 split.")
    test_list: str | None = setting(None, "Test photos, as --train_list.")
    split_seed: int = setting(pienet_data.SPLIT_SEED, "Seed of the random split (ours: 0).",
                              minimum=0)
    num_test: int | None = setting(None, "Test photos of the random split (default: 10%).",
                                   minimum=1)
    demo_dir: str | None = setting(None, "Where the demo set is built (default "
                                   "<root>/demo_data).", directory=True)
    demo_image_size: int = setting(pienet_demo.DEFAULT_IMAGE_SIZE, "Side of the demo photos.",
                                   minimum=32, maximum=300)
    demo_num_train: int = setting(pienet_demo.DEFAULT_NUM_TRAIN, "Demo training photos.",
                                  minimum=1)
    demo_num_test: int = setting(pienet_demo.DEFAULT_NUM_TEST, "Demo test photos.", minimum=1)
    # Evaluation.
    eval_max_side: int = setting(512, "Test photos with a longer side are downscaled to it "
                                 "(input and retouch alike; ours).", minimum=8,
                                 maximum=MAX_IMAGE_SIDE)
    eval_max_images: int | None = setting(None, "At most this many test photos per user.",
                                          minimum=1)
    report_user: str | None = setting(None, "The single-user columns of Table 1 (default: C if "
                                      "a user, else the first).")
    new_user_photos: int = setting(20, "--dataset=demo: a held-out user's preference is the "
                                   "mean embedding of this many of their training retouches "
                                   "(section 3.4); also --preference_input=photos's count.",
                                   minimum=1)

    def __post_init__(self):
        super().__post_init__()
        if self.stage == "all" and self.stage_root is None and (
                self.train_steps is not None or self.batch_size is not None):
            raise ConfigError("--train_steps and --batch_size are a single --stage's; with "
                              "--stage=all each stage runs its --<stage>_steps and "
                              "--<stage>_batch_size.")
        if self.stage_root is not None and self.stage == "all":
            raise ConfigError("--stage_root is set by a run for one stage at a time; give "
                              "--stage=embedding or --stage=enhancer with it.")
        if len(self.decoder_widths) != 3 or min(self.decoder_widths) < 1:
            raise ConfigError(f"--decoder_widths={','.join(map(str, self.decoder_widths))}: "
                              "three positive widths, one per PUB.")
        if self.pixel_head_preference and not self.pixel_head:
            raise ConfigError(f"--pixel_head_preference={self.pixel_head_preference} feeds the "
                              "vector to the pixel head: give --pixel_head too.")
        for name in ("embedding_crop_scale", "enhancer_crop_scale"):
            scale = getattr(self, name)
            if len(scale) != 2 or not 0.0 < scale[0] <= scale[1] <= 1.0:
                raise ConfigError(f"--{name}={','.join(map(str, scale))}: low,high with "
                                  "0 < low <= high <= 1.")

    @property
    def root(self):
        """The directory of both stages' directories (`stage_root`, else model_dir)."""
        return self.stage_root or self.model_dir

    def embedding_path(self, file_name):
        return os.path.join(self.embedding_dir or os.path.join(self.root, "embedding"),
                            file_name)

    def demo_root(self):
        return self.demo_dir or os.path.join(self.root, "demo_data")


def stage_configs(config):
    """One config per stage of `config` (module docstring): model_dir <root>/<stage>, the stage's
    steps and batch, only the enhancer exporting; --mode=export exports the enhancer."""
    if config.stage_root is not None:
        return [dataclasses.replace(
            config, train_steps=config.train_steps or getattr(config, f"{config.stage}_steps"),
            batch_size=config.batch_size or getattr(config, f"{config.stage}_batch_size"))]
    stages = STAGES if config.stage == "all" else (config.stage,)
    if config.mode == "export":
        stages = ("enhancer",)
    return [dataclasses.replace(
        config, stage=stage, stage_root=config.model_dir,
        model_dir=os.path.join(config.model_dir, stage),
        train_steps=config.train_steps or getattr(config, f"{stage}_steps"),
        batch_size=config.batch_size or getattr(config, f"{stage}_batch_size"),
        export_dir=config.export_dir if stage == "enhancer" else None,
        export_version=config.export_version if stage == "enhancer" else None)
        for stage in stages]


# ------------------------------------------------------------------------------------ data


@dataclasses.dataclass
class PienetData:
    """The training users (`datasets.pienet.Users`) and, with the demo set, the held-out users
    (else None)."""
    users: object
    new_users: object = None


def load_data(config):
    """`PienetData` of config.dataset; builds the demo set on first use."""
    if config.dataset == "demo":
        root = pienet_demo.build_pienet_demo(
            config.demo_root(), render=filters.apply, image_size=config.demo_image_size,
            num_train=config.demo_num_train, num_test=config.demo_num_test, seed=config.seed)
        return PienetData(pienet_demo.demo_users(root, "train"),
                          pienet_demo.demo_users(root, "held_out"))
    split = dict(train_list=config.train_list, test_list=config.test_list,
                 split_seed=config.split_seed, num_test=config.num_test)
    if config.dataset == "fivek":
        if not config.fivek_dir:
            raise ConfigError("--dataset=fivek needs --fivek_dir (with input/ and expert "
                              "folders).")
        sources = dict(fivek_dir=config.fivek_dir, experts=tuple(config.experts))
    else:
        if not (config.input_dir and config.user_dirs):
            raise ConfigError("--dataset=folders needs --input_dir and at least one "
                              "--user_dirs (a user's retouches, paired by file stem).")
        sources = dict(input_dir=config.input_dir)
    try:
        users = pienet_data.collect_users(**sources, user_dirs=tuple(config.user_dirs),
                                          user_names=config.user_names, **split)
    except ValueError as error:
        raise ConfigError(str(error)) from error
    return PienetData(users)


def resize_for_embedding(images, size):
    """Images resized to size x size (bilinear) unless they are that size already."""
    if images.shape[1] == size and images.shape[2] == size:
        return images
    return tf.image.resize(images, (size, size), method="bilinear")


# -------------------------------------------------------------------------------- networks


def build_preferences(users, seed=None):
    """The trainable preference vectors as a model (user indices -> (b, 512)), so that the runner
    checkpoints and saves them as it does every model."""
    indices = keras.Input((), dtype="int32", name="users")
    layer = PreferenceVectors(users, EMBEDDING_DIM, seed=seed, name="preference_vectors")
    return keras.Model(indices, layer(indices), name="preferences")


def preference_table(model):
    """(users, 512) float32 array of a `build_preferences` model."""
    return np.asarray(model.get_layer("preference_vectors").vectors, np.float32)


def build_enhancer(config, encoder_weights=None):
    return build_pienet(widths=config.decoder_widths,
                        preference_channels=config.preference_channels,
                        normalization=config.decoder_normalization, upsampling=config.upsampling,
                        output_kernel=config.output_kernel, pixel_head=config.pixel_head,
                        pixel_head_preference=config.pixel_head_preference,
                        encoder_weights=encoder_weights)


def load_embedding_stage(config, num_users):
    """(embedding model, (users, 512) trained vectors) from the embedding stage's directory;
    ConfigError naming the files if it has none (run --stage=embedding first)."""
    paths = [config.embedding_path(name) for name in (EMBEDDING_WEIGHTS, PREFERENCE_WEIGHTS)]
    missing = [path for path in paths if not os.path.exists(path)]
    if missing:
        raise ConfigError(f"The enhancer stage needs the embedding stage's network and trained "
                          f"preference vectors; not found: {', '.join(missing)}. Run "
                          "--stage=embedding first (into the same --model_dir), or give "
                          "--embedding_dir.")
    embedding = _quiet_embedding()
    embedding.load_weights(paths[0])
    preferences = build_preferences(num_users)
    try:
        preferences.load_weights(paths[1])
    except ValueError as error:
        raise ConfigError(f"{paths[1]} does not hold {num_users} preference vectors (one per "
                          f"training user of these flags): {error}") from error
    embedding.trainable = False
    return embedding, preference_table(preferences)


def _quiet_embedding():
    """An embedding network whose weights are loaded next (no random-weights warning)."""
    previous = logging.get_verbosity()
    logging.set_verbosity(logging.ERROR)
    try:
        return build_embedding()
    finally:
        logging.set_verbosity(previous)


def add_preference_noise(dataset, seed, norm, start_batch, num_shards, shard_index):
    """Appends to each (inputs, retouches, users) batch the noise n on its preference vectors:
    `norm` times a uniform unit direction per example (section 4.1), stateless from (seed,
    shard, batch position), so that a resumed run draws the same noise (module docstring)."""
    def add(position, batch):
        inputs, retouches, users = batch
        index = (tf.cast(position, tf.int64) + start_batch) * num_shards + shard_index
        seed_pair = tf.stack([tf.constant(NOISE_SEED_OFFSET + int(seed), tf.int64), index])
        direction = l2_normalize(tf.random.stateless_normal(
            tf.stack([tf.shape(users)[0], EMBEDDING_DIM]), seed=seed_pair))
        return inputs, retouches, users, norm * direction

    return dataset.enumerate().map(add)


def photo_embeddings(embedding, users, size, batch_size=64):
    """((users, P, 512) float32 embeddings of each user's training retouches, zero-padded to
    the most any user has; (users,) int32 counts): the central view of each at `size`, as a new
    user's photos are embedded (`tools.personalize`)."""
    counts = [len(users.photos(k, "train")) for k in range(len(users.names))]
    if min(counts) < 1:
        raise ConfigError("--preference_input=photos: users without training photos: "
                          + ", ".join(n for n, c in zip(users.names, counts) if c < 1))
    table = np.zeros((len(counts), max(counts), EMBEDDING_DIM), np.float32)
    for k in range(len(counts)):
        paths = [users.retouches[k][j] for j in users.photos(k, "train")]
        for start in range(0, len(paths), batch_size):
            views = np.stack([central_view(path, size) for path in paths[start:start + batch_size]])
            table[k, start:start + len(views)] = np.asarray(embedding(views, training=False))
    return table, np.asarray(counts, np.int32)


def mean_of_random_photos(table, counts, users, num_photos, seed):
    """(b, 512): for each user index in `users` (b,), the mean of `num_photos` rows of its
    `table` entry drawn uniformly with replacement among its `counts`, stateless from `seed`."""
    uniform = tf.random.stateless_uniform(tf.stack([tf.shape(users)[0], num_photos]), seed=seed)
    available = tf.gather(counts, users)[:, None]
    picks = tf.minimum(tf.cast(uniform * tf.cast(available, tf.float32), tf.int32),
                       available - 1)
    return tf.reduce_mean(tf.gather(tf.gather(table, users), picks, batch_dims=1), axis=1)


# ------------------------------------------------------------------------------------ task


class PienetTask(Task):
    name = "pienet"
    config_class = PienetConfig
    training_architecture_settings = ()

    @classmethod
    def stage_configs(cls, config):
        return stage_configs(config)

    @property
    def architecture_settings(self):
        if self.config.stage == "embedding":
            return ("stage",)
        return ("stage", "decoder_widths", "preference_channels", "decoder_normalization",
                "upsampling", "output_kernel", "pixel_head", "pixel_head_preference")

    @property
    def final_weights(self):
        if self.config.stage == "embedding":
            return {"embedding": EMBEDDING_WEIGHTS, "preferences": PREFERENCE_WEIGHTS}
        return {"pienet": PIENET_WEIGHTS}

    def _check_stage(self):
        if self.config.stage not in STAGES:
            raise ValueError(f"--stage={self.config.stage}: run it through train.runner.run, "
                             "which splits --stage=all into its stages.")

    def load_data(self):
        return load_data(self.config)

    def build_models(self, training):
        """embedding: the embedding network and the preference vectors; enhancer: PieNet (for
        training also the frozen embedding network and the trained vectors, `self.frozen`)."""
        config = self.config
        self._check_stage()
        weights = config.resnet18_weights if training else None
        if training and weights is None:
            logging.warning("*" * 80)
            logging.warning(RANDOM_BACKBONE_WARNING)
            logging.warning("*" * 80)
        if config.stage == "embedding":
            embedding = build_embedding(weights=weights) if training else _quiet_embedding()
            return {"embedding": embedding,
                    "preferences": build_preferences(len(self.data.users.names))}
        if training:
            self.frozen = load_embedding_stage(config, len(self.data.users.names))
            if config.preference_input == "photos":
                logging.info("Embedding the training users' retouches "
                             "(--preference_input=photos)")
                self.photo_table = photo_embeddings(self.frozen[0], self.data.users,
                                                    config.embedding_size)
            return {"pienet": build_enhancer(config, weights)}
        previous = logging.get_verbosity()
        logging.set_verbosity(logging.ERROR)  # weights restored next
        try:
            return {"pienet": build_enhancer(config)}
        finally:
            logging.set_verbosity(previous)

    def build_optimizers(self, models):
        config = self.config
        if config.stage == "embedding":
            variables = (models["embedding"].trainable_weights
                         + models["preferences"].trainable_weights)
            return {"optimizer": (keras.optimizers.Adam(config.embedding_learning_rate),
                                  variables)}
        return {"optimizer": (keras.optimizers.Adam(config.enhancer_learning_rate),
                              models["pienet"].trainable_weights)}

    def make_train_step(self, models, optimizers):
        if self.config.stage == "embedding":
            return self._embedding_step(models, optimizers)
        return self._enhancer_step(models, optimizers)

    def _embedding_step(self, models, optimizers):
        """Equation 1 on (k, positive, negative) triplets; the gradients (equations 2-4) update
        the network and the preference vectors in one Adam step."""
        embedding, preferences = models["embedding"], models["preferences"]
        optimizer, average = optimizers["optimizer"], self.average
        margin = self.config.triplet_margin
        variables = embedding.trainable_weights + preferences.trainable_weights

        def train_step(batch):
            users, positives, negatives = batch
            count = tf.shape(positives)[0]
            with tf.GradientTape() as tape:
                vectors = preferences(users, training=True)
                features = embedding(tf.concat([positives, negatives], 0), training=True)
                f_p, f_n = features[:count], features[count:]
                per_example = triplet_loss(vectors, f_p, f_n, margin)
                loss = average(per_example)
                scaled = optimizer.scale_loss(loss)
            gradients = [tf.convert_to_tensor(g) if isinstance(g, tf.IndexedSlices) else g
                         for g in tape.gradient(scaled, variables)]
            optimizer.apply_gradients(zip(gradients, variables))
            return {"loss": loss,
                    "active": average(tf.cast(per_example > 0, tf.float32)),
                    "d_positive": average(squared_distance(vectors, f_p)),
                    "d_negative": average(squared_distance(vectors, f_n)),
                    "grad_norm": gradient_norm(optimizer, gradients)}

        return train_step

    def _enhancer_step(self, models, optimizers):
        """Equation 6 on (I, I*_k) pairs with f_k + n (section 4.1); the embedding frozen."""
        config, average = self.config, self.average
        pienet, optimizer = models["pienet"], optimizers["optimizer"]
        embedding, table = self.frozen
        vectors = tf.constant(table)
        size = config.embedding_size

        def embed(images):
            return embedding(resize_for_embedding(images, size), training=False)

        variables = pienet.trainable_weights

        if config.preference_input == "photos":
            table, counts = (tf.constant(array) for array in self.photo_table)

        def preference_of(users, noise):
            """f_k + n, or the mean embedding of random photos of k + n (module docstring)."""
            if config.preference_input == "vector":
                return tf.gather(vectors, users) + noise
            seed = tf.stack([tf.constant(PICK_SEED_OFFSET + config.seed, tf.int64),
                             tf.cast(optimizer.iterations, tf.int64)])
            return mean_of_random_photos(table, counts, users, config.new_user_photos,
                                         seed) + noise

        def train_step(batch):
            inputs, retouches, users, noise = batch
            preference = preference_of(users, noise)
            with tf.GradientTape() as tape:
                outputs = pienet({"images": inputs, "preference": preference}, training=True)
                terms = pienet_loss_terms(inputs, outputs["delta"], retouches, embed,
                                          config.perceptual_reduction)
                per_example = (terms["color"] + config.perceptual_weight * terms["perceptual"]
                               + config.tv_weight * terms["tv"])
                loss = average(per_example)
                scaled = optimizer.scale_loss(loss)
            gradients = tape.gradient(scaled, variables)
            optimizer.apply_gradients(zip(gradients, variables))
            enhanced = tf.clip_by_value(tf.cast(outputs["enhanced"], tf.float32), 0.0, 1.0)
            mse = tf.reduce_mean(tf.square(enhanced - retouches), axis=[1, 2, 3])
            return {"loss": loss, "color_loss": average(terms["color"]),
                    "perceptual_loss": average(terms["perceptual"]),
                    "tv_loss": average(terms["tv"]),
                    "psnr": average(-10.0 * tf.math.log(tf.maximum(mse, 1e-10)) / np.log(10.0)),
                    "grad_norm": gradient_norm(optimizer, gradients)}

        return train_step

    def build_inputs(self, spec):
        config = self.config
        common = dict(batch_size=spec.batch_size, seed=config.seed, start_step=spec.start_batch,
                      num_shards=spec.num_shards, shard_index=spec.shard_index,
                      decode_failures=spec.decode_failures)
        if config.stage == "embedding":
            return pienet_data.make_triplet_dataset(
                self.data.users, size=config.embedding_size,
                crop_scale=tuple(config.embedding_crop_scale),
                same_photo_fraction=config.same_photo_fraction, **common)
        pairs = pienet_data.make_paired_dataset(
            self.data.users, size=config.enhancer_size,
            crop_scale=tuple(config.enhancer_crop_scale), **common)
        return add_preference_noise(pairs, config.seed, config.preference_noise,
                                    spec.start_batch, spec.num_shards, spec.shard_index)

    # -- evaluation ---------------------------------------------------------------------------
    def evaluate(self, models):
        self._check_stage()
        if self.config.stage == "embedding":
            return self._evaluate_embedding(models["embedding"],
                                            preference_table(models["preferences"]))
        return self._evaluate_enhancer(models["pienet"])

    def _test_photos(self, users, k):
        photos = users.photos(k, "test")
        return photos[:self.config.eval_max_images] if self.config.eval_max_images else photos

    def _evaluate_embedding(self, embedding, table):
        """Section 3.1 on held-out photos: is each test retouch nearest its own user's vector?"""
        config, users = self.config, self.data.users
        unit = table / np.maximum(np.linalg.norm(table, axis=1, keepdims=True), 1e-12)
        rows, total = [], {"euclidean": [], "cosine": []}
        for k, name in enumerate(users.names):
            views = [central_view(users.retouches[k][j], config.embedding_size)
                     for j in self._test_photos(users, k)]
            if not views:
                continue
            features = np.asarray(embedding(np.stack(views), training=False), np.float64)
            distances = ((features[:, None, :] - table[None].astype(np.float64)) ** 2).sum(-1)
            euclidean = distances.argmin(axis=1) == k
            cosine = (features @ unit.T.astype(np.float64)).argmax(axis=1) == k
            total["euclidean"] += list(euclidean)
            total["cosine"] += list(cosine)
            rows.append({"name": name, "metrics": {
                "nearest_own": float(euclidean.mean()), "nearest_own_cosine": float(cosine.mean()),
                "images": len(views)}})
        if not rows:
            logging.warning("No test photos (the split left none): nothing to evaluate.")
            return None
        rows.insert(0, {"name": "all users", "metrics": {
            "nearest_own": float(np.mean(total["euclidean"])),
            "nearest_own_cosine": float(np.mean(total["cosine"])),
            "images": len(total["euclidean"])}})
        return reports.make_report("pienet", rows, {
            "nearest_own": "fraction of the user's held-out retouches whose nearest preference "
                           "vector (squared Euclidean, the triplet loss's D) is the user's own, "
                           f"0..1; higher is better (chance 1/{len(users.names)})",
            "nearest_own_cosine": "the same by cosine similarity (the vectors are not on the "
                                  "sphere, so it can differ); higher is better",
            "images": "held-out retouches of the user"},
            num_images=len(total["euclidean"]), stage="embedding",
            vector_norms={name: float(np.linalg.norm(v)) for name, v in zip(users.names, table)},
            notes=[f"Test photos' retouches, central square at {config.embedding_size} px."])

    def _methods(self, pienet, vectors):
        """{row name: fn(image, user index) -> output} of Table 1's rows."""
        mean = vectors.mean(axis=0)
        return {"PieNet": lambda image, k: enhance(pienet, image, vectors[k]),
                "PieNet, mean vector (non-personalised)": lambda image, k: enhance(
                    pienet, image, mean),
                "input (identity)": lambda image, k: image}

    def _scores(self, users, methods):
        """{method: {user: (mean psnr, mean ssim, count)}} on the users' test photos."""
        scores = {name: {} for name in methods}
        for k, user in enumerate(users.names):
            pairs = [(users.inputs[j], users.retouches[k][j]) for j in self._test_photos(users, k)]
            values = {name: [] for name in methods}
            for input_path, retouch_path in pairs:
                image = read_photo(input_path, self.config.eval_max_side)
                target = read_photo(retouch_path, self.config.eval_max_side)
                if target.shape != image.shape:
                    target = np.asarray(tf.image.resize(target, image.shape[:2]), np.float32)
                for name, method in methods.items():
                    output = np.clip(np.asarray(method(image, k), np.float32), 0.0, 1.0)
                    values[name].append((metrics.psnr(output, target),
                                         metrics.ssim(output, target)))
            for name in methods:
                if values[name]:
                    psnr, ssim = np.mean(values[name], axis=0)
                    scores[name][user] = (float(psnr), float(ssim), len(values[name]))
        return scores

    def _user_vectors(self):
        """(embedding network, (users, 512) the training users' vectors as the decoder knows
        them): the trained f_k, or with --preference_input=photos the mean embedding of each
        user's first --new_user_photos training retouches (as a new user's)."""
        config, users = self.config, self.data.users
        embedding, vectors = load_embedding_stage(config, len(users.names))
        if config.preference_input == "photos":
            vectors = np.stack([self._mean_embedding(embedding, users, k)
                                for k in range(len(users.names))])
        return embedding, vectors

    def _mean_embedding(self, embedding, users, k):
        """Section 3.4's averaging over user k's first --new_user_photos training retouches."""
        config = self.config
        chosen = users.photos(k, "train")[:config.new_user_photos]
        photos = [central_view(users.retouches[k][j], config.embedding_size) for j in chosen]
        return preference_from_photos(embedding, np.stack(photos))

    def _evaluate_enhancer(self, pienet):
        """Table 1 on the test photos (module docstring), and the demo's held-out users."""
        config, data = self.config, self.data
        embedding, vectors = self._user_vectors()
        scores = self._scores(data.users, self._methods(pienet, vectors))
        names = data.users.names
        report_user = config.report_user or ("C" if "C" in names else names[0])
        if report_user not in names:
            raise ConfigError(f"--report_user={report_user}: not a training user "
                              f"({', '.join(names)}).")
        rows, count = [], 0
        for method, per_user in scores.items():
            if not per_user:
                continue
            single = per_user.get(report_user, (None, None, 0))
            rows.append({"name": method, "metrics": {
                "psnr": single[0], "ssim": single[1],
                "mpsnr": float(np.mean([v[0] for v in per_user.values()])),
                "mssim": float(np.mean([v[1] for v in per_user.values()]))}})
            count = sum(v[2] for v in per_user.values())
        if not rows:
            logging.warning("No test photos (the split left none): nothing to evaluate.")
            return None
        per_user = {method: {user: {"psnr": v[0], "ssim": v[1], "images": v[2]}
                             for user, v in values.items()} for method, values in scores.items()}
        extras = {}
        if data.new_users is not None:
            new_rows, new_scores = self._evaluate_new_users(pienet, embedding, vectors)
            rows += new_rows
            extras["new_users_per_user"] = new_scores
        return reports.make_report("pienet", rows, {
            "psnr": f"PSNR in dB against user {report_user}'s retouches (Table 1, single user); "
                    "higher is better",
            "ssim": f"SSIM with user {report_user}'s retouches; higher is better",
            "mpsnr": "mean over the users of each user's PSNR against their own retouches "
                     "(Table 1, multiple users); higher is better",
            "mssim": "mean over the users of each user's SSIM; higher is better"},
            num_images=count, stage="enhancer", report_user=report_user, per_user=per_user,
            **extras, notes=[
                "Test photos of the training users (longer side at most "
                f"{config.eval_max_side} px). 'mean vector': the same PieNet given the mean of "
                "the training users' vectors, one output for every user."])

    def _evaluate_new_users(self, pienet, embedding, vectors):
        """Section 3.4 on the demo's held-out users: the mean embedding of --new_user_photos of
        their training retouches, beside the mean training vector and the input."""
        config, users = self.config, self.data.new_users
        personal = [self._mean_embedding(embedding, users, k) for k in range(len(users.names))]
        mean = vectors.mean(axis=0)
        methods = {
            f"new users: PieNet, mean embedding of {config.new_user_photos} photos": (
                lambda image, k: enhance(pienet, image, personal[k])),
            "new users: PieNet, mean training vector": (
                lambda image, k: enhance(pienet, image, mean)),
            "new users: input (identity)": lambda image, k: image}
        scores = self._scores(users, methods)
        rows = [{"name": method, "metrics": {
            "psnr": None, "ssim": None,
            "mpsnr": float(np.mean([v[0] for v in per_user.values()])),
            "mssim": float(np.mean([v[1] for v in per_user.values()]))}}
            for method, per_user in scores.items() if per_user]
        return rows, {method: {user: {"psnr": v[0], "ssim": v[1], "images": v[2]}
                               for user, v in values.items()} for method, values in scores.items()}

    def headline(self, report):
        rows = {row["name"]: row["metrics"] for row in report["rows"]}
        if report.get("stage") == "embedding":
            metrics_all = rows["all users"]
            return (f"Embedding: {metrics_all['nearest_own']:.3f} of held-out retouches nearest "
                    f"their own user's vector ({metrics_all['nearest_own_cosine']:.3f} by "
                    "cosine)")
        line = ", ".join(f"{name} {m['mpsnr']:.2f} dB" for name, m in rows.items())
        return f"mPSNR: {line}"

    # -- export -------------------------------------------------------------------------------
    def export(self, models, train_step=None):
        """enhancer: PieNet with an image and a preference-vector input
        (`tools.export.export_pienet`), the training users' vectors in its metadata; the
        embedding stage exports nothing."""
        config = self.config
        if config.stage != "enhancer":
            return None
        _, vectors = self._user_vectors()
        return Export("pienet", models["pienet"], metadata={
            "system": "pienet",
            "paper": "Kim et al., PieNet: Personalized Image Enhancement Network (ECCV 2020)",
            "users": {name: [float(v) for v in vector]
                      for name, vector in zip(self.data.users.names, vectors)},
            "mean_vector": [float(v) for v in vectors.mean(axis=0)],
            "resnet18_weights": config.resnet18_weights or "RANDOM",
            "warning": None if config.resnet18_weights else RANDOM_BACKBONE_WARNING,
            "train_step": train_step,
            "config": dataclasses.asdict(config),
        })
