"""datasets.paired: CAN's (input, reference) pairs: sources, splits, training stream, test pairs."""
import logging
import re

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from datasets import paired
from datasets.pipeline import DecodeFailures
from datasets.images import ImageDecodeError

H, W = 12, 16  # landscape test photos; portrait ones are W x H


def _save(path, pixels, fmt=None):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels).save(path, format=fmt)
    return str(path)


def _constant(value, shape=(H, W)):
    return np.full(shape + (3,), value, np.uint8)


def _fivek(root, stems, experts=("A", "C"), input_ext=".png", ref_ext=".jpg"):
    """input/<stem><input_ext> and expert<X>/<stem><ref_ext>; input i has value 10 i + 5."""
    for i, stem in enumerate(stems):
        _save(root / "input" / f"{stem}{input_ext}", _constant(10 * i + 5))
        for k, expert in enumerate(experts):
            _save(root / f"expert{expert}" / f"{stem}{ref_ext}", _constant(10 * i + 5 + k))
    return root


def _folders(root, n, size=(H, W)):
    """in/p<i>.png (value 10 i + 5) and ref/p<i>.png (value 10 i + 8), n pairs."""
    for i in range(n):
        _save(root / "in" / f"p{i}.png", _constant(10 * i + 5, size))
        _save(root / "ref" / f"p{i}.png", _constant(10 * i + 8, size))
    return str(root / "in"), str(root / "ref")


def _take(ds, count):
    return [(x.numpy(), y.numpy()) for x, y in ds.take(count)]


def _ids(batches):
    """The pair index i of every example (input value 10 i + 5)."""
    return [int(round((float(x[b].mean()) * 255 - 5) / 10))
            for x, _ in batches for b in range(x.shape[0])]


# --------------------------------------------------------------------------- sources


def test_collect_fivek_multi_expert_and_missing(tmp_path, caplog):
    stems = ["a0002-y", "a0010-z", "a0001-x"]
    root = _fivek(tmp_path, stems)
    (root / "expertC" / "a0010-z.jpg").unlink()
    _save(root / "expertA" / "a0007-orphan.jpg", _constant(0))
    with caplog.at_level(logging.WARNING):
        pairs, missing = paired.collect_pairs(fivek_dir=root, experts=("A", "c"))
    order = ["a0001-x", "a0002-y", "a0010-z"]
    expected = [(str(root / "input" / f"{s}.png"), str(root / "expertA" / f"{s}.jpg"))
                for s in order]
    expected += [(str(root / "input" / f"{s}.png"), str(root / "expertC" / f"{s}.jpg"))
                 for s in order if s != "a0010-z"]
    assert pairs == expected
    assert len(missing) == 2
    assert any("a0007-orphan.jpg" in line and "no input" in line for line in missing)
    assert any("a0010-z.png" in line and "expertC" in line for line in missing)
    assert paired.collect_pairs(fivek_dir=root, experts="A,C")[0] == expected
    assert paired.collect_pairs(fivek_dir=root)[0] == expected[3:]  # expert C by default


def test_collect_folders_and_flag_errors(tmp_path):
    inputs, references = _folders(tmp_path, 3)
    (tmp_path / "ref" / "p1.png").unlink()
    pairs, missing = paired.collect_pairs(input_dir=inputs, reference_dir=references)
    assert [p[0].rsplit("/", 1)[1] for p in pairs] == ["p0.png", "p2.png"]
    assert len(missing) == 1 and "p1.png" in missing[0]
    with pytest.raises(ValueError, match="--fivek_dir.*--input_dir.*--reference_dir.*not both"):
        paired.collect_pairs(fivek_dir=tmp_path, input_dir=inputs, reference_dir=references)
    with pytest.raises(ValueError, match="--fivek_dir.*--input_dir and --reference_dir"):
        paired.collect_pairs()
    with pytest.raises(ValueError, match="--input_dir needs --reference_dir"):
        paired.collect_pairs(input_dir=inputs)
    with pytest.raises(ValueError, match="--reference_dir needs --input_dir"):
        paired.collect_pairs(reference_dir=references)
    with pytest.raises(ValueError, match="expert C"):
        paired.collect_pairs(fivek_dir=_fivek(tmp_path / "f", ["a0001-x"], experts=("A",)))


