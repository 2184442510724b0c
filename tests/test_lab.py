"""enhancers.lab: sRGB <-> CIELab against scikit-image, round trips, the release's normalisation,
and finite gradients everywhere (black, white, the curves' knots)."""
import numpy as np
import pytest
import tensorflow as tf
from skimage import color

from enhancers import lab


def colours():
    """Random colours plus black, white, the primaries, greys and values at every knot."""
    rng = np.random.default_rng(0)
    random = rng.uniform(size=(2, 16, 16, 3))
    special = [[0, 0, 0], [1, 1, 1], [1, 0, 0], [0, 1, 0], [0, 0, 1], [0, 1, 1], [1, 0, 1],
               [1, 1, 0], [0.5, 0.5, 0.5], [0.04045] * 3, [0.0031308] * 3, [0.01, 0.02, 0.03],
               [1e-6, 0, 1], [0.999, 0.001, 0.5], [0.2, 0.2, 0.2], [0.0404, 0.0405, 0.9]]
    random[0, 0, :len(special)] = special
    return random


def test_rgb_to_lab_matches_scikit_image():
    rgb = colours()
    ours = lab.rgb_to_lab(rgb.astype(np.float32)).numpy()
    np.testing.assert_allclose(ours, color.rgb2lab(rgb), atol=1e-3)
    assert ours.dtype == np.float32 and ours.shape == rgb.shape


def test_lab_to_rgb_matches_scikit_image_and_round_trips():
    rgb = colours()
    reference_lab = color.rgb2lab(rgb)
    np.testing.assert_allclose(lab.lab_to_rgb(reference_lab.astype(np.float32)).numpy(),
                               color.lab2rgb(reference_lab), atol=1e-4)
    round_trip = lab.lab_to_rgb(lab.rgb_to_lab(rgb.astype(np.float32))).numpy()
    np.testing.assert_allclose(round_trip, rgb, atol=1e-4)
    # Lab -> RGB -> Lab for colours inside the gamut.
    back = lab.rgb_to_lab(lab.lab_to_rgb(reference_lab.astype(np.float32))).numpy()
    np.testing.assert_allclose(back, reference_lab, atol=2e-3)


def test_out_of_gamut_lab_is_clipped_as_scikit_image_does():
    far = np.array([[[50.0, 120.0, -120.0], [90.0, -100.0, 127.0], [5.0, 0.0, 127.0],
                     [20.0, 0.0, 187.0]]])
    with pytest.warns(UserWarning):  # scikit-image warns about the negative Z it clips
        reference = color.lab2rgb(far)
    np.testing.assert_allclose(lab.lab_to_rgb(far.astype(np.float32)).numpy(), reference,
                               atol=1e-4)
    unclipped = lab.lab_to_rgb(far.astype(np.float32), clip=False).numpy()
    assert unclipped.min() < 0.0 or unclipped.max() > 1.0


def test_normalisation_is_the_releases():
    values = np.float32([[100.0, -128.0, 127.0], [0.0, 0.0, 0.0]])
    normalised = lab.normalise_lab(values).numpy()
    np.testing.assert_allclose(normalised, [[1.0, 0.0, 1.0], [0.0, 128 / 255, 128 / 255]],
                               rtol=1e-6)
    np.testing.assert_allclose(lab.denormalise_lab(normalised).numpy(), values, atol=1e-5)
    rgb = colours().astype(np.float32)
    np.testing.assert_allclose(lab.normalised_lab_to_rgb(lab.rgb_to_normalised_lab(rgb)).numpy(),
                               rgb, atol=1e-4)
    # sRGB's gamut lies inside the normalised unit cube, L exactly in [0, 1].
    normalised = lab.rgb_to_normalised_lab(rgb).numpy()
    assert normalised.min() >= -1e-6 and normalised.max() <= 1 + 1e-6


@pytest.mark.parametrize("value", [0.0, 1.0, 0.04045, 0.0031308, 1e-7, 0.5])
def test_gradients_are_finite_at_black_white_and_the_knots(value):
    rgb = tf.Variable(np.full((1, 2, 2, 3), value, np.float32))
    with tf.GradientTape(persistent=True) as tape:
        lab_values = lab.rgb_to_lab(rgb)
        there = tf.reduce_sum(lab_values * [1.0, 0.3, -0.2])
        back = tf.reduce_sum(lab.lab_to_rgb(lab_values, clip=False))
        normalised = tf.reduce_sum(lab.normalised_lab_to_rgb(lab.rgb_to_normalised_lab(rgb),
                                                             clip=False))
    for loss in (there, back, normalised):
        gradient = tape.gradient(loss, rgb).numpy()
        assert np.all(np.isfinite(gradient)), (value, gradient)
    # The round trip is the identity: its gradient is 1 per channel (at the sRGB knot the two
    # curves' one-sided slopes differ by 1.7%, as the standard's rounded constants make them).
    atol = 0.02 if value == 0.04045 else 2e-3
    np.testing.assert_allclose(tape.gradient(back, rgb).numpy(), 1.0, atol=atol)


def test_gradients_are_finite_for_black_lab_and_any_lab():
    values = tf.Variable(np.float32([[0.0, 0.0, 0.0], [100.0, 0.0, 0.0], [0.0, 80.0, -80.0],
                                     [50.0, 0.0, 300.0], [8.0, 0.0, 0.0]]))
    with tf.GradientTape() as tape:
        loss = tf.reduce_sum(lab.lab_to_rgb(values, clip=False))
    assert np.all(np.isfinite(tape.gradient(loss, values).numpy()))


def test_negative_and_above_one_rgb_extend_the_curves():
    rgb = np.float32([[-0.1, 0.5, 1.2]])
    linear = lab.srgb_to_linear(rgb).numpy()
    np.testing.assert_allclose(linear[0, 0], -0.1 / 12.92, rtol=1e-6)
    np.testing.assert_allclose(linear[0, 2], ((1.2 + 0.055) / 1.055) ** 2.4, rtol=1e-5)
    np.testing.assert_allclose(lab.linear_to_srgb(linear).numpy(), rgb, atol=1e-5)
