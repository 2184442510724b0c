"""losses.nima_loss against NumPy; the NIMA term trains CAN, not NIMA (fidelity terms:
test_losses_fidelity.py)."""
import keras
import numpy as np
import tensorflow as tf

import nima
from enhancers import can
from losses import l2_loss, nima_loss


def tiny_nima(seed=0):
    """A stand-in NIMA: per-channel means -> Dense(10, softmax), with known weights."""
    rng = np.random.default_rng(seed)
    images = keras.Input((None, None, 3))
    pooled = keras.layers.GlobalAveragePooling2D()(images)
    pooled = keras.layers.Dropout(0.5)(pooled)
    model = keras.Model(images, keras.layers.Dense(10, activation="softmax")(pooled))
    kernel, bias = rng.normal(0, 2, (3, 10)), rng.normal(0, 1, 10)
    model.layers[-1].set_weights([kernel.astype("float32"), bias.astype("float32")])
    return model, kernel, bias


def numpy_quality(images, kernel, bias):
    logits = images.mean(axis=(1, 2)) @ kernel + bias
    p = np.exp(logits - logits.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    return 10.0 - p @ np.arange(1, 11)


def test_nima_loss_is_ten_minus_the_mean_score_per_example():
    model, kernel, bias = tiny_nima()
    quality = nima_loss(model)
    images = np.random.default_rng(1).random((3, 8, 9, 3)).astype("float32")
    values = np.asarray(quality(images))
    assert values.shape == (3,)
    np.testing.assert_allclose(values, numpy_quality(images.astype(np.float64), kernel, bias),
                               rtol=1e-5)
    np.testing.assert_array_equal(np.asarray(quality(images)), values)  # dropout is off
    assert model.trainable_weights == [] and quality.nima_model is model


def test_a_perfect_score_gives_zero_and_the_worst_gives_nine():
    images = keras.Input((None, None, 3))
    logits = keras.layers.Dense(10)(keras.layers.GlobalAveragePooling2D()(images))
    model = keras.Model(images, keras.layers.Softmax()(logits))
    model.layers[2].set_weights([np.zeros((3, 10), "float32"),
                                 np.array([-50] * 9 + [50], "float32")])
    assert abs(float(nima_loss(model)(np.zeros((1, 4, 4, 3), "float32"))[0])) < 1e-4
    model.layers[2].set_weights([np.zeros((3, 10), "float32"),
                                 np.array([50] + [-50] * 9, "float32")])
    assert abs(float(nima_loss(model)(np.zeros((1, 4, 4, 3), "float32"))[0]) - 9.0) < 1e-4


def nima_state(model):
    return [np.array(w) for w in model.weights]


def test_the_nima_term_trains_can_and_leaves_nima_untouched():
    """Equation 1 with a real (random-weight) MobileNet NIMA: dropout and batch norm inside."""
    nima_model = nima.build_nima("mobilenet")
    quality = nima_loss(nima_model)
    before = nima_state(nima_model)
    enhancer = can.build_can(depth=5, width=8)
    optimizer = keras.optimizers.Adam(1e-3)
    x = tf.constant(np.random.default_rng(3).random((1, 48, 64, 3)).astype("float32"))
    reference = tf.clip_by_value(x * 1.2, 0, 1)

    with tf.GradientTape(persistent=True) as tape:
        output = enhancer(x, training=True)
        q = tf.reduce_mean(quality(output))
        total = tf.reduce_mean(l2_loss(reference, output)) + 1e-4 * q
    q_gradients = tape.gradient(q, enhancer.trainable_weights)
    assert all(g is not None and np.all(np.isfinite(g)) for g in q_gradients)
    assert all(float(tf.reduce_max(tf.abs(g))) > 0 for g in q_gradients)  # reaches every layer
    assert nima_model.trainable_weights == []  # nothing of NIMA's is there for a step to update

    can_before = nima_state(enhancer)
    gradients = tape.gradient(total, enhancer.trainable_weights)
    optimizer.apply_gradients(zip(gradients, enhancer.trainable_weights))
    assert any(not np.array_equal(a, np.array(b))
               for a, b in zip(can_before, enhancer.weights))
    for a, b in zip(before, nima_model.weights):  # moving statistics included
        np.testing.assert_array_equal(a, np.array(b))


def test_the_docstring_example_trains_any_keras_model_through_fit():
    nima_model, _, _ = tiny_nima(seed=4)
    quality = nima_loss(nima_model)
    before = nima_state(nima_model)
    model = keras.Sequential([keras.Input((None, None, 3)), keras.layers.Conv2D(3, 3, padding="same")])
    model.compile(optimizer=keras.optimizers.Adam(1e-2),
                  loss=lambda reference, output: l2_loss(reference, output)
                  + 1e-4 * quality(output))
    rng = np.random.default_rng(5)
    inputs = rng.random((4, 8, 8, 3)).astype("float32")
    first = np.array(model.weights[0])
    history = model.fit(inputs, inputs, batch_size=1, epochs=2, verbose=0)
    assert np.isfinite(history.history["loss"]).all()
    assert not np.array_equal(first, np.array(model.weights[0]))
    for a, b in zip(before, nima_model.weights):
        np.testing.assert_array_equal(a, np.array(b))
