"""`python -m train.enhancegan --flagfile=configs/enhancegan_<preset>.flags [--flag=value ...]`.

Trains EnhanceGAN in the release's stages (`--stage`: filter_fit, critic, crop, color, filters,
or all of them in turn; each in <model_dir>/<stage>/) on CUHK-PQ, AVA or the embedded demo set,
under tf.distribute; then evaluates each stage (the critic's balanced accuracy, the filter CNNs'
fidelity, the enhancer's Tables 1-3) and exports the enhancer as a SavedModel.
`--mode=eval` and `--mode=export` do only those steps (`train.enhancegan_task`).
"""
from train import runner
from train.enhancegan_task import EnhanceganTask


def main(argv=None):
    return runner.main(EnhanceganTask, argv)


if __name__ == "__main__":
    runner.cli(EnhanceganTask)
