"""WESPE speed: one full training step (D_c + D_t, then G + F) and full-size enhancement.

    python benchmarks/wespe_step.py [--batch_size=30] [--patch_size=100] [--repeats=3]

Prints the median milliseconds of a training step at the paper's sizes (batch 30, 100x100
patches, 64-channel G and F), the part of it spent in VGG-19 (the forward pass on x plus the
forward and backward passes on F(G(x)), timed on their own), and the seconds G takes to enhance
one 1536x2048 photo (iPhone 3GS resolution, DPED's full-size test images). Random weights: speed
does not depend on them.
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from absl import app, flags  # noqa: E402

from losses import content_loss  # noqa: E402
from timing import median_seconds  # noqa: E402
from train import runner, wespe_task  # noqa: E402

flags.DEFINE_integer("batch_size", 30, "Training batch (paper: 30).")
flags.DEFINE_integer("patch_size", 100, "Training patch side (paper: 100).")
flags.DEFINE_integer("filters", 64, "Width of G and F (paper: 64).")
flags.DEFINE_integer("repeats", 3, "Timed calls per figure (after one warm-up call).")
flags.DEFINE_string("photo_size", "1536x2048", "HxW of the enhancement figure.")
FLAGS = flags.FLAGS


def main(argv):
    del argv
    config = wespe_task.WespeConfig(model_dir="/nonexistent", patch_size=FLAGS.patch_size,
                                    filters=FLAGS.filters, batch_size=FLAGS.batch_size)
    rng = np.random.default_rng(0)
    shape = (FLAGS.batch_size, FLAGS.patch_size, FLAGS.patch_size, 3)
    source = tf.constant(rng.uniform(size=shape), tf.float32)
    target = tf.constant(rng.uniform(size=shape), tf.float32)

    task = wespe_task.WespeTask(config)
    models, _, train_step = runner.build_training(task)
    vgg = task.vgg
    step = tf.function(train_step)
    step_s = median_seconds(lambda: step((source, target))["generator_loss"].numpy(),
                            FLAGS.repeats)

    @tf.function
    def vgg_part(x, reconstructed):
        with tf.GradientTape() as tape:
            tape.watch(reconstructed)
            loss = tf.reduce_mean(content_loss(vgg(x), vgg(reconstructed)))
        return tape.gradient(loss, reconstructed)

    vgg_s = median_seconds(lambda: vgg_part(source, target).numpy(), FLAGS.repeats)

    height, width = (int(v) for v in FLAGS.photo_size.split("x"))
    photo = tf.constant(rng.uniform(size=(1, height, width, 3)), tf.float32)
    enhance = tf.function(lambda x: models["generator"](x, training=False))
    photo_s = median_seconds(lambda: enhance(photo).numpy(), max(1, FLAGS.repeats - 1))

    devices = [d.name for d in tf.config.list_logical_devices()]
    print(f"devices: {devices}")
    print(f"training step, batch {FLAGS.batch_size} of {FLAGS.patch_size}x{FLAGS.patch_size}: "
          f"{step_s * 1000:.0f} ms ({FLAGS.batch_size / step_s:.1f} patches/s)")
    print(f"  of which VGG-19 (forward on x, forward+backward on F(G(x))): {vgg_s * 1000:.0f} ms "
          f"({100 * vgg_s / step_s:.0f}%)")
    print(f"enhance one {height}x{width} photo with G: {photo_s:.2f} s")


if __name__ == "__main__":
    app.run(main)
