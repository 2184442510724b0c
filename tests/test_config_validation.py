"""Every numeric setting is checked at start-up with one line naming the flag (issue 15, item 4):
on the command line when absl parses, and when a config is built in Python."""
import dataclasses
import math
import re

import numpy as np
import pytest
from absl import flags

import nima

from tests.task_testing import tiny_config
from train import runner
from train.can_task import CanConfig
from train.config import ConfigError, setting_error
from train.flags import parse_config
from train.nima_task import NimaConfig, NimaTask
from train.wespe_task import WespeConfig

CONFIGS = (NimaConfig, WespeConfig, CanConfig)


@pytest.mark.parametrize("config_class", CONFIGS)
def test_every_default_passes_its_own_check(config_class):
    for field in dataclasses.fields(config_class):
        assert setting_error(field, field.default) is None, field.name


@pytest.mark.parametrize("flag, reason", [
    ("--train_steps=0", "must be at least 1"),
    ("--train_steps=-5", "must be at least 1"),
    ("--checkpoint_every=0", "must be at least 1"),
    ("--log_every=0", "must be at least 1"),
    ("--batch_size=0", "must be at least 1"),
    ("--crop_size=0", "must be at least 32"),
    ("--head_learning_rate=0", "must be above 0.0"),
    ("--head_learning_rate=nan", "must be a finite number"),
    ("--base_learning_rate=-1e-3", "must be at least 0.0"),
    ("--dropout=1.5", "must be at most 0.9"),
    ("--momentum=inf", "must be a finite number"),
    # Issue 15: numbers beyond their type went on to an OverflowError or a TF error.
    ("--train_steps=99999999999999999999", "must be at most 2147483647"),
    ("--batch_size=1e30", "invalid literal for int()"),
    ("--head_learning_rate=1e400", "must be a finite number"),
    ("--seed=-1", "must be at least 0"),
    ("--seed=4294967296", "must be at most 2147483647"),
    ("--crop_size=1099511627776", "must be at most 16384"),
    ("--demo_image_size=20000", "must be at most 16384"),
    ("--lr_decay_epochs=1e300", "must be at most 1000000.0"),
    ("--num_cpu_devices=100000", "must be at most 256"),
])
def test_command_line_rejects_absurd_numbers_naming_the_flag(flag, reason):
    with pytest.raises(flags.Error) as error:
        parse_config(NimaConfig, ["train.nima", "--model_dir=/tmp/unused", flag])
    name = flag.split("=")[0]
    assert f"{name}=" in str(error.value) and reason in str(error.value)


def test_a_config_built_in_python_is_checked_too():
    with pytest.raises(ConfigError, match=r"^--batch_size=0: must be at least 1$"):
        NimaConfig(model_dir="/tmp/unused", batch_size=0)
    with pytest.raises(ConfigError, match="--tv_weight=-1.0: must be at least 0.0"):
        WespeConfig(model_dir="/tmp/unused", tv_weight=-1.0)
    with pytest.raises(ConfigError, match="--learning_rate=nan: must be a finite number"):
        CanConfig(model_dir="/tmp/unused", learning_rate=float("nan"))


def test_batch_size_must_divide_over_the_replicas(shared, tmp_path, monkeypatch):
    class TwoReplicas:
        num_replicas_in_sync = 2

    monkeypatch.setattr(runner.strategies, "make_strategy", lambda *args: TwoReplicas())
    config = tiny_config("nima", shared, tmp_path, batch_size=3)
    with pytest.raises(ConfigError, match="--batch_size=3: must be divisible by the 2 replicas"):
        runner.train(NimaTask(config))


def test_base_learning_rate_zero_freezes_the_backbone(shared, tmp_path):
    """The natural way to freeze NIMA's backbone used to divide by zero (the head multiplier)."""
    task = NimaTask(tiny_config("nima", shared, tmp_path, base_learning_rate=0.0))
    before = task.build_models(training=False)["model"]
    models, _ = runner.train(task)
    backbone_before, head_before = ([v.numpy() for v in group]
                                    for group in nima.head_and_backbone_variables(before))
    backbone_after, head_after = ([v.numpy() for v in group]
                                  for group in nima.head_and_backbone_variables(models["model"]))
    assert all(np.array_equal(a, b) for a, b in zip(backbone_before, backbone_after))
    assert any(not np.array_equal(a, b) for a, b in zip(head_before, head_after))


def test_negative_zero_is_zero_and_negative_zero_above_zero_is_refused():
    config = parse_config(CanConfig, ["train.can", "--model_dir=/tmp/unused",
                                      "--learning_rate=-0.0"])
    assert config.learning_rate == 0.0 and math.copysign(1.0, config.learning_rate) == 1.0
    assert math.copysign(1.0, CanConfig(model_dir="/tmp/unused", nima_weight=-0.0).nima_weight) > 0
    with pytest.raises(flags.Error, match="--head_learning_rate=-0.0: must be above 0.0"):
        parse_config(NimaConfig, ["train.nima", "--model_dir=/tmp/unused",
                                  "--head_learning_rate=-0.0"])


@pytest.mark.parametrize("name", ["model_dir", "export_dir", "demo_dir"])
def test_a_directory_flag_naming_a_file_is_refused_at_start_up(tmp_path, name):
    """Issue 15: --export_dir naming a regular file failed after training, with a bare
    FileExistsError; now parsing (or building the config) refuses it, naming the flag."""
    afile = tmp_path / "afile"
    afile.write_text("keep me")
    for path, reason in ((afile, "is a file, not a directory"),
                         (afile / "run", f"cannot be created: {afile} is not a directory")):
        message = re.escape(f"--{name}={path}: {reason}")
        argv = ["train.wespe", f"--model_dir={tmp_path / 'run'}", f"--{name}={path}"]
        with pytest.raises(flags.Error, match=message):
            parse_config(WespeConfig, argv)
        settings = {"model_dir": str(tmp_path / "run"), name: str(path)}
        with pytest.raises(ConfigError, match=f"^{message}$"):
            WespeConfig(**settings)
    assert afile.read_text() == "keep me" and not (tmp_path / "run").exists()