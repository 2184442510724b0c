"""datasets.images: load_rgb8 on every pixel format a photo collection throws at it, to_uint8,
and the photo file names (IMAGE_EXTENSIONS, natural order)."""
import struct
import warnings
import zlib

import numpy as np
import pytest
from PIL import Image

from datasets.images import (IMAGE_EXTENSIONS, ImageDecodeError, is_image_name, load_rgb8,
                             natural_key, to_uint8)
from tests.fifos import guarded_fifo


def _write_png16(path, array):
    """Hand-written 16-bit PNG (gray (H, W) or RGB (H, W, 3)), independent of Pillow's writer."""
    array = np.asarray(array, dtype=np.uint16)
    color_type = 0 if array.ndim == 2 else 2
    height, width = array.shape[:2]
    raw = b"".join(b"\x00" + array[y].astype(">u2").tobytes() for y in range(height))

    def chunk(kind, data):
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))

    header = struct.pack(">IIBBBBB", width, height, 16, color_type, 0, 0, 0)
    with open(path, "wb") as f:
        f.write(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(raw))
                + chunk(b"IEND", b""))


def test_grayscale_png(tmp_path):
    gray = np.array([[0, 10, 200], [255, 7, 128]], np.uint8)
    Image.fromarray(gray, "L").save(tmp_path / "g.png")
    out = load_rgb8(tmp_path / "g.png")
    assert out.dtype == np.uint8 and out.shape == (2, 3, 3)
    for c in range(3):
        np.testing.assert_array_equal(out[..., c], gray)


def test_rgba_png_drops_alpha(tmp_path):
    rgba = np.array([[[255, 0, 0, 0], [10, 20, 30, 128], [1, 2, 3, 255]]], np.uint8)
    Image.fromarray(rgba, "RGBA").save(tmp_path / "a.png")
    out = load_rgb8(tmp_path / "a.png")
    # Alpha is dropped, not composited: a fully transparent red pixel stays red.
    np.testing.assert_array_equal(out, rgba[..., :3])


def test_la_png(tmp_path):
    la = Image.merge("LA", [Image.fromarray(np.array([[9, 99]], np.uint8)),
                            Image.fromarray(np.array([[0, 255]], np.uint8))])
    la.save(tmp_path / "la.png")
    np.testing.assert_array_equal(load_rgb8(tmp_path / "la.png"),
                                  [[[9, 9, 9], [99, 99, 99]]])


def test_palette_png(tmp_path):
    palette = [0, 0, 0, 255, 0, 0, 0, 128, 255] + [0] * (253 * 3)
    image = Image.fromarray(np.array([[0, 1], [2, 1]], np.uint8), "P")
    image.putpalette(palette)
    image.save(tmp_path / "p.png")
    out = load_rgb8(tmp_path / "p.png")
    np.testing.assert_array_equal(out, [[[0, 0, 0], [255, 0, 0]], [[0, 128, 255], [255, 0, 0]]])


def test_palette_png_with_transparency_keeps_its_colours_without_a_warning(tmp_path):
    palette = [0, 0, 0, 255, 0, 0, 0, 128, 255] + [0] * (253 * 3)
    image = Image.fromarray(np.array([[0, 1], [2, 1]], np.uint8), "P")
    image.putpalette(palette)
    image.save(tmp_path / "t.png", transparency=bytes([0, 128, 255]))  # tRNS: alpha per entry
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # Pillow warns when such a P image goes straight to RGB
        out = load_rgb8(tmp_path / "t.png")
    np.testing.assert_array_equal(out, [[[0, 0, 0], [255, 0, 0]], [[0, 128, 255], [255, 0, 0]]])


def test_one_bit_image_is_black_and_white(tmp_path):
    bits = np.array([[0, 255, 255], [255, 0, 0]], np.uint8)
    Image.fromarray(bits).convert("1").save(tmp_path / "b.png")
    assert Image.open(tmp_path / "b.png").mode == "1"
    out = load_rgb8(tmp_path / "b.png")
    np.testing.assert_array_equal(out, np.repeat(bits[..., None], 3, axis=2))


