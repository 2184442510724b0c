"""PieNet, the personalised enhancer (Kim et al., ECCV 2020, section 3.2, Fig. 4, equation 5).

Encoder: ResNet-18 (`enhancers.resnet18`) with its five taps: conv1 (stride 2), blocks 2, 4 and 6
(strides 4, 8, 16) and the average pooling (a 512-d vector). The paper trains on 512 x 512.

Decoder: three personalised up-sample blocks (PUB). PUB i takes the preference vector, the
previous block's output (for the first PUB, the pooled encoder vector) and an encoder feature
(block6, block4, block2 in turn); it "makes the first two inputs have the same size as the third
one through convolution and up-sampling", concatenates the three along channels and passes them
through a residual block. The last PUB's output is concatenated with the conv1 feature,
up-sampled to the input size and fed to a last convolution, which yields the delta image dI;
the enhanced image is I + dI (equation 5).

What the paper leaves open, and our choices (all arguments of `build_pienet`):
- Vector to map: a vector (the preference, or the pooled feature) is a 1 x 1 map; a 1 x 1
  convolution (a Dense layer on the vector) then up-sampling it to the feature's size (any
  interpolation of a 1 x 1 map is a constant map) tiles it: `TileLike`.
- Map to map: a 1 x 1 convolution to the block's width, then `upsampling` interpolation
  (default bilinear, half-pixel centres as torch's align_corners=False) to the exact shape of
  the encoder feature (`ResizeLike`), not by a fixed factor, so odd image sizes work.
- The conv1 concatenation: the last PUB's output (stride 4) is first resized to conv1's shape
  (stride 2), then concatenated, then resized to the input's shape.
- Residual block: ResNet's basic block (3x3 conv, norm, ReLU, 3x3 conv, norm, a 1x1 conv + norm
  shortcut as the channels change, add, ReLU); `normalization` "batch" (default, as the
  encoder's blocks) or "none".
- Widths: `widths` (256, 128, 64), each PUB as wide as its encoder feature; the preference
  map has `preference_channels` (64) in every PUB; the last convolution is 3x3.
- The last convolution starts at zero (`zero_init_output=True`): PieNet starts as the identity,
  enhanced = input, and learns the delta.
- `pixel_head` (ours, 0 = off, the paper's): the up-sampled features are concatenated with
  the input image and passed through two 1 x 1 convolutions (ReLU) of that width before the
  last convolution, so that the delta can be a function of each pixel's own colour (a
  retouching style is mostly a per-pixel colour mapping). Without it the last convolution sees
  the photo only through conv1's stride-2 features, up-sampled.
- `pixel_head_preference` (ours, 0 = off; needs `pixel_head`): a Dense layer of that width on
  the preference vector, tiled, is a third input of the pixel head, so that the user's style
  reaches the per-pixel mapping directly and not only through the PUBs, where it is mixed with
  the content of the photos trained on.
- No clipping inside the model, so that the loss sees I + dI exactly (equation 6); `enhance`
  clips to [0, 1] for display and export.

The model takes {"images": (b, h, w, 3) RGB in [0, 1], "preference": (b, 512)} and returns
{"enhanced": I + dI, "delta": dI}, both float32 (b, h, w, 3).
"""
import keras
import numpy as np
import tensorflow as tf
from keras import ops

from enhancers.pienet.embedding import EMBEDDING_DIM
from enhancers.resnet18 import build_resnet18

WIDTHS = (256, 128, 64)  # ours: PUB widths, those of block6, block4, block2
PREFERENCE_CHANNELS = 64  # ours
OUTPUT_KERNEL = 3  # ours
TRAINING_SIZE = 512  # section 3.2
ENCODER_FEATURES = ("block6", "block4", "block2")  # the PUBs' encoder inputs, deepest first
NORMALIZATIONS = ("batch", "none")
UPSAMPLINGS = ("bilinear", "nearest", "bicubic", "area")


@keras.saving.register_keras_serializable(package="enhancers")
class ResizeLike(keras.layers.Layer):
    """[x (b, h, w, c), reference (b, H, W, ...)] -> x resized to (b, H, W, c) by
    `tf.image.resize(method=interpolation)` (half-pixel centres); dtype of x."""

    def __init__(self, interpolation="bilinear", **kwargs):
        super().__init__(**kwargs)
        if interpolation not in UPSAMPLINGS:
            raise ValueError(f"interpolation must be one of {UPSAMPLINGS}, got {interpolation!r}")
        self.interpolation = interpolation

    def call(self, inputs):
        x, reference = inputs
        resized = tf.image.resize(x, tf.shape(reference)[1:3], method=self.interpolation)
        return tf.cast(resized, x.dtype)

    def compute_output_shape(self, input_shapes):
        x, reference = input_shapes
        return (x[0], reference[1], reference[2], x[3])

    def get_config(self):
        return {**super().get_config(), "interpolation": self.interpolation}


