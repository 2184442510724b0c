"""enhancers.piea (Algorithm 1), enhancers.piea_report (recipe, replay) and Figure 4.

The guide is a toy NIMA whose score rises with the mean luminance of the photo, so the
direction PIEA must move (brighter) is known, and whose score is smooth enough for finite
differences: the gradient step is checked against a finite-difference gradient of
L = (10 - S)^2, not against TensorFlow's own autodiff.
"""
import json

import keras
import numpy as np
import pytest
import tensorflow as tf

import nima
from enhancers import filters, piea, piea_report


def brightness_nima(slope=4.0):
    """A 'NIMA' whose logits are slope * mean(image) * (k - 5.5), k = 1..10: brighter is better."""
    images = keras.Input((None, None, 3))
    pooled = keras.layers.GlobalAveragePooling2D()(images)
    mean = keras.layers.Dense(1, use_bias=False, trainable=False,
                              kernel_initializer=keras.initializers.Constant(1 / 3))(pooled)
    logits = keras.layers.Dense(10, use_bias=False, trainable=False, kernel_initializer=(
        keras.initializers.Constant(slope * (np.arange(1, 11) - 5.5)[np.newaxis])))(mean)
    return keras.Model(images, keras.layers.Softmax()(logits), name="brightness_nima")


def nan_nima():
    images = keras.Input((None, None, 3))
    pooled = keras.layers.GlobalAveragePooling2D()(images)
    logits = keras.layers.Dense(10, kernel_initializer=keras.initializers.Constant(np.nan))(pooled)
    return keras.Model(images, keras.layers.Softmax()(logits))


@pytest.fixture(scope="module")
def guide():
    return brightness_nima()


@pytest.fixture(scope="module")
def dark_photos():
    rng = np.random.default_rng(0)
    return (rng.uniform(0.02, 0.35, (2, 20, 28, 3))).astype(np.float32)


def _score(model, images, raw):
    return nima.mean_score(model(filters.apply_raw(images, raw), training=False)).numpy()


def test_shapes_and_iteration_zero(guide, dark_photos):
    result = piea.enhance(dark_photos, guide, iterations=3)
    assert result.images.shape == dark_photos.shape and result.images.dtype == np.float32
    assert result.scores.shape == (2, 4) and result.iterations == 3
    assert len(result.parameters) == 4
    initial = filters.natural_parameters(
        {k: tf.constant(v) for k, v in filters.initial_raw_parameters(2).items()})
    for name, value in initial.items():
        np.testing.assert_allclose(result.parameters[0][name], value.numpy(), rtol=1e-6,
                                   err_msg=name)
    np.testing.assert_allclose(result.parameters[0]["exposure"], [1.0, 1.0], rtol=1e-5)
    raw0 = {k: tf.constant(v) for k, v in filters.initial_raw_parameters(2).items()}
    np.testing.assert_allclose(result.scores[:, 0], _score(guide, dark_photos, raw0), rtol=1e-5)


def test_first_step_is_minus_lambda_times_a_finite_difference_gradient(guide, dark_photos):
    """Eq. 5 checked coordinate by coordinate against central differences of L = (10 - S)^2."""
    learning_rate = 1e-2
    result = piea.enhance(dark_photos[:1], guide, iterations=1, learning_rate=learning_rate)
    raw0 = filters.initial_raw_parameters(1)
    raw1 = {f.name: f.raw_from_natural(result.parameters[1][f.name][0])[np.newaxis]
            for f in filters.FILTERS}
    images = tf.constant(dark_photos[:1])

    def loss(raw):
        return float(((10.0 - _score(guide, images, {k: tf.constant(v) for k, v in raw.items()}))
                      ** 2).sum())

    checked = 0
    for name in ("exposure", "gamma", "contrast", "tone", "white_balance", "color"):
        flat = raw0[name].reshape(-1)
        for index in range(flat.size):
            if name == "white_balance" and index == 0:
                continue  # the red gain is fixed (EXPOSURE): its raw value is not a parameter
            step = 1e-2
            plus, minus = {k: v.copy() for k, v in raw0.items()}, {k: v.copy() for k, v in raw0.items()}
            plus[name].reshape(-1)[index] += step
            minus[name].reshape(-1)[index] -= step
            numeric = (loss(plus) - loss(minus)) / (2 * step)
            taken = (raw1[name].reshape(-1)[index] - flat[index]) / -learning_rate
            assert taken == pytest.approx(numeric, rel=0.05, abs=2e-3), (name, index)
            checked += 1
    assert checked == 1 + 1 + 1 + 8 + 2 + 24


