"""WESPE's adversarial colour and texture losses (section 3.2-3.3, equations 3 and 4).

The discriminators D_c and D_t output the probability that a patch is a real target-domain
photo. The generator minimises -log D(G(x)) (the non-saturating "standard generator objective");
each discriminator minimises the cross-entropy of real target patches (label 1) against
enhanced ones (label 0). Probabilities are clipped to [1e-7, 1 - 1e-7], as Keras' binary
cross-entropy does, so that a saturated discriminator never gives log(0).
"""
from keras import ops

EPSILON = 1e-7


def _log(probability):
    return ops.log(ops.clip(ops.cast(probability, "float32"), EPSILON, 1.0 - EPSILON))


def _per_example(values):
    return ops.reshape(values, (ops.shape(values)[0], -1))[:, 0]


def generator_adversarial_loss(fake_probability):
    """-log D(G(x)) per example (equations 3 and 4); input (batch, 1) or (batch,)."""
    return _per_example(-_log(fake_probability))


def discriminator_loss(real_probability, fake_probability):
    """-log D(y) - log(1 - D(G(x))) per example: cross-entropy with labels 1 (real) and 0."""
    real = -_log(real_probability)
    fake = -_log(1.0 - ops.cast(fake_probability, "float32"))
    return _per_example(real + fake)


def discriminator_accuracy(real_probability, fake_probability):
    """Per example: the mean of [D(y) > 0.5] and [D(G(x)) < 0.5]."""
    real = ops.cast(ops.cast(real_probability, "float32") > 0.5, "float32")
    fake = ops.cast(ops.cast(fake_probability, "float32") < 0.5, "float32")
    return _per_example((real + fake) / 2.0)
