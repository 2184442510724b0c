"""enhancers.enhancegan.operators against independent NumPy versions: the L curve (knots,
identity, monotone, formula, finite gradients), the A/B stretch, the colour order, the parameter
ranges, the bilinear crop sampler and the full-size crop box."""
import math
import warnings

import numpy as np
import pytest
import tensorflow as tf
from skimage import color

from enhancers.enhancegan import operators

CURVES = [  # (a, b, p, q) inside the ranges, at their ends, and a = b
    (0.25, 0.055, 2.0, 0.745), (0.4, 0.01, 3.0, 0.5), (0.1, 0.1, 1.0, 0.99),
    (0.1, 0.01, 1.0, 0.99), (0.4, 0.1, 1.5, 0.6), (0.3, 0.02, 2.7, 0.51),
]


def numpy_l_curve(m, a, b, p, q):
    """The issue's formula, case by case, in float64 from the float32 values of the parameters
    and knots (as the operator computes them)."""
    m = np.asarray(m, np.float64)
    a, b, p, q = (float(np.float32(value)) for value in (a, b, p, q))
    one = np.float32(1)
    low, high = float(one - np.float32(a)), float(one - np.float32(b))
    out = np.empty_like(m)
    for index, value in np.ndenumerate(m):
        if value < b:
            out[index] = 0.0
        elif value < a:
            out[index] = a / (a - b) ** (1 / p) * (value - b) ** (1 / p)
        elif value < low:
            out[index] = value
        elif value < high:
            out[index] = a / (a - b) ** (1 / q) * (value - low) ** (1 / q) + low
        else:
            out[index] = 1.0
    return out


def curve(m, a, b, p, q):
    return operators.l_curve(np.float32(m), a, b, p, q).numpy()


@pytest.mark.parametrize("a, b, p, q", CURVES)
def test_l_curve_equals_the_formula(a, b, p, q):
    m = np.linspace(-0.05, 1.05, 2201)
    m = np.concatenate([m, [b, a, 1 - a, 1 - b]]).astype(np.float32)
    np.testing.assert_allclose(curve(m, a, b, p, q), numpy_l_curve(m, a, b, p, q), atol=2e-6)


@pytest.mark.parametrize("a, b, p, q", [curve for curve in CURVES if curve[0] > curve[1]])
def test_l_curve_is_continuous_at_its_four_knots(a, b, p, q):
    # The jump over [knot - eps, knot + eps] vanishes with eps: no segment's value jumps. The
    # steepest segment is the shadows' k1 (m - b)^(1/p) near b (p <= 3, k1 < 1 here), whose
    # rise over eps is at most eps^(1/3); elsewhere the curve is Lipschitz.
    for knot in (b, a, 1 - a, 1 - b):
        for epsilon in (1e-3, 1e-5, 1e-7):
            below, at, above = curve([knot - epsilon, knot, knot + epsilon], a, b, p, q)
            bound = epsilon ** (1 / 3) + 1e-6
            assert abs(at - below) < bound and abs(above - at) < bound, (knot, epsilon, below,
                                                                        at, above)
    # The values at the knots themselves: 0, a, 1 - a, 1.
    np.testing.assert_allclose(curve([b, a, 1 - a, 1 - b], a, b, p, q),
                               [0.0, a, 1 - a, 1.0], atol=1e-6)


def test_with_a_equal_to_b_the_curve_is_the_formulas_limit_a_step():
    """a = b (both ranges' shared end, 0.1) empties the power segments: k1 (m - b)^(1/p) would
    rise from 0 to a over no width. The curve is then 0 below b, the identity up to 1 - a, and
    1 from 1 - b: the limit of the continuous curves as b -> a."""
    values = curve([0.0999, 0.1, 0.5, 0.8999, 0.9, 1.0], 0.1, 0.1, 2.0, 0.7)
    np.testing.assert_allclose(values, [0.0, 0.1, 0.5, 0.8999, 1.0, 1.0], atol=1e-6)
    nearly = curve(np.linspace(0, 1, 1001), 0.1, 0.0999, 2.0, 0.7)
    step = curve(np.linspace(0, 1, 1001), 0.1, 0.1, 2.0, 0.7)
    differ = np.flatnonzero(np.abs(nearly - step) > 1e-6)
    assert set(differ) <= {100, 900}, differ


