"""PieNet (Kim et al., "PieNet: Personalized Image Enhancement Network", ECCV 2020): preference
vectors in a metric-learned embedding space (section 3.1) and the enhancer that takes them
(sections 3.2-3.4). The ResNet-18 both use is `enhancers.resnet18`."""
from enhancers.pienet.embedding import (EMBEDDING_DIM, EMBEDDING_SIZE, L2Normalization,
                                        PreferenceVectors, RandomUnitVectors, build_embedding)
from enhancers.pienet.network import ResizeLike, TileLike, build_pienet, enhance
from enhancers.pienet.personalize import (PREFERENCE_FORMAT, embed_photos, load_preference,
                                          preference_by_triplets, preference_from_photos,
                                          save_preference, triplet_preference)
from enhancers.pienet.preference import (PREFERENCE_NOISE_NORM, l2_normalize,
                                         perturb_preferences, random_directions)

__all__ = ["EMBEDDING_DIM", "EMBEDDING_SIZE", "L2Normalization", "PREFERENCE_FORMAT",
           "PREFERENCE_NOISE_NORM", "PreferenceVectors", "RandomUnitVectors", "ResizeLike",
           "TileLike", "build_embedding", "build_pienet", "embed_photos", "enhance",
           "l2_normalize", "load_preference", "perturb_preferences", "preference_by_triplets",
           "preference_from_photos", "random_directions", "save_preference",
           "triplet_preference"]
