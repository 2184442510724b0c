"""Converts a TF-Slim Inception-v2 checkpoint into weights for `nima.inception_v2`.

    python -m tools.convert_slim_inception_v2 \\
        --checkpoint=/path/to/inception_v2.ckpt --output=inception_v2_imagenet.h5

`--checkpoint` is a checkpoint prefix (the released ImageNet one is `inception_v2.ckpt` from
`inception_v2_2016_08_28.tar.gz`) or a directory holding checkpoints. The checkpoint is read
with `tf.train.load_checkpoint`; TF-Slim is not needed. Every variable of the base network
(`InceptionV2/...` up to Mixed_5c: kernels, the stem's depthwise/pointwise kernels and biases,
batch-norm beta/moving_mean/moving_variance) is assigned to `build_inception_v2()` and written
as an HDF5 file keyed by the checkpoint names, which `nima.inception_v2.load_inception_v2_weights`
(and `build_backbone("inception_v2", weights=...)`) read.

What is ignored, and nothing else:
- the classifier, `InceptionV2/Logits/...` (NIMA puts its own head on Mixed_5c);
- `global_step`, and optimizer state: slot variables `<base variable>/<Optimizer>[_N]`
  (Momentum, RMSProp, Adam, Adagrad, Adadelta, Ftrl, ...) and Adam's `beta1_power`/`beta2_power`;
- exponential-moving-average shadows `<base variable>/ExponentialMovingAverage`, unless
  `--use_moving_averages` asks for them: then every base variable takes its shadow's value
  (what slim's eval_image_classifier does with --moving_average_decay) and a missing shadow is
  an error.

Anything else is an error that lists the names: a checkpoint variable the converter cannot
place (an unknown `InceptionV2/...` variable, or an unknown variable outside it), a Keras
weight left unassigned, a shape mismatch. Nothing is skipped silently, and an existing output
file is never overwritten.
"""
import math
import os
import re

import tensorflow as tf
from absl import flags, logging

from nima.inception_v2 import build_inception_v2, save_inception_v2_weights, slim_variable_map
from tools import cli

CLASSIFIER_PREFIX = "InceptionV2/Logits/"
GLOBAL_STEP = "global_step"
MOVING_AVERAGE_SUFFIX = "ExponentialMovingAverage"
OPTIMIZER_STATE = ("beta1_power", "beta2_power")  # tf.compat.v1.train.AdamOptimizer
_OPTIMIZER_SLOT = re.compile(
    r"^(Momentum|RMSProp|Adam|Adagrad|AdagradDA|Adadelta|Ftrl|ProximalAdagrad|"
    r"ProximalGradientDescent|LARS|LAMB)(_\d+)?$"
)


class CheckpointMismatchError(ValueError):
    """The checkpoint and the Keras Inception-v2 do not correspond one to one.

    `unknown`, `missing` and `mismatched` hold the complete lists; the message shows up to
    `SHOWN` names of each.
    """

    SHOWN = 30

    def __init__(self, checkpoint, unknown=(), missing=(), mismatched=()):
        self.checkpoint = checkpoint
        self.unknown = sorted(unknown)
        self.missing = sorted(missing)
        self.mismatched = sorted(mismatched)
        problems = []
        if self.unknown:
            problems.append(
                f"{len(self.unknown)} checkpoint variable(s) that the converter cannot place: "
                + self._preview(self.unknown, ", ")
            )
        if self.missing:
            problems.append(
                f"{len(self.missing)} Keras weight(s) with no checkpoint variable: "
                + self._preview(self.missing, ", ")
            )
        if self.mismatched:
            problems.append(
                f"{len(self.mismatched)} shape mismatch(es): " + self._preview(self.mismatched, "; ")
            )
        super().__init__(
            f"Cannot convert the TF-Slim checkpoint {checkpoint} to Inception-v2 weights:\n  "
            + "\n  ".join(problems)
        )

    @classmethod
    def _preview(cls, names, separator):
        more = f"{separator}... and {len(names) - cls.SHOWN} more" if len(names) > cls.SHOWN else ""
        return separator.join(names[: cls.SHOWN]) + more


def _open_checkpoint(checkpoint_prefix):
    try:
        return tf.train.load_checkpoint(checkpoint_prefix)
    except (ValueError, tf.errors.OpError) as error:
        raise FileNotFoundError(
            f"No readable TF-Slim checkpoint at {checkpoint_prefix} (pass the prefix, e.g. "
            f".../inception_v2.ckpt, or a directory holding a checkpoint): {error}"
        ) from error


def _classify(name, expected):
    """Which bucket a checkpoint variable that is not itself a base variable falls in."""
    if name == GLOBAL_STEP:
        return "global_step"
    if name.startswith(CLASSIFIER_PREFIX):
        return "classifier"
    if name in OPTIMIZER_STATE:
        return "optimizer_state"
    owner, _, suffix = name.rpartition("/")
    if owner in expected:
        if suffix == MOVING_AVERAGE_SUFFIX:
            return "moving_averages"
        if _OPTIMIZER_SLOT.match(suffix):
            return "optimizer_slots"
    return None


