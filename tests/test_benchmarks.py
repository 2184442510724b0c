"""Every benchmark script runs, at tiny sizes, in a process of its own.

Benchmarks print figures and assert nothing about speed (DESIGN.md), so nothing else runs them,
and one that breaks (a task's flag or data changed under it) would be found only by the next
person who needs its figures: `benchmarks/pienet_step.py --shapes=demo` did, once the PieNet
demo took --preference_input=photos. Here each runs with its smallest sizes and must exit 0 and
print its last figure. `benchmarks/heldout.py` is left out: it judges trained exports (or trains
the demo NIMA for PIEA), and `tests/test_heldout.py` tests the check it prints.
"""
import os
import subprocess
import sys

import pytest

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ENV = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", CUDA_VISIBLE_DEVICES="")

# (script, its tiniest flags, a line its last figure prints)
CASES = [
    ("pienet_step.py", ["--quick", "--repeats=1"], "enhance one 48x40 photo"),
    ("wespe_step.py", ["--batch_size=2", "--patch_size=16", "--filters=8", "--repeats=1",
                       "--photo_size=32x48"], "enhance one 32x48 photo with G"),
    ("enhancegan_step.py", ["--shapes=demo", "--repeats=1", "--photo_size=64x96"],
     "enhance one 64x96 photo"),
    ("nima_throughput.py", ["--backbones=mobilenet", "--sizes=64x64x1", "--repeats=1"],
     "mobilenet             64x64 b1"),
    ("piea_speed.py", ["--backbones=mobilenet", "--height=32", "--width=48", "--iterations=2",
                       "--repeats=1"], "photo 48x32, M = 2"),
    ("tiled_memory.py", ["--megapixels=0.05"], '"case": "can"'),
    ("leaky_relu_speed.py", ["--rounds=1"], "ratio Keras / ours"),
    ("can_speed.py", ["--backbone=mobilenet", "--train_size=32x32", "--photo_size=32x48",
                      "--repeats=1", "--rounds=1"], "ratio Keras / native"),
]


def test_every_benchmark_is_covered():
    covered = {script for script, _, _ in CASES} | {"heldout.py", "timing.py"}
    scripts = {name for name in os.listdir(os.path.join(REPO_ROOT, "benchmarks"))
               if name.endswith(".py")}
    assert scripts == covered, scripts ^ covered


@pytest.mark.slow
@pytest.mark.parametrize("script, args, last_figure", CASES, ids=[c[0] for c in CASES])
def test_benchmark_runs_at_tiny_sizes(script, args, last_figure):
    done = subprocess.run([sys.executable, os.path.join("benchmarks", script), *args],
                          capture_output=True, text=True, env=ENV, cwd=REPO_ROOT, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert last_figure in done.stdout, done.stdout[-3000:]
