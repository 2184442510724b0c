"""Settings, each declared once (DESIGN.md section 3).

A system's config is a dataclass that extends `RunConfig`; every field is declared with
`setting(default, help, choices=...)`, and `train.flags.define_flags` turns the fields into absl
flags of the same name, type, default and help. A subclass that changes a default re-declares the
field (WESPE: batch 30, 20,000 steps).
"""
import dataclasses

from train.strategies import STRATEGIES

MODES = ("train", "eval", "export")


def setting(default, help, *, choices=None, multi=False):
    """A config field and its flag: `help` is the flag's help text; `choices` makes the flag an
    enum; `multi` makes a tuple field a repeatable flag (--x=a --x=b) instead of a comma list."""
    return dataclasses.field(default=default,
                             metadata={"help": help, "choices": choices, "multi": multi})


@dataclasses.dataclass
class RunConfig:
    model_dir: str = setting(None, "Checkpoints, TensorBoard logs, final weights and the "
                             "evaluation. Required.")
    export_dir: str | None = setting(None, "SavedModel base directory; versions go in <dir>/<n>/.")
    export_version: int | None = setting(None, "Export version (default: next free integer).")
    train_steps: int = setting(10000, "Total training steps (a resumed run counts on).")
    batch_size: int = setting(64, "Global batch size, split over replicas.")
    strategy: str = setting("default", "tf.distribute strategy.", choices=STRATEGIES)
    num_cpu_devices: int = setting(2, "With --strategy=mirrored and no GPU: logical CPU devices.")
    seed: int = setting(0, "Seed for initialisation, data order and augmentation.")
    mode: str = setting("train", "train (then eval and export), eval or export.", choices=MODES)
    checkpoint_every: int = setting(1000, "Steps between checkpoints.")
    log_every: int = setting(100, "Steps between progress lines and TensorBoard points.")
    mixed_precision: bool = setting(False, "float16 with loss scaling on GPUs, bfloat16 on CPUs.")


REQUIRED_FIELDS = ("model_dir",)