@pytest.mark.parametrize("a, b, p, q", CURVES)
def test_l_curve_is_the_identity_between_a_and_1_minus_a_and_monotone(a, b, p, q):
    middle = np.linspace(a, 1 - a, 101, endpoint=False).astype(np.float32)
    np.testing.assert_array_equal(curve(middle, a, b, p, q), middle)
    values = curve(np.linspace(0, 1, 4001).astype(np.float32), a, b, p, q)
    assert np.all(np.diff(values) >= -1e-7)
    assert values[0] == 0.0 and values[-1] == 1.0


def test_l_curve_per_example_parameters():
    m = np.random.default_rng(0).uniform(size=(2, 5, 6)).astype(np.float32)
    got = operators.l_curve(m, [0.25, 0.4], [0.05, 0.01], [2.0, 3.0], [0.7, 0.5]).numpy()
    np.testing.assert_allclose(got[0], numpy_l_curve(m[0], 0.25, 0.05, 2.0, 0.7), atol=2e-6)
    np.testing.assert_allclose(got[1], numpy_l_curve(m[1], 0.4, 0.01, 3.0, 0.5), atol=2e-6)


@pytest.mark.parametrize("a, b, p, q", CURVES + [(0.0, 0.0, 1.0, 1.0)])
def test_l_curve_gradients_are_finite_everywhere(a, b, p, q):
    m = tf.Variable(np.float32([0.0, b, (a + b) / 2, a, 0.5, 1 - a, 1 - (a + b) / 2, 1 - b, 1.0,
                                b + 1e-7, 1 - a + 1e-7, -0.1, 1.1]))
    parameters = [tf.Variable(np.float32(value)) for value in (a, b, p, q)]
    with tf.GradientTape() as tape:
        loss = tf.reduce_sum(operators.l_curve(m, *parameters))
    gradients = tape.gradient(loss, [m] + parameters)
    for gradient in gradients:
        assert gradient is not None and np.all(np.isfinite(gradient.numpy())), gradients


def test_identity_color_parameters_leave_the_curves_and_the_photo_unchanged():
    m = np.linspace(0, 1, 101).astype(np.float32)
    identity = operators.IDENTITY_COLOR
    np.testing.assert_array_equal(
        curve(m, identity["a"], identity["b"], identity["p"], identity["q"]), m)
    np.testing.assert_allclose(operators.ab_stretch(m, 0.0).numpy(), m, atol=1e-7)
    images = np.random.default_rng(1).uniform(size=(2, 8, 8, 3)).astype(np.float32)
    np.testing.assert_allclose(
        operators.enhance_color(images, operators.identity_color_parameters(2)).numpy(), images,
        atol=1e-4)


def test_ab_stretch_equals_numpy():
    rng = np.random.default_rng(2)
    m = rng.uniform(size=(3, 7, 9)).astype(np.float32)
    alpha = np.float32([0.05, 0.27, 0.49])
    expected = np.clip((m - alpha[:, None, None]) / (1 - 2 * alpha[:, None, None]), 0, 1)
    np.testing.assert_allclose(operators.ab_stretch(m, alpha).numpy(), expected, rtol=1e-5,
                               atol=1e-6)
    # Hand-worked: alpha 0.25 maps 0.25 -> 0, 0.5 -> 0.5, 0.6 -> 0.7, 0.8 -> 1.
    np.testing.assert_allclose(operators.ab_stretch(np.float32([0.1, 0.25, 0.5, 0.6, 0.8]),
                                                    0.25).numpy(),
                               [0.0, 0.0, 0.5, 0.7, 1.0], atol=1e-6)


