"""`python -m tools.build_demo_ava --output_dir=DIR [--num_images --image_size --seed]`.

Builds the embedded demo set (datasets/demo.py) in the real AVA.txt format.
"""
from absl import app, flags, logging

from datasets.demo import build_demo_ava

flags.DEFINE_string("output_dir", None, "Directory for AVA.txt, images/, labels.csv.")
flags.DEFINE_integer("num_images", 1200, "Number of images.")
flags.DEFINE_integer("image_size", 256, "Shorter side of every image, in pixels.")
flags.DEFINE_integer("seed", 0, "Seed; the same seed gives the same set.")
flags.mark_flag_as_required("output_dir")
FLAGS = flags.FLAGS


def main(argv):
    del argv
    ava_txt, image_dir = build_demo_ava(
        FLAGS.output_dir, num_images=FLAGS.num_images, image_size=FLAGS.image_size, seed=FLAGS.seed
    )
    logging.info("demo AVA set ready: %s, %s", ava_txt, image_dir)
    print(f"AVA.txt:   {ava_txt}\nimage dir: {image_dir}")


if __name__ == "__main__":
    app.run(main)
