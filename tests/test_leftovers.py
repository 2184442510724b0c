"""tools.leftovers: stale temporary checkpoint and export directories are removed at the start
of a training run, and nothing else (issue 15)."""
import os
import re
import subprocess
import sys
import time

from tests.task_testing import tiny_config
from tools import leftovers
from train import runner
from train.nima_task import NimaTask

OLD = time.time() - 2 * leftovers.STALE_AFTER_S
HEX = "0123456789abcdef" * 2


def _dead_pid():
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def _make(path, age=OLD, is_dir=True):
    if is_dir:
        os.makedirs(path)
        with open(os.path.join(path, "part-00000-of-00001.index"), "wb") as f:
            f.write(b"x")
        os.utime(os.path.join(path, "part-00000-of-00001.index"), (age, age))
    else:
        with open(path, "w") as f:
            f.write("notes")
    os.utime(path, (age, age))
    return path


def _layout(tmp_path):
    checkpoints, export = tmp_path / "run" / "checkpoints", tmp_path / "export"
    dead = _dead_pid()
    stale = [_make(checkpoints / "ckpt-3_temp"), _make(export / f".tmp-2-{dead}-{HEX}"),
             _make(export / f".tmp-1-{HEX}")]  # the name before the pid was in it
    kept = [_make(checkpoints / "ckpt-4_temp", age=time.time()),  # a save under way
            _make(export / f".tmp-3-{dead}-{HEX}", age=time.time()),  # fresh: maybe elsewhere
            _make(export / f".tmp-4-{os.getpid()}-{HEX}"),  # its writer is alive
            _make(checkpoints / "ckpt-3_temp.txt", is_dir=False), _make(checkpoints / "ckpt-3"),
            _make(checkpoints / "my-ckpt-3_temp"), _make(export / "tmp-1"),
            _make(export / ".tmp-notes"), _make(export / f".tmp-5-{HEX}", is_dir=False),
            _make(export / "1"), _make(tmp_path / "run" / "ckpt-5_temp")]
    return [str(p) for p in stale], [str(p) for p in kept]


def test_only_stale_temporary_directories_are_removed_and_logged(tmp_path, caplog):
    stale, kept = _layout(tmp_path)
    removed = leftovers.remove_stale(tmp_path / "run", tmp_path / "export")
    assert sorted(removed) == sorted(stale)
    assert not any(os.path.exists(p) for p in stale)
    assert all(os.path.exists(p) for p in kept)
    for path in stale:
        assert "stale temporary" in caplog.text and path in caplog.text


def test_export_temp_names_carry_the_writers_pid():
    name = leftovers.export_temp_name(7)
    assert re.fullmatch(rf"\.tmp-7-{os.getpid()}-[0-9a-f]{{32}}", name)


def test_a_training_run_starts_by_removing_them(shared, tmp_path):
    stale, kept = _layout(tmp_path)
    config = tiny_config("nima", shared, tmp_path / "run", export_dir=str(tmp_path / "export"),
                         train_steps=1)
    runner.train(NimaTask(config))
    assert not any(os.path.exists(p) for p in stale)
    assert all(os.path.exists(p) for p in kept)
