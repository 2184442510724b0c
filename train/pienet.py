"""`python -m train.pienet --flagfile=configs/pienet_<preset>.flags [--flag=value ...]`.

Trains PieNet in its two stages (`--stage`: embedding, enhancer, or all: both in turn, each in
<model_dir>/<stage>/) on MIT-Adobe FiveK's experts, folders of users' retouches or the embedded
demo users, under tf.distribute; then evaluates each stage (the preference vectors' nearest-user
accuracy; Table 1's PSNR/SSIM and mPSNR/mSSIM beside the mean-vector baseline) and exports PieNet
with a preference-vector input. `--mode=eval` and `--mode=export` do only those steps
(`train.pienet_task`).
"""
from train import runner
from train.pienet_task import PienetTask


def main(argv=None):
    return runner.main(PienetTask, argv)


if __name__ == "__main__":
    runner.cli(PienetTask)
