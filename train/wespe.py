"""`python -m train.wespe --flagfile=configs/wespe_<preset>.flags [--flag=value ...]`.

Trains WESPE (G, F, D_c, D_t) on DPED, on any two photo collections, or on the embedded demo
set, under tf.distribute; then evaluates (input vs G(x), side by side) and exports G as a
SavedModel. `--mode=eval` and `--mode=export` do only those steps.
"""
import json

from absl import app, flags

from datasets import dped
from train import flags as common_flags
from tools.report import format_table
from train.wespe_task import DATASETS, WespeConfig, run

common_flags.define_common_flags()
flags.DEFINE_enum("dataset", "dped", DATASETS, "DPED on disk, two photo folders, or the demo.")
flags.DEFINE_string("dped_dir", None, "DPED root (dped/ or dped/<phone>/).")
flags.DEFINE_string("phone", "iphone", f"DPED camera: {', '.join(dped.PHONES)}.")
flags.DEFINE_string("source_dir", None, "--dataset=folders: source-domain photos.")
flags.DEFINE_string("target_dir", None, "Target-domain photos (e.g. DIV2K): required with "
                    "--dataset=folders; with dped it replaces the DSLR patches (WESPE [DIV2K]).")
flags.DEFINE_string("eval_source_dir", None, "Aligned test inputs (pairs matched by file name).")
flags.DEFINE_string("eval_target_dir", None, "Aligned test references for PSNR/SSIM.")
flags.DEFINE_string("eval_dir", None, "Photos for the no-reference figures (entropy, bpp, NIMA).")
flags.DEFINE_string("demo_dir", None, "Where the demo set is built (default <model_dir>/demo_data).")
flags.DEFINE_integer("demo_num_train_patches", 3000, "Demo training patches per domain.")
flags.DEFINE_integer("demo_num_test_patches", 100, "Demo aligned test pairs.")
flags.DEFINE_integer("patch_size", 100, "Training patch side (paper: 100).")
flags.DEFINE_bool("augment", True, "Random flips and 90-degree rotations of training patches.")
flags.DEFINE_integer("filters", 64, "Width of G and F (paper: 64).")
flags.DEFINE_integer("residual_blocks", 4, "Residual blocks of G and F (paper: 4).")
flags.DEFINE_string("vgg_weights", None, "Local vgg19_weights_tf_dim_ordering_tf_kernels_notop.h5 "
                    "(without it the content loss uses random VGG-19 features, and says so).")
flags.DEFINE_string("content_layer", "relu5_4", "VGG-19 layer of the content loss.")
flags.DEFINE_float("content_weight", 1.0, "Weight of L_content (equation 6: 1).")
flags.DEFINE_float("color_weight", 5e-3, "Weight of L_color (equation 6: 5e-3).")
flags.DEFINE_float("texture_weight", 5e-3, "Weight of L_texture (equation 6: 5e-3).")
flags.DEFINE_float("tv_weight", 10.0, "Weight of L_tv (equation 6: 10).")
flags.DEFINE_float("identity_weight", 0.0, "Not in the paper (0 = off): weight of CycleGAN's "
                   "identity loss ||G(y)-y||^2 + ||F(x)-x||^2 (used by the CPU demo).")
flags.DEFINE_float("generator_learning_rate", 5e-4, "Adam rate of G and F (DPED's 5e-4).")
flags.DEFINE_float("discriminator_learning_rate", 5e-4, "Adam rate of D_c and D_t.")
flags.DEFINE_float("adam_beta_1", 0.9, "Adam beta_1.")
flags.DEFINE_string("nima_weights", None, "NIMA weights file for the NIMA score in evaluation, "
                    "or 'demo' for the demo NIMA (trained once into the cache).")
flags.DEFINE_string("nima_backbone", "mobilenet", "Backbone of --nima_weights.")
flags.DEFINE_integer("eval_max_images", None, "Evaluate at most this many photos (default all).")
flags.DEFINE_integer("eval_save_images", 4, "Enhanced photos written to <model_dir>/eval/.")

FLAGS = flags.FLAGS
# Section 3.6: batch 30 of 100x100 patches, 20,000 iterations.
FLAGS.set_default("batch_size", 30)
FLAGS.set_default("train_steps", 20000)


def config_from_flags():
    return common_flags.config_from_flags(WespeConfig, FLAGS)


def main(argv):
    del argv
    outcome = run(config_from_flags())
    print(json.dumps(outcome, indent=2))
    if outcome.get("eval"):
        print(format_table(outcome["eval"]))


if __name__ == "__main__":
    app.run(main)
