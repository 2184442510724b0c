"""EnhanceGAN at inference: one photo of any size in, the enhanced photo and every predicted
parameter out (`PhotoEnhancer`), as the authors' `run_single.lua` does.

Deng, Loy & Tang (ACM MM 2018) section 4.1 ("We set the image input size to be 224 x 224"), and
issue 16 ("parameters predicted at 224 x 224 apply to the full-size photo"):

1. The generator's view (`network_view`): the whole photo resized to input_size x input_size
   (224), its aspect ratio NOT kept, as `run_single.lua` does (`image.scale(img, 224, 224)`).
   Squashing rather than cropping or padding is what the crop head needs: its box is in
   normalised coordinates of the view, so the view must show the whole photo edge to edge for
   the box to map onto the photo's pixels (`operators.crop_box`); padding would put borders in
   the view that the photo does not have, and a centre crop would hide the margins the crop
   head is there to judge. The resize is bilinear with antialiasing (ours: Torch's bilinear
   `image.scale` has none, so a 24 MP photo would reach the generator as aliased noise; with
   the antialias filter a downscale averages every pixel, an upscale is plain bilinear), then
   clipped to [0, 1]. `antialias=False` gives Torch's plain bilinear.
2. The generator (frozen backbone, heads, top-K or softmax pooling, ranges) predicts the
   parameters from the view, always at input_size x input_size whatever the photo's size, so
   that the top-K pooling sees the 7 x 7 map it was trained on.
3. `operators.enhance_photo` applies them to the photo at its own size: the colour operators
   (or the deep filters) per pixel, then the crop box of `run_single.lua`, in the photo's
   pixels.

Tiny photos: a photo of 1 x 1 or 1 x N pixels is valid: its view is the photo stretched to
224 x 224 (a flat or striped image), the box keeps at least one pixel per axis (a 1-pixel axis
is never cut), and the colour operators are per pixel. A photo with no pixels (0 x N) is an
error naming its shape. Memory: the colour operators are per pixel, so a photo costs a few
copies of itself in float32 (about 100 bytes a pixel at the peak of the Lab round trip) and the
generator always runs at 224 x 224.
"""
import numpy as np
import tensorflow as tf

from enhancers.enhancegan import operators

__all__ = ["PhotoEnhancer", "network_view", "parameter_record"]

INPUT_SIZE = operators.TRAINING_SIZE  # 224, the paper's and the release's
_MAP_SUFFIXES = ("_scores", "_attention")


def network_view(photos, size=INPUT_SIZE, antialias=True):
    """The networks' view of photos (module docstring, 1): (H, W, 3) or (batch, H, W, 3) RGB in
    [0, 1] -> the same rank at size x size, aspect ratio not kept, bilinear (antialiased by
    default), clipped to [0, 1]. Used for the generator here and for the critic's scores in
    `tools.evaluate_enhancegan`, so that both see a photo the same way."""
    photos = tf.convert_to_tensor(photos, tf.float32)
    resized = tf.image.resize(photos, [size, size], method="bilinear", antialias=antialias)
    return tf.clip_by_value(resized, 0.0, 1.0)


