"""Every training task through the one runner: the shared smoke test, reproducible weights,
every flagfile in configs/ and in-process entry points."""
import dataclasses
import glob
import os

import pytest

from tests.task_testing import parse, pienet_tiny, run_task_smoke_test, tiny_config
from train import can, nima as nima_entry, runner, wespe
from train.can_task import CanTask
from train.enhancegan_task import EnhanceganTask
from train.nima_task import NimaTask
from train.pienet_task import PienetConfig, PienetTask
from train.wespe_task import WespeConfig, WespeTask

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TASKS = {"nima": NimaTask, "wespe": WespeTask, "can": CanTask, "enhancegan": EnhanceganTask,
         "pienet": PienetTask}


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(TASKS))
def test_task_smoke(name, shared, tmp_path):
    run_task_smoke_test(TASKS[name], tiny_config(name, shared, tmp_path / "run"))


@pytest.mark.slow
def test_pienet_enhancer_stage_passes_the_smoke_test(shared, tmp_path):
    """PieNet's enhancer stage, reading the network and vectors of an embedding stage trained
    in the same root, with the export round trip (`test_task_smoke[pienet]` smoke-tests the
    embedding stage, which exports nothing)."""
    common = dict(seed=0, checkpoint_every=1, log_every=1, train_steps=2)
    configs = {stage: PienetConfig(model_dir=str(tmp_path / stage),
                                   export_dir=str(tmp_path / "export"), **common,
                                   **pienet_tiny(shared, tmp_path / stage, stage))
               for stage in ("embedding", "enhancer")}
    assert runner.run(PienetTask, dataclasses.replace(configs["embedding"], export_dir=None))[
        "step"] == 2
    run_task_smoke_test(PienetTask, configs["enhancer"])


@pytest.mark.parametrize("name", sorted(TASKS))
def test_fixed_seed_gives_the_same_weights_run_to_run(name, shared, tmp_path):
    """Training is reproducible: two runs with one seed end with identical weights (the
    refactor onto the runner was checked this way against the fingerprints of the code before
    it), and another seed gives other weights."""
    fingerprints = []
    for run, seed in (("a", 0), ("b", 0), ("c", 1)):
        config = tiny_config(name, shared, tmp_path / run, export_dir=None, seed=seed,
                             train_steps=3)
        models, result = runner.train(TASKS[name](config))
        assert result.step == 3
        fingerprints.append(runner.weights_fingerprint(models))
    assert fingerprints[0] == fingerprints[1]
    assert fingerprints[2] != fingerprints[0]


FLAGFILES = sorted(glob.glob(os.path.join(REPO, "configs", "*.flags")))


@pytest.mark.parametrize("path", FLAGFILES, ids=os.path.basename)
def test_every_flagfile_parses(path):
    system = os.path.basename(path).split("_")[0]
    config = parse(TASKS[system], f"--flagfile={path}", "--model_dir=x")
    assert isinstance(config, TASKS[system].config_class)
    assert config.model_dir == "x"  # flags after the flagfile win


def test_flags_carry_each_fields_default_help_and_choices():
    from absl import flags

    from train.flags import define_flags

    flag_values = flags.FlagValues()
    define_flags(WespeConfig, flag_values)
    for field in dataclasses.fields(WespeConfig):
        flag = flag_values[field.name]
        assert flag.default == field.default, field.name
        assert flag.help.endswith(field.metadata["help"]), field.name
    assert flag_values["batch_size"].default == 30  # WESPE's, not RunConfig's 64
    assert flag_values["dataset"].parser.enum_values == ["dped", "folders", "demo"]
    with pytest.raises(flags.IllegalFlagValueError):
        parse(WespeTask, "--model_dir=x", "--dataset=nope")
    with pytest.raises(flags.Error, match="model_dir"):
        parse(WespeTask)  # required
    with pytest.raises(flags.UnrecognizedFlagError):
        parse(CanTask, "--model_dir=x", "--no_such_flag=1")


def test_list_flags_become_typed_tuples():
    config = parse(CanTask, "--model_dir=x", "--can_dilations=1,2,4", "--experts=A,C",
                   "--compare_models=a=x", "--compare_models=b=y")
    assert config.can_dilations == (1, 2, 4) and config.experts == ("A", "C")
    assert config.compare_models == ("a=x", "b=y")
    assert parse(CanTask, "--model_dir=x").experts == ("C",)


def test_entry_points_run_in_process_one_after_another(shared, tmp_path, capsys, caplog):
    """Two entry points share a process (each parses into its own FlagValues): the CLI
    commands of the README, driven through main(argv)."""
    nima_outcome = nima_entry.main([
        "train.nima", f"--flagfile={REPO}/configs/nima_demo.flags",
        f"--model_dir={tmp_path / 'nima'}", "--export_dir=", f"--demo_dir={shared / 'nima_demo'}",
        "--demo_num_images=40", "--demo_image_size=48", "--crop_size=32", "--batch_size=8",
        "--train_steps=2", "--checkpoint_every=2", "--log_every=1", "--eval_batch_size=8"])
    can_outcome = can.main([
        "train.can", f"--flagfile={REPO}/configs/can_demo.flags",
        f"--model_dir={tmp_path / 'can'}", "--export_dir=", f"--demo_dir={shared / 'can_demo'}",
        f"--nima_weights={shared / 'nima.weights.h5'}", "--can_depth=5", "--can_width=8",
        "--train_height=48", "--train_width=64", "--demo_num_train=8", "--train_steps=1",
        "--eval_max_images=1", "--eval_save_images=0"])
    assert nima_outcome["step"] == 2 and can_outcome["step"] == 1
    printed = capsys.readouterr().out
    assert "Test SRCC" in printed and "CAN(L2+NIMA)" in printed  # headline, table
    assert "step 2/2" in caplog.text and "images/s" in caplog.text
    assert "export_path" not in nima_outcome  # --export_dir= turns the export off


def test_wespe_entry_point_keeps_the_papers_defaults():
    config = parse(WespeTask, "--model_dir=x")
    assert (config.batch_size, config.train_steps, config.patch_size) == (30, 20000, 100)
    assert wespe.main.__module__ == "train.wespe"


MIRRORED_SCRIPT = """
import json, pathlib, sys
from absl import logging
from train import strategies
logging.set_verbosity(logging.INFO)
strategies.split_cpu(2)  # before TensorFlow starts its devices: why this runs in a new process
from tests.task_testing import tiny_config
from tests.test_tasks import TASKS
from train import runner
name, shared, root = sys.argv[1], pathlib.Path(sys.argv[2]), pathlib.Path(sys.argv[3])
config = tiny_config(name, shared, root, strategy="mirrored", export_dir=None, batch_size=4)
print(json.dumps(runner.run(TASKS[name], config)["step"]))
"""


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(TASKS))
def test_task_trains_under_mirrored_strategy_on_two_logical_cpus(name, shared, tmp_path):
    """One process per task: the CPU is split into two devices before TensorFlow starts them,
    and two MirroredStrategy runs in one process would share collective-op keys."""
    import subprocess
    import sys

    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", PYTHONPATH=REPO)
    done = subprocess.run([sys.executable, "-c", MIRRORED_SCRIPT, name, str(shared),
                           str(tmp_path / "run")],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-4000:]
    assert "mirroring over 2 logical CPU devices" in done.stderr
    assert done.stdout.strip().splitlines()[-1] == "2"
