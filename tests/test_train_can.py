"""CAN's task (`train.can`): the train step of equation 1, presets, errors, the demo preset.
The shared smoke test (tests/test_tasks.py) trains, resumes, evaluates and exports."""
import dataclasses
import logging
import os

import keras
import numpy as np
import pytest
import tensorflow as tf

from losses import nima_loss
from tests.task_testing import assert_heldout_check, parse, run_preset, tiny_config
from tests.test_train_wespe import summary_tags
from train import runner
from train.can_task import CanConfig, CanTask

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.mark.slow
def test_run_writes_figure_6_summaries_and_an_export_that_enhances_any_size(shared, tmp_path,
                                                                           caplog):
    caplog.set_level(logging.INFO)
    config = tiny_config("can", shared, tmp_path / "run")
    outcome = runner.run(CanTask, config)
    assert outcome["step"] == 2 and "images/s" in caplog.text
    names = [row["name"] for row in outcome["eval"]["rows"]]
    assert names == ["input", "reference", "CAN(L2+NIMA)"]
    tags = summary_tags(str(tmp_path / "run" / "train"))
    for tag in ("loss", "l2_loss", "psnr", "nima_score", "grad_norm", "x | CAN(x) | reference"):
        assert tag in tags, (tag, sorted(tags))

    # The export runs on a photo of another size, smaller than the largest dilation, and its
    # output equals the trained CAN's.
    from tools.enhance import load_saved_model_enhancer

    photo = np.random.default_rng(0).random((37, 53, 3)).astype(np.float32)
    enhanced = load_saved_model_enhancer(outcome["export_path"])(photo)
    model = runner.restore(CanTask(config))["can"]
    expected = np.clip(model(photo[None]).numpy()[0], 0, 1)
    assert enhanced.shape == photo.shape
    np.testing.assert_allclose(enhanced, expected, atol=1e-5)


def step_of(config, quality):
    """(model, per-replica train step) of a CanTask with the NIMA term `quality` (or None)."""
    task = CanTask(dataclasses.replace(config, nima_weights=None))
    gamma = config.nima_weight
    task.config.nima_weight = 0.0  # built without a NIMA file, then given `quality`
    models, optimizers, _ = runner.build_training(task)
    task.config.nima_weight, task.quality = gamma, quality
    return models["can"], task.make_train_step(models, optimizers)


def tiny_nima():
    images = keras.Input((None, None, 3))
    pooled = keras.layers.GlobalAveragePooling2D()(images)
    model = keras.Model(images, keras.layers.Dense(10, activation="softmax")(pooled))
    rng = np.random.default_rng(1)
    model.layers[-1].set_weights([rng.normal(0, 3, (3, 10)).astype("float32"),
                                  rng.normal(0, 1, 10).astype("float32")])
    return model


