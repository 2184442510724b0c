"""NIMA's task (`train.nima`): presets, mixed precision, missing images, the demo NIMA, and
two workers. The shared smoke test (tests/test_tasks.py) trains, resumes, evaluates and exports."""
import dataclasses
import json
import logging
import os
import subprocess
import sys

import numpy as np
import pytest

from datasets.pipeline import DataError
from nima.demo import DEMO_SETTINGS
from tests.task_testing import parse, run_preset
from train import runner
from train.nima_task import NimaConfig, NimaTask, demo_config

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY = [
    "--demo_num_images=40", "--demo_image_size=48", "--crop_size=32", "--batch_size=8",
    "--train_steps=4", "--checkpoint_every=2", "--log_every=2", "--eval_batch_size=8",
]


def last_json(stdout):
    return json.JSONDecoder().raw_decode(stdout[stdout.index("{"):])[0]


def test_mixed_precision_trains_and_exports_in_float32(tmp_path, caplog):
    caplog.set_level(logging.INFO)
    config = parse(NimaTask, f"--flagfile={REPO}/configs/nima_demo.flags",
                   f"--model_dir={tmp_path / 'run'}", f"--export_dir={tmp_path / 'export'}",
                   f"--demo_dir={tmp_path / 'demo'}", *TINY, "--mixed_precision")
    outcome = runner.run(NimaTask, config)
    assert "Precision policy: mixed_bfloat16" in caplog.text  # no GPU here: bfloat16
    assert outcome["step"] == 4
    assert os.path.exists(tmp_path / "export" / "1" / "saved_model.pb")
    import keras

    assert keras.mixed_precision.global_policy().name == "float32"  # restored for export


def test_missing_ava_images_stop_the_run_with_the_flag_to_skip_them(tmp_path):
    images = tmp_path / "images"
    images.mkdir()
    from PIL import Image

    for image_id in ("10", "11", "12", "13", "14"):
        Image.new("RGB", (40, 40), (int(image_id) * 10, 90, 40)).save(images / f"{image_id}.jpg")
    lines = [f"{i} {image_id} " + " ".join(str(v) for v in np.eye(10, dtype=int)[i % 10] * 5)
             + " 0 0 1" for i, image_id in enumerate(["10", "11", "12", "13", "14", "99", "98"])]
    (tmp_path / "AVA.txt").write_text("\n".join(lines) + "\n")
    config = NimaConfig(ava_txt=str(tmp_path / "AVA.txt"), image_dir=str(images), dataset="ava",
                        model_dir=str(tmp_path / "run"), batch_size=2, train_steps=1,
                        crop_size=32, test_fraction=0.4)
    with pytest.raises(Exception, match="--skip_missing_images") as error:
        runner.run(NimaTask, config)
    assert "99" in str(error.value)
    outcome = runner.run(NimaTask, dataclasses.replace(config, skip_missing_images=True))
    assert outcome["step"] == 1


def test_an_eval_split_of_undecodable_images_is_one_error_naming_them(tmp_path):
    # Issue 15: "need at least one array to concatenate" when no test image decoded.
    images = tmp_path / "images"
    images.mkdir()
    from PIL import Image

    ids = [str(i) for i in range(10, 16)]
    for image_id in ids[:3]:
        Image.new("RGB", (40, 40), (90, 90, 40)).save(images / f"{image_id}.jpg")
    for image_id in ids[3:]:
        (images / f"{image_id}.jpg").write_bytes(b"not a jpeg")
    lines = [f"{i} {image_id} 1 2 3 4 5 5 4 3 2 1 0 0 1" for i, image_id in enumerate(ids)]
    (tmp_path / "AVA.txt").write_text("\n".join(lines) + "\n")
    (tmp_path / "test_ids.txt").write_text("\n".join(ids[3:]) + "\n")
    config = NimaConfig(ava_txt=str(tmp_path / "AVA.txt"), image_dir=str(images), dataset="ava",
                        split_file=str(tmp_path / "test_ids.txt"), crop_size=32,
                        model_dir=str(tmp_path / "run"), eval_batch_size=2)
    task = NimaTask(config)
    with pytest.raises(DataError, match="none of the 3 images of the eval split could be "
                                        "decoded") as error:
        task.evaluate(task.build_models(training=False))
    assert str(images) in str(error.value) and "13.jpg" in str(error.value)


