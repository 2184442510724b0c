"""`python -m tools.build_wespe_demo --output_dir=DIR [--patch_size --num_train_patches ...]`.

Builds the embedded WESPE demo set (datasets/wespe_demo.py) in DPED's layout, with the phone
named "phone", and prints its root (the `--dped_dir` of a WESPE run).
"""
from absl import flags, logging

from datasets.wespe_demo import PHONE, build_wespe_demo
from tools import cli


def define_flags(flag_values):
    flags.DEFINE_string("output_dir", None, "Root directory of the set.", flag_values=flag_values)
    flags.DEFINE_integer("patch_size", 100, "Side of the training and test patches (16 to 300).",
                         flag_values=flag_values)
    flags.DEFINE_integer("num_train_patches", 3000,
                         "Training patches per domain (phone, canon).", flag_values=flag_values)
    flags.DEFINE_integer("num_test_patches", 100, "Aligned (phone, canon) test patch pairs.",
                         flag_values=flag_values)
    flags.DEFINE_integer("seed", 0, "Seed; the same seed gives the same set.",
                         flag_values=flag_values)
    flags.mark_flag_as_required("output_dir", flag_values=flag_values)
    cli.require_directory("output_dir", flag_values)


def run(FLAGS, args):
    del args  # positional arguments are ignored, as they always were
    root = build_wespe_demo(FLAGS.output_dir, patch_size=FLAGS.patch_size,
                            num_train_patches=FLAGS.num_train_patches,
                            num_test_patches=FLAGS.num_test_patches, seed=FLAGS.seed)
    logging.info("WESPE demo set ready: %s (phone %r)", root, PHONE)
    print(root)
    return 0


def main(argv=None):
    """`python -m tools.build_wespe_demo` in this process: `argv` as sys.argv; returns the exit
    code."""
    return cli.main(define_flags, run, argv)


if __name__ == "__main__":
    cli.run_main(define_flags, run)
