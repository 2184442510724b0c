"""PIEA speed: seconds per 500x333 photo for the full 20 iterations, against NIMA alone.

    python benchmarks/piea_speed.py [--backbones=mobilenet,vgg16,inception_v2]
        [--height=333] [--width=500] [--iterations=20] [--repeats=3]

For each NIMA backbone (random weights: the cost does not depend on them) it prints, in the
same run and on the same photo:

- `piea s/photo`: one `enhancers.piea.enhance` call, Algorithm 1 with M iterations (filters,
  NIMA forward and backward, parameter update, and the final render and score);
- `M x NIMA f+b`: M times the cost of one NIMA forward and backward pass on the photo alone
  (the gradient of the mean score with respect to the pixels, in a `tf.function`);
- `ratio`: the first over the second, the overhead of the filters and of the loop. The target
  is at most 1.3;
- `filters f+b ms`: for reference, one forward and backward pass of the filter chain alone
  (`filters.apply_raw_planar_logs`, the gradient with respect to the raw parameters), the
  part of each iteration that is not NIMA.

After one untimed warm-up (tracing) of each, `repeats` rounds each time one PIEA call and
then M NIMA passes, so that drifts in the machine's speed hit both; the figures are the
medians over the rounds (the ratio is the median of the per-round ratios). Runs on whatever
device TensorFlow picks; XLA is off, as in `enhancers.piea`.
"""
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from absl import app, flags  # noqa: E402

import nima  # noqa: E402
from enhancers import filters, piea  # noqa: E402

flags.DEFINE_list("backbones", list(nima.BACKBONES), "NIMA backbones to measure.")
flags.DEFINE_integer("height", 333, "Photo height (the paper's FiveK photos are 500x333).")
flags.DEFINE_integer("width", 500, "Photo width.")
flags.DEFINE_integer("iterations", piea.ITERATIONS, "M.")
flags.DEFINE_integer("repeats", 3, "Timed calls per figure (median reported).")
FLAGS = flags.FLAGS

TARGET_RATIO = 1.3


def _seconds(fn):
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def measure(backbone, height, width, iterations, repeats):
    """(PIEA seconds, M x NIMA f+b seconds, ratio, filters f+b seconds), medians over
    `repeats` alternating rounds: each round times one PIEA call, then M NIMA passes, so drifts
    in machine speed hit both (and then M passes of the filters alone)."""
    model = nima.build_nima(backbone)
    photo = tf.constant(np.random.default_rng(0).random((1, height, width, 3), np.float32))

    @tf.function(input_signature=[tf.TensorSpec([None, None, None, 3], tf.float32)])
    def nima_forward_backward(images):
        with tf.GradientTape() as tape:
            tape.watch(images)
            score = tf.reduce_sum(nima.mean_score(model(images, training=False)))
        return tape.gradient(score, images)

    def nima_passes():
        for _ in range(iterations):
            nima_forward_backward(photo).numpy()

    logs = filters.planar_logs(photo)
    raw = {name: tf.constant(value) for name, value in filters.initial_raw_parameters(1).items()}
    upstream = tf.constant(np.random.default_rng(1).normal(size=tuple(logs.shape)), tf.float32)

    @tf.function
    def filters_forward_backward():
        with tf.GradientTape() as tape:
            tape.watch(raw)
            planes = filters.apply_raw_planar_logs(logs, raw)
        return tape.gradient(planes, raw, output_gradients=upstream)

    def filter_passes():
        for _ in range(iterations):
            tf.nest.map_structure(lambda g: g.numpy(), filters_forward_backward())

    enhancer = piea.PieaEnhancer(model, iterations=iterations)
    enhancer.enhance(photo)  # warm-up: tracing
    nima_passes()
    filter_passes()
    rounds = [(_seconds(lambda: enhancer.enhance(photo)), _seconds(nima_passes),
               _seconds(filter_passes)) for _ in range(repeats)]
    piea_seconds = statistics.median(p for p, _, _ in rounds)
    nima_seconds = statistics.median(n for _, n, _ in rounds)
    ratio = statistics.median(p / n for p, n, _ in rounds)
    filter_seconds = statistics.median(f for _, _, f in rounds) / iterations
    return piea_seconds, nima_seconds, ratio, filter_seconds


def main(argv):
    del argv
    print(f"TensorFlow {tf.__version__}, devices: "
          f"{[d.name for d in tf.config.list_logical_devices()]}, {os.cpu_count()} CPU cores")
    print(f"photo {FLAGS.width}x{FLAGS.height}, M = {FLAGS.iterations}, median of "
          f"{FLAGS.repeats}; target ratio <= {TARGET_RATIO}")
    print(f"{'backbone':<14}{'piea s/photo':>14}{f'{FLAGS.iterations} x NIMA f+b':>18}"
          f"{'ratio':>8}{'':<13}{'filters f+b ms':>15}")
    for backbone in FLAGS.backbones:
        piea_seconds, nima_seconds, ratio, filter_seconds = measure(
            backbone, FLAGS.height, FLAGS.width, FLAGS.iterations, FLAGS.repeats)
        verdict = "ok" if ratio <= TARGET_RATIO else "OVER TARGET"
        print(f"{backbone:<14}{piea_seconds:>14.3f}{nima_seconds:>18.3f}{ratio:>8.3f}  "
              f"{verdict:<11}{1000 * filter_seconds:>15.1f}", flush=True)


if __name__ == "__main__":
    app.run(main)