def test_a_training_stream_of_undecodable_images_is_one_data_error(tmp_path):
    """Issue 15: when no training image decodes, the stream's error reached the command line
    wrapped in a TensorFlow error, with a traceback; the runner now raises the DataError itself
    (which the command line prints in one line), naming the files."""
    from train import runner

    images = tmp_path / "images"
    images.mkdir()
    ids = [str(i) for i in range(20, 30)]
    for image_id in ids:
        (images / f"{image_id}.jpg").write_bytes(b"not a jpeg")
    lines = [f"{i} {image_id} 1 2 3 4 5 5 4 3 2 1 0 0 1" for i, image_id in enumerate(ids)]
    (tmp_path / "AVA.txt").write_text("\n".join(lines) + "\n")
    config = NimaConfig(ava_txt=str(tmp_path / "AVA.txt"), image_dir=str(images), dataset="ava",
                        crop_size=32, batch_size=2, train_steps=2,
                        model_dir=str(tmp_path / "run"))
    with pytest.raises(DataError, match="could be decoded") as error:
        runner.run(NimaTask, config)
    assert str(images) in str(error.value) and ".jpg" in str(error.value)


def test_demo_flagfile_matches_demo_model_preset():
    config = parse(NimaTask, f"--flagfile={REPO}/configs/nima_demo.flags")
    expected = demo_config(model_dir="runs/nima_demo")
    assert dataclasses.asdict(config) == dataclasses.asdict(expected)


@pytest.mark.parametrize("backbone", ["mobilenet", "vgg16", "inception_v2"])
def test_ava_presets_hold_the_paper_settings(backbone):
    flagfile = f"--flagfile={REPO}/configs/nima_ava_{backbone}.flags"
    config = parse(NimaTask, flagfile, "--model_dir=x", "--batch_size=128")  # overridable
    assert config.backbone == backbone and config.dataset == "ava"
    assert config.base_learning_rate == 3e-7 and config.head_learning_rate == 3e-6
    assert config.lr_decay_epochs == 10 and config.crop_size == 224
    assert config.batch_size == 128
    assert parse(NimaTask, flagfile, "--model_dir=x").batch_size == 64


def test_demo_model_trains_once_then_loads_from_cache(tmp_path, monkeypatch):
    """The first call has the runner train the demo NIMA (`python -m train.nima`, in its own
    process, so `nima` never imports `train`); the second loads it without training."""
    import nima
    from nima import demo

    tiny = dict(demo_num_images=24, demo_image_size=48, crop_size=32, batch_size=8,
                train_steps=2, checkpoint_every=2, log_every=1, eval_batch_size=8,
                demo_dir=str(tmp_path / "data"))
    first = nima.demo_model(cache_dir=str(tmp_path / "cache"), **tiny)
    assert (tmp_path / "cache" / demo.DEMO_WEIGHTS_FILE).exists()
    assert (tmp_path / "cache" / "export" / "1").exists()

    def no_training(*args, **kwargs):
        raise AssertionError("demo_model retrained although the cache holds the model")

    monkeypatch.setattr(demo, "train_demo_model", no_training)
    second = nima.demo_model(cache_dir=str(tmp_path / "cache"), **tiny)
    images = np.random.default_rng(0).random((2, 48, 48, 3)).astype("float32")
    np.testing.assert_allclose(np.asarray(first(images)), np.asarray(second(images)), atol=1e-6)


def test_a_failed_demo_training_is_a_clear_error(tmp_path):
    from nima import demo

    with pytest.raises(RuntimeError, match="Training the demo NIMA into .* failed"):
        demo.train_demo_model(str(tmp_path / "cache"), demo_num_images=-1)


@pytest.mark.slow
@pytest.mark.long_demo
def test_demo_preset_learns_the_demo_scores(tmp_path):
    """The README's main job, as configs/nima_demo.flags sets it (a few CPU minutes)."""
    outcome, rows = run_preset(NimaTask, "nima_demo", tmp_path)
    assert outcome["step"] == DEMO_SETTINGS["train_steps"]
    assert rows["NIMA(mobilenet)"]["srcc"] > 0.5, outcome


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
    from datasets import demo as demo_sets

    demo_sets.build_demo_ava(str(tmp_path / "demo"), num_images=40, image_size=48, seed=0)
    processes = []
    for index in range(2):
        config = {"cluster": {"worker": workers}, "task": {"type": "worker", "index": index}}
        processes.append(subprocess.Popen(
            args, cwd=REPO, env=dict(env, TF_CONFIG=json.dumps(config)),
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    try:
        outputs = [p.communicate(timeout=400) for p in processes]
    finally:
        for process in processes:  # a lost peer must never hang CI
            if process.poll() is None:
                process.kill()
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
