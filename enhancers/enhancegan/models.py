"""EnhanceGAN's networks: the generator (frozen backbone + parameter heads) and the critic.

Deng, Loy & Tang (ACM MM 2018) sections 3.2-3.3 and 4.1, with the authors' Torch7 release
(`main.lua`, `InstanceNormalization.lua`, `TopK.lua`) where the paper is open (issue 16):

Backbone (`build_resnet101`)
    ResNet-101 without its average pooling and fc layer: 2048 x 7 x 7 features at 224 x 224.
    In the release it is the critic's body after good/bad pre-training, copied into G and
    frozen there (learning-rate multiplier 0). `weights` is None (random: logged loudly) or a
    local file (Keras' ImageNet `resnet101_weights_tf_dim_ordering_tf_kernels_notop.h5`, or
    a body saved after the critic's pre-training); nothing is downloaded. Any Keras model from
    images to a feature map can stand in for it (`build_tiny_backbone` for tests and the CPU
    demo).

Input space
    The generator and the critic take RGB in [0, 1] (the package's convention) and convert it
    for the backbone themselves: "lab" (the release's: every network sees the normalised Lab
    of `enhancers.lab`, L / 100, (A + 128) / 255, (B + 128) / 255) or "imagenet" (ours: Keras'
    caffe preprocessing, BGR 0-255 minus the ImageNet mean, for a body with ImageNet weights).
    The conversion lives in the wrapper rather than in the backbone so that the critic can be
    shown the luminance alone (`luminance_only=True`), as the release's crop stage does: in
    "lab" the normalised A and B channels are set to 0, exactly the release's `maskColor`; in
    "imagenet" the image is replaced by the grey of the same L (ours).

Heads (`ParameterHead`)
    A 1x1 convolution without bias, initialised N(0, 0.02), followed by instance
    normalisation (per image and channel over the map, epsilon 1e-5, a learned scale
    initialised U(0, 1) and shift initialised 0, as the release's `InstanceNormalization`):
    colour 2048 -> 7 (alpha, beta, a, b, p, q, then the score map), crop 2048 -> 5
    (s1, s2, t1, t2, then the score map), deep filtering 2048 -> n + 1 (n filter weights,
    then the score map). The score map weighs the candidates (`pooling`): top-K (K = 3, the
    release's) or the whole-map softmax (the paper's); the pooled values go through the ranges
    of `operators` (and `filters.filter_weights`).

Generator (`EnhanceGANGenerator`)
    images -> a dict: the parameters of each head ("alpha" ... "q" (batch,);
    "crop_scale", "crop_translation" (batch, 2), rows first; "filter_weights" (batch, n)),
    and per head "<head>_scores" (the raw score map, (batch, h, w)) and "<head>_attention"
    (each position's pooling weight, summing to 1: the paper's Fig. 5). The backbone is frozen
    (not in trainable_weights) and always called with training=False. `operators.
    enhance_batch` applies the parameters at the training size, `operators.enhance_photo` to
    a full-size photo.

Critic (`EnhanceGANCritic`)
    The backbone, global average pooling, the 2-way fc of good/bad pre-training ("logits",
    index 1 = good, trained with cross-entropy), then PReLU (one slope, initialised 0.25, as
    Torch's nn.PReLU()) and Linear(2, 1) (Torch's default U(-1/sqrt(2), 1/sqrt(2))
    initialisation) giving f_W ("f_w", (batch,); lower is better, the paper's sign). The WGAN
    critic's weights are clipped after each step (`clip_weights`, [-2, 2] in the release,
    0.01 in WGAN).
"""
import math
import os

import keras
import tensorflow as tf
from absl import logging

from enhancers import lab
from enhancers.enhancegan import filters, operators
from enhancers.enhancegan import pooling as pooling_ops
from nima.preprocessing import CaffePreprocess

INPUT_SPACES = ("lab", "imagenet")
HEAD_NAMES = ("color", "crop", "filters")
HEAD_NORMS = ("instance", "affine")
RESNET101_WEIGHTS_FILE = "resnet101_weights_tf_dim_ordering_tf_kernels_notop.h5"
HEAD_INIT_STDDEV = 0.02
INSTANCE_NORM_EPSILON = 1e-5
CRITIC_CLIP = 2.0  # the release's clamp; WGAN's is 0.01
PRELU_INIT = 0.25
GOOD_CLASS = 1  # index of "good" in the critic's 2-way logits