def test_darkened_photo_gets_brighter_and_scores_rise(guide, dark_photos):
    result = piea.enhance(dark_photos, guide, iterations=20, learning_rate=1e-2)
    assert np.all(np.diff(result.scores, axis=1) > 0), result.scores
    assert np.all(result.parameters[-1]["exposure"] > result.parameters[0]["exposure"])
    assert result.images.mean() > 2 * dark_photos.mean()


def test_output_is_the_final_parameters_rendered_and_scored(guide, dark_photos):
    result = piea.enhance(dark_photos, guide, iterations=2)
    final = {k: v for k, v in result.parameters[-1].items()}
    rendered = np.clip(filters.apply(dark_photos, final).numpy(), 0, 1)
    np.testing.assert_allclose(result.images, rendered, atol=1e-5)
    scores = nima.mean_score(guide(result.images)).numpy()
    np.testing.assert_allclose(result.scores[:, -1], scores, rtol=1e-4)


def test_photos_in_a_batch_are_independent(guide, dark_photos):
    together = piea.enhance(dark_photos, guide, iterations=3, learning_rate=1e-2)
    for index in range(2):
        alone = piea.enhance(dark_photos[index], guide, iterations=3, learning_rate=1e-2)
        np.testing.assert_allclose(together.scores[index], alone.scores[0], rtol=1e-5)
        for name in filters.FILTER_NAMES:
            np.testing.assert_allclose(together.parameters[-1][name][index],
                                       alone.parameters[-1][name][0], rtol=1e-4, atol=1e-6)


def test_keras_sgd_equals_the_plain_step_and_adam_differs(guide, dark_photos):
    plain = piea.enhance(dark_photos, guide, iterations=3, learning_rate=1e-2)
    sgd = piea.enhance(dark_photos, guide, iterations=3,
                       optimizer=keras.optimizers.SGD(learning_rate=1e-2))
    np.testing.assert_allclose(sgd.scores, plain.scores, rtol=1e-5)
    adam = keras.optimizers.Adam(learning_rate=1e-1)
    first = piea.enhance(dark_photos, guide, iterations=3, optimizer=adam)
    second = piea.enhance(dark_photos, guide, iterations=3, optimizer=adam)  # a fresh copy each call
    np.testing.assert_allclose(first.scores, second.scores, rtol=1e-6)
    assert not np.allclose(first.scores, plain.scores)
    with pytest.raises(TypeError, match="optimizer"):
        piea.PieaEnhancer(guide, optimizer="adam")


def test_nothing_retraces_across_iterations_photos_and_sizes(guide):
    model = brightness_nima(slope=3.0)  # a fresh model: a fresh cache entry
    enhancer = piea.PieaEnhancer(model, iterations=3)
    rng = np.random.default_rng(1)
    for shape in [(1, 16, 16, 3), (2, 16, 16, 3), (1, 24, 12, 3)]:
        enhancer.enhance(rng.uniform(0, 1, shape).astype(np.float32))
    piea.enhance(rng.uniform(0, 1, (1, 9, 9, 3)).astype(np.float32), model, iterations=2)
    with_optimizer = piea.PieaEnhancer(model, iterations=2,
                                       optimizer=keras.optimizers.SGD(learning_rate=1e-3))
    for shape in [(1, 16, 16, 3), (2, 12, 20, 3)]:
        with_optimizer.enhance(rng.uniform(0, 1, shape).astype(np.float32))
    steps = piea._compiled_steps(model)
    assert steps.plain_step.experimental_get_tracing_count() == 1
    assert steps.scores_and_gradients.experimental_get_tracing_count() == 1
    assert steps.render_and_score.experimental_get_tracing_count() == 1


