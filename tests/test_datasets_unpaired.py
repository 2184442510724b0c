"""datasets.unpaired: folders, the grouped patch stream (determinism, resume, shards, augmentation,
bad files) and the unpaired source/target zip."""
import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from datasets import unpaired
from datasets.pipeline import DecodeFailures
from tests.fifos import guarded_fifo

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
P = 16  # patch size
SIZES = ((40, 50), (36, 36), (48, 30), (16, 16), (30, 44))


def _write_images(directory, n=5, seed=0, sizes=SIZES):
    directory.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    arrays = []
    for i in range(n):
        h, w = sizes[i % len(sizes)]
        array = rng.integers(0, 256, (h, w, 3), np.uint8)
        Image.fromarray(array).save(directory / f"{i}.png")
        arrays.append(array)
    return unpaired.list_images(directory), arrays


def _take(ds, n):
    return [np.asarray(b) for b, _ in zip(ds, range(n))]


def _u8(batch):
    return np.rint(np.asarray(batch) * 255.0).astype(np.uint8)


def _find_crop(patch, arrays):
    """(image index, top, left) of an exact occurrence of `patch` in `arrays`, else None."""
    p = patch.shape[0]
    for k, array in enumerate(arrays):
        if array.shape[0] < p or array.shape[1] < p:
            continue
        windows = np.lib.stride_tricks.sliding_window_view(array, (p, p, 3))[:, :, 0]
        hits = np.argwhere(np.all(windows == patch, axis=(2, 3, 4)))
        if len(hits):
            return k, int(hits[0][0]), int(hits[0][1])
    return None


def _dihedral(patch):
    """The 8 rotations/flips of a patch, keyed by (k quarter turns, flipped)."""
    out = {}
    for k in range(4):
        turned = np.rot90(patch, k=k)
        out[(k, 0)] = turned
        out[(k, 1)] = turned[:, ::-1]
    return out


# ------------------------------------------------------------------------------ folders


def test_list_images(tmp_path):
    for name in ("10.jpg", "2.PNG", "1.jpeg", "a.webp", "b.TIFF", "c.bmp"):
        Image.new("RGB", (4, 4)).save(tmp_path / name, format={
            "jpg": "JPEG", "png": "PNG", "jpeg": "JPEG", "webp": "WEBP", "tiff": "TIFF",
            "bmp": "BMP"}[name.rsplit(".", 1)[1].lower()])
    (tmp_path / ".hidden.jpg").write_bytes(b"x")
    (tmp_path / "notes.txt").write_text("x")
    (tmp_path / "sub").mkdir()
    Image.new("RGB", (4, 4)).save(tmp_path / "sub" / "0.png")
    names = [os.path.basename(p) for p in unpaired.list_images(tmp_path)]
    assert names == ["1.jpeg", "2.PNG", "10.jpg", "a.webp", "b.TIFF", "c.bmp"]
    assert all(os.path.dirname(p) == str(tmp_path) for p in unpaired.list_images(tmp_path))

    with pytest.raises(ValueError, match="nope"):
        unpaired.list_images(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "x.txt").write_text("x")
    with pytest.raises(ValueError, match="no image files.*empty"):
        unpaired.list_images(tmp_path / "empty")


def test_match_pairs(tmp_path):
    src, ref = tmp_path / "phone", tmp_path / "canon"
    src.mkdir(), ref.mkdir()
    for i in range(4):
        Image.new("RGB", (4, 4)).save(src / f"{i}.jpg")
        Image.new("RGB", (4, 4)).save(ref / f"{i}.png")
    pairs = unpaired.match_pairs(src, ref)
    assert [(os.path.basename(a), os.path.basename(b)) for a, b in pairs] == [
        (f"{i}.jpg", f"{i}.png") for i in range(4)]
    # A list of paths works too, in the source order given.
    sources = list(reversed(unpaired.list_images(src)))
    assert unpaired.match_pairs(sources, ref)[0] == (str(src / "3.jpg"), str(ref / "3.png"))

    Image.new("RGB", (4, 4)).save(src / "17.jpg")
    Image.new("RGB", (4, 4)).save(ref / "99.png")
    Image.new("RGB", (4, 4)).save(ref / "98.png")
    with pytest.raises(ValueError, match=r"1 source image.*17.*2 target image.*98, 99"):
        unpaired.match_pairs(src, ref)


