"""The one reduction the losses share: a per-example mean over every non-batch axis."""
import math

from keras import ops


def per_example_mean(values):
    """float32 mean of `values` over all axes but the first: (batch, ...) -> (batch,).

    An input with one value per example, (batch,) or (batch, 1, ...), is taken by a slice
    rather than a mean: the same value, and the very operations WESPE's (batch, 1)
    discriminator outputs always went through, so that its training stays bit for bit what it
    was (a mean over one value gives the same number, but another graph, which TensorFlow's
    graph rewrites fuse differently in the last bit).
    """
    values = ops.cast(values, "float32")
    per_example = ops.reshape(values, (ops.shape(values)[0], -1))
    if math.prod(values.shape[1:]) == 1:
        return per_example[:, 0]
    return ops.mean(per_example, axis=-1)
