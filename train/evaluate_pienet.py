"""`python -m train.evaluate_pienet`: PieNet's new-user protocol (Figure 6) and embedding
picture (Figure 8) of `tools.evaluate_pienet` on a run of `train.pienet`.

    python -m train.evaluate_pienet --run_flags=configs/pienet_demo.flags \\
        --model_dir=runs/pienet_demo --output_dir=runs/pienet_demo/new_users

The run is read as `train.pienet` wrote it: `--model_dir` is the run's root (holding embedding/
and enhancer/), `--run_flags` its flagfile (the data and decoder flags). Held-out users are the
demo's two, or `--held_out_dirs` (folders of retouches of the run's inputs, paired by stem).
It lives here, not in tools/, because it rebuilds the run through the task (train is the top
layer).
"""
import os

from absl import flags, logging

from datasets import pienet as pienet_data
from enhancers.pienet import embed_photos
from tools import cli
from tools import report as reports
from tools.evaluate_pienet import (N_PREF, REPEATS, SCHEMES, central_views, embedding_figure,
                                   new_user_protocol)
from train import runner
from train.config import ConfigError
from train.flags import parse_config
from train.pienet_task import PienetConfig, PienetTask, load_embedding_stage


def load_run(run_flags, model_dir, held_out_dirs=()):
    """(PieNet, embedding network, training users, their vectors, held-out users) of a run of
    `train.pienet` in `model_dir` with the flagfile `run_flags`."""
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
        photos = [held_out.retouches[k][j] for j in held_out.photos(k, "train")]
        everyone[name] = embed_photos(embedding, central_views(photos, config.embedding_size)
                                      ).mean(axis=0)
    path = os.path.join(output_dir, "figure8_pca.png")
    embedding_figure(embedding, (train_users, held_out), everyone, path, size=config.embedding_size,
                     max_photos=FLAGS.max_test_images)
    print(f"Figures: {', '.join(report['figures'].values())}, {path}")
    return 0


def main(argv=None):
    """`python -m train.evaluate_pienet` in this process: `argv` as sys.argv; the exit code."""
    return cli.main(define_flags, run, argv)


if __name__ == "__main__":
    cli.run_main(define_flags, run)
