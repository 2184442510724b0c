"""Test-only: runs TF-Slim 1.1.0's `inception_v2` under TensorFlow 2.21 / Keras 3.

tf-slim 1.1.0 imports fine under TF 2.21 (its `tensorflow.python.keras` and
`tensorflow.python.layers` imports still resolve to TF's bundled legacy layers for conv2d,
separable_conv2d and pooling). Building the network hits exactly two breakages, and this module
works around both with the least magic found:

1. slim's `batch_norm`, under `inception_v2_arg_scope()` (updates_collections=UPDATE_OPS),
   builds `tensorflow.python.layers.normalization.BatchNormalization`, which TF 2.21 lazily
   imports from `tf_keras.legacy_tf_layers` -- absent unless the tf_keras package is installed,
   and even tf_keras 2.21 ships it as `tf_keras.src.legacy_tf_layers`. Fix: take slim's own arg
   scope and change only `updates_collections` to None. That sends batch_norm down slim's other,
   self-contained code path (`_fused_batch_norm`: the same beta / moving_mean /
   moving_variance variables, created by slim itself, and `tf.nn.fused_batch_norm`). With
   is_training=False both paths compute (x - moving_mean) / sqrt(moving_variance + eps) + beta;
   updates_collections only decides how moving-average updates run during training.
2. `tf_slim.layers.utils.constant_value` (used by batch_norm's `smart_cond`) tests
   `isinstance(x, ops.Tensor)`, an alias that TF 2.21 removed from
   `tensorflow.python.framework.ops` (the class now lives in `tensorflow.python.framework.tensor`).
   Fix: `slim_compat()` puts the alias back while slim code runs and removes it afterwards.

No extra package and no stub modules are needed: only tf-slim==1.1.0 (setup.py's test extra).
Slim code runs in graph mode inside `tf.Graph().as_default()`, never with eager execution
disabled globally; the tests run this module as a subprocess (`python -m tests.slim_compat
reference --out DIR`), so even the temporary alias never touches the pytest process.

The reference: slim's full `inception_v2` (base + Logits, 1001 classes, global_step) with
random weights drawn with He scaling and randomised batch-norm beta, moving_mean,
moving_variance and stem biases (so that batch norm and biases are really exercised and the
activations stay of order one through 60 layers), saved with `tf.compat.v1.train.Saver`, and
its Mixed_5c outputs on random images in [0, 1] with slim's preprocessing (x - 0.5) * 2.
"""
import argparse
import contextlib
import os

import numpy as np

REFERENCE_IMAGE_SHAPES = ((2, 224, 224, 3), (1, 333, 500, 3))
CHECKPOINT_NAME = "inception_v2.ckpt"
REFERENCE_NAME = "reference.npz"


@contextlib.contextmanager
def slim_compat():
    """Restores `tensorflow.python.framework.ops.Tensor` for tf-slim while the block runs."""
    from tensorflow.python.framework import ops, tensor

    added = not hasattr(ops, "Tensor")
    if added:
        ops.Tensor = tensor.Tensor
    try:
        yield
    finally:
        if added:
            del ops.Tensor


def inception_v2_arg_scope():
    """slim's `inception_v2_arg_scope()`, with batch_norm's updates_collections set to None.

    Every other setting (decay 0.9997, epsilon 0.001, no gamma, variance-scaling init, ReLU,
    L2 regulariser) comes from slim's own function, so nothing is re-typed here.
    """
    import tf_slim as slim
    from tf_slim.nets import inception_v2
    from tf_slim.ops.arg_scope import arg_scope_func_key

    scope = inception_v2.inception_v2_arg_scope()
    conv_args = dict(scope[arg_scope_func_key(slim.conv2d)])
    batch_norm_params = dict(conv_args["normalizer_params"])
    batch_norm_params["updates_collections"] = None
    conv_args["normalizer_params"] = batch_norm_params
    scope = dict(scope)
    scope[arg_scope_func_key(slim.conv2d)] = conv_args
    return scope


def build_slim_inception_v2(images, num_classes=1001):
    """slim's `inception_v2(images, is_training=False)`; returns (Mixed_5c, end_points).

    Call inside `with tf.Graph().as_default(), slim_compat():`. `images` are slim inputs,
    i.e. already preprocessed to [-1, 1].
    """
    import tf_slim as slim
    from tf_slim.nets import inception_v2

    with slim.arg_scope(inception_v2_arg_scope()):
        _, end_points = inception_v2.inception_v2(images, num_classes=num_classes, is_training=False)
    return end_points["Mixed_5c"], end_points


def _random_value(name, shape, rng):
    shape = tuple(int(d) for d in shape)
    leaf = name.rsplit("/", 1)[-1]
    if leaf in ("weights", "depthwise_weights", "pointwise_weights"):
        fan_in = int(np.prod(shape[:-1])) if leaf != "depthwise_weights" else shape[0] * shape[1]
        return rng.normal(0.0, np.sqrt(2.0 / fan_in), shape)
    if leaf in ("beta", "biases"):
        return rng.normal(0.0, 0.2, shape)
    if leaf == "moving_mean":
        return rng.normal(0.0, 0.2, shape)
    if leaf == "moving_variance":
        return rng.uniform(0.5, 2.0, shape)
    if leaf == "global_step":
        return np.asarray(12345)
    raise ValueError(f"No random value rule for {name}")


def make_reference(out_dir, seed=0):
    """Writes `<out_dir>/inception_v2.ckpt*` and `<out_dir>/reference.npz` (images, Mixed_5c)."""
    import tensorflow as tf

    rng = np.random.default_rng(seed)
    images = [rng.random(shape, dtype=np.float32) for shape in REFERENCE_IMAGE_SHAPES]
    with tf.Graph().as_default(), slim_compat():
        inputs = tf.compat.v1.placeholder(tf.float32, (None, None, None, 3), name="images")
        # slim's inception preprocessing: [0, 1] -> [-1, 1].
        mixed_5c, _ = build_slim_inception_v2(tf.multiply(tf.subtract(inputs, 0.5), 2.0))
        tf.compat.v1.train.get_or_create_global_step()  # as in a slim training checkpoint
        variables = tf.compat.v1.global_variables()
        placeholders, assigns = [], []
        for variable in variables:
            placeholder = tf.compat.v1.placeholder(variable.dtype.base_dtype, variable.shape)
            placeholders.append(placeholder)
            assigns.append(variable.assign(placeholder))
        saver = tf.compat.v1.train.Saver(variables)
        with tf.compat.v1.Session() as session:
            session.run(tf.compat.v1.global_variables_initializer())
            feed = {
                p: _random_value(v.op.name, v.shape, rng).astype(v.dtype.base_dtype.as_numpy_dtype)
                for p, v in zip(placeholders, variables)
            }
            session.run(assigns, feed)
            outputs = [session.run(mixed_5c, {inputs: batch}) for batch in images]
            saver.save(session, os.path.join(out_dir, CHECKPOINT_NAME), write_meta_graph=False)
            names = sorted(v.op.name for v in variables)
    np.savez(
        os.path.join(out_dir, REFERENCE_NAME),
        **{f"images_{i}": x for i, x in enumerate(images)},
        **{f"mixed_5c_{i}": y for i, y in enumerate(outputs)},
        variable_names=np.asarray(names),
    )
    return os.path.join(out_dir, CHECKPOINT_NAME)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("command", choices=["reference"])
    parser.add_argument("--out", required=True, help="directory for the checkpoint and outputs")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    os.makedirs(args.out, exist_ok=True)
    print(make_reference(args.out, args.seed))


if __name__ == "__main__":
    main()
