"""Adversarial losses, named after their family as TF-GAN names them.

Every function takes discriminator outputs of any rank -- (batch,), (batch, 1), or a patch
critic's (batch, h, w, 1) map -- and returns per-example float32 values of shape (batch,): a map
is averaged over all its non-batch axes, so every patch counts equally. Reduction over the batch
happens later, once, in the train step.

Modified (non-saturating) minimax, on probabilities: WESPE (section 3.2-3.3, equations 3-4)
=========================================================================================
The discriminators D_c and D_t output the probability that a patch is a real target-domain
photo. The generator minimises -log D(G(x)) (`modified_generator_loss`: Goodfellow's
non-saturating "modified" generator objective); each discriminator minimises the cross-entropy
of real target patches (label 1) against enhanced ones (label 0)
(`modified_discriminator_loss`). Probabilities are clipped to [1e-7, 1 - 1e-7], as Keras' binary
cross-entropy does, so that a saturated discriminator never gives log(0).

Wasserstein, on raw critic scores: EnhanceGAN (section 3.1 eq. 2, 3.2.4 eq. 7, 3.3 eq. 10)
========================================================================================
The critic f outputs an unbounded score (no sigmoid). With TF-GAN's convention a HIGHER score
means "more like the real / good photos": the critic maximises f(real) - f(fake), so it
minimises `wasserstein_discriminator_loss(real, fake)` = f(G(x)) - f(real), and the generator
minimises `wasserstein_generator_loss(fake)` = -f(G(x)).

EnhanceGAN's paper uses the opposite sign: its f_W is LOWER for better aesthetics ("lower f_W(.)
values", section 3.2.4), its generator minimises L_gan = E[f_W(I_output)] (eq. 7) and its critic
minimises L_D = E[f_W(I_good)] - E[f_W(I_output)] (eq. 10). Both map onto these functions with
the critic's sign flipped, f = -f_W:

    L_gan = wasserstein_generator_loss(-f_W(I_output))
    L_D   = wasserstein_discriminator_loss(-f_W(I_good), -f_W(I_output))

"good" photos are the real side, enhanced photos the fake side. `losses.wasserstein` states
these losses in the paper's own sign, on f_W directly (as `enhancers.enhancegan`'s critic
outputs it), together with the regularisers of equations 8 and 9 and the release's gradient
balancing: EnhanceGAN uses those. These losses add no Lipschitz constraint (weight clipping or a
gradient penalty belongs to the critic's update).
"""
from keras import ops

from losses.reduction import per_example_mean

EPSILON = 1e-7


def _log(probability):
    return ops.log(ops.clip(ops.cast(probability, "float32"), EPSILON, 1.0 - EPSILON))


def modified_generator_loss(fake_probability):
    """WESPE equations 3-4, the generator's side: -log D(G(x)) per example, averaged over a map."""
    return per_example_mean(-_log(fake_probability))


def modified_discriminator_loss(real_probability, fake_probability):
    """WESPE equations 3-4, the discriminator's side: -log D(y) - log(1 - D(G(x))) per example
    (binary cross-entropy with labels 1 for real and 0 for enhanced), each averaged over a map."""
    real = -_log(real_probability)
    fake = -_log(1.0 - ops.cast(fake_probability, "float32"))
    return per_example_mean(real + fake)


def discriminator_accuracy(real_probability, fake_probability):
    """Per example: the mean of [D(y) > 0.5] and [D(G(x)) < 0.5], each averaged over a map."""
    real = per_example_mean(ops.cast(real_probability, "float32") > 0.5)
    fake = per_example_mean(ops.cast(fake_probability, "float32") < 0.5)
    return (real + fake) / 2.0


def wasserstein_generator_loss(fake_score):
    """WGAN generator loss, -f(G(x)) per example (EnhanceGAN eq. 7 with f = -f_W; see above)."""
    return -per_example_mean(fake_score)


def wasserstein_discriminator_loss(real_score, fake_score):
    """WGAN critic loss, f(G(x)) - f(real) per example (EnhanceGAN eq. 10 with f = -f_W)."""
    return per_example_mean(fake_score) - per_example_mean(real_score)
