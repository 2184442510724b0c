"""enhancers.enhancegan.PhotoEnhancer: the generator's 224 x 224 view, the parameters applied to
the full-size photo, the box, any photo size; checked against Pillow's resize, the NumPy
operators of the demo set and the crop formula worked by hand."""
import json
import math

import keras
import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from datasets import enhancegan_demo
from enhancers import enhancegan
from enhancers.enhancegan import operators


def tiny_generator(heads=("color", "crop"), seed=0, channels=8):
    keras.utils.set_random_seed(seed)
    return enhancegan.EnhanceGANGenerator(enhancegan.build_tiny_backbone(channels), heads=heads)


def photo(shape, seed=0):
    """A photo-like image: smooth colour gradients and a little noise, float32 in [0, 1]."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[:shape[0], :shape[1]]
    base = 0.5 + 0.3 * np.sin(x[..., None] / 7.0 + y[..., None] / 5.0 + np.arange(3) * 2.0)
    return np.clip(base + 0.03 * rng.standard_normal(shape + (3,)), 0, 1).astype(np.float32)


def pillow_view(image, size=224):
    """The whole photo squashed to size x size by Pillow's bilinear (antialiased) resize."""
    return np.stack([np.asarray(Image.fromarray(image[..., c], mode="F").resize(
        (size, size), Image.BILINEAR)) for c in range(3)], axis=-1).clip(0, 1)


def torch_round(x):
    return math.floor(abs(x) + 0.5) * (1 if x >= 0 else -1)


def box_by_hand(height, width, scale, translation):
    """run_single.lua's box: rows = round(H s1), top = floor((H - rows) / 2) + round(t1 rows / 2),
    clamped into the photo; the same for the columns."""
    box = []
    for size, s, t in ((height, scale[0], translation[0]), (width, scale[1], translation[1])):
        extent = min(max(torch_round(size * s), 1), size)
        start = (size - extent) // 2 + torch_round(t * extent / 2)
        box.append((min(max(start, 0), size - extent), extent))
    return np.array([box[0][0], box[1][0], box[0][1], box[1][1]])


@pytest.fixture(scope="module")
def generator():
    return tiny_generator()


def test_the_generator_sees_the_whole_photo_at_224_and_its_parameters_apply_at_full_size(
        generator):
    image = photo((90, 130))
    enhancer = enhancegan.PhotoEnhancer(generator)
    out = enhancer(image)
    expected = generator(pillow_view(image)[None])
    for name in operators.COLOR_PARAMETERS + ("crop_scale", "crop_translation"):
        np.testing.assert_allclose(out[name].numpy(), expected[name].numpy()[0], atol=1e-4)
    for head in ("color", "crop"):
        attention = out[f"{head}_attention"].numpy()
        assert attention.shape == (7, 7)
        assert attention.sum() == pytest.approx(1.0, abs=1e-5)
        np.testing.assert_allclose(attention, expected[f"{head}_attention"][0], atol=1e-4)
    assert sorted(out) == sorted(["image", "box", *operators.COLOR_PARAMETERS, "crop_scale",
                                  "crop_translation", "color_attention", "crop_attention"])

    scale, translation = out["crop_scale"].numpy(), out["crop_translation"].numpy()
    box = box_by_hand(90, 130, scale, translation)
    assert out["box"].dtype == tf.int32
    np.testing.assert_array_equal(out["box"].numpy(), box)
    assert box[2] < 90 and box[3] < 130  # a real crop
    colour = {name: float(out[name]) for name in ("alpha", "beta")}
    tone = {name: float(out[name]) for name in ("a", "b", "p", "q")}
    restored = enhancegan_demo.restore_colour(image, tone=tone, colour=colour)
    top, left, height, width = box
    result = out["image"].numpy()
    assert result.shape == (height, width, 3)
    np.testing.assert_allclose(result, restored[top:top + height, left:left + width], atol=3e-3)


@pytest.mark.parametrize("shape", [(1, 1), (1, 9), (9, 1), (2, 3), (300, 41)])
def test_any_photo_size_gives_a_box_inside_it_and_an_image_of_the_box(generator, shape):
    enhancer = enhancegan.PhotoEnhancer(generator)
    out = enhancer(photo(shape, seed=1))
    top, left, height, width = out["box"].numpy()
    assert 0 <= top and top + height <= shape[0] and height >= 1
    assert 0 <= left and left + width <= shape[1] and width >= 1
    if shape[0] == 1:
        assert (top, height) == (0, 1)  # a one-pixel axis is never cut
    np.testing.assert_array_equal(
        out["box"].numpy(), box_by_hand(*shape, out["crop_scale"].numpy(),
                                        out["crop_translation"].numpy()))
    image = out["image"].numpy()
    assert image.shape == (height, width, 3) and np.all(np.isfinite(image))
    assert image.min() >= 0 and image.max() <= 1


