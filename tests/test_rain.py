import socket

import numpy as np
import pytest

from spanetlib.synthesis import rain
from spanetlib.synthesis.rain import (
    BACKGROUND_NAMES,
    DENSITY_PRESETS,
    IMAGE_RAIN_LEVELS,
    RainParams,
    compose_rain,
    load_background,
    make_rain_image,
    make_rain_video,
    rain_layer,
)


@pytest.fixture(scope="module")
def bg64() -> np.ndarray:
    return load_background("coffee", (64, 64))


# ----------------------------------------------------------------------------- backgrounds
def test_all_backgrounds_load_offline(monkeypatch):
    def no_network(*args, **kwargs):
        raise OSError("network disabled in this test")

    monkeypatch.setattr(socket.socket, "connect", no_network)
    monkeypatch.setattr(socket, "create_connection", no_network)
    rain._load_raw.cache_clear()
    assert 6 <= len(BACKGROUND_NAMES) <= 10
    assert list(BACKGROUND_NAMES) == sorted(BACKGROUND_NAMES)
    for name in BACKGROUND_NAMES:
        image = load_background(name)
        assert image.dtype == np.uint8 and image.ndim == 3 and image.shape[2] == 3, name
        assert min(image.shape[:2]) >= 256, name
        assert image.std() > 5, name  # a real photo, not a blank
        small = load_background(name, (48, 80))
        assert small.shape == (48, 80, 3) and small.dtype == np.uint8


def test_load_background_crop_keeps_centre_and_is_writable():
    full = load_background("chelsea")  # 300 x 451
    h = full.shape[0]
    same = load_background("chelsea", (h, h))  # square centre crop, no resize
    x0 = (full.shape[1] - h) // 2
    np.testing.assert_array_equal(same, full[:, x0:x0 + h])
    same[0, 0] = 0  # callers own the returned array (the cache is not shared)
    assert load_background("chelsea", (h, h))[0, 0].tolist() == full[0, x0].tolist()


def test_load_background_errors():
    with pytest.raises(ValueError, match=r"unknown background 'nope'.*coffee"):
        load_background("nope")
    with pytest.raises(ValueError, match=r"size: expected \(H, W\)"):
        load_background("coffee", (0, 10))
    with pytest.raises(ValueError, match=r"size: expected \(H, W\)"):
        load_background("coffee", (10,))


# ----------------------------------------------------------------------------- params
def test_rain_params_validation():
    with pytest.raises(ValueError, match=r"density: expected >= 0, got -0.1"):
        RainParams(density=-0.1)
    with pytest.raises(ValueError, match=r"brightness: expected in \[0, 1\], got 1.5"):
        RainParams(brightness=1.5)
    with pytest.raises(ValueError, match=r"groups: expected an int >= 1, got 0"):
        RainParams(groups=0)
    with pytest.raises(ValueError, match=r"unknown RainParams field\(s\) \['colour'\]"):
        RainParams().replace(colour=1.0)
    assert RainParams().replace(angle=-20.0).angle == -20.0


# ----------------------------------------------------------------------------- rain_layer
def test_rain_layer_range_and_determinism():
    p = DENSITY_PRESETS["normal"]
    a = rain_layer((80, 96), p, 7)
    b = rain_layer((80, 96), p, np.random.default_rng(7))
    c = rain_layer((80, 96), p, 8)
    assert a.shape == (80, 96) and a.dtype == np.float32
    assert a.min() >= 0.0 and a.max() <= 1.0 and a.max() > 0.2
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    assert not rain_layer((32, 32), p.replace(density=0.0), 0).any()


def test_rain_layer_bad_arguments():
    with pytest.raises(ValueError, match=r"shape_hw: expected \(H, W\)"):
        rain_layer((0, 5), DENSITY_PRESETS["normal"], 0)
    with pytest.raises(TypeError, match="params: expected RainParams, got dict"):
        rain_layer((8, 8), {"density": 0.1}, 0)
    with pytest.raises(TypeError, match="expected a numpy Generator"):
        rain_layer((8, 8), DENSITY_PRESETS["normal"], "seed")


def _gradient_energy(layer):
    gy, gx = np.gradient(layer.astype(np.float64))
    return (gx ** 2).sum(), (gy ** 2).sum()


