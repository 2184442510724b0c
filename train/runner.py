"""The one runner every `python -m train.<system>` goes through (DESIGN.md section 3).

`run(task_class, config)` trains (then evaluates and exports on the chief), evaluates or exports,
as `config.mode` says; `main(task_class, argv)` parses flags into the task's config and runs it,
in-process; `cli(task_class)` is the `__main__` of an entry point. The task (`train.task.Task`)
supplies the paper's logic; everything else is here, once.
"""
import hashlib
import json
import os
import sys
import uuid

import keras
import numpy as np
import tensorflow as tf
from absl import app, logging

from datasets.pipeline import DataError, DecodeFailures
from tools import cli as tools_cli
from tools import export as export_tools
from tools import leftovers
from tools import report as reports
from train import loop, strategies
from train.config import ConfigError
from train.flags import config_from_flags, define_flags, parse_config
from train.task import InputSpec

EXPORTERS = {"nima": export_tools.export_nima, "enhancer": export_tools.export_enhancer,
             "enhancegan": export_tools.export_enhancegan,
             "pienet": export_tools.export_pienet}
# Exit status of a command-line run: 0 finished, 1 error (a diverged run included), and this
# (EX_TEMPFAIL) when SIGTERM/SIGINT stopped it after a checkpoint: the same command resumes it.
EXIT_INTERRUPTED = 75
# In model_dir: the system and what its checkpoints fix (`Task.architecture`), JSON.
ARCHITECTURE_FILE = "architecture.json"


def weights_fingerprint(models):
    """SHA-256 of every weight of `models` (a dict, in its order): equal iff identical."""
    digest = hashlib.sha256()
    for model in models.values():
        for weight in model.weights:
            digest.update(np.ascontiguousarray(keras.ops.convert_to_numpy(weight)).tobytes())
    return digest.hexdigest()


def check_writable(path, flag, subfolders=()):
    """ConfigError naming the folder if this process cannot write into `path` (or its existing
    `subfolders`), or create `path` in its nearest existing parent (read-only, or another
    user's); checked at start-up, before any work, so that nothing is lost."""
    target = existing = os.path.abspath(path)
    while not os.path.exists(existing):
        existing = os.path.dirname(existing)
    if not os.path.isdir(existing):
        raise ConfigError(f"--{flag}={path}: {existing} is not a folder.")
    for folder in (existing, *(os.path.join(target, name) for name in subfolders)):
        if os.path.isdir(folder) and not os.access(folder, os.W_OK | os.X_OK):
            where = ("cannot be created: " if folder != target and not os.path.exists(target)
                     else "")
            raise ConfigError(f"--{flag}={path}: {where}{folder} is not writable (read-only or "
                              "another user's); nothing was changed. Make it writable, or give "
                              "another folder.")


def _flag_text(value):
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, (list, tuple)):
        return ",".join(str(v) for v in value)
    return "(unset)" if value is None else str(value)


def check_architecture(task, training):
    """ConfigError if model_dir holds another system, or was trained with other values of the
    settings its checkpoints fix (`Task.architecture`, recorded by `record_architecture`),
    naming each differing flag. Returns the record, or None without one (a new model_dir, or one
    from before the record)."""
    model_dir = task.config.model_dir
    path = os.path.join(model_dir, ARCHITECTURE_FILE)
    try:
        with open(path, encoding="utf-8") as f:
            record = json.load(f)
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as error:
        raise ConfigError(f"{path} cannot be read ({error}); it records the architecture of "
                          "the run in --model_dir: restore it, or delete it to skip the "
                          "check.") from error
    if record.get("system") != task.name:
        raise ConfigError(f"--model_dir={model_dir} holds a {str(record.get('system')).upper()} "
                          f"run, not a {task.name.upper()} one: give another --model_dir.")
    recorded = record.get("settings", {})
    given = json.loads(json.dumps(task.architecture(training)))
    differing = [f"--{name}={_flag_text(recorded[name])} in the checkpoint, "
                 f"{_flag_text(value)} given" for name, value in given.items()
                 if name in recorded and recorded[name] != value]
    if differing:
        raise ConfigError(f"--model_dir={model_dir} was trained with other architecture "
                          f"settings than these flags: {'; '.join(differing)}. Run with the "
                          "checkpoint's values, or give another --model_dir.")
    return record


