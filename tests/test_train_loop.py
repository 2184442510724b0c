"""The shared training loop, driven with a tiny dense model so that figures are exact."""
import os
import signal
import subprocess
import sys
import textwrap

import keras
import numpy as np
import pytest
import tensorflow as tf

from train import loop

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FEATURES = np.random.default_rng(0).normal(size=(64, 4)).astype("float32")
TARGETS = (FEATURES @ np.array([[1.0], [-2.0], [0.5], [3.0]], np.float32)).astype("float32")


def make_task(strategy, global_batch, hook=None, weights_hook=None, learning_rate=0.05):
    """A linear regression trained by SGD-momentum; `hook(iterations, loss)` and
    `weights_hook(iterations, model)` can inject failures."""
    with strategy.scope():
        keras.utils.set_random_seed(1)
        model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(1)])
        optimizer = keras.optimizers.SGD(learning_rate, momentum=0.9)
        optimizer.build(model.trainable_weights)  # slots must exist before the step is traced

    def train_step(batch):
        features, targets = batch
        with tf.GradientTape() as tape:
            per_example = tf.reduce_mean((model(features) - targets) ** 2, axis=-1)
            loss = tf.nn.compute_average_loss(per_example, global_batch_size=global_batch)
        grads = tape.gradient(loss, model.trainable_weights)
        optimizer.apply_gradients(zip(grads, model.trainable_weights))
        if hook is not None:
            loss = hook(optimizer.iterations, loss)
        if weights_hook is not None:
            weights_hook(optimizer.iterations, model)
        return {"loss": loss}

    def make_dataset(context, start_step):
        per_replica = context.get_per_replica_batch_size(global_batch)
        data = tf.data.Dataset.from_tensor_slices((FEATURES, TARGETS)).repeat()
        data = data.skip(start_step * global_batch)
        # Each global batch is split into consecutive per-replica slices.
        data = data.shard(context.num_input_pipelines, context.input_pipeline_id)
        return data.batch(per_replica)

    return model, optimizer, train_step, make_dataset


def run_loop(tmp_path, steps, strategy=None, global_batch=8, hook=None, checkpoint_every=3,
             weights_hook=None, learning_rate=0.05):
    strategy = strategy or tf.distribute.OneDeviceStrategy("/cpu:0")
    model, optimizer, step_fn, make_dataset = make_task(strategy, global_batch, hook,
                                                        weights_hook, learning_rate)
    config = loop.LoopConfig(
        model_dir=str(tmp_path), train_steps=steps, global_batch_size=global_batch,
        checkpoint_every=checkpoint_every, log_every=2,
    )
    training = loop.TrainingLoop(
        strategy, config, step_fn, {"model": model, "optimizer": optimizer}, make_dataset
    )
    return training.run(), model


def test_resumed_run_equals_uninterrupted_run(tmp_path):
    _, straight = run_loop(tmp_path / "straight", 7)
    first, _ = run_loop(tmp_path / "resumed", 4)
    assert first.step == 4 and first.checkpoint_path.endswith("ckpt-4")
    second, resumed = run_loop(tmp_path / "resumed", 7)
    assert second.step == 7
    for a, b in zip(straight.get_weights(), resumed.get_weights()):
        np.testing.assert_allclose(a, b, rtol=1e-6)
    assert tf.train.latest_checkpoint(str(tmp_path / "resumed" / "checkpoints")).endswith("ckpt-7")
    assert os.listdir(tmp_path / "resumed" / "train")  # TensorBoard events


def test_a_resumed_run_trains_at_the_configured_learning_rate(tmp_path):
    """Issue 15: resuming with another learning rate trained on at the checkpoint's, silently.
    Two copies of one checkpoint resumed at different rates must end apart (momentum alone
    would move both the same way)."""
    import shutil

    run_loop(tmp_path / "a", 4)
    shutil.copytree(tmp_path / "a", tmp_path / "b")
    _, same_rate = run_loop(tmp_path / "a", 6)
    _, tiny_rate = run_loop(tmp_path / "b", 6, learning_rate=1e-9)
    difference = max(np.abs(a - b).max()
                     for a, b in zip(same_rate.get_weights(), tiny_rate.get_weights()))
    assert difference > 1e-3


