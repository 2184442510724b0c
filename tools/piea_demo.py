"""PIEA demo: three scikit-image photos darkened by one stop, enhanced under the demo NIMA.

    python -m tools.piea_demo --output_dir=runs/piea_demo [--nima_weights=<file> --backbone=...]

Writes `<output_dir>/darkened/<name>.png` (the photo with its pixel values halved: -1 EV with
PIEA's own exposure filter, out = img * 2^-1), then enhances them exactly as
`python -m tools.enhance --method=piea` does into `<output_dir>/enhanced/`: per photo the
enhanced PNG, `<name>.recipe.json` and `<name>.figure.png` (`--initial_exposure` and
`--piea_select` as there). It prints each photo's NIMA score before (the darkened photo as
given), at iteration 0 (the initial exposure) and of the returned photo, and the recipe's
summary in words. Without `--nima_weights` the guide is the demo NIMA
(`nima.demo_model()`, trained into a cache the first time: a few minutes on a CPU).
"""
import json
import os

import numpy as np
import skimage.data
from absl import flags, logging
from PIL import Image

import nima
from enhancers import piea
from tools import cli, enhance

PHOTOS = ("astronaut", "coffee", "chelsea")
STOPS_DARKER = 1.0


def darkened_photos(directory):
    """Writes the three photos darkened by one stop as PNGs; returns their paths."""
    os.makedirs(directory, exist_ok=True)
    paths = []
    for name in PHOTOS:
        photo = getattr(skimage.data, name)().astype(np.float64)  # 8-bit values, exact halves
        path = os.path.join(directory, f"{name}.png")
        Image.fromarray(np.rint(photo * 2.0 ** -STOPS_DARKER).astype(np.uint8)).save(path)
        paths.append(path)
    return paths


def define_flags(flag_values):
    flags.DEFINE_string("output_dir", "runs/piea_demo", "Where the photos go.",
                        flag_values=flag_values)
    cli.require_directory("output_dir", flag_values)
    flags.DEFINE_string("nima_weights", None, "Whole-NIMA weights file; default: the demo NIMA.",
                        flag_values=flag_values)
    flags.DEFINE_enum("backbone", piea.PAPER_BACKBONE, list(nima.BACKBONES),
                      "Backbone of --nima_weights.", flag_values=flag_values)
    flags.DEFINE_integer("iterations", piea.ITERATIONS, "M.", lower_bound=0,
                         flag_values=flag_values)
    flags.DEFINE_float("learning_rate", piea.LEARNING_RATE, "lambda.", flag_values=flag_values)
    cli.require_finite("learning_rate", flag_values)
    enhance.define_piea_choice_flags(flag_values)


def run(FLAGS, args):
    del args  # positional arguments are ignored, as they always were
    paths = darkened_photos(os.path.join(FLAGS.output_dir, "darkened"))
    nima_model, description = piea.load_nima(FLAGS.nima_weights, FLAGS.backbone)
    enhance_fn = enhance.piea_enhance_fn(nima_model, description, iterations=FLAGS.iterations,
                                         learning_rate=FLAGS.learning_rate,
                                         initial_exposure=FLAGS.initial_exposure,
                                         select=FLAGS.piea_select,
                                         min_gain=FLAGS.piea_min_gain)
    output_dir = os.path.join(FLAGS.output_dir, "enhanced")
    report = enhance.enhance_files(enhance_fn, paths, output_dir, overwrite=True)
    print(report.summary())
    print(f"Guide: {description}")
    for _, output in report.written:
        stem = os.path.splitext(os.path.basename(output))[0]
        with open(os.path.join(output_dir, f"{stem}.recipe.json")) as f:
            recipe = json.load(f)
        print(f"\n{stem}: NIMA {recipe['score_before']:.3f} darkened, "
              f"{recipe['scores'][0]:.3f} at iteration 0 ({recipe['initial_exposure']:+.2f} EV), "
              f"{recipe['score_after']:.3f} returned")
        for line in recipe["summary"]:
            print(f"  {line}")
    logging.info("Figures: %s/*.figure.png", output_dir)
    return 0 if report.ok else 1


def main(argv=None):
    """`python -m tools.piea_demo` in this process: `argv` as sys.argv; returns the exit code."""
    return cli.main(define_flags, run, argv)


if __name__ == "__main__":
    cli.run_main(define_flags, run)
