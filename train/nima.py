"""`python -m train.nima --flagfile=configs/nima_ava_<backbone>.flags [--flag=value ...]`.

Trains NIMA on AVA (or the embedded demo set) under tf.distribute, then evaluates on the test
split and exports a SavedModel; `--mode=eval` and `--mode=export` do only those steps.
"""
from train import runner
from train.nima_task import NimaTask


def main(argv=None):
    return runner.main(NimaTask, argv)


if __name__ == "__main__":
    runner.cli(NimaTask)
