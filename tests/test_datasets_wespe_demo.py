"""datasets.wespe_demo: the embedded WESPE set (skimage photos, fixed cheap camera, DPED layout)."""
import csv
import os
import time

import numpy as np
import pytest

from datasets import dped, wespe_demo
from datasets.images import load_rgb8, to_uint8

PATCH = 32
N_TRAIN, N_TEST = 40, 8


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    out = tmp_path_factory.mktemp("wespe_demo")
    start = time.perf_counter()
    root = wespe_demo.build_wespe_demo(out, patch_size=PATCH, num_train_patches=N_TRAIN,
                                       num_test_patches=N_TEST, seed=0)
    return root, time.perf_counter() - start


def _crops(root):
    with open(os.path.join(root, wespe_demo.CROPS_CSV)) as f:
        return list(csv.DictReader(f))


def test_builds_a_dped_layout_quickly(tiny):
    root, seconds = tiny
    assert seconds < 20
    files = dped.dped_files(root, wespe_demo.PHONE)
    assert files.root == str(root)
    assert len(files.train_source) == len(files.train_target) == N_TRAIN
    assert len(files.test_pairs) == N_TEST and len(files.full_size) == 2
    assert files.train_source[0].endswith(os.path.join("training_data", "phone", "0.png"))
    for path in files.train_source[:3] + files.train_target[:3] + list(files.test_pairs[0]):
        assert load_rgb8(path).shape == (PATCH, PATCH, 3)
    # Full-size test images are the held-out photos (chelsea 300x451, coffee 400x600).
    assert [load_rgb8(p).shape for p in files.full_size] == [(300, 451, 3), (400, 600, 3)]


def test_source_and_target_crops_never_pair_up(tiny):
    root, _ = tiny
    rows = _crops(root)
    phone = [r for r in rows if r["stream"] == "train_phone"]
    canon = [r for r in rows if r["stream"] == "train_canon"]
    test = [r for r in rows if r["stream"] == "test"]
    assert len(phone) == len(canon) == N_TRAIN and len(test) == N_TEST
    assert all(int(r["left"]) % 2 == 0 for r in phone)
    assert all(int(r["left"]) % 2 == 1 for r in canon)
    assert {r["photo"] for r in phone + canon} <= set(wespe_demo.TRAIN_PHOTOS)
    assert {r["photo"] for r in test} <= set(wespe_demo.TEST_PHOTOS)
    assert len({r["photo"] for r in phone + canon}) >= 3  # crops are spread over the photos


def test_test_pairs_are_the_documented_cheap_camera(tiny):
    root, _ = tiny
    files = dped.dped_files(root, wespe_demo.PHONE)
    residuals, clean_means, degraded_means = [], [], []
    for i, (degraded_path, clean_path) in enumerate(files.test_pairs):
        assert os.path.basename(degraded_path) == os.path.basename(clean_path) == f"{i}.png"
        clean, degraded = load_rgb8(clean_path), load_rgb8(degraded_path)
        # Exactly the cheap camera of the clean partner, with the documented noise generator.
        expected = to_uint8(
            wespe_demo.cheap_camera(clean, wespe_demo.noise_generator(0, "test", i)),
            input_precision=True)
        np.testing.assert_array_equal(degraded, expected)
        noiseless = wespe_demo.cheap_camera(clean)
        residuals.append(degraded / 255.0 - noiseless)
        clean_means.append(clean.reshape(-1, 3).mean(0) / 255.0)
        degraded_means.append(degraded.reshape(-1, 3).mean(0) / 255.0)
    # The noise: zero-mean Gaussian of sigma 0.03 (plus 8-bit rounding, sd 1/255/sqrt(12)).
    residuals = np.concatenate([r.ravel() for r in residuals])
    assert abs(residuals.mean()) < 0.003
    assert 0.027 < residuals.std() < 0.033
    # The colour cast and contrast, checked on the means against the documented numbers:
    # mean' = 0.5 + 0.6 (gain * mean - 0.5) (blur keeps the mean; little clipping here).
    clean_means, degraded_means = np.array(clean_means), np.array(degraded_means)
    predicted = 0.5 + 0.6 * (np.array([1.15, 1.0, 0.8]) * clean_means - 0.5)
    np.testing.assert_allclose(degraded_means, predicted, atol=0.02)