def test_streak_orientation_follows_angle():
    base = RainParams(density=0.002, angle_jitter=0.0, length=30.0, length_jitter=0.0)
    vertical = rain_layer((128, 128), base.replace(angle=0.0), 1)
    ex, ey = _gradient_energy(vertical)
    assert ex > 8 * ey  # vertical streaks: intensity changes across x, hardly along y
    horizontal = rain_layer((128, 128), base.replace(angle=90.0), 1)
    ex, ey = _gradient_energy(horizontal)
    assert ey > 8 * ex
    # A positive angle leans the lower end to the right: the layer correlates with itself
    # shifted down-right, not down-left.
    lean = rain_layer((160, 160), base.replace(angle=25.0), 2).astype(np.float64)
    lean -= lean.mean()
    dy, dx = 8, round(8 * np.tan(np.radians(25.0)))

    def corr(sx):
        a = lean[dy:, max(sx, 0):lean.shape[1] + min(sx, 0)]
        b = lean[:-dy, max(-sx, 0):lean.shape[1] + min(-sx, 0)]
        return (a * b).mean()

    assert corr(dx) > 3 * abs(corr(-dx))


def test_streak_kernel_shape_and_peak():
    k = rain.streak_kernel(0.0, 21.0, width=1.0, blur=0.0, taper=0.0)
    assert k.max() == pytest.approx(1.0)
    rows = np.nonzero(k.max(axis=1) > 0.5)[0]
    assert rows.max() - rows.min() + 1 == 21  # length in pixels
    cols = np.nonzero(k.max(axis=0) > 0.5)[0]
    assert len(cols) == 1  # one pixel wide
    np.testing.assert_allclose(k, k[::-1, ::-1], atol=1e-6)  # symmetric: filter2D == conv


# ----------------------------------------------------------------------------- compose
def test_compose_formulas_on_hand_computed_pixels():
    b = np.array([[[0.5, 0.8, 0.0]]], np.float64)
    r = np.array([[0.5]], np.float32)
    screen = compose_rain(b, r, "screen")
    additive = compose_rain(b, r, "additive")
    assert screen.dtype == np.float64 and additive.dtype == np.float64
    np.testing.assert_allclose(screen[0, 0], [0.75, 0.9, 0.5])  # 1 - (1 - B)(1 - R)
    np.testing.assert_allclose(additive[0, 0], [1.0, 1.0, 0.5])  # clip(B + R)
    b8 = np.array([[[100, 255, 0]]], np.uint8)
    r8 = np.array([[0.2]], np.float32)
    out = compose_rain(b8, r8, "screen")
    assert out.dtype == np.uint8
    assert out[0, 0].tolist() == [131, 255, 51]  # 255 - 155 * 0.8 = 131
    assert compose_rain(b8, r8, "additive")[0, 0].tolist() == [151, 255, 51]
    per_channel = compose_rain(b8, np.full((1, 1, 3), 0.2, np.float32), "additive")
    assert per_channel[0, 0].tolist() == [151, 255, 51]


def test_compose_errors():
    b = np.zeros((4, 4, 3), np.uint8)
    with pytest.raises(ValueError, match=r"blend: expected one of \['additive', 'screen'\]"):
        compose_rain(b, np.zeros((4, 4)), "multiply")
    with pytest.raises(ValueError, match=r"layer: expected shape \(4, 4\)"):
        compose_rain(b, np.zeros((4, 5)))
    with pytest.raises(ValueError, match=r"background: expected ... x H x W x 3"):
        compose_rain(np.zeros((4, 4)), np.zeros((4,)))
    with pytest.raises(ValueError, match="expected uint8 or float dtype, got int32"):
        compose_rain(b.astype(np.int32), np.zeros((4, 4)))


# ----------------------------------------------------------------------------- videos
def test_make_rain_video_shapes_and_determinism(bg64):
    v = make_rain_video(bg64, 6, "normal", seed=3)
    assert v.frames.shape == (6, 64, 64, 3) and v.frames.dtype == np.uint8
    assert v.rain_mask.shape == (6, 64, 64) and v.rain_mask.dtype == bool
    np.testing.assert_array_equal(v.clean, bg64)
    assert v.params == DENSITY_PRESETS["normal"]
    again = make_rain_video(bg64, 6, "normal", seed=3)
    np.testing.assert_array_equal(v.frames, again.frames)
    np.testing.assert_array_equal(v.rain_mask, again.rain_mask)
    other = make_rain_video(bg64, 6, "normal", seed=4)
    assert not np.array_equal(v.frames, other.frames)
    # Frames are independent draws, not one rain layer repeated.
    assert not np.array_equal(v.rain_mask[0], v.rain_mask[1])
    # Rain, noise, flicker and jitter use separate streams: less noise, same rain.
    quiet = make_rain_video(bg64, 6, "normal", seed=3, noise_sigma=0.0)
    np.testing.assert_array_equal(v.rain_mask, quiet.rain_mask)


