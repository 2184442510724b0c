"""datasets.fivek: FiveK's input and expert folders, pairing by stem, split files."""
import logging
import os
import re

import numpy as np
import pytest
from PIL import Image

from datasets import fivek

STEMS = ["a0001-jmac_DSC1459", "a0002-dgw_005", "a0010-kme_264", "a0100-MB_DSC1124"]


def _photo(path, value=0):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((6, 9, 3), value, np.uint8)).save(path)
    return str(path)


def _fake_fivek(root, expert_folder="expertC", stems=STEMS, input_ext=".tif", ref_ext=".jpg",
                input_folder="input"):
    """<root>/input/<stem>.tif and <root>/<expert_folder>/<stem>.jpg, as EXPOSURE's export."""
    for i, stem in enumerate(stems):
        _photo(root / input_folder / f"{stem}{input_ext}", 10 * i)
        _photo(root / expert_folder / f"{stem}{ref_ext}", 10 * i + 5)
    return root


def _expected(root, stems=STEMS, expert_folder="expertC", input_folder="input"):
    return [(str(root / input_folder / f"{s}.tif"), str(root / expert_folder / f"{s}.jpg"))
            for s in stems]


# --------------------------------------------------------------------------- folders


@pytest.mark.parametrize("folder", ["expertC", "ExpertC", "expert_c", "Expert_C", "C", "c",
                                    "FiveK_C", "fivek_c"])
def test_expert_folder_names(tmp_path, folder):
    root = _fake_fivek(tmp_path, expert_folder=folder)
    assert fivek.expert_dir(root, "C") == str(root / folder)
    assert fivek.expert_dir(str(root), "c") == str(root / folder)
    pairs, missing = fivek.fivek_pairs(root, expert="C")
    assert pairs == _expected(root, expert_folder=folder) and missing == []


def test_input_folder_any_case_and_expert_preference(tmp_path):
    root = _fake_fivek(tmp_path, expert_folder="FiveK_C", input_folder="Input")
    _fake_fivek(tmp_path, expert_folder="expertC", input_folder="Input")
    assert fivek.input_dir(root) == str(root / "Input")
    # expert<X> comes before FiveK_<X> in the order of names tried.
    assert fivek.expert_dir_names("c") == ["expertC", "expert_c", "C", "FiveK_C"]
    assert fivek.expert_dir(root, "C") == str(root / "expertC")
    assert fivek.fivek_pairs(root)[0] == _expected(root, input_folder="Input")


def test_missing_folders_are_named(tmp_path):
    root = _fake_fivek(tmp_path, expert_folder="expertA")
    (root / "expertB.txt").write_text("a file, not a folder")
    with pytest.raises(ValueError, match=re.escape(str(root)) + ".*tried expertB, expert_b, B, "
                                         "FiveK_B"):
        fivek.expert_dir(root, "B")
    with pytest.raises(ValueError, match="expert C.*tried expertC"):
        fivek.fivek_pairs(root, expert="C")
    with pytest.raises(ValueError, match="A, B, C, D, E.*'F'"):
        fivek.expert_dir(root, "F")
    with pytest.raises(ValueError, match=re.escape(str(tmp_path / "nowhere"))):
        fivek.fivek_pairs(tmp_path / "nowhere")
    no_input = tmp_path / "no_input"
    _fake_fivek(no_input, input_folder="raw")
    with pytest.raises(ValueError, match=r"no input photo folder.*tried input"):
        fivek.fivek_pairs(no_input)


def test_folders_differing_only_in_case_are_refused(tmp_path):
    root = _fake_fivek(tmp_path, expert_folder="expertC")
    (root / "EXPERTC").mkdir()
    if not (root / "expertC").samefile(root / "EXPERTC"):  # a case-sensitive file system
        with pytest.raises(ValueError, match="differ only in case.*EXPERTC, expertC"):
            fivek.expert_dir(root, "C")


# --------------------------------------------------------------------------- pairing


def test_pairs_by_stem_in_natural_order(tmp_path):
    root = tmp_path / "photos"
    inputs, refs = root / "in", root / "ref"
    for stem, ext in (("10", ".PNG"), ("2", ".tiff"), ("1", ".jpeg")):
        _photo(inputs / f"{stem}{ext}")
        _photo(refs / f"{stem}.jpg")
    (inputs / "notes.txt").write_text("not a photo")
    _photo(inputs / ".hidden.png")
    (inputs / "sub").mkdir()
    _photo(inputs / "sub" / "3.png")  # not recursive
    pairs, missing = fivek.match_by_stem(inputs, refs)
    assert pairs == [(str(inputs / "1.jpeg"), str(refs / "1.jpg")),
                     (str(inputs / "2.tiff"), str(refs / "2.jpg")),
                     (str(inputs / "10.PNG"), str(refs / "10.jpg"))]
    assert missing == []


