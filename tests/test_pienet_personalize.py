"""A new user's preference vector (section 3.4) and its file."""
import json

import numpy as np
import pytest
import tensorflow as tf

from enhancers.pienet import (PREFERENCE_FORMAT, RandomUnitVectors, load_preference,
                              preference_by_triplets, preference_from_photos, save_preference)


def flat_embedding(photos, training=False):
    """Stand-in embedding: a (1, 1, d) 'photo' is its own d-vector (not normalised)."""
    return tf.reshape(photos, (tf.shape(photos)[0], -1))


def mean_colour_embedding(photos, training=False):
    return tf.reduce_mean(photos, axis=(1, 2))


def _unit(x):
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


def test_mean_of_normalised_embeddings_not_renormalised():
    photos = np.random.default_rng(0).standard_normal((20, 1, 1, 8)).astype(np.float32)
    expected = _unit(photos.reshape(20, 8).astype(np.float64)).mean(0)
    got = preference_from_photos(flat_embedding, photos, batch_size=6)
    assert got.dtype == np.float32 and got.shape == (8,)
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-7)
    assert np.linalg.norm(got) < 0.9  # the mean of spread unit vectors lies inside the sphere
    np.testing.assert_allclose(preference_from_photos(flat_embedding, photos, normalize=True),
                               _unit(expected), rtol=1e-5, atol=1e-7)


def test_photos_of_different_sizes():
    rng = np.random.default_rng(1)
    photos = [rng.random((h, w, 3)).astype(np.float32) for h, w in ((5, 7), (9, 4), (6, 6))]
    expected = np.mean([_unit(p.mean((0, 1)).astype(np.float64)) for p in photos], axis=0)
    np.testing.assert_allclose(preference_from_photos(mean_colour_embedding, photos), expected,
                               rtol=1e-5)
    with pytest.raises(ValueError, match="no photos"):
        preference_from_photos(mean_colour_embedding, [])
    with pytest.raises(ValueError, match="no photos"):
        preference_from_photos(mean_colour_embedding, np.zeros((0, 4, 4, 3)))
    with pytest.raises(ValueError, match=r"got shape \(6, 6, 3\)"):
        preference_from_photos(mean_colour_embedding, photos[2])


def _numpy_adam_on_equation_4(initial, positive, negative, steps, lr, margin=0.2):
    """Keras's Adam (eps 1e-7) on the mean over all (p, n) pairs of equation 1, whose gradient
    in f is equation 4, 2 (f_n - f_p), where the pair's loss is positive."""
    f, m, v = initial.astype(np.float64), 0.0, 0.0
    for t in range(1, steps + 1):
        to_p = ((f - positive) ** 2).sum(1)
        to_n = ((f - negative) ** 2).sum(1)
        active = (to_p[:, None] - to_n[None, :] + margin) > 0
        gradient = (2 * (negative[None, :, :] - positive[:, None, :])
                    * active[..., None]).mean((0, 1))
        m = 0.9 * m + 0.1 * gradient
        v = 0.999 * v + 0.001 * gradient ** 2
        f = f - lr * np.sqrt(1 - 0.999 ** t) / (1 - 0.9 ** t) * m / (np.sqrt(v) + 1e-7)
    return f


def _user(seed, positives=6, dim=16):
    """A new user's positives around one direction, three negatives per positive around two
    others; as (n, 1, 1, dim) photos for `flat_embedding`, and their unit embeddings."""
    rng = np.random.default_rng(seed)
    centres = _unit(rng.standard_normal((3, dim)))
    pos = _unit(centres[0] + 0.1 * rng.standard_normal((positives, dim)))
    neg = _unit(centres[1 + np.arange(3 * positives) % 2]
                + 0.1 * rng.standard_normal((3 * positives, dim)))
    as_photos = lambda x: x[:, None, None, :].astype(np.float32)  # noqa: E731
    return as_photos(pos), as_photos(neg), pos, neg


def test_triplet_scheme_is_adam_on_equation_4_only():
    positives, negatives, pos, neg = _user(2)
    initial = _unit(np.random.default_rng(3).standard_normal(16)).astype(np.float32)
    got = preference_by_triplets(flat_embedding, positives, negatives, steps=7, learning_rate=0.01,
                                 initial=initial)
    expected = _numpy_adam_on_equation_4(initial, pos, neg, 7, 0.01)
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-5)


