"""Tests for spanetlib.pipeline.background: the fast kernels against a slow, plain reference."""

import math

import numpy as np
import pytest

from spanetlib.io.errors import InputError
from spanetlib.pipeline import background as bg

# ---------------------------------------------------------------------------------------------
# Plain reference (pure Python loops / np.percentile on small arrays)
# ---------------------------------------------------------------------------------------------


def ref_levels(frames):
    """Integer levels of every sample (float64 frames go through float32, as documented)."""
    arr = np.asarray(frames)
    if arr.dtype == np.uint8:
        return arr.astype(np.int64)
    as32 = arr.astype(np.float32).astype(np.float64)
    return np.floor(as32 * 255.0 + 0.5).astype(np.int64)


def ref_luma(frames):
    """N x H x W luminance levels, one sample at a time with Python integers."""
    lev = ref_levels(frames)
    if lev.ndim == 3:
        return lev
    n, h, w, _ = lev.shape
    y = np.empty((n, h, w), np.int64)
    for i in range(n):
        for r in range(h):
            for c in range(w):
                red, green, blue = (int(v) for v in lev[i, r, c])
                y[i, r, c] = (19595 * red + 38470 * green + 7471 * blue + 32768) // 65536
    return y


def ref_estimate(frames):
    """Eqs. 2-4 by brute force: returns image, p, mode, low %, high %."""
    arr = np.asarray(frames)
    y = ref_luma(arr)
    n, h, w = y.shape
    mode = np.zeros((h, w), np.int64)
    low = np.zeros((h, w))
    high = np.zeros((h, w))
    for r in range(h):
        for c in range(w):
            samples = [int(v) for v in y[:, r, c]]
            counts = {v: samples.count(v) for v in samples}
            top = max(counts.values())
            m = min(v for v, k in counts.items() if k == top)  # ties: smallest value
            mode[r, c] = m
            low[r, c] = 100.0 * sum(v < m for v in samples) / n
            high[r, c] = 100.0 * sum(v <= m for v in samples) / n
    # Eq. 4: coverage of the half-open ranges (low, high] at the centre of every cell.
    centres = [100.0 * (k + 0.5) / n for k in range(n)]
    cover = [int(np.sum((low < p) & (p <= high))) for p in centres]
    best = max(cover)
    start = cover.index(best)
    stop = start
    while stop + 1 < n and cover[stop + 1] == best:
        stop += 1
    p = centres[(start + stop) // 2]
    if arr.dtype != np.uint8:
        arr = arr.astype(np.float32)
    if arr.ndim == 3:
        arr = arr[..., None]
    image = np.empty((h, w, arr.shape[-1]), np.float32)
    for r in range(h):
        for c in range(w):
            for ch in range(arr.shape[-1]):
                image[r, c, ch] = np.percentile(arr[:, r, c, ch], p, method="inverted_cdf")
    if image.shape[-1] == 1:
        image = np.repeat(image, 3, axis=2)
    return image, p, mode, low, high


def ref_mode_filter(frames):
    arr = np.asarray(frames)
    y = ref_luma(arr)
    _, _, mode, _, _ = ref_estimate(arr)
    if arr.dtype != np.uint8:
        arr = arr.astype(np.float32)
    if arr.ndim == 3:
        arr = np.repeat(arr[..., None], 3, axis=3)
    out = np.empty(arr.shape[1:], np.float32)
    for r in range(arr.shape[1]):
        for c in range(arr.shape[2]):
            sel = y[:, r, c] == mode[r, c]
            out[r, c] = arr[sel, r, c].astype(np.float64).mean(axis=0)
    return out


def rain_video(n, h, w, seed, rain_fraction=0.3):
    """Static random background plus bright streak-like rain in some frames, uint8 RGB."""
    rng = np.random.default_rng(seed)
    clean = rng.integers(0, 200, (h, w, 3), dtype=np.int64)
    frames = np.repeat(clean[None], n, axis=0) + rng.integers(-2, 3, (n, h, w, 1))
    rain = rng.random((n, h, w)) < rain_fraction
    frames[rain] += rng.integers(30, 120, (int(rain.sum()), 1))
    return np.clip(frames, 0, 255).astype(np.uint8), clean.astype(np.float32)


def assert_matches_reference(frames):
    est = bg.estimate_background(frames)
    image, p, mode, low, high = ref_estimate(frames)
    h, w = mode.shape
    assert est.image.shape == (h, w, 3) and est.image.dtype == np.float32
    np.testing.assert_array_equal(est.mode, mode)
    np.testing.assert_allclose(est.range_low, low, rtol=1e-6, atol=1e-4)
    np.testing.assert_allclose(est.range_high, high, rtol=1e-6, atol=1e-4)
    assert est.percentile == pytest.approx(p, abs=1e-9)
    np.testing.assert_array_equal(est.image, image)
    # p attains the maximal coverage also on a fine grid of percentiles (0.01 % steps).
    grid = np.arange(0.005, 100.0, 0.01)
    fine = [np.sum((low < q) & (q <= high)) for q in grid[::7]]
    covered = np.sum((low < est.percentile) & (est.percentile <= high))
    assert covered >= max(fine)
    assert est.coverage == pytest.approx(covered / (h * w))
    return est


# ---------------------------------------------------------------------------------------------
# Hand-computed cases (Eqs. 2-4)
# ---------------------------------------------------------------------------------------------


def test_luminance_level_is_bt601_rounded():
    frames = np.zeros((2, 1, 3, 3), np.uint8)
    frames[:, 0, 0] = (100, 50, 200)  # 0.299*100 + 0.587*50 + 0.114*200 = 82.05
    frames[:, 0, 1] = (255, 255, 255)
    frames[:, 0, 2] = (0, 0, 1)  # 0.114 -> 0
    y = bg.luminance_levels(frames)
    np.testing.assert_array_equal(y[0, 0], [82, 255, 0])
    est = bg.estimate_background(frames)
    np.testing.assert_array_equal(est.mode[0], [82, 255, 0])
    # float frames are quantized per channel: 0.5 -> floor(127.5 + 0.5) = 128
    gray = np.full((3, 1, 2), 0.5, np.float32)
    assert bg.estimate_background(gray).mode[0, 0] == 128


def test_eq2_mode_ties_take_smallest_value():
    y = np.array([30, 10, 20, 10, 20], np.uint8).reshape(5, 1, 1)
    est = bg.estimate_background(y)
    assert est.mode[0, 0] == 10
    assert est.range_low[0, 0] == 0.0
    assert est.range_high[0, 0] == pytest.approx(40.0)


def test_eq3_range_and_eq4_plateau_by_hand():
    # pixel A: 5,5,5,9 -> mode 5, range (0, 75];  pixel B: 1,7,7,7 -> mode 7, range (25, 100]
    frames = np.array([[[5, 1]], [[5, 7]], [[9, 7]], [[5, 7]]], np.uint8)  # N=4, H=1, W=2
    est = bg.estimate_background(frames)
    np.testing.assert_array_equal(est.mode, [[5, 7]])
    np.testing.assert_allclose(est.range_low, [[0.0, 25.0]])
    np.testing.assert_allclose(est.range_high, [[75.0, 100.0]])
    # cell coverage [1, 2, 2, 1]: best plateau = cells 1..2, middle cell 1 -> p = 37.5
    assert est.percentile == pytest.approx(37.5)
    assert est.rank == 1 and est.coverage == 1.0
    np.testing.assert_array_equal(est.image[0], [[5, 5, 5], [7, 7, 7]])


def test_eq4_odd_plateau_takes_its_centre_cell():
    # N=5; two pixels with ranges (0, 60] and (0, 100]: coverage 2 on cells 0..2 -> cell 1.
    frames = np.array([[[4, 9]], [[4, 9]], [[4, 9]], [[8, 9]], [[200, 9]]], np.uint8)
    est = bg.estimate_background(frames)
    assert est.rank == 1
    assert est.percentile == pytest.approx(30.0)
    np.testing.assert_array_equal(est.image[0, :, 0], [4, 9])


def test_constant_frames_give_the_frame():
    frame = np.random.default_rng(3).integers(0, 256, (6, 7, 3), dtype=np.uint8)
    est = bg.estimate_background(np.stack([frame] * 4))
    np.testing.assert_array_equal(est.image, frame.astype(np.float32))
    np.testing.assert_array_equal(est.range_low, 0.0)
    np.testing.assert_array_equal(est.range_high, 100.0)
    assert est.coverage == 1.0 and est.rank == 1  # plateau of 4 cells, lower middle


# ---------------------------------------------------------------------------------------------
# Fast path against the reference
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("n", "h", "w", "seed"), [(2, 3, 5, 0), (7, 4, 70, 1), (10, 3, 90, 2)])
def test_random_uint8_matches_reference(n, h, w, seed):
    frames = np.random.default_rng(seed).integers(0, 256, (n, h, w, 3), dtype=np.uint8)
    assert_matches_reference(frames)


