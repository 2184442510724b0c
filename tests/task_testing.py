"""Shared checks every training task passes (in the spirit of keras-hub's `TestCase`).

`run_task_smoke_test(task_class, config)` drives a task through the runner in this process:
train 2 steps, resume to 3, evaluate, export, refuse to overwrite an export, and reload the
SavedModel and compare it with the restored model. A new system gets it by adding its tiny
config to `tests/test_tasks.py`.
"""
import dataclasses
import json
import os

import numpy as np
import pytest
import tensorflow as tf

from train import runner
from train.can_task import CanConfig
from train.enhancegan_task import EnhanceganConfig
from train.nima_task import NimaConfig
from train.pienet_task import PienetConfig
from train.wespe_task import WespeConfig
from train.flags import parse_config


def checkpoint_step(model_dir):
    latest = tf.train.latest_checkpoint(os.path.join(model_dir, "checkpoints"))
    return int(latest.rsplit("-", 1)[1])


def check_report(report):
    """The common evaluation layout: rows of named methods with metrics, strict JSON."""
    assert report["rows"] and report["num_images"] >= 1, report
    for row in report["rows"]:
        assert row["name"] and isinstance(row["metrics"], dict), row
    json.dumps(report, allow_nan=False)


def exported_output(path, images):
    """serving_default of the SavedModel at `path` on float images."""
    serving = tf.saved_model.load(path).signatures["serving_default"]
    return {k: v.numpy() for k, v in serving(images=tf.constant(images)).items()}


def run_task_smoke_test(task_class, config, image_size=32):
    """Trains `config` (a tiny config with model_dir and export_dir set) 2 steps, resumes to 3,
    evaluates, exports and reloads the export; returns the first run's outcome."""
    base = dataclasses.replace(config, mode="train", train_steps=2, checkpoint_every=1,
                               export_version=None)
    first = runner.run(task_class, base)
    assert first["step"] == 2 and not first["interrupted"]
    assert checkpoint_step(config.model_dir) == 2
    for file_name in task_class(config).final_weights.values():
        assert os.path.exists(os.path.join(config.model_dir, file_name)), file_name
    check_report(first["eval"])
    with open(os.path.join(config.model_dir, "eval.json")) as handle:
        assert json.load(handle) == first["eval"]
    if first.get("export_path", "") is None:  # a stage with nothing to export
        return _check_stage_without_export(task_class, base, first)
    assert first["export_path"] == os.path.join(config.export_dir, "1")

    resumed = runner.run(task_class, dataclasses.replace(base, train_steps=3, export_dir=None))
    assert resumed["step"] == 3 and checkpoint_step(config.model_dir) == 3
    assert resumed["weights_fingerprint"] != first["weights_fingerprint"]  # it trained on

    evaluated = runner.run(task_class, dataclasses.replace(base, mode="eval"))
    check_report(evaluated["eval"])

    exported = runner.run(task_class, dataclasses.replace(base, mode="export"))
    assert exported["export_path"] == os.path.join(config.export_dir, "2")
    with pytest.raises(FileExistsError, match="refusing to overwrite"):
        runner.run(task_class, dataclasses.replace(base, mode="export", export_version=2))

    # The export computes what the restored model computes (the newest state, step 3).
    task = task_class(dataclasses.replace(base, mode="export"))
    models = runner.restore(task)
    spec = task.export(models)
    images = np.random.default_rng(0).random((1, image_size, image_size, 3)).astype("float32")
    if spec.kind == "pienet":  # an image and a preference vector in
        preference = np.asarray(spec.metadata["mean_vector"], np.float32)[None]
        served = tf.saved_model.load(exported["export_path"]).signatures["serving_default"](
            images=tf.constant(images), preference=tf.constant(preference))
        expected = spec.model({"images": images, "preference": preference}, training=False)
        np.testing.assert_allclose(served["enhanced_images"].numpy(),
                                   np.clip(np.asarray(expected["enhanced"]), 0, 1), atol=1e-5)
        return first
    outputs = exported_output(exported["export_path"], images)
    if spec.kind == "enhancegan":  # a photo enhancer: one photo in, the photo cut to its box
        expected = spec.model(images[0])
        top, left, height, width = (int(v) for v in np.asarray(expected["box"]))
        np.testing.assert_array_equal(outputs["boxes"][0], [top, left, height, width])
        np.testing.assert_allclose(outputs["enhanced_images"][0, :height, :width],
                                   np.asarray(expected["image"]), atol=1e-5)
        return first
    expected = np.asarray(spec.model(images, training=False))
    if spec.kind == "enhancer":
        expected = np.clip(expected, 0, 1)
    actual = outputs["enhanced_images" if spec.kind == "enhancer" else "distribution"]
    np.testing.assert_allclose(actual, expected, atol=1e-5)
    return first


def _check_stage_without_export(task_class, base, first):
    """A pre-training stage (PieNet's embedding): resumes, evaluates, and exports nothing."""
    resumed = runner.run(task_class, dataclasses.replace(base, train_steps=3, export_dir=None))
    assert resumed["step"] == 3 and checkpoint_step(base.model_dir) == 3
    assert resumed["weights_fingerprint"] != first["weights_fingerprint"]
    check_report(runner.run(task_class, dataclasses.replace(base, mode="eval"))["eval"])
    assert runner.run(task_class, dataclasses.replace(base, mode="export"))["export_path"] is None
    assert not os.path.exists(os.path.join(base.export_dir, "1"))
    return first