@keras.saving.register_keras_serializable(package="enhancers")
class TileLike(keras.layers.Layer):
    """[v (b, c), reference (b, H, W, ...)] -> v tiled to (b, H, W, c): the up-sampling of a
    1 x 1 map, whatever the interpolation."""

    def call(self, inputs):
        vectors, reference = inputs
        shape = tf.shape(reference)
        return tf.broadcast_to(vectors[:, None, None, :],
                               tf.stack([shape[0], shape[1], shape[2], tf.shape(vectors)[-1]]))

    def compute_output_shape(self, input_shapes):
        vectors, reference = input_shapes
        return (vectors[0], reference[1], reference[2], vectors[-1])


def _norm(x, normalization, name):
    if normalization == "batch":
        return keras.layers.BatchNormalization(name=name)(x)
    return x


def _residual_block(x, width, normalization, name):
    """ResNet's basic block at stride 1 (module docstring); no conv bias before a norm."""
    bias = normalization == "none"
    conv = lambda size, label: keras.layers.Conv2D(  # noqa: E731
        width, size, padding="same", use_bias=bias, kernel_initializer="he_normal",
        name=f"{name}_{label}")
    shortcut = x
    if x.shape[-1] != width:
        shortcut = _norm(conv(1, "shortcut")(x), normalization, f"{name}_shortcut_norm")
    y = keras.layers.ReLU(name=f"{name}_relu1")(_norm(conv(3, "conv1")(x), normalization,
                                                      f"{name}_norm1"))
    y = _norm(conv(3, "conv2")(y), normalization, f"{name}_norm2")
    y = keras.layers.Add(name=f"{name}_add")([y, shortcut])
    return keras.layers.ReLU(name=f"{name}_relu2")(y)


def _tiled_dense(vector, channels, reference, dense_name, tile_name):
    """A vector as a map (module docstring, "Vector to map"): a Dense layer of `channels` on
    `vector` (b, d), tiled to the height and width of `reference`."""
    return TileLike(name=tile_name)(
        [keras.layers.Dense(channels, name=dense_name)(vector), reference])


def _pub(preference, previous, feature, width, preference_channels, normalization, upsampling,
         name):
    """A personalised up-sample block (section 3.2): preference vector and previous output
    brought to the feature's size (1x1 conv + up-sampling), concatenated, a residual block."""
    preference_map = _tiled_dense(preference, preference_channels, feature,
                                  f"{name}_preference_conv", f"{name}_preference_tile")
    if len(previous.shape) == 2:  # the pooled vector: a 1 x 1 map
        previous = _tiled_dense(previous, width, feature, f"{name}_previous_conv",
                                f"{name}_previous_tile")
    else:
        previous = keras.layers.Conv2D(width, 1, name=f"{name}_previous_conv")(previous)
        previous = ResizeLike(upsampling, name=f"{name}_previous_up")([previous, feature])
    x = keras.layers.Concatenate(name=f"{name}_concat")([preference_map, previous, feature])
    return _residual_block(x, width, normalization, f"{name}_residual")