def test_rain_mask_matches_frames_without_noise(bg64):
    v = make_rain_video(bg64, 8, "dense", seed=1, noise_sigma=0.0)
    diff = np.abs(v.frames.astype(np.int16) - v.clean.astype(np.int16)).max(axis=3)
    assert (diff[~v.rain_mask] <= 1).all()  # change <= 1/255: at most one level after rounding
    assert (diff[v.rain_mask] >= 1).all()
    assert (v.rain_mask == (diff >= 2)).mean() > 0.97


def test_density_presets_coverage_bands_and_order(bg64):
    cover = {name: make_rain_video(bg64, 12, name, seed=s, noise_sigma=0.0).coverage
             for s in (0,) for name in DENSITY_PRESETS}
    assert 0.01 < cover["sparse"] < 0.06
    assert 0.10 < cover["normal"] < 0.30
    assert cover["sparse"] < cover["normal"] < cover["dense"]
    for seed in (0, 1, 2):
        dense = make_rain_video(bg64, 12, "dense", seed=seed, noise_sigma=0.0)
        assert 0.40 <= dense.coverage <= 0.65, (seed, dense.coverage)


def test_dense_rain_biases_median_but_not_mode():
    """The paper's point (Sec. 3): under dense rain the temporal median is pulled bright,
    while the most frequent intensity (Eq. 2's mode) stays at the clean value."""
    bg = load_background("rocket", (48, 48))
    v = make_rain_video(bg, 80, "dense", seed=5, noise_sigma=0.004)
    frames = v.frames[..., 1].astype(np.int64)  # green channel, N x H x W
    clean = bg[..., 1].astype(np.float64)
    per_pixel = v.rain_mask.mean(axis=0)
    assert np.median(per_pixel) > 0.45  # a typical pixel is under rain about half the time
    median = np.median(frames, axis=0)
    counts = np.zeros((256, *frames.shape[1:]), np.int64)
    np.add.at(counts, (frames, *np.indices(frames.shape[1:])[:, None]), 1)
    mode = counts.argmax(axis=0)
    median_err = np.abs(median - clean).mean()
    mode_err = np.abs(mode - clean).mean()
    assert (median - clean).mean() > 2.0  # biased bright
    assert mode_err < 1.0
    assert median_err > 3 * mode_err


def test_flicker_and_jitter(bg64):
    v = make_rain_video(bg64, 5, "sparse", seed=2, flicker=0.05, jitter_px=2.0)
    assert v.shifts.shape == (5, 2) and not v.shifts[0].any()
    assert np.abs(v.shifts[1:]).max() <= 2.0 and np.abs(v.shifts[1:]).max() > 0.1
    assert v.gains.shape == (5,) and v.gains.std() > 0.005
    np.testing.assert_array_equal(v.clean, bg64)  # the truth stays unshifted
    plain = make_rain_video(bg64, 5, "sparse", seed=2)
    assert (plain.gains == 1).all() and not plain.shifts.any()


def test_make_rain_video_accepts_custom_params(bg64):
    v = make_rain_video(bg64, 2, RainParams(density=0.0), seed=0, noise_sigma=0.0)
    assert not v.rain_mask.any()
    np.testing.assert_array_equal(v.frames, np.broadcast_to(bg64, v.frames.shape))


def test_make_rain_video_bad_arguments(bg64):
    with pytest.raises(ValueError, match=r"density: expected one of \['sparse', 'normal', "
                                         r"'dense'\] or a RainParams, got 'heavy'"):
        make_rain_video(bg64, 3, "heavy")
    with pytest.raises(ValueError, match=r"expected a background of shape H x W x 3, got "
                                         r"\(64, 64\)"):
        make_rain_video(bg64[..., 0], 3)
    with pytest.raises(ValueError, match="expected a uint8 background, got dtype float32"):
        make_rain_video(bg64.astype(np.float32), 3)
    with pytest.raises(ValueError, match="n_frames: expected an int >= 1, got 0"):
        make_rain_video(bg64, 0)
    with pytest.raises(ValueError, match=r"noise_sigma: expected a number >= 0, got -0.1"):
        make_rain_video(bg64, 2, noise_sigma=-0.1)
    with pytest.raises(ValueError, match=r"jitter_px: expected a number >= 0"):
        make_rain_video(bg64, 2, jitter_px=-1)
    with pytest.raises(ValueError, match=r"blend: expected one of"):
        make_rain_video(bg64, 2, blend="max")


