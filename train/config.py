"""Settings, each declared once (DESIGN.md section 3).

A system's config is a dataclass that extends `RunConfig`; every field is declared with
`setting(default, help, choices=...)`, and `train.flags.define_flags` turns the fields into absl
flags of the same name, type, default and help. A subclass that changes a default re-declares the
field (WESPE: batch 30, 20,000 steps).

Settings are checked once, here (`setting_error`): a float must be finite, an int at most
INT_MAX (TensorFlow carries it as an int32), a field declared with `minimum=` / `above=` /
`maximum=` must lie in that range, and one declared with `directory=True` (a folder the run
writes into) must not be a file nor lie under one. The command line checks them when it parses
(absl validators: one line naming the flag, exit status 1); a config built in Python checks them
in `RunConfig.__post_init__` (`ConfigError`, a ValueError naming the flag). A float -0.0 is
stored as 0.0.
"""
import dataclasses
import math

from tools.cli import directory_error
from train.strategies import STRATEGIES

MODES = ("train", "eval", "export")
INT_MAX = 2**31 - 1  # the largest int setting (an int32 in TensorFlow), unless it says less
MAX_IMAGE_SIDE = 2**14  # the largest image side a setting may ask for
MAX_CPU_DEVICES = 256  # --num_cpu_devices


class ConfigError(ValueError):
    """A setting, or a relation between settings, that cannot work; the message names the flag.
    The command line prints it in one line and exits 1."""


def setting(default, help, *, choices=None, multi=False, minimum=None, above=None,
            maximum=None, directory=False):
    """A config field and its flag: `help` is the flag's help text; `choices` makes the flag an
    enum; `multi` makes a tuple field a repeatable flag (--x=a --x=b) instead of a comma list;
    `minimum` (inclusive), `above` (exclusive) and `maximum` (inclusive) bound a number (an int
    is at most INT_MAX anyway); `directory` marks a folder the run writes into."""
    return dataclasses.field(default=default, metadata={
        "help": help, "choices": choices, "multi": multi, "minimum": minimum, "above": above,
        "maximum": maximum, "directory": directory})


def setting_error(field, value):
    """Why `value` is not allowed for the config field `field` ("must be at least 1"), or None:
    numbers (finite floats, ints up to INT_MAX, the field's bounds) and folders to write into
    (`tools.cli.directory_error`)."""
    bounds = field.metadata
    if isinstance(value, str) and bounds.get("directory"):
        return directory_error(value)
    if value is None or isinstance(value, (bool, str, tuple, list)):
        return None
    if isinstance(value, float) and not math.isfinite(value):
        return "must be a finite number"
    maximum = bounds.get("maximum")
    if maximum is None and isinstance(value, int):
        maximum = INT_MAX
    if bounds.get("minimum") is not None and value < bounds["minimum"]:
        return f"must be at least {bounds['minimum']}"
    if bounds.get("above") is not None and value <= bounds["above"]:
        return f"must be above {bounds['above']}"
    if maximum is not None and value > maximum:
        return f"must be at most {maximum}"
    return None


@dataclasses.dataclass
class RunConfig:
    model_dir: str = setting(None, "Checkpoints, TensorBoard logs, final weights and the "
                             "evaluation. Required.", directory=True)
    export_dir: str | None = setting(None, "SavedModel base directory; versions go in <dir>/<n>/.",
                                     directory=True)
    export_version: int | None = setting(None, "Export version (default: next free integer).",
                                         minimum=0)
    train_steps: int = setting(10000, "Total training steps (a resumed run counts on).",
                               minimum=1)
    batch_size: int = setting(64, "Global batch size, split over replicas.", minimum=1)
    strategy: str = setting("default", "tf.distribute strategy.", choices=STRATEGIES)
    num_cpu_devices: int = setting(2, "With --strategy=mirrored and no GPU: logical CPU devices.",
                                   minimum=1, maximum=MAX_CPU_DEVICES)
    seed: int = setting(0, "Seed for initialisation, data order and augmentation.", minimum=0)
    mode: str = setting("train", "train (then eval and export), eval or export.", choices=MODES)
    checkpoint_every: int = setting(1000, "Steps between checkpoints.", minimum=1)
    log_every: int = setting(100, "Steps between progress lines and TensorBoard points.",
                             minimum=1)
    mixed_precision: bool = setting(False, "float16 with loss scaling on GPUs, bfloat16 on CPUs.")

    def __post_init__(self):
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            error = setting_error(field, value)
            if error:
                raise ConfigError(f"--{field.name}={value}: {error}")
            if isinstance(value, float) and value == 0.0:
                setattr(self, field.name, 0.0)  # -0.0 is 0.0


REQUIRED_FIELDS = ("model_dir",)
