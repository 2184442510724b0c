"""datasets.pienet: PieNet's users (FiveK experts, extra user folders), the split, the triplet
stream and the paired stream (sections 4.1-4.2)."""
import logging

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from datasets import pienet
from datasets.pipeline import DecodeFailures

S = 8  # stream views, pixels


def _save(path, pixels):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels).save(path)
    return str(path)


def _value(user, photo):
    """The constant value of `user`'s version of `photo` (user -1: the input)."""
    return 40 + 25 * photo + 5 * (user + 1)


def _constant(value, shape=(12, 16)):
    return np.full(shape + (3,), value, np.uint8)


def _fivek(root, n, experts="ABCDE", extra=()):
    """input/a<j>-p.png and expert<X>/a<j>-p.png, each a constant _value(user, j); extra user
    folders under root/users/<name>."""
    for j in range(n):
        stem = f"a{j + 1:04d}-p"
        _save(root / "input" / f"{stem}.png", _constant(_value(-1, j)))
        for k, expert in enumerate(experts):
            _save(root / f"expert{expert}" / f"{stem}.jpg", _constant(_value(k, j)))
        for i, name in enumerate(extra):
            _save(root / "users" / name / f"{stem}.png", _constant(_value(len(experts) + i, j)))
    return root


def _take(ds, count):
    return [tuple(t.numpy() for t in element) for element in ds.take(count)]


# --------------------------------------------------------------------------- users


def test_fivek_experts_and_extra_users_with_missing_photos(tmp_path, caplog):
    root = _fivek(tmp_path, 6, experts="ABCDE", extra=("lightroom_vivid", "retinex"))
    (root / "expertB" / "a0002-p.jpg").unlink()
    (root / "users" / "retinex" / "a0005-p.png").unlink()
    _save(root / "users" / "retinex" / "a0099-orphan.png", _constant(1))
    with caplog.at_level(logging.WARNING):
        users = pienet.collect_users(
            fivek_dir=root, user_dirs=[root / "users" / "lightroom_vivid",
                                       root / "users" / "retinex"])
    assert users.names == ("A", "B", "C", "D", "E", "lightroom_vivid", "retinex")
    assert users.stems == tuple(f"a{j:04d}-p" for j in range(1, 7))
    assert users.retouches[1][1] is None and users.retouches[6][4] is None
    assert users.retouches[0][1].endswith("expertA/a0002-p.jpg")
    assert 1 not in users.photos("B", "all") and 4 not in users.photos("retinex", "all")
    assert users.photos("A", "all") == list(range(6))
    assert sum("a0002-p.png" in line and "expertB" in line for line in users.missing) == 1
    assert sum("a0099-orphan.png" in line for line in users.missing) == 1
    assert any("a0099-orphan.png" in r.getMessage() for r in caplog.records)
    assert users.pairs("E", "all")[2] == (users.inputs[2], users.retouches[4][2])
    sub = users.select(["retinex", 0])
    assert sub.names == ("retinex", "A") and sub.retouches[1] == users.retouches[0]


def test_expert_folder_names_and_input_dir_users(tmp_path):
    root = tmp_path / "f"
    _fivek(root, 3, experts="AC")
    (root / "expertC").rename(root / "FiveK_C")
    users = pienet.collect_users(fivek_dir=root, experts="A,C")
    assert users.names == ("A", "C") and users.retouches[1][0].endswith("FiveK_C/a0001-p.jpg")
    users = pienet.collect_users(input_dir=root / "input", user_dirs=[root / "expertA"],
                                 user_names=["me"])
    assert users.names == ("me",)
    # An input no user has is dropped; it is named among the missing.
    _save(root / "input" / "a0009-lonely.png", _constant(3))
    users = pienet.collect_users(fivek_dir=root, experts="AC")
    assert "a0009-lonely" not in users.stems
    assert any("a0009-lonely" in line for line in users.missing)


