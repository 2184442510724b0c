"""enhancers.piea (Algorithm 1), enhancers.piea_report (recipe, replay) and Figure 4.

The guides are toy NIMAs with hand-set weights whose score is a known function of the photo's
mean: `brightness_nima` rises with it, so the direction PIEA must move (brighter) is known, and
is smooth enough for finite differences (the gradient step is checked against a
finite-difference gradient of L = (10 - S)^2, not against TensorFlow's own autodiff);
`mid_gray_nima` peaks at a mid-gray mean and saturates on bright photos, as a real NIMA does
on a blown-out +1 EV start; `constant_nima` scores every photo 5.5.
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


def mid_gray_nima(peak=0.45, width=0.3, slope=4.0):
    """A 'NIMA' whose logits are slope * (k - 5.5) * g(m), k = 1..10, m the photo's mean and
    g(m) = 1 - ((m - peak) / width)^2: its score is highest for a mid-gray mean and falls off on
    both sides; far from the peak (a photo brightened into white) the softmax saturates at
    k = 1: score 1.0, no gradient."""
    images = keras.Input((None, None, 3))
    pooled = keras.layers.GlobalAveragePooling2D()(images)
    mean = keras.layers.Dense(1, use_bias=False, trainable=False,
                              kernel_initializer=keras.initializers.Constant(1 / 3))(pooled)
    features = keras.layers.Concatenate()([mean, keras.layers.Multiply()([mean, mean])])
    k = slope * (np.arange(1, 11) - 5.5)
    a, b, c = 1 - peak ** 2 / width ** 2, 2 * peak / width ** 2, -1 / width ** 2  # g = a+bm+cm^2
    logits = keras.layers.Dense(
        10, trainable=False, kernel_initializer=keras.initializers.Constant(np.stack([b * k, c * k])),
        bias_initializer=keras.initializers.Constant(a * k))(features)
    return keras.Model(images, keras.layers.Softmax()(logits), name="mid_gray_nima")


def mid_gray_score(images, peak=0.45, width=0.3, slope=4.0):
    """`mid_gray_nima`'s mean score computed in NumPy, per photo."""
    g = 1 - ((np.mean(images, axis=(1, 2, 3)) - peak) / width) ** 2
    logits = slope * (np.arange(1, 11) - 5.5)[None] * g[:, None]
    p = np.exp(logits - logits.max(1, keepdims=True))
    return (p / p.sum(1, keepdims=True)) @ np.arange(1, 11)


def constant_nima():
    """A 'NIMA' that gives every photo the uniform distribution: score 5.5, gradient 0."""
    images = keras.Input((None, None, 3))
    pooled = keras.layers.GlobalAveragePooling2D()(images)
    logits = keras.layers.Dense(10, kernel_initializer="zeros", trainable=False)(pooled)
    return keras.Model(images, keras.layers.Softmax()(logits), name="constant_nima")


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


@pytest.fixture(scope="module")
def bright_photo():
    """A well-exposed bright photo (mean 0.75): +1 EV blows it out to white."""
    return np.random.default_rng(5).uniform(0.6, 0.9, (1, 20, 28, 3)).astype(np.float32)


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
    assert steps.score.experimental_get_tracing_count() == 1  # the input's score


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
    recipe = json.loads(json.dumps(recipe, allow_nan=False))
    assert recipe["format"] == "piea-recipe/2"
    assert recipe["filter_order"] == list(filters.FILTER_NAMES)
    assert recipe["adjustments"][0]["filter"] == "exposure"
    assert recipe["adjustments"][0]["in_words"].startswith("Exposure +1.")
    assert [a["filter"] for a in recipe["adjustments"]] == [
        name for name, _ in filters.adjustments(result.selected_parameters(1))]
    assert len(recipe["scores"]) == 5 and len(recipe["parameters_per_iteration"]) == 5
    # "Before" is the photo as given, not the +1 EV start; "after" the photo returned.
    assert recipe["score_before"] == pytest.approx(
        nima.mean_score(guide(dark_photos[1:2])).numpy()[0], rel=1e-5)
    assert recipe["score_before"] < recipe["scores"][0]
    assert recipe["returned"] == {"iteration": 4, "select": "best",
                                  "reason": "iteration 4 of 4: highest NIMA score "
                                            f"{result.scores[1, 4]:.3f} (input "
                                            f"{recipe['score_before']:.3f})"}
    assert recipe["score_after"] == pytest.approx(result.scores[1, -1])
    assert recipe["initial_exposure"] == 1.0 and recipe["warnings"] == []
    assert recipe["unchanged"] is False
    assert recipe["summary"][0].startswith(f"NIMA score {recipe['score_before']:.3f} (input")
    assert recipe["source"] == "photo.jpg" and recipe["nima"] == "toy"
    np.testing.assert_allclose(piea_report.replay(dark_photos[1], recipe), result.images[1],
                               atol=1e-5)


