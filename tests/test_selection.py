"""The paper's selection rules: N per density, frames per rejection, density guess, split halves."""

from __future__ import annotations

import numpy as np
import pytest

from spanetlib.pipeline.selection import (
    AUTO_THRESHOLD,
    DENSITIES,
    FRAME_COUNTS,
    REJECT_INCREMENT,
    guess_density,
    passes_split_half,
    rain_fraction,
    split_half_change,
)
from spanetlib.synthesis.rain import BACKGROUND_NAMES, load_background, make_rain_video
from spanetlib.synthesis.testsets import _random_crop


def test_paper_frame_counts():
    assert FRAME_COUNTS == {"sparse": 20, "normal": 100, "dense": 200}
    assert REJECT_INCREMENT == {"sparse": 10, "normal": 20, "dense": 50}


def test_guess_density_on_synthetic_presets():
    hits = {}
    for density in ("sparse", "normal", "dense"):
        hits[density] = 0
        for seed in range(5):
            background = _random_crop(load_background(BACKGROUND_NAMES[seed + 2]), (64, 96),
                                      np.random.default_rng(seed))
            video = make_rain_video(background, 20, density=density, seed=100 + seed)
            hits[density] += guess_density(video.frames) == density
    assert all(h >= 4 for h in hits.values()), hits
    # a given background instead of an estimate, and float frames
    video = make_rain_video(load_background("coffee", (48, 64)), 10, density="dense", seed=1)
    assert guess_density(video.frames.astype(np.float32) / 255,
                         video.clean.astype(np.float32) / 255) == "dense"


def test_rain_fraction_counts_brightened_pixels():
    background = np.full((10, 10, 3), 0.5, np.float32)
    frames = np.stack([background] * 2)
    frames[0, :2] += 0.2   # 20 % of frame 0, well above RAIN_DELTA
    frames[1, 0, :5] += 0.01  # 5 % of frame 1, below RAIN_DELTA: noise
    assert rain_fraction(frames, background) == pytest.approx(0.1)
    assert rain_fraction(frames, background, delta=0.005) == pytest.approx((0.2 + 0.05) / 2)
    darker = np.stack([background - 0.3])
    assert rain_fraction(darker, background) == 0.0  # rain only brightens
    with pytest.raises(ValueError, match="does not match frames"):
        rain_fraction(frames, background[:5])


def test_rain_fraction_of_uint8_frames_is_the_channel_mean_test_exactly():
    # The uint8 path (a per-pixel threshold on the channel sum) against the definition
    # written out: float32 channel mean / 255 minus the background's, above delta. Every
    # channel sum and backgrounds on and between the levels, where rounding decides.
    rng = np.random.default_rng(3)
    frames = rng.integers(0, 256, (4, 24, 32, 3), dtype=np.uint8)
    frames[0, 0, :4] = [[0, 0, 0], [255, 255, 255], [12, 0, 0], [255, 255, 254]]
    backgrounds = [rng.integers(0, 256, (24, 32, 3), dtype=np.uint8),
                   rng.uniform(0, 255, (24, 32, 3)).astype(np.float32),
                   frames[1].astype(np.float64) + 4.0, np.full((24, 32, 3), 300.0)]

    def by_definition(bg, delta):
        bg_lum = np.asarray(bg).astype(np.float32).mean(axis=2) / 255.0
        return float(np.mean([np.mean(f.astype(np.float32).mean(axis=2) / 255.0 - bg_lum
                                      > delta) for f in frames]))

    for bg in backgrounds:
        for delta in (12 / 255, 4 / 255, 0.0, -0.5, 1.5):
            assert rain_fraction(frames, bg, delta) == pytest.approx(by_definition(bg, delta),
                                                                     rel=1e-12, abs=0)


def test_split_half_change_and_the_acceptance_rule():
    video = make_rain_video(load_background("coffee", (48, 64)), 60, density="dense", seed=3)
    assert DENSITIES == ("sparse", "normal", "dense")
    few, some = split_half_change(video.frames[:4]), split_half_change(video.frames[:20])
    assert 0.0 < some < few  # more frames: the halves agree better
    assert passes_split_half(video.frames) and split_half_change(video.frames) <= AUTO_THRESHOLD
    assert not passes_split_half(video.frames[:20]) and some > AUTO_THRESHOLD
    assert passes_split_half(video.frames[:4], threshold=1.0)
    assert not passes_split_half(video.frames[:4], threshold=few / 2)
    assert not passes_split_half(video.frames[:3], threshold=1.0)  # too few to check
    static = np.repeat(video.clean[None], 6, axis=0)
    assert split_half_change(static) == 0.0
    with pytest.raises(ValueError, match="needs at least 4 frames"):
        split_half_change(np.zeros((3, 4, 4, 3), np.uint8))
