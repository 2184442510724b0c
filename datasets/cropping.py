"""The CUHK Image Cropping dataset (Yan et al., CVPR 2013) and its two metrics, for EnhanceGAN's
Table 3 (Deng, Loy & Tang, ACM MM 2018, section 4.2).

The dataset: 950 photos, each cropped by three photographers. `Cropping parameters.txt` holds
four lines per photo: its name as `category\\filename` (a Windows path), then one line per
photographer with that photographer's box as `y1 y2 x1 x2` in pixels of the photo:

    animal\\0001.jpg
    30 420 15 600
    12 430 40 590
    25 400 10 610

`read_cropping_parameters` parses it (any number of photographers, the same for every photo);
`load_cropping_dataset` also finds each photo under an image folder (`<image_dir>/<category>/
<filename>`, or `<image_dir>/<filename>`).

Boxes are (y1, y2, x1, x2) with y2 > y1 and x2 > x1, taken as the continuous rectangle
[y1, y2] x [x1, x2]: its area is (y2 - y1)(x2 - x1), and two boxes that share an edge do not
overlap. The metrics (Yan et al. 2013, as Table 3 reports them), per photo and averaged over
photos:

    overlap ratio  IoU = area(P & G) / area(P | G), higher is better;
    boundary displacement error
                   BDE = ((|x1P - x1G| + |x2P - x2G|) / W + (|y1P - y1G| + |y2P - y2G|) / H) / 4,
                   with W x H the photo's size; lower is better.
"""
import dataclasses
import os

import numpy as np

__all__ = [
    "CropRecord",
    "average_boundary_displacement",
    "average_overlap_ratio",
    "boundary_displacement_error",
    "load_cropping_dataset",
    "overlap_ratio",
    "read_cropping_parameters",
]

PARAMETERS_FILE = "Cropping parameters.txt"


@dataclasses.dataclass
class CropRecord:
    """One photo of the cropping dataset.

    Attributes:
      name: its name as listed, with "/" for the Windows "\\" ("animal/0001.jpg").
      category: the part before the last "/" ("" if none).
      filename: the part after it.
      boxes: int64 (photographers, 4): each photographer's (y1, y2, x1, x2).
      path: the image file ("" until `load_cropping_dataset` finds it).
    """

    name: str
    category: str
    filename: str
    boxes: np.ndarray
    path: str = ""


def _box_line(fields):
    """The four ints of a box line, or None when the line is not one."""
    if len(fields) != 4:
        return None
    try:
        values = [float(v) for v in fields]
    except ValueError:
        return None
    if not all(v == int(v) for v in values):
        return None
    return [int(v) for v in values]


def read_cropping_parameters(path):
    """`Cropping parameters.txt` -> [CropRecord] in file order (module docstring).

    A line of four integers is a box of the photo named last; any other non-blank line names a
    photo. Every photo must have the same number (>= 1) of boxes.

    Raises:
      ValueError: a box before the first name, a box with y2 <= y1 or x2 <= x1 or a negative
        coordinate, a photo without boxes or with another number of boxes than the first, or
        a name listed twice; the message names the file and line.
    """
    path = os.fspath(path)
    records, seen = [], {}
    current, boxes, current_line = None, [], 0

    def finish():
        if current is None:
            return
        if not boxes:
            raise ValueError(f"{path}, line {current_line}: photo {current!r} has no box line "
                             f"(`y1 y2 x1 x2`) after it")
        if records and len(boxes) != len(records[0].boxes):
            raise ValueError(f"{path}, line {current_line}: photo {current!r} has "
                             f"{len(boxes)} boxes, but {records[0].name!r} has "
                             f"{len(records[0].boxes)}; every photo needs one per photographer")
        category, _, filename = current.rpartition("/")
        records.append(CropRecord(current, category, filename, np.asarray(boxes, np.int64)))

    with open(path, "r", encoding="utf-8-sig") as f:
        for line_number, line in enumerate(f, start=1):
            text = line.strip()
            if not text:
                continue
            box = _box_line(text.split())
            if box is None:
                finish()
                current = text.replace("\\", "/").strip("/")
                if current in seen:
                    raise ValueError(f"{path}, line {line_number}: photo {current!r} is listed "
                                     f"again (first on line {seen[current]})")
                seen[current], boxes, current_line = line_number, [], line_number
                continue
            if current is None:
                raise ValueError(f"{path}, line {line_number}: a box line before any photo "
                                 f"name: {text!r}")
            y1, y2, x1, x2 = box
            if y2 <= y1 or x2 <= x1 or min(box) < 0:
                raise ValueError(f"{path}, line {line_number}: box `y1 y2 x1 x2` = {box} of "
                                 f"{current!r} needs 0 <= y1 < y2 and 0 <= x1 < x2")
            boxes.append(box)
    finish()
    if not records:
        raise ValueError(f"{path} lists no photo")
    return records


