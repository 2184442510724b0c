"""PieNet's training loss (Kim et al., ECCV 2020, section 3.3, equation 6):

    L(I, dI, I~, I*) = L_c(I~, I*) + lambda_p L_p(I~, I*) + lambda_t L_t(I, dI),

I~ = I + dI (equation 5), lambda_p = 0.4 and lambda_t = 0.01 (section 4.1).

- L_c, the colour loss: "the mean absolute error" between I~ and I*, per example over h, w, c.
- L_p, the perceptual loss: ||f^ - f*||_1 between the embeddings (section 3.1's network, frozen)
  of I~ and of I*. The paper writes ||.||_1 as it does for L_c, "the mean absolute error"; our
  reading, as for the edge-weighted TV (`losses.tv`), is a mean over the 512 dimensions
  (`perceptual_reduction="sum"` gives the plain L1 norm). f* carries no gradient.
- L_t, the edge-weighted total variation of dI (equation 7): `edge_weighted_total_variation_loss`.

No clipping: the loss sees I + dI exactly. The embedding is any callable images -> (b, dim), e.g.
`build_embedding()` with trainable=False, called by the caller's closure with training=False; the
trainer decides whether to resize images to the embedding's 256 x 256 first.
"""
from keras import ops

from losses.tv import edge_weighted_total_variation_loss

PERCEPTUAL_WEIGHT = 0.4  # lambda_p, section 4.1
TV_WEIGHT = 0.01  # lambda_t, section 4.1
PERCEPTUAL_REDUCTIONS = ("mean", "sum")


def pienet_loss_terms(images, deltas, targets, embedding, perceptual_reduction="mean"):
    """The three terms of equation 6 per example: {"color", "perceptual", "tv"}, each (batch,).

    Args:
      images: I, the inputs (b, h, w, 3); deltas: dI, PieNet's delta images; targets: I*.
      embedding: callable images -> (b, dim) features (section 3.1's network).
      perceptual_reduction: "mean" (ours, module docstring) or "sum" over the embedding axis.
    """
    if perceptual_reduction not in PERCEPTUAL_REDUCTIONS:
        raise ValueError(f"perceptual_reduction must be one of {PERCEPTUAL_REDUCTIONS}, got "
                         f"{perceptual_reduction!r}")
    images = ops.cast(images, "float32")
    deltas = ops.cast(deltas, "float32")
    targets = ops.cast(targets, "float32")
    enhanced = images + deltas
    color = ops.mean(ops.abs(enhanced - targets), axis=(1, 2, 3))
    difference = ops.abs(ops.cast(embedding(enhanced), "float32")
                         - ops.stop_gradient(ops.cast(embedding(targets), "float32")))
    reduce = ops.mean if perceptual_reduction == "mean" else ops.sum
    return {"color": color, "perceptual": reduce(difference, axis=-1),
            "tv": edge_weighted_total_variation_loss(images, deltas)}


def pienet_loss(images, deltas, targets, embedding, perceptual_weight=PERCEPTUAL_WEIGHT,
                tv_weight=TV_WEIGHT, perceptual_reduction="mean"):
    """Equation 6 per example, (batch,): color + perceptual_weight * perceptual + tv_weight * tv
    (`pienet_loss_terms`)."""
    terms = pienet_loss_terms(images, deltas, targets, embedding, perceptual_reduction)
    return terms["color"] + perceptual_weight * terms["perceptual"] + tv_weight * terms["tv"]
