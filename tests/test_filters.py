"""EXPOSURE's eight filters (PIEA section 3.1, Eq. 1) against NumPy, at their initial values,
chained, batched, differentiated, described, serialised and traced."""
import json

import numpy as np
import pytest
import skimage.color
import tensorflow as tf

from enhancers import filters

NAMES = filters.FILTER_NAMES
SHAPES = {"exposure": (), "gamma": (), "white_balance": (3,), "saturation": (), "tone": (8,),
          "contrast": (), "black_and_white": (), "color": (3, 8)}
# Black, white, grays and saturated colours: the pixels where HSV and luminance divide by zero.
SPECIAL = np.array([[0, 0, 0], [1, 1, 1], [0.5, 0.5, 0.5], [0.2, 0.2, 0.2], [1, 0, 0], [0, 1, 0],
                    [0, 0, 1], [1, 1, 0], [0, 1, 1], [1, 0, 1], [0.3, 0.3, 0.8]])
BATCH = 2


def make_images(seed=0, high=1.0, size=(5, 7)):
    """[2, h, w, 3] float32, uniform in [0, high], the special pixels at the start of each photo."""
    images = np.random.default_rng(seed).uniform(0, high, (BATCH, *size, 3))
    flat = images.reshape(BATCH, -1, 3)
    flat[:, :len(SPECIAL)] = SPECIAL
    return flat.reshape(images.shape).astype(np.float32)


# ---- NumPy references, float64, one photo at a time ----

def np_tanh_range(x, low, high):
    return (np.tanh(x) / 2 + 0.5) * (high - low) + low


def np_sigmoid(x):
    return 1 / (1 + np.exp(-x))


def np_lum(image):
    return (image @ np.array([0.27, 0.67, 0.06]))[..., None]


def np_white_balance_natural(raw):
    gains = np.exp(np_tanh_range(raw * np.array([0, 1, 1]), -0.5, 0.5))
    return gains / (1e-5 + np_lum(gains))


NP_NATURAL = {
    "exposure": lambda raw: np_tanh_range(raw, -3.5, 3.5),
    "gamma": lambda raw: np.exp(np_tanh_range(raw, -np.log(3), np.log(3))),
    "white_balance": np_white_balance_natural,
    "saturation": np_sigmoid,
    "tone": lambda raw: np_tanh_range(raw, 0.5, 2),
    "contrast": np.tanh,
    "black_and_white": np_sigmoid,
    "color": lambda raw: np_tanh_range(raw, 0.9, 1.1),
}


def np_curve(channel, points):
    out = sum(np.clip(channel - i / 8, 0, 1 / 8) * t for i, t in enumerate(points))
    return out * 8 / (np.sum(points) + 1e-30)


def np_saturation(x, p):
    x = np.minimum(x, 1)
    hsv = skimage.color.rgb2hsv(x)
    s, v = hsv[..., 1], hsv[..., 2]
    hsv[..., 1] = s + (1 - s) * (0.5 - np.abs(0.5 - v)) * 0.8
    return (1 - p) * x + p * skimage.color.hsv2rgb(hsv)


def np_contrast(x, p):
    lum = np.clip(np_lum(x), 0, 1)
    return (1 - p) * x + p * x / (lum + 1e-6) * (-np.cos(np.pi * lum) / 2 + 0.5)


NP_PROCESS = {
    "exposure": lambda x, p: x * 2.0 ** p,
    "gamma": lambda x, p: np.maximum(x, 0.001) ** p,
    "white_balance": lambda x, p: x * p,
    "saturation": np_saturation,
    "tone": lambda x, p: np.stack([np_curve(x[..., c], p) for c in range(3)], -1),
    "contrast": np_contrast,
    "black_and_white": lambda x, p: (1 - p) * x + p * np_lum(x),
    "color": lambda x, p: np.stack([np_curve(x[..., c], p[c]) for c in range(3)], -1),
}


def np_process(name, images, natural):
    natural = np.asarray(natural, np.float64)
    return np.stack([NP_PROCESS[name](np.float64(x), p) for x, p in zip(images, natural)])


def np_chain(images, params):
    for name in NAMES:
        images = np_process(name, images, params[name])
    return images


def random_raw(seed, scale=1.5):
    rng = np.random.default_rng(seed)
    return {name: rng.uniform(-scale, scale, (BATCH, *SHAPES[name])).astype(np.float32)
            for name in NAMES}