def load_cropping_dataset(parameters_file, image_dir, *, skip_missing=False):
    """The records of `parameters_file` with `path` set to each photo under `image_dir`.

    A photo `category/filename` is `<image_dir>/<category>/<filename>` if that exists, else
    `<image_dir>/<filename>`.

    Raises:
      FileNotFoundError: `image_dir` does not exist, or photos are missing and skip_missing is
        False (the message gives the count and the first names); with skip_missing they are
        left out.
    """
    image_dir = os.fspath(image_dir)
    if not os.path.isdir(image_dir):
        raise FileNotFoundError(f"cropping dataset image folder {image_dir!r} does not exist")
    found, missing = [], []
    for record in read_cropping_parameters(parameters_file):
        nested = os.path.join(image_dir, *record.name.split("/"))
        flat = os.path.join(image_dir, record.filename)
        path = nested if os.path.isfile(nested) else flat if os.path.isfile(flat) else None
        if path is None:
            missing.append(record.name)
            continue
        record.path = path
        found.append(record)
    if missing and not skip_missing:
        raise FileNotFoundError(
            f"{len(missing)} photos of {os.fspath(parameters_file)} are not in {image_dir} "
            f"(first: {', '.join(missing[:5])}); pass skip_missing=True to leave them out")
    return found


def _boxes(boxes):
    boxes = np.asarray(boxes, np.float64)
    if boxes.shape[-1] != 4:
        raise ValueError(f"boxes must be (..., 4) arrays of (y1, y2, x1, x2), got {boxes.shape}")
    return boxes


def overlap_ratio(predicted, ground_truth):
    """IoU of (y1, y2, x1, x2) boxes (module docstring), elementwise over leading axes."""
    p, g = np.broadcast_arrays(_boxes(predicted), _boxes(ground_truth))
    height = np.clip(np.minimum(p[..., 1], g[..., 1]) - np.maximum(p[..., 0], g[..., 0]), 0, None)
    width = np.clip(np.minimum(p[..., 3], g[..., 3]) - np.maximum(p[..., 2], g[..., 2]), 0, None)
    inter = height * width
    area_p = (p[..., 1] - p[..., 0]) * (p[..., 3] - p[..., 2])
    area_g = (g[..., 1] - g[..., 0]) * (g[..., 3] - g[..., 2])
    union = area_p + area_g - inter
    return np.where(union > 0, inter / np.where(union > 0, union, 1.0), 0.0)


def boundary_displacement_error(predicted, ground_truth, height, width):
    """((|dx1| + |dx2|) / W + (|dy1| + |dy2|) / H) / 4 of (y1, y2, x1, x2) boxes in a photo of
    `height` x `width` pixels, elementwise (height, width broadcast)."""
    p, g = np.broadcast_arrays(_boxes(predicted), _boxes(ground_truth))
    d = np.abs(p - g)
    height = np.asarray(height, np.float64)
    width = np.asarray(width, np.float64)
    return ((d[..., 2] + d[..., 3]) / width + (d[..., 0] + d[..., 1]) / height) / 4.0


def average_overlap_ratio(predicted, ground_truth):
    """The mean IoU over the boxes (Table 3's first number)."""
    return float(np.mean(overlap_ratio(predicted, ground_truth)))


def average_boundary_displacement(predicted, ground_truth, heights, widths):
    """The mean boundary displacement error over the boxes (Table 3's second number)."""
    return float(np.mean(boundary_displacement_error(predicted, ground_truth, heights, widths)))
