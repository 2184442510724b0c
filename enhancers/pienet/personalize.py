"""A new user's preference vector (Kim et al., ECCV 2020, section 3.4), and its file.

Two schemes, both with the pre-trained embedding network frozen:

- `preference_from_photos` (the paper's default, second scheme): "the pre-trained embedding
  network encodes these preferred images into feature vectors. Then, we determine the preference
  vector, by averaging the feature vectors." The features are L2-normalised (section 3.1); the
  mean is NOT renormalised by default, as the paper says only "averaging" and the training users'
  vectors are not constrained to the sphere either (`normalize=True` renormalises).
- `preference_by_triplets` (first scheme): the triplet loss (equation 1) minimised over the
  preference vector alone, only the gradient of equation 4 applied. With the network frozen the
  embeddings of the positives and negatives are constants, so they are computed once. Section
  4.2 uses "three times as many negative images as preferred images". Our choices where the
  paper says nothing: every step uses all (positive, negative) pairs and the mean loss over them
  (a full-batch gradient: deterministic), Adam, 500 steps at learning rate 1e-3, starting from a
  random unit vector, as a training user's vector starts (section 3.1).
  The hinge stops the vector once every positive is nearer than every negative by the margin:
  it need not come near the positives, and its norm is free (not on the sphere).

File (`save_preference`, `load_preference`): JSON {"format": "pienet-preference-v1",
"dimension": d, "vector": [d floats], ...metadata}; floats are written with 17 significant
digits, so a float32 vector round-trips exactly.
"""
import json
import math
import os

import keras
import numpy as np
import tensorflow as tf
from absl import logging

from datasets.demo import write_atomically
from enhancers.pienet.embedding import EMBEDDING_DIM, RandomUnitVectors
from enhancers.pienet.preference import l2_normalize
from losses.triplet import TRIPLET_MARGIN, squared_distance

PREFERENCE_FORMAT = "pienet-preference-v1"
NEGATIVES_PER_POSITIVE = 3  # section 4.2
TRIPLET_STEPS = 500  # ours
TRIPLET_LEARNING_RATE = 1e-3  # ours


def embed_photos(embedding_model, photos, batch_size=16):
    """(n, dim) float64 L2-normalised embeddings of `photos`: an array (n, h, w, 3) or a list of
    (h, w, 3) arrays of any sizes, RGB in [0, 1]; the model runs with training=False."""
    if isinstance(photos, (list, tuple)):
        batches = [np.asarray(photo)[None] for photo in photos]
    else:
        photos = np.asarray(photos)
        if photos.ndim != 4:
            raise ValueError(f"photos must be (n, h, w, 3) or a list of (h, w, 3), got shape "
                             f"{photos.shape}")
        batches = [photos[i:i + batch_size] for i in range(0, len(photos), batch_size)]
    if not batches:
        raise ValueError("no photos to embed")
    features = [np.asarray(l2_normalize(embedding_model(np.asarray(batch, np.float32),
                                                        training=False))) for batch in batches]
    return np.concatenate(features).astype(np.float64)


def preference_from_photos(embedding_model, photos, normalize=False, batch_size=16):
    """Section 3.4's default scheme: the mean of the L2-normalised embeddings of a new user's
    preferred `photos` (module docstring). Returns a float32 vector (dim,)."""
    mean = embed_photos(embedding_model, photos, batch_size).mean(axis=0)
    if normalize:
        mean = mean / max(np.linalg.norm(mean), 1e-12)
    return mean.astype(np.float32)


def preference_by_triplets(embedding_model, positives, negatives, steps=TRIPLET_STEPS,
                           learning_rate=TRIPLET_LEARNING_RATE, initial=None,
                           margin=TRIPLET_MARGIN, negatives_per_positive=NEGATIVES_PER_POSITIVE,
                           seed=0, batch_size=16):
    """Section 3.4's first scheme: minimise the triplet loss (equation 1) over the preference
    vector alone, the embedding network frozen (module docstring).

    Args:
      positives, negatives: photos as for `embed_photos` (preferred and non-preferred).
      steps, learning_rate: Adam on the vector, each step on all (positive, negative) pairs.
      initial: the starting vector (dim,), or None for a random unit vector from `seed`.
      margin: alpha of equation 1 (0.2, section 4.1).
      negatives_per_positive: with more negatives than this many per positive, that many are
        drawn at random (`seed`) as in section 4.2; with fewer, all are used and a warning says so.
    Returns a float32 vector (dim,).
    """
    return triplet_preference(embed_photos(embedding_model, positives, batch_size),
                              embed_photos(embedding_model, negatives, batch_size), steps=steps,
                              learning_rate=learning_rate, initial=initial, margin=margin,
                              negatives_per_positive=negatives_per_positive, seed=seed)


