"""Total variation loss (WESPE section 3.4, equation 5).

    L_tv = 1 / (C H W) || grad_x G(x) + grad_y G(x) ||

read, as DPED's reference code implements it, as the mean squared horizontal difference plus the
mean squared vertical difference of the image (each normalised by its own count of differences).
"""
from keras import ops


def total_variation_loss(images):
    """Per example: mean((x[:, :, 1:] - x[:, :, :-1])^2) + mean((x[:, 1:] - x[:, :-1])^2)."""
    images = ops.cast(images, "float32")
    horizontal = images[:, :, 1:, :] - images[:, :, :-1, :]
    vertical = images[:, 1:, :, :] - images[:, :-1, :, :]
    return (ops.mean(ops.square(horizontal), axis=(1, 2, 3))
            + ops.mean(ops.square(vertical), axis=(1, 2, 3)))
