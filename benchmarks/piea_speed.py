"""PIEA speed: seconds per 500x333 photo for the full 20 iterations, against NIMA alone.

    python benchmarks/piea_speed.py [--backbones=mobilenet,vgg16,inception_v2]
        [--height=333] [--width=500] [--iterations=20] [--repeats=5]

For each NIMA backbone (random weights: the cost does not depend on them) it prints, in the
same run and on the same photo (scikit-image's `coffee`, area-resized to height x width):

- `piea s/photo`: one `enhancers.piea.enhance` call, Algorithm 1 with M iterations (filters,
  NIMA forward and backward, parameter update, and the final render and score);
- `M x NIMA f+b`: M times the cost of one NIMA forward and backward pass on the photo alone
  (the gradient of the mean score with respect to the pixels, in a `tf.function`);
- `ratio`: the first over the second, the overhead of the filters and of the loop. The target
  is at most 1.3. It is the median of the per-round ratios, and `range` gives the lowest and
  the highest of them: on a shared (virtual) machine, where single NIMA passes took from 80 ms
  to over a second within one run, single rounds are far apart, so take enough of them;
- `filters f+b ms`: for reference, one forward and backward pass of the filter chain alone
  (`filters.apply_raw_planar_logs`, the gradient with respect to the raw parameters), the
  part of each iteration that is not NIMA.

After one untimed warm-up (tracing) of each, `repeats` rounds each time one PIEA call and
then M NIMA passes, so that drifts in the machine's speed hit both; the figures are the
medians over the rounds (the ratios are medians of the per-round ratios). Runs on whatever
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
flags.DEFINE_integer("repeats", 5, "Timed rounds (medians reported).")
FLAGS = flags.FLAGS

TARGET_RATIO = 1.3


def _seconds(fn):
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def benchmark_photo(height, width):
    """scikit-image's `coffee` (600x400), area-resized: a real photo, float [1, h, w, 3]."""
    from skimage import data
    photo = data.coffee()[None].astype(np.float32) / 255
    return tf.image.resize(photo, (height, width), method="area")


def measure(backbone, height, width, iterations, repeats):
    """Per backbone: a dict of the printed figures (module docstring), from `repeats`
    alternating rounds of one PIEA call, M NIMA passes and M passes of the filters alone."""
    model = nima.build_nima(backbone)
    photo = benchmark_photo(height, width)

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
    piea_seconds, nima_seconds, filter_seconds = zip(*rounds)
    ratios = [p / n for p, n in zip(piea_seconds, nima_seconds)]
    return {
        "piea_seconds": statistics.median(piea_seconds),
        "nima_seconds": statistics.median(nima_seconds),
        "ratio": statistics.median(ratios),
        "lowest": min(ratios),
        "highest": max(ratios),
        "filter_seconds": statistics.median(filter_seconds) / iterations,
    }


def main(argv):
    del argv
    print(f"TensorFlow {tf.__version__}, devices: "
          f"{[d.name for d in tf.config.list_logical_devices()]}, {os.cpu_count()} CPU cores")
    print(f"photo {FLAGS.width}x{FLAGS.height}, M = {FLAGS.iterations}, median of "
          f"{FLAGS.repeats} rounds; target ratio <= {TARGET_RATIO}")
    print(f"{'backbone':<14}{'piea s/photo':>13}{f'{FLAGS.iterations} x NIMA f+b':>16}"
          f"{'ratio':>7}{'':<13}{'range':>11}{'filters f+b ms':>16}")
    for backbone in FLAGS.backbones:
        m = measure(backbone, FLAGS.height, FLAGS.width, FLAGS.iterations, FLAGS.repeats)
        verdict = "ok" if m["ratio"] <= TARGET_RATIO else "OVER TARGET"
        spread = f"{m['lowest']:.2f}-{m['highest']:.2f}"
        print(f"{backbone:<14}{m['piea_seconds']:>13.3f}{m['nima_seconds']:>16.3f}"
              f"{m['ratio']:>7.3f}  {verdict:<11}{spread:>11}"
              f"{1000 * m['filter_seconds']:>16.1f}", flush=True)


if __name__ == "__main__":
    app.run(main)
