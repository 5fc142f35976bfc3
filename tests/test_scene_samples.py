"""A frame's background where only some frames of its period see the scene (a moving camera)."""

from __future__ import annotations

import numpy as np
import pytest

from spanetlib.derain.scene_samples import MIN_COVER, fill_uncovered, iter_scene_samples
from spanetlib.pipeline.clip_estimate import estimate_clip, frame_valid_region
from spanetlib.synthesis.rain import CLIP_PRESETS, make_rain_clip


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    return float(10 * np.log10(255.0 ** 2 / np.mean((a.astype(np.float64) - b) ** 2)))


@pytest.fixture(scope="module")
def pan():
    """A 16-frame pan of 30 pixels, its estimate (one period), and each frame's estimate."""
    clip = make_rain_clip(CLIP_PRESETS["pan"].replace(size=(64, 96), n_frames=16), seed=0)
    estimate = estimate_clip(clip.frames, "auto", quality=False)
    assert len(estimate.segments) == 1 and (estimate.membership == 0).all()
    rendered = [(estimate.clean_for_frame(i, 0),
                 frame_valid_region(estimate.segments[0].valid, estimate.motion, i,
                                    bool(estimate.warped[i])))
                for i in range(len(clip.frames))]
    return clip, estimate, rendered


def test_the_frames_that_see_a_border_give_its_background(pan):
    clip, estimate, rendered = pan
    filled_err, rain_err, inside_err = [], [], []
    for i, (clean, valid) in enumerate(rendered):
        assert not valid.all()  # the pan: every frame has pixels some frames do not see
        out, grown = fill_uncovered(clean, valid, clip.frames, estimate, i, 0)
        assert (grown >= valid).all() and (out[valid] == clean[valid]).all()
        band = grown & ~valid
        filled_err.append((out[band].astype(np.float64) - clip.truth[i][band]) ** 2)
        rain_err.append((clip.frames[i][band].astype(np.float64) - clip.truth[i][band]) ** 2)
        inside_err.append((clean[valid].astype(np.float64) - clip.truth[i][valid]) ** 2)
        # A frame in the middle of the pan sees both sides: most of its border is filled.
        if i == len(rendered) // 2:
            assert band.sum() > 0.8 * (~valid).sum()
    filled, rain, inside = (10 * np.log10(255.0 ** 2 / np.concatenate(e).mean())
                            for e in (filled_err, rain_err, inside_err))
    # The rain is gone there, about as well as where every frame sees the scene (a
    # percentile of fewer samples is a little noisier).
    assert filled > rain + 10.0, (filled, rain)
    assert filled > inside - 3.0, (filled, inside)


def test_a_point_too_few_frames_see_keeps_no_background(pan):
    clip, estimate, rendered = pan
    n_used = len(estimate.segments[0].frames)
    clean, valid = rendered[0]
    out, grown = fill_uncovered(clean, valid, clip.frames, estimate, 0, 0,
                                min_cover=n_used + 1)
    assert out is clean and grown is valid
    # A frame mostly outside its period's valid region is no band to fill: left as it is.
    small = np.zeros_like(valid)
    small[: valid.shape[0] // 2, : valid.shape[1] // 2] = True
    assert fill_uncovered(clean, small, clip.frames, estimate, 0, 0)[1] is small
    # Fewer frames required, more pixels filled; the default fills a part of what one does.
    sizes = [fill_uncovered(clean, valid, clip.frames, estimate, 0, 0, min_cover=m)[1].sum()
             for m in (1, MIN_COVER, n_used)]
    assert sizes[0] > sizes[1] > sizes[2] >= valid.sum()
    # The frame's own corner far from where the camera went: no other frame sees it.
    h, w = valid.shape
    far = (slice(0, 4), slice(0, 4)) if not grown[:4, :4].all() else (slice(h - 4, h),
                                                                       slice(w - 4, w))
    assert not grown[far].all()


def test_scene_samples_read_the_same_scene_point(pan):
    clip, estimate, _ = pan
    ys, xs = np.mgrid[20:40, 40:56]
    ys, xs = ys.ravel(), xs.ravel()
    used = np.arange(len(clip.frames))
    samples = np.stack([value for _, _, _, value in
                        iter_scene_samples(ys, xs, clip.truth, estimate, 8, used)])
    # The rain-free frames seen through the registration agree with frame 8 itself.
    assert _psnr(samples, np.broadcast_to(clip.truth[8][ys, xs], samples.shape)) > 30.0
