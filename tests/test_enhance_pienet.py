"""tools.enhance --method=pienet (Kim et al., section 3.2) on a tiny PieNet export written here:
a preference file or a training user of the metadata, photos of two sizes, and one-line errors
for a vector of the wrong dimension, an unknown user and --method=saved_model."""
import numpy as np
import pytest
from PIL import Image

from datasets.images import load_rgb8
from enhancers.pienet import build_pienet, save_preference
from tools import enhance
from tools.export import export_pienet

SIZES = ((20, 28), (33, 17))


@pytest.fixture(scope="module")
def case(tmp_path_factory):
    root = tmp_path_factory.mktemp("pienet_enhance")
    model = build_pienet(widths=(8, 8, 8), preference_channels=4, zero_init_output=False)
    rng = np.random.default_rng(0)
    users = {name: rng.normal(size=512).astype(np.float32) for name in ("A", "B")}
    path = export_pienet(model, str(root / "export"), metadata={
        "users": {k: [float(x) for x in v] for k, v in users.items()},
        "mean_vector": [float(x) for x in (users["A"] + users["B"]) / 2]})
    photos = root / "photos"
    photos.mkdir()
    for index, (height, width) in enumerate(SIZES):
        coarse = rng.integers(0, 256, (height // 4 + 2, width // 4 + 2, 3), dtype=np.uint8)
        Image.fromarray(coarse).resize((width, height), Image.BILINEAR).save(
            photos / f"p{index}.png")
    return dict(root=root, model=model, users=users, export=path, photos=photos)


def _expected(case, index, vector):
    image = load_rgb8(str(case["photos"] / f"p{index}.png")).astype(np.float32) / 255
    outputs = case["model"]({"images": image[None], "preference": vector[None]}, training=False)
    return np.clip(np.asarray(outputs["enhanced"])[0], 0, 1)


def _run(caplog, *args):
    caplog.clear()
    return enhance.main(["enhance", "--method=pienet", *args]), caplog.text


def test_preference_file_and_training_user_at_two_sizes(case, tmp_path, caplog):
    vector = np.random.default_rng(1).normal(size=512).astype(np.float32)
    preference = save_preference(tmp_path / "me.json", vector, scheme="average")
    for flag, used in ((f"--preference={preference}", vector),
                       ("--preference_user=B", case["users"]["B"])):
        output = tmp_path / flag.split("=")[0].strip("-")
        code, _ = _run(caplog, f"--saved_model={case['root'] / 'export'}", flag,
                       f"--output_dir={output}", str(case["photos"]))
        assert code == 0
        for index, (height, width) in enumerate(SIZES):
            written = load_rgb8(str(output / f"p{index}.png")).astype(np.float32) / 255
            assert written.shape == (height, width, 3)
            np.testing.assert_allclose(written, _expected(case, index, used), atol=0.6 / 255)
    first = load_rgb8(str(tmp_path / "preference" / "p0.png"))
    second = load_rgb8(str(tmp_path / "preference_user" / "p0.png"))
    assert np.abs(first.astype(int) - second).max() > 0  # the vector matters


def test_errors_name_the_file_user_or_method(case, tmp_path, caplog):
    export, photos = case["root"] / "export", str(case["photos"])
    short = save_preference(tmp_path / "short.json", np.ones(8, np.float32))
    code, log = _run(caplog, f"--saved_model={export}", f"--preference={short}",
                     f"--output_dir={tmp_path / 'out'}", photos)
    assert code == 1 and f"{short}: a preference vector of dimension 8, the export" in log
    assert "takes 512" in log
    code, log = _run(caplog, f"--saved_model={export}", "--preference_user=Z",
                     f"--output_dir={tmp_path / 'out'}", photos)
    assert code == 1 and "--preference_user=Z: not a user of" in log and "A, B, mean" in log
    code, log = _run(caplog, f"--saved_model={export}", f"--output_dir={tmp_path / 'out'}",
                     photos)
    assert code == 1 and "needs one of --preference" in log
    caplog.clear()
    code = enhance.main(["enhance", f"--saved_model={export}", f"--output_dir={tmp_path / 'o'}",
                         photos])
    assert code == 1 and "use --method=pienet" in caplog.text
