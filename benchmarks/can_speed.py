"""CAN speed: one training step of equation 1 and 1-megapixel inference.

    python benchmarks/can_speed.py [--backbone=inception_v2] [--train_size=480x640]
                                   [--photo_size=864x1152] [--repeats=3]

Prints the median seconds of one training step at the paper's settings (batch 1, a 480x640
pair, the paper's CAN: 10 layers, 32 maps, dilations 1..256, symmetric padding; Adam) with
gamma = 0 (CAN(L2)) and with the NIMA term (CAN(L2+NIMA), NIMA on --backbone), the seconds the
CAN takes to enhance one photo of --photo_size (864x1152 = 0.995 megapixels, FiveK's 4:3), and
the CAN's GFLOPs at that size. Random weights: speed does not depend on them.
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from absl import app, flags  # noqa: E402

import nima  # noqa: E402
from losses import nima_loss  # noqa: E402
from timing import median_seconds  # noqa: E402
from train import can_task, runner  # noqa: E402

flags.DEFINE_string("backbone", "inception_v2", "NIMA backbone of the loss (paper: Inception-v2).")
flags.DEFINE_string("train_size", "480x640", "HxW of the training pair (paper: 480x640).")
flags.DEFINE_string("photo_size", "864x1152", "HxW of the inference figure (about 1 megapixel).")
flags.DEFINE_integer("repeats", 3, "Timed calls per figure (after one warm-up call).")
FLAGS = flags.FLAGS


def _size(text):
    height, width = (int(v) for v in text.lower().split("x"))
    return height, width


def can_gflops(model, height, width):
    """Multiply-adds x 2 of the CAN's convolutions on one height x width photo."""
    total = 0
    for layer in model.layers:
        if isinstance(layer, keras.layers.Conv2D):
            kernel = layer.kernel.shape
            total += 2 * height * width * int(np.prod(kernel))
    return total / 1e9


def main(argv):
    del argv
    rng = np.random.default_rng(0)
    height, width = _size(FLAGS.train_size)
    pair = tuple(tf.constant(rng.uniform(size=(1, height, width, 3)), tf.float32)
                 for _ in range(2))
    quality = nima_loss(nima.build_nima(FLAGS.backbone))
    figures = {}
    for name, gamma in (("CAN(L2)", 0.0), ("CAN(L2+NIMA)", can_task.CanConfig.nima_weight)):
        # Built without a NIMA file (gamma 0), then given the random NIMA of --backbone.
        task = can_task.CanTask(can_task.CanConfig(model_dir="/nonexistent", nima_weight=0.0))
        models, optimizers, _ = runner.build_training(task)
        model = models["can"]
        task.config.nima_weight, task.quality = gamma, (quality if gamma > 0 else None)
        step = tf.function(task.make_train_step(models, optimizers))
        figures[name] = median_seconds(lambda: step(pair)["loss"].numpy(), FLAGS.repeats)

    photo_h, photo_w = _size(FLAGS.photo_size)
    enhance = can_task.enhance_fn(model)
    photo = rng.uniform(size=(photo_h, photo_w, 3)).astype(np.float32)
    inference = median_seconds(lambda: enhance(photo), FLAGS.repeats)

    devices = "GPU" if tf.config.list_physical_devices("GPU") else f"CPU ({os.cpu_count()} cores)"
    print(f"CAN speed on {devices}; median of {FLAGS.repeats} calls")
    print(f"  training step, batch 1, {height}x{width}:")
    for name, seconds in figures.items():
        extra = f" (NIMA {FLAGS.backbone})" if name.endswith("NIMA)") else ""
        print(f"    {name:14s}{extra:24s} {seconds:8.3f} s")
    print(f"  inference, one {photo_h}x{photo_w} photo ({photo_h * photo_w / 1e6:.2f} MP): "
          f"{inference:.3f} s, {can_gflops(model, photo_h, photo_w):.1f} GFLOPs")


if __name__ == "__main__":
    app.run(main)
