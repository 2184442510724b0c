import json

import keras
import numpy as np
import pytest

import nima
from nima.metrics import nima_metrics
from tests.keras_h5_files import write_keras_legacy_h5

PAPER_PARAMS = {"mobilenet": 3.22e6, "vgg16": 134.30e6}  # Table 2; Inception-v2 in its own test


@pytest.mark.parametrize("backbone", ["mobilenet", "vgg16"])
def test_trainable_parameter_count_matches_table_2(backbone):
    model = nima.build_nima(backbone)
    count = nima.count_trainable_params(model)
    assert abs(count - PAPER_PARAMS[backbone]) / PAPER_PARAMS[backbone] < 0.005, count


@pytest.mark.parametrize("backbone", ["mobilenet", "vgg16"])
def test_any_image_size_gives_a_distribution(backbone):
    """Any size from the backbone's smallest (nima.min_input_side) up."""
    model = nima.build_nima(backbone)
    side = nima.min_input_side(model)
    assert side == nima.MIN_INPUT_SIDE[backbone] == {"mobilenet": 32, "vgg16": 224}[backbone]
    for height, width in [(224, 224), (333, 500), (side, 2 * side)]:
        images = np.random.default_rng(0).random((1, height, width, 3), np.float32)
        distribution = np.asarray(model(images))
        assert distribution.shape == (1, 10)
        np.testing.assert_allclose(distribution.sum(axis=1), 1.0, rtol=1e-5)


def test_mean_and_std_score_against_numpy():
    rng = np.random.default_rng(3)
    p = rng.random((5, 10)); p /= p.sum(1, keepdims=True)
    scores = np.arange(1, 11)
    mean = (p * scores).sum(1)
    std = np.sqrt((p * (scores - mean[:, None]) ** 2).sum(1))
    np.testing.assert_allclose(np.asarray(nima.mean_score(p)), mean, rtol=1e-6)
    np.testing.assert_allclose(np.asarray(nima.std_score(p)), std, rtol=1e-6)
    # Hand-worked: all votes on 7 -> mean 7, std 0; half on 2, half on 4 -> mean 3, std 1.
    q = np.zeros((2, 10)); q[0, 6] = 1; q[1, [1, 3]] = 0.5
    np.testing.assert_allclose(np.asarray(nima.mean_score(q)), [7, 3], atol=1e-6)
    np.testing.assert_allclose(np.asarray(nima.std_score(q)), [0, 1], atol=1e-6)


def test_mobilenet_loads_keras_imagenet_file_and_matches_keras(tmp_path):
    reference = keras.applications.MobileNet(
        input_shape=(None, None, 3), include_top=False, weights=None
    )
    rng = np.random.default_rng(4)
    for weight in reference.weights:  # random batch-norm statistics too
        weight.assign(rng.normal(0, 0.1, weight.shape).astype("float32") + (
            1.0 if "variance" in weight.path or "gamma" in weight.path else 0.0))
    path = tmp_path / nima.KERAS_WEIGHT_FILES["mobilenet"]
    write_keras_legacy_h5(reference, path)
    ours = nima.build_backbone("mobilenet", weights=path)
    images = rng.random((2, 96, 128, 3)).astype("float32")
    expected = reference(keras.applications.mobilenet.preprocess_input(images * 255.0))
    np.testing.assert_allclose(np.asarray(ours(images)), np.asarray(expected), atol=1e-4)


@pytest.mark.slow
def test_vgg16_fc_layers_as_convolutions_match_keras_dense(tmp_path):
    reference = keras.applications.VGG16(include_top=True, weights=None)
    path = tmp_path / nima.KERAS_WEIGHT_FILES["vgg16"]
    write_keras_legacy_h5(reference, path)
    ours = nima.build_backbone("vgg16", weights=path)
    images = np.random.default_rng(5).random((1, 224, 224, 3)).astype("float32")
    fc2 = keras.Model(reference.input, reference.get_layer("fc2").output)
    expected = fc2(keras.applications.vgg16.preprocess_input(images * 255.0))
    ours_fc2 = np.asarray(ours(images, training=False)).reshape(1, -1)
    np.testing.assert_allclose(ours_fc2, np.asarray(expected), rtol=1e-4, atol=1e-4)


def test_weight_file_errors_name_the_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="nowhere.h5"):
        nima.build_backbone("mobilenet", weights=tmp_path / "nowhere.h5")
    small = keras.Sequential([keras.Input((8,)), keras.layers.Dense(2, name="conv1")])
    wrong = tmp_path / "wrong.h5"
    write_keras_legacy_h5(small, wrong)
    with pytest.raises(ValueError, match="wrong.h5"):
        nima.build_backbone("mobilenet", weights=wrong)
    with pytest.raises(ValueError, match="Unknown NIMA backbone"):
        nima.build_backbone("resnet")


def test_nima_metrics_against_independent_computation():
    rng = np.random.default_rng(6)
    true = rng.random((50, 10)) ** 2; true /= true.sum(1, keepdims=True)
    pred = 0.6 * true + 0.4 * rng.dirichlet(np.ones(10), 50)
    scores = np.arange(1, 11)
    t, p = true @ scores, pred @ scores
    ranks = lambda v: np.argsort(np.argsort(v))  # no ties in continuous data
    metrics = nima_metrics(true, pred)
    assert metrics["lcc"] == pytest.approx(np.corrcoef(t, p)[0, 1])
    assert metrics["srcc"] == pytest.approx(np.corrcoef(ranks(t), ranks(p))[0, 1])
    assert metrics["accuracy"] == pytest.approx(np.mean((t > 5) == (p > 5)))
    gaps = np.abs(np.cumsum(true, 1) - np.cumsum(pred, 1)).mean(1)
    assert metrics["emd"] == pytest.approx(gaps.mean())


@pytest.mark.parametrize("constant_side", ["predicted", "true"])
def test_nima_metrics_report_constant_scores_as_undefined_correlations(constant_side):
    """A model that predicts one score for every image (as a barely trained one does) has no
    correlation with the truth: None and a note, never NaN (which is not even valid JSON)."""
    rng = np.random.default_rng(7)
    varying = rng.dirichlet(np.ones(10), 8)
    constant = np.tile(rng.dirichlet(np.ones(10)), (8, 1))
    true, pred = (varying, constant) if constant_side == "predicted" else (constant, varying)
    metrics = nima_metrics(true, pred)
    assert metrics["lcc"] is None and metrics["srcc"] is None
    assert constant_side in metrics["correlation_note"]
    assert metrics["emd"] == pytest.approx(
        np.abs(np.cumsum(true, 1) - np.cumsum(pred, 1)).mean(1).mean())
    json.loads(json.dumps(metrics, allow_nan=False))  # strict JSON
