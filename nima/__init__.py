"""NIMA: neural image assessment (Talebi & Milanfar), the aesthetic models every enhancer uses."""
from nima.backbones import (BACKBONES, KERAS_WEIGHT_FILES, MIN_INPUT_SIDE, build_backbone,
                            count_trainable_params)
from nima.model import (
    NUM_BUCKETS,
    SCORING_MAX_PIXELS,
    build_nima,
    downscale_for_scoring,
    head_and_backbone_variables,
    load_nima_weights,
    mean_score,
    min_input_side,
    scoring_size,
    std_score,
)
from nima.demo import DEMO_WEIGHTS, demo_model, load_nima_model