def build_resnet101(weights=None):
    """ResNet-101 without pooling and fc: images (batch, h, w, 3) in the backbone's input space
    (the wrapper converts; see the module docstring) -> (batch, h/32, w/32, 2048)."""
    if weights is not None:
        weights = os.fspath(weights)
        if not os.path.isfile(weights):
            raise FileNotFoundError(f"ResNet-101 weights file not found: {weights}")
    else:
        logging.warning("ResNet-101 has RANDOM weights: EnhanceGAN's generator and critic then "
                        "see random features. Pass a local weights file (%s, or the critic's "
                        "pre-trained body) for the paper's networks.", RESNET101_WEIGHTS_FILE)
    try:
        return keras.applications.ResNet101(include_top=False, weights=weights,
                                            input_shape=(None, None, 3), name="resnet101")
    except Exception as error:  # Keras raises several types for incompatible files.
        raise ValueError(f"Could not load ResNet-101 weights from {weights}: {error}") from error


def build_tiny_backbone(channels=32, depth=5, name="tiny_backbone"):
    """A small stand-in for ResNet-101 (ours, for tests and the CPU demo): `depth` 3x3
    convolutions of stride 2 with ReLU, widths doubling up to `channels`, so that a 224 x 224
    image gives a 7 x 7 map as ResNet-101's does."""
    images = keras.Input((None, None, 3), name="images")
    x = images
    for index in range(depth):
        width = max(4, channels // 2 ** (depth - 1 - index))
        x = keras.layers.Conv2D(width, 3, strides=2, padding="same", activation="relu",
                                name=f"conv{index + 1}")(x)
    return keras.Model(images, x, name=name)


@keras.saving.register_keras_serializable(package="enhancers")
class BackboneInput(keras.layers.Layer):
    """RGB in [0, 1] -> the backbone's input space ("lab" or "imagenet"; module docstring);
    `luminance_only` hides the colour (the release's `maskColor`)."""

    def __init__(self, input_space="lab", **kwargs):
        super().__init__(**kwargs)
        if input_space not in INPUT_SPACES:
            raise ValueError(f"input_space must be one of {INPUT_SPACES}, got {input_space!r}")
        self.input_space = input_space
        self.caffe = CaffePreprocess(name="caffe") if input_space == "imagenet" else None

    def call(self, images, luminance_only=False):
        images = tf.cast(images, tf.float32)
        if self.input_space == "lab":
            normalised = lab.rgb_to_normalised_lab(images)
            if luminance_only:
                normalised = normalised * tf.constant([1.0, 0.0, 0.0])
            return normalised
        if luminance_only:
            lightness = lab.rgb_to_lab(images) * tf.constant([1.0, 0.0, 0.0])
            images = lab.lab_to_rgb(lightness)
        return self.caffe(images)

    def get_config(self):
        return {**super().get_config(), "input_space": self.input_space}


@keras.saving.register_keras_serializable(package="enhancers")
class ChannelAffine(keras.layers.Layer):
    """x * gamma + beta per channel (gamma 1, beta 0 to start): the head's instance
    normalisation without the normalisation (`ParameterHead(norm="affine")`, ours)."""

    def build(self, input_shape):
        channels = input_shape[-1]
        self.gamma = self.add_weight(shape=(channels,), initializer="ones", name="gamma")
        self.beta = self.add_weight(shape=(channels,), initializer="zeros", name="beta")

    def call(self, x):
        return tf.cast(x, tf.float32) * self.gamma + self.beta


@keras.saving.register_keras_serializable(package="enhancers")
class ParameterHead(keras.layers.Layer):
    """1x1 convolution without bias (N(0, 0.02)) + instance normalisation (module docstring):
    (batch, h, w, features) -> (batch, h, w, channels), float32.

    norm="affine" (ours, not the release's) keeps the learned scale and shift but not the
    normalisation: instance normalisation takes each image's mean off every parameter map, so
    the pooled parameters can follow where in the photo something is but not how much of it
    the whole photo has (how faded or dark it is); "affine" lets that through."""

    def __init__(self, channels, norm="instance", **kwargs):
        super().__init__(**kwargs)
        if norm not in HEAD_NORMS:
            raise ValueError(f"norm must be one of {HEAD_NORMS}, got {norm!r}")
        self.channels = int(channels)
        self.norm_kind = norm
        self.conv = keras.layers.Conv2D(
            self.channels, 1, use_bias=False, name="conv",
            kernel_initializer=keras.initializers.RandomNormal(stddev=HEAD_INIT_STDDEV))
        if norm == "instance":
            self.norm = keras.layers.GroupNormalization(
                groups=-1, epsilon=INSTANCE_NORM_EPSILON, name="instance_norm",
                gamma_initializer=keras.initializers.RandomUniform(0.0, 1.0), dtype="float32")
        else:
            self.norm = ChannelAffine(name="affine", dtype="float32")

    def build(self, input_shape):
        self.conv.build(input_shape)
        self.norm.build(tuple(input_shape[:-1]) + (self.channels,))

    def call(self, features):
        return self.norm(tf.cast(self.conv(features), tf.float32))

    def compute_output_shape(self, input_shape):
        return tuple(input_shape[:-1]) + (self.channels,)

    def get_config(self):
        return {**super().get_config(), "channels": self.channels, "norm": self.norm_kind}


def head_channels(name, num_filters=len(filters.FILTER_NAMES)):
    """The head's channels: its parameters plus the score map (colour 7, crop 5, filters n + 1)."""
    if name == "color":
        return len(operators.COLOR_PARAMETERS) + 1
    if name == "crop":
        return len(operators.CROP_PARAMETERS) + 1
    if name == "filters":
        return num_filters + 1
    raise ValueError(f"Unknown head {name!r}; choose from {HEAD_NAMES}")


def _deserialize(value):
    return keras.saving.deserialize_keras_object(value) if isinstance(value, dict) else value


@keras.saving.register_keras_serializable(package="enhancers")
class EnhanceGANGenerator(keras.Model):
    """The generator G (module docstring): a frozen backbone, the heads, pooling and ranges.

    Args:
      backbone: a Keras model from the backbone's input to a feature map (`build_resnet101`,
        `build_tiny_backbone`, or any other); set non-trainable here.
      heads: the heads to build, any of "color", "crop", "filters" (the release's stages use
        ("crop",) then ("color", "crop") with the crop head frozen).
      num_filters: n, the deep-filtering head's weights (3 filters in the paper).
      pooling: "top_k" (the release's, K = `top_k`) or "softmax" (the paper's whole map).
      filter_weighting: `filters.filter_weights`' "softmax" (ours) or "linear" (as predicted).
      input_space: "lab" (the release's) or "imagenet" (see the module docstring).
      head_norm: "instance" (the release's) or "affine" (ours; `ParameterHead`).
    """

    def __init__(self, backbone, heads=("color", "crop"), num_filters=len(filters.FILTER_NAMES),
                 pooling="top_k", top_k=pooling_ops.TOP_K, filter_weighting="softmax",
                 input_space="lab", head_norm="instance", **kwargs):
        super().__init__(**kwargs)
        unknown = [name for name in heads if name not in HEAD_NAMES]
        if unknown or not heads or len(set(heads)) != len(heads):
            raise ValueError(f"heads must be distinct names from {HEAD_NAMES}, got {heads!r}")
        if pooling not in pooling_ops.POOLINGS:
            raise ValueError(f"pooling must be one of {pooling_ops.POOLINGS}, got {pooling!r}")
        if filter_weighting not in filters.FILTER_WEIGHTINGS:
            raise ValueError(f"filter_weighting must be one of {filters.FILTER_WEIGHTINGS}, "
                             f"got {filter_weighting!r}")
        self.backbone = _deserialize(backbone)
        self.backbone.trainable = False
        self.head_names = tuple(heads)
        self.num_filters = int(num_filters)
        self.pooling = pooling
        self.top_k = int(top_k)
        self.filter_weighting = filter_weighting
        self.input_space = input_space
        self.head_norm = head_norm
        self.backbone_input = BackboneInput(input_space, name="backbone_input")
        self.parameter_heads = {
            name: ParameterHead(head_channels(name, self.num_filters), norm=head_norm,
                                name=f"{name}_head")
            for name in self.head_names}
        # Each head also as an attribute of its own: tf.train.Checkpoint (the runner's
        # checkpoints) does not see layers held in a dict of a Keras 3 model, so the heads
        # would be left out of every checkpoint (and a restored generator keep its initial
        # heads). The weights are not duplicated.
        for name, head in self.parameter_heads.items():
            setattr(self, f"{name}_head", head)

    def features(self, images):
        """The frozen backbone's features of RGB `images` in [0, 1]."""
        return self.backbone(self.backbone_input(images), training=False)

    def call(self, images, training=False):
        features = self.features(images)
        outputs = {}
        for name in self.head_names:
            maps = self.parameter_heads[name](features)
            scores = maps[..., -1]
            pooled, attention = pooling_ops.pool(maps[..., :-1], scores, self.pooling,
                                                    self.top_k)
            outputs[f"{name}_scores"] = scores
            outputs[f"{name}_attention"] = attention
            if name == "color":
                outputs.update(operators.color_parameters(pooled))
            elif name == "crop":
                outputs.update(operators.crop_parameters(pooled))
            else:
                outputs["filter_weights"] = filters.filter_weights(pooled, self.filter_weighting)
        return outputs

    def get_config(self):
        return {**super().get_config(),
                "backbone": keras.saving.serialize_keras_object(self.backbone),
                "heads": list(self.head_names), "num_filters": self.num_filters,
                "pooling": self.pooling, "top_k": self.top_k,
                "filter_weighting": self.filter_weighting, "input_space": self.input_space,
                "head_norm": self.head_norm}

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        config["backbone"] = _deserialize(config["backbone"])
        config["heads"] = tuple(config["heads"])
        return cls(**config)


@keras.saving.register_keras_serializable(package="enhancers")
class EnhanceGANCritic(keras.Model):
    """The critic D (module docstring): backbone -> global average pooling -> the 2-way good/bad
    fc ("logits") -> PReLU -> Linear(2, 1) ("f_w", lower is better). Call with
    `luminance_only=True` to show it the L channel alone (the release's crop stage)."""

    def __init__(self, backbone, input_space="lab", **kwargs):
        super().__init__(**kwargs)
        self.backbone = _deserialize(backbone)
        self.input_space = input_space
        self.backbone_input = BackboneInput(input_space, name="backbone_input")
        self.pool = keras.layers.GlobalAveragePooling2D(name="avgpool")
        self.classifier = keras.layers.Dense(2, name="classifier")
        self.prelu = keras.layers.PReLU(
            alpha_initializer=keras.initializers.Constant(PRELU_INIT), shared_axes=[1],
            name="prelu")
        bound = 1.0 / math.sqrt(2.0)
        uniform = keras.initializers.RandomUniform(-bound, bound)
        self.score = keras.layers.Dense(1, kernel_initializer=uniform, bias_initializer=uniform,
                                        dtype="float32", name="f_w")

    def call(self, images, training=False, luminance_only=False):
        features = self.backbone(self.backbone_input(images, luminance_only=luminance_only),
                                 training=training)
        logits = self.classifier(self.pool(features))
        f_w = self.score(self.prelu(logits))[:, 0]
        return {"logits": tf.cast(logits, tf.float32), "f_w": f_w}

    def get_config(self):
        return {**super().get_config(),
                "backbone": keras.saving.serialize_keras_object(self.backbone),
                "input_space": self.input_space}

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        config["backbone"] = _deserialize(config["backbone"])
        return cls(**config)


def good_probability(logits):
    """The critic's pre-training probability that a photo is good (softmax of the 2-way fc)."""
    return tf.nn.softmax(tf.cast(logits, tf.float32), axis=-1)[:, GOOD_CLASS]


def clip_weights(model, clip_value=CRITIC_CLIP):
    """WGAN's weight clipping: every trainable weight of `model` into [-clip_value, clip_value]
    (the release clamps the critic's whole parameter vector -- kernels, biases, batch norm's
    scale and shift, PReLU's slope -- but not batch norm's running statistics, which are not
    parameters). Call after each critic step; works eagerly and inside tf.function."""
    for variable in model.trainable_variables:
        variable.assign(tf.clip_by_value(variable, -clip_value, clip_value))
