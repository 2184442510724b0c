"""`python -m tools.build_wespe_demo --output_dir=DIR [--patch_size --num_train_patches ...]`.

Builds the embedded WESPE demo set (datasets/wespe_demo.py) in DPED's layout, with the phone
named "phone", and prints its root (the `--dped_dir` of a WESPE run).
"""
from absl import app, flags, logging

from datasets.wespe_demo import PHONE, build_wespe_demo

flags.DEFINE_string("output_dir", None, "Root directory of the set.")
flags.DEFINE_integer("patch_size", 100, "Side of the training and test patches (16 to 300).")
flags.DEFINE_integer("num_train_patches", 3000, "Training patches per domain (phone, canon).")
flags.DEFINE_integer("num_test_patches", 100, "Aligned (phone, canon) test patch pairs.")
flags.DEFINE_integer("seed", 0, "Seed; the same seed gives the same set.")
flags.mark_flag_as_required("output_dir")
FLAGS = flags.FLAGS


def main(argv):
    del argv
    root = build_wespe_demo(FLAGS.output_dir, patch_size=FLAGS.patch_size,
                            num_train_patches=FLAGS.num_train_patches,
                            num_test_patches=FLAGS.num_test_patches, seed=FLAGS.seed)
    logging.info("WESPE demo set ready: %s (phone %r)", root, PHONE)
    print(root)


if __name__ == "__main__":
    app.run(main)
