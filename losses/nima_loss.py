"""NIMA as a perceptual loss (Talebi & Milanfar, "Learned Perceptual Image Enhancement",
section 2, equation 1):

    l(W) = f(x_r, c_W(x)) + gamma * q(c_W(x)),    q(x) = 10 - NIMA(x),

with NIMA the mean score of a frozen NIMA model and f a fidelity term from `losses.fidelity`
(L2, L1 or Huber). `nima_loss` returns per-example values (reduction happens once, in the train
step).

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
