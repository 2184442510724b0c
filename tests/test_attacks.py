"""A tester's sweep of bad input, kills and faults against the training runs (issue 15), on tiny
demo settings and the CPU. Each case: what was tried, and how it fared before this module's
fixes (found with the code of commit 947f6dd).

Architecture flags other than the checkpoint's (`train.runner.check_architecture`):
 1. NIMA --backbone, at resume, --mode=eval and --mode=export: a TF shape error. Fixed: a
    ConfigError naming the flag, its value in the checkpoint and the one given (the values are
    recorded in <model_dir>/architecture.json).
 2. NIMA --base_learning_rate=0 resuming a run above 0 (the optimizer then holds the head's
    momenta alone): a shape error naming an unrelated variable. Fixed, as 1.
 3. WESPE --filters, --residual_blocks, --generator_instance_norm: shape errors, and at eval
    more residual blocks restored G in part, silently; --generator_padding and
    --generator_residual: taken silently on resume. Fixed, as 1.
 4. WESPE --patch_size on resume (the discriminators' dense layer): a shape error. Fixed, as 1;
    at eval and export, which restore no discriminator, it stays allowed.
 5. CAN --can_width, --can_depth, --can_adaptive_batch_norm: shape errors on resume, and at eval
    a silent partial restore (depth, adaptive BN); --can_dilations and --can_padding: taken
    silently. Fixed, as 1.
 6. A model_dir without architecture.json (from before it): a shape change is a ConfigError
    naming the checkpoint and model_dir; a variable missing from the checkpoint at eval (more
    residual blocks, a deeper CAN) is one too, instead of a partial restore. Fixed.
 7. Only the final weights file left (no checkpoints), other architecture: Keras' multi-line
    error. Fixed: one line naming the file and model_dir.
 8. Another system's model_dir: an obscure restore error. Fixed: "holds a ... run".
kill -9 (SIGKILL), then the same command:
 9. WESPE before the first checkpoint, after a few checkpoints and during evaluation/export:
    the newest checkpoint loads after each kill; the rerun resumes and finishes with finite
    weights and a whole export. Passed as-is.
10. CAN, the same three moments. Passed as-is.
11. Two MultiWorkerMirrored workers, the non-chief killed mid-training (the chief stops with
    TF's UNAVAILABLE error): rerunning both resumes and finishes, the workers agreeing. Passed
    as-is.
A full disk (ENOSPC as TensorFlow and h5py raise it; first seen on a real 1 MB tmpfs):
12. The checkpoint write: TF's raw error and a traceback, ckpt-N_temp left. Fixed: a one-line
    SaveError naming the checkpoint and the last good one; what the save wrote is removed.
13. The final weights write: truncated in place, the previous good file lost. Fixed: written
    under a temporary name and renamed; a SaveError naming the file.
14. The export write: the partial export was removed already, but TF's raw error. Fixed: a
    SaveError naming the export folder.
15. Space back: the same command resumes and finishes after each of 12-14. Passed as-is.
Read-only folders (chmod: as root, which chmod does not stop, the test skips; it passes run as
the nobody user, `setpriv --reuid=65534 --regid=65534 --clear-groups python -m pytest ...`):
16. A read-only model_dir with checkpoints: trained on, then failed at the evaluation. Fixed:
    refused at start-up naming the folder, nothing changed.
17. A read-only checkpoints/ folder: the first save failed. Fixed, as 16.
18. A model_dir to be made in a read-only parent: TF's PermissionDeniedError from the summary
    writer. Fixed, as 16.
19. A read-only export_dir: the whole training ran, then the export failed. Fixed, as 16.
20. --mode=eval on a read-only model_dir (eval.json cannot be written): a traceback after the
    evaluation. Fixed: refused at start-up, naming the folder (chosen over printing the report
    only, since writing it is what eval is asked to do).
21. --mode=export from a read-only model_dir: works, it only reads it. Passed as-is.
22. An existing export version (--export_version): refused, never overwritten. Passed as-is
    (tests/task_testing.py); the command line now says so in one line.

Count: 22 cases tried; 6 passed as-is (9, 10, 11, 15, 21, 22); 16 needed a fix and now pass.
"""
import dataclasses
import errno
import os
import re
import subprocess
import sys
import time

import h5py
import keras
import numpy as np
import pytest
import tensorflow as tf