def test_user_errors(tmp_path):
    root = _fivek(tmp_path, 3, experts="A")
    with pytest.raises(ValueError, match="exactly one of --fivek_dir"):
        pienet.collect_users()
    with pytest.raises(ValueError, match="expert B"):
        pienet.collect_users(fivek_dir=root, experts="AB")
    with pytest.raises(ValueError, match="named expertA"):
        pienet.collect_users(input_dir=root / "input",
                             user_dirs=[root / "expertA", root / "expertA"])
    with pytest.raises(ValueError, match="named A"):
        pienet.collect_users(fivek_dir=root, experts="A", user_dirs=[root / "expertA"],
                             user_names=["A"])
    with pytest.raises(ValueError, match="no users"):
        pienet.collect_users(fivek_dir=root, experts="")
    with pytest.raises(ValueError, match="no user 'Z'"):
        pienet.collect_users(fivek_dir=root, experts="A").photos("Z")


# --------------------------------------------------------------------------- split


def test_seeded_split_sizes_and_disjoint():
    stems = [f"a{j:04d}" for j in range(1, 5001)]
    train, test = pienet.split_photos(stems)
    assert len(train) == 4500 and len(test) == 500  # section 4.1
    assert not set(train) & set(test) and sorted(train + test) == list(range(5000))
    assert (train, test) == pienet.split_photos(stems, seed=pienet.SPLIT_SEED)
    assert pienet.split_photos(stems, seed=1)[1] != test
    train, test = pienet.split_photos(stems[:30], num_test=7)
    assert len(test) == 7 and len(train) == 23
    assert pienet.split_photos(stems[:3])[1] != [] and len(pienet.split_photos(stems[:3])[1]) == 1


def test_split_files(tmp_path):
    root = _fivek(tmp_path, 6, experts="AB")
    (tmp_path / "test.txt").write_text("2\na0005-p  # by stem\n")
    users = pienet.collect_users(fivek_dir=root, experts="AB", test_list=tmp_path / "test.txt")
    assert users.test == (1, 4) and users.train == (0, 2, 3, 5)
    (tmp_path / "train.txt").write_text("1\n2\n")
    with pytest.raises(ValueError, match="same photos.*a0002-p"):
        pienet.collect_users(fivek_dir=root, experts="AB", train_list=tmp_path / "train.txt",
                             test_list=tmp_path / "test.txt")
    (tmp_path / "bad.txt").write_text("77\n")
    with pytest.raises(ValueError, match="bad.txt.*77"):
        pienet.collect_users(fivek_dir=root, experts="AB", test_list=tmp_path / "bad.txt")


# --------------------------------------------------------------------------- triplets


@pytest.fixture(scope="module")
def users(tmp_path_factory):
    root = _fivek(tmp_path_factory.mktemp("fivek"), 8, experts="ABC", extra=("x",))
    (root / "expertB" / "a0003-p.jpg").unlink()
    return pienet.collect_users(fivek_dir=root, experts="ABC", user_dirs=[root / "users" / "x"],
                                num_test=2)


def _triplets(users, count, **kwargs):
    kwargs.setdefault("batch_size", 4)
    kwargs.setdefault("seed", 3)
    ds = pienet.make_triplet_dataset(users, size=S, with_sources=True, **kwargs)
    return _take(ds, count)


def _level(image):
    return int(round(float(image.mean()) * 255))


def test_triplets_positives_are_the_users_and_negatives_never_are(users):
    seen_inputs = seen_others = 0
    for k, positives, negatives, sources in _triplets(users, 12, same_photo_fraction=0.5):
        assert positives.shape == negatives.shape == (4, S, S, 3) and positives.dtype == np.float32
        for b in range(4):
            j, j_neg, version = sources[b]
            assert j in users.train and j_neg in users.train
            assert users.retouches[k[b]][j] is not None
            # JPEG retouches of a constant colour decode within a level or two.
            assert abs(_level(positives[b]) - _value(k[b], j)) <= 2
            assert version != k[b]
            assert abs(_level(negatives[b]) - _value(version, j_neg)) <= 2
            if version == -1:
                seen_inputs += 1
            else:
                seen_others += 1
                assert users.retouches[version][j_neg] is not None
    assert seen_inputs and seen_others
    # Negatives of the positive's own photo: its input or another user's version of it.
    for k, positives, negatives, sources in _triplets(users, 4, same_photo_fraction=1.0):
        assert np.all(sources[:, 0] == sources[:, 1]) and np.all(sources[:, 2] != k)
        assert not np.allclose(positives, negatives, atol=1.5 / 255, rtol=0)


