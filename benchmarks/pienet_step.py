"""PieNet speed: the embedding step, the enhancer step and inference, at the paper's shapes and
the CPU demo's, each beside a bare ResNet-18 measured in the same process.

    python benchmarks/pienet_step.py [--shapes=paper,demo] [--repeats=3] [--quick]

paper: section 4.1: the embedding step on 64 triplets at 256 x 256 (128 images through the
       network: positives and negatives in one call), the enhancer step on 8 pairs at 512 x 512
       (decoder widths 256/128/64, equation 6 through the frozen embedding), inference on a
       512 x 512 and a 1024 x 768 photo;
demo:  configs/pienet_demo.flags (16 triplets and 8 pairs at 64 px, widths 32/16/16), the same
       two photos.
--quick: the demo's settings at tiny shapes (4 triplets and 2 pairs at 32 px, widths 8, photos
       32 x 32 and 48 x 40), to check that the script runs.
The reference, timed in the same process at the same batch and size: ResNet-18's forward and
backward pass (for the steps: 2B images for the embedding step, B for the enhancer's encoder)
and its forward pass (for inference), so the ratios say what PieNet adds to its backbone: the
triplet loss and the vectors' update, the decoder and the perceptual loss, the decoder at
inference. Random weights: speed does not depend on them.
"""
import dataclasses
import os
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from absl import app, flags, logging  # noqa: E402
from PIL import Image  # noqa: E402

from timing import median_seconds  # noqa: E402
from datasets.pienet import Users  # noqa: E402
from enhancers.pienet import EMBEDDING_DIM, build_embedding  # noqa: E402
from enhancers.resnet18 import build_resnet18  # noqa: E402
from train import runner  # noqa: E402
from train.flags import parse_config  # noqa: E402
from train.pienet_task import (EMBEDDING_WEIGHTS, PREFERENCE_WEIGHTS,  # noqa: E402
                               PienetConfig, PienetData, PienetTask, build_preferences)

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
flags.DEFINE_list("shapes", ["paper", "demo"], "Which shapes to time: paper, demo.")
flags.DEFINE_integer("repeats", 3, "Timed calls per figure (after one warm-up call).")
flags.DEFINE_bool("quick", False, "Tiny shapes only (a check that the script runs).")
FLAGS = flags.FLAGS
NOWHERE = "/nonexistent/pienet_benchmark"
USERS = ("A", "B", "C", "D", "E")  # FiveK's experts (section 4.1)
PHOTOS = {"paper": ((512, 512), (1024, 768)), "demo": ((512, 512), (1024, 768)),
          "quick": ((32, 32), (48, 40))}


PHOTOS_PER_USER = 4  # --preference_input=photos embeds each user's retouches into its table


def _stand_in_users(folder, rng, size=64):
    """`datasets.pienet.Users` over a few random photo files, each user's "retouch" another
    random file: what --preference_input=photos reads when the enhancer stage builds (the
    timed batches themselves are random)."""
    def random_file(name):
        path = os.path.join(folder, f"{name}.png")
        Image.fromarray(rng.integers(0, 256, (size, size, 3), np.uint8)).save(path)
        return path

    inputs = tuple(random_file(f"input_{j}") for j in range(PHOTOS_PER_USER))
    retouches = tuple(tuple(random_file(f"retouch_{user}_{j}") for j in range(PHOTOS_PER_USER))
                      for user in USERS)
    return Users(names=USERS, inputs=inputs, retouches=retouches,
                 train=tuple(range(PHOTOS_PER_USER)), test=())


def config_for(shapes, embedding_dir):
    common = dict(model_dir=NOWHERE, stage_root=NOWHERE, embedding_dir=embedding_dir,
                  export_dir=None, train_steps=1)
    if shapes == "paper":
        return PienetConfig(stage="embedding", **common)
    demo = parse_config(PienetConfig, ["benchmark",
                                       f"--flagfile={REPO}/configs/pienet_demo.flags"])
    if shapes == "quick":  # the demo's settings at tiny sizes, so that its code path runs
        return dataclasses.replace(
            demo, stage="embedding", embedding_size=32, enhancer_size=32,
            embedding_batch_size=4, enhancer_batch_size=2, decoder_widths=(8, 8, 8),
            preference_channels=4, pixel_head=8, pixel_head_preference=4, **common)
    return dataclasses.replace(demo, stage="embedding", **common)


def _task(config, stage, users):
    config = dataclasses.replace(config, stage=stage,
                                 batch_size=getattr(config, f"{stage}_batch_size"))
    task = PienetTask(config)
    task.__dict__["data"] = PienetData(users)
    return task


