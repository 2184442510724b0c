"""PieNet's triplet loss (Kim et al., "PieNet: Personalized Image Enhancement Network", ECCV
2020, section 3.1, equation 1):

    L_tri(f_k, f_p, f_n) = [D(f_k, f_p) - D(f_k, f_n) + alpha]_+,

D the squared Euclidean distance, alpha = 0.2 (section 4.1), f_k user k's preference vector,
f_p and f_n the embeddings of a positive and a negative image. Its gradients are equations 2-4
(2 (f_p - f_k), 2 (f_k - f_n), 2 (f_n - f_p) where the loss is positive); freezing f_p and f_n
(section 3.4's first scheme for a new user) is the caller's `stop_gradient`.
"""
from keras import ops

TRIPLET_MARGIN = 0.2  # alpha, section 4.1


def squared_distance(a, b):
    """D of equation 1: sum((a - b)^2) over the last axis, float32."""
    return ops.sum(ops.square(ops.cast(a, "float32") - ops.cast(b, "float32")), axis=-1)


def triplet_loss(preference, positive, negative, margin=TRIPLET_MARGIN):
    """Equation 1 per example: (batch, d) x 3 -> (batch,)."""
    return ops.relu(squared_distance(preference, positive)
                    - squared_distance(preference, negative) + margin)
