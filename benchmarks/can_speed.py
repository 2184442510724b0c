"""CAN speed: one training step of equation 1 and 1-megapixel inference.

    python benchmarks/can_speed.py [--backbone=inception_v2] [--train_size=480x640]
                                   [--photo_size=864x1152] [--repeats=3] [--rounds=7]
                                   [--notraining] [--nosaved_models]

Prints the median seconds of one training step at the paper's settings (batch 1, a 480x640
pair, the paper's CAN: 10 layers, 32 maps, dilations 1..256, symmetric padding; Adam) with
gamma = 0 (CAN(L2)) and with the NIMA term (CAN(L2+NIMA), NIMA on --backbone), the seconds the
CAN takes to enhance one photo of --photo_size (864x1152 = 0.995 megapixels, FiveK's 4:3), and
the CAN's GFLOPs at that size. Random weights: speed does not depend on them.

Inference is timed both ways, in one process, in alternating rounds (--rounds): the Keras
layers that train (`Conv2D(dilation_rate=d)`, run by `tf.nn.convolution` as SpaceToBatchND ->
Conv2D -> BatchToSpaceND) and `enhancers.can.inference_model` (native `tf.nn.conv2d(dilations=d)`,
which evaluation and export use); it prints the median wall and CPU seconds of each, their
ratio and the largest difference between their outputs, then the same through a SavedModel of
each (`tools.export.export_enhancer`, loaded by `tools.enhance`; --nosaved_models skips it).
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from absl import app, flags, logging  # noqa: E402

import tempfile  # noqa: E402

import nima  # noqa: E402
from enhancers import can  # noqa: E402
from losses import nima_loss  # noqa: E402
from timing import alternating_medians, median_seconds  # noqa: E402
from tools.enhance import load_saved_model_enhancer  # noqa: E402
from tools.export import export_enhancer  # noqa: E402
from train import can_task, runner  # noqa: E402

flags.DEFINE_string("backbone", "inception_v2", "NIMA backbone of the loss (paper: Inception-v2).")
flags.DEFINE_string("train_size", "480x640", "HxW of the training pair (paper: 480x640).")
flags.DEFINE_string("photo_size", "864x1152", "HxW of the inference figure (about 1 megapixel).")
flags.DEFINE_integer("repeats", 3, "Timed calls per training figure (after one warm-up call).")
flags.DEFINE_integer("rounds", 7, "Alternating rounds of the inference comparison.")
flags.DEFINE_bool("training", True, "Time the training steps (--notraining: inference only).")
flags.DEFINE_bool("saved_models", True, "Also compare the two paths through SavedModels.")
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


def training_figures(rng):
    """{name: median seconds of one training step} for CAN(L2) and CAN(L2+NIMA), and the CAN."""
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
    return figures, model


def keras_path_fn(model):
    """float (h, w, 3) -> clipped output of the Keras layers that train (what `enhance_fn` ran
    before `enhancers.can.inference_model`)."""
    @tf.function(input_signature=[tf.TensorSpec([1, None, None, 3], tf.float32)])
    def enhance(images):
        return tf.clip_by_value(tf.cast(model(images, training=False), tf.float32), 0.0, 1.0)

    return lambda image: enhance(tf.constant(image[None])).numpy()[0]


def print_comparison(title, fns, photo):
    """Times the two paths of `fns` ({"keras": fn, "inference": fn}) alternately and prints
    medians, ratio and the largest output difference."""
    difference = np.abs(fns["keras"](photo) - fns["inference"](photo)).max()
    medians = alternating_medians({name: lambda fn=fn: fn(photo) for name, fn in fns.items()},
                                  FLAGS.rounds)
    (keras_wall, keras_cpu), (native_wall, native_cpu) = medians["keras"], medians["inference"]
    print(f"  {title}:")
    print(f"    Keras Conv2D (SpaceToBatchND)  {keras_wall:8.3f} s   CPU {keras_cpu:8.3f} s")
    print(f"    inference_model (native)       {native_wall:8.3f} s   CPU {native_cpu:8.3f} s")
    print(f"    ratio Keras / native           {keras_wall / native_wall:8.3f}x  CPU "
          f"{keras_cpu / native_cpu:8.3f}x;  max |output difference| {difference:.3g}")


def main(argv):
    del argv
    logging.set_verbosity(logging.WARNING)  # the exports' INFO lines would bury the figures
    tf.get_logger().setLevel("ERROR")
    rng = np.random.default_rng(0)
    if FLAGS.training:
        figures, model = training_figures(rng)
    else:
        figures = {}
        model = can_task.build_model(can_task.CanConfig(model_dir="/nonexistent"))

    photo_h, photo_w = _size(FLAGS.photo_size)
    photo = rng.uniform(size=(photo_h, photo_w, 3)).astype(np.float32)
    devices = "GPU" if tf.config.list_physical_devices("GPU") else f"CPU ({os.cpu_count()} cores)"
    print(f"CAN speed on {devices}")
    if figures:
        height, width = _size(FLAGS.train_size)
        print(f"  training step, batch 1, {height}x{width}, median of {FLAGS.repeats} calls:")
        for name, seconds in figures.items():
            extra = f" (NIMA {FLAGS.backbone})" if name.endswith("NIMA)") else ""
            print(f"    {name:14s}{extra:24s} {seconds:8.3f} s")
    dilations = [layer.dilation_rate[0] for layer in model.layers
                 if isinstance(layer, keras.layers.Conv2D)]
    print(f"  inference, one {photo_h}x{photo_w} photo ({photo_h * photo_w / 1e6:.2f} MP), "
          f"{can_gflops(model, photo_h, photo_w):.1f} GFLOPs, CAN of {len(dilations)} layers, "
          f"dilations {dilations}; medians of {FLAGS.rounds} alternating rounds")
    print_comparison("in process", {"keras": keras_path_fn(model),
                                    "inference": can_task.enhance_fn(model)}, photo)
    if FLAGS.saved_models:
        with tempfile.TemporaryDirectory() as root:
            loaded = {
                "keras": load_saved_model_enhancer(export_enhancer(model, f"{root}/keras")),
                "inference": load_saved_model_enhancer(
                    export_enhancer(can.inference_model(model), f"{root}/inference")),
            }
            print_comparison("through exported SavedModels (serving_default)", loaded, photo)


if __name__ == "__main__":
    app.run(main)