from tests.task_testing import tiny_config
from tests.test_cli import QUIET_RUNS
from train import loop, runner
from train.can_task import CanTask
from train.config import ConfigError
from train.nima_task import NimaTask
from train.wespe_task import WespeTask

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ENV = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", CUDA_VISIBLE_DEVICES="", PYTHONPATH=REPO)
TASKS = {"nima": NimaTask, "wespe": WespeTask, "can": CanTask}
ENOSPC = os.strerror(errno.ENOSPC)


def checkpoint_step(model_dir):
    latest = tf.train.latest_checkpoint(os.path.join(model_dir, "checkpoints"))
    return None if latest is None else int(latest.rsplit("-", 1)[1])


def snapshot(directory):
    """Every path under `directory` with its size and modification time."""
    return sorted((os.path.join(root, name), os.lstat(os.path.join(root, name)).st_size,
                   os.lstat(os.path.join(root, name)).st_mtime_ns)
                  for root, dirs, files in os.walk(directory) for name in dirs + files)


# -- architecture flags ---------------------------------------------------------------------
# Per system: changes the record catches, with the modes they are checked in; a change that
# the checkpoint itself shows without the record (mode, change); and one for the weights file.
CHANGES = {
    "nima": ([({"backbone": "inception_v2"}, ("train", "eval", "export")),
              ({"base_learning_rate": 0.0}, ("train",))],
             ("train", {"base_learning_rate": 0.0}), {"backbone": "inception_v2"}),
    "wespe": ([({"filters": 4}, ("train", "eval")),
               ({"residual_blocks": 2}, ("train", "eval")),
               ({"generator_instance_norm": False}, ("train", "eval")),
               ({"generator_padding": "symmetric"}, ("train", "eval")),
               ({"generator_residual": True}, ("train", "eval")),
               ({"generator_global_context": True}, ("train", "eval")),
               ({"patch_size": 48}, ("train",))],
              ("eval", {"residual_blocks": 2}), {"filters": 4}),
    "can": ([({"can_width": 6}, ("train", "eval")), ({"can_depth": 6}, ("train", "eval")),
             ({"can_dilations": (1, 2, 1)}, ("train", "eval")),
             ({"can_padding": "zero"}, ("train", "eval")),
             ({"can_adaptive_batch_norm": True}, ("train", "eval"))],
            ("eval", {"can_depth": 6}), {"can_width": 6}),
}


def _flag_text(value):
    if isinstance(value, bool):
        return str(value).lower()
    return ",".join(map(str, value)) if isinstance(value, tuple) else str(value)


# Keras warns for each layer of a weights file that does not fit, before it raises.
@pytest.mark.filterwarnings("ignore:Skipping nested container", "ignore:__array__")
@pytest.mark.parametrize("name", sorted(TASKS))
def test_other_architecture_flags_are_a_clear_error_and_never_restore_in_part(name, shared,
                                                                             tmp_path):
    task_class, run = TASKS[name], tmp_path / "run"
    config = tiny_config(name, shared, run, export_dir=str(tmp_path / "export"), train_steps=1)
    runner.train(task_class(config))
    before = snapshot(run)
    recorded, (fallback_mode, fallback), weights_change = CHANGES[name]
    for change, modes in recorded:
        (flag, value), = change.items()
        given = "0 (backbone frozen)" if flag == "base_learning_rate" else _flag_text(value)
        for mode in modes:
            with pytest.raises(ConfigError, match=re.escape(f"--{flag}=") + ".+ in the "
                               f"checkpoint, {re.escape(given)} given"):
                runner.run(task_class, dataclasses.replace(config, mode=mode, train_steps=2,
                                                           **change))
    other = sorted(TASKS)[(sorted(TASKS).index(name) + 1) % len(TASKS)]
    with pytest.raises(ConfigError, match=f"holds a {name.upper()} run, not a {other.upper()}"):
        runner.train(TASKS[other](tiny_config(other, shared, run)))
    assert snapshot(run) == before  # refused before anything was written

    # Without the record (a model_dir from before it), the checkpoint itself is checked.
    os.remove(run / runner.ARCHITECTURE_FILE)
    with pytest.raises(ConfigError, match=re.escape(
            "ckpt-1 does not fit the networks these flags build")
            + f".*--model_dir={re.escape(str(run))}"):
        runner.run(task_class, dataclasses.replace(config, mode=fallback_mode, train_steps=2,
                                                   **fallback))
    if name == "wespe":  # the discriminators' size does not matter to G and F
        runner.restore(task_class(dataclasses.replace(config, patch_size=48)))
    resumed = runner.train(task_class(dataclasses.replace(config, train_steps=2)))[1]
    assert resumed.step == 2 and checkpoint_step(run) == 2
    assert (run / runner.ARCHITECTURE_FILE).exists()  # recorded once a resume fitted

    # Only the final weights left: they are checked too.
    os.remove(run / runner.ARCHITECTURE_FILE)
    for path in (run / "checkpoints").iterdir():
        path.unlink()
    weights_file = next(iter(task_class.final_weights.values()))
    with pytest.raises(ConfigError, match=re.escape(f"{weights_file} does not fit")):
        runner.restore(task_class(dataclasses.replace(config, **weights_change)))