def np_naturals(raw):
    """Natural parameters from NumPy, rounded to the float32 that TF is given."""
    return {name: NP_NATURAL[name](np.float64(raw[name])).astype(np.float32) for name in NAMES}


# ---- the filters one by one ----

def test_api_order_titles_and_shapes():
    assert [f.name for f in filters.FILTERS] == list(NAMES) == list(filters.FILTERS_BY_NAME)
    assert {f.name: f.param_shape for f in filters.FILTERS} == SHAPES
    assert [f.title for f in filters.FILTERS] == [
        "Exposure", "Gamma", "White balance", "Saturation", "Tone curve", "Contrast",
        "Black & white", "Colour curves"]


@pytest.mark.parametrize("name", NAMES)
def test_natural_matches_numpy(name):
    raw = np.random.default_rng(3).uniform(-3, 3, (4, *SHAPES[name])).astype(np.float32)
    raw[0], raw[1] = 20, -20  # saturated tanh / sigmoid
    natural = filters.FILTERS_BY_NAME[name].natural(raw)
    assert natural.shape == raw.shape and natural.dtype == tf.float32
    np.testing.assert_allclose(natural.numpy(), NP_NATURAL[name](np.float64(raw)),
                               rtol=1e-6, atol=1e-6)


def test_white_balance_red_raw_value_is_ignored():
    wb = filters.FILTERS_BY_NAME["white_balance"]
    raw = np.array([[0.0, 0.4, -0.7], [5.0, 0.4, -0.7], [-9.0, 0.4, -0.7]], np.float32)
    gains = wb.natural(raw).numpy()
    np.testing.assert_array_equal(gains, np.repeat(gains[:1], 3, 0))
    np.testing.assert_allclose(np_lum(gains)[:, 0], 1 / (1 + 1e-5), rtol=1e-6)  # normalised


