"""`nima.demo_model()`: the NIMA that guides the enhancers when no real NIMA weights are given.

It is a MobileNet NIMA trained on the embedded demo set (datasets/demo.py), the same run as
`python -m train.nima --flagfile=configs/nima_demo.flags`. It is trained once into a cache
directory and loaded from there afterwards.
"""
import os

from absl import logging

CACHE_ENV = "AESTHETIC_ENHANCE_CACHE"


def default_cache_dir():
    root = os.environ.get(CACHE_ENV) or os.path.join(
        os.path.expanduser("~"), ".cache", "aesthetic_enhance"
    )
    return os.path.join(root, "nima_demo")


def demo_model(cache_dir=None, **config_overrides):
    """Returns the demo NIMA (a Keras model, images in [0, 1] -> (batch, 10) distribution).

    The first call trains it into `cache_dir` (default: $AESTHETIC_ENHANCE_CACHE/nima_demo or
    ~/.cache/aesthetic_enhance/nima_demo), a few minutes on a CPU; later calls load it.
    `config_overrides` change fields of the demo's NimaConfig (tests use them to shrink it).
    """
    from train import nima_task  # train imports nima: import lazily

    cache_dir = cache_dir or default_cache_dir()
    config = nima_task.demo_config(model_dir=cache_dir, **config_overrides)
    weights = os.path.join(cache_dir, nima_task.FINAL_WEIGHTS)
    if os.path.exists(weights):
        logging.info("Loading the demo NIMA from %s", weights)
    else:
        logging.info("No demo NIMA in %s yet: training it there (a few minutes on a CPU).", cache_dir)
        outcome = nima_task.run(config)
        logging.info("Demo NIMA trained: test SRCC %s", outcome.get("srcc"))
    return nima_task.restore_model(config)


DEMO_WEIGHTS = "demo"
DEMO_DESCRIPTION = ("demo NIMA (nima.demo_model(): a MobileNet trained on the embedded demo set, "
                    "not on AVA; give a NIMA weights file for a real one)")


def load_nima_model(weights, backbone):
    """The NIMA of a `--nima_weights` value and a line saying which it is: (model, description).

    `weights` is "demo" for `demo_model()` (logged as a warning: it is a stand-in for a NIMA
    trained on AVA; `backbone` is then unused) or a whole-NIMA weights file for `backbone`
    (`nima.build_nima`; errors name the file).
    """
    if weights == DEMO_WEIGHTS:
        logging.warning("Using the %s.", DEMO_DESCRIPTION)
        return demo_model(), DEMO_DESCRIPTION
    from nima.model import build_nima

    model = build_nima(backbone, weights=weights)
    description = f"NIMA({backbone}) from {weights}"
    logging.info("Using %s.", description)
    return model, description