def test_enhance_color_is_stretch_then_curve_in_normalised_lab():
    rng = np.random.default_rng(3)
    images = rng.uniform(size=(2, 6, 5, 3))
    parameters = {"alpha": [0.1, 0.3], "beta": [0.2, 0.06], "a": [0.3, 0.15],
                  "b": [0.05, 0.02], "p": [2.0, 1.2], "q": [0.6, 0.9]}
    got = operators.enhance_color(images.astype(np.float32),
                                  {k: np.float32(v) for k, v in parameters.items()}).numpy()
    lab = color.rgb2lab(images)
    normalised = np.stack([lab[..., 0] / 100, (lab[..., 1] + 128) / 255,
                           (lab[..., 2] + 128) / 255], axis=-1)
    expected = np.empty_like(images)
    for i in range(2):
        value = {k: v[i] for k, v in parameters.items()}
        lightness = numpy_l_curve(normalised[i, ..., 0], value["a"], value["b"], value["p"],
                                  value["q"])
        green_red = np.clip((normalised[i, ..., 1] - value["alpha"]) / (1 - 2 * value["alpha"]),
                            0, 1)
        blue_yellow = np.clip((normalised[i, ..., 2] - value["beta"]) / (1 - 2 * value["beta"]),
                              0, 1)
        enhanced = np.stack([lightness * 100, green_red * 255 - 128, blue_yellow * 255 - 128], -1)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # scikit-image warns of the colours it clips
            expected[i] = color.lab2rgb(enhanced)
    np.testing.assert_allclose(got, expected, atol=2e-3)
    assert got.min() >= 0.0 and got.max() <= 1.0


def test_ranges_hold_for_any_head_output():
    rng = np.random.default_rng(4)
    raw = np.concatenate([rng.normal(scale=100.0, size=(500, 6)),
                          rng.uniform(-1, 1, size=(500, 6)),
                          np.full((1, 6), 1e30), np.full((1, 6), -1e30), np.zeros((1, 6))])
    parameters = operators.color_parameters(raw.astype(np.float32))
    for name, (low, high) in operators.RANGES.items():
        if name in parameters:
            values = parameters[name].numpy()
            assert values.min() >= low - 1e-6 and values.max() <= high + 1e-6, name
    # hardtanh: -1 -> low, 0 -> the middle, 1 -> high.
    ends = operators.color_parameters(np.float32([[-1] * 6, [0] * 6, [1] * 6]))
    np.testing.assert_allclose(ends["p"].numpy(), [1.0, 2.0, 3.0])
    np.testing.assert_allclose(ends["alpha"].numpy(), [0.05, 0.27, 0.49], rtol=1e-6)
    np.testing.assert_allclose(ends["q"].numpy(), [0.5, 0.745, 0.99], rtol=1e-6)
    crop_raw = np.concatenate([rng.normal(scale=100.0, size=(500, 4)),
                               rng.uniform(-3, 3, size=(500, 4))]).astype(np.float32)
    crop = operators.crop_parameters(crop_raw)
    scale, translation = crop["crop_scale"].numpy(), crop["crop_translation"].numpy()
    assert scale.min() >= 0.3 - 1e-6 and scale.max() <= 0.999 + 1e-6
    assert np.all(np.abs(translation) <= (1 - scale) / scale + 1e-6)
    # The box stays inside [-1, 1]: |s t| + s <= 1.
    assert np.all(np.abs(scale * translation) + scale <= 1 + 1e-6)
    # Inside the bound the translation is the head's value.
    free = np.abs(crop_raw[:, 2:]) < (1 - scale) / scale
    np.testing.assert_array_equal(translation[free], crop_raw[:, 2:][free])
    np.testing.assert_allclose(operators.crop_parameters(np.float32([[0, 0, 0, 0]]))
                               ["crop_scale"].numpy(), [[0.6495, 0.6495]], rtol=1e-6)


