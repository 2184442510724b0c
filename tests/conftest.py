import os
import sys

import pytest

# Quiet TensorFlow's C++ start-up chatter in test output.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@pytest.fixture(scope="session")
def shared(tmp_path_factory):
    """Demo sets and a random-weight MobileNet NIMA file (`tests.task_testing.tiny_config`),
    made once for the session."""
    import keras

    import nima

    root = tmp_path_factory.mktemp("shared")
    keras.utils.set_random_seed(0)
    nima.build_nima("mobilenet").save_weights(str(root / "nima.weights.h5"))
    return root


@pytest.fixture(autouse=True)
def absl_info_logs():
    """absl's INFO lines (progress, resumption, precision) reach caplog in every test, also after
    a test parsed absl's global flags (which sets their verbosity to WARNING)."""
    from absl import logging as absl_logging

    absl_logging.set_verbosity(absl_logging.INFO)
