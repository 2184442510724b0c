"""The held-out real-photo check (tools.heldout, datasets.heldout): its photos, its figures
against independent computations, and its rules on enhancers that must pass or fail them."""
import numpy as np
from scipy import ndimage
import pytest

from datasets import enhancegan_demo, wespe_demo
from datasets import heldout as heldout_photos
from datasets.images import load_rgb8
from tools import heldout, photo_checks


def srgb_to_lab(rgb):
    """Textbook sRGB (D65) -> CIELab, written out here independently of scikit-image."""
    rgb = np.asarray(rgb, np.float64)
    linear = np.where(rgb <= 0.04045, rgb / 12.92, ((rgb + 0.055) / 1.055) ** 2.4)
    m = np.array([[0.4124564, 0.3575761, 0.1804375],
                  [0.2126729, 0.7151522, 0.0721750],
                  [0.0193339, 0.1191920, 0.9503041]])
    xyz = linear @ m.T / np.array([0.95047, 1.0, 1.08883])
    f = np.where(xyz > (6 / 29) ** 3, np.cbrt(xyz), xyz / (3 * (6 / 29) ** 2) + 4 / 29)
    return np.stack([116 * f[..., 1] - 16, 500 * (f[..., 0] - f[..., 1]),
                     200 * (f[..., 1] - f[..., 2])], axis=-1)


def crops(size=64):
    """Centre crops of the held-out photos (the check's cheap form)."""
    out = {}
    for name, photo in heldout_photos.load_photos().items():
        top, left = (photo.shape[0] - size) // 2, (photo.shape[1] - size) // 2
        out[name] = photo[top:top + size, left:left + size]
    return out


def test_the_photos_are_real_full_size_and_in_no_demo_set():
    from datasets import can_demo, demo

    photos = heldout_photos.load_photos()
    assert {name: p.shape for name, p in photos.items()} == {
        "china": (427, 640, 3), "flower": (427, 640, 3), "hopper": (600, 512, 3)}
    demo_photos = [p for p in demo.load_colour_photos(wespe_demo.TRAIN_PHOTOS
                                                      + wespe_demo.TEST_PHOTOS
                                                      + can_demo.TRAIN_PHOTOS)]
    for photo in photos.values():
        assert photo.dtype == np.uint8 and photo.std() > 30  # a photo, not a flat image
        assert all(p.shape != photo.shape or not np.array_equal(p, photo) for p in demo_photos)


def test_degradations_are_the_demos_own():
    photo = crops(32)["flower"]
    x = photo.astype(np.float32) / 255
    assert np.array_equal(heldout_photos.degrade(photo, "piea"),
                          np.rint(x * np.float32(0.5) * 255).astype(np.uint8))
    expected = wespe_demo.cheap_camera(x, np.random.default_rng([0, 14]))
    wespe = heldout_photos.degrade(photo, "wespe") / 255.0
    assert np.abs(wespe - expected).max() <= 0.5 / 255 + 1e-6
    # The EnhanceGAN demo's mid-range degradation, and the operators at its own parameters
    # undo it (up to 8-bit rounding and gamut clipping).
    degraded = heldout_photos.degrade(photo, "enhancegan")
    expected = enhancegan_demo.degrade_colour(x, **enhancegan_demo.HELDOUT_DEGRADATION)
    assert np.abs(degraded / 255.0 - expected).max() <= 0.5 / 255 + 1e-6
    restored = enhancegan_demo.restore_colour(degraded, **enhancegan_demo.HELDOUT_DEGRADATION)
    assert np.abs(restored - x).mean() < 0.25 * np.abs(degraded / 255.0 - x).mean()
    with pytest.raises(ValueError, match="unknown degradation"):
        heldout_photos.degrade(photo, "jpeg")