@pytest.mark.parametrize("name", ["anim.gif", "anim.webp"])
def test_an_animation_gives_its_first_frame(tmp_path, name):
    first = np.zeros((8, 10, 3), np.uint8)
    first[:, :5] = (255, 0, 0)
    frames = [Image.fromarray(first), Image.fromarray(255 - first)]
    options = {"lossless": True} if name.endswith("webp") else {}
    frames[0].save(tmp_path / name, save_all=True, append_images=frames[1:], duration=100,
                   loop=0, **options)
    assert getattr(Image.open(tmp_path / name), "n_frames", 1) == 2
    np.testing.assert_array_equal(load_rgb8(tmp_path / name), first)


def test_tiff_and_webp(tmp_path):
    rgb = np.random.default_rng(1).integers(0, 256, (9, 7, 3), np.uint8)
    Image.fromarray(rgb).save(tmp_path / "p.tif")
    Image.fromarray(rgb).save(tmp_path / "p.webp", lossless=True)
    Image.fromarray(np.full((4, 5), 32896, np.uint16)).save(tmp_path / "g16.tif")
    np.testing.assert_array_equal(load_rgb8(tmp_path / "p.tif"), rgb)
    np.testing.assert_array_equal(load_rgb8(tmp_path / "p.webp"), rgb)
    np.testing.assert_array_equal(load_rgb8(tmp_path / "g16.tif"), np.full((4, 5, 3), 128))


def test_16bit_gray_png_is_scaled_not_clipped(tmp_path):
    values = np.array([[0, 257, 32896, 65535, 1000]], np.uint16)
    _write_png16(tmp_path / "g16.png", values)
    out = load_rgb8(tmp_path / "g16.png")
    # v * 255 / 65535 rounded: 257 -> 1, 32896 -> 128, 65535 -> 255, 1000 -> 3.89 -> 4.
    expected = np.array([[0, 1, 128, 255, 4]], np.uint8)
    for c in range(3):
        np.testing.assert_array_equal(out[..., c], expected)


def test_16bit_rgb_png_is_scaled(tmp_path):
    values = np.array([[[65535, 32896, 0], [257, 514, 65280]]], np.uint16)
    _write_png16(tmp_path / "rgb16.png", values)
    out = load_rgb8(tmp_path / "rgb16.png")
    np.testing.assert_array_equal(out, [[[255, 128, 0], [1, 2, 255]]])


def test_cmyk_jpeg(tmp_path):
    cmyk = np.zeros((16, 16, 4), np.uint8)
    cmyk[:8] = (0, 255, 255, 0)  # red
    cmyk[8:] = (0, 0, 0, 0)  # white
    Image.fromarray(cmyk, "CMYK").save(tmp_path / "c.jpg", quality=100)
    out = load_rgb8(tmp_path / "c.jpg")
    assert out.shape == (16, 16, 3)
    np.testing.assert_allclose(out[2:6, 2:14].mean(axis=(0, 1)), [255, 0, 0], atol=12)
    np.testing.assert_allclose(out[10:14, 2:14].mean(axis=(0, 1)), [255, 255, 255], atol=12)


def test_exif_orientation_is_applied(tmp_path):
    pixels = np.zeros((20, 40, 3), np.uint8)
    pixels[:, :20] = 255  # white left half, black right half
    image = Image.fromarray(pixels)
    exif = image.getexif()
    exif[0x0112] = 6  # stored rotated: display needs 90 degrees clockwise
    image.save(tmp_path / "o.jpg", exif=exif, quality=100)
    out = load_rgb8(tmp_path / "o.jpg")
    assert out.shape == (40, 20, 3)  # upright: portrait
    assert out[:15].mean() > 200 and out[25:].mean() < 50  # white on top after rotating