def test_proxy_scores_a_downscaled_copy_and_renders_full_size(guide):
    rng = np.random.default_rng(2)
    photo = rng.uniform(0.05, 0.3, (1, 80, 120, 3)).astype(np.float32)
    result = piea.enhance(photo, guide, iterations=2, proxy_size=40)
    assert result.images.shape == photo.shape
    rendered = np.clip(filters.apply(photo, result.parameters[-1]).numpy(), 0, 1)
    np.testing.assert_allclose(result.images, rendered, atol=1e-5)
    proxy = tf.image.resize(photo, (27, 40), method="area")
    raw = {f.name: f.raw_from_natural(result.parameters[-1][f.name][0])[np.newaxis]
           for f in filters.FILTERS}
    np.testing.assert_allclose(result.scores[0, -1], _score(guide, proxy, raw)[0], rtol=1e-3)
    with pytest.raises(ValueError, match="proxy_size"):
        piea.PieaEnhancer(guide, proxy_size=8)


def test_zero_iterations_renders_the_initial_parameters(guide, dark_photos):
    result = piea.enhance(dark_photos, guide, iterations=0)
    assert result.scores.shape == (2, 1) and len(result.parameters) == 1
    np.testing.assert_allclose(result.images, np.clip(dark_photos * 2.0, 0, 1), atol=2 / 255)


def test_non_finite_score_stops_with_a_clear_error(dark_photos):
    with pytest.raises(FloatingPointError, match="non-finite NIMA score"):
        piea.enhance(dark_photos, nan_nima(), iterations=2)


def test_bad_image_shape_is_rejected(guide):
    with pytest.raises(ValueError, match="RGB images"):
        piea.enhance(np.zeros((1, 8, 8, 4), np.float32), guide, iterations=1)


def test_load_nima_with_a_weights_file_and_the_demo_fallback(tmp_path, monkeypatch):
    model = nima.build_nima("mobilenet")
    path = str(tmp_path / "nima.weights.h5")
    model.save_weights(path)
    loaded, description = piea.load_nima(path, "mobilenet")
    assert path in description and "mobilenet" in description
    image = np.random.default_rng(3).uniform(0, 1, (1, 40, 40, 3)).astype(np.float32)
    np.testing.assert_allclose(loaded(image), model(image), rtol=1e-5)
    with pytest.raises(FileNotFoundError, match="missing.weights.h5"):
        piea.load_nima(str(tmp_path / "missing.weights.h5"), "mobilenet")
    monkeypatch.setattr(nima.demo, "demo_model", lambda: "the demo model")
    demo, description = piea.load_nima(None, "inception_v2")
    assert demo == "the demo model" and "demo NIMA" in description and "MobileNet" in description


# --------------------------------------------------------------------------- recipe and figure


def test_recipe_is_json_and_replays_the_enhanced_photo(guide, dark_photos):
    result = piea.enhance(dark_photos, guide, iterations=4, learning_rate=1e-2)
    recipe = piea_report.recipe(result, 1, source="photo.jpg", nima="toy",
                                settings={"iterations": 4})
    recipe = json.loads(piea_report.recipe_json(recipe))
    assert recipe["filter_order"] == list(filters.FILTER_NAMES)
    assert [step["filter"] for step in recipe["steps"]] == list(filters.FILTER_NAMES)
    assert recipe["steps"][0]["in_words"].startswith("Exposure")
    assert len(recipe["scores"]) == 5 and len(recipe["parameters_per_iteration"]) == 5
    assert recipe["score_before"] == pytest.approx(result.scores[1, 0])
    assert recipe["score_after"] == pytest.approx(result.scores[1, -1])
    assert recipe["source"] == "photo.jpg" and recipe["nima"] == "toy"
    np.testing.assert_allclose(piea_report.replay(dark_photos[1], recipe), result.images[1],
                               atol=1e-5)


def test_figure_shows_every_selected_iteration(guide, dark_photos):
    result = piea.enhance(dark_photos, guide, iterations=20, learning_rate=1e-2)
    assert piea_report.shown_iterations(20) == [0, 5, 10, 15, 20]
    assert piea_report.shown_iterations(2) == [0, 1, 2]
    from tools import figures  # Figure 4 is drawn in tools (matplotlib), not in enhancers

    figure = figures.piea_figure(dark_photos[0], result, 0, thumbnail_height=60)
    assert figure.dtype == np.uint8 and figure.ndim == 3 and figure.shape[2] == 3
    # Input + five iterations, each 60 px high and 84 px wide (20x28 photos), side by side.
    assert figure.shape[1] >= 6 * 84
    assert figure.std() > 10  # not a blank canvas