def test_colour_figures_match_a_textbook_lab_conversion():
    rng = np.random.default_rng(0)
    a, b = rng.random((8, 9, 3)), rng.random((8, 9, 3))
    lab_a, lab_b = srgb_to_lab(a), srgb_to_lab(b)
    # c_b = gain * c_a + shift, c = (a*, b*) / (L* + 16), by NumPy's least squares.
    ab_a = (lab_a[..., 1:] / (lab_a[..., :1] + 16)).reshape(-1, 2)
    ab_b = (lab_b[..., 1:] / (lab_b[..., :1] + 16)).reshape(-1, 2)
    design = np.zeros((ab_a.size, 3))
    design[:, 0] = ab_a.reshape(-1)
    design[0::2, 1], design[1::2, 2] = 1, 1
    (gain, *shift), *_ = np.linalg.lstsq(design, ab_b.reshape(-1), rcond=None)
    cast, fitted_gain = photo_checks.colour_cast(a, b)
    assert cast == pytest.approx(np.linalg.norm(shift) * (lab_a[..., 0] + 16).mean(), rel=1e-3)
    assert fitted_gain == pytest.approx(gain, rel=1e-3)
    delta = np.sqrt(((lab_a - lab_b) ** 2).sum(-1)).mean()
    assert photo_checks.mean_delta_e(a, b) == pytest.approx(delta, rel=1e-3)
    # A pure brightness change has no cast (grey stays grey); a saturation change is a gain,
    # not a cast; a warm tint is a cast. On whole photos: within one hue (a crop of the flower
    # alone) more saturation and a cast towards that hue are the same change.
    grey = np.full((4, 4, 3), 0.5)
    assert (photo_checks.colour_cast(grey, grey * 0.5)[0] < 0.01
            < photo_checks.mean_delta_e(grey, grey * 0.5))
    for photo in heldout_photos.load_photos().values():
        photo = photo / 255.0
        luma = photo.mean(axis=-1, keepdims=True)
        cast, gain = photo_checks.colour_cast(photo, np.clip(luma + 1.2 * (photo - luma), 0, 1))
        assert cast < 2.0 and gain > 1.05
        cast, gain = photo_checks.colour_cast(photo, np.clip(photo * [1.0, 0.95, 0.8], 0, 1))
        assert cast > photo_checks.LIMITS["colour_cast"]
        # A local tone curve in linear light (shadows lifted, each pixel its own factor).
        linear = photo ** 2.2
        lifted = (linear * (0.25 + linear.mean(axis=-1, keepdims=True)) ** -0.5) ** (1 / 2.2)
        assert photo_checks.colour_cast(photo, np.clip(lifted, 0, 1))[0] < 1.5


def test_clipping_border_and_detail_figures_by_hand():
    image = np.full((50, 50, 3), 128, np.uint8)
    image[0, :3, 0] = 255
    image[1, :2, 2] = 0
    assert photo_checks.clipped_fraction(image) == pytest.approx(5 / (50 * 50 * 3))
    # newly_clipped: only values driven onto 0 or 255 from more than 2 levels inside count.
    before = np.array([[[0, 1, 2], [3, 40, 128], [252, 253, 255], [200, 2, 3]]], np.uint8)
    after = np.array([[[0, 0, 0], [0, 0, 255], [255, 255, 255], [255, 255, 0]]], np.uint8)
    # counted: 3 -> 0, 40 -> 0, 128 -> 255, 252 -> 255, 200 -> 255, 2 -> 255, 3 -> 0
    assert photo_checks.CLIP_MARGIN == 2
    assert photo_checks.newly_clipped(before, after) == pytest.approx(7 / 12)
    assert photo_checks.newly_clipped(before, before) == 0.0
    assert photo_checks.newly_clipped(before / 255.0, after / 255.0) == pytest.approx(7 / 12)
    before = np.full((50, 50, 3), 0.5)
    after = before.copy()
    width = photo_checks.border_width(before.shape)
    assert width == 2
    after[:width], after[-width:], after[:, :width], after[:, -width:] = 0.25, 0.25, 0.25, 0.25
    assert photo_checks.border_ratio(before, after) == pytest.approx(0.5, abs=1e-4)
    assert photo_checks.border_ratio(before, before * 0.8) == pytest.approx(1.0, abs=1e-4)
    y, x = np.mgrid[0:50, 0:50] / 50.0
    smooth = np.repeat((0.3 + 0.2 * np.sin(6 * x) * np.cos(4 * y))[..., None], 3, axis=2)
    assert photo_checks.detail_ratio(smooth, smooth) == pytest.approx(1.0)
    grid = smooth.copy()
    grid[::4, ::4] += 0.05  # a faint dot grid, the texture of the bug report
    assert photo_checks.detail_ratio(smooth, grid) > 2 * photo_checks.LIMITS["detail_ratio"]
    assert photo_checks.detail_ratio(smooth, 0.5 * smooth) == pytest.approx(0.5)


