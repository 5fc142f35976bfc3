"""The no-reference quality score of a clip estimate.

`scene_quality`: a no-reference quality score of a clip estimate
(`spanetlib.pipeline.clip_estimate.estimate_clip`), which the paper names as open work (no metric
judges a generated rain-free image without a clean reference). It predicts the estimate's
PSNR against the unseen truth from what the frames offer, period by period:

* **rain and noise left**: the estimates of the period's even and odd frames differ where
  one kept rain (or noise) the other did not (`SegmentEvidence.half_difference`);
* **resampling**: warped frames lose fine texture, so their estimate keeps less of it than
  the (never warped) reference frame shows where no rain falls on it, for the share of
  warped frames;
* **smear**: how far the aligned frames still sit from the estimate (an affine
  displacement fitted per frame, pixels RMS: registered wrongly, or moved and not warped)
  times the estimate's gradient;
* **veil**: a haze-like veil of rain that varies from frame to frame makes each frame's
  luminance ``a_i Y + b_i`` of the estimate's with ``b_i = A (1 - a_i)`` for a bright
  airlight ``A``; the clearest frames (90th percentile of ``a_i``) show the estimate keeps
  at least ``(a - 1) |Y - A|`` of it (a veil of the same strength in every frame leaves no
  such trace and is not seen);

as errors in levels that add in power (`QualityModel`), the worst period deciding. The
score is a logistic of the predicted PSNR around `QualityModel.target_psnr` (40 dB). A
scene is accepted at `QUALITY_ACCEPT_THRESHOLD` (a predicted 42 dB) unless a period's
frames moved unwarped, a veil is seen, a period used fewer than 8 frames (halves of 4), or
no period has an estimate. The other cues (reliability, sharpness, streak energy, frames
against the paper's N, registration residual) are reported, not scored: on the fit clips
none tracks what the four terms miss (the benchmark reports their rank correlation with the
prediction error). ``benchmarks/bench_quality.py`` fits the model's gains and the threshold
on some seeds and photos and reports on others.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import cv2
import numpy as np

from spanetlib.io.checks import check_int
from spanetlib.io.files import round_to_uint8
from spanetlib.pipeline.clip_estimate import ClipEstimate
from spanetlib.pipeline.selection import FRAME_COUNTS, RAIN_DELTA, density_of_fraction

__all__ = [
    "QUALITY_ACCEPT_THRESHOLD",
    "QUALITY_MODEL",
    "QualityModel",
    "SceneQuality",
    "period_cues",
    "quality_from_cues",
    "scene_quality",
]


@dataclass(frozen=True)
class QualityModel:
    """How `quality_from_cues` turns a period's cues into a predicted PSNR and a score.

    Every failure the frames can show becomes an error in luminance levels (0..255); errors
    add in power, and the worst period decides::

        E = floor^2 + (rain_gain split_half_rms)^2 + (warp_gain warped_share detail_loss)^2
            + (smear_gain residual_motion_px gradient_rms)^2 + veil_rms^2
        predicted_psnr = 10 log10(255^2 / E)
        score = 1 / (1 + exp(-(predicted_psnr - target_psnr) / width))

    The gains are fitted by ``benchmarks/bench_quality.py --fit`` on synthetic clips of
    seeds and photos that its report leaves out; the veil enters at its lower bound (gain 1).

    Attributes:
        floor: error (levels RMS) of an estimate nothing went wrong with (quantization, the
            percentile's noise, rain too faint to tell).
        rain_gain: error of the estimate per level RMS of difference between the two half
            estimates (rain or noise left; the full estimate, from twice the frames, keeps
            less than either half).
        warp_gain: error per level of fine detail the estimate lost against a frame
            (``detail_loss``), times the share of warped frames (resampling softens the
            estimate; the half-pixel round trip that measures it sees part of the loss).
        smear_gain: error per pixel of residual motion (aligned frames against the estimate)
            per level-per-pixel of gradient.
        target_psnr: predicted PSNR (dB) that gives score 0.5.
        width: dB per logistic unit of the score.
        veil_limit: a period whose veil error (levels RMS, lower bound) exceeds this is
            refused whatever its score.
        min_frames: a period estimated from fewer frames is refused whatever its score: its
            halves hold fewer than ``min_frames // 2`` frames each, too few for their
            disagreement to say much (the score still ranks it).
    """

    floor: float = 0.807
    rain_gain: float = 0.456
    warp_gain: float = 3.30
    smear_gain: float = 0.752
    target_psnr: float = 40.0
    width: float = 2.5
    veil_limit: float = 1.5
    min_frames: int = 8

    def __post_init__(self) -> None:
        check_int("QualityModel.min_frames", self.min_frames, minimum=2)
        for name in ("floor", "rain_gain", "warp_gain", "smear_gain", "width", "veil_limit"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) \
                    or not math.isfinite(value) or value < 0 or (name == "width" and value == 0):
                raise ValueError(f"QualityModel.{name}: expected a finite number >= 0 (width "
                                 f"> 0), got {value!r}")
        if not math.isfinite(self.target_psnr):
            raise ValueError(f"QualityModel.target_psnr: expected a finite number, got "
                             f"{self.target_psnr!r}")

    def errors(self, cues: Mapping[str, float]) -> dict[str, float]:
        """Error terms (levels RMS) of one period's cues (see `period_cues`)."""
        return {
            "err_floor": self.floor,
            "err_rain": self.rain_gain * cues["split_half_rms"],
            "err_warp": self.warp_gain * cues["warped_share"] * cues["detail_loss"],
            "err_smear": self.smear_gain * cues["residual_motion_px"] * cues["gradient_rms"],
            "err_veil": cues["veil_rms"],
        }

    def predicted_psnr(self, errors: Mapping[str, float]) -> float:
        """PSNR (dB, peak 255) of the error terms added in power."""
        power = sum(v * v for v in errors.values())
        return 10.0 * math.log10(255.0 ** 2 / max(power, 1e-6))

    def score(self, predicted_psnr: float) -> float:
        """The score in [0, 1] of a predicted PSNR (monotone; 0.5 at ``target_psnr``)."""
        z = (predicted_psnr - self.target_psnr) / self.width
        return float(1.0 / (1.0 + math.exp(-min(max(z, -60.0), 60.0))))


#: The fitted model (``benchmarks/bench_quality.py --fit``; see its docstring for the split).
QUALITY_MODEL = QualityModel()


#: `SceneQuality.score` at or above which a scene is accepted: a predicted PSNR of 42 dB,
#: 40 dB plus 1.645 times the prediction's spread on the fit clips (one-sided 95 %; the
#: benchmark ``benchmarks/bench_quality.py --fit`` reports the spread).
QUALITY_ACCEPT_THRESHOLD = 0.69


@dataclass(frozen=True)
class SceneQuality:
    """A no-reference judgement of a clip estimate (see `scene_quality`).

    Attributes:
        score: in [0, 1], monotone in the predicted PSNR of the scene's worst period.
        cues: cue name -> finite float: the worst period's cues (`period_cues`), its error
            terms (``err_*``, levels RMS) and ``predicted_psnr`` (dB), and for the scene
            ``periods``, ``paired_share`` and ``worst_period``.
        accept: whether a batch review may accept the scene without a person.
        reasons: short strings saying why it was not accepted (empty when accepted).
        period_scores: the score of every period, in time order.
        period_reasons: per period, in time order, why that period alone would not be
            accepted (empty for a period that would: `accepted_periods`).
    """

    score: float
    cues: dict[str, float]
    accept: bool
    reasons: list[str] = field(default_factory=list)
    period_scores: tuple[float, ...] = ()
    period_reasons: tuple[tuple[str, ...], ...] = ()

    @property
    def accepted_periods(self) -> list[int]:
        """The periods that would be accepted on their own, in time order."""
        return [k for k, why in enumerate(self.period_reasons) if not why]


_PERIOD_CUES = ("frames", "aligned", "noise_sigma", "split_half_rms", "split_half_changed",
                "sharpness", "gradient_rms", "warp_loss", "detail_loss", "warped_share",
                "misregistration_px", "residual_motion_px",
                "veil_gain", "veil_level", "veil_rms", "reliable_share", "rain_fraction",
                "clean_frames", "paper_frames_ratio", "streak_energy",
                "registration_residual")


def period_cues(estimate: ClipEstimate, segment: int) -> dict[str, float]:
    """The quality cues of one period of a clip estimate (all finite floats).

    From the period's `spanetlib.pipeline.clip_estimate.SegmentEvidence` and its estimate:

    - ``frames``: frames the estimate used; ``aligned``: 1 if its unwarped frames sit
      together, else 0; ``noise_sigma``: luminance noise (levels);
    - ``split_half_rms``: RMS (levels) of the half estimates' difference over the valid
      region; ``split_half_changed``: share of it beyond `RAIN_DELTA` (the paper-rule
      statistic of `split_half_change`, on interleaved halves); 255 and 1 when a half is
      empty;
    - ``sharpness``, ``gradient_rms``, ``warp_loss``, ``warped_share``,
      ``misregistration_px``, ``rain_fraction``, ``streak_energy``: as in the evidence;
      ``residual_motion_px``: RMS over the fitted frames of ``m_i`` (``frame_fit``: how far
      aligned frames still sit from the estimate, pixels);
      ``detail_loss``: ``frame_warp_loss - warp_loss`` (levels, at least 0): fine detail of
      the reference frame the estimate lacks;
    - ``veil_gain``: 90th percentile of the frames' contrast gains over the estimate, less 1;
      ``veil_level``: the fixed point ``A`` of ``b_i = A (1 - a_i)`` (0 when the gains do not
      vary by 0.2 %); ``veil_rms``: ``veil_gain`` times the RMS of ``Y - A`` over the valid
      region when ``A`` is brighter than the estimate's median luminance (a veil: contrast
      lost towards a bright level), else 0;
    - ``reliable_share``: share of the valid region the reliability map trusts;
    - ``clean_frames``: ``frames (1 - rain_fraction)``, rain-free samples per pixel;
      ``paper_frames_ratio``: ``frames`` over the paper's N for the density the rain
      fraction reads as (`FRAME_COUNTS`);
    - ``registration_residual``: median registration residual of the used frames over
      ``noise_sigma`` (0 when the motion was given, not measured).

    Raises:
        ValueError: a bad segment index, or a period without evidence (``estimate_clip`` ran
            with ``quality=False``).
    """
    segments = estimate.segments
    if isinstance(segment, bool) or not isinstance(segment, (int, np.integer)) \
            or not 0 <= segment < len(segments):
        raise ValueError(f"segment: expected an int in [0, {len(segments)}), got {segment!r}")
    seg = segments[segment]
    ev = seg.evidence
    if ev is None:
        raise ValueError("the estimate has no quality evidence: run estimate_clip(..., "
                         "quality=True)")
    inside = seg.valid if seg.valid.any() else np.ones_like(seg.valid)
    diff = ev.half_difference[inside]
    diff = diff[np.isfinite(diff)]
    split_rms = float(np.sqrt(np.mean(diff.astype(np.float64) ** 2))) if diff.size else 255.0
    split_changed = float(np.mean(np.abs(diff) > 255.0 * RAIN_DELTA)) if diff.size else 1.0
    luma = cv2.cvtColor(round_to_uint8(seg.image),
                        cv2.COLOR_RGB2GRAY)[inside].astype(np.float64)
    gains, offsets = ev.frame_fit[:, 0], ev.frame_fit[:, 1]
    shifts = ev.frame_fit[:, 2]
    veil_gain = float(np.percentile(gains, 90)) - 1.0 if len(gains) else 0.0
    level, veil = 0.0, 0.0
    if len(gains) >= 3 and float(np.std(gains)) > 0.002:
        level = float(np.polyfit(1.0 - gains, offsets, 1)[0])
        if level > float(np.median(luma)) and veil_gain > 0:
            veil = veil_gain * float(np.sqrt(np.mean((luma - level) ** 2)))
    residual = estimate.motion.residual[seg.frames]
    residual = residual[np.isfinite(residual)]
    frames = len(seg.frames)
    cues = {
        "frames": float(frames),
        "aligned": float(seg.aligned),
        "noise_sigma": float(seg.noise_sigma),
        "split_half_rms": split_rms,
        "split_half_changed": split_changed,
        "sharpness": ev.sharpness,
        "gradient_rms": ev.gradient_rms,
        "warp_loss": ev.warp_loss,
        "detail_loss": max(0.0, ev.frame_warp_loss - ev.warp_loss),
        "warped_share": ev.warped_share,
        "misregistration_px": ev.misregistration_px,
        "residual_motion_px": float(np.sqrt(np.mean(shifts ** 2))) if shifts.size else 0.0,
        "veil_gain": veil_gain,
        "veil_level": level,
        "veil_rms": veil,
        "reliable_share": float(seg.reliability.reliable[inside].mean()),
        "rain_fraction": ev.rain_fraction,
        "clean_frames": frames * (1.0 - ev.rain_fraction),
        "paper_frames_ratio": frames / FRAME_COUNTS[density_of_fraction(ev.rain_fraction)],
        "streak_energy": ev.streak_energy,
        "registration_residual": float(np.median(residual)) / max(seg.noise_sigma, 0.5)
        if residual.size else 0.0,
    }
    return {k: float(np.nan_to_num(v, nan=0.0, posinf=255.0, neginf=-255.0))
            for k, v in cues.items()}


def _check_threshold(threshold: float) -> float:
    if isinstance(threshold, bool) or not isinstance(threshold, (int, float)) \
            or not 0.0 <= threshold <= 1.0:
        raise ValueError(f"threshold: expected a score in [0, 1], got {threshold!r}")
    return float(threshold)


def _why(cues: Mapping[str, float], model: QualityModel) -> str:
    """The main reason a period's predicted PSNR is low: its largest error term."""
    terms = {k: cues[k] for k in ("err_rain", "err_warp", "err_smear", "err_veil")}
    worst = max(terms, key=terms.get)
    if terms[worst] <= cues["err_floor"]:
        return "noise"
    return {
        "err_rain": f"rain or noise left (half estimates differ by {cues['split_half_rms']:.1f}"
                    " levels RMS; add frames)",
        "err_warp": f"resampling softened it ({cues['detail_loss']:.2f} levels of fine detail "
                    "lost against a frame)",
        "err_smear": f"smear (aligned frames still {cues['residual_motion_px']:.2f} px RMS off "
                     "the estimate)",
        "err_veil": f"haze-like veil ({cues['veil_rms']:.1f} levels RMS at least)",
    }[worst]


def quality_from_cues(periods: Sequence[Mapping[str, float]], paired_share: float,
                      model: QualityModel = QUALITY_MODEL,
                      threshold: float = QUALITY_ACCEPT_THRESHOLD) -> SceneQuality:
    """Judge a scene from its periods' cues (`period_cues`): the core of `scene_quality`.

    Each period's error terms (`QualityModel.errors`) give its predicted PSNR and score; the
    scene takes the worst period's. The scene is accepted when that score reaches
    ``threshold``, every period's frames were aligned, no period shows a veil beyond
    ``model.veil_limit`` and every period used at least ``model.min_frames`` frames.

    Args:
        periods: one mapping of `period_cues` per period, in time order.
        paired_share: share of the clip's frames paired with a clean image.
        model: the `QualityModel`.
        threshold: the accepting score, in [0, 1].

    Returns:
        A `SceneQuality`.

    Raises:
        ValueError: a bad threshold or paired share, or a period missing a cue.
    """
    threshold = _check_threshold(threshold)
    if not 0.0 <= paired_share <= 1.0:
        raise ValueError(f"paired_share: expected a share in [0, 1], got {paired_share!r}")
    if not periods:
        return SceneQuality(score=0.0, cues={"periods": 0.0, "paired_share": paired_share},
                            accept=False,
                            reasons=["no stable period with enough frames for an estimate"])
    judged = []
    for k, raw in enumerate(periods):
        missing = [name for name in _PERIOD_CUES if name not in raw]
        if missing:
            raise ValueError(f"period {k}: missing cue(s) {missing}")
        cues = {name: float(raw[name]) for name in _PERIOD_CUES}
        cues.update(model.errors(cues))
        cues["predicted_psnr"] = model.predicted_psnr(
            {k2: v for k2, v in cues.items() if k2.startswith("err_")})
        judged.append(cues)
    scores = tuple(model.score(c["predicted_psnr"]) for c in judged)
    worst = int(np.argmin([c["predicted_psnr"] for c in judged]))
    cues = {**judged[worst], "periods": float(len(judged)), "paired_share": float(paired_share),
            "worst_period": float(worst)}
    score = scores[worst]
    period_reasons = []
    for k, c in enumerate(judged):
        why = []
        if not c["aligned"]:
            why.append(f"frames moved {c['misregistration_px']:.1f} px against each other and "
                       "were not aligned")
        if c["frames"] < model.min_frames:
            why.append(f"only {c['frames']:.0f} frames (at least {model.min_frames} for an "
                       "unattended accept)")
        if c["veil_rms"] > model.veil_limit:
            why.append(f"haze-like veil: frames lose contrast towards level "
                       f"{c['veil_level']:.0f}; the estimate keeps at least "
                       f"{c['veil_rms']:.1f} levels RMS of it")
        if scores[k] < threshold:
            why.append(f"predicted {c['predicted_psnr']:.1f} dB (score {scores[k]:.2f} < "
                       f"{threshold:.2f}): {_why(c, model)}")
        period_reasons.append(tuple(why))
    where = (lambda k: f"period {k}: ") if len(judged) > 1 else (lambda k: "")
    reasons = [where(k) + why for k, whys in enumerate(period_reasons) for why in whys]
    return SceneQuality(score=score, cues=cues, accept=not reasons, reasons=reasons,
                        period_scores=scores, period_reasons=tuple(period_reasons))


def scene_quality(estimate: ClipEstimate, model: QualityModel = QUALITY_MODEL,
                  threshold: float = QUALITY_ACCEPT_THRESHOLD) -> SceneQuality:
    """A no-reference quality score of a clip estimate, and whether to accept it unseen.

    See the module docstring for what is measured; `quality_from_cues` for the decision.
    ``benchmarks/bench_quality.py`` validates it against the truth of synthetic clips
    (Spearman correlation with the true PSNR, precision and recall of ``accept`` for "true
    PSNR >= 40 dB").

    Args:
        estimate: a `spanetlib.pipeline.clip_estimate.ClipEstimate` made with ``quality=True`` (the
            default of ``estimate_clip``).
        model: the `QualityModel`.
        threshold: the accepting score, in [0, 1] (default `QUALITY_ACCEPT_THRESHOLD`).

    Returns:
        A `SceneQuality`.

    Raises:
        TypeError: not a clip estimate.
        ValueError: a bad threshold, or an estimate made with ``quality=False``.
    """
    if not hasattr(estimate, "segments") or not hasattr(estimate, "membership"):
        raise TypeError(f"estimate: expected a ClipEstimate (spanetlib.pipeline.clip_estimate."
                        f"estimate_clip), got {type(estimate).__name__}")
    threshold = _check_threshold(threshold)
    periods = [period_cues(estimate, k) for k in range(len(estimate.segments))]
    paired = float((np.asarray(estimate.membership) >= 0).mean())
    return quality_from_cues(periods, paired, model, threshold)
