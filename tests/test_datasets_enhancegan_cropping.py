"""datasets.cropping: the CUHK image cropping dataset's file and Table 3's two metrics, against
values worked out by hand."""
import numpy as np
import pytest
from PIL import Image

from datasets import cropping

PARAMETERS = (
    "animal\\0001.jpg\r\n"
    "10 90 20 180\r\n"
    "0 100 0 200\r\n"
    "5 95 10 190\r\n"
    "\r\n"
    "architecture\\sub\\0002.jpg\r\n"
    "1 2 3 4\r\n"
    "2 3 4 5\r\n"
    "3 4 5 6\r\n"
)


def test_reads_names_categories_and_one_box_per_photographer(tmp_path):
    path = tmp_path / "Cropping parameters.txt"
    path.write_bytes(PARAMETERS.encode("utf-8"))
    records = cropping.read_cropping_parameters(path)
    assert [(r.name, r.category, r.filename) for r in records] == [
        ("animal/0001.jpg", "animal", "0001.jpg"),
        ("architecture/sub/0002.jpg", "architecture/sub", "0002.jpg")]
    np.testing.assert_array_equal(records[0].boxes,
                                  [[10, 90, 20, 180], [0, 100, 0, 200], [5, 95, 10, 190]])
    assert records[1].boxes.shape == (3, 4) and records[1].boxes.dtype == np.int64


@pytest.mark.parametrize("text, message", [
    ("1 2 3 4\n", "before any photo"),
    ("a\\1.jpg\n5 4 1 2\n", "0 <= y1 < y2"),
    ("a\\1.jpg\n1 2 3 4\nb\\2.jpg\n", "no box line"),
    ("a\\1.jpg\n1 2 3 4\n1 2 3 4\nb\\2.jpg\n1 2 3 4\n", "has 1 boxes"),
    ("a\\1.jpg\n1 2 3 4\na\\1.jpg\n1 2 3 4\n", "listed again"),
    ("", "lists no photo"),
])
def test_malformed_files_name_file_and_line(tmp_path, text, message):
    path = tmp_path / "p.txt"
    path.write_text(text)
    with pytest.raises(ValueError, match=message) as error:
        cropping.read_cropping_parameters(path)
    assert "p.txt" in str(error.value)


def test_finds_photos_nested_or_flat_and_reports_missing(tmp_path):
    path = tmp_path / "Cropping parameters.txt"
    path.write_text(PARAMETERS)
    (tmp_path / "images" / "animal").mkdir(parents=True)
    Image.new("RGB", (4, 4)).save(tmp_path / "images" / "animal" / "0001.jpg")
    with pytest.raises(FileNotFoundError, match="1 photos .*architecture/sub/0002.jpg"):
        cropping.load_cropping_dataset(path, tmp_path / "images")
    records = cropping.load_cropping_dataset(path, tmp_path / "images", skip_missing=True)
    assert [r.path for r in records] == [str(tmp_path / "images" / "animal" / "0001.jpg")]
    Image.new("RGB", (4, 4)).save(tmp_path / "images" / "0002.jpg")  # flat layout
    records = cropping.load_cropping_dataset(path, tmp_path / "images")
    assert records[1].path == str(tmp_path / "images" / "0002.jpg")


def test_overlap_ratio_by_hand():
    # G = rows 0..100, cols 0..200 (area 20000). P = rows 50..150, cols 100..300 (20000):
    # intersection rows 50..100 x cols 100..200 = 50 x 100 = 5000; union 35000.
    g = [0, 100, 0, 200]
    assert cropping.overlap_ratio([50, 150, 100, 300], g) == pytest.approx(5000 / 35000)
    assert cropping.overlap_ratio(g, g) == 1.0
    assert cropping.overlap_ratio([100, 150, 0, 200], g) == 0.0  # sharing an edge only
    assert cropping.overlap_ratio([300, 400, 300, 400], g) == 0.0
    # P inside G: rows 25..75 x cols 50..150 = 5000 of 20000.
    assert cropping.overlap_ratio([25, 75, 50, 150], g) == pytest.approx(0.25)
    # Vectorised, and its average.
    values = cropping.overlap_ratio([[50, 150, 100, 300], [25, 75, 50, 150]], [g, g])
    np.testing.assert_allclose(values, [1 / 7, 0.25])
    assert cropping.average_overlap_ratio([[50, 150, 100, 300], [25, 75, 50, 150]],
                                          [g, g]) == pytest.approx((1 / 7 + 0.25) / 2)


def test_boundary_displacement_by_hand():
    # Photo 200 high, 400 wide. dy1 = 10, dy2 = 30, dx1 = 20, dx2 = 60:
    # ((20 + 60) / 400 + (10 + 30) / 200) / 4 = (0.2 + 0.2) / 4 = 0.1.
    predicted, truth = [10, 130, 20, 340], [0, 100, 0, 400]
    assert cropping.boundary_displacement_error(predicted, truth, 200, 400) == pytest.approx(0.1)
    assert cropping.boundary_displacement_error(truth, truth, 200, 400) == 0.0
    # A second photo 100 x 100, every edge off by 5: ((5 + 5) / 100 + (5 + 5) / 100) / 4 = 0.05.
    second = cropping.boundary_displacement_error([5, 95, 5, 95], [0, 90, 0, 90], 100, 100)
    assert second == pytest.approx(0.05)
    assert cropping.average_boundary_displacement(
        [predicted, [5, 95, 5, 95]], [truth, [0, 90, 0, 90]], [200, 100],
        [400, 100]) == pytest.approx(0.075)
    with pytest.raises(ValueError, match="y1, y2, x1, x2"):
        cropping.overlap_ratio([1, 2, 3], [1, 2, 3])
