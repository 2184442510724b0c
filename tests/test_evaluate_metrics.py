"""tools.evaluate: PSNR, SSIM, entropy, PNG bpp and NIMA scores against independent values.

References are scikit-image (PSNR, SSIM, Shannon entropy), `tf.image.ssim`, and values worked out
by hand.
"""
import io

import keras
import numpy as np
import pytest
import tensorflow as tf
from PIL import Image
from skimage.measure import shannon_entropy
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

import nima
from datasets.images import to_uint8
from tools import evaluate


@pytest.fixture
def rng():
    return np.random.default_rng(2024)


def _pair(rng, shape=(40, 48, 3), noise=0.1):
    """A smooth-ish image and a noisy copy, both float64 in [0, 1]."""
    y, x = np.mgrid[: shape[0], : shape[1]]
    base = 0.5 + 0.4 * np.sin(x[..., None] / 5.0 + y[..., None] / 7.0 + np.arange(3))
    a = np.clip(base + 0.05 * rng.standard_normal(shape), 0, 1)
    b = np.clip(a + noise * rng.standard_normal(shape), 0, 1)
    return a, b


def _skimage_ssim(a, b):
    return structural_similarity(
        a, b, gaussian_weights=True, sigma=1.5, use_sample_covariance=False, data_range=1,
        channel_axis=-1,
    )


@pytest.mark.parametrize("noise", [0.02, 0.1, 0.3])
def test_psnr_matches_skimage(rng, noise):
    a, b = _pair(rng, noise=noise)
    assert evaluate.psnr(a, b) == pytest.approx(peak_signal_noise_ratio(a, b, data_range=1),
                                                abs=1e-10)
    # float32 inputs, another data range, and uint8 inputs read as v / 255
    assert evaluate.psnr(a.astype(np.float32), b.astype(np.float32)) == pytest.approx(
        peak_signal_noise_ratio(a, b, data_range=1), abs=1e-4)
    assert evaluate.psnr(2 * a, 2 * b, data_range=2.0) == pytest.approx(
        evaluate.psnr(a, b), abs=1e-10)
    a8, b8 = to_uint8(a), to_uint8(b)
    assert evaluate.psnr(a8, b8) == pytest.approx(
        peak_signal_noise_ratio(a8, b8, data_range=255), abs=1e-10)


def test_psnr_hand_worked():
    a = np.zeros((4, 4, 3))
    b = np.full((4, 4, 3), 0.1)  # MSE 0.01 -> 20 dB
    assert evaluate.psnr(a, b) == pytest.approx(20.0, abs=1e-12)
    assert evaluate.psnr(a, a) == float("inf")
    with pytest.raises(ValueError, match="shape"):
        evaluate.psnr(a, np.zeros((4, 5, 3)))


@pytest.mark.parametrize("noise", [0.02, 0.1, 0.3])
def test_ssim_matches_skimage_and_tf(rng, noise):
    a, b = _pair(rng, noise=noise)
    value = evaluate.ssim(a, b)
    assert value == pytest.approx(_skimage_ssim(a, b), abs=1e-10)
    # tf.image.ssim computes in float32 with the same window, constants and 'valid' region.
    tf_value = float(tf.image.ssim(a.astype(np.float32), b.astype(np.float32), max_val=1.0))
    assert value == pytest.approx(tf_value, abs=1e-5)


def test_ssim_non_square_and_averaged_over_channels(rng):
    a, b = _pair(rng, shape=(23, 61, 3))
    assert evaluate.ssim(a, b) == pytest.approx(_skimage_ssim(a, b), abs=1e-10)
    per_channel = [
        structural_similarity(a[..., c], b[..., c], gaussian_weights=True, sigma=1.5,
                              use_sample_covariance=False, data_range=1)
        for c in range(3)
    ]
    assert evaluate.ssim(a, b) == pytest.approx(np.mean(per_channel), abs=1e-10)


def test_ssim_identity_and_limits(rng):
    a, _ = _pair(rng)
    assert evaluate.ssim(a, a) == pytest.approx(1.0, abs=1e-12)
    assert evaluate.ssim(a, 1 - a) < 0  # anti-correlated structure
    with pytest.raises(ValueError, match="11"):
        evaluate.ssim(np.zeros((10, 40, 3)), np.zeros((10, 40, 3)))


def test_entropy_matches_skimage_on_pillow_luma(rng):
    image = rng.random((30, 40, 3))
    gray = np.asarray(Image.fromarray(to_uint8(image)).convert("L"))
    assert evaluate.entropy(image) == pytest.approx(shannon_entropy(gray, base=2), abs=1e-12)


