"""PieNet's embedding network and preference vectors (section 3.1)."""
import keras
import numpy as np
import pytest
import tensorflow as tf

from enhancers.pienet import (EMBEDDING_DIM, PreferenceVectors, RandomUnitVectors,
                              build_embedding)
from enhancers.resnet18 import build_resnet18
from losses.triplet import triplet_loss


@pytest.fixture(scope="module")
def embedding():
    keras.utils.set_random_seed(0)
    return build_embedding()


@pytest.mark.parametrize("height, width", [(32, 32), (40, 33)])
def test_embedding_is_the_unit_normalised_resnet18_pool(embedding, height, width):
    images = np.random.default_rng(1).random((3, height, width, 3)).astype(np.float32)
    got = np.asarray(embedding(images, training=False))
    assert got.shape == (3, EMBEDDING_DIM) and got.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-6)
    resnet = build_resnet18()
    resnet.set_weights(embedding.get_layer("resnet18").get_weights())
    pool = np.asarray(resnet(images, training=False)["pool"], np.float64)
    np.testing.assert_allclose(got, pool / np.linalg.norm(pool, axis=1, keepdims=True),
                               rtol=1e-5, atol=1e-6)


def test_embedding_config_round_trips(embedding):
    clone = keras.Model.from_config(embedding.get_config())
    clone.set_weights(embedding.get_weights())
    images = np.random.default_rng(2).random((1, 32, 32, 3)).astype(np.float32)
    np.testing.assert_array_equal(np.asarray(clone(images)), np.asarray(embedding(images)))


def test_random_unit_vectors_are_seeded_unit_rows():
    first = np.asarray(RandomUnitVectors(seed=3)((7, 512)))
    np.testing.assert_allclose(np.linalg.norm(first, axis=1), 1.0, atol=1e-6)
    np.testing.assert_array_equal(first, np.asarray(RandomUnitVectors(seed=3)((7, 512))))
    assert not np.allclose(first, np.asarray(RandomUnitVectors(seed=4)((7, 512))))
    keras.utils.set_random_seed(7)
    unseeded = np.asarray(RandomUnitVectors()((7, 512)))
    keras.utils.set_random_seed(7)
    np.testing.assert_array_equal(unseeded, np.asarray(RandomUnitVectors()((7, 512))))
    # Independent draws: the rows are far from parallel in 512 dimensions.
    cosines = first @ first.T - np.eye(7)
    assert np.abs(cosines).max() < 0.3


def test_lookup_returns_the_rows_and_config_round_trips():
    layer = PreferenceVectors(5, 8, seed=0)
    table = np.asarray(layer.vectors)
    np.testing.assert_allclose(np.linalg.norm(table, axis=1), 1.0, atol=1e-6)
    indices = np.array([4, 0, 0, 2])
    np.testing.assert_array_equal(np.asarray(layer(indices)), table[indices])
    np.testing.assert_allclose(np.asarray(layer.mean_vector()), table.mean(0), atol=1e-7)
    clone = PreferenceVectors.from_config(layer.get_config())
    np.testing.assert_array_equal(np.asarray(clone.vectors), table)  # the same seed
    inputs = keras.Input((), dtype="int32")
    assert tuple(keras.Model(inputs, layer(inputs)).output.shape) == (None, 8)
    with pytest.raises(ValueError, match="users >= 1"):
        PreferenceVectors(0)


def test_only_the_looked_up_vectors_get_gradients_and_move():
    layer = PreferenceVectors(4, 6, seed=1)
    before = np.asarray(layer.vectors).copy()
    assert layer.trainable_weights == [layer.vectors]
    target = np.ones((2, 6), np.float32)
    with tf.GradientTape() as tape:
        loss = tf.reduce_sum(tf.square(layer(np.array([1, 3])) - target))
    gradient = tf.convert_to_tensor(tape.gradient(loss, layer.vectors.value))
    expected = np.zeros_like(before)
    expected[[1, 3]] = 2 * (before[[1, 3]] - 1)
    np.testing.assert_allclose(np.asarray(gradient), expected, rtol=1e-6, atol=1e-6)
    keras.optimizers.Adam(0.1).apply_gradients([(gradient, layer.vectors)])
    after = np.asarray(layer.vectors)
    np.testing.assert_array_equal(after[[0, 2]], before[[0, 2]])
    assert np.all(np.abs(after[[1, 3]] - before[[1, 3]]) > 0.09)


def _clusters(rng, centres, per_user, spread=0.1):
    """Unit embeddings around each centre: (users, per_user, dim)."""
    points = centres[:, None, :] + spread * rng.standard_normal(
        (len(centres), per_user, centres.shape[1]))
    return points / np.linalg.norm(points, axis=-1, keepdims=True)


def test_triplet_training_of_preferences_separates_users():
    """Three users with fixed clusters of (frozen, toy) embeddings, plus the inputs' cluster; as
    in section 4.1 each user's negatives are the inputs and the other users' positives. A few
    hundred Adam steps on the preference vectors alone (equation 1) must leave each user's vector
    nearer its own held-out cluster than the others, and nearer its held-out positives than its
    held-out negatives. (The vectors are free, not on the sphere, so their norms differ: which
    vector is nearest one embedding is not what equation 1 orders.)"""
    rng = np.random.default_rng(5)
    dim, users = 16, 3
    centres = rng.standard_normal((users + 1, dim))
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    train, held_out = _clusters(rng, centres, 12), _clusters(rng, centres, 30)
    triplets = []  # (user, positive index, negative index) into the flattened training points
    for user in range(users):
        for positive in range(12):
            for other in range(users + 1):
                if other != user:
                    for negative in range(12):
                        triplets.append((user, user * 12 + positive, other * 12 + negative))
    triplets = np.array(triplets)
    flat = tf.constant(train.reshape(-1, dim), tf.float32)
    layer = PreferenceVectors(users, dim, seed=6)
    optimizer = keras.optimizers.Adam(0.005)

    @tf.function
    def step():
        with tf.GradientTape() as tape:
            loss = tf.reduce_mean(triplet_loss(layer(triplets[:, 0]),
                                               tf.gather(flat, triplets[:, 1]),
                                               tf.gather(flat, triplets[:, 2])))
        optimizer.apply_gradients(zip(tape.gradient(loss, layer.trainable_weights),
                                      layer.trainable_weights))
        return loss

    first = float(step())
    for _ in range(300):
        last = float(step())
    assert first > 0.1 and last < 1e-3
    vectors = np.asarray(layer.vectors, np.float64)
    distances = ((held_out[:, :, None, :] - vectors[None, None]) ** 2).sum(-1)  # (4, 30, users)
    for user in range(users):
        # The user's vector is nearer its own held-out cluster than any other cluster ...
        own = distances[user, :, user].mean()
        assert all(own < distances[other, :, user].mean() for other in range(users + 1)
                   if other != user), user
        # ... and, as the triplet loss asks, nearer each held-out positive than each negative.
        negatives = np.concatenate([distances[other, :, user] for other in range(users + 1)
                                    if other != user])
        ordered = (distances[user, :, user][:, None] < negatives[None, :]).mean()
        assert ordered > 0.99, (user, ordered)