def test_a_big_photo_is_enhanced_at_its_own_size(generator):
    enhancer = enhancegan.PhotoEnhancer(generator)
    image = photo((1200, 1700), seed=2)
    out = enhancer(image)
    _, _, height, width = out["box"].numpy()
    assert out["image"].shape == (height, width, 3) and height > 300 and width > 500


def test_without_a_crop_head_the_box_is_the_whole_photo():
    enhancer = enhancegan.PhotoEnhancer(tiny_generator(heads=("color",), seed=3))
    image = photo((33, 47), seed=3)
    out = enhancer(image)
    np.testing.assert_array_equal(out["box"].numpy(), [0, 0, 33, 47])
    assert "crop_scale" not in out and "crop_attention" not in out
    tone = {name: float(out[name]) for name in ("a", "b", "p", "q")}
    colour = {name: float(out[name]) for name in ("alpha", "beta")}
    np.testing.assert_allclose(out["image"].numpy(),
                               enhancegan_demo.restore_colour(image, tone, colour), atol=3e-3)


def test_deep_filtering_weights_and_networks():
    generator = tiny_generator(heads=("filters", "crop"), seed=4)
    with pytest.raises(ValueError, match="filter_networks"):
        enhancegan.PhotoEnhancer(generator)
    with pytest.raises(ValueError, match="2 filter networks"):
        enhancegan.PhotoEnhancer(generator, [enhancegan.build_filter_network(n)
                                             for n in ("f1", "f2")])
    enhancer = enhancegan.PhotoEnhancer(
        generator, [lambda x, c=c: enhancegan.photo_filter(x, c)
                    for c in enhancegan.FILTER_NAMES])
    image = photo((40, 52), seed=4)
    out = enhancer(image)
    weights = out["filter_weights"].numpy()
    assert weights.shape == (3,) and weights.sum() == pytest.approx(1.0, abs=1e-5)
    expected = sum(w * enhancegan.photo_filter(image, c).numpy()
                   for w, c in zip(weights, enhancegan.FILTER_NAMES))
    top, left, height, width = out["box"].numpy()
    np.testing.assert_allclose(out["image"].numpy(),
                               np.clip(expected, 0, 1)[top:top + height, left:left + width],
                               atol=1e-5)


def test_uint8_photos_and_bad_shapes(generator):
    enhancer = enhancegan.PhotoEnhancer(generator)
    pixels = (photo((20, 30), seed=5) * 255).round().astype(np.uint8)
    np.testing.assert_allclose(enhancer(pixels)["image"].numpy(),
                               enhancer(pixels / np.float32(255))["image"].numpy(), atol=1e-6)
    for bad in (np.zeros((0, 5, 3), np.float32), np.zeros((5, 0, 3), np.float32)):
        with pytest.raises(ValueError, match="no pixels"):
            enhancer(bad)
    for bad in (np.zeros((5, 5), np.float32), np.zeros((1, 5, 5, 3), np.float32),
                np.zeros((5, 5, 4), np.float32)):
        with pytest.raises(ValueError, match=r"\(H, W, 3\)"):
            enhancer(bad)
    graph = tf.function(enhancer, input_signature=[tf.TensorSpec([None, None, 3], tf.float32)])
    with pytest.raises(tf.errors.InvalidArgumentError, match="no pixels"):
        graph(tf.zeros([0, 4, 3]))


def test_parameter_record_is_plain_strict_json(generator):
    out = enhancegan.PhotoEnhancer(generator)(photo((30, 40), seed=6))
    record = enhancegan.parameter_record(out)
    text = json.dumps(record, allow_nan=False)
    assert json.loads(text) == record
    top, left, height, width = out["box"].numpy().tolist()
    assert record["box"] == {"top": top, "left": left, "height": height, "width": width}
    assert record["color"] == {name: pytest.approx(float(out[name]))
                               for name in operators.COLOR_PARAMETERS}
    assert record["crop"]["scale"] == pytest.approx(out["crop_scale"].numpy().tolist())
    assert record["filter_weights"] is None


def test_network_view_is_pillows_bilinear_resize():
    image = photo((301, 170), seed=7)
    np.testing.assert_allclose(enhancegan.network_view(image).numpy(), pillow_view(image),
                               atol=1e-4)
    assert enhancegan.network_view(image[None], size=32).shape == (1, 32, 32, 3)