def test_entropy_hand_worked():
    half = np.zeros((8, 8, 3))
    half[:, 4:] = 1.0
    assert evaluate.entropy(half) == pytest.approx(1.0, abs=1e-12)
    assert evaluate.entropy(np.full((8, 8, 3), 0.3)) == 0.0
    quarters = np.zeros((8, 8, 3))
    for k, value in enumerate([0.0, 0.25, 0.5, 0.75]):
        quarters[2 * k: 2 * k + 2] = value
    assert evaluate.entropy(quarters) == pytest.approx(2.0, abs=1e-12)
    # Luma of pure red, green, blue (8-bit): 0.299, 0.587, 0.114 of 255, rounded -> 76, 150, 29;
    # three equally frequent gray levels -> log2(3) bits.
    rgb = np.zeros((3, 5, 3))
    for c in range(3):
        rgb[c, :, c] = 1.0
    np.testing.assert_array_equal(evaluate._gray8(rgb)[:, 0], [76, 150, 29])
    assert evaluate.entropy(rgb) == pytest.approx(np.log2(3), abs=1e-12)


def test_png_bits_per_pixel(rng):
    constant = np.full((64, 64, 3), 0.4)
    assert evaluate.png_bits_per_pixel(constant) < 0.5
    noise = rng.random((64, 64, 3))
    # 24 bits of incompressible data per pixel, plus one filter byte per row and the headers.
    assert 24.0 < evaluate.png_bits_per_pixel(noise) < 24.6
    # It is the size of the Pillow PNG file (compress_level 6), and that file is lossless.
    buffer = io.BytesIO()
    Image.fromarray(to_uint8(noise)).save(buffer, format="PNG", compress_level=6)
    assert evaluate.png_bits_per_pixel(noise) == 8 * len(buffer.getvalue()) / (64 * 64)
    np.testing.assert_array_equal(
        np.asarray(Image.open(io.BytesIO(buffer.getvalue()))), to_uint8(noise))


@pytest.fixture(scope="module")
def tiny_nima():
    """A fully convolutional stand-in for NIMA: any size -> (batch, 10) softmax."""
    keras.utils.set_random_seed(3)
    inputs = keras.Input((None, None, 3))
    x = keras.layers.Conv2D(8, 3, activation="relu")(inputs)
    x = keras.layers.GlobalAveragePooling2D()(x)
    outputs = keras.layers.Dense(10, activation="softmax", kernel_initializer="random_normal")(x)
    return keras.Model(inputs, outputs)


def test_nima_mean_scores_each_image_at_its_own_size(tiny_nima, rng):
    images = [rng.random((20, 24, 3)), rng.random((20, 24, 3)), rng.random((31, 17, 3)),
              rng.random((20, 24, 3))]
    expected = [
        float(nima.mean_score(tiny_nima(image[None].astype(np.float32), training=False))[0])
        for image in images
    ]
    scores = evaluate.nima_mean_scores(tiny_nima, images)
    assert scores.shape == (4,) and scores.dtype == np.float64
    np.testing.assert_allclose(scores, expected, atol=1e-5)
    assert np.ptp(scores) > 1e-4  # the stand-in does look at the image
    # Batching groups consecutive same-size images only; the scores do not change.
    np.testing.assert_allclose(evaluate.nima_mean_scores(tiny_nima, iter(images), batch=3),
                               expected, atol=1e-5)
    assert evaluate.nima_mean_scores(tiny_nima, []).shape == (0,)


def test_no_reference_figures(tiny_nima, rng):
    images = [rng.random((20, 24, 3)), np.full((16, 16, 3), 0.5), rng.random((12, 30, 3))]
    figures = evaluate.no_reference_figures(images)
    assert set(figures) == {"entropy", "png_bpp"}
    assert figures["entropy"] == pytest.approx(np.mean([evaluate.entropy(i) for i in images]))
    assert figures["png_bpp"] == pytest.approx(
        np.mean([evaluate.png_bits_per_pixel(i) for i in images]))
    with_nima = evaluate.no_reference_figures(iter(images), nima_model=tiny_nima)
    assert with_nima["nima_mean"] == pytest.approx(
        evaluate.nima_mean_scores(tiny_nima, images).mean(), abs=1e-6)
    assert with_nima["entropy"] == figures["entropy"]


def test_full_reference_figures(rng):
    pairs = [_pair(rng, noise=n) for n in (0.05, 0.2)]
    outputs, references = [p[1] for p in pairs], [p[0] for p in pairs]
    figures = evaluate.full_reference_figures(outputs, references)
    assert figures["psnr"] == pytest.approx(
        np.mean([peak_signal_noise_ratio(r, o, data_range=1) for o, r in zip(outputs, references)]))
    assert figures["ssim"] == pytest.approx(
        np.mean([_skimage_ssim(o, r) for o, r in zip(outputs, references)]), abs=1e-10)
    with pytest.raises(ValueError, match="references"):
        evaluate.full_reference_figures(outputs, references[:1])