def test_narrow_value_range_with_many_ties_matches_reference():
    frames = np.random.default_rng(4).integers(100, 104, (12, 5, 130, 3), dtype=np.uint8)
    assert_matches_reference(frames)


def test_rain_video_matches_reference_and_recovers_clean():
    frames, clean = rain_video(15, 6, 100, seed=5)
    est = assert_matches_reference(frames)
    assert np.abs(est.image - clean).mean() < 2.5
    assert np.abs(bg.temporal_mean(frames) - clean).mean() > 8.0


def test_many_frames_use_the_batched_counts():
    frames = np.random.default_rng(6).integers(0, 256, (300, 2, 3, 3), dtype=np.uint8)
    frames[:200, 0, 0] = 17  # a clear mode
    est = assert_matches_reference(frames)
    assert est.mode[0, 0] == bg.luminance_levels(frames)[0, 0, 0]


def test_grayscale_uint8_matches_reference():
    frames = np.random.default_rng(7).integers(0, 6, (9, 4, 20), dtype=np.uint8)
    est = assert_matches_reference(frames)
    np.testing.assert_array_equal(est.image[..., 0], est.image[..., 2])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_float_frames_match_reference(dtype):
    rng = np.random.default_rng(8)
    frames = (rng.integers(0, 40, (8, 3, 33, 3)) / 39.0 + rng.normal(0, 1e-3, (8, 3, 33, 3)))
    frames = np.clip(frames, 0.0, 1.0).astype(dtype)
    est = assert_matches_reference(frames)
    assert est.image.max() <= 1.0


