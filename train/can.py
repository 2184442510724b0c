"""`python -m train.can --flagfile=configs/can_<preset>.flags [--flag=value ...]`.

Trains a CAN with the L2 + NIMA loss of Talebi & Milanfar (equation 1) on MIT-Adobe FiveK, on
any folder of inputs and an operator's references, or on the embedded demo set, under
tf.distribute; then evaluates on the test pairs at full size (PSNR, SSIM, NIMA scores as in
Figure 6) and exports the CAN as a SavedModel. `--mode=eval` and `--mode=export` do only those
steps.
"""
import json

from absl import app, flags

import nima
from enhancers import can
from losses import FIDELITY_LOSSES
from train import flags as common_flags
from train.can_task import DATASETS, CanConfig, run

common_flags.define_common_flags()
flags.DEFINE_enum("dataset", "fivek", DATASETS, "FiveK with expert folders, an input folder and "
                  "an operator's reference folder, or the embedded demo set.")
flags.DEFINE_string("fivek_dir", None, "FiveK root: input/ and expert<X>/ folders.")
flags.DEFINE_list("experts", ["C"], "FiveK experts (A..E) whose retouches are references.")
flags.DEFINE_string("input_dir", None, "--dataset=folders: the input photos.")
flags.DEFINE_string("reference_dir", None, "--dataset=folders: the operator's outputs, matched "
                    "to the inputs by file name.")
flags.DEFINE_string("train_list", None, "Training photos (FiveK ids or stems, one a line); "
                    "default: the paper's 2,500/2,500 split.")
flags.DEFINE_string("test_list", None, "Test photos, as --train_list.")
flags.DEFINE_string("demo_dir", None, "Where the demo set is built (default <model_dir>/demo_data).")
flags.DEFINE_integer("demo_num_train", 200, "Training pairs of the demo set.")
flags.DEFINE_integer("train_height", 480, "Height of the rescaled training pairs (paper: 480; "
                     "portrait photos swap height and width).")
flags.DEFINE_integer("train_width", 640, "Width of the rescaled training pairs (paper: 640).")
flags.DEFINE_integer("can_depth", can.DEPTH, "CAN layers (paper: 10).")
flags.DEFINE_integer("can_width", can.WIDTH, "CAN feature maps (paper: 32; Chen et al.: 24).")
flags.DEFINE_list("can_dilations", None, "Dilations of the 3x3 layers (default 1,2,...,"
                  "2^(depth-2); Chen et al.: 1,2,4,8,16,32,64,1).")
flags.DEFINE_enum("can_padding", "symmetric", can.PADDINGS, "Padding of the dilated layers "
                  "(paper: symmetric; Chen et al.: zero).")
flags.DEFINE_bool("can_adaptive_batch_norm", False, "Chen et al.'s w0 x + w1 BN(x).")
flags.DEFINE_bool("can_identity_output", False, "Start the 1x1 output layer at the identity, "
                  "so the CAN starts as the identity (not the papers': Glorot; the demo's).")
flags.DEFINE_enum("fidelity", "l2", FIDELITY_LOSSES, "Fidelity term f of equation 1.")
flags.DEFINE_float("huber_delta", 0.1, "Delta of --fidelity=huber (pixel values in [0, 1]).")
flags.DEFINE_float("nima_weight", 1e-4, "gamma of equation 1 (paper: 1e-4; 0: CAN(L2)).")
flags.DEFINE_string("nima_weights", None, "NIMA weights file for --backbone (the loss network "
                    "and the evaluation's scores), or 'demo' for nima.demo_model().")
flags.DEFINE_enum("backbone", "inception_v2", nima.BACKBONES, "Backbone of --nima_weights "
                  "(paper: inception_v2).")
flags.DEFINE_float("learning_rate", 1e-4, "Adam learning rate (paper: 1e-4).")
flags.DEFINE_integer("eval_max_images", None, "Evaluate at most this many test pairs.")
flags.DEFINE_integer("eval_save_images", 4, "Test photos written side by side to <model_dir>/eval.")
flags.DEFINE_multi_string("compare_models", [], "NAME=SAVED_MODEL_DIR: an exported enhancer "
                          "evaluated alongside (e.g. 'CAN(L2)=runs/can_l2/export'); repeatable.")

FLAGS = flags.FLAGS
# Section 4.2: batch 1, 5 x 10^6 steps.
FLAGS.set_default("batch_size", 1)
FLAGS.set_default("train_steps", 5_000_000)


def config_from_flags():
    return common_flags.config_from_flags(CanConfig, FLAGS)


def main(argv):
    del argv
    config = config_from_flags()
    outcome = run(config)
    print(json.dumps(outcome, indent=2))
    rows = outcome.get("eval")
    if rows and config.model_name() in rows:
        before, after = rows["input"], rows[config.model_name()]
        print(f"Test PSNR before (input) {before['psnr']:.2f} dB, after "
              f"({config.model_name()}) {after['psnr']:.2f} dB; SSIM {before['ssim']:.3f}"
              f" -> {after['ssim']:.3f}")


if __name__ == "__main__":
    app.run(main)
