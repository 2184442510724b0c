"""enhancers.global_context.GlobalContext against NumPy, its identity start and its saving."""
import keras
import numpy as np

from enhancers.global_context import GlobalContext


def _layer_on(x, seed=0):
    layer = GlobalContext(hidden=3)
    layer.build(x.shape)
    rng = np.random.default_rng(seed)
    for weight in layer.weights:
        weight.assign(rng.normal(0.0, 0.7, weight.shape).astype(np.float32))
    layer.hidden_dense.bias.assign([1.0, 0.5, 1.5])  # every hidden unit active
    return layer


def test_film_from_the_spatial_mean_matches_numpy():
    x = np.random.default_rng(1).normal(size=(2, 5, 7, 4)).astype(np.float32)
    layer = _layer_on(x)
    w1, b1, w2, b2 = (w.numpy() for w in (layer.hidden_dense.kernel, layer.hidden_dense.bias,
                                          layer.film_dense.kernel, layer.film_dense.bias))
    mean = x.mean(axis=(1, 2))
    film = np.maximum(mean @ w1 + b1, 0.0) @ w2 + b2
    gamma, beta = film[:, :4], film[:, 4:]
    expected = x * (1.0 + gamma[:, None, None]) + beta[:, None, None]
    np.testing.assert_allclose(layer(x).numpy(), expected, rtol=1e-5, atol=1e-5)
    # modulate() with the mean given is the same function; another mean gives another output.
    np.testing.assert_allclose(layer.modulate(x, mean).numpy(), expected, rtol=1e-5, atol=1e-5)
    assert np.abs(layer.modulate(x, mean + 1.0).numpy() - expected).max() > 1e-2


def test_starts_as_the_identity():
    x = np.random.default_rng(2).normal(size=(1, 6, 6, 3)).astype(np.float32)
    np.testing.assert_array_equal(GlobalContext()(x).numpy(), x)


def test_saved_and_loaded_with_its_weights(tmp_path):
    inputs = keras.Input((None, None, 4))
    model = keras.Model(inputs, GlobalContext(hidden=3, name="context")(inputs))
    x = np.random.default_rng(3).normal(size=(1, 5, 5, 4)).astype(np.float32)
    layer = model.get_layer("context")
    for weight in layer.weights:
        weight.assign(np.full(weight.shape, 0.3, np.float32))
    model.save(tmp_path / "model.keras")
    loaded = keras.models.load_model(tmp_path / "model.keras")
    np.testing.assert_allclose(loaded(x).numpy(), model(x).numpy(), rtol=1e-6)
