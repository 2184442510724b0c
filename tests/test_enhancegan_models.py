"""enhancers.enhancegan.models: the generator (frozen backbone, heads, pooling, ranges, config
round trip) and the critic (outputs, weight clipping), on tiny backbones; ResNet-101's shape."""
import time

import keras
import numpy as np
import pytest
import tensorflow as tf

from enhancers import enhancegan, lab
from enhancers.enhancegan import models, operators


def images(seed=0, batch=2, size=64):
    return np.random.default_rng(seed).uniform(size=(batch, size, size, 3)).astype(np.float32)


def backbone_with_batch_norm(channels=16):
    inputs = keras.Input((None, None, 3))
    x = keras.layers.Conv2D(8, 3, strides=4, padding="same")(inputs)
    x = keras.layers.BatchNormalization()(x)
    x = keras.layers.Conv2D(channels, 3, strides=4, padding="same", activation="relu")(x)
    return keras.Model(inputs, x, name="bn_backbone")


def test_generator_outputs_every_parameter_in_range_and_the_maps():
    keras.utils.set_random_seed(0)
    generator = enhancegan.EnhanceGANGenerator(enhancegan.build_tiny_backbone(16),
                                               heads=("color", "crop", "filters"))
    outputs = generator(images())
    for name in operators.COLOR_PARAMETERS:
        low, high = operators.RANGES[name]
        assert outputs[name].shape == (2,)
        assert np.all(outputs[name].numpy() >= low - 1e-6)
        assert np.all(outputs[name].numpy() <= high + 1e-6)
    assert outputs["crop_scale"].shape == (2, 2) and outputs["crop_translation"].shape == (2, 2)
    assert outputs["filter_weights"].shape == (2, 3)
    for head in ("color", "crop", "filters"):
        assert outputs[f"{head}_scores"].shape == (2, 2, 2)  # 64 / 32
        np.testing.assert_allclose(outputs[f"{head}_attention"].numpy().sum(axis=(1, 2)), 1.0,
                                   rtol=1e-6)


def test_ranges_hold_for_any_head_output():
    keras.utils.set_random_seed(1)
    generator = enhancegan.EnhanceGANGenerator(enhancegan.build_tiny_backbone(16),
                                               pooling="softmax")
    generator(images(size=224))
    for head in generator.parameter_heads.values():  # blow the heads' outputs up
        head.norm.gamma.assign(head.norm.gamma * 1e4)
        head.norm.beta.assign(tf.random.normal(head.norm.beta.shape, stddev=1e3))
    outputs = generator(images(seed=2, batch=4, size=224))
    for name in operators.COLOR_PARAMETERS:
        low, high = operators.RANGES[name]
        values = outputs[name].numpy()
        assert values.min() >= low - 1e-6 and values.max() <= high + 1e-6, name
    scale, translation = outputs["crop_scale"].numpy(), outputs["crop_translation"].numpy()
    assert scale.min() >= 0.3 - 1e-6 and scale.max() <= 0.999 + 1e-6
    assert np.all(np.abs(translation) <= (1 - scale) / scale + 1e-6)
    assert outputs["color_scores"].shape == (4, 7, 7)


def test_heads_are_bias_free_normal_002_convolutions_with_instance_norm():
    keras.utils.set_random_seed(2)
    generator = enhancegan.EnhanceGANGenerator(enhancegan.build_tiny_backbone(256),
                                               heads=("color", "crop", "filters"), num_filters=4)
    generator(images())
    expected = {"color": 7, "crop": 5, "filters": 5}
    for name, head in generator.parameter_heads.items():
        assert head.conv.use_bias is False and head.conv.kernel.shape == (1, 1, 256,
                                                                         expected[name])
        assert abs(float(np.std(head.conv.kernel.numpy())) - 0.02) < 0.004
        gamma = head.norm.gamma.numpy()
        assert np.all((gamma >= 0) & (gamma <= 1)) and np.all(head.norm.beta.numpy() == 0)
    # Instance norm: each channel of each image has mean beta (0) over the map.
    maps = generator.parameter_heads["color"](generator.features(images(size=128))).numpy()
    np.testing.assert_allclose(maps.mean(axis=(1, 2)), 0.0, atol=1e-5)