# ------------------------------------------------------------------------------ patch stream


def test_patches_shape_range_and_crops(tmp_path):
    paths, arrays = _write_images(tmp_path / "a")
    ds = unpaired.make_patch_dataset(paths, patch_size=P, batch_size=6, seed=3, augment=False,
                                     images_per_group=3, patches_per_image=2)
    assert ds.element_spec.shape.as_list() == [6, P, P, 3]
    batches = _take(ds, 4)
    for batch in batches:
        assert batch.dtype == np.float32 and batch.shape == (6, P, P, 3)
        assert batch.min() >= 0.0 and batch.max() <= 1.0
    patches = _u8(np.concatenate(batches))
    found = [_find_crop(patch, arrays) for patch in patches]
    assert all(f is not None for f in found)  # exact crops without augmentation
    # Consecutive patches of a group come from different photos (the group is permuted).
    assert len({f[0] for f in found[:6]}) >= 2
    # The 16x16 image (index 3) has exactly one crop and is used.
    assert any(f[0] == 3 and f[1:] == (0, 0) for f in found)


def test_deterministic_and_seeded(tmp_path):
    paths, _ = _write_images(tmp_path / "a")
    kwargs = dict(patch_size=P, batch_size=4, images_per_group=2, patches_per_image=3)
    a = _take(unpaired.make_patch_dataset(paths, seed=1, **kwargs), 6)
    b = _take(unpaired.make_patch_dataset(paths, seed=1, **kwargs), 6)
    c = _take(unpaired.make_patch_dataset(paths, seed=2, **kwargs), 6)
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x, y)
    assert not all(np.array_equal(x, y) for x, y in zip(a, c))


@pytest.mark.parametrize("start_step", [3, 5])  # 3 * 4 = 12 = two whole groups; 5 * 4 = 20 is not
def test_resume_equals_dropping_batches(tmp_path, start_step):
    paths, _ = _write_images(tmp_path / "a")
    kwargs = dict(patch_size=P, batch_size=4, seed=7, images_per_group=2, patches_per_image=3)
    full = _take(unpaired.make_patch_dataset(paths, **kwargs), start_step + 6)
    resumed = _take(unpaired.make_patch_dataset(paths, start_step=start_step, **kwargs), 6)
    for x, y in zip(full[start_step:], resumed):
        np.testing.assert_array_equal(x, y)


def test_resume_decodes_only_the_partial_group(tmp_path, monkeypatch):
    paths, _ = _write_images(tmp_path / "a")
    seen = []
    original = unpaired._PatchDecoder.__call__

    def spy(self, index, position):
        seen.append(int(position))
        return original(self, index, position)

    monkeypatch.setattr(unpaired._PatchDecoder, "__call__", spy)
    ds = unpaired.make_patch_dataset(paths, patch_size=P, batch_size=4, seed=0, start_step=1000,
                                     images_per_group=2, patches_per_image=3)
    _take(ds, 1)
    # 1000 * 4 patches = group 666 (+ 4 patches); positions 1332.. are the first decoded.
    assert min(seen) == 666 * 2


def test_shards_deal_the_groups_round_robin(tmp_path):
    # No patch-sized file here: its one crop would recur in both shards in later epochs.
    paths, _ = _write_images(tmp_path / "a", n=7, sizes=((40, 50), (36, 36), (48, 30)))
    kwargs = dict(patch_size=P, batch_size=6, seed=5, images_per_group=3, patches_per_image=2)
    single = _take(unpaired.make_patch_dataset(paths, **kwargs), 6)  # one batch = one group
    shards = [_take(unpaired.make_patch_dataset(paths, num_shards=2, shard_index=k, **kwargs), 3)
              for k in range(2)]
    for t in range(3):
        np.testing.assert_array_equal(shards[0][t], single[2 * t])
        np.testing.assert_array_equal(shards[1][t], single[2 * t + 1])
    patches0 = {p.tobytes() for p in _u8(np.concatenate(shards[0]))}
    patches1 = {p.tobytes() for p in _u8(np.concatenate(shards[1]))}
    assert not patches0 & patches1
    # Resuming a shard skips in that shard's own stream.
    resumed = _take(unpaired.make_patch_dataset(paths, num_shards=2, shard_index=1, start_step=2,
                                                **kwargs), 1)
    np.testing.assert_array_equal(resumed[0], single[5])
    with pytest.raises(ValueError, match="shard_index"):
        unpaired.make_patch_dataset(paths, num_shards=2, shard_index=2, **kwargs)


