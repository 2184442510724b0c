"""A new user's preference file from a folder of their photos (PieNet, section 3.4):
`python -m tools.personalize`.

    python -m tools.personalize --preferred_dir=my_favourites/ --output=me.json \\
        --embedding=runs/pienet/embedding
    python -m tools.enhance --method=pienet --saved_model=runs/pienet/export \\
        --preference=me.json photos/ --output_dir=enhanced

- `--embedding`: the embedding stage's directory (holding `embedding.weights.h5`), that file
  itself, or a PieNet export, whose metadata.json names its run's embedding stage (the export
  holds only the enhancer). With an export, the vector's dimension is checked against the
  export's preference input.
- `--scheme=average` (default, the paper's): the mean of the L2-normalised embeddings of the
  preferred photos. `--scheme=triplets`: the triplet loss (equation 1) over the vector alone,
  which needs photos the user does not like, `--negatives_dir` (section 4.2 uses three times as
  many negatives as preferred photos); `enhancers.pienet.personalize` says more.
- Each photo is shown to the network as its central square at `--size` pixels (256, the
  embedding's training size, section 4.1). Files that cannot be decoded are skipped by name.
- The output is the JSON of `enhancers.pienet.save_preference`, with the scheme, the photos
  used and skipped, and the embedding's file beside the vector.
"""
import json
import os

import numpy as np
from absl import flags, logging

from datasets.images import IMAGE_EXTENSIONS, ImageDecodeError, is_image_name
from datasets.pienet import central_view
from enhancers.pienet import (build_embedding, preference_by_triplets, preference_from_photos,
                              save_preference)
from enhancers.pienet.embedding import EMBEDDING_SIZE
from tools import cli

SCHEMES = ("average", "triplets")
EMBEDDING_WEIGHTS = "embedding.weights.h5"  # train.pienet_task's file name
EXPORT_METADATA = os.path.join("assets.extra", "metadata.json")  # tools.export's


class PersonalizeError(ValueError):
    """A user-facing, one-line error naming the folder, file or flag at fault."""


def image_files(folder, flag):
    """The image files directly in `folder`, sorted; PersonalizeError if none or no folder."""
    if not os.path.isdir(folder):
        raise PersonalizeError(f"--{flag}={folder}: no such folder")
    names = sorted(name for name in os.listdir(folder) if is_image_name(name)
                   and os.path.isfile(os.path.join(folder, name)))
    if not names:
        raise PersonalizeError(f"--{flag}={folder}: the folder holds no photos "
                               f"({', '.join(IMAGE_EXTENSIONS)})")
    return [os.path.join(folder, name) for name in names]


def load_views(folder, size, flag):
    """(views (n, size, size, 3) float32, files used, [(file, reason)] skipped) of a folder's
    photos: each its central square at `size` px. PersonalizeError if none decodes."""
    views, used, skipped = [], [], []
    for path in image_files(folder, flag):
        try:
            views.append(central_view(path, size))
            used.append(path)
        except (ImageDecodeError, OSError) as error:
            reason = getattr(error, "reason", None) or str(error)
            logging.warning("Skipping %s: cannot read image: %s", path, reason)
            skipped.append((path, reason))
    if not views:
        raise PersonalizeError(f"--{flag}={folder}: none of its {len(skipped)} photos could be "
                               f"decoded ({', '.join(os.path.basename(p) for p, _ in skipped)})")
    return np.stack(views), used, skipped


def _export_metadata(path):
    for candidate in (path, *_versions(path)):
        metadata = os.path.join(candidate, EXPORT_METADATA)
        if os.path.isfile(metadata):
            with open(metadata) as stream:
                return metadata, json.load(stream)
    return None, None


def _versions(path):
    if not os.path.isdir(path):
        return []
    numbers = sorted((int(name) for name in os.listdir(path) if name.isdigit()), reverse=True)
    return [os.path.join(path, str(number)) for number in numbers]


def export_run_config(path):
    """The run configuration (dict) recorded in the metadata of the PieNet export at `path`
    (its base or version directory); PersonalizeError naming `path` if it is not one."""
    metadata_path, metadata = _export_metadata(path)
    if metadata is None or metadata.get("kind") != "pienet":
        raise PersonalizeError(f"{path}: not a PieNet export (no {EXPORT_METADATA} of kind "
                               "'pienet')")
    return metadata.get("config") or {}


def resolve_embedding(path):
    """(embedding weights file, the export's preference dimension or None) from --embedding
    (module docstring); PersonalizeError naming `path` when nothing there fits."""
    if os.path.isfile(path):
        return path, None
    if os.path.isfile(os.path.join(path, EMBEDDING_WEIGHTS)):
        return os.path.join(path, EMBEDDING_WEIGHTS), None
    metadata_path, metadata = _export_metadata(path)
    if metadata is None:
        raise PersonalizeError(f"--embedding={path}: neither {EMBEDDING_WEIGHTS}, a directory "
                               "holding it (the embedding stage's), nor a PieNet export")
    if metadata.get("kind") != "pienet":
        raise PersonalizeError(f"--embedding={path}: {metadata_path} is a "
                               f"{metadata.get('kind')!r} export, not a PieNet one")
    config = metadata.get("config") or {}
    stage = config.get("embedding_dir") or (
        os.path.join(config["stage_root"], "embedding") if config.get("stage_root") else None)
    weights = stage and os.path.join(stage, EMBEDDING_WEIGHTS)
    if not weights or not os.path.isfile(weights):
        raise PersonalizeError(f"--embedding={path}: the export's run names the embedding stage "
                               f"{stage}, which has no {EMBEDDING_WEIGHTS}; give "
                               "--embedding=<the embedding stage's directory>")
    return weights, int(metadata["pienet"]["preference_dim"])