def test_detail_kept_follows_the_originals_detail_and_ignores_noise():
    """detail_found is a projection on the original's fine detail: a contrast factor comes out
    as itself, a pattern orthogonal to the original's (a cosine of another frequency) adds
    nothing; so a perfect denoiser keeps 1 and a blur does not."""
    n = 128
    x = np.arange(n)[None, :] * np.ones((n, 1))
    # Cosines of the DCT-II basis: with mirrored borders a filter maps each to a multiple of
    # itself, and two of them are orthogonal.
    original = 0.5 + 0.2 * np.cos(np.pi * 8 * (x + 0.5) / n)
    other = 0.1 * np.cos(np.pi * 19 * (x + 0.5) / n)
    grey = lambda luma: np.repeat(luma[..., None], 3, axis=2)
    assert heldout.detail_found(grey(original), grey(original)) == pytest.approx(1.0)
    assert heldout.detail_found(grey(0.3 + 0.5 * (original - 0.5)), grey(original)) == \
        pytest.approx(0.5, rel=1e-4)
    assert heldout.detail_found(grey(original + other), grey(original)) == \
        pytest.approx(1.0, abs=1e-3)
    assert heldout.detail_kept(grey(0.5 + 0.5 * (original - 0.5) + other),
                               grey(0.5 + 0.25 * (original - 0.5)), grey(original)) == \
        pytest.approx(0.5, abs=1e-3)
    # On a real photo: the cheap camera's photo without its noise (what a perfect denoiser
    # returns) keeps the detail of the noisy one; blurred further (sigma 3) it does not.
    photo = heldout_photos.load_photo("hopper")[100:356, 128:384]
    noisy = heldout_photos.degrade(photo, "wespe")
    denoised = wespe_demo.cheap_camera(photo)
    assert heldout.detail_kept(noisy, denoised, photo) == pytest.approx(1.0, abs=0.1)
    blurred = ndimage.gaussian_filter(denoised, sigma=(3, 3, 0), mode="reflect")
    assert heldout.detail_kept(noisy, blurred, photo) < 0.5 * heldout.DEGRADED_LIMITS[
        "detail_kept"]


def test_an_oracle_passes_and_harmful_enhancers_fail():
    photos = crops(48)
    degraded = {heldout_photos.degrade(p, "wespe").tobytes(): p for p in photos.values()}

    def oracle(image):  # knows the original of every degraded input; leaves clean ones alone
        key = np.rint(image * 255).astype(np.uint8).tobytes()
        return degraded.get(key, np.rint(image * 255).astype(np.uint8)) / 255.0

    assert heldout.failures(heldout.check_enhancer("oracle", oracle, photos, "wespe")) == []
    identity = heldout.failures(heldout.check_enhancer("identity", lambda x: x, photos, "wespe"))
    assert len(identity) == 2 * len(photos) and all("did not rise" in f for f in identity)

    def harmful(image):  # the defects of the bug report: orange cast and a dark frame
        out = image * np.array([1.1, 1.0, 0.7])
        out[:3], out[-3:], out[:, :3], out[:, -3:] = 0.0, 0.0, 0.0, 0.0
        return np.clip(out, 0, 1)

    found = heldout.failures(heldout.check_enhancer("harmful", harmful, photos, "wespe"))
    assert any("colour cast" in f for f in found) and any("dark frame" in f for f in found)

    def blowing_out(image):  # +1 EV on a photo that did not need it: highlights blown
        return np.clip(2.0 * image, 0, 1)

    found = heldout.failures(heldout.check_enhancer("+1 EV", blowing_out, photos, "wespe"))
    assert any("(clean): clipped values" in f for f in found), found

    def blurring_oracle(image):  # the right colours, but the detail blurred away with the noise
        return ndimage.gaussian_filter(oracle(image), sigma=(3, 3, 0), mode="reflect")

    found = heldout.failures(heldout.check_enhancer("blur", blurring_oracle, photos, "wespe"))
    assert any("detail smoothed away" in f for f in found), found