# --------------------------------------------------------------------------- never worse (ours)


def test_guide_of_known_scores(bright_photo, dark_photos):
    model = mid_gray_nima()
    for photos in (bright_photo, dark_photos, np.minimum(bright_photo * 2, 1)):
        np.testing.assert_allclose(nima.mean_score(model(photos)).numpy(), mid_gray_score(photos),
                                   rtol=1e-4)


def test_a_start_that_saturates_the_guide_returns_the_input(bright_photo, caplog):
    """The issue's landscape: +1 EV blows the photo out, the guide scores it 1.0 with no
    gradient; the input (5.07) is returned exactly, and "before" is the input's score."""
    model = mid_gray_nima()
    input_score = mid_gray_score(bright_photo)[0]
    assert mid_gray_score(np.minimum(bright_photo * 2, 1))[0] < 1.01 < input_score - 3
    result = piea.enhance(bright_photo, model, iterations=3, names=["landscape.jpg"])
    assert result.scores.max() < input_score  # the precondition: every iterate is worse
    np.testing.assert_allclose(result.input_scores, [input_score], rtol=1e-4)
    assert result.selected_iterations == [None]
    np.testing.assert_array_equal(result.images, bright_photo)
    assert result.output_scores[0] == result.input_scores[0]
    assert result.selections[0].startswith("the input itself: no iterate scored higher")
    recipe = piea_report.recipe(result, 0)
    assert recipe["score_before"] == recipe["score_after"] == pytest.approx(input_score, rel=1e-4)
    assert recipe["unchanged"] is True and recipe["adjustments"] == []
    assert recipe["returned"]["iteration"] is None
    assert recipe["summary"][1].endswith("the photo is returned unchanged.")
    assert len(recipe["summary"]) == 2 + len(recipe["warnings"])  # no adjustments listed
    assert np.abs(piea_report.replay(bright_photo[0], recipe) - bright_photo[0]).max() <= 1 / 255
    # The guide is saturated: warned about, naming the photo, with the way out.
    assert len(recipe["warnings"]) == 2 and "try initial_exposure='auto'" in recipe["warnings"][0]
    assert "landscape.jpg" in caplog.text and "saturated" in caplog.text


def test_the_best_iterate_is_returned_when_it_beats_the_input(dark_photos):
    """A dark photo under a smooth mid-gray guide with a large step: iteration 0 (+1 EV) beats
    the input, later steps overshoot to black. The best candidate is returned and named."""
    model = mid_gray_nima(slope=1.0)
    photo = dark_photos[:1]
    result = piea.enhance(photo, model, iterations=6, learning_rate=0.1)
    candidates = np.concatenate([result.input_scores, result.scores[0]])
    assert result.output_scores[0] == candidates.max()
    best = int(np.argmax(result.scores[0]))
    assert result.selected_iterations == [best] and best < result.iterations
    assert result.scores[0, best] > result.input_scores[0] > result.scores[0, -1]
    rendered = np.clip(filters.apply(photo, result.parameters[best]).numpy(), 0, 1)
    np.testing.assert_allclose(result.images, rendered, atol=1e-5)
    np.testing.assert_allclose(mid_gray_score(result.images, slope=1.0), result.output_scores,
                               rtol=1e-4)
    recipe = piea_report.recipe(result, 0)
    assert recipe["returned"]["reason"] == (
        f"iteration {best} of 6: highest NIMA score {result.scores[0, best]:.3f} "
        f"(input {result.input_scores[0]:.3f})")
    assert recipe["warnings"] == []

    final = piea.enhance(photo, model, iterations=6, learning_rate=0.1, select="final")
    assert final.selected_iterations == [6] and final.output_scores[0] == final.scores[0, -1]
    rendered = np.clip(filters.apply(photo, final.parameters[-1]).numpy(), 0, 1)
    np.testing.assert_allclose(final.images, rendered, atol=1e-5)
    assert "lower than the input" in final.warnings[0][0]
    assert "select='final'" in piea_report.recipe(final, 0)["returned"]["reason"]