def triplet_preference(positive, negative, steps=TRIPLET_STEPS,
                       learning_rate=TRIPLET_LEARNING_RATE, initial=None, margin=TRIPLET_MARGIN,
                       negatives_per_positive=NEGATIVES_PER_POSITIVE, seed=0):
    """`preference_by_triplets` on embeddings already computed (`embed_photos`): (p, dim) and
    (n, dim) arrays, so that repeated draws (Figure 6's protocol) embed each photo once."""
    positive, negative = np.asarray(positive), np.asarray(negative)
    wanted = negatives_per_positive * len(positive)
    rng = np.random.default_rng(seed)
    if len(negative) > wanted:
        negative = negative[np.sort(rng.choice(len(negative), wanted, replace=False))]
    elif len(negative) < wanted:
        logging.warning("preference_by_triplets: %d negatives for %d positives, fewer than the "
                        "paper's %d per positive (section 4.2); using all of them",
                        len(negative), len(positive), negatives_per_positive)
    return _fit_preference(positive, negative, steps, learning_rate, initial, margin, seed)


def _fit_preference(positive, negative, steps, learning_rate, initial, margin, seed):
    """Adam on one vector against fixed embeddings (p, dim) and (n, dim): all p x n triplets."""
    dim = positive.shape[1]
    if initial is None:
        initial = np.asarray(RandomUnitVectors(seed)((dim,)))
    initial = np.asarray(initial, np.float32)
    if initial.shape != (dim,):
        raise ValueError(f"initial vector has shape {initial.shape}, the embeddings have "
                         f"dimension {dim}")
    vector = keras.Variable(initial, name="preference")
    optimizer = keras.optimizers.Adam(learning_rate)
    positive = tf.constant(positive, tf.float32)
    negative = tf.constant(negative, tf.float32)

    @tf.function
    def step():
        with tf.GradientTape() as tape:
            # Equation 1 for every (positive, negative) pair: a (p, n) matrix, no (p n, dim) copy.
            to_positive = squared_distance(vector.value[None], positive)
            to_negative = squared_distance(vector.value[None], negative)
            loss = tf.reduce_mean(tf.nn.relu(to_positive[:, None] - to_negative[None, :]
                                             + margin))
        optimizer.apply_gradients([(tape.gradient(loss, vector.value), vector)])
        return loss

    for _ in range(int(steps)):
        step()
    return np.asarray(vector.value, np.float32)


def save_preference(path, vector, **metadata):
    """Writes `vector` (dim,) to the JSON file `path` (module docstring) with `metadata` (JSON
    values, e.g. scheme="mean", photos=20) beside it; atomically (a temporary file renamed)."""
    path = os.fspath(path)
    vector = np.asarray(vector, np.float64)
    if vector.ndim != 1 or vector.size == 0:
        raise ValueError(f"a preference vector is one non-empty axis, got shape {vector.shape} "
                         f"for {path}")
    if not np.all(np.isfinite(vector)):
        raise ValueError(f"refusing to write a preference vector with NaN or inf to {path}")
    reserved = {"format", "dimension", "vector"} & set(metadata)
    if reserved:
        raise ValueError(f"metadata may not set {sorted(reserved)}")
    record = {"format": PREFERENCE_FORMAT, "dimension": int(vector.size),
              "vector": [float(f"{value:.17g}") for value in vector], **metadata}
    write_atomically(path, json.dumps(record) + "\n")
    return path


def load_preference(path, dimension=EMBEDDING_DIM, with_metadata=False):
    """The float32 vector of a file from `save_preference` (and its metadata dict with
    `with_metadata=True`). FileNotFoundError or ValueError naming `path` for a missing file, bad
    JSON, another format, a vector whose length is not its "dimension" or not `dimension` (None
    accepts any), or NaN/inf values."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"preference file not found: {path}")
    try:
        with open(path) as stream:
            record = json.load(stream)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ValueError(f"{path} is not a PieNet preference file (JSON): {error}") from error
    if not isinstance(record, dict) or record.get("format") != PREFERENCE_FORMAT:
        found = record.get("format") if isinstance(record, dict) else type(record).__name__
        raise ValueError(f"{path} is not a PieNet preference file: format {found!r}, expected "
                         f"{PREFERENCE_FORMAT!r}")
    values = record.get("vector")
    if (not isinstance(values, list) or not values
            or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values)):
        raise ValueError(f"{path}: \"vector\" must be a non-empty list of numbers")
    if record.get("dimension") != len(values):
        raise ValueError(f"{path}: the vector has {len(values)} values but the file says "
                         f"dimension {record.get('dimension')!r}")
    if dimension is not None and len(values) != dimension:
        raise ValueError(f"{path}: a preference vector of dimension {len(values)}, the model "
                         f"expects {dimension}")
    if not all(math.isfinite(v) for v in values):
        raise ValueError(f"{path}: the preference vector holds NaN or inf")
    vector = np.asarray(values, np.float32)
    if with_metadata:
        return vector, {k: v for k, v in record.items() if k not in ("format", "dimension",
                                                                     "vector")}
    return vector