def test_rotations_and_flips_happen(tmp_path):
    paths, arrays = _write_images(tmp_path / "a")
    kwargs = dict(patch_size=P, batch_size=8, seed=11, images_per_group=2, patches_per_image=4)
    plain = _u8(np.concatenate(
        _take(unpaired.make_patch_dataset(paths, augment=False, **kwargs), 5)))
    augmented = _u8(np.concatenate(_take(unpaired.make_patch_dataset(paths, **kwargs), 5)))
    transforms = set()
    for crop, patch in zip(plain, augmented):
        matches = [key for key, t in _dihedral(crop).items() if np.array_equal(t, patch)]
        assert matches, "an augmented patch is not a rotation/flip of the crop at its position"
        transforms.update(matches)
    # Random noise patches have no symmetry, so each match is the transform that was drawn.
    assert {k for k, _ in transforms} == {0, 1, 2, 3} and {f for _, f in transforms} == {0, 1}
    # An augmented patch is a transform of an exact crop of a source image.
    for patch in augmented[:8]:
        assert any(_find_crop(np.ascontiguousarray(t), arrays) is not None
                   for t in _dihedral(patch).values())


def test_bad_and_small_files_are_skipped_and_counted(tmp_path):
    directory = tmp_path / "a"
    paths, arrays = _write_images(directory, n=4)
    (directory / "corrupt.jpg").write_bytes(b"\xff\xd8 this is not a jpeg")
    Image.fromarray(np.zeros((P - 1, 40, 3), np.uint8)).save(directory / "small.png")
    paths = unpaired.list_images(directory)
    assert len(paths) == 6
    failures = DecodeFailures()
    kwargs = dict(patch_size=P, batch_size=6, seed=2, images_per_group=3, patches_per_image=2,
                  augment=False)
    batches = _take(unpaired.make_patch_dataset(paths, decode_failures=failures, **kwargs), 8)
    assert len(batches) == 8  # 8 batches = 8 whole groups: failed images' slots were refilled
    assert failures.count >= 2
    reasons = dict(failures.examples)
    assert str(directory / "small.png") in reasons
    assert f"smaller than the {P}x{P} patch" in reasons[str(directory / "small.png")]
    assert str(directory / "corrupt.jpg") in reasons
    patches = _u8(np.concatenate(batches))
    assert all(_find_crop(p, arrays) is not None for p in patches)  # only good images' pixels
    # Resuming stays exact with bad files in the stream.
    resumed = _take(unpaired.make_patch_dataset(paths, start_step=5, **kwargs), 3)
    for x, y in zip(batches[5:], resumed):
        np.testing.assert_array_equal(x, y)


def test_a_folder_of_bad_files_raises(tmp_path):
    directory = tmp_path / "bad"
    directory.mkdir()
    for i in range(3):
        (directory / f"{i}.jpg").write_bytes(b"garbage")
    ds = unpaired.make_patch_dataset(directory, patch_size=P, batch_size=2, seed=0,
                                     images_per_group=2, patches_per_image=1)
    with pytest.raises(Exception, match=r"could not be used.*[012]\.jpg"):
        _take(ds, 1)


