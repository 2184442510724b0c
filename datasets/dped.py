"""DPED (Ignatov et al., ICCV 2017) on disk: the files of one phone, for WESPE.

DPED's layout (the archive unpacks to `dped/`):

    dped/<phone>/training_data/<phone>/<n>.jpg            100x100 phone patches
    dped/<phone>/training_data/canon/<n>.jpg              100x100 DSLR patches, aligned to the
                                                          phone ones (WESPE never uses that)
    dped/<phone>/test_data/patches/<phone>/<n>.jpg        aligned test patches ...
    dped/<phone>/test_data/patches/canon/<n>.jpg          ... and their DSLR references
    dped/<phone>/test_data/full_size_test_images/<n>.jpg  full-size phone photos

WESPE (section 4.1) trains on the phone and DSLR training patches as two independent, unpaired
sets ("a random positive (i.e., DSLR) image and a random negative one" at each iteration) and
reports PSNR/SSIM on the aligned test patches. Training is therefore

    files = dped_files("dped/", "iphone")
    ds = unpaired.make_unpaired_dataset(files.train_source, files.train_target, patch_size=100,
                                        batch_size=30, seed=0, **PATCH_FILE_GROUPS)

and the two lists are drawn independently. Any phone folder name works (the embedded demo,
`datasets.wespe_demo`, uses "phone"); `PHONES` lists DPED's three.
"""
import dataclasses
import os

from absl import logging

from datasets.unpaired import list_images, match_pairs

PHONES = ("iphone", "blackberry", "sony")  # iPhone 3GS, BlackBerry Passport, Sony Xperia Z
DSLR = "canon"  # Canon 70D
PATCH_SIZE = 100  # DPED's training and test patches are 100x100
# Group settings for training files that are already patch-sized: one crop per file (a file has
# only one), so a group of images_per_group * 1 patches never repeats a file.
PATCH_FILE_GROUPS = {"images_per_group": 64, "patches_per_image": 1}


@dataclasses.dataclass
class DpedFiles:
    """The files of one phone.

    Attributes:
      train_source: the phone's training patches (the source domain).
      train_target: the DSLR training patches (the target domain).
      test_pairs: [(phone patch, DSLR patch)] of the aligned test patches, matched by file name;
        empty if the test patch folders are absent.
      full_size: the full-size test photos; empty if their folder is absent.
      root: the phone's folder (`dped/<phone>`).
      phone: the phone's name.
    """

    train_source: list
    train_target: list
    test_pairs: list
    full_size: list
    root: str = ""
    phone: str = ""


def phone_root(dped_dir, phone):
    """`dped/<phone>` given either `dped/` or `dped/<phone>/`.

    Raises:
      ValueError: neither `<dped_dir>/<phone>/training_data` nor `<dped_dir>/training_data`
        exists; the message names the expected paths.
    """
    dped_dir, phone = os.fspath(dped_dir), str(phone)
    if not phone or os.sep in phone or phone in (".", ".."):
        raise ValueError(f"phone must be a folder name, got {phone!r}")
    nested = os.path.join(dped_dir, phone)
    if os.path.isdir(os.path.join(nested, "training_data")):
        return nested
    if os.path.isdir(os.path.join(dped_dir, "training_data")):
        return dped_dir
    raise ValueError(
        f"no DPED training data for phone {phone!r}: expected "
        f"{os.path.join(nested, 'training_data')!r} (dped_dir = the DPED root) or "
        f"{os.path.join(dped_dir, 'training_data')!r} (dped_dir = the phone's folder)")


def _training_folder(root, name):
    path = os.path.join(root, "training_data", name)
    if not os.path.isdir(path):
        raise ValueError(f"DPED training folder {path!r} does not exist")
    return list_images(path)


def dped_files(dped_dir, phone):
    """The DPED files of `phone` (any folder name) under `dped/` or `dped/<phone>/`.

    Returns:
      DpedFiles. The test pairs and full-size photos are optional: if their folders are absent
      the lists are empty and a warning is logged.

    Raises:
      ValueError: a training folder is missing or holds no images (the message names the
        expected path); test patches whose names do not match between the phone and DSLR
        folders (see `unpaired.match_pairs`).
    """
    root = phone_root(dped_dir, phone)
    train_source = _training_folder(root, phone)
    train_target = _training_folder(root, DSLR)

    patches = os.path.join(root, "test_data", "patches")
    phone_patches, dslr_patches = os.path.join(patches, phone), os.path.join(patches, DSLR)
    if os.path.isdir(phone_patches) and os.path.isdir(dslr_patches):
        test_pairs = match_pairs(phone_patches, dslr_patches)
    else:
        missing = [p for p in (phone_patches, dslr_patches) if not os.path.isdir(p)]
        logging.warning("DPED %s: no test patch pairs (missing %s)", phone, ", ".join(missing))
        test_pairs = []

    full_dir = os.path.join(root, "test_data", "full_size_test_images")
    if os.path.isdir(full_dir):
        full_size = list_images(full_dir)
    else:
        logging.warning("DPED %s: no full-size test images (missing %s)", phone, full_dir)
        full_size = []
    return DpedFiles(train_source=train_source, train_target=train_target, test_pairs=test_pairs,
                     full_size=full_size, root=root, phone=phone)