def test_triplet_epoch_visits_every_users_training_photo(users):
    items = {(k, j) for k in range(4) for j in users.photos(k)}
    got = set()
    for k, _, _, sources in _triplets(users, len(items), batch_size=1):
        got.update(zip(k.tolist(), sources[:, 0].tolist()))
    assert got == items


def test_triplets_deterministic_resumable_and_sharded(users):
    def flat(batches):
        return [tuple(np.concatenate([np.ravel(t[b]) for t in batch]).tolist())
                for batch in batches for b in range(batch[0].shape[0])]

    run = flat(_triplets(users, 8, batch_size=2))
    assert run == flat(_triplets(users, 8, batch_size=2))
    assert run != flat(_triplets(users, 8, batch_size=2, seed=4))
    assert flat(_triplets(users, 5, batch_size=2, start_step=3)) == run[6:16]
    shards = [flat(_triplets(users, 4, batch_size=2, num_shards=2, shard_index=i))
              for i in range(2)]
    assert shards[0] == run[0:16:2] and shards[1] == run[1:16:2]
    resumed = flat(_triplets(users, 3, batch_size=2, num_shards=2, shard_index=1, start_step=1))
    assert resumed == shards[1][2:]


def test_triplet_views_rotate(tmp_path):
    gradient = np.zeros((10, 10, 3), np.uint8)
    gradient[..., 0] = np.arange(10)[:, None] * 20
    gradient[..., 1] = np.arange(10)[None, :] * 20
    _save(tmp_path / "in" / "p.png", gradient)
    _save(tmp_path / "u" / "p.png", gradient)
    users = pienet.collect_users(input_dir=tmp_path / "in", user_dirs=[tmp_path / "u"],
                                 num_test=0)
    ds = pienet.make_triplet_dataset(users, batch_size=1, seed=0, size=10)
    expected = [np.rot90(gradient, t) / 255.0 for t in range(4)]
    turns = set()
    for _, positive, _ in _take(ds, 24):
        turns.update(t for t in range(4) if np.allclose(positive[0], expected[t], atol=1e-6))
    assert turns == {0, 1, 2, 3}


# --------------------------------------------------------------------------- pairs


@pytest.fixture(scope="module")
def textured(tmp_path_factory):
    """Three photos of different sizes, user "neg" = 255 - input, user "swap" = input's
    channels reversed."""
    root = tmp_path_factory.mktemp("textured")
    rng = np.random.default_rng(0)
    for j, shape in enumerate([(20, 30), (28, 21), (24, 24)]):
        x = rng.integers(0, 256, size=shape + (3,), dtype=np.uint8)
        _save(root / "in" / f"p{j}.png", x)
        _save(root / "neg" / f"p{j}.png", 255 - x)
        _save(root / "swap" / f"p{j}.png", x[..., ::-1])
    return pienet.collect_users(input_dir=root / "in", user_dirs=[root / "neg", root / "swap"],
                                num_test=0)


def test_pairs_share_crop_and_rotation_pixel_for_pixel(textured):
    ds = pienet.make_paired_dataset(textured, batch_size=3, seed=1, size=12, with_sources=True)
    for inputs, targets, k, j in _take(ds, 6):
        assert inputs.shape == targets.shape == (3, 12, 12, 3)
        for b in range(3):
            if textured.names[k[b]] == "neg":  # resampling is linear: 255 - x within rounding
                assert np.abs(targets[b] - (1.0 - inputs[b])).max() <= 1.01 / 255
            else:  # exact
                np.testing.assert_array_equal(targets[b], inputs[b][..., ::-1])
            assert np.abs(inputs[b] - inputs[b][::-1]).max() > 0.05  # textured, not flat


