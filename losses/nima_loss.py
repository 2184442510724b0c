"""NIMA as a perceptual loss, and the data-fidelity terms it is paired with (Talebi & Milanfar,
"Learned Perceptual Image Enhancement", section 2, equation 1):

    l(W) = f(x_r, c_W(x)) + gamma * q(c_W(x)),    q(x) = 10 - NIMA(x),

with f an L2, L1 or Huber distance to the reference and NIMA the mean score of a frozen NIMA
model. Every function returns per-example values (reduction happens once, in the train step).

`nima_loss` works with any Keras model. For example, to train a model with L2 + NIMA through
`fit` (any Keras loss function takes (y_true, y_pred) and returns per-example values):

    import keras, nima
    from losses import l2_loss, nima_loss

    quality = nima_loss(nima.build_nima("inception_v2", weights="nima_inception_v2.weights.h5"))
    model.compile(optimizer=keras.optimizers.Adam(1e-4),
                  loss=lambda reference, output: l2_loss(reference, output)
                  + 1e-4 * quality(output))
    model.fit(inputs, references, batch_size=1)

In a custom train step, add `gamma * quality(outputs)` to the per-example fidelity term before
reducing; the NIMA weights never change, because `nima_loss` freezes the model and calls it in
inference mode.
"""
from keras import ops

from nima.model import NUM_BUCKETS, mean_score

FIDELITY_LOSSES = ("l2", "l1", "huber")
HUBER_DELTA = 0.1  # Not fixed by the paper; pixel differences of [0, 1] images.


def nima_loss(nima_model):
    """q(x) = 10 - NIMA(x) of equation 1: a function images -> per-example values (batch,).

    `nima_model` maps float RGB images in [0, 1] of any size to a (batch, 10) score
    distribution (`nima.build_nima`, `nima.demo_model`). It is frozen here
    (`trainable = False`) and always called with `training=False`, so dropout is off and batch
    normalisation uses its moving statistics, which no training step updates. Gradients flow
    through it to the images.
    """
    nima_model.trainable = False

    def quality_loss(images):
        distribution = nima_model(images, training=False)
        return float(NUM_BUCKETS) - mean_score(ops.cast(distribution, "float32"))

    quality_loss.nima_model = nima_model
    return quality_loss


def _per_example_mean(values):
    values = ops.cast(values, "float32")
    return ops.mean(ops.reshape(values, (ops.shape(values)[0], -1)), axis=-1)


def l2_loss(reference, output):
    """Mean squared error per example, mean((x_r - c(x))^2) over pixels and channels (the paper's
    L2 fidelity term, averaged as in Chen et al.'s code)."""
    return _per_example_mean(ops.square(ops.cast(output, "float32") - reference))


def l1_loss(reference, output):
    """Mean absolute error per example."""
    return _per_example_mean(ops.abs(ops.cast(output, "float32") - reference))


def huber_loss(reference, output, delta=HUBER_DELTA):
    """Mean Huber loss per example: 0.5 e^2 where |e| <= delta, else delta (|e| - delta / 2)."""
    error = ops.abs(ops.cast(output, "float32") - reference)
    quadratic = ops.minimum(error, delta)
    return _per_example_mean(0.5 * ops.square(quadratic) + delta * (error - quadratic))


def fidelity_loss(name, huber_delta=HUBER_DELTA):
    """The fidelity term f of equation 1 by name: "l2" (the paper's), "l1" or "huber"."""
    if name == "l2":
        return l2_loss
    if name == "l1":
        return l1_loss
    if name == "huber":
        return lambda reference, output: huber_loss(reference, output, delta=huber_delta)
    raise ValueError(f"Unknown fidelity loss {name!r}; choose one of {', '.join(FIDELITY_LOSSES)}")
