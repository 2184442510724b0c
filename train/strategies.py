"""`--strategy` -> a tf.distribute strategy (DESIGN.md section 3)."""
import json
import os

import tensorflow as tf
from absl import logging

STRATEGIES = ("default", "mirrored", "multi_worker")


def split_cpu(num_devices):
    """Splits the CPU into `num_devices` logical devices so that MirroredStrategy can be tested
    without GPUs. Must run before TensorFlow initialises its devices."""
    cpus = tf.config.list_physical_devices("CPU")
    if len(tf.config.get_logical_device_configuration(cpus[0]) or ()) == num_devices:
        return  # already split, e.g. by a test
    tf.config.set_logical_device_configuration(
        cpus[0], [tf.config.LogicalDeviceConfiguration() for _ in range(num_devices)]
    )


def make_strategy(name, num_cpu_devices=2):
    """Returns the strategy for `name`.

    default: one device (the first GPU, else the CPU). mirrored: all local GPUs, or the CPU
    split into `num_cpu_devices` logical devices when there are none. multi_worker:
    MultiWorkerMirroredStrategy configured from the TF_CONFIG environment variable.
    """
    if name == "default":
        gpus = tf.config.list_physical_devices("GPU")
        return tf.distribute.OneDeviceStrategy("/gpu:0" if gpus else "/cpu:0")
    if name == "mirrored":
        if tf.config.list_physical_devices("GPU"):
            return tf.distribute.MirroredStrategy()
        split_cpu(num_cpu_devices)
        devices = [d.name for d in tf.config.list_logical_devices("CPU")]
        logging.info("No GPU: mirroring over %d logical CPU devices %s", len(devices), devices)
        return tf.distribute.MirroredStrategy(devices)
    if name == "multi_worker":
        if "TF_CONFIG" not in os.environ:
            raise ValueError(
                "--strategy=multi_worker needs the TF_CONFIG environment variable describing the "
                "cluster (see the README); it is not set."
            )
        try:
            json.loads(os.environ["TF_CONFIG"])
        except json.JSONDecodeError as error:
            raise ValueError(f"TF_CONFIG is not valid JSON: {error}") from error
        return tf.distribute.MultiWorkerMirroredStrategy()
    raise ValueError(f"Unknown --strategy={name!r}; choose one of {', '.join(STRATEGIES)}.")


def is_chief(strategy):
    """True on the worker that writes checkpoints, summaries and exports: the "chief" task if
    the cluster has one, else worker 0."""
    resolver = getattr(strategy, "cluster_resolver", None)
    cluster = resolver.cluster_spec().as_dict() if resolver is not None else {}
    if not cluster or resolver.task_type is None:
        return True
    if "chief" in cluster:
        return resolver.task_type == "chief"
    return resolver.task_type == "worker" and resolver.task_id == 0


def worker_id(strategy):
    resolver = getattr(strategy, "cluster_resolver", None)
    return 0 if resolver is None or resolver.task_id is None else int(resolver.task_id)
