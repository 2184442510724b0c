"""`python -m train.nima` end to end on a tiny demo set, the presets, and nima.demo_model()."""
import dataclasses
import json
import os
import subprocess
import sys

import numpy as np
import pytest
from absl import flags

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY = [
    "--demo_num_images=40", "--demo_image_size=48", "--crop_size=32", "--batch_size=8",
    "--train_steps=4", "--checkpoint_every=2", "--log_every=2", "--eval_batch_size=8",
]


def run_cli(*args, timeout=400):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", PYTHONPATH=REPO)
    return subprocess.run(
        [sys.executable, "-m", "train.nima", *args], cwd=REPO, env=env, capture_output=True,
        text=True, timeout=timeout,
    )


def last_json(stdout):
    return json.JSONDecoder().raw_decode(stdout[stdout.index("{"):])[0]


@pytest.mark.slow
def test_demo_cli_trains_resumes_evaluates_and_exports(tmp_path):
    model_dir, export_dir = tmp_path / "run", tmp_path / "export"
    common = ["--flagfile=configs/nima_demo.flags", f"--model_dir={model_dir}",
              f"--export_dir={export_dir}", f"--demo_dir={tmp_path / 'demo'}", *TINY]
    first = run_cli(*common, "--strategy=mirrored", "--num_cpu_devices=2")
    assert first.returncode == 0, first.stderr[-4000:]
    outcome = last_json(first.stdout)
    assert outcome["step"] == 4 and outcome["num_images"] == 8
    # 4 steps of a tiny model may predict one score for every image: then SRCC is None with a
    # note, never NaN; otherwise a correlation.
    assert (outcome["srcc"] is None) == ("correlation_note" in outcome)
    assert outcome["srcc"] is None or -1 <= outcome["srcc"] <= 1
    assert 0 <= outcome["emd"] <= 1
    assert "images/s" in first.stderr and "step 2/4" in first.stderr
    assert os.path.exists(export_dir / "1" / "saved_model.pb")
    assert os.path.exists(model_dir / "nima.weights.h5")
    assert os.listdir(model_dir / "train")  # TensorBoard events
    recorded_split = (model_dir / "test_ids.txt").read_text()

    # Same model_dir with more steps: resumes from step 4 on the recorded split.
    second = run_cli(*common, "--train_steps=6")
    assert second.returncode == 0, second.stderr[-4000:]
    assert "at step 4" in second.stderr and last_json(second.stdout)["step"] == 6
    assert (model_dir / "test_ids.txt").read_text() == recorded_split
    assert os.path.exists(export_dir / "2" / "saved_model.pb")

    os.remove(model_dir / "nima.weights.h5")  # eval restores the latest checkpoint
    evaluated = run_cli(*common, "--mode=eval")
    assert evaluated.returncode == 0, evaluated.stderr[-4000:]
    assert json.loads((model_dir / "eval.json").read_text())["num_images"] == 8

    exported = run_cli(*common, "--mode=export", "--export_version=2")
    assert exported.returncode != 0 and "refusing to overwrite" in exported.stderr


def test_mixed_precision_trains_and_exports_in_float32(tmp_path):
    done = run_cli("--flagfile=configs/nima_demo.flags", f"--model_dir={tmp_path / 'run'}",
                   f"--export_dir={tmp_path / 'export'}", f"--demo_dir={tmp_path / 'demo'}",
                   *TINY, "--mixed_precision")
    assert done.returncode == 0, done.stderr[-4000:]
    assert "Precision policy: mixed_bfloat16" in done.stderr  # no GPU here: bfloat16
    assert last_json(done.stdout)["step"] == 4
    assert os.path.exists(tmp_path / "export" / "1" / "saved_model.pb")


def test_missing_ava_images_stop_the_run_with_the_flag_to_skip_them(tmp_path):
    images = tmp_path / "images"
    images.mkdir()
    from PIL import Image

    for image_id in ("10", "11", "12", "13", "14"):
        Image.new("RGB", (40, 40), (int(image_id) * 10, 90, 40)).save(images / f"{image_id}.jpg")
    lines = [f"{i} {image_id} " + " ".join(str(v) for v in np.eye(10, dtype=int)[i % 10] * 5)
             + " 0 0 1" for i, image_id in enumerate(["10", "11", "12", "13", "14", "99", "98"])]
    (tmp_path / "AVA.txt").write_text("\n".join(lines) + "\n")
    args = [f"--ava_txt={tmp_path / 'AVA.txt'}", f"--image_dir={images}", "--dataset=ava",
            f"--model_dir={tmp_path / 'run'}", "--batch_size=2", "--train_steps=1",
            "--crop_size=32", "--test_fraction=0.4"]
    failed = run_cli(*args)
    assert failed.returncode != 0
    assert "--skip_missing_images" in failed.stderr and "99" in failed.stderr
    skipped = run_cli(*args, "--skip_missing_images")
    assert skipped.returncode == 0, skipped.stderr[-4000:]


