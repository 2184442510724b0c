"""PieNet's embedding network and preference vectors (Kim et al., ECCV 2020, section 3.1).

`build_embedding()`: ResNet-18 (`enhancers.resnet18`, its "pool" tap) -> 512-d vector,
L2-normalised ("we perform L2 normalization to each output feature vector"). The paper feeds
256 x 256 images; the network is fully convolutional up to the global pooling, so any size
works (the trainer resizes; nothing is resized inside the model).

`PreferenceVectors`: one trainable vector f_k per training user, looked up by user index; the
paper initialises them "with random values" (section 3.1). Our choice: random unit vectors
(`RandomUnitVectors`, normalised standard Gaussians, uniform on the sphere), so that they start
on the sphere where the embeddings lie and every initial triplet distance D is in [0, 4]. The
vectors are not constrained afterwards: the paper does not renormalise them.
"""
import keras
from keras import ops

from enhancers.pienet.preference import l2_normalize, random_directions
from enhancers.resnet18 import build_resnet18

EMBEDDING_DIM = 512  # section 3.1
EMBEDDING_SIZE = 256  # section 3.1: training input side


@keras.saving.register_keras_serializable(package="enhancers")
class L2Normalization(keras.layers.Layer):
    """`l2_normalize` along the last axis as a layer (section 3.1); float32 output."""

    def call(self, vectors):
        return l2_normalize(vectors)

    def compute_output_spec(self, vectors):
        return keras.KerasTensor(vectors.shape, dtype="float32")


def build_embedding(input_shape=(None, None, 3), weights=None, preprocess=True,
                    name="pienet_embedding"):
    """Section 3.1's embedding network: images (b, h, w, 3) RGB in [0, 1] -> (b, 512) unit vectors.

    Args:
      input_shape: (h, w, 3); the paper trains on 256 x 256 (`EMBEDDING_SIZE`), any size works.
      weights: None (random ResNet-18, logged loudly) or a local .npz of torchvision's resnet18
        state dict (the paper starts from ImageNet weights, section 3.1).
      preprocess: ResNet-18's ImageNet normalisation inside the model (`build_resnet18`).

    The ResNet-18 is the nested model "resnet18" (`model.get_layer("resnet18")`), so that
    `enhancers.resnet18.load_resnet18_weights` loads into it later too.
    """
    images = keras.Input(input_shape, name="images")
    backbone = build_resnet18(input_shape=input_shape, weights=weights, preprocess=preprocess)
    embedding = L2Normalization(name="l2_normalization", dtype="float32")(
        backbone(images)["pool"])
    return keras.Model(images, embedding, name=name)


@keras.saving.register_keras_serializable(package="enhancers")
class RandomUnitVectors(keras.initializers.Initializer):
    """Rows (along the last axis) uniform on the unit sphere: normalised standard Gaussians
    (`random_directions`). Our reading of section 3.1's "initialize each preference vector with
    random values". An int `seed` draws the same rows every time; None follows Keras's global
    seed (`keras.utils.set_random_seed`)."""

    def __init__(self, seed=None):
        self.seed = seed

    def __call__(self, shape, dtype=None):
        return ops.cast(random_directions(shape, seed=self.seed), dtype or "float32")

    def get_config(self):
        return {"seed": self.seed}


@keras.saving.register_keras_serializable(package="enhancers")
class PreferenceVectors(keras.layers.Layer):
    """The training users' preference vectors f_k (section 3.1): a trainable (users, dim)
    variable; `layer(user_indices)` -> (batch, dim), row `user_indices[i]`.

    Args:
      users: K, the number of training users (5 photographers in section 4.1, 20 in 4.2).
      dim: their dimension, the embedding's (512).
      initializer: default `RandomUnitVectors(seed)` (module docstring); any Keras initializer.
      seed: the default initializer's seed (an int for reproducible vectors, None for fresh).
    """

    def __init__(self, users, dim=EMBEDDING_DIM, initializer=None, seed=None, **kwargs):
        super().__init__(**kwargs)
        if int(users) < 1 or int(dim) < 1:
            raise ValueError(f"PreferenceVectors needs users >= 1 and dim >= 1, got users={users}, "
                             f"dim={dim}")
        self.users = int(users)
        self.dim = int(dim)
        self.seed = seed
        self.initializer = keras.initializers.get(
            RandomUnitVectors(seed) if initializer is None else initializer)
        self.vectors = self.add_weight(shape=(self.users, self.dim), initializer=self.initializer,
                                       trainable=True, name="vectors", dtype="float32")

    def call(self, user_indices):
        return ops.take(self.vectors, ops.cast(user_indices, "int32"), axis=0)

    def compute_output_spec(self, user_indices):
        return keras.KerasTensor(tuple(user_indices.shape) + (self.dim,), dtype="float32")

    def mean_vector(self):
        """The mean of all users' vectors (dim,): a non-personalised preference."""
        return ops.mean(self.vectors, axis=0)

    def get_config(self):
        return {**super().get_config(), "users": self.users, "dim": self.dim, "seed": self.seed,
                "initializer": keras.initializers.serialize(self.initializer)}
