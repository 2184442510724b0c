"""EnhanceGAN speed: the critic step, the generator step and inference, at the paper's shapes
and at the CPU demo's.

    python benchmarks/enhancegan_step.py [--shapes=paper,demo] [--repeats=3]

paper: ResNet-101 at 224 x 224 for G's frozen backbone and the critic, one micro-batch of 8 (the
       release's batch 64 is 8 of them, so a full release step is about 8 times these
       figures), VGG-16 fc7 for equation 8 and the release's gradient balancing;
demo:  configs/enhancegan_demo.flags (tiny backbone at 64 x 64, batch 16).
For each: the critic step (one update of equation 10 on the step's good photos and G's outputs,
clipped: a step of the warm-up), the whole step (critic, then G through the three terms), their
difference (the generator's share), and the seconds PhotoEnhancer takes to enhance one photo at
full size (the generator at its input size, the operators on the photo). Random weights: speed
does not depend on them (the random VGG and ResNet warnings are expected).
"""
import dataclasses
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from absl import app, flags, logging  # noqa: E402

from timing import median_seconds  # noqa: E402
from train import runner  # noqa: E402
from train.enhancegan_task import EnhanceganConfig, EnhanceganTask  # noqa: E402
from train.flags import parse_config  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
flags.DEFINE_list("shapes", ["paper", "demo"], "Which shapes to time: paper, demo.")
flags.DEFINE_integer("repeats", 3, "Timed calls per figure (after one warm-up call).")
flags.DEFINE_string("photo_size", "1536x2048", "HxW of the inference figure.")
FLAGS = flags.FLAGS
NOWHERE = "/nonexistent/enhancegan_benchmark"


def config_for(shapes):
    if shapes == "paper":
        return EnhanceganConfig(model_dir=NOWHERE, stage="color", stage_root=NOWHERE,
                                crop_weights="none", batch_size=8, accumulation_steps=1,
                                critic_decay_epochs=0, train_steps=1)
    demo = parse_config(EnhanceganConfig, [
        "benchmark", f"--flagfile={REPO}/configs/enhancegan_demo.flags"])
    return dataclasses.replace(demo, model_dir=NOWHERE, stage="color", stage_root=NOWHERE,
                               crop_weights="none", critic_decay_epochs=0, train_steps=1)


def time_shapes(shapes, rng):
    config = config_for(shapes)
    size, batch_size = config.image_size, config.batch_size
    batch = tuple(tf.constant(rng.uniform(size=(batch_size, size, size, 3)), tf.float32)
                  for _ in range(2))
    figures = {}
    for name, warmup in (("critic", 10 ** 9), ("step", 0)):
        task = EnhanceganTask(dataclasses.replace(config, critic_warmup_steps=warmup))
        models, _, train_step = runner.build_training(task)
        step = tf.function(train_step)
        figures[name] = median_seconds(lambda: step(batch)["critic_loss"].numpy(),
                                       FLAGS.repeats)
    height, width = (int(v) for v in FLAGS.photo_size.split("x"))
    photo = tf.constant(rng.uniform(size=(height, width, 3)), tf.float32)
    enhancer = task.photo_enhancer(models)
    figures["photo"] = median_seconds(lambda: enhancer(photo)["image"].numpy(),
                                      max(1, FLAGS.repeats - 1))
    generator = figures["step"] - figures["critic"]
    print(f"{shapes}: {config.backbone} at {size}x{size}, batch {batch_size} "
          f"(accumulation {config.accumulation_steps}), equation 8 on {config.feature_network}, "
          f"{config.loss_balance} balancing")
    print(f"  critic step:     {figures['critic'] * 1000:8.0f} ms "
          f"({2 * batch_size / figures['critic']:.1f} critic images/s)")
    print(f"  whole step:      {figures['step'] * 1000:8.0f} ms "
          f"({batch_size / figures['step']:.1f} bad photos/s)")
    print(f"  generator share: {generator * 1000:8.0f} ms")
    print(f"  enhance one {height}x{width} photo (PhotoEnhancer): {figures['photo']:.2f} s")


def main(argv):
    del argv
    logging.set_verbosity(logging.ERROR)
    rng = np.random.default_rng(0)
    print(f"devices: {[d.name for d in tf.config.list_logical_devices()]}")
    for shapes in FLAGS.shapes:
        time_shapes(shapes, rng)


if __name__ == "__main__":
    app.run(main)