# --------------------------------------------------------------------------- split


def _stems(pairs):
    return [p[0].rsplit("/", 1)[1].rsplit(".", 1)[0] for p in pairs]


def test_paper_split_by_fivek_number_keeps_experts_together(tmp_path):
    stems = ["a0001-x", "a2500-y", "a2501-z", "a5000-w", "a0300-v"]
    pairs, _ = paired.collect_pairs(fivek_dir=_fivek(tmp_path, stems), experts="A,C")
    train, test = paired.split_pairs(pairs)
    assert _stems(train) == ["a0001-x", "a0300-v", "a2500-y"] * 2  # expert A, then C
    assert _stems(test) == ["a2501-z", "a5000-w"] * 2
    assert sorted(train + test) == sorted(pairs)


def test_half_split_without_fivek_numbers(tmp_path):
    pairs, _ = paired.collect_pairs(input_dir=_folders(tmp_path, 5)[0],
                                    reference_dir=str(tmp_path / "ref"))
    train, test = paired.split_pairs(pairs)
    assert _stems(train) == ["p0", "p1", "p2"] and _stems(test) == ["p3", "p4"]
    # One stem without a number (or a number > 5000) is enough to fall back to halves.
    stems = ["a0001-x", "a0002-y", "a2600-z", "extra"]
    pairs, _ = paired.collect_pairs(fivek_dir=_fivek(tmp_path / "f", stems, experts=("C",)))
    train, test = paired.split_pairs(pairs)
    assert _stems(train) == ["a0001-x", "a0002-y"] and _stems(test) == ["a2600-z", "extra"]


def test_split_lists_by_id_and_stem(tmp_path):
    stems = ["a0001-x", "a0002-y", "a0003-z", "a2501-w"]
    pairs, _ = paired.collect_pairs(fivek_dir=_fivek(tmp_path / "f", stems), experts="A,C")
    train_list = tmp_path / "train.txt"
    train_list.write_text("# training photos\n1\na0002-y  # a stem\n")
    test_list = tmp_path / "test.txt"
    test_list.write_text("a2501\n")
    train, test = paired.split_pairs(pairs, train_list=train_list, test_list=test_list)
    assert _stems(train) == ["a0001-x", "a0002-y"] * 2
    assert _stems(test) == ["a2501-w"] * 2  # a0003-z is in neither list: unused
    # One list: the other side is the complement.
    train, test = paired.split_pairs(pairs, train_list=train_list)
    assert _stems(test) == ["a0003-z", "a2501-w"] * 2
    train, test = paired.split_pairs(pairs, test_list=str(test_list))
    assert _stems(train) == ["a0001-x", "a0002-y", "a0003-z"] * 2
    # Unknown names, and photos on both sides, are errors naming the files.
    bad = tmp_path / "bad.txt"
    bad.write_text("a0001-x\n0042\nnope\n")
    with pytest.raises(ValueError, match=re.escape(str(bad)) + ".*0042, nope"):
        paired.split_pairs(pairs, train_list=bad)
    overlap = tmp_path / "overlap.txt"
    overlap.write_text("2501\n2\n")
    with pytest.raises(ValueError, match="both split files.*a0002-y"):
        paired.split_pairs(pairs, train_list=train_list, test_list=overlap)
    with pytest.raises(ValueError, match="no training pair"):
        paired.split_pairs(pairs, test_list=_write(tmp_path / "all.txt", "1\n2\n3\n2501\n"))


def _write(path, text):
    path.write_text(text)
    return path


# --------------------------------------------------------------------------- training stream


