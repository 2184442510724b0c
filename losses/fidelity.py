"""The data-fidelity terms f of CAN + NIMA's loss (Talebi & Milanfar, "Learned Perceptual Image
Enhancement", section 2, equation 1):

    l(W) = f(x_r, c_W(x)) + gamma * q(c_W(x)),

with f an L2 (the paper's), L1 or Huber distance between the reference x_r and the output; q is
`losses.nima_loss`. Every function returns per-example float32 values, shape (batch,);
reduction happens once, in the train step.
"""
from keras import ops

from losses.reduction import per_example_mean

FIDELITY_LOSSES = ("l2", "l1", "huber")
HUBER_DELTA = 0.1  # Not fixed by the paper; pixel differences of [0, 1] images.


def l2_loss(reference, output):
    """Mean squared error per example, mean((x_r - c(x))^2) over pixels and channels (the paper's
    L2 fidelity term of equation 1, averaged as in Chen et al.'s code)."""
    return per_example_mean(ops.square(ops.cast(output, "float32") - reference))


def l1_loss(reference, output):
    """Mean absolute error per example (equation 1 with an L1 f)."""
    return per_example_mean(ops.abs(ops.cast(output, "float32") - reference))


def huber_loss(reference, output, delta=HUBER_DELTA):
    """Mean Huber loss per example: 0.5 e^2 where |e| <= delta, else delta (|e| - delta / 2)."""
    error = ops.abs(ops.cast(output, "float32") - reference)
    quadratic = ops.minimum(error, delta)
    return per_example_mean(0.5 * ops.square(quadratic) + delta * (error - quadratic))


def fidelity_loss(name, huber_delta=HUBER_DELTA):
    """The fidelity term f of equation 1 by name: "l2" (the paper's), "l1" or "huber"."""
    if name == "l2":
        return l2_loss
    if name == "l1":
        return l1_loss
    if name == "huber":
        return lambda reference, output: huber_loss(reference, output, delta=huber_delta)
    raise ValueError(f"Unknown fidelity loss {name!r}; choose one of {', '.join(FIDELITY_LOSSES)}")
