"""WESPE and CAN training steps with Keras' LeakyReLU and with `enhancers.leaky_relu.LeakyReLU`.

    python benchmarks/leaky_relu_speed.py [--rounds=7] [--paper_sizes]

Builds each system's training step twice from one seed, once with each layer, prints the largest
difference between their weights after one step (0: bit-identical), then times the two steps in
alternating rounds in this process (`timing.alternating_medians`): median wall and CPU seconds
and their ratios. Sizes: the demo presets' (configs/wespe_demo.flags, configs/can_demo.flags
without the NIMA term), or with --paper_sizes the papers' (WESPE: batch 30 of 100x100 patches,
64 channels; CAN: one 480x640 pair). At the papers' sizes WESPE's step is not bit-reproducible
on a CPU even with one layer (two builds with Keras' layer differ by about 2e-7).
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from absl import app, flags, logging  # noqa: E402

from enhancers import can, leaky_relu, wespe  # noqa: E402
from timing import alternating_medians  # noqa: E402
from train import can_task, runner, wespe_task  # noqa: E402

flags.DEFINE_integer("rounds", 7, "Alternating timed rounds (after one untimed call each).")
flags.DEFINE_bool("paper_sizes", False, "The papers' sizes instead of the demo presets'.")
FLAGS = flags.FLAGS


def systems(paper):
    """{name: (task, module whose LeakyReLU it builds, batch)}."""
    if paper:
        wespe_config = wespe_task.WespeConfig(model_dir="/nonexistent")
        can_config = can_task.CanConfig(model_dir="/nonexistent", nima_weight=0.0)
    else:
        wespe_config = wespe_task.WespeConfig(
            model_dir="/nonexistent", patch_size=48, filters=16, content_layer="relu1_2",
            batch_size=8)
        can_config = can_task.CanConfig(
            model_dir="/nonexistent", nima_weight=0.0, train_height=96, train_width=128,
            can_depth=8, can_identity_output=True, batch_size=4)
    rng = np.random.default_rng(0)

    def images(batch, height, width):
        return tf.constant(rng.uniform(size=(batch, height, width, 3)), tf.float32)

    wespe_patches = (wespe_config.batch_size, wespe_config.patch_size, wespe_config.patch_size)
    can_pair = (can_config.batch_size, can_config.train_height, can_config.train_width)
    return {
        "WESPE": (wespe_task.WespeTask(wespe_config), wespe,
                  (images(*wespe_patches), images(*wespe_patches))),
        "CAN": (can_task.CanTask(can_config), can, (images(*can_pair), images(*can_pair))),
    }


def training_step(task, module, layer, batch):
    """A compiled step of `task` whose models use `layer`, and their weights after one step
    from seed 0."""
    module.LeakyReLU = layer
    try:
        keras.utils.set_random_seed(0)
        models, _, train_step = runner.build_training(task)
    finally:
        module.LeakyReLU = leaky_relu.LeakyReLU
    step = tf.function(train_step)
    step(batch)
    weights = [keras.ops.convert_to_numpy(w) for model in models.values() for w in model.weights]
    return lambda: step(batch), weights


def main(argv):
    del argv
    logging.set_verbosity(logging.WARNING)
    print(f"devices: {[d.name for d in tf.config.list_logical_devices()]}")
    for name, (task, module, batch) in systems(FLAGS.paper_sizes).items():
        keras_step, keras_weights = training_step(task, module, keras.layers.LeakyReLU, batch)
        ours_step, our_weights = training_step(task, module, leaky_relu.LeakyReLU, batch)
        medians = alternating_medians({"keras": keras_step, "ours": ours_step}, FLAGS.rounds)
        (keras_wall, keras_cpu), (our_wall, our_cpu) = medians["keras"], medians["ours"]
        print(f"{name} training step, batch {batch[0].shape[0]} of "
              f"{batch[0].shape[1]}x{batch[0].shape[2]}; medians of {FLAGS.rounds} rounds:")
        print(f"  keras.layers.LeakyReLU           {keras_wall:8.3f} s   CPU {keras_cpu:8.3f} s")
        print(f"  enhancers.leaky_relu.LeakyReLU   {our_wall:8.3f} s   CPU {our_cpu:8.3f} s")
        print(f"  ratio Keras / ours               {keras_wall / our_wall:8.3f}x  CPU "
              f"{keras_cpu / our_cpu:8.3f}x")
        difference = max(np.abs(a - b).max() for a, b in zip(keras_weights, our_weights))
        print(f"  largest weight difference after one step {difference:.3g} (largest weight "
              f"{max(np.abs(w).max() for w in keras_weights):.3g})")


if __name__ == "__main__":
    app.run(main)
