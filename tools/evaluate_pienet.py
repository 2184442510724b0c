"""PieNet's new-user protocol (Kim et al., ECCV 2020, section 4.3, Figure 6) and the embedding
space's picture (Figure 8); their command line on a trained run is `train.evaluate_pienet`.

Figure 6 (`new_user_protocol`): for each held-out user, N_pref of their retouches of training
photos (`--n_pref`, default 10, 20, 50, each capped by the photos the user has) are drawn at
random `--repeats` times (10, seeded); each draw gives a preference vector by each scheme of
section 3.4 (`--schemes`: average, the mean embedding; triplets, the triplet loss on the vector
with 3 negatives per positive drawn from the training photos' inputs and the other held-out
users' retouches), and PieNet with that vector is scored by PSNR/SSIM against the user's own
retouches of the test photos. A row per (scheme, N_pref): the mean over the repeats of the
users' mean, and its standard deviation over the repeats (`*_std`); plus the input. The report
is `tools.report`'s common layout (`new_users.json`), with `figure6_psnr.png` and
`figure6_ssim.png` (bars with the spread).

Figure 8 (`embedding_figure`): the embeddings of the test users' test retouches (central square at
the embedding's size) projected on their first two principal components (`pca_2d`, NumPy's SVD),
coloured by user, each user's preference vector (trained, or for a held-out user the mean
embedding of all their training retouches) a star projected the same way: `figure8_pca.png`.

The protocol runs on the CPU in minutes at the demo's size; it is not part of the training
run's evaluation because ten repeats of the triplet scheme are not cheap.
"""
import os

import numpy as np
from absl import logging

from datasets.pienet import central_view, read_photo
from enhancers.pienet import embed_photos, enhance, triplet_preference
from tools import figures
from tools import evaluate as metrics
from tools import report as reports

SCHEMES = ("average", "triplets")
N_PREF = (10, 20, 50)
REPEATS = 10


def pca_2d(matrix):
    """(projected (n, 2), components (2, d), mean (d,)) of the rows of `matrix` on its first two
    principal components, by NumPy's SVD of the centred rows; each component's sign makes its
    largest-magnitude entry positive (deterministic). Fewer than two components: zero rows."""
    x = np.asarray(matrix, np.float64)
    if x.ndim != 2 or len(x) == 0:
        raise ValueError(f"pca_2d needs an (n, d) matrix with n >= 1, got shape {x.shape}")
    mean = x.mean(axis=0)
    _, _, vt = np.linalg.svd(x - mean, full_matrices=False)
    components = np.zeros((2, x.shape[1]))
    components[:min(2, len(vt))] = vt[:2]
    for row in components:
        peak = row[np.abs(row).argmax()]
        if peak < 0:
            row *= -1
    return (x - mean) @ components.T, components, mean


def central_views(paths, size):
    """The photos' central squares at size x size (`datasets.pienet.central_view`), stacked."""
    return np.stack([central_view(path, size) for path in paths])


def _test_pairs(users, k, max_side, max_test):
    pairs = []
    for j in users.photos(k, "test")[:max_test]:
        image = read_photo(users.inputs[j], max_side)
        target = read_photo(users.retouches[k][j], max_side)
        if target.shape != image.shape:
            target = np.asarray(_resize(target, image.shape[:2]), np.float32)
        pairs.append((image, target))
    return pairs


def _resize(image, shape):
    """`image` resized (bilinear) to `shape` (h, w), as the task's evaluation does."""
    import tensorflow as tf

    return tf.image.resize(image, shape).numpy()


def _score(pienet, vector, pairs):
    values = [(metrics.psnr(enhance(pienet, image, vector), target),
               metrics.ssim(enhance(pienet, image, vector), target)) for image, target in pairs]
    return np.mean(values, axis=0)