def record_architecture(task):
    """Writes <model_dir>/architecture.json (atomically): the system and the values of what
    its checkpoints fix, for `check_architecture`."""
    record = {"system": task.name, "settings": task.architecture(training=True)}
    path = os.path.join(task.config.model_dir, ARCHITECTURE_FILE)
    os.makedirs(task.config.model_dir, exist_ok=True)
    tmp = f"{path}.tmp-{uuid.uuid4().hex}"
    try:
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump(record, f, indent=2, sort_keys=True)
            f.write("\n")
        os.replace(tmp, path)
    except OSError as error:
        raise loop.SaveError("the architecture record", path, error,
                             "Nothing was trained yet.") from error
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def save_weights(model, path):
    """`model.save_weights(path)` through a temporary sibling renamed into place, so that
    `path` holds the old file or the whole new one; SaveError naming `path` if it fails."""
    directory, name = os.path.split(path)
    tmp = os.path.join(directory, leftovers.weights_temp_name(name))
    try:
        model.save_weights(tmp)
        os.replace(tmp, path)
    except OSError as error:
        raise loop.SaveError("the weights file", path, error, (
            "The checkpoints are kept; free space (or fix the folder) and run the same command "
            "to write it.")) from error
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def _with_loss_scaling(optimizer):
    if keras.mixed_precision.global_policy().name == "mixed_float16":
        return keras.optimizers.LossScaleOptimizer(optimizer)
    return optimizer


def build_training(task, strategy=None):
    """(models, optimizers, per-replica train step) of `task`, built in `strategy`'s scope (default:
    the current strategy): optimizers loss-scaled under mixed_float16 and built for their
    variables. Benchmarks and tests call it to run a task's step without the loop."""
    strategy = strategy or tf.distribute.get_strategy()
    with strategy.scope():
        models = task.build_models(training=True)
        optimizers = {}
        for key, (optimizer, variables) in task.build_optimizers(models).items():
            optimizers[key] = _with_loss_scaling(optimizer)
            # Slot variables must exist before the distributed step is traced.
            optimizers[key].build(variables)
    return models, optimizers, task.make_train_step(models, optimizers)


def train(task):
    """Trains (or resumes) `task` under its strategy; writes the final weights on the chief.
    Returns (models, `train.loop.LoopResult`)."""
    config = task.config
    check_writable(config.model_dir, "model_dir", subfolders=("checkpoints",))
    if config.export_dir:
        check_writable(config.export_dir, "export_dir")
    # A record binds only once a checkpoint exists (a run that failed before one may change).
    resuming = tf.train.latest_checkpoint(os.path.join(config.model_dir, "checkpoints"))
    recorded = check_architecture(task, training=True) if resuming else None
    keras.utils.set_random_seed(config.seed)
    logging.info("Precision policy: %s", loop.set_mixed_precision(config.mixed_precision))
    strategy = strategies.make_strategy(config.strategy, config.num_cpu_devices)
    replicas = strategy.num_replicas_in_sync
    if config.batch_size % replicas:
        raise ConfigError(f"--batch_size={config.batch_size}: must be divisible by the {replicas} "
                          f"replicas of --strategy={config.strategy}")
    if strategies.is_chief(strategy):
        leftovers.remove_stale(config.model_dir, config.export_dir)
        if not resuming:
            record_architecture(task)
    task.data  # read (and a demo set built) before the models, in a fixed order
    models, optimizers, train_step = build_training(task, strategy)
    failures = DecodeFailures()

    def make_dataset(context, start_step):
        # Each input pipeline feeds num_replicas / num_pipelines per-replica batches a step.
        batches_per_step = context.num_replicas_in_sync // context.num_input_pipelines
        return task.build_inputs(InputSpec(
            batch_size=context.get_per_replica_batch_size(config.batch_size),
            start_batch=start_step * batches_per_step, num_shards=context.num_input_pipelines,
            shard_index=context.input_pipeline_id, decode_failures=failures))

    loop_config = loop.LoopConfig(
        model_dir=config.model_dir, train_steps=config.train_steps,
        global_batch_size=config.batch_size, checkpoint_every=config.checkpoint_every,
        log_every=config.log_every)
    training = loop.TrainingLoop(strategy, loop_config, train_step, {**models, **optimizers},
                                 make_dataset, summary_fn=task.make_summary_fn(models))
    try:
        result = training.run()
    except tf.errors.OpError:
        if failures.gave_up:  # a stream of nothing but undecodable files, told in one line
            raise DataError(failures.gave_up) from None
        raise
    if resuming and recorded is None and training.is_chief:
        record_architecture(task)  # a model_dir from before the record: its checkpoint fitted
    if failures.count:
        logging.warning("%d files could not be decoded and were skipped, e.g. %s",
                        failures.count, failures.examples[:5])
    if not result.interrupted and training.is_chief:
        for key, file_name in task.final_weights.items():
            save_weights(models[key], os.path.join(config.model_dir, file_name))
        logging.info("Wrote %s to %s", ", ".join(task.final_weights.values()), config.model_dir)
    return models, result


