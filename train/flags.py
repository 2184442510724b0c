"""absl flags shared by every `python -m train.<system>` entry point (DESIGN.md section 3).

Only entry points read FLAGS; they turn them into config dataclasses for the library code.
"""
import dataclasses

from absl import flags

from train import strategies

MODES = ("train", "eval", "export")


def define_common_flags():
    flags.DEFINE_string("model_dir", None, "Checkpoints, TensorBoard logs and final weights.")
    flags.DEFINE_string("export_dir", None, "SavedModel base directory; versions go in <dir>/<n>/.")
    flags.DEFINE_integer("export_version", None, "Export version (default: next free integer).")
    flags.DEFINE_integer("train_steps", 10000, "Total training steps (a resumed run counts on).")
    flags.DEFINE_integer("batch_size", 64, "Global batch size, split over replicas.")
    flags.DEFINE_enum("strategy", "default", strategies.STRATEGIES, "tf.distribute strategy.")
    flags.DEFINE_integer(
        "num_cpu_devices", 2, "With --strategy=mirrored and no GPU: logical CPU devices."
    )
    flags.DEFINE_integer("seed", 0, "Seed for initialisation, data order and augmentation.")
    flags.DEFINE_enum("mode", "train", MODES, "train (then eval and export), eval or export.")
    flags.DEFINE_integer("checkpoint_every", 1000, "Steps between checkpoints.")
    flags.DEFINE_integer("log_every", 100, "Steps between progress lines and TensorBoard points.")
    flags.DEFINE_bool(
        "mixed_precision", False, "float16 with loss scaling on GPUs, bfloat16 on CPUs."
    )
    flags.mark_flag_as_required("model_dir")


def config_from_flags(config_class, values):
    """`config_class` (a `train.config.RunConfig` subclass) filled from the parsed flags
    `values`: every field of the dataclass is read from the flag of the same name."""
    return config_class(**{field.name: getattr(values, field.name)
                           for field in dataclasses.fields(config_class)})
