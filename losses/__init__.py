"""Pure loss functions returning per-example values; reduction happens once, in the train step."""
from losses.adversarial import (discriminator_accuracy, modified_discriminator_loss,
                                modified_generator_loss, wasserstein_discriminator_loss,
                                wasserstein_generator_loss)
from losses.content import build_vgg19_features, content_loss
from losses.emd import emd_loss
from losses.tv import edge_weighted_total_variation_loss, total_variation_loss
from losses.triplet import TRIPLET_MARGIN, squared_distance, triplet_loss
from losses.fidelity import (FIDELITY_LOSSES, HUBER_DELTA, fidelity_loss, huber_loss, l1_loss,
                             l2_loss)
from losses.nima_loss import nima_loss
from losses.pienet import (PERCEPTUAL_WEIGHT, TV_WEIGHT, pienet_loss,
                           pienet_loss_terms)
from losses.wasserstein import (balance_term_gradients, clip_parameter_gradients,
                                enhancegan_critic_loss, enhancegan_generator_loss,
                                feature_regulariser, hinge_regulariser, normalise_gradient,
                                wasserstein_estimate, weighted_generator_loss)