def test_float_grayscale_matches_reference_and_uint8_agrees():
    rng = np.random.default_rng(9)
    ints = rng.integers(0, 5, (6, 4, 9), dtype=np.uint8) * 50
    floats = ints.astype(np.float32) / 255.0
    est_f = assert_matches_reference(floats)
    est_u = bg.estimate_background(ints)
    np.testing.assert_array_equal(est_f.mode, est_u.mode)
    assert est_f.percentile == est_u.percentile
    np.testing.assert_allclose(est_f.image * 255.0, est_u.image, atol=1e-4)


def test_sequences_and_noncontiguous_inputs():
    frames = np.random.default_rng(10).integers(0, 256, (5, 8, 12, 3), dtype=np.uint8)
    whole = bg.estimate_background(frames)
    as_list = bg.estimate_background(list(frames))
    np.testing.assert_array_equal(whole.image, as_list.image)
    strided = frames[:, ::2, ::3]
    np.testing.assert_array_equal(bg.estimate_background(strided).image,
                                  bg.estimate_background(strided.copy()).image)


def test_concurrent_calls_from_threads_agree():
    from concurrent.futures import ThreadPoolExecutor

    frames = [np.random.default_rng(s).integers(0, 256, (6, 9, 40, 3), dtype=np.uint8)
              for s in range(4)]
    expected = [bg.estimate_background(f).image for f in frames]
    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(lambda f: bg.estimate_background(f).image, frames * 3))
    for i, image in enumerate(results):
        np.testing.assert_array_equal(image, expected[i % 4])


# ---------------------------------------------------------------------------------------------
# Table 1 baselines
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("n", [5, 6])
def test_mean_and_median_equal_numpy(n):
    frames = np.random.default_rng(n).integers(0, 256, (n, 4, 100, 3), dtype=np.uint8)
    np.testing.assert_array_equal(bg.temporal_mean(frames),
                                  frames.mean(axis=0).astype(np.float32))
    np.testing.assert_array_equal(bg.temporal_median(frames),
                                  np.median(frames, axis=0).astype(np.float32))
    floats = frames.astype(np.float32) / 255.0
    np.testing.assert_array_equal(bg.temporal_median(floats), np.median(floats, axis=0))
    gray = frames[..., 0]
    np.testing.assert_array_equal(bg.temporal_median(gray)[..., 1],
                                  np.median(gray, axis=0).astype(np.float32))


