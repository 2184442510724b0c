"""MIT-Adobe FiveK (Bychkovsky et al., CVPR 2011) on disk: input photos and experts' retouches.

FiveK holds 5,000 raw photos, each retouched by five experts, A to E. PIEA (section 4.1), like
EXPOSURE before it, compares its outputs with expert C's versions; CAN-style training uses the
(input, expert) pairs. The layout read here:

    <fivek_dir>/input/      the input photos, e.g. the raw photos exported by Lightroom at 500 px
                            on the long side, as EXPOSURE's wiki prepares them
    <fivek_dir>/expertC/    expert C's retouched versions (likewise expertA ... expertE)

- Expert folders: for expert X (a letter A..E, either case), the first of these names that
  exists directly in `<fivek_dir>`: `expert<X>`, `expert_<x>`, `<X>`, `FiveK_<X>` (EXPOSURE's
  name), all compared case-insensitively (`expertC`, `Expert_C`, `c`, `fivek_C` ...). The input
  folder is `input`, also case-insensitively. Two folders that differ only in case are an error.
- Photos: the files directly in a folder (not recursive) with an extension of
  `datasets.images.IMAGE_EXTENSIONS`, in any case; hidden files are skipped. A photo and its
  retouch pair up by file stem, whatever the extensions: `input/a0001-jmac_DSC1459.tif` with
  `expertC/a0001-jmac_DSC1459.jpg`. Two files with one stem in one folder are an error.
- FiveK numbers: the number of a photo is the integer at the start of its stem, after an
  optional "a": `a0001-jmac_DSC1459` -> 1, `0001` -> 1, `1` -> 1 (a stem that does not start
  that way has no number). EXPOSURE's split files (data/folds/FiveK_test.txt: 1,000 ids, one per
  line) list such numbers.
- Split files (`read_split_file`): one name a line; everything from a "#" on is a comment, blank
  lines are skipped, surrounding white space is ignored. A name that is an optional "a" followed
  by digits (`17`, `0017`, `a0017`) is an id and selects the photos with that FiveK number; any
  other name selects the photo with exactly that stem.

Pairs are returned in natural order of the input names (numbers compared as numbers). Photos
present on one side only are not an error: `match_by_stem` returns them as human-readable lines
(and logs each one), so an evaluation can run on what is there. Typical use:

    pairs, missing = fivek_pairs("fivek/", expert="C", split_file="FiveK_test.txt")
    for input_path, reference_path in pairs: ...
"""
import os
import re

from absl import logging

from datasets.images import is_image_name, natural_key

__all__ = [
    "EXPERTS",
    "INPUT_DIR",
    "expert_dir",
    "expert_dir_names",
    "fivek_number",
    "fivek_pairs",
    "input_dir",
    "list_photos",
    "match_by_stem",
    "read_split_file",
    "selector",
]

EXPERTS = ("A", "B", "C", "D", "E")
INPUT_DIR = "input"
_FIRST_NAMES = 5  # how many names an error message lists
_NUMBER = re.compile(r"a?(\d+)", re.IGNORECASE)
_ID = re.compile(r"a?\d+", re.IGNORECASE)


def _stem(path):
    return os.path.splitext(os.path.basename(path))[0]


def _check_fivek_dir(fivek_dir):
    fivek_dir = os.fspath(fivek_dir)
    if not os.path.isdir(fivek_dir):
        raise ValueError(f"FiveK directory {fivek_dir!r} does not exist or is not a directory")
    return fivek_dir


def _find_folder(fivek_dir, names, what):
    """The first of `names` (case-insensitive) that is a directory in `fivek_dir`."""
    fivek_dir = _check_fivek_dir(fivek_dir)
    with os.scandir(fivek_dir) as entries:
        folders = [e.name for e in entries if e.is_dir()]
    for name in names:
        found = sorted(f for f in folders if f.lower() == name.lower())
        if len(found) > 1:
            raise ValueError(f"{what}: several folders in {fivek_dir!r} differ only in case: "
                             f"{', '.join(found)}")
        if found:
            return os.path.join(fivek_dir, found[0])
    raise ValueError(f"no {what} folder in {fivek_dir!r}: tried {', '.join(names)} "
                     "(case-insensitive)")


def _check_expert(expert):
    letter = str(expert).strip().upper()
    if letter not in EXPERTS:
        raise ValueError(f"expert must be one of {', '.join(EXPERTS)}, got {expert!r}")
    return letter


def expert_dir_names(expert):
    """The folder names tried for `expert`, in order: expert<X>, expert_<x>, <X>, FiveK_<X>."""
    letter = _check_expert(expert)
    return [f"expert{letter}", f"expert_{letter.lower()}", letter, f"FiveK_{letter}"]


def expert_dir(fivek_dir, expert):
    """The folder of expert `expert` ("A".."E", either case) in `fivek_dir`.

    Raises:
      ValueError: `fivek_dir` is not a directory, `expert` is not a letter A..E, or no folder of
        the accepted names exists (the message names `fivek_dir` and the names tried).
    """
    letter = _check_expert(expert)
    return _find_folder(fivek_dir, expert_dir_names(letter), f"expert {letter}")


def input_dir(fivek_dir):
    """`<fivek_dir>/input` (the name compared case-insensitively); ValueError naming it if absent."""
    return _find_folder(fivek_dir, [INPUT_DIR], "input photo")