def test_triplet_scheme_moves_the_vector_towards_the_positives():
    positives, negatives, pos, neg = _user(4)
    initial = _unit(np.random.default_rng(5).standard_normal(16))
    got = preference_by_triplets(flat_embedding, positives, negatives, steps=300,
                                 learning_rate=0.01, initial=initial).astype(np.float64)
    to_positives = lambda f: ((f - pos) ** 2).sum(1).mean()  # noqa: E731
    assert to_positives(got) < 0.7 * to_positives(initial)
    # Equation 1 is satisfied for every pair: nearer each positive than each negative by 0.2
    # (and then the vector stops: the hinge asks no more, so it need not reach the positives).
    to_p, to_n = ((got - pos) ** 2).sum(1), ((got - neg) ** 2).sum(1)
    assert (to_p[:, None] - to_n[None, :] + 0.2).max() < 0
    # The default start is the random unit vector of `seed`, as a training user's (section 3.1).
    start = preference_by_triplets(flat_embedding, positives, negatives, steps=0, seed=6)
    np.testing.assert_array_equal(start, np.asarray(RandomUnitVectors(6)((16,))))


def test_too_few_negatives_warn_and_more_are_subsampled(caplog):
    positives, negatives, _, _ = _user(7)
    preference_by_triplets(flat_embedding, positives, negatives[:5], steps=1)
    assert any("fewer than the paper's 3 per positive" in r.getMessage() for r in caplog.records)
    caplog.clear()
    extra = np.concatenate([negatives, negatives])
    one = preference_by_triplets(flat_embedding, positives, extra, steps=3, seed=8)
    assert not caplog.records
    np.testing.assert_array_equal(one, preference_by_triplets(flat_embedding, positives, extra,
                                                              steps=3, seed=8))
    with pytest.raises(ValueError, match="dimension 16"):
        preference_by_triplets(flat_embedding, positives, negatives, initial=np.zeros(4))


def test_file_round_trip_is_exact_and_keeps_metadata(tmp_path):
    vector = np.random.default_rng(9).standard_normal(512).astype(np.float32)
    path = save_preference(tmp_path / "me.json", vector, scheme="mean", photos=20)
    assert path == str(tmp_path / "me.json")
    loaded, metadata = load_preference(path, with_metadata=True)
    assert loaded.dtype == np.float32
    np.testing.assert_array_equal(loaded, vector)
    assert metadata == {"scheme": "mean", "photos": 20}
    record = json.loads((tmp_path / "me.json").read_text())
    assert record["format"] == PREFERENCE_FORMAT and record["dimension"] == 512
    assert [p.name for p in tmp_path.iterdir()] == ["me.json"]  # no temporary file left
    np.testing.assert_array_equal(load_preference(path, dimension=None), vector)


def _write(path, **record):
    path.write_text(json.dumps(record))
    return path


def test_file_errors_name_the_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="nobody.json"):
        load_preference(tmp_path / "nobody.json")
    short = save_preference(tmp_path / "short.json", np.ones(16))
    with pytest.raises(ValueError, match="short.json.*dimension 16, the model expects 512"):
        load_preference(short)
    nan = tmp_path / "nan.json"
    nan.write_text('{"format": "%s", "dimension": 2, "vector": [0.5, NaN]}' % PREFERENCE_FORMAT)
    with pytest.raises(ValueError, match="nan.json.*NaN"):
        load_preference(nan, dimension=2)
    lying = _write(tmp_path / "lying.json", format=PREFERENCE_FORMAT, dimension=3, vector=[1, 2])
    with pytest.raises(ValueError, match="lying.json.*2 values.*dimension 3"):
        load_preference(lying, dimension=None)
    other = _write(tmp_path / "other.json", format="something-else", dimension=1, vector=[1])
    with pytest.raises(ValueError, match="other.json.*'something-else'"):
        load_preference(other, dimension=1)
    words = _write(tmp_path / "words.json", format=PREFERENCE_FORMAT, dimension=1, vector=["a"])
    with pytest.raises(ValueError, match="words.json.*list of numbers"):
        load_preference(words, dimension=1)
    (tmp_path / "broken.json").write_text("{not json")
    with pytest.raises(ValueError, match="broken.json"):
        load_preference(tmp_path / "broken.json")
    with pytest.raises(ValueError, match="refusing.*NaN.*bad.json"):
        save_preference(tmp_path / "bad.json", np.array([1.0, np.nan]))
    assert not (tmp_path / "bad.json").exists()
    with pytest.raises(ValueError, match="may not set"):
        save_preference(tmp_path / "meta.json", np.ones(2), dimension=3)