def test_inclusive_ranges_hold_for_any_head_output_and_reach_the_identity():
    rng = np.random.default_rng(14)
    raw = np.concatenate([rng.normal(scale=100.0, size=(500, 6)),
                          rng.uniform(-1, 1, size=(500, 6))]).astype(np.float32)
    parameters = operators.color_parameters(raw, "inclusive")
    for name, (low, high) in operators.INCLUSIVE_RANGES.items():
        if name in parameters:
            values = parameters[name].numpy()
            assert values.min() >= low - 1e-6 and values.max() <= high + 1e-6, name
    assert operators.INCLUSIVE_RANGES["a"] == operators.RANGES["a"]
    assert operators.INCLUSIVE_RANGES["p"] == operators.RANGES["p"]
    # The head's raw -1 (alpha, beta, a, b, p) and 1 (q): the identity, for any a.
    identity_raw = np.float32([[-1, -1, a, -1, -1, 1] for a in (-1.0, 0.0, 1.0)])
    identity = operators.color_parameters(identity_raw, "inclusive")
    for name in ("alpha", "beta", "b", "p", "q"):
        np.testing.assert_array_equal(identity[name].numpy(), operators.IDENTITY_COLOR[name])
    np.testing.assert_allclose(identity["a"].numpy(), [0.1, 0.25, 0.4], rtol=1e-6)
    m = np.linspace(0, 1, 1001).astype(np.float32)
    for index in range(3):  # the identity up to float32 rounding of (m - (1 - a)) + 1 - a
        np.testing.assert_allclose(
            operators.l_curve(m, identity["a"][index], identity["b"][index],
                              identity["p"][index], identity["q"][index]).numpy(), m,
            rtol=0, atol=2e-7)
    images = np.random.default_rng(15).uniform(size=(3, 8, 8, 3)).astype(np.float32)
    np.testing.assert_allclose(operators.enhance_color(images, identity).numpy(), images,
                               atol=1e-4)
    # The release's ranges never reach it: the gentlest end still stretches and clips.
    gentlest = operators.color_parameters(identity_raw)
    assert gentlest["alpha"].numpy().min() == pytest.approx(0.05)
    assert np.abs(operators.enhance_color(images, gentlest).numpy() - images).max() > 0.01
    with pytest.raises(ValueError, match="ranges"):
        operators.color_parameters(raw, "wide")


def test_the_translation_clamp_passes_its_gradient_to_the_scale():
    raw = tf.Variable(np.float32([[0.5, 0.5, 10.0, 0.01]]))
    with tf.GradientTape() as tape:
        crop = operators.crop_parameters(raw)
        loss = tf.reduce_sum(crop["crop_translation"])
    gradient = tape.gradient(loss, raw).numpy()[0]
    # t1 is clamped at (1 - s) / s: d/ds = -1 / s^2, times ds/draw = 0.3495; t2 is free.
    s = 0.3495 * 0.5 + 0.6495
    np.testing.assert_allclose(gradient, [-0.3495 / s**2, 0.0, 0.0, 1.0], rtol=1e-5)


def numpy_sample_crop(images, scale, translation, rows, cols):
    """Bilinear sampling on the stn's grid, pixel by pixel, zero outside the image."""
    batch, height, width, channels = images.shape
    out = np.zeros((batch, rows, cols, channels))
    grid_y = np.linspace(-1, 1, rows) if rows > 1 else np.zeros(1)
    grid_x = np.linspace(-1, 1, cols) if cols > 1 else np.zeros(1)
    for n in range(batch):
        for i in range(rows):
            for j in range(cols):
                y = scale[n, 0] * (grid_y[i] + translation[n, 0])
                x = scale[n, 1] * (grid_x[j] + translation[n, 1])
                py, px = (y + 1) * (height - 1) / 2, (x + 1) * (width - 1) / 2
                y0, x0 = math.floor(py), math.floor(px)
                for yy, wy in ((y0, 1 - (py - y0)), (y0 + 1, py - y0)):
                    for xx, wx in ((x0, 1 - (px - x0)), (x0 + 1, px - x0)):
                        if 0 <= yy < height and 0 <= xx < width:
                            out[n, i, j] += wy * wx * images[n, yy, xx]
    return out


