"""Aggregating a head's f x f candidate parameters into one vector per image (section 3.2.1).

A head's last channel is a score map; every other channel holds one parameter's candidates,
one per map position. Two ways to weigh the candidates:

- `top_k_pool` (the release's `TopK.lua` + `nn.SoftMax`, K = 3, the default): the K positions
  with the largest scores, a softmax over those K scores only, the weighted mean of their
  parameter vectors. Gradients reach the K chosen scores and parameter vectors only.
- `softmax_pool` (the paper's description: "an f x f softmax probability map"): a softmax over
  the whole map, the weighted mean of all f^2 parameter vectors.

Both return (pooled (batch, n), attention (batch, h, w)): attention holds each position's
weight (zero off the top K), summing to 1 per image -- the map the paper overlays on the photo
(Fig. 5).
"""
import tensorflow as tf

POOLINGS = ("top_k", "softmax")
TOP_K = 3


def _flatten(parameter_maps, score_map):
    parameter_maps = tf.convert_to_tensor(parameter_maps, tf.float32)
    score_map = tf.convert_to_tensor(score_map, tf.float32)
    shape = tf.shape(score_map)
    flat_parameters = tf.reshape(parameter_maps, [shape[0], shape[1] * shape[2], -1])
    flat_scores = tf.reshape(score_map, [shape[0], shape[1] * shape[2]])
    return flat_parameters, flat_scores, shape


def top_k_pool(parameter_maps, score_map, k=TOP_K):
    """parameter_maps (batch, h, w, n), score_map (batch, h, w) -> (pooled, attention); K is
    min(k, h w) on maps smaller than k positions."""
    flat_parameters, flat_scores, shape = _flatten(parameter_maps, score_map)
    k = tf.minimum(k, tf.shape(flat_scores)[1])
    top_scores, indices = tf.math.top_k(flat_scores, k=k, sorted=True)
    weights = tf.nn.softmax(top_scores, axis=-1)  # (batch, K)
    chosen = tf.gather(flat_parameters, indices, batch_dims=1)  # (batch, K, n)
    pooled = tf.reduce_sum(weights[..., None] * chosen, axis=1)
    spread = tf.one_hot(indices, tf.shape(flat_scores)[1]) * weights[..., None]
    attention = tf.reshape(tf.reduce_sum(spread, axis=1), shape[:3])
    return pooled, attention


def softmax_pool(parameter_maps, score_map):
    """The paper's whole-map softmax: (pooled, attention) as `top_k_pool`."""
    flat_parameters, flat_scores, shape = _flatten(parameter_maps, score_map)
    weights = tf.nn.softmax(flat_scores, axis=-1)
    pooled = tf.einsum("bp,bpn->bn", weights, flat_parameters)
    return pooled, tf.reshape(weights, shape[:3])


def pool(parameter_maps, score_map, pooling="top_k", k=TOP_K):
    """`top_k_pool` (pooling="top_k") or `softmax_pool` (pooling="softmax")."""
    if pooling == "top_k":
        return top_k_pool(parameter_maps, score_map, k)
    if pooling == "softmax":
        return softmax_pool(parameter_maps, score_map)
    raise ValueError(f"pooling must be one of {POOLINGS}, got {pooling!r}")