def test_an_enhancer_that_crops_is_judged_within_its_box():
    """An enhancer that returns (image, box) or {"image", "box"} (EnhanceGAN) is compared with
    the input and the original cut to its box: a crop alone neither passes nor fails a rule."""
    photos = crops(48)
    degraded = {heldout_photos.degrade(p, "wespe").tobytes(): p for p in photos.values()}
    box = (6, 4, 36, 40)  # top, left, height, width

    def cut(image):
        top, left, height, width = box
        return image[top:top + height, left:left + width]

    def oracle(image):  # crops, and restores the degraded inputs it knows
        pixels = np.rint(image * 255).astype(np.uint8)
        return cut(degraded.get(pixels.tobytes(), pixels)) / 255.0, box

    results = heldout.check_enhancer("crop oracle", oracle, photos, "wespe")
    assert heldout.failures(results) == []
    for photo_name, figures in results["photos"].items():
        assert figures["clean"]["box"] == figures["degraded"]["box"] == list(box)
        assert figures["clean"]["psnr_vs_input"] is None  # unchanged within the box
        assert figures["clean"]["clipped_input"] == photo_checks.clipped_fraction(
            cut(photos[photo_name]))
        original, bad = photos[photo_name], heldout_photos.degrade(photos[photo_name], "wespe")
        mse = np.mean((cut(bad) / 255.0 - cut(original) / 255.0) ** 2)
        assert figures["degraded"]["psnr_input"] == pytest.approx(10 * np.log10(1 / mse))

    # Cropping alone restores nothing: PSNR and SSIM within the box do not rise.
    found = heldout.failures(heldout.check_enhancer(
        "crop only", lambda x: {"image": cut(x), "box": np.array(box)}, photos, "wespe"))
    assert len(found) == 2 * len(photos) and all("did not rise" in f for f in found)

    def harmful(image):  # crops, then the bug report's orange cast and dark frame
        out = cut(image) * np.array([1.1, 1.0, 0.7])
        out[:3], out[-3:], out[:, :3], out[:, -3:] = 0.0, 0.0, 0.0, 0.0
        return np.clip(out, 0, 1), box

    found = heldout.failures(heldout.check_enhancer("harmful crop", harmful, photos, "wespe"))
    assert any("colour cast" in f for f in found) and any("dark frame" in f for f in found)

    one = {"flower": photos["flower"]}
    for bad, message in (((40, 0, 10, 10), "not inside"), ((0, 0, 10, 12), "its box 10x12"),
                         (None, "returns its box too")):
        def wrong(image, bad=bad):
            return image[:10, :10] if bad is None else (image[:10, :10], bad)
        with pytest.raises(ValueError, match=message):
            heldout.check_enhancer("wrong", wrong, one, "wespe")


def test_an_enhancegan_photo_enhancer_runs_through_the_check():
    from enhancers import enhancegan
    from test_enhancegan_enhancer import tiny_generator

    enhancer = enhancegan.PhotoEnhancer(tiny_generator(seed=7))
    results = heldout.check_enhancer("EnhanceGAN", enhancer, {"china": crops(40)["china"]},
                                     "wespe")
    clean = results["photos"]["china"]["clean"]
    top, left, height, width = clean["box"]
    assert 0 <= top and top + height <= 40 and 0 <= left and left + width <= 40
    assert height < 40 and width < 40  # it cropped, and was compared within its box


