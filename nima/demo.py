"""`nima.demo_model()`: the NIMA that guides the enhancers when no real NIMA weights are given.

It is a MobileNet NIMA trained on the embedded demo set (datasets/demo.py): the run of
`python -m train.nima --flagfile=configs/nima_demo.flags` (`DEMO_SETTINGS` holds the same values;
a test keeps them equal). The first call has the trainer train it into a cache directory, in a
separate `python -m train.nima` process, so that `nima` never imports the trainer (which imports
`nima`); later calls load it from there.
"""
import os
import subprocess
import sys

from absl import logging

from nima.model import build_nima

CACHE_ENV = "AESTHETIC_ENHANCE_CACHE"
DEMO_WEIGHTS = "demo"
DEMO_WEIGHTS_FILE = "nima.weights.h5"  # train.nima's final weights
DEMO_DESCRIPTION = ("demo NIMA (nima.demo_model(): a MobileNet trained on the embedded demo set, "
                    "not on AVA; give a NIMA weights file for a real one)")
# The demo preset: a MobileNet NIMA trained from scratch on the embedded demo set in a few CPU
# minutes. Small images and large learning rates are for the demo only; the AVA presets use the
# paper's.
DEMO_SETTINGS = dict(
    backbone="mobilenet",
    dataset="demo",
    demo_num_images=1200,
    demo_image_size=128,
    augmentation="crop",
    crop_size=112,
    batch_size=32,
    base_learning_rate=0.05,
    head_learning_rate=0.1,
    lr_decay_epochs=10,
    train_steps=500,
    checkpoint_every=100,
    log_every=50,
)


def default_cache_dir():
    root = os.environ.get(CACHE_ENV) or os.path.join(
        os.path.expanduser("~"), ".cache", "aesthetic_enhance"
    )
    return os.path.join(root, "nima_demo")


def _flag(name, value):
    if isinstance(value, bool):
        return f"--{name}" if value else f"--no{name}"
    return f"--{name}={value}"


def train_demo_model(cache_dir, **config_overrides):
    """Runs `python -m train.nima` with the demo preset (and `config_overrides`) into
    `cache_dir`; its log goes to this process's stderr. RuntimeError if it fails."""
    settings = dict(DEMO_SETTINGS, model_dir=cache_dir,
                    export_dir=os.path.join(cache_dir, "export"), **config_overrides)
    command = [sys.executable, "-m", "train.nima",
               *(_flag(name, value) for name, value in settings.items() if value is not None)]
    logging.info("No demo NIMA in %s yet: training it there (a few minutes on a CPU): %s",
                 cache_dir, " ".join(command))
    done = subprocess.run(command, stdout=subprocess.DEVNULL)
    if done.returncode != 0:
        raise RuntimeError(f"Training the demo NIMA into {cache_dir} failed (exit code "
                           f"{done.returncode}); its log is above. Command: {' '.join(command)}")


def demo_model(cache_dir=None, **config_overrides):
    """Returns the demo NIMA (a Keras model, images in [0, 1] -> (batch, 10) distribution).

    The first call trains it into `cache_dir` (default: $AESTHETIC_ENHANCE_CACHE/nima_demo or
    ~/.cache/aesthetic_enhance/nima_demo), a few minutes on a CPU; later calls load it.
    `config_overrides` change settings of the demo preset (tests use them to shrink it).
    """
    cache_dir = cache_dir or default_cache_dir()
    weights = os.path.join(cache_dir, DEMO_WEIGHTS_FILE)
    if not os.path.exists(weights):
        train_demo_model(cache_dir, **config_overrides)
    logging.info("Loading the demo NIMA from %s", weights)
    return build_nima(DEMO_SETTINGS["backbone"], weights=weights)


def load_nima_model(weights, backbone):
    """The NIMA of a `--nima_weights` value and a line saying which it is: (model, description).

    `weights` is "demo" for `demo_model()` (logged as a warning: it is a stand-in for a NIMA
    trained on AVA; `backbone` is then unused) or a whole-NIMA weights file for `backbone`
    (`nima.build_nima`; errors name the file).
    """
    if weights == DEMO_WEIGHTS:
        logging.warning("Using the %s.", DEMO_DESCRIPTION)
        return demo_model(), DEMO_DESCRIPTION
    model = build_nima(backbone, weights=weights)
    description = f"NIMA({backbone}) from {weights}"
    logging.info("Using %s.", description)
    return model, description