@pytest.mark.parametrize("name", NAMES)
def test_raw_from_natural_inverts_natural(name):
    f = filters.FILTERS_BY_NAME[name]
    natural = NP_NATURAL[name](np.random.default_rng(4).uniform(-3, 3, (5, *SHAPES[name])))
    raw = f.raw_from_natural(natural)
    assert raw.dtype == np.float32 and raw.shape == natural.shape
    np.testing.assert_allclose(f.natural(raw).numpy(), natural, rtol=2e-5, atol=2e-6)
    if name == "white_balance":
        assert np.all(raw[:, 0] == 0)
    else:  # the ends of the range give finite raw values mapping back onto the ends
        ends = np.stack([np.full(f.param_shape, -np.inf), np.full(f.param_shape, np.inf)])
        ends = NP_NATURAL[name](ends)
        end_raw = f.raw_from_natural(ends)
        assert np.all(np.isfinite(end_raw))
        np.testing.assert_allclose(f.natural(end_raw).numpy(), ends, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("high", [1.0, 1.4])  # 1.4: over-exposed pixels reach every filter
def test_process_matches_numpy(name, high):
    images = make_images(seed=1, high=high)
    natural = np_naturals(random_raw(seed=2))[name]  # different for each photo in the batch
    out = filters.FILTERS_BY_NAME[name].process(images, natural)
    assert out.shape == images.shape and out.dtype == tf.float32
    np.testing.assert_allclose(out.numpy(), np_process(name, images, natural),
                               rtol=1e-5, atol=1e-5)


def test_luminance_and_tanh_range():
    images = make_images(seed=6)
    np.testing.assert_allclose(filters.luminance(images).numpy(), np_lum(np.float64(images)),
                               atol=1e-6)
    x = np.linspace(-25, 25, 11)
    np.testing.assert_allclose(filters.tanh_range(x, -2.0, 3.0).numpy(), np_tanh_range(x, -2, 3))


# ---- initial values ----

def initial_natural():
    return filters.natural_parameters(filters.initial_raw_parameters(BATCH))


def test_initial_natural_values():
    raw = filters.initial_raw_parameters(BATCH)
    assert {n: (v.shape, v.dtype) for n, v in raw.items()} == {
        n: ((BATCH, *SHAPES[n]), np.float32) for n in NAMES}
    expected = {"exposure": 1.0, "gamma": 1.0, "white_balance": 1 / (1 + 1e-5),
                "saturation": 0.01, "tone": 1.25, "contrast": 0.0, "black_and_white": 0.002,
                "color": 1.0}
    for name, value in initial_natural().items():
        np.testing.assert_allclose(value.numpy(), np.full((BATCH, *SHAPES[name]), expected[name]),
                                   rtol=1e-6, atol=1e-7, err_msg=name)


@pytest.mark.parametrize("name", NAMES)
def test_initial_filter_changes_photo_by_at_most_one_level(name):
    images = make_images(seed=7)
    out = filters.FILTERS_BY_NAME[name].process(images, initial_natural()[name]).numpy()
    if name == "exposure":  # +1 EV
        np.testing.assert_allclose(out, 2 * images, rtol=1e-6)
    else:
        assert np.abs(out - images).max() <= 1 / 255


def test_apply_at_initial_values_doubles_the_photo_through_the_chain():
    images = make_images(seed=8)
    natural = initial_natural()
    out = filters.apply(images, natural).numpy()
    np.testing.assert_allclose(out, np_chain(images, {n: v.numpy() for n, v in natural.items()}),
                               atol=1e-5)
    # The tone curve clips 2 * image to [0, 1]; the other filters move it by a few 1/1000 at most.
    assert np.abs(out - np.clip(2 * images, 0, 1)).max() <= 2 / 255


# ---- the chain ----

def test_apply_matches_numpy_chain():
    images = make_images(seed=9)
    params = np_naturals(random_raw(seed=10))
    np.testing.assert_allclose(filters.apply(images, params).numpy(), np_chain(images, params),
                               rtol=2e-5, atol=2e-5)


def test_apply_raw_is_apply_of_natural_parameters():
    images, raw = make_images(seed=11), random_raw(seed=12)
    np.testing.assert_allclose(filters.apply_raw(images, raw).numpy(),
                               filters.apply(images, filters.natural_parameters(raw)).numpy())


def test_parameters_are_per_photo_in_the_batch():
    images = make_images(seed=13)
    params = np_naturals(random_raw(seed=14))
    batched = filters.apply(images, params).numpy()
    for i in range(BATCH):
        alone = filters.apply(images[i:i + 1], {n: v[i:i + 1] for n, v in params.items()})
        np.testing.assert_allclose(batched[i:i + 1], alone.numpy(), atol=1e-6)
        shared = filters.apply(images, {n: v[i] for n, v in params.items()})  # one photo's values
        np.testing.assert_allclose(shared.numpy()[i], batched[i], atol=1e-6)
    assert np.abs(batched[0] - filters.apply(images[:1], {n: v[1:] for n, v in params.items()})
                  .numpy()[0]).max() > 1e-2


def test_apply_accepts_lists_tensors_and_bare_scalars():
    images = make_images(seed=15)
    params = np_naturals(random_raw(seed=16))
    expected = filters.apply(images, params).numpy()
    mixed = {n: v.tolist() for n, v in params.items()}
    mixed["gamma"] = tf.constant(params["gamma"])
    np.testing.assert_allclose(filters.apply(images, mixed).numpy(), expected, atol=1e-6)
    same = dict(params, exposure=np.full(BATCH, 0.5, np.float32))
    np.testing.assert_allclose(filters.apply(images, dict(params, exposure=0.5)).numpy(),
                               filters.apply(images, same).numpy(), atol=1e-6)


@pytest.mark.parametrize("change, error, name", [
    (lambda p: p.pop("gamma"), KeyError, "gamma"),
    (lambda p: p.update(sharpness=np.zeros(BATCH)), KeyError, "sharpness"),
    (lambda p: p.update(tone=np.ones((BATCH, 7))), ValueError, "tone"),
    (lambda p: p.update(white_balance=1.0), ValueError, "white_balance"),
    (lambda p: p.update(color=np.ones((BATCH, 8, 3))), ValueError, "color"),
    (lambda p: p.update(contrast=np.zeros(BATCH + 1)), ValueError, "contrast"),
])
def test_apply_errors_name_the_filter(change, error, name):
    params = np_naturals(random_raw(seed=17))
    change(params)
    with pytest.raises(error, match=name):
        filters.apply(make_images(), params)


# ---- gradients ----

def gradient_images():
    """Black, white and gray pixels plus random ones, and over-exposed ones for the chain."""
    return make_images(seed=18, high=1.2)


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("raw_value", [-20.0, 20.0, None])  # None: random, mid-range
def test_filter_gradients_finite_and_nonzero(name, raw_value):
    f = filters.FILTERS_BY_NAME[name]
    shape = (BATCH, *SHAPES[name])
    raw = tf.Variable(np.random.default_rng(19).uniform(-1, 1, shape) if raw_value is None
                      else np.full(shape, raw_value), dtype=tf.float32)
    images = tf.Variable(gradient_images())
    with tf.GradientTape() as tape:
        total = tf.reduce_sum(f.process(images, f.natural(raw)))
    d_raw, d_images = (g.numpy() for g in tape.gradient(total, [raw, images]))
    assert np.all(np.isfinite(d_raw)) and np.all(np.isfinite(d_images))
    if raw_value is None:
        assert np.all(np.abs(d_raw.reshape(BATCH, -1)).sum(1) > 0)  # every photo's parameters
        assert np.abs(d_images).sum() > 0
        if name == "white_balance":
            assert np.all(d_raw[:, 0] == 0)  # red is fixed


@pytest.mark.parametrize("raw_value", [-20.0, 20.0, None])
def test_chain_gradients_finite(raw_value):
    raw = random_raw(seed=20) if raw_value is None else {
        n: np.full((BATCH, *SHAPES[n]), raw_value, np.float32) for n in NAMES}
    raw = {n: tf.Variable(v) for n, v in raw.items()}
    images = tf.Variable(gradient_images())
    with tf.GradientTape() as tape:
        total = tf.reduce_sum(filters.apply_raw(images, raw))
    grads = tape.gradient(total, [raw, images])
    for name in NAMES:
        assert np.all(np.isfinite(grads[0][name].numpy())), name
        if raw_value is None:
            assert np.abs(grads[0][name].numpy()).sum() > 0, name
    assert np.all(np.isfinite(grads[1].numpy()))


# ---- words, JSON, tf.function ----

def test_describe_gives_words_and_numbers():
    params = {"exposure": 0.8, "gamma": 1 / 1.1, "white_balance": [1.02, 0.99, 0.97],
              "saturation": 0.12, "tone": np.linspace(0.5, 2, 8), "contrast": 0.15,
              "black_and_white": 0.03, "color": np.full((3, 8), 1.05)}
    lines = filters.describe(params)
    assert lines[:4] == ["Exposure +0.80 EV", "Gamma 1/1.10",
                         "White balance R x1.02 G x0.99 B x0.97", "Saturation +12.0%"]
    assert lines[4].startswith("Tone curve 0.50 0.71") and lines[4].endswith("2.00")
    assert lines[5:7] == ["Contrast +0.15", "Black & white 3.0%"]
    assert lines[7].startswith("Colour curves R: 1.05")
    assert " G: 1.05" in lines[7] and " B: 1.05" in lines[7]
    assert filters.describe(dict(params, exposure=-1.25))[0] == "Exposure -1.25 EV"


def test_identity_parameters_leave_photos_as_they_are():
    images = make_images(seed=30)
    identity = filters.identity_parameters()
    assert sorted(identity) == sorted(NAMES)
    kept = filters.apply(images, identity).numpy()
    # Only gamma's floor max(x, 0.001) touches values: black stays within 0.001.
    np.testing.assert_allclose(kept, np.maximum(images, 0.001), atol=1e-6)


def test_adjustments_name_only_the_filters_that_moved():
    identity = filters.identity_parameters()
    assert filters.adjustments(identity) == []
    # The initial parameters with exposure 0: saturation 1% and black & white 0.2% change no
    # colour by a whole 8-bit level, so nothing is an edit.
    initial = {f.name: f.natural(f.initial_raw()[None]).numpy()[0] for f in filters.FILTERS}
    assert filters.adjustments(dict(initial, exposure=np.float32(0))) == []
    assert filters.adjustments(initial) == [("exposure", "Exposure +1.00 EV")]

    tone = np.ones(8, np.float32)
    tone[:2] = 1.3  # lifts the shadows: the curve's knots move up
    moved = dict(identity, exposure=np.float32(0.35), tone=tone,
                 saturation=np.float32(0.002), contrast=np.float32(-0.2),
                 white_balance=np.array([1.0, 1.0, 0.96], np.float32))
    words = dict(filters.adjustments(moved))
    assert list(words) == ["exposure", "white_balance", "tone", "contrast"]
    assert words["exposure"] == "Exposure +0.35 EV"
    assert words["white_balance"] == "White balance: red +0.0%, green +0.0%, blue -4.0%"
    assert words["contrast"] == "Contrast -20.0%"
    outputs = np.cumsum(tone)[:-1] / tone.sum()  # the curve at 1/8 .. 7/8
    assert words["tone"].startswith(f"Tone curve: 12.5% -> {100 * outputs[0]:.1f}%, "
                                    f"25% -> {100 * outputs[1]:.1f}%")
    assert "87.5%" in words["tone"]  # 7/8 -> 0.8889: moved by more than 1/255
    # A change just below one 8-bit level is not listed, one just above is.
    assert filters.adjustments(dict(identity, gamma=np.float32(1.005))) == []
    assert filters.adjustments(dict(identity, gamma=np.float32(1.2))) == [
        ("gamma", "Gamma 1.20 (midtones darker)")]
    color = np.ones((3, 8), np.float32)
    color[2, 4:] = 1.08  # blue highlights
    (name, text), = filters.adjustments(dict(identity, color=color))
    assert name == "color" and text.startswith("Colour curves: blue ")
    assert "red" not in text and "green" not in text


def test_effect_is_the_largest_change_of_any_colour():
    assert filters.effect("exposure", 0.0) == 0.0
    assert filters.effect("exposure", 1.0) == pytest.approx(0.5)  # 0.5 -> 1.0
    assert filters.effect("black_and_white", 1.0) == pytest.approx(1 - 0.06, abs=2e-3)  # blue


def test_json_round_trip_is_exact_and_reproduces_the_photo():
    images = make_images(seed=21)[:1]
    params = {n: v[0] for n, v in np_naturals(random_raw(seed=22)).items()}
    obj = json.loads(json.dumps(filters.to_jsonable(params)))
    assert isinstance(obj["exposure"], float) and len(obj["color"]) == 3
    back = filters.from_jsonable(obj)
    for name in NAMES:
        assert back[name].dtype == np.float32 and back[name].shape == SHAPES[name]
        np.testing.assert_array_equal(back[name], params[name])
    np.testing.assert_array_equal(filters.apply(images, back).numpy(),
                                  filters.apply(images, params).numpy())


def test_works_in_tf_function_on_any_size():
    spec = {n: tf.TensorSpec([None, *SHAPES[n]], tf.float32) for n in NAMES}

    @tf.function(input_signature=[tf.TensorSpec([None, None, None, 3], tf.float32), spec])
    def enhance(images, raw):
        return filters.apply_raw(images, raw)

    raw = random_raw(seed=23)
    for size in [(5, 7), (9, 4)]:
        images = make_images(seed=24, size=size)
        np.testing.assert_allclose(enhance(images, raw).numpy(),
                                   filters.apply_raw(images, raw).numpy(), atol=1e-6)


# ---- the written-out gradients against TensorFlow's autodiff of the plain formulas ----

def _vjp(fn, inputs, upstream):
    inputs = [tf.constant(x) for x in inputs]
    with tf.GradientTape() as tape:
        tape.watch(inputs)
        out = fn(*inputs)
    return tape.gradient(out, inputs, output_gradients=upstream)


def test_exposure_gamma_white_balance_gradient_matches_autodiff_of_the_three_filters():
    images = make_images(seed=22, high=1.3)  # black pixels: clipped at 0.001 by gamma
    images[:, 0, 0] = [-0.2, 0.0005, 1e-30]  # negative, small and tiny values
    rng = np.random.default_rng(23)
    exposure = rng.uniform(-3, 3, (BATCH,)).astype(np.float32)
    gamma = rng.uniform(1 / 3, 3, (BATCH,)).astype(np.float32)
    gains = rng.uniform(0.6, 1.6, (BATCH, 3)).astype(np.float32)
    upstream = rng.normal(size=images.shape).astype(np.float32)

    def plain(x, p, g, s):  # the three formulas in order, with TensorFlow's autodiff
        x = x * tf.pow(2.0, p[:, None, None, None])
        x = tf.pow(tf.maximum(x, 0.001), g[:, None, None, None])
        return x * s[:, None, None, :]

    def fused(x, p, g, s):
        return filters.from_planar(filters._exposure_gamma_white_balance(
            filters.planar_logs(x), p[:, None, None, None], g[:, None, None, None],
            s[:, :, None, None]))

    inputs = [images, exposure, gamma, gains]
    np.testing.assert_allclose(fused(*inputs).numpy(), plain(*inputs).numpy(), rtol=1e-5,
                               atol=1e-6)
    for a, b in zip(_vjp(fused, inputs, upstream), _vjp(plain, inputs, upstream)):
        assert np.all(np.isfinite(a.numpy()))
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-4, atol=1e-4)


