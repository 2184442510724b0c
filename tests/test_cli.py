"""`python -m <entry point>` end to end, one smoke check per entry point.

Every other test drives the entry points in process through `main(argv)` (tools/cli.py); these
run the real command line in a separate process, because that process is the point: the
`__main__` block, absl's app around `run`, and the exit status that a shell sees.
"""
import os
import subprocess
import sys

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


@pytest.mark.parametrize("module, flag", CLI_CASES)
def test_help_lists_the_flags_and_an_unknown_flag_fails(module, flag):
    shown = _run(module, "--help")
    assert shown.returncode == 0, shown.stderr[-3000:]
    assert f"--{flag}" in shown.stdout

    failed = _run(module, "--no_such_flag_anywhere")
    assert failed.returncode == 1, failed.stderr[-3000:]
    assert "FATAL Flags parsing error" in failed.stderr