def test_sample_crop_equals_a_numpy_bilinear_sampler():
    rng = np.random.default_rng(5)
    images = rng.uniform(size=(3, 17, 23, 3)).astype(np.float32)
    scale = np.float32([[0.5, 0.7], [0.999, 0.3], [1.0, 1.0]])
    translation = np.float32([[0.4, -0.3], [0.0, 2.0], [0.0, 0.0]])
    for rows, cols in ((9, 11), (16, 16), (1, 5)):
        got = operators.sample_crop(images, scale, translation, (rows, cols)).numpy()
        np.testing.assert_allclose(got, numpy_sample_crop(images, scale, translation, rows, cols),
                                   atol=1e-5)
    # Scale 1 and no translation at the image's own size reproduce it exactly.
    same = operators.sample_crop(images, np.ones((3, 2), np.float32),
                                 np.zeros((3, 2), np.float32), (17, 23)).numpy()
    np.testing.assert_allclose(same, images, atol=1e-5)
    # Outside the image (a translation beyond the clamp) the sampler reads 0, as the stn does.
    outside = operators.sample_crop(images, np.float32([[0.5, 0.5]] * 3),
                                    np.float32([[5.0, 0.0]] * 3), 8).numpy()
    assert np.all(outside == 0.0)


def test_sample_crop_is_differentiable_in_image_scale_and_translation():
    images = tf.constant(np.random.default_rng(6).uniform(size=(2, 20, 20, 3)), tf.float32)
    scale = tf.Variable(np.float32([[0.6, 0.7], [0.5, 0.9]]))
    translation = tf.Variable(np.float32([[0.2, -0.1], [0.0, 0.05]]))
    with tf.GradientTape(persistent=True) as tape:
        tape.watch(images)
        loss = tf.reduce_sum(operators.sample_crop(images, scale, translation, 12)
                             * tf.linspace(0.0, 1.0, 12)[None, :, None, None])
    for variable in (images, scale, translation):
        gradient = tape.gradient(loss, variable).numpy()
        assert np.all(np.isfinite(gradient)) and np.any(gradient != 0)
    # Finite differences agree with the translation's gradient.
    epsilon = 1e-3
    shifted = translation + tf.constant([[epsilon, 0.0], [0.0, 0.0]])

    def value(t):
        return tf.reduce_sum(operators.sample_crop(images, scale, t, 12)
                             * tf.linspace(0.0, 1.0, 12)[None, :, None, None]).numpy()

    numeric = (value(shifted) - value(translation)) / epsilon
    np.testing.assert_allclose(tape.gradient(loss, translation).numpy()[0, 0], numeric,
                               rtol=0.05)


def torch_round(x):
    return math.copysign(math.floor(abs(x) + 0.5), x)


def numpy_crop_box(height, width, scale, translation):
    """run_single.lua's box, 0-based: (top, left, rows, cols)."""
    box = []
    for size, s, t in ((height, scale[0], translation[0]), (width, scale[1], translation[1])):
        extent = int(torch_round(size * s))
        start = math.floor((size - extent) / 2) + int(torch_round(t * extent / 2))
        start = min(max(start, 0), size - extent)
        box.append((start, extent))
    return [box[0][0], box[1][0], box[0][1], box[1][1]]


