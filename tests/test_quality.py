"""The no-reference quality score of clip estimates (quality.scene_quality), against truth."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pandas as pd
import pytest

from spanetlib.paper.figures import plot_quality_validation
from spanetlib.pipeline.clip_estimate import SegmentEvidence, estimate_clip
from spanetlib.pipeline.quality import (
    QUALITY_ACCEPT_THRESHOLD,
    QUALITY_MODEL,
    QualityModel,
    SceneQuality,
    period_cues,
    quality_from_cues,
    scene_quality,
)
from spanetlib.synthesis.rain import CLIP_PRESETS, make_rain_clip

SIZE = (72, 96)


def _quality(name: str, align: str = "auto", seed: int = 0, **changes) -> SceneQuality:
    spec = CLIP_PRESETS[name].replace(**{"size": SIZE, "n_frames": 30, **changes})
    return scene_quality(estimate_clip(make_rain_clip(spec, seed).frames, align))


@pytest.fixture(scope="module")
def static_estimate():
    spec = CLIP_PRESETS["static"].replace(size=SIZE, n_frames=30)
    return estimate_clip(make_rain_clip(spec, 0).frames)


@pytest.fixture(scope="module")
def judged(static_estimate):
    """The good static clip and the same scene gone wrong in three ways."""
    return {
        "good": scene_quality(static_estimate),
        "few frames": _quality("static", n_frames=5),
        "hazy": _quality("static", haze=0.2),
        "moving, align off": _quality("handheld", align="off"),
        "moving, align auto": _quality("handheld"),
    }


def test_good_clip_is_accepted_and_ranked_above_every_failure(judged):
    good = judged["good"]
    assert good.accept and not good.reasons and good.score >= QUALITY_ACCEPT_THRESHOLD
    for name in ("few frames", "hazy", "moving, align off"):
        assert judged[name].score < good.score, name
        assert not judged[name].accept and judged[name].reasons, name
    # Alignment puts the moving clip back above its unaligned self.
    assert judged["moving, align auto"].score > judged["moving, align off"].score


def test_reasons_name_the_failure(judged):
    assert any("veil" in r for r in judged["hazy"].reasons), judged["hazy"].reasons
    off = judged["moving, align off"].reasons
    assert any("not aligned" in r or "no stable period" in r for r in off), off
    assert any("frames" in r for r in judged["few frames"].reasons)
    assert judged["hazy"].cues["veil_rms"] > QUALITY_MODEL.veil_limit
    assert judged["good"].cues["veil_rms"] <= QUALITY_MODEL.veil_limit


def test_cues_are_finite_floats_and_scores_in_range(judged):
    for name, quality in judged.items():
        assert 0.0 <= quality.score <= 1.0, name
        assert quality.cues, name
        for key, value in quality.cues.items():
            assert isinstance(value, float) and math.isfinite(value), (name, key, value)
        assert all(0.0 <= s <= 1.0 for s in quality.period_scores)
        if quality.period_scores:
            assert quality.score == min(quality.period_scores)


def test_scene_quality_is_quality_from_cues(static_estimate):
    cues = [period_cues(static_estimate, k) for k in range(len(static_estimate.segments))]
    a = scene_quality(static_estimate)
    b = quality_from_cues(cues, float((static_estimate.membership >= 0).mean()))
    assert a == b
    # A stricter threshold refuses the same scene, naming the score.
    strict = scene_quality(static_estimate, threshold=1.0)
    assert not strict.accept and any("score" in r for r in strict.reasons)


def test_evidence_is_measured_and_optional(static_estimate):
    seg = static_estimate.segments[0]
    ev = seg.evidence
    assert isinstance(ev, SegmentEvidence)
    assert ev.half_difference.shape == SIZE and ev.frame_fit.shape[1] == 3
    # A static clip: gains 1, frames where the estimate is, halves that agree up to noise.
    assert np.allclose(ev.frame_fit[:, 0], 1.0, atol=0.02)
    assert ev.frame_fit[:, 2].max() < 0.05 and ev.misregistration_px < 0.1
    assert np.sqrt(np.nanmean(ev.half_difference ** 2)) < 3.0
    plain = estimate_clip(make_rain_clip(CLIP_PRESETS["static"].replace(size=SIZE, n_frames=30),
                                         0).frames, quality=False)
    assert plain.segments[0].evidence is None
    np.testing.assert_array_equal(plain.segments[0].image, seg.image)  # same estimate
    with pytest.raises(ValueError, match="no quality evidence"):
        scene_quality(plain)


def test_model_score_is_monotone_and_errors_add_in_power():
    model = QUALITY_MODEL
    psnrs = np.linspace(20, 60, 81)
    scores = np.array([model.score(p) for p in psnrs])
    assert np.all(np.diff(scores) > 0) and scores[0] >= 0 and scores[-1] <= 1
    assert model.score(model.target_psnr) == pytest.approx(0.5)
    errors = {"a": 3.0, "b": 4.0}
    assert model.predicted_psnr(errors) == pytest.approx(20 * math.log10(255 / 5.0))


def test_no_period_is_refused():
    quality = quality_from_cues([], 0.0)
    assert quality.score == 0.0 and not quality.accept
    assert quality.reasons == ["no stable period with enough frames for an estimate"]


def test_argument_errors(static_estimate):
    with pytest.raises(TypeError, match="expected a ClipEstimate"):
        scene_quality(np.zeros((4, 8, 8, 3), np.uint8))
    with pytest.raises(ValueError, match=r"threshold: expected a score in \[0, 1\], got 2"):
        scene_quality(static_estimate, threshold=2)
    with pytest.raises(ValueError, match=r"segment: expected an int in \[0, 1\), got 3"):
        period_cues(static_estimate, 3)
    cues = period_cues(static_estimate, 0)
    del cues["split_half_rms"]
    with pytest.raises(ValueError, match=r"period 0: missing cue\(s\) \['split_half_rms'\]"):
        quality_from_cues([cues], 1.0)
    with pytest.raises(ValueError, match=r"paired_share: expected a share in \[0, 1\]"):
        quality_from_cues([], 1.5)
    with pytest.raises(ValueError, match=r"QualityModel.rain_gain: expected a finite number"):
        QualityModel(rain_gain=-1.0)
    with pytest.raises(ValueError, match=r"QualityModel.min_frames: expected an int >= 2"):
        dataclasses.replace(QUALITY_MODEL, min_frames=1)


def test_plot_quality_validation(tmp_path):
    table = pd.DataFrame({
        "split": ["report", "report", "report", "fit"],
        "preset": ["static", "haze", "pan", "static"],
        "true_psnr": [48.0, 18.0, float("nan"), 47.0],
        "score": [0.95, 0.02, 0.0, 0.9],
        "accept": [True, False, False, True],
    })
    csv = tmp_path / "quality.csv"
    table.to_csv(csv, index=False)
    out = tmp_path / "quality.png"
    fig = plot_quality_validation(csv, path=out)
    assert out.stat().st_size > 1000
    assert "1 clip(s) without an estimate" in fig.axes[0].get_title()
    with pytest.raises(ValueError, match=r"missing column\(s\) \['score'\]"):
        plot_quality_validation(table.drop(columns="score"))
    with pytest.raises(ValueError, match="no row of split 'other'"):
        plot_quality_validation(table, split="other")


def test_each_period_is_judged_on_its_own(static_estimate):
    good = period_cues(static_estimate, 0)
    short = {**good, "frames": 5.0}
    quality = quality_from_cues([short, good], 0.9)
    assert not quality.accept and quality.accepted_periods == [1]
    assert quality.period_reasons[1] == () and len(quality.period_reasons[0]) == 1
    assert "only 5 frames" in quality.period_reasons[0][0]
    # The scene's reasons are the periods', named.
    assert quality.reasons == [f"period 0: {quality.period_reasons[0][0]}"]
    alone = quality_from_cues([good], 1.0)
    assert alone.accept and alone.accepted_periods == [0] and alone.reasons == []
    assert quality_from_cues([], 0.0).accepted_periods == []