def test_stream_shapes_values_and_resize(tmp_path):
    rng = np.random.default_rng(0)
    smooth = rng.integers(0, 256, (6, 8, 3)).astype(np.uint8)
    big = np.asarray(Image.fromarray(smooth).resize((32, 24), Image.Resampling.BICUBIC))
    inp = _save(tmp_path / "in" / "a.png", big)
    ref = _save(tmp_path / "ref" / "a.jpg", _constant(200, (24, 32)), fmt="JPEG")
    ds = paired.make_training_dataset([(inp, ref)], batch_size=2, seed=0, size=(9, 12))
    x, y = next(iter(ds))
    assert x.dtype == tf.float32 and x.shape == y.shape == (2, 9, 12, 3)
    np.testing.assert_allclose(y.numpy(), 200 / 255, atol=1e-5)  # a constant stays constant
    # Against an independent resize: Pillow's antialiased bilinear, loosely.
    expected = np.asarray(Image.fromarray(big).resize((12, 9), Image.Resampling.BILINEAR),
                          np.float32) / 255
    assert np.abs(x.numpy()[0] - expected).mean() < 0.02
    assert 0.0 <= x.numpy().min() and x.numpy().max() <= 1.0


def test_orientation_kept_at_batch_1_rotated_above(tmp_path):
    marker = np.zeros((W, H, 3), np.uint8)  # portrait, W high, H wide
    marker[0, :, 0] = 255  # the top row red
    pairs = [(_save(tmp_path / "in" / "p.png", marker), _save(tmp_path / "ref" / "p.png", marker)),
             (_save(tmp_path / "in" / "l.png", _constant(9)),
              _save(tmp_path / "ref" / "l.png", _constant(9)))]
    shapes = {x.shape for x, _ in _take(paired.make_training_dataset(
        pairs, batch_size=1, seed=0, size=(6, 8)), 4)}
    assert shapes == {(1, 6, 8, 3), (1, 8, 6, 3)}
    for x, y in _take(paired.make_training_dataset(pairs, batch_size=2, seed=0, size=(6, 8)), 2):
        assert x.shape == y.shape == (2, 6, 8, 3)
        for image in x:
            if image[..., 0].max() > 0.5:  # the portrait one: its top row is now the left column
                assert image[:, 0, 0].min() > 0.4 and image[:, -1, 0].max() < 0.05
                np.testing.assert_allclose(image, y[0] if y[0].numpy().max() > 0.5 else y[1])


def test_resumption_determinism_and_seed(tmp_path):
    inputs, references = _folders(tmp_path, 5)
    pairs, _ = paired.collect_pairs(input_dir=inputs, reference_dir=references)
    full = _ids(_take(paired.make_training_dataset(pairs, batch_size=2, seed=3, size=(4, 4)), 6))
    assert sorted(full[:5]) == list(range(5)) and sorted(full[5:10]) == list(range(5))
    again = _ids(_take(paired.make_training_dataset(pairs, batch_size=2, seed=3, size=(4, 4)), 6))
    assert again == full
    resumed = paired.make_training_dataset(pairs, batch_size=2, seed=3, size=(4, 4), start_step=2)
    assert _ids(_take(resumed, 4)) == full[4:]
    other = _ids(_take(paired.make_training_dataset(pairs, batch_size=2, seed=4, size=(4, 4)), 6))
    assert other != full
    # The reference of pair i is its own (value 10 i + 8).
    for x, y in _take(resumed, 2):
        np.testing.assert_allclose(y - x, 3 / 255, atol=1e-5)


def test_shards_are_disjoint(tmp_path):
    inputs, references = _folders(tmp_path, 6)
    pairs, _ = paired.collect_pairs(input_dir=inputs, reference_dir=references)
    shards = [_ids(_take(paired.make_training_dataset(
        pairs, batch_size=1, seed=1, size=(4, 4), num_shards=2, shard_index=k), 3))
        for k in range(2)]
    assert not set(shards[0]) & set(shards[1])
    assert sorted(shards[0] + shards[1]) == list(range(6))
    with pytest.raises(ValueError, match="shard_index"):
        paired.make_training_dataset(pairs, batch_size=1, seed=0, num_shards=2, shard_index=2)