# ----------------------------------------------------------------------------- images
def test_make_rain_image_levels_order_and_determinism():
    bg = load_background("astronaut", (96, 96))
    strength = {}
    for level in IMAGE_RAIN_LEVELS:
        img = make_rain_image(bg, level, seed=0)
        assert img.rain.shape == bg.shape and img.rain.dtype == np.uint8
        np.testing.assert_array_equal(img.clean, bg)
        assert img.level == level and img.params == IMAGE_RAIN_LEVELS[level]
        np.testing.assert_array_equal(img.rain, make_rain_image(bg, level, seed=0).rain)
        assert not np.array_equal(img.rain, make_rain_image(bg, level, seed=1).rain)
        assert (img.rain >= img.clean).all()  # screen blend without noise only brightens
        strength[level] = np.abs(img.rain.astype(float) - bg).mean()
    assert strength["light"] < strength["medium"] < strength["heavy"]


def test_make_rain_image_overrides_and_noise():
    bg = load_background("camera", (64, 64))
    img = make_rain_image(bg, "light", seed=0, angle=-30.0, length=40.0)
    assert img.params.angle == -30.0 and img.params.length == 40.0
    assert img.params.density == IMAGE_RAIN_LEVELS["light"].density
    noisy = make_rain_image(bg, "light", seed=0, noise_sigma=0.02)
    clean_rain = make_rain_image(bg, "light", seed=0)
    assert 2.0 < np.abs(noisy.rain.astype(float) - clean_rain.rain).mean() < 8.0
    with pytest.raises(ValueError, match=r"level: expected one of \['light', 'medium', "
                                         r"'heavy'\], got 'dense'"):
        make_rain_image(bg, "dense")
    with pytest.raises(ValueError, match=r"unknown RainParams field\(s\) \['speed'\]"):
        make_rain_image(bg, "light", speed=3.0)
    with pytest.raises(ValueError, match=r"noise_sigma: expected a number >= 0"):
        make_rain_image(bg, "light", noise_sigma=-1)


# ----------------------------------------------------------------------------- phone-like clips
CLIP_SIZE = dict(size=(48, 64), n_frames=12)


@pytest.mark.parametrize("name", sorted(rain.CLIP_PRESETS))
def test_every_clip_preset_renders_with_its_truth(name, rain_clip):
    clip = rain_clip(name)
    n = len(clip.frames)
    h, w = clip.spec.size
    assert clip.frames.shape == clip.truth.shape == (n, h, w, 3)
    assert clip.frames.dtype == clip.truth.dtype == np.uint8
    assert clip.rain_mask.shape == clip.object_mask.shape == (n, h, w)
    assert clip.camera.shape == (n, 3, 3) and clip.state.shape == (n,)
    assert clip.rain_mask.any()  # rain fell
    # Rain only brightens under the screen blend: frames exceed the truth where rain is.
    rainy = clip.rain_mask & ~clip.object_mask
    assert (clip.frames[rainy].astype(int).mean() > clip.truth[rainy].astype(int).mean())
    np.testing.assert_array_equal(clip.frames, rain_clip(name).frames)  # seeded
    assert not np.array_equal(clip.frames, rain_clip(name, seed=1).frames)


def test_clip_without_rain_or_noise_is_its_truth(rain_clip):
    clip = rain_clip("handheld", density=rain.RainParams(density=0.0), noise_sigma=0.0)
    np.testing.assert_array_equal(clip.frames, clip.truth)
    assert not clip.rain_mask.any()


def test_clip_frames_are_warps_of_the_scene(rain_clip):
    # Frame i resampled at the true motion shows what the reference frame shows.
    from spanetlib.pipeline.resample import bspline_coefficients, bspline_sample

    clip = rain_clip("handheld", size=(72, 96), density=rain.RainParams(density=0.0),
                 noise_sigma=0.0)
    ref = 6
    moves = clip.true_motion(ref)
    assert np.abs(moves[ref] - np.eye(3)).max() < 1e-12
    ys, xs = np.mgrid[12:60, 16:80].astype(np.float64)
    for i in (0, 3, 11):
        m = moves[i]
        assert np.hypot(m[0, 2], m[1, 2]) > 0.3  # the camera did move
        errors = []
        for dx in (0.0, 0.5):  # the true motion, and half a pixel off it
            u = m[0, 0] * xs + m[0, 1] * ys + m[0, 2] + dx
            v = m[1, 0] * xs + m[1, 1] * ys + m[1, 2]
            warped = bspline_sample(bspline_coefficients(clip.truth[i]), u, v)[..., :3]
            errors.append(np.abs(warped - clip.truth[ref, 12:60, 16:80]).mean())
        assert errors[0] < 4.0 and errors[0] < 0.5 * errors[1], errors


