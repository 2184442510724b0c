"""Tiled inference for fully convolutional image-to-image models: any photo in bounded memory.

A photo larger than one window is cut into square windows of `TilePlan.window` pixels a side
that always lie INSIDE the photo (clamped at its borders), so the network's own padding at the
true border is reproduced exactly; the photo itself is never padded. Each window is the core it
contributes plus a halo of at least the receptive-field radius (`receptive_field_radius`) on
every interior side, so each core pixel sees exactly the context it has in the whole photo;
cores are stitched without blending. Tiled equals untiled up to float32 summation order (tests
measure 1e-5 or less). A photo that fits in one window is run untiled, unchanged.

The window side comes from a memory budget: `window_pixels`, by default `FEATURE_BUDGET`
values per feature map divided by the widest layer, but at least 4 radii + 2 so that overlap
costs at most about 4x (1024 x 1024 for WESPE's generator, 64 maps; 2046 x 2046 for the paper's
CAN, radius 511), so a 24-megapixel photo runs in a few GB (benchmarks/tiled_memory.py: a
window's peak is about 14 feature maps for WESPE's G). Cores are balanced (the photo split into
equal parts per axis) to waste little work on overlap; the CAN's radius of 511 still makes it
run about 3x the pixels of a 24 MP photo.

Instance norm (`GroupNormalization` with one channel per group: WESPE's generator) normalises
over the whole photo, a global receptive field; tiling stays exact by computing each such
layer's per-channel mean and variance over the whole photo first: pass k runs the network up to
norm k's input window by window (halo: that prefix's radius), with the statistics of norms
1..k-1 fixed, and accumulates the cores' statistics (Chan's parallel update in float64); the
last pass runs the whole network with every statistic fixed. For WESPE's 8 norms this costs
about 4-5x one pass. A `GlobalContext` layer (WESPE's `--generator_global_context`) is
handled the same way: its input's mean over the whole photo first, then every window
modulated by it.

    tiler = tiled(model)                    # a functional Keras model or a can.CanInference
    enhanced = tiler(images)                # eagerly or inside a tf.function / SavedModel
    tiler.plan                              # TilePlan(window, halo, radius, global_norms)
"""
import dataclasses
import math

import keras
import tensorflow as tf

from enhancers import can
from enhancers.global_context import GlobalContext

FEATURE_BUDGET = 2**26  # values per feature map of one window: 256 MiB in float32

_CONVS = (keras.layers.Conv2D, keras.layers.DepthwiseConv2D, keras.layers.SeparableConv2D)
_PADDINGS = (keras.layers.ZeroPadding2D, can.SymmetricPadding2D)
_POINTWISE = (
    keras.layers.Activation, keras.layers.ReLU, keras.layers.LeakyReLU, keras.layers.PReLU,
    keras.layers.ELU, keras.layers.Add, keras.layers.Subtract, keras.layers.Multiply,
    keras.layers.Average, keras.layers.Maximum, keras.layers.Minimum, keras.layers.Rescaling,
    keras.layers.BatchNormalization, keras.layers.Dropout, keras.layers.Identity,
    can.AdaptiveBatchNormalization,
)


@dataclasses.dataclass(frozen=True)
class TilePlan:
    """Square windows of `window` pixels a side, `halo` pixels of context on interior sides."""

    window: int
    halo: int
    radius: int
    global_norms: int

    @property
    def core(self):
        """The largest core a window contributes (cores are balanced, so often smaller)."""
        return self.window - 2 * self.halo

    def as_dict(self):
        return {"window": self.window, "core": self.core, "halo": self.halo,
                "receptive_field_radius": self.radius, "global_norms": self.global_norms}


def _graph_model(model):
    """The functional model whose layers describe `model` (a CanInference reads its CAN's)."""
    graph = model.can if isinstance(model, can.CanInference) else model
    if not isinstance(graph, keras.Model) or len(getattr(graph, "inputs", None) or ()) != 1 \
            or len(graph.outputs) != 1:
        raise ValueError(f"cannot tile {getattr(graph, 'name', graph)}: not a functional Keras "
                         "model with one input and one output")
    return graph


def _needs_photo_statistics(layer):
    """Whether `layer` needs statistics over the whole photo: instance norm or
    `GlobalContext`; ValueError for a group norm that mixes channels."""
    if isinstance(layer, GlobalContext):
        return True
    if not isinstance(layer, keras.layers.GroupNormalization):
        return False
    channels = layer.input.shape[-1]
    if layer.axis not in (-1, 3) or layer.groups not in (-1, channels):
        raise ValueError(f"cannot tile: layer {layer.name} (GroupNormalization with "
                         f"{layer.groups} groups) mixes channels over the whole photo")
    return True