@pytest.mark.parametrize("dtype", [np.uint8, np.float32])
def test_mode_filter_matches_reference(dtype):
    frames, _ = rain_video(9, 3, 70, seed=11)
    if dtype is np.float32:
        frames = frames.astype(np.float32) / 255.0
    np.testing.assert_allclose(bg.mode_filter(frames), ref_mode_filter(frames), rtol=1e-6)


def test_mode_beats_median_when_clean_is_a_minority():
    # 40 % of the frames show the clean grey 60; 60 % show distinct bright rain values.
    rng = np.random.default_rng(12)
    n, h, w = 10, 4, 6
    values = np.array([60, 60, 60, 60, 150, 170, 190, 210, 230, 250], np.uint8)
    frames = np.empty((n, h, w, 3), np.uint8)
    for r in range(h):
        for c in range(w):
            frames[:, r, c, :] = rng.permutation(values)[:, None]
    np.testing.assert_array_equal(bg.estimate_background(frames).image, 60.0)
    np.testing.assert_array_equal(bg.mode_filter(frames), 60.0)
    assert np.all(bg.temporal_median(frames) == 160.0)  # (150 + 170) / 2
    assert np.all(bg.temporal_mean(frames) > 100.0)


def test_robust_pca_recovers_low_rank_background():
    rng = np.random.default_rng(13)
    n, h, w = 30, 12, 12
    clean = rng.uniform(20, 200, (h, w, 3))
    frames = np.repeat(clean[None], n, axis=0)
    corrupt = rng.random(frames.shape) < 0.08
    frames[corrupt] = rng.uniform(0, 255, int(corrupt.sum()))
    out = bg.robust_pca_background(frames / 255.0)
    assert out.shape == (h, w, 3) and out.dtype == np.float32
    assert np.abs(out * 255.0 - clean).max() < 0.5
    assert np.abs(bg.temporal_mean(frames / 255.0) * 255.0 - clean).max() > 5.0
    blocks = bg.robust_pca_background(frames / 255.0, max_pixels=50)
    assert np.abs(blocks * 255.0 - clean).max() < 1.0


def test_robust_pca_low_rank_part_is_low_rank():
    rng = np.random.default_rng(14)
    u = rng.uniform(0.5, 1.5, (20, 1))
    v = rng.uniform(10, 100, (1, 300))
    data = u @ v
    sparse = np.where(rng.random(data.shape) < 0.05, 150.0, 0.0)
    low_rank, iterations = bg._ialm((data + sparse).astype(np.float32),
                                     1 / math.sqrt(300), 200, 1e-6)
    assert iterations < 200
    assert np.abs(low_rank - data).max() / np.abs(data).max() < 1e-3
    assert np.linalg.svd(low_rank, compute_uv=False)[1] < 1e-2


def test_table1_methods_return_images_in_input_scale():
    frames, _ = rain_video(6, 5, 7, seed=15)
    assert list(bg.TABLE1_METHODS) == [
        "Mean", "Median", "Mode filter (Eq. 2)", "Robust PCA (IALM)", "Ours (Eqs. 2-4)"]
    for name, method in bg.TABLE1_METHODS.items():
        for data, top in ((frames, 255.0), (frames / 255.0, 1.0), (frames[..., 1], 255.0)):
            out = method(data)
            assert out.shape == (5, 7, 3), name
            assert out.dtype == np.float32, name
            assert 0.0 <= out.min() and out.max() <= top, name
            assert out.max() > top / 10, name
    np.testing.assert_array_equal(bg.TABLE1_METHODS["Ours (Eqs. 2-4)"](frames),
                                  bg.estimate_background(frames).image)


