"""The leaky ReLU layer of WESPE's discriminators and the CAN, with a gradient that TensorFlow's
graph optimiser can fuse.

Why: `tf.nn.leaky_relu`'s registered gradient, `LeakyReluGrad(dy, x)`, reads the activation's
input x, the output of Conv2D + BiasAdd. In a training step on a CPU with oneDNN, grappler's
remapper fuses Conv2D + BiasAdd into a `_FusedConv2D` named after the BiasAdd, then fuses that
node with the LeakyRelu too (its oneDNN "contraction + activation" pattern), without checking
that `LeakyReluGrad` still reads it. The mutation fails, and every WESPE and CAN run logged
`E... meta_optimizer.cc ... remapper failed: INVALID_ARGUMENT: Mutation::Apply error: fanout
'.../LeakyReluGrad' exist for missing node '.../BiasAdd'`. Reading the output y
instead, as ReLU's own gradient does, leaves the BiasAdd a single reader, so the remapper can fuse
Conv2D + BiasAdd + LeakyRelu as one pattern and nothing fails. The gradients are bit-identical:
for a slope >= 0 (all that Keras' `LeakyReLU` accepts) y > 0 exactly where x > 0, and
`LeakyReluGrad` only tests the sign of its second input (tests/test_leaky_relu.py). Measured on a
2-core CPU: the tiny WESPE and CAN runs of tests/test_tasks.py end with the same weights
fingerprints as with Keras' layer; benchmarks/leaky_relu_speed.py gives the same step time (CPU
time ratio Keras / this 1.01 and 1.00 at the demo presets' sizes, 1.02 and 1.04 at the papers')
and, after one step at WESPE's paper size, weights 3e-7 apart, as far as two runs with Keras'
layer are from each other there (2e-7: that step is not bit-reproducible on a CPU anyway).
"""
import keras
import tensorflow as tf


def leaky_relu(x, negative_slope):
    """`tf.nn.leaky_relu(x, negative_slope)`, differentiated through its output."""

    @tf.custom_gradient
    def forward(x):
        y = tf.nn.leaky_relu(x, alpha=negative_slope)

        def gradient(dy):
            return tf.raw_ops.LeakyReluGrad(gradients=dy, features=y, alpha=negative_slope)

        return y, gradient

    return forward(x)


@keras.saving.register_keras_serializable(package="enhancers")
class LeakyReLU(keras.layers.LeakyReLU):
    """`keras.layers.LeakyReLU` computing `leaky_relu` (the same values and gradients)."""

    def call(self, inputs):
        return leaky_relu(inputs, self.negative_slope)
