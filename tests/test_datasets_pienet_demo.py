"""datasets.pienet_demo: the synthetic users of PieNet's CPU demo (issue 17)."""
import itertools
import os

import numpy as np
import pytest
from PIL import Image

from datasets import pienet, pienet_demo
from enhancers import filters

SMALL = dict(image_size=32, num_train=12, num_test=4, seed=0)


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    root = tmp_path_factory.mktemp("pienet_demo")
    return pienet_demo.build_pienet_demo(root, render=filters.apply, **SMALL)


def _load(root, folder, stem):
    return np.asarray(Image.open(os.path.join(root, folder, f"{stem}.png")))


def _tree(root):
    out = {}
    for directory, _, names in os.walk(root):
        for name in names:
            path = os.path.join(directory, name)
            with open(path, "rb") as f:
                out[os.path.relpath(path, root)] = f.read()
    return out


def test_recipes_are_filter_parameters_in_range():
    identity = filters.identity_parameters()
    assert set(pienet_demo.IDENTITY) == set(identity)
    for name, value in pienet_demo.IDENTITY.items():
        np.testing.assert_array_equal(np.asarray(value, np.float32), identity[name])
    for user in pienet_demo.USER_RECIPES:
        params = pienet_demo.recipe(user)
        for f in filters.FILTERS:  # representable by the filters' raw parameters
            assert params[f.name].shape == f.param_shape
            assert np.all(np.isfinite(f.raw_from_natural(params[f.name]))), (user, f.name)
    with pytest.raises(ValueError, match="no demo user"):
        pienet_demo.recipe("nobody")


def test_users_held_out_and_layout(built):
    training, held_out = pienet_demo.TRAINING_USERS, pienet_demo.HELD_OUT_USERS
    assert len(training) >= 6 and len(held_out) >= 2 and not set(training) & set(held_out)
    assert set(training) | set(held_out) == set(pienet_demo.USER_RECIPES)
    manifest = pienet_demo.read_demo_manifest(built)
    assert manifest["held_out_users"] == list(held_out)
    assert all(manifest["users"][u]["held_out"] == (u in held_out) for u in manifest["users"])
    assert manifest["users"]["faded"]["recipe"]["black_and_white"] == pytest.approx(0.6)
    assert {r["photo"] for k, r in manifest["inputs"].items() if k.startswith("test_")} <= set(
        pienet_demo.TEST_PHOTOS)
    assert not set(pienet_demo.TRAIN_PHOTOS) & set(pienet_demo.TEST_PHOTOS)

    users = pienet_demo.demo_users(built, "train")
    assert users.names == training
    assert users.stems == tuple(pienet_demo.stems("test", 4) + pienet_demo.stems("train", 12))
    assert [users.stems[j] for j in users.test] == pienet_demo.stems("test", 4)
    assert len(users.train) == 12 and not users.missing
    assert pienet_demo.demo_users(built, "held_out").names == held_out
    assert pienet_demo.demo_users(built, "all").names == training + held_out
    # The FiveK-like layout reads as it is, with user folders named after the users.
    direct = pienet.collect_users(input_dir=os.path.join(built, "input"),
                                  user_dirs=[os.path.join(built, u) for u in held_out],
                                  test_list=os.path.join(built, "test.txt"))
    assert direct.names == held_out and direct.test == users.test


def test_versions_are_the_recipes_rendered(built):
    x = _load(built, "input", "train_0003")
    assert x.shape == (32, 32, 3) and x.dtype == np.uint8
    for user in ("vivid", "soft_bright_cool"):
        expected = np.clip(np.asarray(filters.apply(x[None].astype(np.float32) / 255.0,
                                                    pienet_demo.recipe(user)))[0], 0, 1)
        np.testing.assert_array_equal(_load(built, user, "train_0003"),
                                      np.rint(expected * 255).astype(np.uint8))


