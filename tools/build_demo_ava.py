"""`python -m tools.build_demo_ava --output_dir=DIR [--num_images --image_size --seed]`.

Builds the embedded demo set (datasets/demo.py) in the real AVA.txt format.
"""
from absl import app, flags, logging

from datasets.demo import build_demo_ava
from tools import cli


def define_flags(flag_values):
    flags.DEFINE_string("output_dir", None, "Directory for AVA.txt, images/, labels.csv.",
                        flag_values=flag_values)
    flags.DEFINE_integer("num_images", 1200, "Number of images.", flag_values=flag_values)
    flags.DEFINE_integer("image_size", 256, "Shorter side of every image, in pixels.",
                         flag_values=flag_values)
    flags.DEFINE_integer("seed", 0, "Seed; the same seed gives the same set.",
                         flag_values=flag_values)
    flags.mark_flag_as_required("output_dir", flag_values=flag_values)
    cli.require_directory("output_dir", flag_values)


def run(FLAGS, args):
    if args:
        raise app.UsageError(f"Unexpected arguments: {' '.join(args)}")
    ava_txt, image_dir = build_demo_ava(
        FLAGS.output_dir, num_images=FLAGS.num_images, image_size=FLAGS.image_size, seed=FLAGS.seed
    )
    logging.info("demo AVA set ready: %s, %s", ava_txt, image_dir)
    print(f"AVA.txt:   {ava_txt}\nimage dir: {image_dir}")
    return 0


def main(argv=None):
    return cli.main(define_flags, run, argv)


if __name__ == "__main__":
    cli.run_main(define_flags, run)
