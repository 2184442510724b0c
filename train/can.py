"""`python -m train.can --flagfile=configs/can_<preset>.flags [--flag=value ...]`.

Trains a CAN with the L2 + NIMA loss of Talebi & Milanfar (equation 1) on MIT-Adobe FiveK, on
any folder of inputs and an operator's references, or on the embedded demo set, under
tf.distribute; then evaluates on the test pairs at full size (PSNR, SSIM, NIMA scores as in
Figure 6) and exports the CAN as a SavedModel. `--mode=eval` and `--mode=export` do only those
steps.
"""
from train import runner
from train.can_task import CanTask


def main(argv=None):
    return runner.main(CanTask, argv)


if __name__ == "__main__":
    runner.cli(CanTask)
