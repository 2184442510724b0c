"""Earth Mover's Distance loss for ordered score distributions (NIMA paper equation 2)."""
from keras import ops


def emd_loss(y_true, y_pred, r=2):
    """Normalised EMD (1/N sum_k |CDF_p(k) - CDF_q(k)|^r)^(1/r), per example: shape (batch,).

    Both inputs are (batch, N) probability mass functions over ordered buckets (N = 10 for AVA).
    r = 2 is used for training (easier gradients), r = 1 for reporting (paper section 2.1.1).
    """
    y_true = ops.convert_to_tensor(y_true)
    y_pred = ops.cast(ops.convert_to_tensor(y_pred), y_true.dtype)
    cdf_gap = ops.abs(ops.cumsum(y_true, axis=-1) - ops.cumsum(y_pred, axis=-1))
    if r == 1:
        return ops.mean(cdf_gap, axis=-1)
    if r == 2:
        mean_square = ops.mean(ops.square(cdf_gap), axis=-1)
        # sqrt has an infinite gradient at 0 (prediction == target): use 0 there instead. The
        # test is `== 0`, not `> 0`, so that a NaN (where every comparison is false) stays NaN
        # and the trainer's non-finite check sees it, instead of being logged as a loss of 0.
        zero = mean_square == 0
        return ops.where(zero, 0.0, ops.sqrt(ops.where(zero, 1.0, mean_square)))
    return ops.power(ops.mean(ops.power(cdf_gap, r), axis=-1), 1.0 / r)