# -- a full disk ------------------------------------------------------------------------------
def _full_disk_checkpoint(manager, checkpoint_number=None, **kwargs):
    """What TF's CheckpointManager.save leaves and raises when the disk fills during the merge
    (seen on a 1 MB tmpfs): a ckpt-N_temp folder, a partial data file, ResourceExhaustedError."""
    prefix = os.path.join(manager.directory, f"ckpt-{int(checkpoint_number)}")
    os.makedirs(prefix + "_temp")
    with open(os.path.join(prefix + "_temp", "part-00000-of-00001.index"), "wb") as f:
        f.write(b"partial")
    with open(prefix + ".data-00000-of-00001", "wb") as f:
        f.write(b"partial")
    raise tf.errors.ResourceExhaustedError(
        None, None, f"{{{{function_node __wrapped__MergeV2Checkpoints}}}} {prefix}.index; "
        f"{ENOSPC} [Op:MergeV2Checkpoints]")


def _full_disk_weights(model, filepath, *args, **kwargs):
    with open(filepath, "wb") as f:
        f.write(b"\x89HDF\r\n partial")
    raise OSError(errno.ENOSPC, ENOSPC, filepath)


def _full_disk_export(archive, filepath, *args, **kwargs):
    os.makedirs(os.path.join(filepath, "variables"))
    with open(os.path.join(filepath, "saved_model.pb"), "wb") as f:
        f.write(b"partial")
    raise tf.errors.ResourceExhaustedError(
        None, None, f"{filepath}/variables/variables_temp/part-00000-of-00001.data-00000-of-"
        f"00001.tempstate1; {ENOSPC} [Op:SaveV2]")


def test_a_full_disk_fails_in_one_line_keeps_the_good_state_and_a_rerun_resumes(
        shared, tmp_path, monkeypatch):
    run, export_dir = tmp_path / "run", tmp_path / "export"
    config = tiny_config("can", shared, run, export_dir=str(export_dir), train_steps=1,
                         nima_weight=0.0, nima_weights=None, eval_max_images=1,
                         eval_save_images=0)
    runner.run(CanTask, config)
    weights = run / "can.weights.h5"
    good_weights = weights.read_bytes()
    more = dataclasses.replace(config, train_steps=2)

    with monkeypatch.context() as patch:  # 1. the checkpoint of step 2
        patch.setattr(tf.train.CheckpointManager, "save", _full_disk_checkpoint)
        with pytest.raises(loop.SaveError, match=re.escape(
                f"{run}/checkpoints/ckpt-2: {ENOSPC}. The last good checkpoint is kept: "
                f"{run}/checkpoints/ckpt-1")):
            runner.run(CanTask, more)
    assert sorted(os.listdir(run / "checkpoints")) == [
        "checkpoint", "ckpt-1.data-00000-of-00001", "ckpt-1.index"]
    assert tf.train.load_checkpoint(str(run / "checkpoints" / "ckpt-1")).has_tensor(
        "step/.ATTRIBUTES/VARIABLE_VALUE")

    with monkeypatch.context() as patch:  # 2. the final weights
        patch.setattr(keras.Model, "save_weights", _full_disk_weights)
        with pytest.raises(loop.SaveError, match=re.escape(f"{weights}: {ENOSPC}")):
            runner.run(CanTask, more)
    assert weights.read_bytes() == good_weights and checkpoint_step(run) == 2
    assert not [name for name in os.listdir(run) if name.startswith(".tmp")]

    with monkeypatch.context() as patch:  # 3. the export
        # keras.export.ExportArchive() makes an instance of the backend's subclass.
        patch.setattr(type(keras.export.ExportArchive()), "write_out", _full_disk_export)
        with pytest.raises(loop.SaveError, match=re.escape(f"{export_dir}: {ENOSPC}")):
            runner.run(CanTask, more)
    assert os.listdir(export_dir) == ["1"]

    outcome = runner.run(CanTask, more)  # space is back: the same command ends the job
    assert outcome["step"] == 2 and outcome["export_path"] == str(export_dir / "2")
    assert weights.read_bytes() != good_weights


