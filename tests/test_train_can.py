"""`python -m train.can` end to end on a tiny demo set, the train step of equation 1, presets."""
import json
import os
import subprocess
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

import nima
from tests.test_train_nima import last_json
from tests.test_train_wespe import summary_tags

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# Tiny sizes: a 5-layer, 8-map CAN on 48x64 pairs of a 12-pair demo set.
TINY = ["--can_depth=5", "--can_width=8", "--train_height=48", "--train_width=64",
        "--demo_num_train=12", "--train_steps=2", "--checkpoint_every=1", "--log_every=1",
        "--eval_max_images=2", "--eval_save_images=1"]


def run_module(module, *args, timeout=600):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", PYTHONPATH=REPO)
    return subprocess.run([sys.executable, "-m", module, *args], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=timeout)


def write_nima_weights(path):
    """A random-weight MobileNet NIMA (no AVA weights here), saved as train.nima saves one."""
    keras.utils.set_random_seed(0)
    model = nima.build_nima("mobilenet")
    model.save_weights(str(path))
    return str(path)


@pytest.mark.slow
def test_demo_cli_trains_resumes_evaluates_exports_and_enhances(tmp_path):
    model_dir, export_dir = tmp_path / "run", tmp_path / "export"
    weights = write_nima_weights(tmp_path / "nima.weights.h5")
    common = ["--flagfile=configs/can_demo.flags", f"--model_dir={model_dir}",
              f"--demo_dir={tmp_path / 'demo'}", f"--nima_weights={weights}",
              "--backbone=mobilenet", *TINY]
    first = run_module("train.can", *common, f"--export_dir={export_dir}", "--strategy=mirrored",
                       "--num_cpu_devices=2")
    assert first.returncode == 0, first.stderr[-4000:]
    outcome = last_json(first.stdout)
    assert outcome["step"] == 2 and "images/s" in first.stderr
    rows = outcome["eval"]
    assert list(rows) == ["input", "reference", "CAN(L2+NIMA)"]
    for name in ("input", "CAN(L2+NIMA)"):
        assert np.isfinite(rows[name]["psnr"]) and np.isfinite(rows[name]["ssim"])
    for name in rows:
        assert 1.0 <= rows[name]["nima_mean"] <= 10.0 and rows[name]["nima_std"] >= 0
    results = json.loads((model_dir / "eval" / "results.json").read_text())
    assert results["system"] == "can" and results["num_images"] == 2
    assert {row["name"]: row["metrics"] for row in results["rows"]} == rows
    assert (model_dir / "eval" / "nima_box_plot.png").exists()
    exported_weights = tmp_path / "exported.weights.h5"  # the resumed run replaces the file
    exported_weights.write_bytes((model_dir / "can.weights.h5").read_bytes())
    tags = summary_tags(str(model_dir / "train"))
    for tag in ("loss", "l2_loss", "psnr", "nima_score", "grad_norm", "x | CAN(x) | reference"):
        assert tag in tags, (tag, sorted(tags))

    # The same command with more steps resumes from step 2.
    second = run_module("train.can", *common, "--train_steps=3")
    assert second.returncode == 0, second.stderr[-4000:]
    assert "at step 2" in second.stderr and last_json(second.stdout)["step"] == 3

    # An existing export version is never overwritten.
    again = run_module("train.can", *common, "--mode=export", f"--export_dir={export_dir}",
                       "--export_version=1")
    assert again.returncode != 0 and "refusing to overwrite" in again.stderr

    # tools.enhance runs the export on a photo of another size, smaller than the largest
    # dilation, and its output equals the trained CAN's at step 2.
    photo = np.random.default_rng(0).integers(0, 256, (37, 53, 3), dtype=np.uint8)
    Image.fromarray(photo).save(tmp_path / "photo.png")
    enhanced = run_module("tools.enhance", f"--saved_model={export_dir}",
                          f"--output_dir={tmp_path / 'out'}", str(tmp_path / "photo.png"))
    assert enhanced.returncode == 0, enhanced.stderr[-4000:]
    output = np.asarray(Image.open(tmp_path / "out" / "photo.png"))
    from enhancers import can

    model = can.build_can(depth=5, width=8, identity_output=True)
    model.load_weights(str(exported_weights))
    expected = np.clip(model(photo[None].astype(np.float32) / 255.0).numpy()[0], 0, 1)
    assert output.shape == photo.shape
    assert np.abs(output.astype(np.float64) - np.round(expected * 255)).max() <= 1


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
    from enhancers import can
    from losses import nima_loss
    from train.can_task import CanConfig, make_train_step

    keras.utils.set_random_seed(2)
    model = can.build_can(depth=4, width=6)
    nima_model = tiny_nima()
    nima_before = [np.array(w) for w in nima_model.weights]
    optimizer = keras.optimizers.Adam(1e-2)
    optimizer.build(model.trainable_weights)
    config = CanConfig(model_dir="unused", nima_weight=gamma)
    step = tf.function(make_train_step(model, optimizer, config, 2, nima_loss(nima_model)))
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
    from enhancers import can
    from losses import nima_loss
    from train.can_task import CanConfig, make_train_step

    rng = np.random.default_rng(4)
    batch = (rng.random((1, 16, 16, 3)).astype("float32"),
             rng.random((1, 16, 16, 3)).astype("float32"))
    updates = {}
    for gamma, with_nima in ((0.0, False), (0.0, True), (1.0, True)):
        keras.utils.set_random_seed(5)
        model = can.build_can(depth=3, width=4)
        optimizer = keras.optimizers.SGD(0.1)
        config = CanConfig(model_dir="unused", nima_weight=gamma)
        quality = nima_loss(tiny_nima()) if with_nima else None
        make_train_step(model, optimizer, config, 1, quality)(batch)
        updates[gamma, with_nima] = np.concatenate([np.ravel(w) for w in model.weights])
    np.testing.assert_array_equal(updates[0.0, False], updates[0.0, True])
    assert not np.allclose(updates[0.0, True], updates[1.0, True])