def test_pairs_exact_at_full_size_and_retouch_of_another_size(tmp_path):
    # The input is a photo downscaled (as the stream resamples); user "big" retouched it at
    # twice the input's size.
    photo = np.random.default_rng(2).integers(0, 256, size=(32, 32, 3), dtype=np.uint8)
    x = np.asarray(Image.fromarray(photo).resize((16, 16), Image.Resampling.BILINEAR))
    _save(tmp_path / "in" / "p.png", x)
    _save(tmp_path / "u" / "p.png", 255 - x)
    _save(tmp_path / "big" / "p.png", 255 - photo)
    users = pienet.collect_users(input_dir=tmp_path / "in",
                                 user_dirs=[tmp_path / "u", tmp_path / "big"], num_test=0)
    ds = pienet.make_paired_dataset(users, batch_size=1, seed=0, size=16, crop_scale=(1, 1))
    for inputs, targets, k in _take(ds, 8):
        if k[0] == 0:
            np.testing.assert_allclose(targets[0], 1.0 - inputs[0], atol=1e-6)
            assert any(np.allclose(inputs[0], np.rot90(x, t) / 255.0) for t in range(4))
        else:
            assert np.abs(targets[0] - (1.0 - inputs[0])).max() <= 1.01 / 255


def test_pairs_resume_and_shard(textured):
    def flat(**kwargs):
        ds = pienet.make_paired_dataset(textured, seed=5, size=8, with_sources=True, **kwargs)
        return [np.concatenate([np.ravel(t[b]) for t in batch])
                for batch in _take(ds, 6) for b in range(batch[0].shape[0])]

    run = flat(batch_size=2)
    resumed = flat(batch_size=2, start_step=2)
    assert all(np.array_equal(a, b) for a, b in zip(resumed, run[4:]))
    for i in range(3):
        shard = flat(batch_size=1, num_shards=3, shard_index=i)[:4]
        assert all(np.array_equal(a, b) for a, b in zip(shard, run[i::3]))


# --------------------------------------------------------------------------- bad files


def test_bad_files_skipped_by_name_and_nothing_usable_raises(tmp_path):
    root = _fivek(tmp_path, 4, experts="AB")
    (root / "expertA" / "a0002-p.jpg").write_bytes(b"not a photo")
    users = pienet.collect_users(fivek_dir=root, experts="AB", num_test=0)
    failures = DecodeFailures()
    ds = pienet.make_paired_dataset(users, batch_size=2, seed=0, size=S,
                                    decode_failures=failures)
    assert len(_take(ds, 8)) == 8
    assert failures.count > 0 and "a0002-p.jpg" in failures.examples[0][0]
    for path in (root / "expertA").iterdir():
        path.write_bytes(b"junk")
    for path in (root / "expertB").iterdir():
        path.write_bytes(b"junk")
    failures = DecodeFailures()
    ds = pienet.make_triplet_dataset(users, batch_size=2, seed=0, size=S,
                                     decode_failures=failures)
    with pytest.raises(tf.errors.OpError, match="none of the first"):
        _take(ds, 1)
    assert failures.gave_up and "triplets" in failures.gave_up


def test_stream_argument_errors(users):
    with pytest.raises(ValueError, match="crop_scale"):
        pienet.make_paired_dataset(users, batch_size=1, seed=0, crop_scale=(0, 1))
    with pytest.raises(ValueError, match="start_step"):
        pienet.make_triplet_dataset(users, batch_size=1, seed=0, start_step=-1)
    with pytest.raises(ValueError, match="same_photo_fraction"):
        pienet.make_triplet_dataset(users, batch_size=1, seed=0, same_photo_fraction=2)
    with pytest.raises(ValueError, match="split"):
        pienet.make_triplet_dataset(users, batch_size=1, seed=0, split="dev")