def load_embedding(weights):
    """The embedding network with `weights` loaded; PersonalizeError naming the file if they do
    not fit (another network, a damaged file)."""
    previous = logging.get_verbosity()
    logging.set_verbosity(logging.ERROR)  # no random-weights warning: they are loaded next
    try:
        model = build_embedding()
    finally:
        logging.set_verbosity(previous)
    try:
        model.load_weights(weights)
    except Exception as error:  # h5py, Keras: a file of another model or none at all
        raise PersonalizeError(f"--embedding: {weights} does not hold PieNet's embedding "
                               f"network: {type(error).__name__}: "
                               f"{' '.join(str(error).split())[:200]}") from error
    model.trainable = False
    return model


def personalize(preferred_dir, output, embedding, *, scheme="average", negatives_dir=None,
                size=EMBEDDING_SIZE, steps=500, seed=0):
    """Writes the preference file `output` (module docstring) and returns its vector."""
    if scheme not in SCHEMES:
        raise PersonalizeError(f"--scheme={scheme}: one of {', '.join(SCHEMES)}")
    if scheme == "triplets" and not negatives_dir:
        raise PersonalizeError("--scheme=triplets needs --negatives_dir=<a folder of photos "
                               "the user does not prefer> (section 3.4)")
    weights, export_dim = resolve_embedding(embedding)
    positives, used, skipped = load_views(preferred_dir, size, "preferred_dir")
    model = load_embedding(weights)
    extra = {}
    if scheme == "average":
        vector = preference_from_photos(model, positives)
    else:
        negatives, negatives_used, negatives_skipped = load_views(negatives_dir, size,
                                                                  "negatives_dir")
        vector = preference_by_triplets(model, positives, negatives, steps=steps, seed=seed)
        extra = {"negatives": len(negatives_used), "negatives_dir": negatives_dir,
                 "negatives_skipped": [path for path, _ in negatives_skipped], "steps": steps,
                 "seed": seed}
    if export_dim is not None and vector.shape[0] != export_dim:
        raise PersonalizeError(f"--embedding={embedding}: the embedding ({weights}) gives "
                               f"{vector.shape[0]}-d vectors, the export's preference input "
                               f"takes {export_dim}")
    save_preference(output, vector, scheme=scheme, photos=len(used), preferred_dir=preferred_dir,
                    files=[os.path.basename(path) for path in used],
                    skipped=[path for path, _ in skipped], embedding=weights, size=size, **extra)
    logging.info("Wrote %s: %s of %d photos from %s (%d skipped), |f| = %.3f", output, scheme,
                 len(used), preferred_dir, len(skipped), float(np.linalg.norm(vector)))
    return vector


def define_flags(flag_values):
    flags.DEFINE_string("preferred_dir", None, "A folder of the user's preferred photos "
                        "(10-20 suffice, section 3.4).", flag_values=flag_values)
    flags.DEFINE_string("output", None, "The preference file to write (JSON).",
                        flag_values=flag_values)
    flags.DEFINE_string("embedding", None, "The embedding stage's directory, its "
                        f"{EMBEDDING_WEIGHTS}, or a PieNet export of the same run.",
                        flag_values=flag_values)
    flags.DEFINE_enum("scheme", "average", list(SCHEMES), "average (the paper's default) or "
                      "triplets (needs --negatives_dir).", flag_values=flag_values)
    flags.DEFINE_string("negatives_dir", None, "--scheme=triplets: a folder of photos the user "
                        "does not prefer.", flag_values=flag_values)
    flags.DEFINE_integer("size", EMBEDDING_SIZE, "Side of each photo's central square shown to "
                         "the network (its training size).", lower_bound=8,
                         flag_values=flag_values)
    flags.DEFINE_integer("steps", 500, "--scheme=triplets: Adam steps on the vector.",
                         lower_bound=1, flag_values=flag_values)
    flags.DEFINE_integer("seed", 0, "--scheme=triplets: the start and the negatives drawn.",
                         flag_values=flag_values)
    flags.mark_flags_as_required(["preferred_dir", "output", "embedding"],
                                 flag_values=flag_values)


def run(FLAGS, args):
    del args
    try:
        personalize(FLAGS.preferred_dir, FLAGS.output, FLAGS.embedding, scheme=FLAGS.scheme,
                    negatives_dir=FLAGS.negatives_dir, size=FLAGS.size, steps=FLAGS.steps,
                    seed=FLAGS.seed)
    except (PersonalizeError, OSError) as error:
        logging.error("%s", error)
        return 1
    print(FLAGS.output)
    return 0


def main(argv=None):
    """`python -m tools.personalize` in this process: `argv` as sys.argv; the exit code."""
    return cli.main(define_flags, run, argv)


if __name__ == "__main__":
    cli.run_main(define_flags, run)
