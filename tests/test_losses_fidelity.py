"""losses.fidelity (CAN + NIMA equation 1's f) against hand-worked values and NumPy."""
import importlib

import numpy as np
import pytest

import losses
from losses import FIDELITY_LOSSES, HUBER_DELTA, fidelity_loss, huber_loss, l1_loss, l2_loss


def test_fidelity_terms_hand_worked():
    # One example of two pixels with errors 0.05 and 0.3; a second of errors 0 and -0.2.
    reference = np.zeros((2, 1, 2, 1), "float32")
    output = np.array([[[[0.05], [0.3]]], [[[0.0], [-0.2]]]], "float32")
    # L2: (0.0025 + 0.09) / 2 = 0.04625 and (0 + 0.04) / 2 = 0.02.
    np.testing.assert_allclose(np.asarray(l2_loss(reference, output)), [0.04625, 0.02], rtol=1e-6)
    # L1: (0.05 + 0.3) / 2 = 0.175 and (0 + 0.2) / 2 = 0.1.
    np.testing.assert_allclose(np.asarray(l1_loss(reference, output)), [0.175, 0.1], rtol=1e-6)
    # Huber, delta 0.1: 0.5 * 0.05^2 = 0.00125 and 0.1 * (0.3 - 0.05) = 0.025 -> mean 0.013125;
    # 0 and 0.1 * (0.2 - 0.05) = 0.015 -> mean 0.0075.
    np.testing.assert_allclose(np.asarray(huber_loss(reference, output, 0.1)),
                               [0.013125, 0.0075], rtol=1e-6)
    for loss in (l2_loss, l1_loss, huber_loss):
        assert loss(reference, output).dtype == "float32"
        assert tuple(loss(reference, output).shape) == (2,)


def test_fidelity_terms_against_numpy():
    rng = np.random.default_rng(2)
    reference = rng.random((2, 5, 6, 3)).astype("float32")
    output = reference + rng.normal(0, 0.2, reference.shape).astype("float32")
    error = (output - reference).astype(np.float64).reshape(2, -1)
    np.testing.assert_allclose(np.asarray(l2_loss(reference, output)), (error**2).mean(1),
                               rtol=1e-5)
    np.testing.assert_allclose(np.asarray(l1_loss(reference, output)), np.abs(error).mean(1),
                               rtol=1e-5)
    delta = 0.1
    a = np.abs(error)
    huber = np.where(a <= delta, 0.5 * a**2, delta * (a - 0.5 * delta)).mean(1)
    np.testing.assert_allclose(np.asarray(huber_loss(reference, output, delta)), huber, rtol=1e-5)
    np.testing.assert_allclose(np.asarray(fidelity_loss("huber", 0.1)(reference, output)), huber,
                               rtol=1e-5)


def test_fidelity_loss_by_name():
    assert FIDELITY_LOSSES == ("l2", "l1", "huber") and HUBER_DELTA == 0.1
    assert fidelity_loss("l2") is l2_loss and fidelity_loss("l1") is l1_loss
    with pytest.raises(ValueError, match="l2, l1, huber"):
        fidelity_loss("l3")


def test_fidelity_lives_in_its_own_module_and_nima_loss_keeps_only_nima_loss():
    fidelity = importlib.import_module("losses.fidelity")
    # `losses.nima_loss` is the function (re-exported), so reach the module through importlib.
    nima_module = importlib.import_module("losses.nima_loss")
    assert losses.l2_loss is fidelity.l2_loss and nima_module.nima_loss is losses.nima_loss
    public = {name for name in vars(nima_module) if not name.startswith("_")}
    assert not public & {"l2_loss", "l1_loss", "huber_loss", "fidelity_loss", "FIDELITY_LOSSES",
                         "HUBER_DELTA"}
