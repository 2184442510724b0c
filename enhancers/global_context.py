"""`GlobalContext`: feature maps modulated by what the whole photo looks like (not in any paper).

A fully convolutional generator without global normalisation (WESPE's G as the CPU demo builds
it) sees only its receptive field, a few dozen pixels. It cannot tell a photo from the source
domain (the demo's cheap camera: warm, flat, noisy) from a clean one that happens to be warm or
flat in that window, so it must either correct every photo or none. This layer gives it the
photo's overall look: the spatial mean of its input features, per image and channel, goes
through a small MLP that sets a per-channel scale and shift of those features (feature-wise
linear modulation, Perez et al., FiLM, AAAI 2018; HDRNet's global path, Gharbi et al. 2017, is
the same idea). The WESPE demo tried it and left it off (README, WESPE).

    y = x * (1 + gamma) + beta,   (gamma, beta) = W2 relu(W1 mean_hw(x) + b1) + b2

W2 and b2 start at zero, so the layer starts as the identity. The mean is the only thing it
takes from the whole photo, so tiled inference (`enhancers.tiling`) computes it over the whole
photo first and then runs each window with it fixed (`modulate`): tiled equals untiled.
"""
import keras
import tensorflow as tf


@keras.saving.register_keras_serializable(package="aesthetic_enhance")
class GlobalContext(keras.layers.Layer):
    """x (b, h, w, c) -> x * (1 + gamma) + beta from the spatial mean of x (module docstring).

    `hidden`: width of the MLP's hidden layer (default: c).
    """

    def __init__(self, hidden=None, **kwargs):
        super().__init__(**kwargs)
        self.hidden = hidden

    def build(self, input_shape):
        channels = input_shape[-1]
        self.hidden_dense = keras.layers.Dense(self.hidden or channels, activation="relu",
                                               name="hidden", dtype=self.dtype_policy)
        self.hidden_dense.build((None, channels))
        self.film_dense = keras.layers.Dense(2 * channels, kernel_initializer="zeros",
                                             bias_initializer="zeros", name="film",
                                             dtype=self.dtype_policy)
        self.film_dense.build((None, self.hidden or channels))

    def call(self, x):
        return self.modulate(x, tf.reduce_mean(x, axis=[1, 2]))

    def modulate(self, x, mean):
        """The layer with the spatial mean of its input given, (b, c): over the whole photo
        when x is one window of it."""
        film = self.film_dense(self.hidden_dense(tf.cast(mean, self.compute_dtype)))
        gamma, beta = tf.split(film[:, None, None, :], 2, axis=-1)
        return x * (1.0 + gamma) + beta

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "hidden": self.hidden}
