"""`python -m train.wespe --flagfile=configs/wespe_<preset>.flags [--flag=value ...]`.

Trains WESPE (G, F, D_c, D_t) on DPED, on any two photo collections, or on the embedded demo
set, under tf.distribute; then evaluates (input vs G(x), side by side) and exports G as a
SavedModel. `--mode=eval` and `--mode=export` do only those steps.
"""
from train import runner
from train.wespe_task import WespeTask


def main(argv=None):
    return runner.main(WespeTask, argv)


if __name__ == "__main__":
    runner.cli(WespeTask)