def test_missing_partners_are_reported_by_name(tmp_path, caplog):
    root = _fake_fivek(tmp_path)
    os.remove(root / "expertC" / f"{STEMS[1]}.jpg")
    os.remove(root / "input" / f"{STEMS[3]}.tif")
    extra = _photo(root / "expertC" / "a4999-extra.png")
    with caplog.at_level(logging.WARNING):
        pairs, missing = fivek.fivek_pairs(root, expert="c")
    assert pairs == _expected(root, [STEMS[0], STEMS[2]])
    assert missing == [
        f"input {root / 'input' / STEMS[1]}.tif has no reference in {root / 'expertC'}",
        f"reference {root / 'expertC' / STEMS[3]}.jpg has no input in {root / 'input'}",
        f"reference {extra} has no input in {root / 'input'}",
    ]
    for line in missing:
        assert line in caplog.text


def test_no_pair_and_duplicate_stems_are_errors(tmp_path):
    root = _fake_fivek(tmp_path, stems=STEMS[:2])
    other = tmp_path / "other"
    _photo(other / "unrelated.png")
    with pytest.raises(ValueError, match=re.escape(str(root / "input")) + ".*"
                       + re.escape(str(other)) + r".*2 inputs, 1 references"):
        fivek.match_by_stem(root / "input", other)
    _photo(root / "input" / f"{STEMS[0]}.png")
    with pytest.raises(ValueError, match=f"two photos with the stem '{STEMS[0]}'.*"
                                         f"{STEMS[0]}.png and {STEMS[0]}.tif"):
        fivek.fivek_pairs(root)
    with pytest.raises(ValueError, match="photo directory.*missing"):
        fivek.match_by_stem(root / "missing", other)


# --------------------------------------------------------------------------- split files


def test_fivek_numbers():
    assert fivek.fivek_number("a0001-jmac_DSC1459") == 1
    assert fivek.fivek_number("A4999-foo") == 4999
    assert fivek.fivek_number("0001") == 1
    assert fivek.fivek_number("17") == 17
    assert fivek.fivek_number("DSC1459") is None
    assert fivek.fivek_number("holiday") is None


def test_read_split_file(tmp_path):
    path = tmp_path / "FiveK_test.txt"
    path.write_text("# EXPOSURE's test fold\n1\n  0002  \n\na0010-kme_264  # a stem\n1\n"
                    "a0100\r\n")
    assert fivek.read_split_file(path) == ["1", "0002", "a0010-kme_264", "a0100"]
    with pytest.raises(ValueError, match=re.escape(str(tmp_path / "missing.txt"))):
        fivek.read_split_file(tmp_path / "missing.txt")
    empty = tmp_path / "empty.txt"
    empty.write_text("# nothing\n\n")
    with pytest.raises(ValueError, match=re.escape(str(empty)) + ".*lists no photos"):
        fivek.read_split_file(empty)


def test_split_by_id_and_by_stem(tmp_path):
    root = _fake_fivek(tmp_path)
    _photo(root / "input" / "0050.png")  # not selected: neither reported nor paired
    by_id = tmp_path / "ids.txt"
    by_id.write_text("# EXPOSURE writes plain integers\n1\n100\n")
    pairs, missing = fivek.fivek_pairs(root, split_file=by_id)
    assert pairs == _expected(root, [STEMS[0], STEMS[3]]) and missing == []

    by_stem = tmp_path / "stems.txt"
    by_stem.write_text(f"{STEMS[2]}\n0002\na0100\n")
    pairs, _ = fivek.fivek_pairs(root, split_file=str(by_stem))
    assert pairs == _expected(root, STEMS[1:])

    # A listed photo with a reference but no input is reported, not an error.
    os.remove(root / "input" / f"{STEMS[3]}.tif")
    pairs, missing = fivek.fivek_pairs(root, split_file=by_id)
    assert pairs == _expected(root, [STEMS[0]])
    assert missing == [f"reference {root / 'expertC' / STEMS[3]}.jpg has no input in "
                       f"{root / 'input'}"]

    # Plain stems that are numbers: 0050.png has FiveK number 50.
    (root / "expertC" / "0050.png").write_bytes((root / "input" / "0050.png").read_bytes())
    fifty = tmp_path / "fifty.txt"
    fifty.write_text("50\n")
    assert fivek.fivek_pairs(root, split_file=fifty)[0] == [
        (str(root / "input" / "0050.png"), str(root / "expertC" / "0050.png"))]


def test_split_names_without_photos_are_errors(tmp_path):
    root = _fake_fivek(tmp_path)
    split = tmp_path / "FiveK_test.txt"
    split.write_text("1\n4321\na0002-dgw_005\nno_such_photo\n")
    with pytest.raises(ValueError, match=r"2 of the 4 listed names \(from split file '"
                       + re.escape(str(split)) + r"'\) match no photo.*4321, no_such_photo"):
        fivek.fivek_pairs(root, split_file=split)
    with pytest.raises(ValueError, match=re.escape(str(tmp_path / "absent.txt"))):
        fivek.fivek_pairs(root, split_file=tmp_path / "absent.txt")
    # The library call without a source names the folders.
    with pytest.raises(ValueError, match="1 of the 1 listed names match no photo in "
                                         + re.escape(repr(str(root / "input")))):
        fivek.match_by_stem(root / "input", root / "expertC", names=["77"])