def _reference_step(size, count):
    """ResNet-18's forward and backward pass on `count` images (no update)."""
    backbone = build_resnet18(input_shape=(size, size, 3))

    @tf.function
    def step(images):
        with tf.GradientTape() as tape:
            loss = tf.reduce_mean(backbone(images, training=True)["pool"])
        return tape.gradient(loss, backbone.trainable_weights)[0]

    return step


def _line(name, seconds, images, reference):
    print(f"  {name:34s} {seconds * 1000:9.1f} ms  {images / seconds:8.1f} images/s  "
          f"{seconds / reference:6.2f}x ResNet-18")


def time_shapes(shapes, rng, folder, stand_ins):
    config = config_for(shapes, folder)
    repeats = FLAGS.repeats
    size, batch = config.embedding_size, config.embedding_batch_size
    print(f"{shapes}: embedding {batch} triplets at {size} px; enhancer "
          f"{config.enhancer_batch_size} pairs at {config.enhancer_size} px, decoder widths "
          f"{','.join(map(str, config.decoder_widths))}")
    # The embedding step (equations 1-4).
    _, _, train_step = runner.build_training(_task(config, "embedding", stand_ins))
    step = tf.function(train_step)
    images = tf.constant(rng.uniform(size=(2, batch, size, size, 3)), tf.float32)
    users = tf.constant(rng.integers(0, len(USERS), batch), tf.int32)
    seconds = median_seconds(lambda: step((users, images[0], images[1]))["loss"].numpy(),
                             repeats)
    reference = _reference_step(size, 2 * batch)
    both = tf.reshape(images, (2 * batch, size, size, 3))
    base = median_seconds(lambda: reference(both).numpy(), repeats)
    _line("reference: ResNet-18 fwd+bwd", base, 2 * batch, base)
    _line("embedding step", seconds, 2 * batch, base)
    # The enhancer step (equation 6), the embedding frozen.
    size, batch = config.enhancer_size, config.enhancer_batch_size
    task = _task(config, "enhancer", stand_ins)
    models, _, train_step = runner.build_training(task)
    step = tf.function(train_step)
    pairs = tf.constant(rng.uniform(size=(2, batch, size, size, 3)), tf.float32)
    users = tf.constant(rng.integers(0, len(USERS), batch), tf.int32)
    noise = tf.constant(rng.normal(size=(batch, EMBEDDING_DIM)) * 0.005, tf.float32)
    seconds = median_seconds(
        lambda: step((pairs[0], pairs[1], users, noise))["loss"].numpy(), repeats)
    reference = _reference_step(size, batch)
    base = median_seconds(lambda: reference(pairs[0]).numpy(), repeats)
    _line("reference: ResNet-18 fwd+bwd", base, batch, base)
    _line("enhancer step", seconds, batch, base)
    # Inference: one photo, any size (the export's graph: unknown shape).
    pienet = models["pienet"]
    backbone = build_resnet18()
    vector = tf.constant(rng.normal(size=(1, EMBEDDING_DIM)), tf.float32)
    spec = tf.TensorSpec([1, None, None, 3], tf.float32)

    @tf.function(input_signature=[spec])
    def enhance(photo):
        return pienet({"images": photo, "preference": vector}, training=False)["enhanced"]

    @tf.function(input_signature=[spec])
    def encode(photo):
        return backbone(photo, training=False)["pool"]

    for height, width in PHOTOS[shapes]:
        photo = tf.constant(rng.uniform(size=(1, height, width, 3)), tf.float32)
        base = median_seconds(lambda: encode(photo).numpy(), repeats)
        seconds = median_seconds(lambda: enhance(photo).numpy(), repeats)
        _line(f"reference: ResNet-18 on {height}x{width}", base, 1, base)
        _line(f"enhance one {height}x{width} photo", seconds, 1, base)


def _embedding_stage(folder):
    """Random embedding-stage files, so that the enhancer step builds as in training."""
    build_embedding().save_weights(os.path.join(folder, EMBEDDING_WEIGHTS))
    build_preferences(len(USERS)).save_weights(os.path.join(folder, PREFERENCE_WEIGHTS))


def main(argv):
    del argv
    logging.set_verbosity(logging.ERROR)
    rng = np.random.default_rng(0)
    print(f"devices: {[d.name for d in tf.config.list_logical_devices()]}")
    with tempfile.TemporaryDirectory() as folder:
        _embedding_stage(folder)
        stand_ins = _stand_in_users(folder, rng)
        for shapes in (["quick"] if FLAGS.quick else FLAGS.shapes):
            time_shapes(shapes, rng, folder, stand_ins)


if __name__ == "__main__":
    app.run(main)
