"""Peak memory and time of enhancing one large photo through a tiled, exported enhancer.

    python benchmarks/tiled_memory.py [--megapixels=24] [--cases=wespe,can] [--window_pixels=N]

Each case runs in its own subprocess: it exports a random-weight enhancer at the paper's width
(`tools.export.export_enhancer`, tiled by `enhancers.tiling`: WESPE's G, 64 maps, 8 instance
norms; the paper's CAN, 32 maps, radius 511, through `enhancers.can.inference_model`), loads it
as `tools.enhance` does, and enhances a synthetic 3:2 photo of --megapixels. It prints the
tiling plan, the peak resident memory of the process (ru_maxrss, which includes TensorFlow and
the export itself: compare with the peak before enhancing, also printed) and the seconds.
Random weights: memory and speed do not depend on them.
"""
import json
import os
import resource
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from absl import app, flags  # noqa: E402

flags.DEFINE_float("megapixels", 24.0, "Size of the synthetic photo (3:2).")
flags.DEFINE_list("cases", ["wespe", "can"], "Enhancers to measure: wespe, can.")
flags.DEFINE_integer("window_pixels", None, "Tile window budget (default: from the model).")
FLAGS = flags.FLAGS


def _peak_gib():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def _measure(case, megapixels, window_pixels):
    """In the subprocess: export, load, enhance; returns a dict of figures."""
    import numpy as np

    from enhancers import can, wespe
    from tools import enhance, export

    model = wespe.build_generator() if case == "wespe" else can.inference_model(can.build_can())
    with tempfile.TemporaryDirectory() as directory:
        path = export.export_enhancer(model, os.path.join(directory, case),
                                      window_pixels=window_pixels)
        with open(os.path.join(path, export.METADATA_FILE), encoding="utf-8") as f:
            plan = json.load(f)["tiling"]
        enhance_fn = enhance.load_saved_model_enhancer(path)
        width = int(round((megapixels * 1e6 * 1.5) ** 0.5))
        height = int(round(width / 1.5))
        rows = np.linspace(0.0, 1.0, height, dtype=np.float32)[:, None, None]
        image = np.broadcast_to(rows, (height, width, 3)) * np.float32(0.8)
        before = _peak_gib()
        start = time.perf_counter()
        enhanced = enhance_fn(np.ascontiguousarray(image))
        seconds = time.perf_counter() - start
    assert enhanced.shape == (height, width, 3)
    return {"case": case, "size": f"{width}x{height}", "plan": plan,
            "peak_gib_before": round(before, 2), "peak_gib": round(_peak_gib(), 2),
            "seconds": round(seconds, 1)}


def main(argv):
    if len(argv) == 3 and argv[1] == "--child":
        case, megapixels, window_pixels = json.loads(argv[2])
        from tools import report

        print(report.strict_dumps(_measure(case, megapixels, window_pixels), case))
        return
    for case in FLAGS.cases:
        payload = json.dumps([case, FLAGS.megapixels, FLAGS.window_pixels])
        env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", CUDA_VISIBLE_DEVICES="")
        result = subprocess.run([sys.executable, __file__, "--child", payload], env=env,
                                capture_output=True, text=True)
        if result.returncode:
            print(f"{case}: failed (exit {result.returncode})\n{result.stderr[-2000:]}")
            continue
        print(result.stdout.strip().splitlines()[-1])


if __name__ == "__main__":
    if "--child" in sys.argv:
        main(sys.argv)
    else:
        app.run(main)