def test_crop_box_equals_the_release_formula():
    rng = np.random.default_rng(7)
    for height, width in ((480, 640), (1000, 667), (37, 91), (224, 224)):
        scale = rng.uniform(0.3, 0.999, size=(64, 2)).astype(np.float32)
        bound = (1 - scale) / scale
        translation = rng.uniform(-1.5, 1.5, size=(64, 2)).astype(np.float32) * bound
        translation[:4] = rng.uniform(-3, 3, size=(4, 2))  # beyond the bound: clamped boxes
        got = operators.crop_box(height, width, scale, translation).numpy()
        for n in range(64):
            expected = numpy_crop_box(height, width, scale[n].astype(np.float64),
                                      translation[n].astype(np.float64))
            np.testing.assert_array_equal(got[n], expected)
        top, left, rows, cols = got.T
        assert np.all(top >= 0) and np.all(left >= 0)
        assert np.all(top + rows <= height) and np.all(left + cols <= width)
    # Hand-worked: H = 100, s1 = 0.5 -> 50 rows from floor(50 / 2) = 25, t1 = 0.4 moves
    # round(0.4 * 50 / 2) = 10 rows down: top 35; W = 200, s2 = 0.3, t2 = -1 -> 60 columns
    # from 70 - 30 = 40.
    np.testing.assert_array_equal(
        operators.crop_box(100, 200, np.float32([[0.5, 0.3]]), np.float32([[0.4, -1.0]])).numpy(),
        [[35, 40, 50, 60]])


def test_the_full_size_box_matches_the_training_crop_within_a_pixel():
    rng = np.random.default_rng(8)
    height, width = 300, 451
    scale = rng.uniform(0.3, 0.999, size=(32, 2)).astype(np.float32)
    translation = (rng.uniform(-1, 1, size=(32, 2)) * (1 - scale) / scale).astype(np.float32)
    box = operators.crop_box(height, width, scale, translation).numpy()
    extent = operators.sampler_extent(height, width, scale, translation).numpy()
    # The sampler's first and last samples fall on the box's first and last pixels.
    np.testing.assert_allclose(extent[:, 0], box[:, 0], atol=1.5)
    np.testing.assert_allclose(extent[:, 1], box[:, 1], atol=1.5)
    np.testing.assert_allclose(extent[:, 2], box[:, 0] + box[:, 2] - 1, atol=1.5)
    np.testing.assert_allclose(extent[:, 3], box[:, 1] + box[:, 3] - 1, atol=1.5)


def test_enhance_photo_applies_colour_then_the_box_at_full_size():
    rng = np.random.default_rng(9)
    photo = rng.uniform(size=(45, 70, 3)).astype(np.float32)
    parameters = {"alpha": [0.1], "beta": [0.2], "a": [0.3], "b": [0.05], "p": [2.0],
                  "q": [0.6], "crop_scale": [[0.5, 0.8]], "crop_translation": [[0.3, -0.2]]}
    parameters = {k: np.float32(v) for k, v in parameters.items()}
    enhanced, box = operators.enhance_photo(photo, parameters)
    top, left, rows, cols = box.numpy()
    assert [top, left, rows, cols] == numpy_crop_box(45, 70, [0.5, 0.8], [0.3, -0.2])
    coloured = operators.enhance_color(photo[None], {k: parameters[k] for k in
                                                     operators.COLOR_PARAMETERS}).numpy()[0]
    np.testing.assert_allclose(enhanced.numpy(), coloured[top:top + rows, left:left + cols],
                               atol=1e-6)
    # Unbatched parameters and no crop: the whole photo, coloured.
    whole, box = operators.enhance_photo(photo, {k: parameters[k][0] for k in
                                                 operators.COLOR_PARAMETERS})
    np.testing.assert_array_equal(box.numpy(), [0, 0, 45, 70])
    np.testing.assert_allclose(whole.numpy(), coloured, atol=1e-6)


def test_enhance_batch_colours_then_samples_the_crop():
    rng = np.random.default_rng(10)
    images = rng.uniform(size=(2, 30, 30, 3)).astype(np.float32)
    parameters = operators.color_parameters(rng.normal(size=(2, 6)).astype(np.float32))
    parameters.update(operators.crop_parameters(rng.normal(size=(2, 4)).astype(np.float32)))
    got = operators.enhance_batch(images, parameters, output_size=16).numpy()
    expected = operators.sample_crop(operators.enhance_color(images, parameters),
                                     parameters["crop_scale"], parameters["crop_translation"],
                                     16).numpy()
    np.testing.assert_allclose(got, expected, atol=1e-6)
    assert got.shape == (2, 16, 16, 3)
