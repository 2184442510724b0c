"""Held-out real photos for judging enhancers (DESIGN.md section 6), and each demo's degradation.

No demo set uses these photos, and they come from other sources than the scikit-image photos the
demos are built from, so an enhancer trained on a demo has never seen them:

  china   (427x640)  a landscape: a temple roof against a blue sky, trees  (scikit-learn)
  flower  (427x640)  a close-up of a flower, saturated pinks and greens    (scikit-learn)
  hopper  (600x512)  a portrait: Grace Hopper in uniform, skin and lettering (matplotlib)

All three ship inside the installed packages (`sklearn/datasets/images/`,
`matplotlib/mpl-data/sample_data/`): nothing is downloaded. They are loaded at full size as
8-bit RGB.

Degradations, the ones the demos train their enhancers to undo, on float [0, 1] RGB, each
returning the 8-bit photo an enhancer would be given:

  wespe: `datasets.wespe_demo.cheap_camera` (blur, warm cast, low contrast, noise), noise seeded;
  can:   one stop under-exposed, x * 2^-1: the darkest exposure of the CAN demo's inputs
         (`datasets.can_demo.expose`, e = -1);
  piea:  one stop under-exposed, as `tools.piea_demo` darkens its photos;
  enhancegan: the EnhanceGAN demo's mid-range tone and colour degradation
         (`datasets.enhancegan_demo.HELDOUT_DEGRADATION`: under-exposed, flat and faded, the
         exact inverse of the operators at parameters inside their ranges); no margins, since
         the check compares the output with the original within the output's box.

A personalised enhancer (PieNet) is not asked to undo a degradation but to give a photo its
user's look: `retouch` gives a PieNet demo user's retouch of a photo (`datasets.pienet_demo`'s
recipe through the filter chain the caller passes), the target `tools.heldout.check_enhancer`
then judges against (its `target` argument).
"""
import os

import numpy as np

from datasets import enhancegan_demo, pienet_demo, wespe_demo
from datasets.images import load_rgb8, to_uint8

PHOTOS = ("china", "flower", "hopper")
DEGRADATIONS = ("wespe", "can", "piea", "enhancegan")


def _photo_path(name):
    if name in ("china", "flower"):
        try:
            import sklearn.datasets
        except ImportError as error:
            raise ImportError(f"the held-out photo {name!r} ships with scikit-learn: "
                              "pip install scikit-learn") from error
        return os.path.join(os.path.dirname(sklearn.datasets.__file__), "images", f"{name}.jpg")
    if name == "hopper":
        import matplotlib.cbook
        return matplotlib.cbook.get_sample_data("grace_hopper.jpg", asfileobj=False)
    raise ValueError(f"unknown held-out photo {name!r}; choose from {PHOTOS}")


def load_photo(name):
    """The held-out photo `name` (one of PHOTOS) at full size: uint8 (H, W, 3)."""
    return load_rgb8(_photo_path(name))


def load_photos(names=PHOTOS):
    """{name: uint8 (H, W, 3)} of the held-out photos, in the order given."""
    return {name: load_photo(name) for name in names}


def under_exposed(image, stops=1.0):
    """x * 2^-stops on float [0, 1] RGB, the exposure filter's darkening (float32)."""
    return (np.asarray(image, np.float32) * np.float32(2.0 ** -stops)).astype(np.float32)


def degrade(image, degradation, seed=0):
    """`image` (uint8 or float [0, 1] RGB) through a demo's degradation (module docstring),
    quantised to 8 bits as the demos store their inputs: uint8 (H, W, 3)."""
    x = np.asarray(image)
    x = x.astype(np.float32) / 255.0 if x.dtype == np.uint8 else x.astype(np.float32)
    if degradation == "wespe":
        x = wespe_demo.cheap_camera(x, np.random.default_rng([seed, 14]))
    elif degradation in ("can", "piea"):
        x = under_exposed(x)
    elif degradation == "enhancegan":
        x = enhancegan_demo.degrade_colour(x, **enhancegan_demo.HELDOUT_DEGRADATION)
    else:
        raise ValueError(f"unknown degradation {degradation!r}; choose from {DEGRADATIONS}")
    return to_uint8(x, input_precision=True)


def retouch(image, user, render):
    """The PieNet demo user `user`'s retouch of `image` (uint8 or float [0, 1] RGB): the user's
    recipe (`datasets.pienet_demo.recipe`) through `render` (`enhancers.filters.apply`, passed in
    since datasets sit below enhancers), quantised as the demo stores its retouches: uint8."""
    x = np.asarray(image)
    x = x.astype(np.float32) / 255.0 if x.dtype == np.uint8 else x.astype(np.float32)
    out = np.asarray(render(x[np.newaxis], pienet_demo.recipe(user)))[0]
    return to_uint8(np.clip(out, 0.0, 1.0))
