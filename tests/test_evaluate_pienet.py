"""tools.evaluate_pienet: the PCA of Figure 8 against the covariance's eigenvectors, and the
new-user protocol of Figure 6 and the embedding figure on a tiny random setup (the demo set at
32 px, random networks)."""
import numpy as np
import pytest
from PIL import Image

from datasets.pienet_demo import build_pienet_demo, demo_users
from enhancers import filters
from enhancers.pienet import build_embedding, build_pienet
from tools import report as reports
from tools.evaluate_pienet import embedding_figure, new_user_protocol, pca_2d


def test_pca_matches_the_covariance_eigenvectors():
    rng = np.random.default_rng(0)
    matrix = rng.normal(size=(40, 6)) * np.array([5.0, 3.0, 1.0, 0.5, 0.2, 0.1]) + 2.0
    projected, components, mean = pca_2d(matrix)
    values, vectors = np.linalg.eigh(np.cov(matrix, rowvar=False, bias=True))
    top = vectors[:, ::-1][:, :2].T
    np.testing.assert_allclose(np.abs(np.sum(components * top, axis=1)), 1.0, atol=1e-10)
    np.testing.assert_allclose(projected.var(axis=0), values[::-1][:2], rtol=1e-10)
    np.testing.assert_allclose(mean, matrix.mean(axis=0))
    for row in components:  # the sign rule: the largest entry is positive
        assert row[np.abs(row).argmax()] > 0
    np.testing.assert_allclose(projected, (matrix - mean) @ components.T)
    flat, _, _ = pca_2d(np.ones((3, 4)))  # no variance: zero projections, no NaN
    assert np.all(flat == 0)


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = build_pienet_demo(str(tmp_path_factory.mktemp("demo")), render=filters.apply,
                             image_size=32, num_train=6, num_test=2, seed=0)
    return dict(users=demo_users(root, "held_out"), train=demo_users(root, "train"),
                pienet=build_pienet(widths=(8, 8, 8), preference_channels=4,
                                    zero_init_output=False),
                embedding=build_embedding())


def test_protocol_rows_spread_and_bar_plots(setup, tmp_path):
    users = setup["users"]
    pool = min(len(users.photos(k, "train")) for k in range(len(users.names)))
    report = new_user_protocol(setup["pienet"], setup["embedding"], users, n_prefs=(2, 50),
                               repeats=2, triplet_steps=3, size=32, output_dir=str(tmp_path))
    names = [row["name"] for row in report["rows"]]
    assert names == ["average, N_pref=2", f"average, N_pref={pool}", "triplets, N_pref=2",
                     f"triplets, N_pref={pool}", "input (identity)"]
    assert report["n_pref"] == [2, pool] and report["n_pref_requested"] == [2, 50]
    rows = {row["name"]: row["metrics"] for row in report["rows"]}
    assert rows["average, N_pref=2"]["psnr_std"] > 0  # two different draws
    assert rows[f"average, N_pref={pool}"]["psnr_std"] < 1e-9  # every photo: the same vector
    assert all(np.isfinite(m["psnr"]) and 0 < m["ssim"] <= 1 for m in rows.values())
    assert reports.read_report(tmp_path / "new_users.json")["rows"] == report["rows"]
    for metric in ("psnr", "ssim"):
        with Image.open(report["figures"][metric]) as image:
            assert image.size[0] > 100 and image.format == "PNG"


def test_embedding_figure_projects_vectors_like_the_photos(setup, tmp_path):
    train, held_out = setup["train"], setup["users"]
    rng = np.random.default_rng(0)
    vectors = {name: rng.normal(size=512) for name in train.names[:2] + held_out.names[:1]}
    path = tmp_path / "figure8.png"
    result = embedding_figure(setup["embedding"], (train, held_out), vectors, str(path),
                              size=32)
    assert set(result["points"]) == set(train.names + held_out.names)
    assert set(result["vectors"]) == set(vectors)
    assert path.exists() and 0 < sum(result["explained"]) <= 1 + 1e-9
    with Image.open(path) as image:
        assert image.format == "PNG"


@pytest.mark.slow
def test_the_command_reads_a_run_and_writes_figures_6_and_8(shared, tmp_path, capsys, caplog):
    """`python -m train.evaluate_pienet` (in this process) on a tiny two-stage run given by its
    flagfile: the report and the three figures in --output_dir; a folder without a run fails
    with one line naming what is missing."""
    from tests.task_testing import pienet_tiny
    from train import evaluate_pienet, runner
    from train.pienet_task import PienetConfig, PienetTask

    root = tmp_path / "run"
    settings = pienet_tiny(shared, root / "embedding")
    del settings["stage"], settings["stage_root"], settings["batch_size"]
    flagfile = tmp_path / "tiny.flags"
    flagfile.write_text("".join(
        f"--{key}={','.join(map(str, value)) if isinstance(value, tuple) else value}\n"
        for key, value in settings.items()))
    for stage in ("embedding", "enhancer"):
        runner.run(PienetTask, PienetConfig(**{
            **settings, "stage": stage, "stage_root": str(root),
            "model_dir": str(root / stage), "export_dir": None, "seed": 0,
            "train_steps": 2, "batch_size": 4, "checkpoint_every": 1, "log_every": 1}))
    output = tmp_path / "new_users"
    code = evaluate_pienet.main(["evaluate_pienet", f"--run_flags={flagfile}",
                                 f"--model_dir={root}", f"--output_dir={output}",
                                 "--n_pref=1,2", "--repeats=2", "--schemes=average",
                                 "--max_test_images=1"])
    assert code == 0
    report = reports.read_report(output / "new_users.json")
    assert [row["name"] for row in report["rows"]] == [
        "average, N_pref=1", "average, N_pref=2", "input (identity)"]
    for name in ("figure6_psnr.png", "figure6_ssim.png", "figure8_pca.png"):
        with Image.open(output / name) as image:
            assert image.format == "PNG"
    assert "N_pref=2" in capsys.readouterr().out

    empty = tmp_path / "not_a_run"
    empty.mkdir()
    code = evaluate_pienet.main(["evaluate_pienet", f"--run_flags={flagfile}",
                                 f"--model_dir={empty}", "--repeats=1", "--schemes=average"])
    assert code == 1
    assert f"No trained PIENET in {empty}" in caplog.text


def test_a_long_title_is_wrapped_to_the_plot_and_drawn_whole():
    """A narrow plot (one scheme's Figure 6) breaks its title into lines that fit: with the
    title on two lines, the top rows of the image hold ink, and no line is wider than the
    figure allows."""
    from tools import figures

    title = "New users (Figure 6): PSNR, mean and std over 10 draws of the preferred photos"
    lines = figures.wrap_title(title, 380).split("\n")
    assert len(lines) >= 2 and max(map(len, lines)) <= 380 // 8
    assert " ".join(lines) == title
    image = figures.bar_plot({"N=5": {"average": (20.0, 0.5)}, "N=10": {"average": (20.4, 0.4)},
                              "N=20": {"average": (21.0, 0.2)}}, None, title=title, ylabel="PSNR")
    assert image.shape[1] == 380
    dark = (image[:60].min(axis=2) < 100)  # the title's ink in the top rows
    columns = np.flatnonzero(dark.any(axis=0))
    assert columns.size and columns[0] > 0 and columns[-1] < image.shape[1] - 1  # not cut