@pytest.fixture
def parsed_flags():
    from train import nima as entry_point  # defines the flags once

    yield entry_point
    flags.FLAGS.unparse_flags()


def parse(entry_point, *args):
    flags.FLAGS.unparse_flags()
    flags.FLAGS(["train.nima", *args])
    return entry_point.config_from_flags()


def test_demo_flagfile_matches_demo_model_preset(parsed_flags):
    from train import nima_task

    config = parse(parsed_flags, f"--flagfile={REPO}/configs/nima_demo.flags")
    expected = nima_task.demo_config(model_dir="runs/nima_demo")
    assert dataclasses.asdict(config) == dataclasses.asdict(expected)


@pytest.mark.parametrize("backbone", ["mobilenet", "vgg16", "inception_v2"])
def test_ava_presets_hold_the_paper_settings(parsed_flags, backbone):
    config = parse(parsed_flags, f"--flagfile={REPO}/configs/nima_ava_{backbone}.flags",
                   "--model_dir=x", "--batch_size=128")  # overridable after the flagfile
    assert config.backbone == backbone and config.dataset == "ava"
    assert config.base_learning_rate == 3e-7 and config.head_learning_rate == 3e-6
    assert config.lr_decay_epochs == 10 and config.crop_size == 224
    assert config.batch_size == 128
    assert parse(parsed_flags, f"--flagfile={REPO}/configs/nima_ava_{backbone}.flags",
                 "--model_dir=x").batch_size == 64


def test_demo_model_trains_once_then_loads_from_cache(tmp_path, monkeypatch):
    import nima
    from train import nima_task

    tiny = dict(demo_num_images=24, demo_image_size=48, crop_size=32, batch_size=8,
                train_steps=2, checkpoint_every=2, log_every=1, eval_batch_size=8,
                demo_dir=str(tmp_path / "data"))
    first = nima.demo_model(cache_dir=str(tmp_path / "cache"), **tiny)
    weights = tmp_path / "cache" / nima_task.FINAL_WEIGHTS
    assert weights.exists() and (tmp_path / "cache" / "export" / "1").exists()

    def no_training(config):
        raise AssertionError("demo_model retrained although the cache holds the model")

    monkeypatch.setattr(nima_task, "run", no_training)
    second = nima.demo_model(cache_dir=str(tmp_path / "cache"), **tiny)
    images = np.random.default_rng(0).random((2, 48, 48, 3)).astype("float32")
    np.testing.assert_allclose(np.asarray(first(images)), np.asarray(second(images)), atol=1e-6)


@pytest.mark.slow
@pytest.mark.long_demo
def test_demo_preset_learns_the_demo_scores(tmp_path):
    """The README's main job, as configs/nima_demo.flags sets it (a few CPU minutes)."""
    from train import nima_task

    outcome = nima_task.run(nima_task.demo_config(model_dir=str(tmp_path / "run")))
    assert outcome["step"] == nima_task.DEMO_SETTINGS["train_steps"]
    assert outcome["srcc"] > 0.5, outcome


def free_ports(count):
    import socket

    sockets = [socket.socket() for _ in range(count)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


@pytest.mark.slow
def test_two_workers_train_with_multi_worker_mirrored_strategy(tmp_path):
    """Two local worker processes (loopback only) train one model from TF_CONFIG."""
    workers = [f"127.0.0.1:{port}" for port in free_ports(2)]
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", PYTHONPATH=REPO)
    args = [sys.executable, "-m", "train.nima", "--flagfile=configs/nima_demo.flags",
            "--strategy=multi_worker", f"--model_dir={tmp_path / 'run'}", "--export_dir=",
            f"--demo_dir={tmp_path / 'demo'}", *TINY]
    # Build the demo set once, so the workers do not race to write it.
    from datasets import demo

    demo.build_demo_ava(str(tmp_path / "demo"), num_images=40, image_size=48, seed=0)
    processes = []
    for index in range(2):
        config = {"cluster": {"worker": workers}, "task": {"type": "worker", "index": index}}
        processes.append(subprocess.Popen(
            args, cwd=REPO, env=dict(env, TF_CONFIG=json.dumps(config)),
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    outputs = [p.communicate(timeout=400) for p in processes]
    for process, (out, err) in zip(processes, outputs):
        assert process.returncode == 0, err[-4000:]
    assert last_json(outputs[0][0])["step"] == 4
    assert tf_latest_step(tmp_path / "run" / "checkpoints") == 4


def tf_latest_step(directory):
    import tensorflow as tf

    return int(tf.train.latest_checkpoint(str(directory)).rsplit("-", 1)[1])


def test_multi_worker_without_tf_config_is_a_clear_error(monkeypatch):
    from train import strategies

    monkeypatch.delenv("TF_CONFIG", raising=False)
    with pytest.raises(ValueError, match="TF_CONFIG"):
        strategies.make_strategy("multi_worker")
