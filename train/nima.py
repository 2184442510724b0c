"""`python -m train.nima --flagfile=configs/nima_ava_<backbone>.flags [--flag=value ...]`.

Trains NIMA on AVA (or the embedded demo set) under tf.distribute, then evaluates on the test
split and exports a SavedModel; `--mode=eval` and `--mode=export` do only those steps.
"""
import json

from absl import app, flags

import nima
from train import flags as common_flags
from train.nima_task import NimaConfig, run

common_flags.define_common_flags()
flags.DEFINE_enum("backbone", "mobilenet", nima.BACKBONES, "NIMA base network.")
flags.DEFINE_string("backbone_weights", None, "Local ImageNet weights for the backbone.")
flags.DEFINE_string("init_weights", None, "Local whole-NIMA weights (*.weights.h5) to start from.")
flags.DEFINE_enum("dataset", "ava", ["ava", "demo"], "AVA on disk, or the embedded demo set.")
flags.DEFINE_string("ava_txt", None, "Path of AVA.txt.")
flags.DEFINE_string("image_dir", None, "Directory of the AVA images, <id>.jpg.")
flags.DEFINE_string("split_file", None, "Test image ids, one per line (default: 80/20 split).")
flags.DEFINE_float("test_fraction", 0.2, "Test fraction of the seeded split.")
flags.DEFINE_bool("skip_missing_images", False, "Drop AVA.txt ids that have no image file.")
flags.DEFINE_string("demo_dir", None, "Where the demo set is built (default <model_dir>/demo_data).")
flags.DEFINE_integer("demo_num_images", 1200, "Images in the demo set.")
flags.DEFINE_integer("demo_image_size", 256, "Side of the demo images.")
flags.DEFINE_enum("augmentation", "crop", ["crop", "paper"], "Resize 256 + random crop 224 + "
                  "flip (public ports) or rescale to 480x640 + flip (paper).")
flags.DEFINE_integer("crop_size", 224, "Crop side of --augmentation=crop (resize: x 256/224).")
flags.DEFINE_float("dropout", 0.25, "Dropout before the 10-way head (keep 0.75).")
flags.DEFINE_float("base_learning_rate", 3e-7, "Backbone learning rate (paper: 3e-7).")
flags.DEFINE_float("head_learning_rate", 3e-6, "Head learning rate (paper: 3e-6).")
flags.DEFINE_float("momentum", 0.9, "Momentum of the SGD optimizer.")
flags.DEFINE_float("lr_decay_epochs", 10.0, "Epochs between exponential decays (paper: 10).")
flags.DEFINE_float("lr_decay_rate", 0.95, "Factor of each decay (not given by the paper).")
flags.DEFINE_integer("eval_batch_size", 32, "Batch size of evaluation.")

FLAGS = flags.FLAGS


def config_from_flags():
    return common_flags.config_from_flags(NimaConfig, FLAGS)


def main(argv):
    del argv
    outcome = run(config_from_flags())
    print(json.dumps(outcome, indent=2))
    if outcome.get("srcc") is not None:
        print(f"Test SRCC {outcome['srcc']:.3f} on {outcome['num_images']} test images")
    elif "correlation_note" in outcome:
        print(f"Test SRCC {outcome['correlation_note']}")


if __name__ == "__main__":
    app.run(main)
