"""NIMA scoring of large photos: an area downscale to nima.SCORING_MAX_PIXELS first, in
`nima.downscale_for_scoring`, the NIMA serving signatures and tools.evaluate."""
import keras
import numpy as np
import tensorflow as tf

import nima
from tools import evaluate, export


def test_scoring_size_keeps_small_photos_and_the_aspect_ratio():
    assert nima.scoring_size(1080, 1920) == (1080, 1920)
    assert nima.scoring_size(6000, 8000) == (1254, 1672)
    assert 1254 * 1672 <= nima.SCORING_MAX_PIXELS


def test_downscale_is_an_area_mean_above_the_limit_only():
    images = np.random.default_rng(0).random((2, 40, 60, 3)).astype(np.float32)
    small = nima.downscale_for_scoring(images, max_pixels=600).numpy()
    blocks = images.reshape(2, 20, 2, 30, 2, 3).mean(axis=(2, 4))
    np.testing.assert_allclose(small, blocks, rtol=0, atol=1e-6)
    np.testing.assert_array_equal(nima.downscale_for_scoring(images, max_pixels=2400), images)
    function = tf.function(lambda x: nima.downscale_for_scoring(x, max_pixels=600),
                           input_signature=[tf.TensorSpec([None, None, None, 3])])
    np.testing.assert_allclose(function(images).numpy(), blocks, rtol=0, atol=1e-6)


def _tiny_scorer():
    """A stand-in for NIMA whose distribution depends on the scale of the photo."""
    keras.utils.set_random_seed(1)
    inputs = keras.Input((None, None, 3))
    x = keras.layers.Conv2D(4, 3, activation="relu",
                            kernel_initializer=keras.initializers.RandomNormal(stddev=2.0))(inputs)
    x = keras.layers.GlobalAveragePooling2D()(x)
    return keras.Model(inputs, keras.layers.Dense(nima.NUM_BUCKETS, activation="softmax")(x))


def test_signatures_and_evaluate_score_a_downscaled_copy_of_a_large_photo():
    model = _tiny_scorer()
    side = 1500  # 2.25 MP, above SCORING_MAX_PIXELS
    image = np.random.default_rng(1).random((1, side, side, 3)).astype(np.float32)
    expected = nima.mean_score(model(nima.downscale_for_scoring(image))).numpy()
    full = nima.mean_score(model(image)).numpy()
    assert abs(expected - full)[0] > 1e-4  # the downscale shows in the score
    serve, _ = export.nima_signatures(model)["serving_default"]
    np.testing.assert_allclose(serve(tf.constant(image))["mean_score"].numpy(), expected,
                               rtol=1e-5)
    np.testing.assert_allclose(evaluate.nima_mean_scores(model, [image[0]]), expected, rtol=1e-5)
    small = image[:, :500, :700]
    np.testing.assert_allclose(serve(tf.constant(small))["mean_score"].numpy(),
                               nima.mean_score(model(small)).numpy(), rtol=1e-6)