def restore(task):
    """The task's models holding the newest trained state in model_dir: the latest checkpoint
    (newest also after an interrupted resumed run), else the final weights files.
    FileNotFoundError naming the system and both places if neither exists; ConfigError if the
    flags build other networks than those (`check_architecture`), or a variable of the models
    is missing from the checkpoint or has another shape there: never restored in part."""
    config = task.config
    check_architecture(task, training=False)
    models = task.build_models(training=False)
    keys = list(task.final_weights)
    latest = tf.train.latest_checkpoint(os.path.join(config.model_dir, "checkpoints"))
    if latest is not None:
        try:
            status = tf.train.Checkpoint(**{k: models[k] for k in keys}).restore(latest)
            status.assert_existing_objects_matched()
        except (AssertionError, ValueError) as error:
            raise loop.mismatch_error(config.model_dir, latest, error) from error
        status.expect_partial()  # the optimizers and the other networks are not restored
        logging.info("Restored the %s from %s", task.name.upper(), latest)
        return models
    paths = {k: os.path.join(config.model_dir, task.final_weights[k]) for k in keys}
    missing = [path for path in paths.values() if not os.path.exists(path)]
    if missing:
        raise FileNotFoundError(
            f"No trained {task.name.upper()} in {config.model_dir}: no checkpoint and no "
            f"{', '.join(os.path.basename(p) for p in missing)}.")
    for key, path in paths.items():
        try:
            task.load_final_weights(key, models[key], path)
        except ValueError as error:
            raise loop.mismatch_error(config.model_dir, path, error) from error
    return models


def evaluate(task, models):
    """Runs the task's evaluation and writes <model_dir>/eval.json (strict JSON); returns the
    report as written, or None when there was nothing to evaluate."""
    report = task.evaluate(models)
    if report is None:
        return None
    path = os.path.join(task.config.model_dir, "eval.json")
    try:
        return reports.write_report(path, report)
    except OSError as error:
        raise loop.SaveError("the evaluation", path, error, "The trained state is kept.") from error


def export(task, models, train_step=None):
    """Exports the task's model into <export_dir>/<version>/; returns the version path."""
    config = task.config
    if not config.export_dir:
        raise ValueError("--export_dir is required to export.")
    spec = task.export(models, train_step=train_step)
    if spec is None:
        logging.info("The %s run has nothing to export.", task.name.upper())
        return None
    try:
        path = EXPORTERS[spec.kind](spec.model, config.export_dir, version=config.export_version,
                                    metadata=spec.metadata)
    except FileExistsError:
        raise  # an existing version, never overwritten: its own message
    except (OSError, tf.errors.OpError) as error:
        raise loop.SaveError("the export into", config.export_dir, error, (
            f"The partial export was removed and the trained state in {config.model_dir} is "
            "kept; free space (or fix the folder) and run the same command to export.")) from error
    logging.info("Exported the %s as a SavedModel to %s", task.name.upper(), path)
    return path