def test_styles_differ_between_users_on_every_photo(built):
    for stem in pienet_demo.stems("test", 4) + pienet_demo.stems("train", 4):
        means = {u: _load(built, u, stem).reshape(-1, 3).mean(0) / 255.0
                 for u in pienet_demo.USER_RECIPES}
        for a, b in itertools.combinations(means, 2):
            assert np.linalg.norm(means[a] - means[b]) > 0.03, (stem, a, b)
    # ... every user's retouches are far from the input, and from every other user's (mean
    # absolute difference over the photos), so that no style is a near copy of another ...
    stems = pienet_demo.stems("test", 4) + pienet_demo.stems("train", 12)
    versions = {u: np.stack([_load(built, u, s) / 255.0 for s in stems])
                for u in ("input",) + tuple(pienet_demo.USER_RECIPES)}
    for a, b in itertools.combinations(versions, 2):
        assert np.abs(versions[a] - versions[b]).mean() > 0.05, (a, b)
    # ... and each user keeps a consistent direction: bright_warm is warmer and brighter than
    # the input on average, dark_moody darker.
    stems = pienet_demo.stems("train", 12)
    mean = {u: np.mean([_load(built, u, s).mean((0, 1)) for s in stems], 0)
            for u in ("input", "bright_warm", "dark_moody")}
    assert mean["bright_warm"].mean() > mean["input"].mean() > mean["dark_moody"].mean()
    warmth = {u: mean[u][0] - mean[u][2] for u in mean}
    assert warmth["bright_warm"] > warmth["input"]


def test_inputs_vary_lightly_and_streams_read_the_set(built):
    inputs = [_load(built, "input", s) for s in pienet_demo.stems("train", 12)]
    assert len({x.tobytes() for x in inputs}) == 12
    users = pienet_demo.demo_users(built, "train")
    k, positives, negatives = next(iter(pienet.make_triplet_dataset(users, batch_size=4, seed=0,
                                                                    size=32)))
    assert positives.shape == (4, 32, 32, 3) and k.numpy().max() < 6


def test_deterministic_idempotent_and_manifest_last(built, tmp_path):
    again = pienet_demo.build_pienet_demo(tmp_path / "again", render=filters.apply, **SMALL)
    assert _tree(again) == _tree(built)
    manifest = os.path.join(again, pienet_demo.MANIFEST)
    stamp = os.stat(manifest).st_mtime_ns
    sample = os.path.join(again, "faded", "test_0001.png")
    os.utime(sample, ns=(1, 1))
    pienet_demo.build_pienet_demo(again, render=filters.apply, **SMALL)  # a no-op
    assert os.stat(manifest).st_mtime_ns == stamp and os.stat(sample).st_mtime_ns == 1
    # Without its manifest (an interrupted build) or with a file missing, the set is rebuilt.
    os.remove(manifest)
    os.remove(sample)
    with pytest.raises(FileNotFoundError, match="no complete PieNet demo set"):
        pienet_demo.demo_users(again)
    pienet_demo.build_pienet_demo(again, render=filters.apply, **SMALL)
    assert _tree(again) == _tree(built)
    # Other parameters: rebuilt, and the files of the larger build are gone.
    smaller = dict(SMALL, num_train=5)
    pienet_demo.build_pienet_demo(again, render=filters.apply, **smaller)
    assert not os.path.exists(os.path.join(again, "vivid", "train_0007.png"))
    assert len(pienet_demo.demo_users(again).train) == 5
    assert _tree(again)["vivid/train_0004.png"] == _tree(built)["vivid/train_0004.png"]
    other_seed = pienet_demo.build_pienet_demo(tmp_path / "seed1", render=filters.apply,
                                               **dict(SMALL, seed=1))
    assert _tree(other_seed)["input/train_0000.png"] != _tree(built)["input/train_0000.png"]


def test_argument_errors(built, tmp_path):
    with pytest.raises(ValueError, match="image_size"):
        pienet_demo.build_pienet_demo(tmp_path, render=filters.apply, image_size=16)
    with pytest.raises(ValueError, match="num_train"):
        pienet_demo.build_pienet_demo(tmp_path, render=filters.apply, num_test=0)
    with pytest.raises(ValueError, match="which"):
        pienet_demo.demo_users(built, "everyone")