def test_bad_pairs_are_skipped_and_recorded(tmp_path):
    inputs, references = _folders(tmp_path, 4)
    (tmp_path / "in" / "p1.png").write_bytes(b"not a png at all")
    _save(tmp_path / "ref" / "p2.png", _constant(28, (H, 2 * W)))  # another aspect ratio
    pairs, _ = paired.collect_pairs(input_dir=inputs, reference_dir=references)
    failures = DecodeFailures()
    ds = paired.make_training_dataset(pairs, batch_size=1, seed=0, size=(4, 4),
                                      decode_failures=failures)
    assert sorted(set(_ids(_take(ds, 6)))) == [0, 3]
    reasons = dict(failures.examples)
    assert set(reasons) == {str(tmp_path / "in" / "p1.png"), str(tmp_path / "in" / "p2.png")}
    assert "aspect" in reasons[str(tmp_path / "in" / "p2.png")]
    assert str(tmp_path / "ref" / "p2.png") in reasons[str(tmp_path / "in" / "p2.png")]
    # A corrupt reference is named as such.
    (tmp_path / "ref" / "p3.png").write_bytes(b"\x89PNG broken")
    failures = DecodeFailures()
    _take(paired.make_training_dataset(pairs, batch_size=1, seed=0, size=(4, 4),
                                       decode_failures=failures), 2)
    assert str(tmp_path / "ref" / "p3.png") in dict(failures.examples)


def test_nothing_decodes_raises(tmp_path):
    for i in range(3):
        (tmp_path / f"x{i}.png").write_bytes(b"junk")
    pairs = [(str(tmp_path / f"x{i}.png"), str(tmp_path / f"x{i}.png")) for i in range(3)]
    with pytest.raises(tf.errors.OpError, match="none of the first"):
        _take(paired.make_training_dataset(pairs, batch_size=1, seed=0, size=(4, 4)), 1)


def test_grayscale_and_16_bit_inputs(tmp_path):
    gray = _save(tmp_path / "gray.png", np.full((H, W), 77, np.uint8))
    deep = tmp_path / "deep.png"
    Image.fromarray(np.full((H, W), 32896, np.uint16)).save(deep)  # 16-bit: 32896 -> 128
    ref = _save(tmp_path / "ref.png", _constant(40))
    pairs = [(gray, ref), (str(deep), ref)]
    values = set()
    for x, y in _take(paired.make_training_dataset(pairs, batch_size=1, seed=0, size=(4, 4)), 2):
        assert x.shape == (1, 4, 4, 3)
        values.add(int(round(float(x.mean()) * 255)))
        np.testing.assert_allclose(x[..., 0], x[..., 2])
    assert values == {77, 128}


# --------------------------------------------------------------------------- test pairs


def test_load_test_pair_full_size(tmp_path, caplog):
    rng = np.random.default_rng(1)
    pixels = rng.integers(0, 256, (20, 30, 3)).astype(np.uint8)
    inp = _save(tmp_path / "in.png", pixels)
    x, y = paired.load_test_pair(inp, _save(tmp_path / "same.png", pixels[::-1]))
    assert x.dtype == y.dtype == np.float32 and x.shape == y.shape == (20, 30, 3)
    np.testing.assert_allclose(x * 255, pixels, atol=1e-3)
    np.testing.assert_allclose(y * 255, pixels[::-1], atol=1e-3)
    # Same aspect, half size: resized up to the input's size, with a warning.
    with caplog.at_level(logging.WARNING):
        x, y = paired.load_test_pair(inp, _save(tmp_path / "half.png", _constant(60, (10, 15))))
    assert y.shape == (20, 30, 3) and "resized" in caplog.text
    np.testing.assert_allclose(y, 60 / 255, atol=1e-5)
    wide = _save(tmp_path / "wide.png", _constant(60, (10, 30)))
    with pytest.raises(ValueError, match=re.escape(inp) + ".*" + re.escape(wide) + ".*aspect"):
        paired.load_test_pair(inp, wide)
    (tmp_path / "bad.jpg").write_bytes(b"junk")
    with pytest.raises(ImageDecodeError, match="bad.jpg"):
        paired.load_test_pair(inp, tmp_path / "bad.jpg")