def test_retouch_is_the_pienet_demo_users_own(tmp_path):
    """datasets.heldout.retouch gives what the PieNet demo set stores as a user's version."""
    from datasets import pienet_demo
    from enhancers import filters

    pienet_demo.build_pienet_demo(tmp_path / "demo", render=filters.apply, image_size=32,
                                  num_train=2, num_test=1)
    for user in ("soft_bright_cool", "vintage"):
        for name in ("train_0001.png", "test_0000.png"):
            photo = load_rgb8(str(tmp_path / "demo" / "input" / name))
            stored = load_rgb8(str(tmp_path / "demo" / user / name))
            assert np.array_equal(heldout_photos.retouch(photo, user, filters.apply), stored)
    with pytest.raises(ValueError, match="no demo user 'nobody'"):
        heldout_photos.retouch(photo, "nobody", filters.apply)


def test_a_personalised_enhancer_is_judged_against_its_users_retouch():
    """With a target (PieNet), the output must come closer to the user's retouch than the photo
    is, and the clean rules compare the output with the retouch: the retouch itself passes, the
    identity does not come closer, and a dark frame on the retouch is caught."""
    photos = crops(48)

    def warm(photo):  # a user who likes warm photos: the target
        out = photo.astype(np.float64) * np.array([1.08, 1.0, 0.85])
        return np.clip(np.rint(out), 0, 255).astype(np.uint8)

    def by_target(image):
        return warm(np.rint(image * 255).astype(np.uint8)) / 255.0

    results = heldout.check_enhancer("user oracle", by_target, photos, "warm user's retouch",
                                     target=warm)
    assert results["target"] and heldout.failures(results) == []
    for name, figures in results["photos"].items():
        assert figures["clean"]["psnr_vs_input"] is None  # it gave exactly the retouch
        clipped = photo_checks.clipped_fraction(warm(photos[name]))
        assert figures["clean"]["clipped_input"] == clipped
        mse = np.mean((photos[name] / 255.0 - warm(photos[name]) / 255.0) ** 2)
        assert figures["degraded"]["psnr_input"] == pytest.approx(10 * np.log10(1 / mse))
    found = heldout.failures(heldout.check_enhancer("identity", lambda x: x, photos,
                                                    "warm user's retouch", target=warm))
    assert len(found) >= 2 * len(photos)
    assert all("against the target did not rise" in f or "(clean)" in f for f in found)
    assert sum("did not rise" in f for f in found) == 2 * len(photos)

    def framed(image):
        out = by_target(image)
        out[:3], out[-3:], out[:, :3], out[:, -3:] = 0.0, 0.0, 0.0, 0.0
        return out

    found = heldout.failures(heldout.check_enhancer("framed", framed, photos, "warm",
                                                    target=warm))
    assert any("dark frame" in f for f in found)


def test_a_steered_enhancer_must_not_lower_its_guides_score():
    from test_piea import brightness_nima

    guide = brightness_nima()
    photos = crops(32)
    darker = heldout.check_enhancer("darkener", lambda x: x * 0.9, photos, "piea",
                                    nima_model=guide, steered=True)
    assert any("its guide scores the output lower" in f for f in heldout.failures(darker))
    report = heldout.heldout_report([darker], "clean")
    assert [row["name"] for row in report["rows"]] == [f"darkener / {n}" for n in photos]
    assert report["rows"][0]["metrics"]["nima_output"] < report["rows"][0]["metrics"]["nima_input"]


@pytest.mark.long_demo
def test_piea_under_the_demo_nima_passes_the_check():
    """PIEA as `tools.enhance --method=piea --initial_exposure=auto` runs it, under the demo
    NIMA (trained into the cache the first time: minutes), on the full-size held-out photos."""
    import nima
    from tests.task_testing import assert_heldout_check
    from tools import enhance

    guide = nima.demo_model()
    piea_fn = enhance.piea_enhance_fn(guide, "demo NIMA", initial_exposure="auto")
    assert_heldout_check("PIEA", lambda image: piea_fn(image).image, "piea",
                                nima_model=guide, steered=True)