# -- read-only folders ----------------------------------------------------------------------
@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only (chmod) folders; run "
                    "as another user, e.g. setpriv --reuid=65534 --regid=65534 --clear-groups")
def test_read_only_folders_are_refused_at_start_and_nothing_is_lost(shared, tmp_path):
    run, parent = tmp_path / "run", tmp_path / "read_only"
    config = tiny_config("can", shared, run, export_dir=None, train_steps=1, eval_save_images=0)
    runner.train(CanTask(config))
    before = snapshot(run)
    not_writable = "is not writable (read-only or another user's); nothing was changed"
    parent.mkdir()
    for folder in (run, run / "checkpoints", parent):
        os.chmod(folder, 0o555)
    try:
        with pytest.raises(ConfigError,
                           match=re.escape(f"--model_dir={run}: {run} {not_writable}")):
            runner.run(CanTask, dataclasses.replace(config, train_steps=2))
        with pytest.raises(ConfigError, match=re.escape(f"{run} {not_writable}")):
            runner.run(CanTask, dataclasses.replace(config, mode="eval"))
        exported = runner.run(CanTask, dataclasses.replace(
            config, mode="export", export_dir=str(tmp_path / "export")))  # only reads model_dir
        assert exported["export_path"] == str(tmp_path / "export" / "1")
        assert snapshot(run) == before
        os.chmod(run, 0o755)
        with pytest.raises(ConfigError, match=re.escape(f"{run}/checkpoints {not_writable}")):
            runner.run(CanTask, dataclasses.replace(config, train_steps=2))
        with pytest.raises(ConfigError, match=re.escape(
                f"--model_dir={parent}/new: cannot be created: {parent} {not_writable}")):
            runner.run(CanTask, dataclasses.replace(config, model_dir=str(parent / "new")))
        os.chmod(run / "checkpoints", 0o755)
        with pytest.raises(ConfigError, match=re.escape(f"--export_dir={parent}/export:")):
            runner.run(CanTask, dataclasses.replace(config, train_steps=2,
                                                    export_dir=str(parent / "export")))
        assert snapshot(run) == before
    finally:
        for folder in (run, run / "checkpoints", parent):
            os.chmod(folder, 0o755)


# -- kill -9 ----------------------------------------------------------------------------------
def _latest_step(model_dir):
    try:
        with open(os.path.join(model_dir, "checkpoints", "checkpoint")) as f:
            return int(re.search(r'^model_checkpoint_path: "ckpt-(\d+)"', f.read(), re.M)[1])
    except (FileNotFoundError, TypeError):
        return 0


def _finite_weights_file(path):
    values = []
    with h5py.File(path, "r") as handle:
        handle.visititems(lambda name, item: values.append(item[()])
                          if isinstance(item, h5py.Dataset) else None)
    return values and all(np.all(np.isfinite(v)) for v in values)


def _start(command, log):
    with open(log, "w") as out:
        return subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, env=ENV, cwd=REPO)


def _tail(log):
    with open(log) as f:
        return f.read()[-3000:]


def _wait_for(processes, ready, log, timeout=300):
    deadline = time.monotonic() + timeout
    while not ready():
        assert all(p.poll() is None for p in processes), f"ended before the kill:\n{_tail(log)}"
        assert time.monotonic() < deadline, f"not ready in {timeout} s:\n{_tail(log)}"
        time.sleep(0.02)


def _kill(process):
    if process.poll() is None:
        process.kill()  # SIGKILL
    process.wait(timeout=60)


STEPS = 40
# When to kill: the moment's name -> ready(model_dir), polled every 20 ms.
MOMENTS = {
    "before the first checkpoint": lambda run: (run / "train").exists(),
    "after a few checkpoints": lambda run: _latest_step(run) >= 3,
    "during evaluation and export": lambda run: any(run.glob("*.weights.h5")),
}


