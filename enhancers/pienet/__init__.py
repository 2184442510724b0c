"""PieNet (Kim et al., "PieNet: Personalized Image Enhancement Network", ECCV 2020): preference
vectors in a metric-learned embedding space (section 3.1) and the enhancer that takes them
(sections 3.2-3.4). The ResNet-18 both use is `enhancers.resnet18`."""
from enhancers.pienet.preference import (PREFERENCE_NOISE_NORM, l2_normalize,
                                         perturb_preferences, random_directions)

__all__ = ["PREFERENCE_NOISE_NORM", "l2_normalize", "perturb_preferences", "random_directions"]