def list_photos(directory):
    """The photos directly in `directory`, in natural order of their names (module docstring).

    Raises:
      ValueError: `directory` is not a directory, or two photos share a stem (both named).
    """
    directory = os.fspath(directory)
    if not os.path.isdir(directory):
        raise ValueError(f"photo directory {directory!r} does not exist or is not a directory")
    with os.scandir(directory) as entries:
        names = [e.name for e in entries
                 if is_image_name(e.name) and e.is_file()]
    names.sort(key=natural_key)
    seen = {}
    for name in names:
        stem = _stem(name)
        if stem in seen:
            raise ValueError(f"two photos with the stem {stem!r} in {directory!r}: "
                             f"{seen[stem]} and {name}")
        seen[stem] = name
    return [os.path.join(directory, name) for name in names]


def fivek_number(stem):
    """The FiveK number of a file stem: `a0001-jmac_DSC1459` -> 1, `0001` -> 1; None if none."""
    match = _NUMBER.match(stem)
    return int(match.group(1)) if match else None


def read_split_file(path):
    """The names listed in a split file (module docstring): a list of str, in file order.

    Duplicates are kept once. Raises ValueError naming the file if it is missing, unreadable or
    lists no name.
    """
    path = os.fspath(path)
    try:
        with open(path, encoding="utf-8") as f:
            lines = f.read().splitlines()
    except (OSError, UnicodeDecodeError) as error:
        raise ValueError(f"cannot read split file {path!r}: {error}") from error
    names = []
    for line in lines:
        name = line.split("#", 1)[0].strip()
        if name and name not in names:
            names.append(name)
    if not names:
        raise ValueError(f"split file {path!r} lists no photos")
    return names


def selector(names):
    """A function stem -> the names in `names` that select it, and the names themselves."""
    ids, stems = {}, set()
    for name in names:
        name = str(name).strip()
        if _ID.fullmatch(name):
            ids[fivek_number(name)] = name
        else:
            stems.add(name)

    def select(stem):
        chosen = [stem] if stem in stems else []
        number = fivek_number(stem)
        if number in ids:
            chosen.append(ids[number])
        return chosen

    return select, list(ids.values()) + sorted(stems)


def match_by_stem(input_dir, reference_dir, names=None, names_source=None):
    """Pairs the photos of two folders by file stem; returns (pairs, missing).

    Args:
      input_dir: the input photos (`list_photos`).
      reference_dir: their references (an expert's retouches).
      names: optional names to keep (`read_split_file`: stems and FiveK ids); photos selected by
        none of them are ignored on both sides.
      names_source: where `names` come from (a split file), for error messages.

    Returns:
      pairs: [(input_path, reference_path)], in natural order of the input names.
      missing: one line per selected input without a reference and per selected reference
        without an input, naming the file and the folder searched; each is also logged as a
        warning.

    Raises:
      ValueError: a folder is missing or holds two photos with one stem; some of `names` select
        no photo in either folder (the message names them and `names_source`); no pair at all
        (the message names both folders).
    """
    input_dir, reference_dir = os.fspath(input_dir), os.fspath(reference_dir)
    inputs, references = list_photos(input_dir), list_photos(reference_dir)
    if names is not None:
        select, wanted = selector(names)
        used = set()
        kept = []
        for paths in (inputs, references):
            chosen = []
            for path in paths:
                hits = select(_stem(path))
                used.update(hits)
                if hits:
                    chosen.append(path)
            kept.append(chosen)
        inputs, references = kept
        unused = [name for name in wanted if name not in used]
        if unused:
            source = f" (from {names_source})" if names_source else ""
            raise ValueError(
                f"{len(unused)} of the {len(wanted)} listed names{source} match no photo in "
                f"{input_dir!r} or {reference_dir!r}: {', '.join(unused[:_FIRST_NAMES])}"
                + (" ..." if len(unused) > _FIRST_NAMES else ""))

    by_stem = {_stem(path): path for path in references}
    input_stems = {_stem(path) for path in inputs}
    pairs, missing = [], []
    for path in inputs:
        reference = by_stem.get(_stem(path))
        if reference is None:
            missing.append(f"input {path} has no reference in {reference_dir}")
        else:
            pairs.append((path, reference))
    missing.extend(f"reference {path} has no input in {input_dir}"
                   for path in references if _stem(path) not in input_stems)
    for line in missing:
        logging.warning("FiveK: %s", line)
    if not pairs:
        raise ValueError(f"no photo of {input_dir!r} has a reference of the same stem in "
                         f"{reference_dir!r} ({len(inputs)} inputs, {len(references)} references"
                         + (" selected)" if names is not None else ")"))
    return pairs, missing


def fivek_pairs(fivek_dir, expert="C", split_file=None):
    """(input, expert retouch) pairs of a FiveK folder; returns (pairs, missing).

    `fivek_dir` as in the module docstring; `expert` a letter A..E (PIEA: C); `split_file`
    optionally restricts the pairs to the names it lists (`read_split_file`). See
    `match_by_stem` for the return values and errors.
    """
    inputs = input_dir(fivek_dir)
    references = expert_dir(fivek_dir, expert)
    if split_file is None:
        return match_by_stem(inputs, references)
    return match_by_stem(inputs, references, names=read_split_file(split_file),
                         names_source=f"split file {os.fspath(split_file)!r}")
