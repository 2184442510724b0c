"""Every numeric setting is checked at start-up with one line naming the flag (issue 15, item 4):
on the command line when absl parses, and when a config is built in Python."""
import dataclasses

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