def _layer_radius(layer):
    """How far (pixels) one output pixel of `layer` reaches into its input; ValueError if it is
    not a stride-1 spatial layer that tiling knows."""
    if isinstance(layer, _CONVS):
        if tuple(layer.strides) != (1, 1) or layer.data_format != "channels_last":
            raise ValueError(f"cannot tile: layer {layer.name} ({type(layer).__name__}) has "
                             f"strides {tuple(layer.strides)}; tiling needs stride 1")
        return max(math.ceil((k - 1) * d / 2)
                   for k, d in zip(layer.kernel_size, layer.dilation_rate))
    if (isinstance(layer, _PADDINGS) or isinstance(layer, _POINTWISE)
            or _needs_photo_statistics(layer)):
        return 0
    if isinstance(layer, keras.layers.Concatenate) and layer.axis in (-1, 3):
        return 0
    if isinstance(layer, keras.layers.LayerNormalization) and tuple(layer.axis) in ((-1,), (3,)):
        return 0
    raise ValueError(f"cannot tile: unsupported layer {layer.name} ({type(layer).__name__}); "
                     "tiling knows stride-1 convolutions, padding and pixelwise layers")


def _radii(graph):
    """{id(tensor): receptive-field radius of that tensor w.r.t. the model's input}."""
    radii = {id(graph.inputs[0]): 0}
    for layer in graph.layers:
        if isinstance(layer, keras.layers.InputLayer):
            continue
        if len(layer._inbound_nodes) != 1:
            raise ValueError(f"cannot tile: layer {layer.name} is called more than once")
        inputs = keras.tree.flatten(layer.input)
        radii[id(layer.output)] = (max(radii[id(t)] for t in inputs)
                                   + _layer_radius(layer))
    return radii


def receptive_field_radius(model):
    """The largest distance (pixels) at which an input pixel changes an output pixel, along
    any path through `model` (global norms counted as pixelwise). Conv k x k with dilation d
    adds ceil((k - 1) d / 2); WESPE's G: 4 + 8 + 2 + 4 = 18, the paper's CAN: 511. Raises
    ValueError naming a strided or unknown layer."""
    graph = _graph_model(model)
    return _radii(graph)[id(graph.outputs[0])]


