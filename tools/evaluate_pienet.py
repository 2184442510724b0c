"""PieNet's new-user protocol (Kim et al., ECCV 2020, section 4.3, Figure 6) and the embedding
space's picture (Figure 8): `python -m tools.evaluate_pienet`.

    python -m tools.evaluate_pienet --run_flags=configs/pienet_demo.flags \\
        --model_dir=runs/pienet_demo --output_dir=runs/pienet_demo/new_users

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

The run is read as `train.pienet` wrote it: `--model_dir` is the run's root (holding embedding/
and enhancer/), `--run_flags` its flagfile (the data and decoder flags). Held-out users are the
demo's two, or `--held_out_dirs` (folders of retouches of the run's inputs, paired by stem).
The protocol runs on the CPU in minutes at the demo's size; it is not part of the training
run's evaluation because ten repeats of the triplet scheme are not cheap.
"""
import os

import numpy as np
from absl import flags, logging

from enhancers.pienet import embed_photos, enhance, triplet_preference
from tools import cli, figures
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


def _views(paths, size):
    from train.pienet_task import central_view

    return np.stack([central_view(path, size) for path in paths])


def _test_pairs(users, k, max_side, max_test):
    from train.pienet_task import read_photo

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
    positives = [embed_photos(embedding, _views([users.retouches[k][j] for j in pool], size))
                 for k, pool in enumerate(pools)]
    train_inputs = sorted(set(j for pool in pools for j in pool))
    input_features = embed_photos(embedding, _views([users.inputs[j] for j in train_inputs],
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
                features[name] = embed_photos(embedding, _views(
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


# --------------------------------------------------------------------------- command line


def load_run(run_flags, model_dir, held_out_dirs=()):
    """(PieNet, embedding network, training users, their vectors, held-out users) of a run of
    `train.pienet` in `model_dir` with the flagfile `run_flags`."""
    from datasets import pienet as pienet_data
    from train import runner
    from train.config import ConfigError
    from train.flags import parse_config
    from train.pienet_task import PienetConfig, PienetTask, load_embedding_stage

    argv = ["evaluate_pienet", f"--model_dir={os.path.join(model_dir, 'enhancer')}",
            f"--stage_root={model_dir}", "--stage=enhancer", "--export_dir="]
    if run_flags:
        argv.insert(1, f"--flagfile={run_flags}")
    config = parse_config(PienetConfig, argv)
    task = PienetTask(config)
    pienet = runner.restore(task)["pienet"]
    embedding, vectors = load_embedding_stage(config, len(task.data.users.names))
    held_out = task.data.new_users
    if held_out_dirs:
        sources = (dict(input_dir=config.input_dir) if config.dataset == "folders" else
                   dict(fivek_dir=config.fivek_dir, experts=()))
        try:
            held_out = pienet_data.collect_users(
                **sources, user_dirs=tuple(held_out_dirs), train_list=config.train_list,
                test_list=config.test_list, split_seed=config.split_seed,
                num_test=config.num_test)
        except ValueError as error:
            raise ConfigError(f"--held_out_dirs: {error}") from error
    if held_out is None:
        raise ConfigError("no held-out users: the demo set has two; otherwise give "
                          "--held_out_dirs=<a user's retouches of the run's inputs>")
    return pienet, embedding, task.data.users, vectors, held_out, config


def define_flags(flag_values):
    flags.DEFINE_string("model_dir", None, "The run's root (embedding/ and enhancer/ in it).",
                        flag_values=flag_values)
    flags.DEFINE_string("run_flags", None, "The run's flagfile (e.g. "
                        "configs/pienet_demo.flags).", flag_values=flag_values)
    flags.DEFINE_multi_string("held_out_dirs", [], "Folders of held-out users' retouches of "
                              "the run's inputs (default: the demo's held-out users).",
                              flag_values=flag_values)
    flags.DEFINE_list("n_pref", [str(n) for n in N_PREF], "N_pref values (capped by the "
                      "photos a user has).", flag_values=flag_values)
    flags.DEFINE_integer("repeats", REPEATS, "Random draws per N_pref.", lower_bound=1,
                         flag_values=flag_values)
    flags.DEFINE_list("schemes", list(SCHEMES), "Section 3.4's schemes.", flag_values=flag_values)
    flags.DEFINE_integer("triplet_steps", 500, "Adam steps of the triplet scheme.", lower_bound=1,
                         flag_values=flag_values)
    flags.DEFINE_integer("max_test_images", None, "At most this many test photos per user.",
                         lower_bound=1, flag_values=flag_values)
    flags.DEFINE_integer("seed", 0, "Seed of the draws.", flag_values=flag_values)
    flags.DEFINE_string("output_dir", None, "Where the report and figures go (default "
                        "<model_dir>/new_users).", flag_values=flag_values)
    cli.require_directory("output_dir", flag_values)
    flags.mark_flag_as_required("model_dir", flag_values=flag_values)


def run(FLAGS, args):
    del args
    from train.config import ConfigError

    try:
        n_prefs = [int(n) for n in FLAGS.n_pref]
        pienet, embedding, train_users, vectors, held_out, config = load_run(
            FLAGS.run_flags, FLAGS.model_dir, FLAGS.held_out_dirs)
    except (ValueError, ConfigError, FileNotFoundError) as error:
        logging.error("%s", error)
        return 1
    output_dir = FLAGS.output_dir or os.path.join(FLAGS.model_dir, "new_users")
    report = new_user_protocol(
        pienet, embedding, held_out, n_prefs=n_prefs, repeats=FLAGS.repeats,
        schemes=tuple(FLAGS.schemes), seed=FLAGS.seed, size=config.embedding_size,
        max_side=config.eval_max_side, max_test=FLAGS.max_test_images,
        triplet_steps=FLAGS.triplet_steps, output_dir=output_dir)
    print(reports.format_table(report))
    everyone = dict(zip(train_users.names, vectors))
    for k, name in enumerate(held_out.names):
        everyone[name] = embed_photos(embedding, _views(
            [held_out.retouches[k][j] for j in held_out.photos(k, "train")],
            config.embedding_size)).mean(axis=0)
    path = os.path.join(output_dir, "figure8_pca.png")
    embedding_figure(embedding, (train_users, held_out), everyone, path, size=config.embedding_size,
                     max_photos=FLAGS.max_test_images)
    print(f"Figures: {', '.join(report['figures'].values())}, {path}")
    return 0


def main(argv=None):
    """`python -m tools.evaluate_pienet` in this process: `argv` as sys.argv; the exit code."""
    return cli.main(define_flags, run, argv)


if __name__ == "__main__":
    cli.run_main(define_flags, run)
