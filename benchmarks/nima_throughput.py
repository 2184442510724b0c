"""NIMA throughput: images/s for inference and for a training step, per backbone.

    python benchmarks/nima_throughput.py [--backbones=mobilenet,vgg16,inception_v2]
        [--sizes=224x224x64,333x500x1] [--repeats=3]

Each figure is the median over `repeats` timed calls after one warm-up (tracing) call, on
whatever device TensorFlow picks (the CPU here). The training step is the one
`python -m train.nima` runs (EMD loss, momentum SGD, head/base learning rates).
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from absl import app, flags  # noqa: E402

import nima  # noqa: E402
from timing import median_seconds  # noqa: E402
from train import nima_task, runner  # noqa: E402

tf.get_logger().setLevel("ERROR")  # one tf.function per case: retracing warnings are expected

flags.DEFINE_list("backbones", list(nima.BACKBONES), "Backbones to measure.")
flags.DEFINE_list("sizes", ["224x224x64", "333x500x1"], "HEIGHTxWIDTHxBATCH cases.")
flags.DEFINE_integer("repeats", 3, "Timed calls per figure (median reported).")
FLAGS = flags.FLAGS


def measure(backbone, height, width, batch, repeats):
    config = nima_task.NimaConfig(model_dir="unused", backbone=backbone, batch_size=batch)
    task = nima_task.NimaTask(config)
    task.data = ([None] * (1000 * batch), [])  # 1000 steps an epoch for the decay; no data
    models, _, train_step = runner.build_training(task)
    model = models["model"]
    rng = np.random.default_rng(0)
    images = tf.constant(rng.random((batch, height, width, 3), np.float32))
    targets = tf.constant(rng.dirichlet(np.ones(10), batch).astype(np.float32))

    infer = tf.function(lambda x: model(x, training=False))
    inference = median_seconds(lambda: infer(images).numpy(), repeats)

    step = tf.function(train_step)
    training = median_seconds(lambda: float(step((images, targets))["emd_loss"]), repeats)
    return batch / inference, batch / training


def main(argv):
    del argv
    print(f"TensorFlow {tf.__version__}, devices: "
          f"{[d.name for d in tf.config.list_logical_devices()]}, {os.cpu_count()} CPU cores")
    print(f"{'backbone':<14}{'input':>16}{'inference img/s':>18}{'train step img/s':>18}")
    for backbone in FLAGS.backbones:
        for case in FLAGS.sizes:
            height, width, batch = (int(v) for v in case.split("x"))
            infer_rate, train_rate = measure(backbone, height, width, batch, FLAGS.repeats)
            print(f"{backbone:<14}{f'{height}x{width} b{batch}':>16}"
                  f"{infer_rate:>18.2f}{train_rate:>18.2f}", flush=True)


if __name__ == "__main__":
    app.run(main)