def test_pan_travels_its_distance_and_rotation_stays_small(rain_clip):
    clip = rain_clip("pan")
    moves = clip.true_motion(0)
    assert moves[-1, 0, 2] == pytest.approx(-30.0, abs=1e-9)  # scene moves left in the frame
    assert abs(moves[-1, 1, 2]) < 1e-9
    shaky = rain_clip("handheld").true_motion(0)
    angles = np.degrees(np.arctan2(shaky[:, 1, 0], shaky[:, 0, 0]))
    assert 0.05 < np.abs(angles).max() < 3.0


def test_parked_object_leaves_after_its_share(rain_clip):
    clip = rain_clip("parked-leaves", n_frames=20)
    # leaves at round(0.6 * 20) = 12, driving off over 2 transition frames
    np.testing.assert_array_equal(clip.state, [0] * 12 + [-1, -1] + [1] * 6)
    before, after = clip.state_truth(0, 0), clip.state_truth(1, 0)
    changed = np.abs(before.astype(int) - after).max(axis=2) > 10
    assert 0.03 < changed.mean() < 0.3  # the object's box, nothing else
    np.testing.assert_array_equal(clip.truth[0], before)
    np.testing.assert_array_equal(clip.truth[-1], after)
    assert clip.object_mask[12:14].any() and not clip.object_mask[:12].any()
    arrives = rain_clip("parked-arrives", n_frames=20)
    np.testing.assert_array_equal(arrives.state_truth(1, 0), before)


def test_light_switch_changes_the_left_part_only(rain_clip):
    clip = rain_clip("light-switch")
    a, b = clip.state_truth(0, 0).astype(int), clip.state_truth(1, 0).astype(int)
    w = a.shape[1]
    assert (b[:, : w // 2 - 4] <= a[:, : w // 2 - 4]).all()
    assert (a[:, : w // 2 - 4] - b[:, : w // 2 - 4]).mean() > 15
    np.testing.assert_array_equal(a[:, w // 2 + 4:], b[:, w // 2 + 4:])


def test_flicker_scales_the_truth_by_each_frame_gain(rain_clip):
    clip = rain_clip("flicker")
    assert clip.gains.std() > 0.01
    for i in (0, 5):
        ref = clip.state_truth(0, i)  # rendered with frame i's exposure
        np.testing.assert_array_equal(clip.truth[i], ref)
    ratio = clip.truth[1].astype(float).sum() / clip.truth[0].astype(float).sum()
    assert ratio == pytest.approx(clip.gains[1] / clip.gains[0], rel=0.02)


def test_passing_objects_are_marked_and_truth_matches_state_elsewhere(rain_clip):
    clip = rain_clip("passing", n_frames=24)
    assert clip.object_mask.any(axis=(1, 2)).sum() >= 4
    for i in range(len(clip.frames)):
        free = ~clip.object_mask[i]
        diff = np.abs(clip.truth[i].astype(int) - clip.state_truth(0, i))
        assert diff[free].max() <= 1 or (diff[free] > 1).mean() < 0.01


def test_clip_spec_validation_and_presets(rain_clip):
    with pytest.raises(ValueError, match=r"ClipSpec.n_frames: expected an int >= 2, got 1"):
        rain.ClipSpec(n_frames=1)
    with pytest.raises(ValueError, match=r"ClipSpec.parked: expected a share in \(0, 1\)"):
        rain.ClipSpec(parked=1.5)
    with pytest.raises(ValueError, match=r"ClipSpec.background: unknown 'nope'"):
        rain.ClipSpec(background="nope")
    with pytest.raises(ValueError, match=r"ClipSpec.supersample: expected 1, 2, 3 or 4"):
        rain.ClipSpec(supersample=0)
    with pytest.raises(ValueError, match=r"unknown ClipSpec field\(s\) \['speed'\]"):
        rain.ClipSpec().replace(speed=1)
    with pytest.raises(ValueError, match=r"unknown clip preset 'rainy'"):
        rain.make_rain_clip("rainy")
    with pytest.raises(ValueError, match=r"state: expected an int in \[0, 2\)"):
        rain_clip("parked-leaves").state_truth(2, 0)
    with pytest.raises(ValueError, match=r"frame index: expected an int in \[0, 12\)"):
        rain_clip("static").true_motion(12)
