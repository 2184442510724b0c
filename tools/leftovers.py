"""Start-up cleanup of the temporary files and directories that interrupted runs leave, and of
nothing else.

Three writers leave them when killed mid-write:

- Checkpoints: `tf.train.CheckpointManager` (under `<model_dir>/checkpoints`) writes
  `ckpt-<N>_temp/` while saving and merges it into `ckpt-<N>.index` / `.data-*` at the end.
- Exports: `tools.export.export_saved_model` writes `<export_dir>/.tmp-<version>-<pid>-<hex>/`
  (`export_temp_name`) and renames it into `<version>/` at the end. Names written before the
  pid was added (`.tmp-<version>-<hex>`) are matched too.
- Final weights: `train.runner.save_weights` writes the file
  `<model_dir>/.tmp-<pid>-<hex>-<name>.weights.h5` (`weights_temp_name`) and renames it.

The rule (`remove_stale`, run by `train.runner` at the start of every mode, on the chief when
training): an entry is removed only if it lies directly in `<model_dir>/checkpoints`,
`<export_dir>` or `<model_dir>` (weights files), is a directory (a regular file for weights),
its name matches one of those patterns exactly, nothing under it changed for STALE_AFTER_S (a
save or an export still under way keeps writing), and, for a name with a pid, no process of
that pid is alive on this machine. Each removal is logged. Two live runs on one model_dir are
already an error; the age rule still spares the other's save.
"""
import os
import re
import shutil
import time
import uuid

from absl import logging

__all__ = ["STALE_AFTER_S", "export_temp_name", "remove_stale", "weights_temp_name"]

STALE_AFTER_S = 600.0
_CHECKPOINT_TEMP = re.compile(r"ckpt-\d+_temp")
_EXPORT_TEMP = re.compile(r"\.tmp-\d+-(?:(?P<pid>\d+)-)?[0-9a-f]{32}")
_WEIGHTS_TEMP = re.compile(r"\.tmp-(?P<pid>\d+)-[0-9a-f]{32}-[^/]+\.weights\.h5")


def export_temp_name(version):
    """The hidden name an export is written under before its rename: `.tmp-<version>-<pid>-<hex>`."""
    return f".tmp-{version}-{os.getpid()}-{uuid.uuid4().hex}"


def weights_temp_name(name):
    """The hidden name a weights file `name` (`*.weights.h5`) is written under before its rename:
    `.tmp-<pid>-<hex>-<name>`."""
    return f".tmp-{os.getpid()}-{uuid.uuid4().hex}-{name}"


def _alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's live process
        return True
    return True


def _last_change(path):
    newest = os.lstat(path).st_mtime
    for root, dirs, files in os.walk(path):
        for name in dirs + files:
            try:
                newest = max(newest, os.lstat(os.path.join(root, name)).st_mtime)
            except FileNotFoundError:
                pass
    return newest


def _remove_stale_in(directory, pattern, what, files=False):
    removed = []
    if not directory or not os.path.isdir(directory):
        return removed
    now = time.time()
    with os.scandir(directory) as entries:
        candidates = [e for e in entries if pattern.fullmatch(e.name) and (
            e.is_file(follow_symlinks=False) if files else e.is_dir(follow_symlinks=False))]
    for entry in candidates:
        pid = pattern.fullmatch(entry.name).groupdict().get("pid")
        if pid is not None and _alive(int(pid)):
            continue
        try:
            if now - _last_change(entry.path) < STALE_AFTER_S:
                continue
        except FileNotFoundError:
            continue
        try:
            if files:
                os.remove(entry.path)
            else:
                shutil.rmtree(entry.path)
        except OSError as error:
            logging.warning("Could not remove the stale temporary %s %s: %s", what, entry.path,
                            error)
            continue
        logging.warning("Removed a stale temporary %s left by an interrupted run: %s", what,
                        entry.path)
        removed.append(entry.path)
    return removed


def remove_stale(model_dir, export_dir=None):
    """Removes the stale temporary checkpoint, weights and export files of `model_dir` and
    `export_dir` (module docstring); returns their paths."""
    removed = _remove_stale_in(os.path.join(os.fspath(model_dir), "checkpoints"),
                               _CHECKPOINT_TEMP, "checkpoint directory")
    removed += _remove_stale_in(os.fspath(model_dir), _WEIGHTS_TEMP, "weights file", files=True)
    if export_dir:
        removed += _remove_stale_in(os.fspath(export_dir), _EXPORT_TEMP, "export directory")
    return removed
