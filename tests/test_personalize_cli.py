"""tools.personalize (PieNet section 3.4) end to end on a tiny random embedding written here:
both schemes, the embedding found from its stage's folder, file or an export's metadata, and
the one-line errors (empty folder, nothing decodable, wrong dimension, missing negatives)."""
import json
import os

import numpy as np
import pytest
from PIL import Image

from enhancers.pienet import build_embedding, load_preference, preference_from_photos
from tools import personalize
from tools.export import METADATA_FILE
from datasets.pienet import central_view


def _photos(folder, count, seed, bad=()):
    folder.mkdir()
    rng = np.random.default_rng(seed)
    for index in range(count):
        pixels = rng.integers(0, 256, (20 + index, 24, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(folder / f"p{index}.png")
    for name in bad:
        (folder / name).write_bytes(b"not a photo")
    return folder


@pytest.fixture(scope="module")
def stage(tmp_path_factory):
    """A random embedding stage's folder: <dir>/embedding.weights.h5."""
    folder = tmp_path_factory.mktemp("embedding")
    model = build_embedding()
    model.save_weights(str(folder / personalize.EMBEDDING_WEIGHTS))
    return folder, model


def _run(caplog, *args):
    caplog.clear()
    code = personalize.main(["personalize", "--size=32", *args])
    return code, caplog.text


def test_average_is_the_mean_embedding_and_skips_bad_files_by_name(stage, tmp_path, caplog):
    folder, model = stage
    preferred = _photos(tmp_path / "liked", 3, 0, bad=("broken.jpg",))
    output = tmp_path / "me.json"
    code, log = _run(caplog, f"--preferred_dir={preferred}", f"--output={output}",
                     f"--embedding={folder}")
    assert code == 0
    vector, metadata = load_preference(output, with_metadata=True)
    views = np.stack([central_view(str(preferred / f"p{i}.png"), 32) for i in range(3)])
    np.testing.assert_allclose(vector, preference_from_photos(model, views), atol=1e-5)
    assert metadata["scheme"] == "average" and metadata["photos"] == 3
    assert metadata["skipped"] == [str(preferred / "broken.jpg")]
    assert "broken.jpg" in log
    # The weights file itself works as well as its folder.
    again = tmp_path / "again.json"
    assert _run(caplog, f"--preferred_dir={preferred}", f"--output={again}",
                f"--embedding={folder / personalize.EMBEDDING_WEIGHTS}")[0] == 0
    np.testing.assert_array_equal(load_preference(again), vector)


def test_triplets_needs_negatives_and_then_fits_a_vector(stage, tmp_path, caplog):
    folder, _ = stage
    preferred = _photos(tmp_path / "liked", 2, 1)
    output = tmp_path / "me.json"
    code, log = _run(caplog, f"--preferred_dir={preferred}", f"--output={output}",
                     f"--embedding={folder}", "--scheme=triplets")
    assert code == 1 and "--negatives_dir" in log and not output.exists()
    negatives = _photos(tmp_path / "disliked", 6, 2)
    code, _ = _run(caplog, f"--preferred_dir={preferred}", f"--output={output}",
                   f"--embedding={folder}", "--scheme=triplets", f"--negatives_dir={negatives}",
                   "--steps=3")
    assert code == 0
    vector, metadata = load_preference(output, with_metadata=True)
    assert metadata["scheme"] == "triplets" and metadata["negatives"] == 6
    assert vector.shape == (512,) and np.all(np.isfinite(vector))


def test_errors_name_the_folder_or_file(stage, tmp_path, caplog):
    folder, _ = stage
    output = tmp_path / "me.json"
    empty = tmp_path / "empty"
    empty.mkdir()
    code, log = _run(caplog, f"--preferred_dir={empty}", f"--output={output}",
                     f"--embedding={folder}")
    assert code == 1 and f"--preferred_dir={empty}: the folder holds no photos" in log
    broken = _photos(tmp_path / "broken", 0, 0, bad=("a.jpg", "b.png"))
    code, log = _run(caplog, f"--preferred_dir={broken}", f"--output={output}",
                     f"--embedding={folder}")
    assert code == 1 and "none of its 2 photos could be decoded (a.jpg, b.png)" in log
    preferred = _photos(tmp_path / "liked", 2, 3)
    code, log = _run(caplog, f"--preferred_dir={preferred}", f"--output={output}",
                     f"--embedding={tmp_path / 'nowhere'}")
    assert code == 1 and f"--embedding={tmp_path / 'nowhere'}" in log
    # An export (only its metadata matters here) whose preference input takes 8 values.
    export = tmp_path / "export" / "1"
    os.makedirs(export / os.path.dirname(METADATA_FILE))
    (export / METADATA_FILE).write_text(json.dumps({
        "kind": "pienet", "pienet": {"preference_dim": 8},
        "config": {"embedding_dir": str(folder)}}))
    code, log = _run(caplog, f"--preferred_dir={preferred}", f"--output={output}",
                     f"--embedding={tmp_path / 'export'}")
    assert code == 1 and "gives 512-d vectors, the export's preference input takes 8" in log
    assert not output.exists()
    # Not an embedding's weights: named.
    other = tmp_path / "other.weights.h5"
    other.write_bytes(b"junk")
    code, log = _run(caplog, f"--preferred_dir={preferred}", f"--output={output}",
                     f"--embedding={other}")
    assert code == 1 and f"{other} does not hold PieNet's embedding network" in log
