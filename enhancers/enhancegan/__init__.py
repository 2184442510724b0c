"""EnhanceGAN (Deng, Loy & Tang, "Aesthetic-Driven Image Enhancement by Adversarial Learning",
ACM MM 2018): the generator predicts the parameters of differentiable operators from a 224 x 224
view, and the operators enhance the photo at full size.

- `operators`: the piecewise colour enhancer (A/B stretch, L curve), the crop (spatial
  transformer at training, full-size box at inference), the parameter ranges;
- `pooling`: top-K (the release's) and whole-map softmax (the paper's) pooling of a head;
- `filters`: the deep-filtering enhancer (colour filters, their approximating CNNs, their
  weighted combination);
- `models`: backbones, the generator with its heads, the critic, weight clipping;
- `enhancer`: `PhotoEnhancer`, the generator and the operators on one photo of any size (the
  inference path that the export serves).

The colour space is `enhancers.lab`; the losses are `losses.wasserstein`.
"""
from enhancers.enhancegan.enhancer import PhotoEnhancer, network_view, parameter_record
from enhancers.enhancegan.filters import (FILTER_COLORS, FILTER_NAMES, apply_named_filters,
                                          build_filter_network, combine_filters, filter_weights,
                                          photo_filter)
from enhancers.enhancegan.models import (EnhanceGANCritic, EnhanceGANGenerator, build_resnet101,
                                         build_tiny_backbone, clip_weights, good_probability)
from enhancers.enhancegan.operators import (COLOR_PARAMETERS, IDENTITY_COLOR, RANGES, ab_stretch,
                                            color_parameters, crop_box, crop_parameters,
                                            enhance_batch, enhance_color, enhance_photo, l_curve,
                                            sample_crop)
from enhancers.enhancegan.pooling import pool, softmax_pool, top_k_pool

__all__ = [
    "COLOR_PARAMETERS", "EnhanceGANCritic", "EnhanceGANGenerator", "FILTER_COLORS",
    "FILTER_NAMES", "IDENTITY_COLOR", "PhotoEnhancer", "RANGES", "ab_stretch",
    "apply_named_filters", "build_filter_network", "build_resnet101", "build_tiny_backbone",
    "clip_weights", "color_parameters", "combine_filters", "crop_box", "crop_parameters",
    "enhance_batch", "enhance_color", "enhance_photo", "filter_weights", "good_probability",
    "l_curve", "network_view", "parameter_record", "photo_filter", "pool", "sample_crop",
    "softmax_pool", "top_k_pool",
]
