"""tools.leftovers: stale temporary checkpoint, export and weights entries are removed at the
start of a training run or an export, and nothing else: not a live writer's, nor look-alikes
(issue 15)."""
import dataclasses
import os
import re
import subprocess
import sys
import time

import pytest

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


def _stale(run, export, number):
    """Stale temporary entries of a killed save, export and weights write, named after
    `number`."""
    dead = _dead_pid()
    return [str(p) for p in (
        _make(run / "checkpoints" / f"ckpt-{number}_temp"),
        _make(export / f".tmp-{number}-{dead}-{HEX}"),
        _make(export / f".tmp-{number + 1}-{HEX}"),  # the name before the pid was in it
        _make(run / f".tmp-{dead}-{HEX}-{number}.weights.h5", is_dir=False))]


def _layout(tmp_path, live_pid):
    """(stale paths, kept paths) made under tmp_path/run and tmp_path/export; `live_pid` is a
    live process other than this one."""
    run = tmp_path / "run"
    checkpoints, export = run / "checkpoints", tmp_path / "export"
    stale = _stale(run, export, 3)
    dead = _dead_pid()
    weights = f".tmp-{dead}-{HEX}-generator.weights.h5"
    users = _make(tmp_path / "users_folder")
    os.symlink(users, checkpoints / "ckpt-9_temp")
    kept = [_make(checkpoints / "ckpt-4_temp", age=time.time()),  # a save under way
            _make(export / f".tmp-3-{dead}-{HEX}", age=time.time()),  # fresh: maybe elsewhere
            _make(export / f".tmp-4-{os.getpid()}-{HEX}"),  # its writer is alive
            _make(export / f".tmp-6-{live_pid}-{HEX}"),  # another live writer
            _make(run / f".tmp-{live_pid}-{HEX}-can.weights.h5", is_dir=False),
            _make(run / weights, age=time.time(), is_dir=False),
            # Look-alikes: other names, places or kinds.
            _make(checkpoints / "ckpt-3_temp.txt", is_dir=False), _make(checkpoints / "ckpt-3"),
            _make(checkpoints / "my-ckpt-3_temp"), _make(checkpoints / "ckpt-3_temp_old"),
            _make(checkpoints / "ckpt-_temp"), _make(export / "tmp-1"),
            _make(export / ".tmp-notes"), _make(export / f".tmp-5-{HEX}", is_dir=False),
            _make(export / f".tmp-7-{HEX.upper()}"), _make(export / f".tmp-8-{dead}-{HEX[1:]}"),
            _make(export / "1"), _make(export / "1" / f".tmp-2-{dead}-{HEX}"),
            _make(run / "ckpt-5_temp"), _make(run / f".tmp-{dead}-{HEX}-notes.txt", is_dir=False),
            _make(run / f".tmp-{dead}-{HEX}-x.weights.h5"),  # a folder
            _make(checkpoints / weights, is_dir=False), _make(export / weights, is_dir=False),
            _make(run / "can.weights.h5", is_dir=False),
            checkpoints / "ckpt-9_temp", users]  # a link to the user's folder, and the folder
    return stale, [str(p) for p in kept]


@pytest.fixture
def live_pid():
    """The pid of a live process other than this one."""
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
    yield child.pid
    child.kill()
    child.wait()


def test_only_stale_temporary_directories_are_removed_and_logged(tmp_path, caplog, live_pid):
    stale, kept = _layout(tmp_path, live_pid)
    removed = leftovers.remove_stale(tmp_path / "run", tmp_path / "export")
    assert sorted(removed) == sorted(stale)
    assert not any(os.path.exists(p) for p in stale)
    assert all(os.path.exists(p) for p in kept)
    for path in stale:
        assert "stale temporary" in caplog.text and path in caplog.text


def test_export_temp_names_carry_the_writers_pid():
    name = leftovers.export_temp_name(7)
    assert re.fullmatch(rf"\.tmp-7-{os.getpid()}-[0-9a-f]{{32}}", name)


def test_a_training_run_and_an_export_start_by_removing_them(shared, tmp_path, live_pid):
    stale, kept = _layout(tmp_path, live_pid)
    config = tiny_config("nima", shared, tmp_path / "run", export_dir=str(tmp_path / "export"),
                         train_steps=1)
    runner.train(NimaTask(config))
    assert not any(os.path.exists(p) for p in stale)
    assert all(os.path.exists(p) for p in kept)

    stale = _stale(tmp_path / "run", tmp_path / "export", 10)
    runner.run(NimaTask, dataclasses.replace(config, mode="export"))
    assert not any(os.path.exists(p) for p in stale)
    assert all(os.path.exists(p) for p in kept)
