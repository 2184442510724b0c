"""The one reduction the losses share: a per-example mean over every non-batch axis."""
from keras import ops


def per_example_mean(values):
    """float32 mean of `values` over all axes but the first: (batch, ...) -> (batch,).

    A (batch,) or (batch, 1) input comes back unchanged in value (the mean of one number is that
    number, bit for bit), so a scalar-per-example output and a patch map share one code path.
    """
    values = ops.cast(values, "float32")
    return ops.mean(ops.reshape(values, (ops.shape(values)[0], -1)), axis=-1)