def plan_tiles(model, window_pixels=None):
    """The `TilePlan` of `model`: window side sqrt(window_pixels) (default: FEATURE_BUDGET
    over the widest layer, at least 4 radii + 2), halo = receptive-field radius. ValueError if
    the model cannot be tiled or the window leaves no core."""
    graph = _graph_model(model)
    radius = receptive_field_radius(graph)
    probe = 4 * radius + 7
    if tuple(graph.compute_output_shape((1, probe, probe, 3))[1:3]) != (probe, probe):
        raise ValueError(f"cannot tile {graph.name}: its output is not the size of its input")
    if window_pixels is None:
        widest = max(layer.output.shape[-1] or 3 for layer in graph.layers)
        window_pixels = max(FEATURE_BUDGET // widest, (4 * radius + 2) ** 2)
    window = math.isqrt(int(window_pixels))
    if window <= 2 * radius:
        raise ValueError(f"a window of {window}x{window} pixels leaves no core around the "
                         f"receptive-field radius {radius} of {graph.name}: window_pixels must "
                         f"exceed {(2 * radius + 1) ** 2}")
    norms = sum(_needs_photo_statistics(layer) for layer in graph.layers)
    return TilePlan(window=window, halo=radius, radius=radius, global_norms=norms)


def _axis(length, window, halo):
    """(tiles, core, window) along one axis: balanced cores, windows inside the photo."""
    tiles = tf.where(length <= window, 1, -(-length // (window - 2 * halo)))
    core = -(-length // tiles)
    return tiles, core, tf.minimum(length, core + 2 * halo)


def _tile(index, tiles_core_window, length, halo):
    """(window start, core offset in the window, core size) of tile `index` along one axis."""
    _, core, window = tiles_core_window
    start = index * core
    size = tf.minimum(start + core, length) - start
    window_start = tf.clip_by_value(start - halo, 0, length - window)
    return window_start, start - window_start, size


def _for_each_tile(images, window, halo, body, state):
    """state = body(window_images, core_slice, state) over the tiles, row by row, as a
    tf.while_loop (eager and graph alike). core_slice(features) cuts a window's core."""
    height, width = tf.shape(images)[1], tf.shape(images)[2]
    rows, cols = _axis(height, window, halo), _axis(width, window, halo)

    def step(t, *state):
        y, oy, sy = _tile(t // cols[0], rows, height, halo)
        x, ox, sx = _tile(t % cols[0], cols, width, halo)
        crop = images[:, y:y + rows[2], x:x + cols[2]]
        return (t + 1, *body(crop, lambda f: f[:, oy:oy + sy, ox:ox + sx], t, *state))

    # One window at a time: by default a while_loop runs up to 10 independent iterations at
    # once, which multiplies the memory the windows were sized for.
    return tf.while_loop(lambda t, *_: t < rows[0] * cols[0], step, (0, *state),
                         parallel_iterations=1)[1:]


def _normalise(layer, x, mean, variance):
    """`layer` (instance norm) with given per-image, per-channel statistics, as Keras computes
    it: x * inv + (beta - mean * inv), inv = gamma / sqrt(variance + epsilon)."""
    x = tf.cast(x, tf.float32)
    inv = tf.math.rsqrt(variance + layer.epsilon)[:, None, None]
    if layer.scale:
        inv = inv * tf.cast(layer.gamma, tf.float32)
    shift = -mean[:, None, None] * inv
    if layer.center:
        shift = shift + tf.cast(layer.beta, tf.float32)
    return tf.cast(x * inv + shift, layer.compute_dtype)


def _run(graph, images, statistics, until=None):
    """The functional `graph` on `images`, norms in `statistics` ({id(layer): (mean, var)})
    applied with those statistics; returns tensor `until` (a KerasTensor) or the output."""
    values = {id(graph.inputs[0]): images}
    target = id(until if until is not None else graph.outputs[0])
    for layer in graph.layers:
        if target in values:
            break
        if isinstance(layer, keras.layers.InputLayer):
            continue
        inputs = keras.tree.map_structure(lambda t: values[id(t)], layer.input)
        if id(layer) in statistics and isinstance(layer, GlobalContext):
            values[id(layer.output)] = layer.modulate(inputs, statistics[id(layer)][0])
        elif id(layer) in statistics:
            values[id(layer.output)] = _normalise(layer, inputs, *statistics[id(layer)])
        else:
            values[id(layer.output)] = layer(inputs, training=False)
    return values[target]


class Tiled:
    """`model` run window by window (module docstring); `plan` is its `TilePlan`."""

    def __init__(self, model, window_pixels=None):
        self.model = model
        self.graph = _graph_model(model)
        self.plan = plan_tiles(model, window_pixels)
        radii = _radii(self.graph)
        self.norms = [(layer, radii[id(layer.input)]) for layer in self.graph.layers
                      if _needs_photo_statistics(layer)]

    def __call__(self, images):
        images = tf.convert_to_tensor(images)
        shape = tf.shape(images)
        fits = tf.logical_and(shape[1] <= self.plan.window, shape[2] <= self.plan.window)
        return tf.cond(fits, lambda: self.model(images, training=False),
                       lambda: self._tiled(images))

    def _statistics(self, images, layer, halo, statistics):
        """Per-image, per-channel mean and variance of `layer`'s input over the whole photo."""
        channels = layer.input.shape[-1]
        zeros = tf.zeros([tf.shape(images)[0], channels], tf.float64)

        def body(crop, core, t, count, mean, m2):
            del t
            features = tf.cast(core(_run(self.graph, crop, statistics, until=layer.input)),
                               tf.float32)
            tile_mean = tf.reduce_mean(features, axis=[1, 2])
            tile_m2 = tf.reduce_sum(tf.square(features - tile_mean[:, None, None]), axis=[1, 2])
            n = tf.cast(tf.shape(features)[1] * tf.shape(features)[2], tf.float64)
            total = count + n
            delta = tf.cast(tile_mean, tf.float64) - mean
            return (total, mean + delta * n / total,
                    m2 + tf.cast(tile_m2, tf.float64) + delta**2 * count * n / total)

        count, mean, m2 = _for_each_tile(images, self.plan.window, halo, body,
                                         (tf.constant(0.0, tf.float64), zeros, zeros))
        return tf.cast(mean, tf.float32), tf.cast(m2 / count, tf.float32)

    def _tiled(self, images):
        statistics = {}
        for layer, halo in self.norms:
            statistics[id(layer)] = self._statistics(images, layer, halo, statistics)
        if statistics:
            window_fn = lambda crop: _run(self.graph, crop, statistics)  # noqa: E731
        else:
            window_fn = lambda crop: self.model(crop, training=False)  # noqa: E731
        height = tf.shape(images)[1]
        rows = _axis(height, self.plan.window, self.plan.halo)
        cols = _axis(tf.shape(images)[2], self.plan.window, self.plan.halo)
        cores = tf.TensorArray(tf.float32, size=rows[0] * cols[0], infer_shape=False)

        def body(crop, core, t, cores):
            # Width first, so that TensorArray.concat (axis 0) can stitch a row.
            enhanced = tf.cast(core(window_fn(crop)), tf.float32)
            return (cores.write(t, tf.transpose(enhanced, [2, 0, 1, 3])),)

        (cores,) = _for_each_tile(images, self.plan.window, self.plan.halo, body, (cores,))

        def stitch_row(i, stitched):
            pieces = tf.TensorArray(tf.float32, size=cols[0], infer_shape=False)
            pieces = tf.while_loop(
                lambda j, _: j < cols[0],
                lambda j, p: (j + 1, p.write(j, cores.read(i * cols[0] + j))),
                (0, pieces))[1]
            # [W, b, core h, c] -> [core h, b, W, c]
            return i + 1, stitched.write(i, tf.transpose(pieces.concat(), [2, 1, 0, 3]))

        stitched = tf.TensorArray(tf.float32, size=rows[0], infer_shape=False)
        stitched = tf.while_loop(lambda i, _: i < rows[0], stitch_row, (0, stitched))[1]
        return tf.transpose(stitched.concat(), [1, 0, 2, 3])


def tiled(model, window_pixels=None):
    """`Tiled(model, window_pixels)`: `model` (functional Keras, or `can.CanInference`)
    as a callable on float images [b, h, w, 3] of any size, in bounded memory."""
    return Tiled(model, window_pixels)