def test_grayscale_16bit_and_rgba_become_rgb(tmp_path):
    directory = tmp_path / "modes"
    directory.mkdir()
    gray = np.random.default_rng(0).integers(0, 256, (20, 24), np.uint8)
    Image.fromarray(gray, mode="L").save(directory / "0_gray.png")
    Image.fromarray(np.full((20, 20), 65535, np.uint16)).save(directory / "1_white16.png")
    Image.fromarray(np.full((20, 20), 32896, np.uint16)).save(directory / "2_mid16.png")
    rgba = np.dstack([np.full((20, 20, 3), 200, np.uint8), np.zeros((20, 20, 1), np.uint8)])
    Image.fromarray(rgba, mode="RGBA").save(directory / "3_rgba.png")
    ds = unpaired.make_patch_dataset(directory, patch_size=P, batch_size=4, seed=0,
                                     images_per_group=4, patches_per_image=1)
    batch = _take(ds, 1)[0]
    assert batch.shape == (4, P, P, 3) and batch.min() >= 0.0 and batch.max() <= 1.0
    np.testing.assert_array_equal(batch[..., 0], batch[..., 1])  # gray pixels everywhere here
    pixels = _u8(batch).reshape(4, -1)
    constant = sorted(int(p[0]) for p in pixels if np.all(p == p[0]))
    assert constant == [128, 200, 255]  # 16-bit scaled (32896 -> 128), alpha dropped
    varied = [i for i, p in enumerate(pixels) if not np.all(p == p[0])]
    assert len(varied) == 1
    assert _find_crop(_u8(batch[varied[0]]), [np.dstack([gray] * 3)]) is not None


# ------------------------------------------------------------------------------ unpaired


def test_unpaired_streams_are_independent(tmp_path):
    paths, _ = _write_images(tmp_path / "a")
    ds = unpaired.make_unpaired_dataset(paths, tmp_path / "a", patch_size=P, batch_size=4, seed=0,
                                        images_per_group=2, patches_per_image=2)
    assert [s.shape.as_list() for s in ds.element_spec] == [[4, P, P, 3], [4, P, P, 3]]
    pairs = [(np.asarray(s), np.asarray(t)) for (s, t), _ in zip(ds, range(4))]
    assert not any(np.array_equal(s, t) for s, t in pairs)
    assert not any(np.array_equal(s[i], t[i]) for s, t in pairs for i in range(4))
    # Each side is the plain patch stream with its own derived seed.
    source = _take(unpaired.make_patch_dataset(paths, patch_size=P, batch_size=4,
                                               seed=unpaired.derive_seed(0, "source"),
                                               images_per_group=2, patches_per_image=2), 4)
    for (s, _), expected in zip(pairs, source):
        np.testing.assert_array_equal(s, expected)
    # Resuming the pair resumes both sides.
    resumed = unpaired.make_unpaired_dataset(paths, paths, patch_size=P, batch_size=4, seed=0,
                                             start_step=2, images_per_group=2,
                                             patches_per_image=2)
    (s2, t2), = [(np.asarray(s), np.asarray(t)) for (s, t), _ in zip(resumed, range(1))]
    np.testing.assert_array_equal(s2, pairs[2][0])
    np.testing.assert_array_equal(t2, pairs[2][1])
    with pytest.raises(TypeError, match="shuffle_buffer"):
        unpaired.make_unpaired_dataset(paths, paths, patch_size=P, batch_size=4, seed=0,
                                       shuffle_buffer=10)


_EXIT_SCRIPT = """
import sys
import numpy as np
from PIL import Image
from datasets import unpaired
directory = sys.argv[1]
rng = np.random.default_rng(0)
for i in range(4):
    Image.fromarray(rng.integers(0, 256, (700, 900, 3), np.uint8)).save(f"{directory}/{i}.png")
ds = unpaired.make_patch_dataset(directory, patch_size=16, batch_size=2, seed=0,
                                 images_per_group=16, patches_per_image=1)
it = iter(ds)
next(it)
print("took a batch", flush=True)
"""


def test_a_script_exits_with_a_live_iterator(tmp_path):
    # Decodes are under way when the script ends; the interpreter must not hang on them.
    result = subprocess.run([sys.executable, "-c", _EXIT_SCRIPT, str(tmp_path)], cwd=REPO,
                            capture_output=True, text=True, timeout=90)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "took a batch" in result.stdout


def test_list_images_leaves_out_a_fifo(tmp_path):
    paths, _ = _write_images(tmp_path, n=1)
    with guarded_fifo(tmp_path / "2.png") as fifo:
        assert unpaired.list_images(tmp_path) == paths
    assert not fifo["opened"]