def test_non_finite_loss_names_step_and_keeps_last_good_checkpoint(tmp_path):
    def poison(iterations, loss):
        return tf.where(iterations >= 5, tf.constant(np.nan, loss.dtype), loss)

    with pytest.raises(loop.NonFiniteLossError, match="at step 5"):
        run_loop(tmp_path, 10, hook=poison, checkpoint_every=2)
    latest = tf.train.latest_checkpoint(str(tmp_path / "checkpoints"))
    assert latest.endswith("ckpt-4")
    restored = tf.train.load_checkpoint(latest)
    assert restored.get_tensor("step/.ATTRIBUTES/VARIABLE_VALUE") == 4
    # The model's variables are stored once, under the optimizer that tracks them.
    weights = [restored.get_tensor(name) for name, _ in tf.train.list_variables(latest)
               if "trainable_variables" in name]
    assert len(weights) == 2 and all(np.all(np.isfinite(w)) for w in weights)


def test_non_finite_weights_behind_a_finite_loss_are_never_saved(tmp_path):
    """A loss that hides NaN (issue 15: NIMA's EMD logged 0 while its weights were NaN) must not
    get NaN weights saved, nor the good checkpoints rotated out by NaN ones."""
    def poison_bias(iterations, model):
        bias = model.layers[-1].bias
        bias.assign(tf.where(iterations >= 6, tf.fill(bias.shape, np.nan), bias))  # after step 6

    with pytest.raises(loop.NonFiniteLossError, match=r"weights \(.*bias.*\) at step 6.*ckpt-4"):
        run_loop(tmp_path, 12, weights_hook=poison_bias, checkpoint_every=2)
    checkpoints = tf.train.get_checkpoint_state(str(tmp_path / "checkpoints"))
    assert [os.path.basename(p) for p in checkpoints.all_model_checkpoint_paths] == [
        "ckpt-2", "ckpt-4"]


def test_sigterm_checkpoints_and_stops_cleanly(tmp_path):
    def send_sigterm(iterations, loss):
        def maybe_kill(step):
            if int(step) == 3:
                os.kill(os.getpid(), signal.SIGTERM)
            return np.float32(0)

        side = tf.numpy_function(maybe_kill, [iterations], tf.float32)
        return loss + side

    result, _ = run_loop(tmp_path, 50, hook=send_sigterm, checkpoint_every=100)
    assert result.interrupted and result.step == 3
    assert tf.train.latest_checkpoint(str(tmp_path / "checkpoints")).endswith("ckpt-3")
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL  # handlers restored


def test_results_do_not_depend_on_replica_count(tmp_path):
    """One device and two mirrored CPU replicas give the same weights (a fresh process, since
    the CPU must be split before TensorFlow starts)."""
    script = textwrap.dedent(
        f"""
        import sys; sys.path.insert(0, {REPO!r}); sys.path.insert(0, {os.path.dirname(__file__)!r})
        from train import strategies
        strategies.split_cpu(2)
        import numpy as np, tensorflow as tf
        import pathlib
        from test_train_loop import run_loop
        tmp = pathlib.Path({str(tmp_path)!r})
        one, m1 = run_loop(tmp / "one", 5, tf.distribute.OneDeviceStrategy("/cpu:0"))
        two, m2 = run_loop(tmp / "two", 5, strategies.make_strategy("mirrored", 2))
        assert two.step == 5
        for a, b in zip(m1.get_weights(), m2.get_weights()):
            np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(one.last_values["loss"], two.last_values["loss"], rtol=1e-5)
        print("REPLICAS", tf.distribute.get_strategy().num_replicas_in_sync, "OK")
        """
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "OK" in done.stdout


class _FakeResolver:
    def __init__(self, cluster, task_type, task_id):
        self._cluster, self.task_type, self.task_id = cluster, task_type, task_id

    def cluster_spec(self):
        return tf.train.ClusterSpec(self._cluster)


@pytest.mark.parametrize("cluster, task_type, task_id, chief", [
    ({}, None, None, True),
    ({"worker": ["a:1", "b:1"]}, "worker", 0, True),
    ({"worker": ["a:1", "b:1"]}, "worker", 1, False),
    ({"chief": ["c:1"], "worker": ["a:1"]}, "worker", 0, False),
    ({"chief": ["c:1"], "worker": ["a:1"]}, "chief", 0, True),
])
def test_chief_is_the_chief_task_or_worker_zero(cluster, task_type, task_id, chief):
    from types import SimpleNamespace

    from train import strategies

    fake = SimpleNamespace(cluster_resolver=_FakeResolver(cluster, task_type, task_id))
    assert strategies.is_chief(fake) is chief