def run(task_class, config):
    """`--mode=train` trains, then (on the chief) evaluates and, with --export_dir, exports a
    float32 copy of the final state; `--mode=eval` and `--mode=export` do only those steps.

    A task trained in stages (`Task.stage_configs`) runs each stage's config in order as a
    plain run; the outcome is the last stage's, with every stage's under "stages". The
    sequence stops at a stage that was interrupted."""
    configs = task_class.stage_configs(config)
    if len(configs) == 1:
        return _run_one(task_class, configs[0])
    outcomes = []
    for stage_config in configs:
        outcomes.append(_run_one(task_class, stage_config))
        if outcomes[-1].get("interrupted"):
            break
    return {**outcomes[-1], "stages": outcomes}


def _run_one(task_class, config):
    task = task_class(config)
    if config.mode == "train":
        models, result = train(task)
        outcome = {"step": result.step, "interrupted": result.interrupted,
                   "weights_fingerprint": weights_fingerprint(models)}
        if result.interrupted or not result.is_chief:
            return outcome
        loop.set_mixed_precision(False)  # evaluate and export in float32
        models = restore(task)
        outcome["eval"] = evaluate(task, models)
        if config.export_dir:
            outcome["export_path"] = export(task, models, train_step=result.step)
        return outcome
    if config.mode == "eval":  # writes eval.json (and pictures) into model_dir
        check_writable(config.model_dir, "model_dir")
        leftovers.remove_stale(config.model_dir, config.export_dir)
        return {"eval": evaluate(task, restore(task))}
    if config.mode == "export":  # only reads model_dir
        if config.export_dir:
            check_writable(config.export_dir, "export_dir")
        leftovers.remove_stale(config.model_dir, config.export_dir)
        return {"export_path": export(task, restore(task))}
    raise ValueError(f"Unknown --mode={config.mode!r}; choose train, eval or export.")


def print_outcome(task_class, config, outcome):
    """Prints the outcome as strict JSON (`tools.report.strict_dumps`), then each evaluation's
    table and headline (one per stage of a staged run)."""
    print(reports.strict_dumps(outcome, "Outcome of the run", indent=2, default=str))
    for stage in outcome.get("stages", [outcome]):
        report = stage.get("eval")
        if report:
            print(reports.format_table(report))
            line = task_class(config).headline(report)
            if line:
                print(line)


def main(task_class, argv=None):
    """Parses `argv` (default sys.argv) into the task's config, runs it and prints the outcome
    (JSON, then the evaluation table); returns the outcome. Usable in-process."""
    config = parse_config(task_class.config_class, sys.argv if argv is None else argv)
    outcome = run(task_class, config)
    print_outcome(task_class, config, outcome)
    return outcome


def cli(task_class):
    """The `__main__` of `train/<system>.py` (`tools.cli.run_main`: absl's app around the run,
    flag errors printed as absl prints them; a ConfigError, a DataError or a diverged run told
    in one line). Exit status 0 finished, 1 error, EXIT_INTERRUPTED (75) interrupted and
    checkpointed."""
    def define(flag_values):
        define_flags(task_class.config_class, flag_values)

    def run_parsed(flag_values, args):
        if args:
            raise app.UsageError(f"Unexpected arguments: {' '.join(args)}")
        try:
            config = config_from_flags(task_class.config_class, flag_values)
            outcome = run(task_class, config)
        except (ConfigError, DataError, loop.NonFiniteLossError, loop.SaveError,
                FileExistsError) as error:  # told in one line, exit 1
            logging.error("%s", error)
            return 1
        print_outcome(task_class, config, outcome)
        if outcome.get("interrupted"):
            logging.warning("Interrupted at step %d, checkpointed in %s; run the same command to "
                            "resume.", outcome["step"], os.path.join(config.model_dir, "checkpoints"))
            return EXIT_INTERRUPTED

    tools_cli.run_main(define, run_parsed)
