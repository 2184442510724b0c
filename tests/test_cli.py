"""`python -m <entry point>` end to end, one smoke check per entry point.

Every other test drives the entry points in process through `main(argv)` (tools/cli.py); these
run the real command line in a separate process, because that process is the point: the
`__main__` block, absl's app around `run`, and the exit status that a shell sees.
"""
import concurrent.futures
import os
import re
import signal
import subprocess
import sys
import time

import pytest

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ENV = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", CUDA_VISIBLE_DEVICES="", PYTHONPATH=REPO_ROOT)

# (module, a flag that its --help must list). Add an entry point here when it gets a main(argv).
CLI_CASES = [
    ("tools.enhance", "saved_model"),
    ("tools.piea_demo", "nima_weights"),
    ("tools.export", "export_dir"),
    ("tools.build_wespe_demo", "num_train_patches"),
    ("tools.build_demo_ava", "num_images"),
    ("tools.evaluate_can", "fivek_dir"),
    ("tools.evaluate_piea", "iterations"),
    ("tools.convert_slim_inception_v2", "checkpoint"),
    ("train.nima", "backbone"),
    ("train.wespe", "phone"),
    ("train.can", "fidelity"),
]


def _run(module, *args):
    return subprocess.run([sys.executable, "-m", module, *args], capture_output=True, text=True,
                          env=ENV, cwd=REPO_ROOT, timeout=300)


def _run_together(*commands):
    """`_run(*command)` for each command, in concurrent processes; their results in order."""
    with concurrent.futures.ThreadPoolExecutor(len(commands)) as pool:
        return list(pool.map(lambda command: _run(*command), commands))


@pytest.mark.parametrize("module, flag", CLI_CASES)
def test_help_lists_the_flags_and_an_unknown_flag_fails(module, flag):
    # Both processes at once: each spends its seconds importing TensorFlow on one core.
    shown, failed = _run_together((module, "--help"), (module, "--no_such_flag_anywhere"))
    assert shown.returncode == 0, shown.stderr[-3000:]
    assert f"--{flag}" in shown.stdout

    assert failed.returncode == 1, failed.stderr[-3000:]
    assert "FATAL Flags parsing error" in failed.stderr


# Tiny runs of the demo presets: train 2 steps, evaluate, export.
QUIET_RUNS = {
    "wespe": ["--flagfile=configs/wespe_demo.flags", "--demo_num_train_patches=24",
              "--demo_num_test_patches=3", "--patch_size=32", "--filters=8",
              "--residual_blocks=1", "--batch_size=4", "--eval_max_images=1"],
    "can": ["--flagfile=configs/can_demo.flags", "--demo_num_train=8", "--train_height=48",
            "--train_width=64", "--can_depth=5", "--can_width=8", "--nima_weight=0",
            "--nima_weights=", "--batch_size=2", "--eval_max_images=2", "--eval_save_images=1"],
}