def test_the_generators_backbone_is_frozen():
    keras.utils.set_random_seed(3)
    backbone = backbone_with_batch_norm()
    generator = enhancegan.EnhanceGANGenerator(backbone)
    batch = images(size=32)
    generator(batch)
    backbone_ids = {id(w) for w in backbone.weights}
    assert generator.trainable_weights
    assert not backbone_ids & {id(w) for w in generator.trainable_weights}
    before = [w.numpy().copy() for w in backbone.weights]
    optimizer = keras.optimizers.RMSprop(0.1)
    for _ in range(2):
        with tf.GradientTape() as tape:
            outputs = generator(batch, training=True)
            enhanced = operators.enhance_batch(batch, outputs, output_size=16)
            loss = tf.reduce_mean(enhanced) + tf.reduce_mean(outputs["crop_scale"])
        gradients = tape.gradient(loss, generator.trainable_weights)
        assert all(g is not None for g in gradients)
        optimizer.apply_gradients(zip(gradients, generator.trainable_weights))
    for old, new in zip(before, backbone.weights):  # kernels and batch norm statistics alike
        np.testing.assert_array_equal(old, new.numpy())


def test_generator_config_round_trips():
    keras.utils.set_random_seed(4)
    generator = enhancegan.EnhanceGANGenerator(enhancegan.build_tiny_backbone(16),
                                               heads=("crop", "filters"), num_filters=2,
                                               pooling="softmax", top_k=2,
                                               filter_weighting="linear", input_space="imagenet")
    batch = images()
    outputs = generator(batch)
    clone = enhancegan.EnhanceGANGenerator.from_config(generator.get_config())
    clone(batch)
    clone.set_weights(generator.get_weights())
    assert clone.head_names == ("crop", "filters") and clone.pooling == "softmax"
    assert clone.input_space == "imagenet" and clone.filter_weighting == "linear"
    cloned = clone(batch)
    for name in outputs:
        np.testing.assert_allclose(cloned[name].numpy(), outputs[name].numpy(), atol=1e-6)
    assert set(outputs) == {"crop_scores", "crop_attention", "crop_scale", "crop_translation",
                            "filters_scores", "filters_attention", "filter_weights"}


@pytest.mark.parametrize("arguments", [dict(heads=("colour",)), dict(heads=()),
                                       dict(heads=("crop", "crop")), dict(pooling="max"),
                                       dict(filter_weighting="relu"), dict(input_space="rgb")])
def test_bad_generator_arguments_are_refused(arguments):
    with pytest.raises(ValueError):
        enhancegan.EnhanceGANGenerator(enhancegan.build_tiny_backbone(8), **arguments)


def test_backbone_input_spaces():
    batch = images(size=8)
    normalised = models.BackboneInput("lab")(batch).numpy()
    np.testing.assert_allclose(normalised, lab.rgb_to_normalised_lab(batch).numpy())
    masked = models.BackboneInput("lab")(batch, luminance_only=True).numpy()
    np.testing.assert_array_equal(masked[..., 1:], 0.0)  # the release's maskColor
    np.testing.assert_allclose(masked[..., 0], normalised[..., 0])
    caffe = models.BackboneInput("imagenet")(batch).numpy()
    np.testing.assert_allclose(caffe[..., 0], batch[..., 2] * 255 - 103.939, rtol=1e-5,
                               atol=1e-4)
    grey = models.BackboneInput("imagenet")(batch, luminance_only=True).numpy()
    np.testing.assert_allclose(grey[..., 0] + 103.939, grey[..., 1] + 116.779, atol=0.05)


