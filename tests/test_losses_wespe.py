"""WESPE's losses (equations 1, 3-5) against NumPy and hand-worked values, and the VGG-19 file."""
import keras
import numpy as np
import pytest

from losses import (build_vgg19_features, content_loss, discriminator_accuracy,
                    modified_discriminator_loss, modified_generator_loss, total_variation_loss)
from tests.keras_h5_files import write_keras_legacy_h5


def test_content_loss_is_mean_squared_feature_difference():
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(2, 2, 3, 5, 4)).astype("float32")
    expected = ((a.astype(np.float64) - b) ** 2).sum(axis=(1, 2, 3)) / (3 * 5 * 4)  # / (C H W)
    np.testing.assert_allclose(content_loss(a, b).numpy(), expected, rtol=1e-6)
    assert content_loss(a, a).numpy().tolist() == [0.0, 0.0]


def test_total_variation_hand_worked():
    image = np.zeros((1, 2, 3, 1), np.float32)
    image[0, :, 2, 0] = 1.0  # a vertical edge: 2 of the 4 horizontal differences are 1
    image[0, 1, 0, 0] = 2.0  # and one pixel of 2 below a 0: vertical differences 2, 0, 0
    # horizontal: rows [0,0,1] and [2,0,1] -> diffs 0,1 and -2,1 -> mean square (0+1+4+1)/4
    # vertical: [2-0, 0-0, 1-1] -> mean square 4/3
    np.testing.assert_allclose(total_variation_loss(image).numpy(), [6 / 4 + 4 / 3], rtol=1e-6)
    assert total_variation_loss(np.ones((2, 4, 4, 3), np.float32)).numpy().tolist() == [0, 0]


def test_adversarial_losses_hand_worked():
    real = np.array([[0.5], [0.9]], np.float32)
    fake = np.array([[0.5], [0.2]], np.float32)
    np.testing.assert_allclose(modified_generator_loss(fake).numpy(),
                               [np.log(2.0), -np.log(0.2)], rtol=1e-6)
    np.testing.assert_allclose(modified_discriminator_loss(real, fake).numpy(),
                               [2 * np.log(2.0), -np.log(0.9) - np.log(0.8)], rtol=1e-6)
    np.testing.assert_allclose(discriminator_accuracy(real, fake).numpy(), [0.0, 1.0])
    # A saturated discriminator gives a large finite loss, never log(0).
    assert np.isfinite(modified_generator_loss(np.zeros((1, 1), np.float32)).numpy()).all()
    assert np.isfinite(modified_discriminator_loss(np.zeros((1, 1)), np.ones((1, 1))).numpy()).all()


def test_vgg19_features_load_a_local_keras_file_and_preprocess_inside(tmp_path):
    reference = keras.applications.VGG19(include_top=False, weights=None,
                                         input_shape=(None, None, 3))
    rng = np.random.default_rng(1)
    reference.set_weights([rng.normal(0, 0.02, w.shape).astype("float32")
                           for w in reference.get_weights()])
    path = tmp_path / "vgg19_weights_tf_dim_ordering_tf_kernels_notop.h5"
    write_keras_legacy_h5(reference, str(path))
    features = build_vgg19_features(str(path))
    assert not features.trainable_weights
    images = rng.uniform(size=(2, 48, 64, 3)).astype("float32")
    relu5_4 = keras.Model(reference.input, reference.get_layer("block5_conv4").output)
    expected = relu5_4(keras.applications.vgg19.preprocess_input(images * 255.0)).numpy()
    got = features(images).numpy()
    assert got.shape == (2, 3, 4, 512)
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-4 * np.abs(expected).max())


def test_vgg19_features_errors_name_the_file_and_layer(tmp_path):
    with pytest.raises(FileNotFoundError, match="nowhere.h5"):
        build_vgg19_features(str(tmp_path / "nowhere.h5"))
    with pytest.raises(ValueError, match="relu9_9"):
        build_vgg19_features(None, layer="relu9_9")
    bad = tmp_path / "bad.h5"
    bad.write_bytes(b"not an h5 file")
    with pytest.raises(ValueError, match="bad.h5"):
        build_vgg19_features(str(bad))
    assert build_vgg19_features(None, layer="relu2_2").output.shape[-1] == 128