@pytest.mark.slow
@pytest.mark.parametrize("system", sorted(QUIET_RUNS))
def test_a_training_run_logs_no_errors_and_prints_its_table_once(system, tmp_path):
    """With TensorFlow's C++ log at its users' default level: no error lines (the grappler
    remapper's failure on the leaky ReLU's gradient, enhancers/leaky_relu.py), none of the
    SavedModel writer's renamed-inputs lines (tools/export.py), and the results table with its
    reading guide once."""
    env = {k: v for k, v in ENV.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    run = subprocess.run(
        [sys.executable, "-m", f"train.{system}", *QUIET_RUNS[system], "--train_steps=2",
         "--checkpoint_every=2", "--log_every=1", f"--model_dir={tmp_path / 'run'}",
         f"--export_dir={tmp_path / 'export'}", f"--demo_dir={tmp_path / 'demo'}"],
        capture_output=True, text=True, env=env, cwd=REPO_ROOT, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    log = run.stderr + run.stdout
    assert "step 2/2" in log and "Exported the" in log  # INFO lines are not silenced
    assert not re.findall(r"^E\d{4} .*$", log, re.MULTILINE)
    assert "remapper failed" not in log and "will be renamed" not in log
    assert len(re.findall(rf"^{system}: \d+ images evaluated$", run.stdout, re.MULTILINE)) == 1
    assert run.stdout.count("How to read:") == 1
    assert os.path.exists(tmp_path / "export" / "1" / "saved_model.pb")


@pytest.mark.slow
def test_a_diverged_run_exits_1_in_one_line_and_exports_nothing(tmp_path):
    """Issue 15: learning rates of 1e30 turn NIMA's weights NaN. The run stops with exit status
    1 and one error line naming the step and the last good checkpoint (no traceback), and
    nothing non-finite is saved or exported."""
    run = _run("train.nima", "--flagfile=configs/nima_demo.flags", "--demo_num_images=40",
               "--demo_image_size=64", "--crop_size=56", "--batch_size=4",
               "--checkpoint_every=1", "--train_steps=6", "--base_learning_rate=1e30",
               "--head_learning_rate=1e30", f"--model_dir={tmp_path / 'run'}",
               f"--export_dir={tmp_path / 'export'}", f"--demo_dir={tmp_path / 'demo'}")
    assert run.returncode == 1, run.stderr[-3000:]
    assert re.search(r"Non-finite .* at step \d+; stopped", run.stderr), run.stderr[-3000:]
    assert "Traceback" not in run.stderr
    assert not os.path.exists(tmp_path / "export")
    assert not os.path.exists(tmp_path / "run" / "nima.weights.h5")


@pytest.mark.slow
def test_a_run_stopped_by_sigterm_exits_75_with_its_checkpoint_and_no_export(tmp_path):
    """Issue 15: an interrupted run exited 0, so a scheduler took it for a finished one. It
    exits 75 (EX_TEMPFAIL) after checkpointing, saying in one line how to resume."""
    checkpoints = tmp_path / "run" / "checkpoints"
    run = subprocess.Popen(
        [sys.executable, "-m", "train.nima", "--flagfile=configs/nima_demo.flags",
         "--demo_num_images=40", "--demo_image_size=64", "--crop_size=56", "--batch_size=4",
         "--checkpoint_every=1", "--train_steps=100000", f"--model_dir={tmp_path / 'run'}",
         f"--export_dir={tmp_path / 'export'}", f"--demo_dir={tmp_path / 'demo'}"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV, cwd=REPO_ROOT)
    deadline = time.monotonic() + 240
    while not (checkpoints / "checkpoint").exists() and run.poll() is None:
        assert time.monotonic() < deadline, "no checkpoint within 240 s"
        time.sleep(0.2)
    run.send_signal(signal.SIGTERM)
    _, stderr = run.communicate(timeout=120)
    assert run.returncode == 75, stderr[-3000:]
    assert re.search(r"Interrupted at step \d+, checkpointed in .*; run the same command to "
                     r"resume", stderr), stderr[-3000:]
    assert "Traceback" not in stderr
    assert any(name.startswith("ckpt-") for name in os.listdir(checkpoints))
    assert not os.path.exists(tmp_path / "export")


@pytest.mark.slow
def test_an_unusable_data_set_is_one_line_naming_its_file(tmp_path):
    """Issue 15: an AVA.txt without a labelled row said "none of the 0 images listed ... is in
    images/", after a traceback. It is one error line naming the file, exit status 1."""
    ava_txt = tmp_path / "AVA.txt"
    ava_txt.write_text("1 953619 0 0 0 0 0 0 0 0 0 0 0 0 1\n")
    (tmp_path / "images").mkdir()
    run = _run("train.nima", "--dataset=ava", f"--ava_txt={ava_txt}",
               f"--image_dir={tmp_path / 'images'}", f"--model_dir={tmp_path / 'run'}")
    assert run.returncode == 1, run.stderr[-3000:]
    assert "Traceback" not in run.stderr
    errors = [line for line in run.stderr.splitlines() if line.startswith("E")]
    assert len(errors) == 1 and str(ava_txt) in errors[0] and "zero votes" in errors[0], errors


def test_an_export_dir_naming_a_file_is_refused_before_training(tmp_path):
    """Issue 15: --export_dir naming a regular file failed with a bare FileExistsError after the
    whole run had trained. absl now refuses the flag in one line, exit status 1."""
    afile = tmp_path / "afile"
    afile.write_text("keep me")
    run = _run("train.nima", "--flagfile=configs/nima_demo.flags",
               f"--model_dir={tmp_path / 'run'}", f"--export_dir={afile}")
    assert run.returncode == 1, run.stderr[-3000:]
    assert f"flag --export_dir={afile}: is a file, not a directory" in run.stderr
    assert "Traceback" not in run.stderr and not (tmp_path / "run").exists()
    assert afile.read_text() == "keep me"
