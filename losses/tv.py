"""Total variation losses.

`total_variation_loss`: WESPE section 3.4, equation 5,

    L_tv = 1 / (C H W) || grad_x G(x) + grad_y G(x) ||

read, as DPED's reference code implements it, as the mean squared horizontal difference plus the
mean squared vertical difference of the image (each normalised by its own count of differences).

`edge_weighted_total_variation_loss`: PieNet section 3.3, equation 7,

    L_t(I, dI) = || W_x (x) grad_x(dI) ||_1 + || W_y (x) grad_y(dI) ||_1,
    W_x = exp(-|grad_x I|),  W_y = exp(-|grad_y I|),

(x) element-wise. Our reading of what the paper leaves open: the gradients are forward
differences between neighbouring pixels, per channel, so that each weight map has the shape of
the delta's gradient it multiplies (the input's channel c weights the delta's channel c; I in
[0, 1] RGB); ||.||_1 is taken as a mean, as the paper's colour loss ||.||_1 is "the mean absolute
error", each direction over its own count of differences, so that lambda_t = 0.01 (section 4.1)
means the same at every image size.
"""
from keras import ops


def _differences(images):
    """Forward differences per channel: (x[:, :, 1:] - x[:, :, :-1], x[:, 1:] - x[:, :-1])."""
    images = ops.cast(images, "float32")
    return (images[:, :, 1:, :] - images[:, :, :-1, :],
            images[:, 1:, :, :] - images[:, :-1, :, :])


def total_variation_loss(images):
    """Per example: mean((x[:, :, 1:] - x[:, :, :-1])^2) + mean((x[:, 1:] - x[:, :-1])^2)."""
    horizontal, vertical = _differences(images)
    return (ops.mean(ops.square(horizontal), axis=(1, 2, 3))
            + ops.mean(ops.square(vertical), axis=(1, 2, 3)))


def edge_weighted_total_variation_loss(images, deltas):
    """PieNet's equation 7 per example (module docstring): mean(exp(-|grad_x I|) |grad_x dI|)
    + mean(exp(-|grad_y I|) |grad_y dI|); `images` I and `deltas` dI (batch, h, w, c) ->
    (batch,). The weights carry no gradient to the input image."""
    image_x, image_y = _differences(ops.stop_gradient(images))
    delta_x, delta_y = _differences(deltas)
    return (ops.mean(ops.exp(-ops.abs(image_x)) * ops.abs(delta_x), axis=(1, 2, 3))
            + ops.mean(ops.exp(-ops.abs(image_y)) * ops.abs(delta_y), axis=(1, 2, 3)))
