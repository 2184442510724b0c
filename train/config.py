"""`RunConfig`: the run settings every `train.<system>` shares (DESIGN.md section 3).

Each system's config dataclass extends it with its own fields (and may change a default, as
WESPE does for the batch size); `train.flags.define_common_flags` defines the matching flags.
"""
import dataclasses


@dataclasses.dataclass
class RunConfig:
    model_dir: str  # checkpoints, TensorBoard logs, final weights, evaluation outputs
    train_steps: int = 10000  # total steps; a resumed run counts on from its checkpoint
    batch_size: int = 64  # global batch, split over replicas
    strategy: str = "default"  # train.strategies.STRATEGIES
    num_cpu_devices: int = 2  # --strategy=mirrored without a GPU: logical CPU devices
    seed: int = 0
    mode: str = "train"  # train (then eval and export), eval or export
    checkpoint_every: int = 1000
    log_every: int = 100
    mixed_precision: bool = False
    export_dir: str | None = None  # SavedModel base directory; versions go in <dir>/<n>/
    export_version: int | None = None  # default: the next free integer


RUN_FIELDS = tuple(field.name for field in dataclasses.fields(RunConfig))