def test_critic_scores_and_logits():
    keras.utils.set_random_seed(5)
    critic = enhancegan.EnhanceGANCritic(enhancegan.build_tiny_backbone(16))
    batch = images(batch=3)
    outputs = critic(batch)
    assert outputs["logits"].shape == (3, 2) and outputs["f_w"].shape == (3,)
    # f_W = Linear(2, 1)(PReLU(logits)), one PReLU slope initialised 0.25.
    slope = critic.prelu.alpha.numpy()
    assert slope.shape == (1,) and slope[0] == 0.25
    logits = outputs["logits"].numpy()
    activated = np.where(logits > 0, logits, 0.25 * logits)
    kernel, bias = critic.score.kernel.numpy(), critic.score.bias.numpy()
    np.testing.assert_allclose(outputs["f_w"].numpy(), (activated @ kernel + bias)[:, 0],
                               rtol=1e-5, atol=1e-6)
    probability = enhancegan.good_probability(outputs["logits"]).numpy()
    np.testing.assert_allclose(probability, np.exp(logits[:, 1]) / np.exp(logits).sum(axis=1),
                               rtol=1e-5)
    hidden = critic(batch, luminance_only=True)["f_w"].numpy()
    assert not np.allclose(hidden, outputs["f_w"].numpy())
    clone = enhancegan.EnhanceGANCritic.from_config(critic.get_config())
    clone(batch)
    clone.set_weights(critic.get_weights())
    np.testing.assert_allclose(clone(batch)["f_w"].numpy(), outputs["f_w"].numpy(), atol=1e-6)


@pytest.mark.parametrize("clip_value", [2.0, 0.01])
def test_critic_weights_stay_within_the_clip_after_a_step(clip_value):
    keras.utils.set_random_seed(6)
    critic = enhancegan.EnhanceGANCritic(backbone_with_batch_norm())
    batch = images(size=32)
    critic(batch)
    for variable in critic.trainable_variables:  # some weights far outside the clip
        variable.assign(variable * 50.0 + 3.0)
    optimizer = keras.optimizers.RMSprop(5e-5)

    @tf.function
    def step():
        with tf.GradientTape() as tape:
            loss = tf.reduce_mean(critic(batch, training=True)["f_w"])
        optimizer.apply_gradients(zip(tape.gradient(loss, critic.trainable_variables),
                                      critic.trainable_variables))
        enhancegan.clip_weights(critic, clip_value)

    step()
    for variable in critic.trainable_variables:
        values = variable.numpy()
        assert values.min() >= -clip_value and values.max() <= clip_value, variable.path
    assert any(np.any(np.abs(v.numpy()) == clip_value) for v in critic.trainable_variables)
    # Batch norm's running statistics are not parameters: left alone.
    variances = [w for w in critic.non_trainable_weights if "moving_variance" in w.path]
    assert variances and np.all(variances[0].numpy() > 0)


def test_resnet101_gives_2048_x_7_x_7_at_224():
    """Only the shape: ResNet-101 builds in about 2 s and runs once in about 1 s on a CPU."""
    start = time.perf_counter()
    backbone = enhancegan.build_resnet101()
    built = time.perf_counter() - start
    if built > 20:
        pytest.skip(f"ResNet-101 took {built:.0f} s to build on this machine")
    assert backbone(np.zeros((1, 224, 224, 3), np.float32)).shape == (1, 7, 7, 2048)
    with pytest.raises(FileNotFoundError):
        enhancegan.build_resnet101("/nonexistent/resnet101.h5")


def test_tiny_backbone_matches_resnets_stride():
    assert enhancegan.build_tiny_backbone(32)(np.zeros((1, 224, 224, 3))).shape == (1, 7, 7, 32)


def test_a_checkpoint_holds_every_head(tmp_path):
    """tf.train.Checkpoint (the runner's checkpoints, its restore for evaluation and export)
    does not see layers kept in a dict of a Keras 3 model: the heads must be reachable as
    attributes, or a restored generator keeps its initial heads."""
    keras.utils.set_random_seed(0)
    generator = enhancegan.EnhanceGANGenerator(enhancegan.build_tiny_backbone(8),
                                               heads=("color", "crop"))
    generator(images())
    path = tf.train.Checkpoint(generator=generator).save(str(tmp_path / "ckpt"))
    keras.utils.set_random_seed(1)
    restored = enhancegan.EnhanceGANGenerator(enhancegan.build_tiny_backbone(8),
                                              heads=("color", "crop"))
    restored(images())
    tf.train.Checkpoint(generator=restored).restore(path).assert_consumed()
    for a, b in zip(generator.weights, restored.weights):
        np.testing.assert_array_equal(a.numpy(), b.numpy())
    assert len(restored.weights) == len({id(w) for w in restored.weights})  # no duplicates
