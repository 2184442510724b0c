"""datasets.dped: DPED's on-disk layout, for either `dped/` or `dped/<phone>/`."""
import logging
import os

import numpy as np
import pytest
from PIL import Image

from datasets import dped, unpaired


def _jpeg(path, value=0, size=(12, 12)):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full(size + (3,), value, np.uint8)).save(path, quality=95)


def _fake_dped(root, phone="iphone", n_train=5, n_test=3, full_size=2, test=True):
    """dped/<phone>/... with tiny JPEGs, as in the real archive."""
    base = root / "dped" / phone
    for i in range(n_train):
        _jpeg(base / "training_data" / phone / f"{i}.jpg", 10 * i)
        _jpeg(base / "training_data" / "canon" / f"{i}.jpg", 10 * i + 5)
    if test:
        for i in range(n_test):
            _jpeg(base / "test_data" / "patches" / phone / f"{i}.jpg", 100 + i)
            _jpeg(base / "test_data" / "patches" / "canon" / f"{i}.jpg", 150 + i)
        for i in range(full_size):
            _jpeg(base / "test_data" / "full_size_test_images" / f"{i}.jpg", 200, (20, 30))
    return root / "dped"


@pytest.mark.parametrize("phone", dped.PHONES)
def test_loads_from_the_dped_root_and_from_the_phone_folder(tmp_path, phone):
    root = _fake_dped(tmp_path, phone, n_train=12)
    files = dped.dped_files(root, phone)
    again = dped.dped_files(root / phone, phone)
    assert files == again
    assert files.root == str(root / phone) and files.phone == phone
    assert [os.path.basename(p) for p in files.train_source] == [f"{i}.jpg" for i in range(12)]
    assert files.train_source[0] == str(root / phone / "training_data" / phone / "0.jpg")
    assert files.train_target[11] == str(root / phone / "training_data" / "canon" / "11.jpg")
    assert len(files.test_pairs) == 3
    for i, (source, target) in enumerate(files.test_pairs):
        assert source == str(root / phone / "test_data" / "patches" / phone / f"{i}.jpg")
        assert target == str(root / phone / "test_data" / "patches" / "canon" / f"{i}.jpg")
    assert [os.path.basename(p) for p in files.full_size] == ["0.jpg", "1.jpg"]


def test_any_phone_name_and_optional_test_data(tmp_path, caplog):
    root = _fake_dped(tmp_path, "phone", test=False)
    with caplog.at_level(logging.WARNING):
        files = dped.dped_files(root, "phone")
    assert len(files.train_source) == len(files.train_target) == 5
    assert files.test_pairs == [] and files.full_size == []
    assert "no test patch pairs" in caplog.text and "no full-size test images" in caplog.text


def test_missing_training_folders_name_the_path(tmp_path):
    root = _fake_dped(tmp_path, "sony")
    with pytest.raises(ValueError, match=r"blackberry.*training_data"):
        dped.dped_files(root, "blackberry")
    with pytest.raises(ValueError, match="nowhere"):
        dped.dped_files(tmp_path / "nowhere", "sony")
    canon = root / "sony" / "training_data" / "canon"
    for name in os.listdir(canon):
        os.remove(canon / name)
    os.rmdir(canon)
    with pytest.raises(ValueError, match=r"training_data.canon"):
        dped.dped_files(root, "sony")


def test_unmatched_test_patch_is_reported(tmp_path):
    root = _fake_dped(tmp_path, "iphone")
    _jpeg(root / "iphone" / "test_data" / "patches" / "iphone" / "41.jpg")
    with pytest.raises(ValueError, match=r"1 source image.*41"):
        dped.dped_files(root, "iphone")


def test_training_draws_the_two_lists_independently(tmp_path):
    root = _fake_dped(tmp_path, "iphone", n_train=6)
    files = dped.dped_files(root, "iphone")
    ds = unpaired.make_unpaired_dataset(files.train_source, files.train_target, patch_size=12,
                                        batch_size=6, seed=0, augment=False,
                                        images_per_group=6, patches_per_image=1)
    (source, target), = [(np.asarray(s), np.asarray(t)) for (s, t), _ in zip(ds, range(1))]
    # One group = one epoch of 6 files, one crop each. Phone file i is flat 10 i, canon 10 i + 5.
    source_ids = np.rint(source.mean(axis=(1, 2, 3)) * 255 / 10).astype(int)
    target_ids = np.rint((target.mean(axis=(1, 2, 3)) * 255 - 5) / 10).astype(int)
    assert sorted(source_ids) == list(range(6)) and sorted(target_ids) == list(range(6))
    assert list(source_ids) != list(target_ids)  # two independent orders, no pairing