def new_user_protocol(pienet, embedding, users, *, n_prefs=N_PREF, repeats=REPEATS,
                      schemes=SCHEMES, seed=0, size=256, max_side=512, max_test=None,
                      triplet_steps=500, output_dir=None):
    """Figure 6 on held-out `users` (`datasets.pienet.Users`; module docstring). Returns the
    report; with `output_dir`, also writes new_users.json and the two bar plots there."""
    unknown = sorted(set(schemes) - set(SCHEMES))
    if unknown or not schemes:
        raise ValueError(f"schemes must be among {SCHEMES}, got {list(schemes)}")
    pools = [users.photos(k, "train") for k in range(len(users.names))]
    if min(len(pool) for pool in pools) == 0:
        raise ValueError("a held-out user has no training retouches to draw preferred photos from")
    wanted = sorted(set(int(n) for n in n_prefs))
    used = sorted(set(min(n, min(len(pool) for pool in pools)) for n in wanted))
    positives = [embed_photos(embedding, central_views([users.retouches[k][j] for j in pool], size))
                 for k, pool in enumerate(pools)]
    train_inputs = sorted(set(j for pool in pools for j in pool))
    input_features = embed_photos(embedding, central_views([users.inputs[j] for j in train_inputs],
                                                    size))
    tests = [_test_pairs(users, k, max_side, max_test) for k in range(len(users.names))]
    if not any(tests):
        raise ValueError("the held-out users have no test photos")
    # scores[scheme][n] -> (repeats, users, 2): each user's mean PSNR and SSIM.
    scores = {scheme: {n: np.zeros((repeats, len(users.names), 2)) for n in used}
              for scheme in schemes}
    for k, name in enumerate(users.names):
        negatives = np.concatenate([input_features] + [positives[o] for o in
                                                       range(len(users.names)) if o != k])
        for n in used:
            for r in range(repeats):
                rng = np.random.default_rng([seed, k, n, r])
                chosen = positives[k][np.sort(rng.choice(len(pools[k]), n, replace=False))]
                for scheme in schemes:
                    if scheme == "average":
                        vector = chosen.mean(axis=0).astype(np.float32)
                    else:
                        vector = triplet_preference(chosen, negatives, steps=triplet_steps,
                                                    seed=seed * 1000 + r)
                    scores[scheme][n][r, k] = _score(pienet, vector, tests[k])
        logging.info("Figure 6: user %s done (%d test photos)", name, len(tests[k]))
    identity = np.mean([[metrics.psnr(i, t), metrics.ssim(i, t)] for pairs in tests
                        for i, t in pairs], axis=0)
    rows = []
    for scheme in schemes:
        for n in used:
            per_repeat = scores[scheme][n].mean(axis=1)  # the users' mean, per repeat
            rows.append({"name": f"{scheme}, N_pref={n}", "metrics": {
                "psnr": float(per_repeat[:, 0].mean()), "psnr_std": float(per_repeat[:, 0].std()),
                "ssim": float(per_repeat[:, 1].mean()),
                "ssim_std": float(per_repeat[:, 1].std())},
                "per_user_psnr": {u: float(v) for u, v in
                                  zip(users.names, scores[scheme][n][:, :, 0].mean(axis=0))}})
    rows.append({"name": "input (identity)", "metrics": {
        "psnr": float(identity[0]), "psnr_std": 0.0, "ssim": float(identity[1]),
        "ssim_std": 0.0}})
    plots = {}
    if output_dir:
        for metric in ("psnr", "ssim"):
            groups = {f"N_pref={n}": {scheme: (row["metrics"][metric],
                                               row["metrics"][f"{metric}_std"])
                                      for scheme in schemes for row in rows
                                      if row["name"] == f"{scheme}, N_pref={n}"}
                      for n in used}
            plots[metric] = os.path.join(output_dir, f"figure6_{metric}.png")
            figures.bar_plot(groups, plots[metric], ylabel=metric.upper(),
                             title=f"New users (Figure 6): {metric.upper()}, mean and std over "
                                   f"{repeats} draws")
    report = reports.make_report("pienet", rows, {
        "psnr": "PSNR in dB against the held-out user's own retouches, mean over the users and "
                "then over the draws; higher is better",
        "psnr_std": "standard deviation of that PSNR over the draws (the spread of Figure 6)",
        "ssim": "SSIM against the user's retouches, as psnr; higher is better",
        "ssim_std": "standard deviation of that SSIM over the draws"},
        num_images=sum(len(pairs) for pairs in tests), stage="new_users",
        users=list(users.names), n_pref_requested=wanted, n_pref=used, repeats=repeats,
        seed=seed, triplet_steps=triplet_steps, figures=plots, notes=[
            f"Preferred photos drawn from each user's {min(len(p) for p in pools)}+ training "
            f"retouches (N_pref capped there); {repeats} seeded draws per N_pref."])
    if output_dir:
        reports.write_report(os.path.join(output_dir, "new_users.json"), report)
    return report


def embedding_figure(embedding, user_sets, vectors, path, *, size=256, max_photos=None):
    """Figure 8 (module docstring): the users of each `datasets.pienet.Users` in `user_sets`;
    `vectors` maps user names to preference vectors. Writes the PNG `path`; returns {"points":
    {user: (n, 2)}, "vectors": {user: (2,)}, "explained": the components' variance fractions}."""
    features = {}
    for users in user_sets:
        for k, name in enumerate(users.names):
            photos = users.photos(k, "test")[:max_photos]
            if photos:
                features[name] = embed_photos(embedding, central_views(
                    [users.retouches[k][j] for j in photos], size))
    if not features:
        raise ValueError("no test photos to embed")
    stacked = np.concatenate(list(features.values()))
    projected, components, mean = pca_2d(stacked)
    total = ((stacked - mean) ** 2).sum()
    explained = ((projected ** 2).sum(axis=0) / total).tolist() if total > 0 else [0.0, 0.0]
    points, start = {}, 0
    for name, values in features.items():
        points[name] = projected[start:start + len(values)]
        start += len(values)
    marked = {name: (np.asarray(v, np.float64) - mean) @ components.T
              for name, v in vectors.items() if name in points}
    figures.scatter_plot(points, path, marked=marked, xlabel=f"PC1 ({explained[0]:.0%})",
                         ylabel=f"PC2 ({explained[1]:.0%})",
                         title="Embeddings of test retouches and preference vectors (Figure 8)")
    return {"points": points, "vectors": marked, "explained": explained}