def test_source_domain_has_lower_contrast_and_a_warm_cast(tiny):
    root, _ = tiny
    files = dped.dped_files(root, wespe_demo.PHONE)
    phone = np.stack([load_rgb8(p) for p in files.train_source]) / 255.0
    canon = np.stack([load_rgb8(p) for p in files.train_target]) / 255.0
    assert phone.std() < 0.75 * canon.std()  # contrast 0.6
    assert np.quantile(phone, 0.01) > 0.1 and np.quantile(phone, 0.99) < 0.9  # [0.2, 0.8] + noise
    phone_rb = phone[..., 0].mean() - phone[..., 2].mean()
    canon_rb = canon[..., 0].mean() - canon[..., 2].mean()
    # R - B of the degraded set = 0.6 (1.15 R - 0.8 B): warmer for these photos.
    assert phone_rb > canon_rb


def test_cheap_camera_numbers():
    grey = np.full((8, 8, 3), 0.5, np.float32)
    np.testing.assert_allclose(wespe_demo.cheap_camera(grey)[4, 4], [0.545, 0.5, 0.44],
                               atol=1e-6)
    black, white = np.zeros((8, 8), np.uint8), np.full((8, 8, 3), 255, np.uint8)
    np.testing.assert_allclose(wespe_demo.cheap_camera(black), 0.2, atol=1e-6)  # gray input ok
    np.testing.assert_allclose(wespe_demo.cheap_camera(white)[0, 0], [0.8, 0.8, 0.68], atol=1e-6)
    # The blur: a single bright pixel spreads as a unit-sum Gaussian of sigma 1.
    dot = np.zeros((15, 15, 1), np.float32)
    dot[7, 7] = 1.0
    blurred = wespe_demo.gaussian_blur(dot, 1.0)[..., 0]
    assert np.isclose(blurred.sum(), 1.0, atol=1e-5)
    assert np.isclose(blurred[7, 8] / blurred[7, 7], np.exp(-0.5), rtol=1e-4)


def test_rebuild_is_a_no_op_and_new_parameters_rebuild(tiny, tmp_path, monkeypatch):
    root, _ = tiny
    calls = []
    monkeypatch.setattr(wespe_demo.demo, "load_colour_photos", lambda names: calls.append(names))
    assert wespe_demo.build_wespe_demo(root, patch_size=PATCH, num_train_patches=N_TRAIN,
                                       num_test_patches=N_TEST, seed=0) == root
    assert calls == []
    monkeypatch.undo()

    other = str(tmp_path / "other")
    wespe_demo.build_wespe_demo(other, patch_size=PATCH, num_train_patches=N_TRAIN,
                                num_test_patches=N_TEST, seed=0)
    for part in (("training_data", "phone", "7.png"), ("test_data", "patches", "canon", "3.png")):
        with open(os.path.join(root, *part), "rb") as a, \
                open(os.path.join(other, *part), "rb") as b:
            assert a.read() == b.read()  # the same seed gives the same files
    wespe_demo.build_wespe_demo(other, patch_size=PATCH, num_train_patches=10, num_test_patches=3,
                                seed=0)
    files = dped.dped_files(other, wespe_demo.PHONE)
    assert len(files.train_source) == len(files.train_target) == 10 and len(files.test_pairs) == 3
    with open(os.path.join(root, "training_data", "canon", "7.png"), "rb") as a, \
            open(os.path.join(other, "training_data", "canon", "7.png"), "rb") as b:
        assert a.read() == b.read()  # patch i does not depend on the counts
    with pytest.raises(ValueError, match="patch_size"):
        wespe_demo.build_wespe_demo(other, patch_size=400)


def test_command_line(tmp_path, capsys):
    from tools import build_wespe_demo

    assert build_wespe_demo.main(["tools.build_wespe_demo", f"--output_dir={tmp_path}",
                                  "--patch_size=24", "--num_train_patches=3",
                                  "--num_test_patches=2"]) == 0
    assert capsys.readouterr().out.strip() == str(tmp_path)
    assert len(dped.dped_files(tmp_path, "phone").train_source) == 3