def test_contrast_and_black_and_white_gradient_matches_autodiff_of_the_two_filters():
    images = make_images(seed=20, high=1.5) - 0.2  # luminance below 0 and above 1 too
    rng = np.random.default_rng(21)
    contrast = rng.uniform(-1, 1, (BATCH,)).astype(np.float32)
    mono = rng.uniform(0, 1, (BATCH,)).astype(np.float32)
    upstream = rng.normal(size=images.shape).astype(np.float32)
    weights = tf.constant(filters.LUMINANCE_WEIGHTS)

    def plain(x, p, q):  # contrast, then black & white, as EXPOSURE writes them
        lum = tf.clip_by_value(tf.reduce_sum(x * weights, -1, keepdims=True), 0, 1)
        curved = -tf.cos(np.pi * lum) / 2 + 0.5
        p, q = p[:, None, None, None], q[:, None, None, None]
        y = x + p * (x / (lum + 1e-6) * curved - x)
        return y + q * (tf.reduce_sum(y * weights, -1, keepdims=True) - y)

    def fused(x, p, q):
        return filters.from_planar(filters._contrast_and_black_and_white(
            filters.to_planar(x), p[:, None, None, None], q[:, None, None, None]))

    np.testing.assert_allclose(fused(images, contrast, mono).numpy(),
                               plain(images, contrast, mono).numpy(), rtol=1e-5, atol=1e-5)
    ours = _vjp(fused, [images, contrast, mono], upstream)
    reference = _vjp(plain, [images, contrast, mono], upstream)
    for a, b in zip(ours, reference):
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("channels", [1, 3])
def test_curve_gradient_matches_autodiff_of_the_clipped_segment_sum(channels):
    images = make_images(seed=24, high=1.3) - 0.1  # values below 0 and above 1 too
    images[:, 0, :2] = [[0.0, 1.0, 0.3], [1.0, 0.0, 1.0]]  # the ends, where the clip is inclusive
    rng = np.random.default_rng(25)
    points = rng.uniform(0.5, 2.0, (BATCH, channels, filters.CURVE_STEPS)).astype(np.float32)
    upstream = rng.normal(size=images.shape).astype(np.float32)
    steps = filters.CURVE_STEPS

    def clipped_segments(x, p):  # EXPOSURE's own formulation
        starts = tf.range(steps, dtype=tf.float32) / steps
        segments = tf.clip_by_value(x[..., None] - starts, 0, 1 / steps)
        p = p[:, None, None]
        return tf.reduce_sum(segments * p, -1) * steps / (tf.reduce_sum(p, -1) + 1e-30)

    def planar_curve(x, p):
        return filters.from_planar(filters._curve(filters.to_planar(x), p))

    ours = _vjp(planar_curve, [images, points], upstream)
    plain = _vjp(clipped_segments, [images, points], upstream)
    for a, b in zip(ours, plain):
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-4, atol=1e-5)