# ---------------------------------------------------------------------------------------------
# Bad input
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("frames", "match"),
    [
        (np.zeros((1, 4, 4, 3), np.uint8), "at least 2 frames, got 1"),
        ([np.zeros((4, 4, 3), np.uint8)], "at least 2 frames, got 1"),
        (np.zeros((4, 4), np.uint8), r"N x H x W x 3 .* got shape \(4, 4\)"),
        (np.zeros((2, 4, 4, 4), np.uint8), r"got shape \(2, 4, 4, 4\)"),
        (np.zeros((4, 5, 3), np.uint8), "looks like one H x W x 3 image"),
        (np.zeros((2, 0, 4, 3), np.uint8), "must not be empty"),
        (np.zeros((2, 4, 4, 3), np.int32), "got dtype int32"),
        (np.zeros((2, 4, 4, 3), bool), "got dtype bool"),
        (np.full((2, 4, 4, 3), 1.5, np.float32), r"must lie in \[0, 1\], got values in \[1.5"),
        (np.full((2, 4, 4, 3), -0.1), r"must lie in \[0, 1\]"),
        (np.full((2, 4, 4, 3), np.inf), r"must lie in \[0, 1\]"),
        (np.array([[[0.1, np.nan]]] * 3), "contain NaN"),
        ([np.zeros((4, 4, 3), np.uint8), np.zeros((4, 5, 3), np.uint8)],
         r"mismatched shapes: frame 0 is \(4, 4, 3\), frame 1 is \(4, 5, 3\)"),
        ([np.zeros((4, 4, 3), np.uint8), np.zeros((4, 4, 3), np.float32)], "mixed dtypes"),
        (np.zeros((bg.MAX_FRAMES + 1, 1, 1), np.uint8), "at most 65535 frames"),
    ],
)
def test_bad_frames_raise(frames, match):
    for function in (bg.estimate_background, *bg.TABLE1_METHODS.values()):
        with pytest.raises(ValueError, match=match):
            function(frames)
    with pytest.raises(InputError, match=match):
        bg.estimate_background(frames)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [({"lam": 0.0}, "lam must be > 0"), ({"max_iter": 0}, "max_iter must be >= 1"),
     ({"tol": -1.0}, "tol must be > 0"), ({"max_pixels": 0}, "max_pixels must be >= 1")],
)
def test_robust_pca_bad_parameters(kwargs, match):
    with pytest.raises(ValueError, match=match):
        bg.robust_pca_background(np.zeros((3, 2, 2, 3), np.uint8), **kwargs)


# ---------------------------------------------------------------------------------------------
# Reliability map and noise
# ---------------------------------------------------------------------------------------------


def ref_reliability(frames, image, tol, spread):
    """below / second shares by brute force, one pixel at a time (see Reliability)."""
    y = ref_luma(frames)
    n, h, w = y.shape
    est = ref_luma(np.clip(np.floor(image + 0.5), 0, 255).astype(np.uint8)[None])[0]
    below = np.zeros((h, w))
    second = np.zeros((h, w))
    for r in range(h):
        for c in range(w):
            hist = [int(np.sum(y[:, r, c] == v)) if v < 253 else 0 for v in range(256)]
            e = int(est[r, c])
            below[r, c] = int(np.sum(y[:, r, c] < e - tol)) / n
            best = 0
            for v in range(256):
                if abs(v - e) <= tol + spread:
                    continue
                a, b = max(0, v - spread), min(255, v + spread)
                count = sum(hist[a:b + 1])
                left = sum(hist[max(0, a - 2 * spread - 1):a])
                right = sum(hist[b + 1:b + 2 + 2 * spread])
                if count <= best or count < 2 * left or count < 2 * right:
                    continue
                frames_in = [k for k in range(n) if a <= y[k, r, c] <= b]
                if 2 * count >= frames_in[-1] - frames_in[0] + 1:
                    best = count
            second[r, c] = best / n
    return below, second