@pytest.mark.parametrize("gamma", [0.0, 0.5])
def test_train_step_is_equation_1_and_trains_only_the_can(gamma):
    keras.utils.set_random_seed(2)
    nima_model = tiny_nima()
    nima_before = [np.array(w) for w in nima_model.weights]
    config = CanConfig(model_dir="unused", nima_weight=gamma, can_depth=4, can_width=6,
                       learning_rate=1e-2, batch_size=2)
    model, step = step_of(config, nima_loss(nima_model))
    step = tf.function(step)
    rng = np.random.default_rng(3)
    inputs = rng.random((2, 16, 20, 3)).astype("float32")
    references = np.clip(inputs * 1.3, 0, 1).astype("float32")

    outputs = model(inputs).numpy().astype(np.float64)
    l2 = ((outputs - references) ** 2).mean(axis=(1, 2, 3))
    logits = outputs.mean(axis=(1, 2)) @ nima_model.layers[-1].get_weights()[0].astype(
        np.float64) + nima_model.layers[-1].get_weights()[1]
    p = np.exp(logits - logits.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    score = p @ np.arange(1, 11)
    mse = ((np.clip(outputs, 0, 1) - references) ** 2).mean(axis=(1, 2, 3))
    can_before = [np.array(w) for w in model.weights]

    values = {k: float(v) for k, v in step((inputs, references)).items()}
    np.testing.assert_allclose(values["loss"], np.mean(l2 + gamma * (10 - score)), rtol=1e-4)
    np.testing.assert_allclose(values["l2_loss"], l2.mean(), rtol=1e-4)
    np.testing.assert_allclose(values["nima_score"], score.mean(), rtol=1e-4)
    np.testing.assert_allclose(values["psnr"], np.mean(-10 * np.log10(mse)), rtol=1e-4)
    assert all(not np.array_equal(a, np.array(b)) for a, b in zip(can_before, model.weights))
    for a, b in zip(nima_before, nima_model.weights):
        np.testing.assert_array_equal(a, np.array(b))


def test_nima_term_changes_the_update_and_gamma_zero_ignores_nima():
    rng = np.random.default_rng(4)
    batch = (rng.random((1, 16, 16, 3)).astype("float32"),
             rng.random((1, 16, 16, 3)).astype("float32"))
    updates = {}
    for gamma, with_nima in ((0.0, False), (0.0, True), (1.0, True)):
        keras.utils.set_random_seed(5)
        config = CanConfig(model_dir="unused", nima_weight=gamma, can_depth=3, can_width=4,
                           learning_rate=0.1)
        quality = nima_loss(tiny_nima())  # built every time: the same random draws
        model, step = step_of(config, quality if with_nima else None)
        step(batch)
        updates[gamma, with_nima] = np.concatenate([np.ravel(w) for w in model.weights])
    np.testing.assert_array_equal(updates[0.0, False], updates[0.0, True])
    assert not np.allclose(updates[0.0, True], updates[1.0, True])


def test_cosine_decay_falls_from_the_rate_to_zero_over_the_training_steps():
    config = CanConfig(model_dir="unused", learning_rate=1e-3, train_steps=100,
                       learning_rate_decay="cosine")
    optimizer, _ = CanTask(config).build_optimizers({"can": keras.Sequential()})["optimizer"]
    for step, expected in ((0, 1e-3), (50, 0.5e-3), (25, 0.5e-3 * (1 + np.cos(np.pi / 4))),
                           (100, 0.0)):
        optimizer.iterations.assign(step)
        np.testing.assert_allclose(float(optimizer.learning_rate), expected, atol=1e-9)
    constant, _ = CanTask(dataclasses.replace(config, learning_rate_decay="none")).build_optimizers(
        {"can": keras.Sequential()})["optimizer"]
    constant.iterations.assign(100)
    np.testing.assert_allclose(float(constant.learning_rate), 1e-3)


def test_fivek_presets_hold_the_paper_settings():
    l2_nima, l2, overridden, defaults = (parse(CanTask, *args) for args in (
        [f"--flagfile={REPO}/configs/can_fivek_l2_nima.flags", "--model_dir=x"],
        [f"--flagfile={REPO}/configs/can_fivek_l2.flags", "--model_dir=x"],
        [f"--flagfile={REPO}/configs/can_fivek_l2_nima.flags", "--model_dir=x",
         "--nima_weights=n.h5", "--backbone=vgg16", "--experts=A,C"],
        ["--model_dir=x"]))
    for config in (l2_nima, l2, defaults):
        assert (config.learning_rate, config.batch_size, config.train_steps) == (1e-4, 1, 5000000)
        assert (config.train_height, config.train_width, config.fidelity) == (480, 640, "l2")
        assert (config.can_depth, config.can_width, config.can_padding) == (10, 32, "symmetric")
        assert not config.can_adaptive_batch_norm and not config.can_identity_output
        assert config.learning_rate_decay == "none"
        assert config.dataset == "fivek" and config.backbone == "inception_v2"
    assert l2_nima.nima_weight == 1e-4 and defaults.nima_weight == 1e-4
    assert l2.nima_weight == 0 and l2.model_name() == "CAN(L2)"
    assert l2_nima.model_name() == "CAN(L2+NIMA)"
    assert (overridden.nima_weights, overridden.backbone) == ("n.h5", "vgg16")
    assert list(overridden.experts) == ["A", "C"]


def test_chen_et_al_configuration_through_flags(tmp_path):
    from enhancers import can
    from train.can_task import build_model

    config = parse(CanTask, "--model_dir=x", "--can_width=24", "--can_padding=zero",
                   "--can_dilations=1,2,4,8,16,32,64,1", "--can_depth=9",
                   "--can_adaptive_batch_norm")
    model = build_model(config)
    reference = can.build_can(**can.CHEN_ET_AL)
    assert model.count_params() == reference.count_params()
    assert [layer.__class__ for layer in model.layers] == [
        layer.__class__ for layer in reference.layers]


def test_errors_name_the_missing_flag(tmp_path):
    from train import can_task

    with pytest.raises(ValueError, match="--fivek_dir"):
        can_task.load_pairs(can_task.CanConfig(model_dir=str(tmp_path)))
    with pytest.raises(ValueError, match="--input_dir and --reference_dir"):
        can_task.load_pairs(can_task.CanConfig(model_dir=str(tmp_path), dataset="folders"))
    with pytest.raises(ValueError, match="--nima_weights"):
        can_task.load_nima(can_task.CanConfig(model_dir=str(tmp_path)))
    assert can_task.load_nima(can_task.CanConfig(model_dir=str(tmp_path), nima_weight=0)) == (
        None, None)
    with pytest.raises(FileNotFoundError, match="No trained CAN"):
        runner.restore(CanTask(can_task.CanConfig(model_dir=str(tmp_path))))


@pytest.mark.long_demo
def test_demo_preset_learns_the_reference_operator(tmp_path):
    """configs/can_demo.flags exactly (about seven CPU minutes, plus the demo NIMA's training if
    it is not cached): the CAN's outputs must be much closer to the operator's references than
    the inputs are, on the three held-out photos at full size, and its export must pass the
    held-out real-photo check (tools.heldout) at full size: under-exposed photos come closer to
    their originals, clean ones keep their colours and highlights, no frame, no texture."""
    from tools import enhance

    _, rows = run_preset(CanTask, "can_demo", tmp_path)
    assert rows["CAN(L2+NIMA)"]["psnr"] > rows["input"]["psnr"] + 5.0, rows
    assert rows["CAN(L2+NIMA)"]["ssim"] > rows["input"]["ssim"], rows
    assert_heldout_check("CAN demo", enhance.load_saved_model_enhancer(
        str(tmp_path / "export")), "can")


def test_evaluation_is_skipped_without_test_pairs(tmp_path):
    from datasets import can_demo
    from train import can_task

    demo = can_demo.build_can_demo(str(tmp_path / "demo"), num_train=2, train_size=(32, 32))
    everything = tmp_path / "all.txt"
    everything.write_text("\n".join(can_demo.train_stems(2) + list(can_demo.TEST_STEMS)))
    config = can_task.CanConfig(model_dir=str(tmp_path / "run"), dataset="folders",
                                input_dir=demo.input_dir, reference_dir=demo.reference_dir,
                                train_list=str(everything), nima_weight=0)
    task = CanTask(config)
    assert runner.evaluate(task, task.build_models(training=False)) is None
    assert not (tmp_path / "run" / "eval.json").exists()