def convert_checkpoint(checkpoint_prefix, output_path, use_moving_averages=False):
    """Converts a TF-Slim `inception_v2` checkpoint into a `nima.inception_v2` weights file.

    Returns a report: {"checkpoint", "output", "assigned" (number of variables),
    "parameters", "trainable_parameters", "used_moving_averages", "ignored": {bucket: [names]}}.
    Raises FileExistsError if `output_path` exists, FileNotFoundError if the checkpoint cannot
    be read, and CheckpointMismatchError (a ValueError) listing every variable that does not
    correspond. Nothing is written unless the whole conversion succeeds.
    """
    checkpoint_prefix = os.fspath(checkpoint_prefix)
    output_path = os.fspath(output_path)
    if os.path.exists(output_path):
        raise FileExistsError(f"Refusing to overwrite existing output file: {output_path}")
    reader = _open_checkpoint(checkpoint_prefix)
    shapes = reader.get_variable_to_shape_map()

    model = build_inception_v2()
    expected = slim_variable_map(model)

    ignored = {
        "classifier": [],
        "global_step": [],
        "optimizer_slots": [],
        "optimizer_state": [],
        "moving_averages": [],
    }
    unknown = []
    for name in sorted(shapes):
        if name in expected:
            continue
        bucket = _classify(name, expected)
        if bucket is None:
            unknown.append(name)
        else:
            ignored[bucket].append(name)

    missing, mismatched, sources = [], [], {}
    for name, variable in expected.items():
        source = f"{name}/{MOVING_AVERAGE_SUFFIX}" if use_moving_averages else name
        if source not in shapes:
            missing.append(source)
            continue
        if tuple(shapes[source]) != tuple(variable.shape):
            mismatched.append(
                f"{source}: checkpoint {tuple(shapes[source])} vs Keras {tuple(variable.shape)}"
            )
            continue
        sources[name] = source
    if use_moving_averages:
        # The shadows are used; the raw values they average are what is left aside.
        used = set(sources.values())
        ignored["moving_averages"] = [n for n in ignored["moving_averages"] if n not in used]
        ignored["raw_values_replaced_by_moving_averages"] = sorted(sources)
    if unknown or missing or mismatched:
        raise CheckpointMismatchError(checkpoint_prefix, unknown, missing, mismatched)

    for name, variable in expected.items():
        variable.assign(reader.get_tensor(sources[name]).astype(variable.dtype))
    save_inception_v2_weights(model, output_path, source=os.path.abspath(checkpoint_prefix))

    trainable = {id(v) for v in model.trainable_weights}
    return {
        "checkpoint": checkpoint_prefix,
        "output": output_path,
        "assigned": len(expected),
        "parameters": sum(math.prod(v.shape) for v in expected.values()),
        "trainable_parameters": sum(
            math.prod(v.shape) for v in expected.values() if id(v) in trainable
        ),
        "used_moving_averages": bool(use_moving_averages),
        "ignored": ignored,
    }


def define_flags(flag_values):
    """Defines this tool's flags in `flag_values` (`tools.cli`)."""
    flags.DEFINE_string(
        "checkpoint", None, "TF-Slim inception_v2 checkpoint prefix (or directory).",
        flag_values=flag_values,
    )
    flags.DEFINE_string(
        "output", None, "Weights file to write (must not exist), e.g. inception_v2.h5.",
        flag_values=flag_values,
    )
    flags.DEFINE_bool(
        "use_moving_averages",
        False,
        "Take every variable from its ExponentialMovingAverage shadow instead of its raw value.",
        flag_values=flag_values,
    )
    flags.mark_flags_as_required(["checkpoint", "output"], flag_values=flag_values)


def run(FLAGS, args):
    """The command line's work: FLAGS are the parsed flags; positional arguments are ignored."""
    del args
    report = convert_checkpoint(FLAGS.checkpoint, FLAGS.output, FLAGS.use_moving_averages)
    logging.info(
        "Wrote %s: %d variables (%d parameters, %d trainable) from %s%s.",
        report["output"],
        report["assigned"],
        report["parameters"],
        report["trainable_parameters"],
        report["checkpoint"],
        " (moving averages)" if report["used_moving_averages"] else "",
    )
    for bucket, names in report["ignored"].items():
        if names:
            logging.info("Ignored %d %s variable(s), e.g. %s", len(names), bucket, names[0])
    print(f"Wrote {report['output']} ({report['assigned']} variables).")
    return 0


def main(argv=None):
    return cli.main(define_flags, run, argv)


if __name__ == "__main__":
    cli.run_main(define_flags, run)