def test_draft_min_size_keeps_at_least_the_requested_size(tmp_path):
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 255, (400, 600, 3), np.uint8)).save(tmp_path / "big.jpg")
    full = load_rgb8(tmp_path / "big.jpg")
    small = load_rgb8(tmp_path / "big.jpg", min_size=(90, 100))
    assert full.shape == (400, 600, 3)
    assert small.shape == (100, 150, 3)  # 1/4 scale: the smallest with h >= 90 and w >= 100
    assert load_rgb8(tmp_path / "big.jpg", min_size=(300, 10)).shape == (400, 600, 3)


def test_truncated_jpeg_raises_naming_the_path(tmp_path):
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 255, (64, 64, 3), np.uint8)).save(tmp_path / "ok.jpg")
    data = (tmp_path / "ok.jpg").read_bytes()
    bad = tmp_path / "truncated.jpg"
    bad.write_bytes(data[: len(data) // 2])
    with pytest.raises(ImageDecodeError, match="truncated.jpg") as info:
        load_rgb8(bad)
    assert info.value.path == str(bad) and info.value.reason
    assert isinstance(info.value, ValueError)


@pytest.mark.parametrize("content", [b"", b"this is not an image", b"\xff\xd8\xff\xe0garbage"])
def test_non_image_raises(tmp_path, content):
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(content)
    with pytest.raises(ImageDecodeError, match="bad.jpg"):
        load_rgb8(bad)


def test_missing_file_raises_decode_error(tmp_path):
    with pytest.raises(ImageDecodeError, match="nothere.jpg"):
        load_rgb8(tmp_path / "nothere.jpg")


def test_to_uint8_rounds_and_clips():
    values = np.array([-0.5, 0.0, 0.4 / 255, 0.6 / 255, 127.4 / 255, 0.5, 1.0, 1.7, np.nan])
    np.testing.assert_array_equal(
        to_uint8(values), [0, 0, 0, 1, 127, 128, 255, 255, 0]
    )
    assert to_uint8(values).dtype == np.uint8
    pixels = np.arange(256, dtype=np.uint8)
    np.testing.assert_array_equal(to_uint8(pixels.astype(np.float32) / 255), pixels)
    assert to_uint8(pixels) is pixels


def test_to_uint8_input_precision_rounds_the_float32_product():
    # 255 x is 0.50000003, but 0.5 in float32 arithmetic, which rounds to even.
    x = np.float32(0.5 / 255)
    assert float(x) * 255 > 0.5 and np.float32(x) * np.float32(255) == 0.5
    assert to_uint8(np.array([x]))[0] == 1
    assert to_uint8(np.array([x]), input_precision=True)[0] == 0
    values = np.array([0.2, 0.6 / 255, 1.7, np.nan])  # float64 input: the same either way
    np.testing.assert_array_equal(to_uint8(values, input_precision=True), to_uint8(values))


def test_image_names_and_natural_order():
    assert {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp"} == set(
        IMAGE_EXTENSIONS)
    assert is_image_name("a.JPG") and is_image_name("b.TiFF") and is_image_name("c.gif")
    assert not is_image_name(".hidden.jpg") and not is_image_name("notes.txt")
    names = ["10.jpg", "b.png", "2.jpg", "a10.png", "a9.png", "1.jpg"]
    assert sorted(names, key=natural_key) == ["1.jpg", "2.jpg", "10.jpg", "a9.png", "a10.png",
                                              "b.png"]


def test_a_fifo_is_refused_by_name_without_being_opened(tmp_path):
    # Issue 15: opening a FIFO blocks until someone writes to it.
    path = tmp_path / "photo.jpg"
    with guarded_fifo(path) as fifo:
        with pytest.raises(ImageDecodeError, match="not a regular file") as error:
            load_rgb8(path)
    assert error.value.path == str(path) and not fifo["opened"]