def build_pienet(widths=WIDTHS, preference_channels=PREFERENCE_CHANNELS,
                 preference_dim=EMBEDDING_DIM, normalization="batch", upsampling="bilinear",
                 output_kernel=OUTPUT_KERNEL, zero_init_output=True, encoder_weights=None,
                 pixel_head=0, pixel_head_preference=0, input_shape=(None, None, 3),
                 name="pienet"):
    """PieNet (section 3.2; module docstring for our choices where the paper leaves them open).

    Args:
      widths: the three PUBs' output channels, deepest first (ours: 256, 128, 64).
      preference_channels: channels of the preference map in each PUB (ours: 64).
      preference_dim: the preference vector's dimension (the embedding's, 512).
      normalization: "batch" or "none" in the PUBs' residual blocks.
      upsampling: interpolation of feature maps ("bilinear", "nearest", "bicubic", "area").
      output_kernel: kernel size of the last convolution (ours: 3).
      zero_init_output: start the last convolution at zero, so that PieNet starts as identity.
      encoder_weights: None (random ResNet-18, logged loudly) or a local .npz of torchvision's
        resnet18 state dict (the encoder is the nested model "resnet18").
      pixel_head: width of the per-pixel head on [features, image] (ours; 0 = off, the paper).
      pixel_head_preference: channels of the preference vector (a Dense layer, tiled) that the
        pixel head also sees (ours; 0 = off; needs `pixel_head`).
      input_shape: (h, w, 3); any size by default (the paper trains on 512 x 512).
    """
    widths = tuple(int(w) for w in widths)
    if len(widths) != len(ENCODER_FEATURES) or min(widths) < 1:
        raise ValueError(f"widths must be {len(ENCODER_FEATURES)} positive channel counts (one "
                         f"per PUB), got {widths}")
    if normalization not in NORMALIZATIONS:
        raise ValueError(f"normalization must be one of {NORMALIZATIONS}, got {normalization!r}")
    if upsampling not in UPSAMPLINGS:
        raise ValueError(f"upsampling must be one of {UPSAMPLINGS}, got {upsampling!r}")
    if int(preference_channels) < 1 or int(output_kernel) < 1:
        raise ValueError(f"preference_channels and output_kernel must be positive, got "
                         f"{preference_channels}, {output_kernel}")
    if int(pixel_head) < 0:
        raise ValueError(f"pixel_head must be 0 (off) or a positive width, got {pixel_head}")
    if int(pixel_head_preference) < 0 or (int(pixel_head_preference) and not int(pixel_head)):
        raise ValueError(f"pixel_head_preference must be 0 (off) or a positive width with a "
                         f"pixel_head, got {pixel_head_preference} with pixel_head={pixel_head}")
    images = keras.Input(input_shape, name="images")
    preference = keras.Input((int(preference_dim),), name="preference")
    taps = build_resnet18(input_shape=input_shape, weights=encoder_weights)(images)
    x = taps["pool"]
    for index, (feature, width) in enumerate(zip(ENCODER_FEATURES, widths), start=1):
        x = _pub(preference, x, taps[feature], width, int(preference_channels), normalization,
                 upsampling, f"pub{index}")
    x = ResizeLike(upsampling, name="last_pub_up")([x, taps["conv1"]])
    x = keras.layers.Concatenate(name="conv1_concat")([x, taps["conv1"]])
    x = ResizeLike(upsampling, name="output_up")([x, images])
    if int(pixel_head) > 0:
        head_inputs = [x, images]
        if int(pixel_head_preference) > 0:
            head_inputs.append(_tiled_dense(preference, int(pixel_head_preference), images,
                                            "pixel_preference", "pixel_preference_tile"))
        x = keras.layers.Concatenate(name="pixel_concat")(head_inputs)
        for index in (1, 2):
            x = keras.layers.Conv2D(int(pixel_head), 1, activation="relu",
                                    kernel_initializer="he_normal", name=f"pixel_head{index}")(x)
    initializers = ({"kernel_initializer": "zeros", "bias_initializer": "zeros"}
                    if zero_init_output else {})
    delta = keras.layers.Conv2D(3, int(output_kernel), padding="same", dtype="float32",
                                name="delta", **initializers)(x)
    enhanced = keras.layers.Add(dtype="float32", name="enhanced")([images, delta])
    return keras.Model({"images": images, "preference": preference},
                       {"enhanced": enhanced, "delta": delta}, name=name)


def enhance(model, images, preference, clip=True):
    """PieNet at inference: `images` (b, h, w, 3) or (h, w, 3) in [0, 1]; `preference` (dim,)
    for every image or (b, dim). Returns the enhanced images as a float32 array of the input's
    rank, clipped to [0, 1] unless `clip=False` (section 3.2, equation 5: I + dI)."""
    images = np.asarray(images, np.float32)
    single = images.ndim == 3
    if single:
        images = images[None]
    preference = np.asarray(preference, np.float32)
    if preference.ndim == 1:
        preference = np.broadcast_to(preference, (images.shape[0], preference.shape[0]))
    outputs = model({"images": ops.convert_to_tensor(images),
                     "preference": ops.convert_to_tensor(preference)}, training=False)
    enhanced = np.asarray(outputs["enhanced"])
    if clip:
        enhanced = np.clip(enhanced, 0.0, 1.0)
    return enhanced[0] if single else enhanced