def parse(task_class, *args):
    """The config `python -m train.<system> ARGS` runs with, parsed in-process."""
    return parse_config(task_class.config_class, [f"train.{task_class.name}", *args])


def run_preset(task_class, preset, tmp_path, *extra_flags):
    """Runs configs/<preset>.flags (plus `extra_flags`) into tmp_path; returns (outcome,
    {row name: metrics} of its evaluation report)."""
    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    config = parse(task_class, f"--flagfile={repo}/configs/{preset}.flags",
                   f"--model_dir={tmp_path / 'run'}", f"--export_dir={tmp_path / 'export'}",
                   f"--demo_dir={tmp_path / 'demo'}", *extra_flags)
    outcome = runner.run(task_class, config)
    assert os.path.exists(os.path.join(config.export_dir, "1", "saved_model.pb"))
    return outcome, {row["name"]: row["metrics"] for row in outcome["eval"]["rows"]}


def assert_heldout_check(name, enhance_fn, degradation, known_gaps=(), other_gaps=(), **options):
    """The held-out real-photo check (tools.heldout) on the full-size held-out photos: every rule
    holds, except failures containing one of `known_gaps` (documented in the README), which make
    the test an expected failure that lists them, with `other_gaps` (the demo's own known gaps,
    found by the caller)."""
    from datasets import heldout as heldout_photos
    from tools import heldout

    results = heldout.check_enhancer(name, enhance_fn, heldout_photos.load_photos(), degradation,
                                     **options)
    broken = heldout.failures(results)
    known = [f for f in broken if any(gap in f for gap in known_gaps)]
    assert [f for f in broken if f not in known] == [], results
    if known or other_gaps:
        pytest.xfail(f"known gaps (README): {list(other_gaps) + known}")


def tiny_config(name, shared, model_dir, **overrides):
    """A few-second configuration of each system (tiny networks and demo sets)."""
    common = dict(model_dir=str(model_dir), export_dir=str(model_dir / "export"), seed=0,
                  checkpoint_every=1, log_every=1, train_steps=2)
    if name == "nima":
        config = NimaConfig(**common, dataset="demo", demo_dir=str(shared / "nima_demo"),
                            demo_num_images=40, demo_image_size=48, crop_size=32, batch_size=8,
                            eval_batch_size=8, base_learning_rate=0.05, head_learning_rate=0.1)
    elif name == "wespe":
        config = WespeConfig(**common, dataset="demo", demo_dir=str(shared / "wespe_demo"),
                             patch_size=32, filters=8, residual_blocks=1,
                             content_layer="relu1_2", batch_size=4, demo_num_train_patches=24,
                             demo_num_test_patches=3, eval_max_images=1, identity_weight=1.0)
    elif name == "enhancegan":
        config = EnhanceganConfig(**common, **enhancegan_tiny(shared, model_dir))
    elif name == "pienet":
        config = PienetConfig(**common, **pienet_tiny(shared, model_dir))
    else:
        config = CanConfig(**common, dataset="demo", demo_dir=str(shared / "can_demo"),
                           demo_num_train=8, can_depth=5, can_width=8, train_height=48,
                           train_width=64, nima_weights=str(shared / "nima.weights.h5"),
                           backbone="mobilenet", nima_weight=0.1, learning_rate=1e-3,
                           batch_size=2, eval_max_images=2, eval_save_images=1,
                           can_identity_output=True)
    return dataclasses.replace(config, **overrides)


def enhancegan_tiny(shared, model_dir, stage="crop"):
    """EnhanceGAN's tiny settings (`tiny_config`): a stage run in `model_dir`, which is
    <root>/<stage> (the stages before it are found in <root>), a 24 + 24 photo demo set of
    48 px, 32 px training, a 2-layer tiny backbone (8 x 8 maps), batch 4 in 2 micro-batches."""
    return dict(stage=stage, stage_root=str(os.path.dirname(str(model_dir))), dataset="demo",
                demo_dir=str(shared / "enhancegan_demo"), demo_num_good=24, demo_num_bad=24,
                demo_num_test=2, demo_image_size=48, demo_test_size=48, image_size=32,
                resize_short=32, pairing_features="thumbnail", backbone="tiny",
                tiny_channels=8, tiny_depth=2, feature_network="none", batch_size=4,
                accumulation_steps=2, critic_warmup_steps=1, filter_width=4,
                eval_max_images=1, eval_save_images=1, eval_batch_size=8)


def pienet_tiny(shared, model_dir, stage="embedding"):
    """PieNet's tiny settings (`tiny_config`): a stage run in `model_dir`, which is
    <root>/<stage> (the enhancer finds the embedding stage in <root>/embedding), a demo set of
    8 + 2 photos of 32 px, 32 px training, decoder widths 8, batch 4."""
    return dict(stage=stage, stage_root=str(os.path.dirname(str(model_dir))), dataset="demo",
                demo_dir=str(shared / "pienet_demo"), demo_image_size=32, demo_num_train=8,
                demo_num_test=2, embedding_size=32, enhancer_size=32, batch_size=4,
                decoder_widths=(8, 8, 8), preference_channels=4, eval_max_images=1,
                new_user_photos=2, embedding_learning_rate=1e-3, enhancer_learning_rate=1e-3)
