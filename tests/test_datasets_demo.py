"""datasets.demo: the offline AVA stand-in built from scikit-image's photographs."""
import os

import numpy as np
import pytest

from datasets import demo
from datasets.ava import load_ava, read_ava_txt
from datasets.images import load_rgb8

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo")
    ava_txt, image_dir = demo.build_demo_ava(out, num_images=30, image_size=64, seed=0)
    return out, ava_txt, image_dir


def test_builds_a_real_ava_layout(tiny):
    out, ava_txt, image_dir = tiny
    assert ava_txt == os.path.join(str(out), "AVA.txt")
    assert image_dir == os.path.join(str(out), "images")
    ids, counts = read_ava_txt(ava_txt)
    assert ids == [str(i) for i in range(1, 31)]
    assert np.all((counts.sum(1) >= 150) & (counts.sum(1) <= 250))
    with open(ava_txt) as f:
        fields = f.readline().split()
    assert len(fields) == 15 and fields[0] == "1" and fields[12:14] == ["0", "0"]
    records = load_ava(ava_txt, image_dir)  # no image missing
    assert len(records) == 30
    shapes = [load_rgb8(p).shape for p in records.paths[:10]]
    assert all(min(h, w) == 64 and c == 3 for h, w, c in shapes)


def test_mean_score_falls_with_degradation_strength(tiny):
    out, ava_txt, image_dir = tiny
    records = load_ava(ava_txt, image_dir)
    labels = {row["id"]: row for row in demo.read_demo_labels(out)}
    strength = np.array([labels[i]["strength"] for i in records.ids])
    target = np.array([labels[i]["target_mean"] for i in records.ids])
    np.testing.assert_allclose(target, 8.0 - 6.0 * strength, atol=1e-5)
    correlation = np.corrcoef(strength, records.mean_scores)[0, 1]
    assert correlation < -0.95
    assert strength.min() < 0.2 and strength.max() > 0.8


def test_score_distribution():
    p = demo.score_distribution(5.5)
    assert p.shape == (10,) and np.isclose(p.sum(), 1.0)
    np.testing.assert_allclose(p @ np.arange(1, 11), 5.5, atol=1e-6)  # symmetric about 5.5
    assert np.argmax(demo.score_distribution(8.0)) == 7  # score 8


def test_idempotent_and_rebuilds_on_new_parameters(tiny, tmp_path, monkeypatch):
    out, ava_txt, _ = tiny
    # Same parameters: nothing is made again.
    calls = []
    monkeypatch.setattr(demo, "_make_one", lambda *a: calls.append(a))
    assert demo.build_demo_ava(out, num_images=30, image_size=64, seed=0)[0] == ava_txt
    assert calls == []
    monkeypatch.undo()

    # The same seed gives the same set elsewhere; other parameters rebuild.
    other = tmp_path / "other"
    ava2, images2 = demo.build_demo_ava(other, num_images=30, image_size=64, seed=0)
    with open(ava_txt) as a, open(ava2) as b:
        assert a.read() == b.read()
    demo.build_demo_ava(other, num_images=12, image_size=64, seed=0)
    assert len(read_ava_txt(ava2)[0]) == 12
    assert sorted(os.listdir(images2), key=lambda n: int(n[:-4])) == [
        f"{i}.jpg" for i in range(1, 13)]
    # Image i does not depend on num_images.
    with open(os.path.join(out, "images", "5.jpg"), "rb") as a, \
            open(os.path.join(images2, "5.jpg"), "rb") as b:
        assert a.read() == b.read()


def test_command_line(tmp_path, capsys):
    from tools import build_demo_ava

    assert build_demo_ava.main(["tools.build_demo_ava", f"--output_dir={tmp_path}",
                                "--num_images=4", "--image_size=32", "--seed=1"]) == 0
    assert "AVA.txt" in capsys.readouterr().out
    assert len(read_ava_txt(tmp_path / "AVA.txt")[0]) == 4