def parse_configs(*arg_lists):
    """CanConfigs from command lines, parsed in a fresh process (each train.<system> defines its
    flags on absl's global FLAGS, so two entry points never share a process)."""
    code = "\n".join([
        "import dataclasses, json, sys",
        "from absl import flags",
        "from train import can",
        "configs = []",
        "for args in json.loads(sys.argv[1]):",
        "    flags.FLAGS.unparse_flags()",
        "    flags.FLAGS(['train.can', *args])",
        "    configs.append(dataclasses.asdict(can.config_from_flags()))",
        "print(json.dumps(configs))",
    ])
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", PYTHONPATH=REPO)
    done = subprocess.run([sys.executable, "-c", code, json.dumps(arg_lists)], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-4000:]
    from train.can_task import CanConfig

    return [CanConfig(**config) for config in json.loads(done.stdout.strip().splitlines()[-1])]


def test_fivek_presets_hold_the_paper_settings():
    l2_nima, l2, overridden, defaults = parse_configs(
        [f"--flagfile={REPO}/configs/can_fivek_l2_nima.flags", "--model_dir=x"],
        [f"--flagfile={REPO}/configs/can_fivek_l2.flags", "--model_dir=x"],
        [f"--flagfile={REPO}/configs/can_fivek_l2_nima.flags", "--model_dir=x",
         "--nima_weights=n.h5", "--backbone=vgg16", "--experts=A,C"],
        ["--model_dir=x"])
    for config in (l2_nima, l2, defaults):
        assert (config.learning_rate, config.batch_size, config.train_steps) == (1e-4, 1, 5000000)
        assert (config.train_height, config.train_width, config.fidelity) == (480, 640, "l2")
        assert (config.can_depth, config.can_width, config.can_padding) == (10, 32, "symmetric")
        assert not config.can_adaptive_batch_norm and not config.can_identity_output
        assert config.dataset == "fivek" and config.backbone == "inception_v2"
    assert l2_nima.nima_weight == 1e-4 and defaults.nima_weight == 1e-4
    assert l2.nima_weight == 0 and l2.model_name() == "CAN(L2)"
    assert l2_nima.model_name() == "CAN(L2+NIMA)"
    assert (overridden.nima_weights, overridden.backbone) == ("n.h5", "vgg16")
    assert list(overridden.experts) == ["A", "C"]


def test_chen_et_al_configuration_through_flags(tmp_path):
    from enhancers import can
    from train.can_task import build_model

    (config,) = parse_configs(["--model_dir=x", "--can_width=24", "--can_padding=zero",
                               "--can_dilations=1,2,4,8,16,32,64,1", "--can_depth=9",
                               "--can_adaptive_batch_norm"])
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
        can_task.restore_model(can_task.CanConfig(model_dir=str(tmp_path)))


@pytest.mark.long_demo
def test_demo_preset_learns_the_reference_operator(tmp_path):
    """configs/can_demo.flags exactly (about four CPU minutes, plus the demo NIMA's training if
    it is not cached): the CAN's outputs must be much closer to the operator's references than
    the inputs are, on the three held-out photos at full size."""
    done = run_module("train.can", "--flagfile=configs/can_demo.flags",
                      f"--model_dir={tmp_path / 'run'}", f"--export_dir={tmp_path / 'export'}",
                      f"--demo_dir={tmp_path / 'demo'}", timeout=1800)
    assert done.returncode == 0, done.stderr[-4000:]
    rows = last_json(done.stdout)["eval"]
    assert rows["CAN(L2+NIMA)"]["psnr"] > rows["input"]["psnr"] + 5.0, rows
    assert rows["CAN(L2+NIMA)"]["ssim"] > rows["input"]["ssim"], rows
    assert (tmp_path / "export" / "1" / "saved_model.pb").exists()


def test_evaluation_is_skipped_without_test_pairs(tmp_path):
    from datasets import can_demo
    from train import can_task

    demo = can_demo.build_can_demo(str(tmp_path / "demo"), num_train=2, train_size=(32, 32))
    everything = tmp_path / "all.txt"
    everything.write_text("\n".join(can_demo.train_stems(2) + list(can_demo.TEST_STEMS)))
    config = can_task.CanConfig(model_dir=str(tmp_path / "run"), dataset="folders",
                                input_dir=demo.input_dir, reference_dir=demo.reference_dir,
                                train_list=str(everything), nima_weight=0)
    assert can_task.evaluate(config) is None and can_task.summary(None) is None