@pytest.mark.slow
@pytest.mark.parametrize("system, moments", [
    ("can", ("after a few checkpoints",)),
    pytest.param("can", tuple(MOMENTS), marks=pytest.mark.long_demo),
    pytest.param("wespe", tuple(MOMENTS), marks=pytest.mark.long_demo),
])
def test_kill_9_then_the_same_command_finishes(system, moments, tmp_path):
    """SIGKILL at each moment in turn, each time checking that the newest checkpoint loads;
    then the same command resumes, finishes (exit 0), writes finite final weights and a whole
    export, and a second export over its version is refused in one line."""
    run, export_dir = tmp_path / "run", tmp_path / "export"
    command = [sys.executable, "-m", f"train.{system}", *QUIET_RUNS[system],
               f"--train_steps={STEPS}", "--checkpoint_every=1", "--log_every=1",
               f"--model_dir={run}", f"--export_dir={export_dir}",
               f"--demo_dir={tmp_path / 'demo'}"]
    for index, moment in enumerate(moments):
        log = tmp_path / f"killed{index}.log"
        process = _start(command, log)
        try:
            _wait_for([process], lambda: MOMENTS[moment](run), log)
        finally:
            _kill(process)
        assert process.returncode == -9
        latest = tf.train.latest_checkpoint(str(run / "checkpoints"))
        if latest:
            assert tf.train.load_checkpoint(latest).has_tensor("step/.ATTRIBUTES/VARIABLE_VALUE")

    done = subprocess.run(command, capture_output=True, text=True, env=ENV, cwd=REPO, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "Resumed from" in done.stderr or "Already trained" in done.stderr
    assert f"step {STEPS}/{STEPS}" in done.stderr or "Already trained" in done.stderr
    assert checkpoint_step(str(run)) == STEPS
    for file_name in TASKS[system].final_weights.values():
        assert _finite_weights_file(run / file_name), file_name
    versions = [name for name in os.listdir(export_dir) if not name.startswith(".")]
    assert versions and all((export_dir / v / "saved_model.pb").exists() for v in versions)

    again = subprocess.run([*command, "--mode=export", f"--export_version={versions[0]}"],
                           capture_output=True, text=True, env=ENV, cwd=REPO, timeout=300)
    assert again.returncode == 1 and "refusing to overwrite" in again.stderr
    assert "Traceback" not in again.stderr


@pytest.mark.slow
@pytest.mark.long_demo
def test_kill_9_in_a_two_worker_run_then_both_rerun_and_finish(tmp_path):
    """MultiWorkerMirroredStrategy, two local workers: the non-chief is killed mid-training (the
    chief gets 60 s to stop on its own, as it did here at once with TF's UNAVAILABLE error,
    else it is killed too); rerunning both resumes from the chief's newest checkpoint and
    finishes, the workers agreeing."""
    import json

    from tests.test_train_nima import free_ports, last_json
    from tests.test_train_wespe import TINY, build_tiny_demo

    build_tiny_demo(tmp_path / "demo")  # once, so the workers do not race to write it
    run = tmp_path / "run"
    command = [sys.executable, "-m", "train.wespe", "--flagfile=configs/wespe_demo.flags",
               "--strategy=multi_worker", f"--model_dir={run}",
               f"--export_dir={tmp_path / 'export'}", f"--demo_dir={tmp_path / 'demo'}", *TINY,
               "--train_steps=12"]

    def start_both(label):
        workers = [f"127.0.0.1:{port}" for port in free_ports(2)]
        processes = []
        for index in range(2):
            tf_config = {"cluster": {"worker": workers}, "task": {"type": "worker",
                                                                  "index": index}}
            with open(tmp_path / f"{label}{index}.out", "w") as out, \
                    open(tmp_path / f"{label}{index}.log", "w") as err:
                processes.append(subprocess.Popen(
                    command, cwd=REPO, env=dict(ENV, TF_CONFIG=json.dumps(tf_config)),
                    stdout=out, stderr=err))
        return processes

    processes = start_both("one_killed")
    try:
        _wait_for(processes, lambda: _latest_step(run) >= 3, tmp_path / "one_killed0.log")
        _kill(processes[1])
        try:
            processes[0].wait(timeout=60)
        except subprocess.TimeoutExpired:
            pass
    finally:
        for process in processes:
            _kill(process)
    processes = start_both("rerun")
    try:
        for process in processes:
            process.wait(timeout=400)
    finally:
        for process in processes:  # a lost peer must never hang CI
            _kill(process)
    for index, process in enumerate(processes):
        assert process.returncode == 0, _tail(tmp_path / f"rerun{index}.log")
    assert "Resumed from" in (tmp_path / "rerun0.log").read_text()
    chief, other = (last_json((tmp_path / f"rerun{i}.out").read_text()) for i in range(2))
    assert chief["step"] == other["step"] == 12
    assert chief["weights_fingerprint"] == other["weights_fingerprint"]
    for file_name in WespeTask.final_weights.values():
        assert _finite_weights_file(run / file_name), file_name
    assert (tmp_path / "export" / "1" / "saved_model.pb").exists()