class PhotoEnhancer(tf.Module):
    """EnhanceGAN's photo enhancer (module docstring): `enhancer(photo)` -> a dict.

    Args:
      generator: an `EnhanceGANGenerator` (or any callable from (1, s, s, 3) RGB in [0, 1] to
        its dict of parameters and "<head>_scores" / "<head>_attention" maps).
      filter_networks: the n filter networks of the deep-filtering head (`filters.
        build_filter_network`, trained), required when the generator has a "filters" head.
      input_size: the side of the generator's view (224).
      antialias: the view's resize filter (module docstring, 1).

    Calling it with a photo, (H, W, 3) RGB in [0, 1] of any size (float; uint8 is divided by
    255), returns:
      "image": float32 (h, w, 3) in [0, 1], the enhanced photo at full resolution, cut to the
        predicted box when the generator has a crop head (then (h, w) is the box's size);
      "box": int32 (4,) (top, left, height, width) in the photo's pixels (the whole photo
        without a crop head);
      the predicted parameters, unbatched: "alpha", "beta", "a", "b", "p", "q" scalars (colour
        head); "crop_scale", "crop_translation" (2,), rows first (crop head); "filter_weights"
        (n,) (filters head);
      "<head>_attention": float32 (h', w') per head, each position's pooling weight on the
        generator's feature map (7 x 7 at 224), summing to 1 (the paper's Fig. 5).
    Eagerly, a photo of the wrong shape raises ValueError; inside a tf.function (the export) it
    is an InvalidArgumentError with the same message.
    """

    def __init__(self, generator, filter_networks=None, input_size=INPUT_SIZE, antialias=True,
                 name="enhancegan_photo_enhancer"):
        super().__init__(name=name)
        heads = tuple(getattr(generator, "head_names", ()))
        if "filters" in heads and not filter_networks:
            raise ValueError("the generator has a filters head: pass its filter_networks")
        if filter_networks and getattr(generator, "num_filters", len(filter_networks)) != len(
                filter_networks):
            raise ValueError(f"{len(filter_networks)} filter networks for a generator of "
                             f"{generator.num_filters} filter weights")
        if int(input_size) < 1:
            raise ValueError(f"input_size must be positive, got {input_size}")
        self.generator = generator
        self.filter_networks = list(filter_networks) if filter_networks else None
        self.input_size = int(input_size)
        self.antialias = bool(antialias)
        if not getattr(generator, "built", True):  # variables made eagerly, not while tracing
            generator(tf.zeros([1, self.input_size, self.input_size, 3]), training=False)
        self._enhance = tf.function(
            self._enhance_photo, input_signature=[tf.TensorSpec([None, None, 3], tf.float32)])

    @property
    def models(self):
        """The Keras models whose variables the enhancer uses: the generator, then the filter
        networks (what an export must track)."""
        return [self.generator] + list(self.filter_networks or [])

    def _enhance_photo(self, photo):
        shape = tf.shape(photo)
        with tf.control_dependencies([tf.debugging.assert_positive(
                shape[:2], message="EnhanceGAN: the photo has no pixels (height or width 0)")]):
            photo = tf.identity(photo)
        view = network_view(photo[tf.newaxis], self.input_size, self.antialias)
        predicted = self.generator(view, training=False)
        parameters = {name: tf.cast(value, tf.float32) for name, value in predicted.items()
                      if not name.endswith(_MAP_SUFFIXES)}
        image, box = operators.enhance_photo(photo, parameters, self.filter_networks)
        outputs = {"image": tf.clip_by_value(image, 0.0, 1.0), "box": tf.cast(box, tf.int32)}
        for name, value in parameters.items():
            outputs[name] = value[0]
        for name, value in predicted.items():
            if name.endswith("_attention"):
                outputs[name] = tf.cast(value[0], tf.float32)
        return outputs

    def __call__(self, photo):
        if tf.executing_eagerly():
            photo = _checked_photo(photo)
        return self._enhance(tf.convert_to_tensor(photo, tf.float32))


def _checked_photo(photo):
    """An eager photo as float32 (H, W, 3), or ValueError naming what is wrong with it."""
    if isinstance(photo, tf.Tensor):
        photo = photo.numpy()
    photo = np.asarray(photo)
    if photo.ndim != 3 or photo.shape[-1] != 3:
        raise ValueError(f"EnhanceGAN enhances one (H, W, 3) RGB photo, got shape {photo.shape}")
    if photo.shape[0] == 0 or photo.shape[1] == 0:
        raise ValueError(f"EnhanceGAN: the photo has no pixels (shape {photo.shape})")
    if photo.dtype == np.uint8:
        return photo.astype(np.float32) / np.float32(255.0)
    if not np.issubdtype(photo.dtype, np.floating):
        raise ValueError(f"expected a float photo in [0, 1] or uint8, got dtype {photo.dtype}")
    return photo.astype(np.float32, copy=False)


def _numbers(value):
    value = np.asarray(value, np.float64)
    return float(value) if value.ndim == 0 else value.tolist()


def parameter_record(outputs):
    """The parameters of one enhanced photo as plain Python (for JSON), from a `PhotoEnhancer`
    output (or one photo's outputs of the EnhanceGAN export): {"box": {"top", "left",
    "height", "width"} in the photo's pixels, "color": {alpha, beta, a, b, p, q} or None,
    "crop": {"scale": [s1, s2], "translation": [t1, t2]} (rows first) or None,
    "filter_weights": [w_1 ... w_n] or None}. Attention maps are left out."""
    top, left, height, width = (int(v) for v in np.asarray(outputs["box"]).reshape(4))
    record = {"box": {"top": top, "left": left, "height": height, "width": width}}
    record["color"] = ({name: _numbers(outputs[name]) for name in operators.COLOR_PARAMETERS}
                       if all(name in outputs for name in operators.COLOR_PARAMETERS) else None)
    record["crop"] = ({"scale": _numbers(outputs["crop_scale"]),
                       "translation": _numbers(outputs["crop_translation"])}
                      if "crop_scale" in outputs else None)
    record["filter_weights"] = (_numbers(outputs["filter_weights"])
                                if "filter_weights" in outputs else None)
    return record