def test_an_iterate_that_gains_less_than_min_gain_leaves_the_photo_alone(dark_photos):
    """select="best" returns an iterate only for a gain of at least min_gain (MIN_SCORE_GAIN by
    default): a barely better score is not worth an edit; min_gain=0 takes any gain."""
    photo = dark_photos[:1]
    options = dict(iterations=1, learning_rate=1e-3, initial_exposure=0.0)
    any_gain = piea.enhance(photo, brightness_nima(), min_gain=0.0, **options)
    gain = any_gain.output_scores[0] - any_gain.input_scores[0]
    assert any_gain.selected_iterations == [1] and 0 < gain < piea.MIN_SCORE_GAIN, gain
    result = piea.enhance(photo, brightness_nima(), **options)
    assert result.selected_iterations == [None]
    np.testing.assert_array_equal(result.images, photo)
    assert result.output_scores[0] == result.input_scores[0]
    assert "less than min_gain 0.05" in result.selections[0], result.selections[0]
    with pytest.raises(ValueError, match="min_gain"):
        piea.PieaEnhancer(brightness_nima(), min_gain=-0.1)


def test_select_final_returns_the_last_iterate_even_when_worse(bright_photo):
    """The paper's Algorithm 1: the last iterate, here the blown-out +1 EV photo."""
    result = piea.enhance(bright_photo, mid_gray_nima(), iterations=2, select="final")
    assert result.select == "final" and result.selected_iterations == [2]
    rendered = np.clip(filters.apply(bright_photo, result.parameters[-1]).numpy(), 0, 1)
    np.testing.assert_allclose(result.images, rendered, atol=1e-5)
    assert result.output_scores[0] < result.input_scores[0]
    with pytest.raises(ValueError, match="select"):
        piea.PieaEnhancer(mid_gray_nima(), select="last")


def test_initial_exposure_auto_number_and_bad_values(bright_photo, dark_photos, guide):
    assert piea.auto_exposure(bright_photo)[0] <= 0
    assert np.all(piea.auto_exposure(dark_photos) > 0)
    # The rule: log2(0.45 / mean luminance), lowered so the 99th percentile stays <= 1.
    lum = np.asarray(filters.luminance(dark_photos)).reshape(2, -1)
    expected = np.minimum(np.log2(0.45 / lum.mean(1)), np.log2(1 / np.percentile(lum, 99, 1)))
    np.testing.assert_allclose(piea.auto_exposure(dark_photos), np.clip(expected, -1, 1))
    assert piea.auto_exposure(np.zeros((1, 4, 4, 3), np.float32))[0] == 1.0
    assert piea.auto_exposure(np.ones((1, 4, 4, 3), np.float32))[0] == -1.0

    photos = np.concatenate([bright_photo, dark_photos[:1]])
    result = piea.enhance(photos, guide, iterations=1, initial_exposure="auto")
    np.testing.assert_allclose(result.initial_exposures, piea.auto_exposure(photos), atol=1e-6)
    np.testing.assert_allclose(result.parameters[0]["exposure"], piea.auto_exposure(photos),
                               atol=1e-5)
    result = piea.enhance(photos, guide, iterations=0, initial_exposure="0.5")
    np.testing.assert_allclose(result.parameters[0]["exposure"], [0.5, 0.5], atol=1e-5)
    assert piea.parse_initial_exposure(" AUTO ") == "auto"
    assert piea.parse_initial_exposure(-1) == -1.0
    for bad in ("bright", 4.0, float("nan")):
        with pytest.raises(ValueError, match="initial_exposure"):
            piea.PieaEnhancer(guide, initial_exposure=bad)


def test_a_constant_guide_is_warned_about(dark_photos, caplog):
    result = piea.enhance(dark_photos, constant_nima(), iterations=3,
                          names=["a.jpg", "b.jpg"])
    np.testing.assert_allclose(result.scores, 5.5, atol=1e-6)
    np.testing.assert_array_equal(result.gradient_norms, [0.0, 0.0])
    for index, name in enumerate(["a.jpg", "b.jpg"]):
        assert "score stayed at 5.500 over all 4 iterates" in result.warnings[index][0]
        assert "vanishing gradient" in result.warnings[index][1]
        assert f"PIEA, {name}: the guide's score stayed at 5.500" in caplog.text
    # Ties go to the input: a guide that cannot tell the photos apart changes nothing.
    assert result.selected_iterations == [None, None]
    np.testing.assert_array_equal(result.images, dark_photos)
    assert piea_report.recipe(result, 0)["warnings"] == result.warnings[0]


def test_a_guide_with_a_direction_is_not_warned_about(guide, dark_photos, caplog):
    result = piea.enhance(dark_photos, guide, iterations=2)
    assert result.warnings == [[], []] and np.all(result.gradient_norms > 1e-3)
    assert "PIEA" not in caplog.text


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


def test_figure_of_a_photo_returned_unchanged(bright_photo):
    from tools import figures

    result = piea.enhance(bright_photo, mid_gray_nima(), iterations=2)
    figure = figures.piea_figure(bright_photo[0], result, 0, thumbnail_height=60)
    assert figure.dtype == np.uint8 and figure.shape[1] >= 4 * 84