def test_saturation_gradient_matches_autodiff_of_the_plain_formula():
    images = make_images(seed=26, high=1.3)
    images[:, 0, :3] = [[0.5, 0.5, 0.2], [0.3, 0.7, 0.7], [0.4, 0.4, 0.4]]  # ties and a gray
    images[:, 0, 3] = [0.5, 0.1, 0.3]  # v = 0.5 exactly: the kink of k
    rng = np.random.default_rng(27)
    strength = rng.uniform(0, 1, (BATCH,)).astype(np.float32)
    upstream = rng.normal(size=images.shape).astype(np.float32)

    def plain(x, p):  # the formula with TensorFlow's own reductions and autodiff
        x = tf.minimum(x, 1.0)
        value = tf.reduce_max(x, -1, keepdims=True)
        low = tf.reduce_min(x, -1, keepdims=True)
        gray = tf.cast(value <= low, tf.float32)
        shape = (value - x) / (value - low + gray) + gray * tf.constant([0.0, 1.0, 1.0])
        k = (0.5 - tf.abs(0.5 - value)) * 0.8
        return x - (p[:, None, None, None] * k * low) * shape

    saturation = filters.FILTERS_BY_NAME["saturation"]
    np.testing.assert_allclose(saturation.process(images, strength).numpy(),
                               plain(images, strength).numpy(), atol=1e-6)
    ours = _vjp(saturation.process, [images, strength], upstream)
    reference = _vjp(plain, [images, strength], upstream)
    for a, b in zip(ours, reference):
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-4, atol=1e-5)