def test_reliability_matches_reference_on_random_histories():
    rng = np.random.default_rng(5)
    n, h, w = 24, 3, 70
    frames = np.repeat(rng.integers(40, 200, (1, h, w, 1)), n, axis=0) + \
        rng.integers(-2, 3, (n, h, w, 1))
    frames = np.repeat(frames, 3, axis=3)
    rain = rng.random((n, h, w)) < 0.3
    frames[rain] += rng.integers(20, 120, (int(rain.sum()), 1))  # rain: spread-out brightening
    frames[14:, :, 20:40] -= 35  # a darker state over the last 10 frames (something arrived)
    frames[:, 1, 50:60][rng.random((n, 10)) < 0.5] = 250  # near saturation
    frames = np.clip(frames, 0, 255).astype(np.uint8)
    est = bg.estimate_background(frames)
    rel = bg.reliability_map(frames, est, tolerance=6, spread=3)
    below, second = ref_reliability(frames, est.image, 6, 3)
    np.testing.assert_allclose(rel.below, below, atol=1e-6)
    np.testing.assert_allclose(rel.second, second, atol=1e-6)
    # Eq. 4's low p (rain in 30 % of frames) picks the darker state there, so the earlier
    # state is the second population; either way the pixels are flagged.
    # (Where rain hid most of the darker frames the state cannot be told: a few pixels.)
    assert (np.maximum(rel.below, rel.second)[:, 20:40] >= 0.25).mean() > 0.9
    assert rel.reliable[:, :15].mean() > 0.85 and (~rel.reliable[:, 20:40]).mean() > 0.9
    # The same darker values scattered over time (not a held state) are no second population.
    scattered = frames.copy()
    scattered[:, :, 20:40] = frames[np.random.default_rng(0).permutation(n)][:, :, 20:40]
    brighter = scattered.copy()
    brighter[:, :, 20:40] = 255 - scattered[:, :, 20:40]
    rel_b = bg.reliability_map(brighter, bg.estimate_background(brighter), 6, 3)
    rel_held = bg.reliability_map(255 - frames, bg.estimate_background(255 - frames), 6, 3)
    assert rel_held.second[:, 20:40].mean() > 2 * rel_b.second[:, 20:40].mean()


def test_noise_sigma_recovers_gaussian_noise_under_rain():
    rng = np.random.default_rng(2)
    for sigma in (1.0, 3.0, 6.0):
        base = rng.uniform(60, 190, (1, 60, 60))
        frames = base + sigma * rng.standard_normal((30, 60, 60))
        frames[rng.random(frames.shape) < 0.4] += rng.uniform(20, 90)  # rain brightens
        frames = np.clip(np.rint(frames), 0, 255).astype(np.uint8)
        est = bg.estimate_background(frames)
        assert bg.noise_sigma(frames, est.mode) == pytest.approx(sigma, rel=0.25)


def test_reliability_flags_a_parked_object_but_not_rain():
    from spanetlib.synthesis.rain import CLIP_PRESETS, make_rain_clip

    spec = dict(size=(96, 128), n_frames=30)
    clip = make_rain_clip(CLIP_PRESETS["dense"].replace(**spec), 0)
    rel = bg.reliability_map(clip.frames, bg.estimate_background(clip.frames))
    assert rel.reliable_share > 0.8  # heavy rain alone is explained by rain
    clip = make_rain_clip(CLIP_PRESETS["parked-leaves"].replace(**spec), 0)
    rel = bg.reliability_map(clip.frames, bg.estimate_background(clip.frames))
    changed = np.abs(clip.state_truth(0, 0).astype(int) - clip.state_truth(1, 0)).max(2) > 30
    assert (~rel.reliable[changed]).mean() > 0.6  # where the object was, unreliable
    assert rel.reliable[~changed].mean() > 0.9


def test_reliability_errors():
    frames = np.zeros((4, 5, 6, 3), np.uint8)
    est = bg.estimate_background(frames)
    with pytest.raises(InputError, match=r"estimate: expected an image of shape \(5, 7, 3\)"):
        bg.reliability_map(np.zeros((4, 5, 7, 3), np.uint8), est)
    with pytest.raises(ValueError, match=r"limit: expected a share in \(0, 1\], got 0"):
        bg.reliability_map(frames, est, limit=0)
    with pytest.raises(ValueError, match=r"expected 0 <= tolerance <= 255"):
        bg.reliability_map(frames, est, tolerance=300, spread=2)


def test_every_other_frame_is_estimated_in_place_without_a_copy():
    import tracemalloc

    rng = np.random.default_rng(5)
    frames = rng.integers(0, 256, (40, 64, 96, 3), dtype=np.uint8)
    half = frames[::2]
    expected = bg.estimate_background(np.ascontiguousarray(half))
    bg.estimate_background(half)  # compile the kernels for this layout first
    tracemalloc.start()
    try:
        got = bg.estimate_background(half)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    np.testing.assert_array_equal(got.image, expected.image)
    assert got.rank == expected.rank
    # the outputs (a few float32 images) but not a copy of the frames (or it would be over)
    assert peak < half.nbytes, (peak, half.nbytes)
