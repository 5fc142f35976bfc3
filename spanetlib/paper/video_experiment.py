"""The video-deraining experiment (notebook 08): the hybrid against its parts on generated clips.

Generated rain clips with their truth (`spanetlib.synthesis.rain`) are derained three ways by
`spanetlib.derain.video.derain_clip` (``hybrid``, ``temporal``, per-frame ``spanet``) and
scored against the truth: PSNR over the clip, inside moving objects, and temporal stability.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from spanetlib.derain.video import (
    DEFAULT_WINDOW,
    MIN_FRAMES,
    ClipDerain,
    crop_context,
    derain_clip,
)
from spanetlib.evaluation.evaluate import write_table
from spanetlib.evaluation.metrics import psnr_from_mse
from spanetlib.pipeline.alignment import motion_displacement

__all__ = [
    "ClipScores",
    "Comparison",
    "GAIN_GOAL_DB",
    "OBJECT_TOLERANCE_DB",
    "STEADY_CAMERA_PX",
    "best_spanet_weights",
    "compare_methods",
    "describe_clips",
    "goal_summary",
    "goal_verdicts",
    "methods_caption",
    "methods_view",
    "score_clip",
    "show_frames",
    "side_by_side_rows",
    "synthetic_clips",
    "write_methods_table",
]


@dataclass(frozen=True)
class ClipScores:
    """How close derained frames are to the rain-free truth.

    Attributes:
        psnr: mean over frames of each frame's PSNR (dB, RGB, peak 255, all pixels).
        object_psnr: PSNR (dB) over every pixel of every frame inside the moving objects,
            pooled (one MSE); NaN for a clip without moving objects.
        temporal_change: mean absolute change (levels) between consecutive output frames
            over still pixels (the truth changes by at most 1 level in every channel and no
            object covers them in either frame): 0 for a perfectly stable result.
        truth_change: the same for the truth itself (the floor; at most 1).
        overlay_psnr: PSNR (dB) pooled over the pixels of graphics fixed to the frame (logos,
            timestamps: ``overlay_mask``); NaN without.
        bright_psnr: PSNR (dB) pooled over bright content that moves (sky through foliage,
            lights: ``bright_mask``); NaN without.
    """

    psnr: float
    object_psnr: float
    temporal_change: float
    truth_change: float
    overlay_psnr: float = float("nan")
    bright_psnr: float = float("nan")


def score_clip(derained: np.ndarray, truth: np.ndarray, object_mask: np.ndarray | None = None,
               *, overlay_mask: np.ndarray | None = None, bright_mask: np.ndarray | None = None
               ) -> ClipScores:
    """Score derained frames against their rain-free truth (see :class:`ClipScores`).

    A frame's PSNR is that of `spanetlib.evaluation.metrics.psnr` with the ``standard`` convention
    (RGB, uint8 images; identical frames give ``inf``).

    Args:
        derained: N x H x W x 3 uint8.
        truth: N x H x W x 3 uint8.
        object_mask: N x H x W bool, where moving objects are (None: none).
        overlay_mask: H x W or N x H x W bool, graphics fixed to the frame (None: none).
        bright_mask: N x H x W bool, bright content that moves (None: none).

    Returns:
        A :class:`ClipScores`.

    Raises:
        ValueError: shapes that do not match.
    """
    a, b = np.asarray(derained), np.asarray(truth)
    if a.shape != b.shape or a.ndim != 4 or a.shape[-1] != 3:
        raise ValueError(f"derained and truth: expected equal N x H x W x 3 shapes, got "
                         f"{a.shape} and {b.shape}")
    n, h, w = a.shape[:3]
    objects = np.zeros((n, h, w), bool) if object_mask is None else np.asarray(object_mask,
                                                                                 bool)
    if objects.shape != (n, h, w):
        raise ValueError(f"object_mask: expected shape {(n, h, w)}, got {objects.shape}")
    sq = (a.astype(np.float32) - b.astype(np.float32)) ** 2
    frame_mse = sq.reshape(n, -1).mean(axis=1, dtype=np.float64)
    psnr = float(np.mean(psnr_from_mse(frame_mse)))
    object_psnr = _pooled_psnr(sq, objects)
    regions = {}
    for name, mask in (("overlay_mask", overlay_mask), ("bright_mask", bright_mask)):
        if mask is None:
            regions[name] = float("nan")
            continue
        mask = np.asarray(mask, bool)
        if mask.shape not in ((h, w), (n, h, w)):
            raise ValueError(f"{name}: expected shape {(h, w)} or {(n, h, w)}, got "
                             f"{mask.shape}")
        regions[name] = _pooled_psnr(sq, np.broadcast_to(mask, (n, h, w)))
    changes, truth_changes = [], []
    for i in range(1, n):
        still = (np.abs(b[i].astype(np.int16) - b[i - 1]).max(axis=-1) <= 1) \
            & ~objects[i] & ~objects[i - 1]
        if still.any():
            changes.append(np.abs(a[i].astype(np.int16) - a[i - 1])[still].mean())
            truth_changes.append(np.abs(b[i].astype(np.int16) - b[i - 1])[still].mean())
    change = float(np.mean(changes)) if changes else float("nan")
    floor = float(np.mean(truth_changes)) if truth_changes else float("nan")
    return ClipScores(psnr=psnr, object_psnr=object_psnr, temporal_change=change,
                      truth_change=floor, overlay_psnr=regions["overlay_mask"],
                      bright_psnr=regions["bright_mask"])


def _pooled_psnr(sq: np.ndarray, mask: np.ndarray) -> float:
    """PSNR (dB) of the squared errors ``sq`` (N x H x W x 3) pooled over ``mask`` (N x H x W)."""
    return psnr_from_mse(float(sq[mask].mean(dtype=np.float64))) if mask.any() \
        else float("nan")


@dataclass
class Comparison:
    """The result of :func:`compare_methods`.

    Attributes:
        table: one row per clip and method (see :func:`compare_methods`).
        results: ``(clip, method, weights) -> ClipDerain`` for the clips asked to be kept
            (``method`` as in the table; ``weights`` "" for the temporal estimate).
    """

    table: pd.DataFrame
    results: dict[tuple[str, str, str], ClipDerain] = field(default_factory=dict)


def _run_measured(fn: Callable[[], ClipDerain | None]) -> tuple[ClipDerain | None, float,
                                                                   float]:
    """Run ``fn``: its result, wall seconds and peak resident memory.

    The memory (bytes; NaN without ``psutil``) is the process's, sampled every 10 ms.
    """
    import threading

    try:
        import psutil
    except ImportError:
        psutil = None
    peak = [float("nan")]
    stop = threading.Event()

    def sample() -> None:
        proc = psutil.Process()
        best = proc.memory_info().rss
        while not stop.wait(0.01):
            best = max(best, proc.memory_info().rss)
        peak[0] = float(best)

    thread = threading.Thread(target=sample, daemon=True) if psutil is not None else None
    if thread is not None:
        thread.start()
    start = time.perf_counter()
    try:
        result = fn()
    finally:
        seconds = time.perf_counter() - start
        stop.set()
        if thread is not None:
            thread.join()
    return result, seconds, peak[0]


def compare_methods(clips: dict[str, object], weights: Sequence[str] = ("synthetic",
                                                                         "official"),
                    *, window: int = DEFAULT_WINDOW, align: str = "auto", device: str = "cpu",
                    keep: Sequence[str] = (), progress: bool = False,
                    spanet_frames: int | None = None) -> Comparison:
    """Score every method on clips with a known truth (the benchmark and notebook 08).

    Rows: the rain input, the temporal estimate alone, per-frame SPANet and the hybrid for
    each of ``weights``.

    Args:
        clips: name -> :class:`spanetlib.synthesis.rain.RainClip` (frames, truth, object masks).
        weights: weights names or paths for :func:`spanetlib.models.load_pretrained`.
        window: frames per temporal estimate (as for :func:`derain_clip`).
        align: alignment mode (as for :func:`derain_clip`).
        device: where SPANet runs.
        keep: clips whose derained frames to keep in :attr:`Comparison.results`.
        progress: show progress bars.
        spanet_frames: per-frame SPANet on only this many frames spread evenly over each
            clip (at least :data:`~spanetlib.derain.video.MIN_FRAMES`; None: every frame),
            for large frames where it costs seconds a frame. SPANet derains each frame on
            its own, so those frames' outputs are what a run over every frame gives; the
            other methods still run over the whole clip (the hybrid's estimate uses every
            frame), and every method is scored on the same frames (temporal change between
            consecutive ones of them), its time per frame it derained.

    Returns:
        A :class:`Comparison`; its table has one row per clip and method: ``clip``,
        ``method``, ``weights`` ("" where none), ``psnr``, ``object_psnr``,
        ``temporal_change``, ``truth_change`` (:class:`ClipScores`), ``spanet_share`` (mean
        SPANet weight), ``seconds``, ``seconds_per_frame`` and ``peak_mb`` (the process's
        peak resident memory while the method ran, MB: the clip's frames included). Each
        model's crop context (:func:`spanetlib.derain.video.crop_context`, once per process)
        is measured before the timings; ``scored_frames``, the frames scored.

    Raises:
        ValueError: ``spanet_frames`` under ``MIN_FRAMES``, or given with ``keep``.
    """
    from spanetlib.models import load_pretrained

    if spanet_frames is not None and (isinstance(spanet_frames, bool)
                                      or not isinstance(spanet_frames, int)
                                      or spanet_frames < MIN_FRAMES):
        raise ValueError(f"spanet_frames: expected None or an int >= {MIN_FRAMES} (a clip "
                         f"derain_clip takes), got {spanet_frames!r}")
    if spanet_frames is not None and keep:
        raise ValueError("keep: per-frame SPANet's results hold every frame only without "
                         "spanet_frames (side_by_side_rows indexes them by clip frame)")

    models = {name: load_pretrained(name, device=device) for name in weights}
    for net in models.values():  # a once-per-process cost, kept out of the timings
        crop_context(net, device)
    comparison = Comparison(pd.DataFrame())
    rows = []
    for clip_name, clip in clips.items():
        n = len(clip.frames)
        scored = np.arange(n) if spanet_frames is None or spanet_frames >= n \
            else np.unique(np.linspace(0, n - 1, spanet_frames).round().astype(np.int64))
        runs: list[tuple[str, str, Callable[[], ClipDerain | None]]] = [
            ("rain input", "", lambda: None),
            ("temporal estimate", "", lambda clip=clip: derain_clip(
                clip.frames, None, method="temporal", align=align, window=window))]
        for name, net in models.items():
            for method in ("spanet", "hybrid"):
                label = "per-frame SPANet" if method == "spanet" else "hybrid"
                frames_in = clip.frames[scored] if method == "spanet" and len(scored) < n \
                    else clip.frames
                runs.append((label, name, lambda frames_in=frames_in, net=net, method=method:
                             derain_clip(frames_in, net, method=method, align=align,
                                         window=window, device=device, progress=progress)))
        bright = getattr(clip, "bright_mask", None)
        overlay = _overlay_mask(clip)
        for label, name, fn in runs:
            result, seconds, peak = _run_measured(fn)
            ran_on = scored if label == "per-frame SPANet" else np.arange(n)
            frames = clip.frames[scored] if result is None else result.frames[
                np.searchsorted(ran_on, scored)]
            share = 0.0 if result is None else float(result.weight.mean())
            scores = score_clip(frames, clip.truth[scored], clip.object_mask[scored],
                                overlay_mask=overlay if overlay is None or overlay.ndim == 2
                                else overlay[scored],
                                bright_mask=None if bright is None else bright[scored])
            rows.append({"clip": clip_name, "method": label, "weights": name,
                         "camera_px": _camera_px(clip), **asdict(scores),
                         "spanet_share": share, "seconds": seconds,
                         "seconds_per_frame": seconds / len(ran_on),
                         "peak_mb": peak / 2 ** 20, "scored_frames": len(scored)})
            if clip_name in keep and result is not None:
                comparison.results[(clip_name, label, name)] = result
    comparison.table = pd.DataFrame(rows)
    return comparison


def _overlay_mask(clip: object) -> np.ndarray | None:
    """H x W bool: where a generated clip's frame-fixed graphics are (None: it has none)."""
    alpha = getattr(clip, "overlay_alpha", None)
    return None if alpha is None or not (alpha > 0).any() else alpha > 0


def _camera_px(clip: object) -> float:
    """Largest camera displacement (pixels) of a generated clip from its middle frame."""
    n, h, w = clip.frames.shape[:3]
    return float(motion_displacement(clip.true_motion(n // 2), (h, w)).max())


def synthetic_clips(names: Sequence[str], size: Sequence[int] = (120, 160),
                    n_frames: int = 40, seed: int = 0) -> dict[str, object]:
    """``CLIP_PRESETS`` clips resized to ``size`` and ``n_frames`` (name -> ``RainClip``).

    Raises:
        ValueError: an unknown preset name.
    """
    from spanetlib.synthesis.rain import CLIP_PRESETS, make_rain_clip

    unknown = [name for name in names if name not in CLIP_PRESETS]
    if unknown:
        raise ValueError(f"unknown clip preset(s) {unknown}; expected names from "
                         f"{list(CLIP_PRESETS)}")
    h, w = (int(v) for v in size)
    return {name: make_rain_clip(CLIP_PRESETS[name].replace(size=(h, w), n_frames=n_frames),
                                 seed) for name in names}


def describe_clips(clips: dict[str, object]) -> str:
    """One line per synthetic clip: frames, size, camera motion, rain and object coverage."""
    lines = []
    for name, clip in clips.items():
        n, h, w = clip.frames.shape[:3]
        shift = _camera_px(clip)
        objects = float(clip.object_mask.mean())
        lines.append(f"{name}: {n} frames of {h} x {w}; camera moves up to {shift:.1f} px; "
                     f"rain covers {100 * clip.rain_mask.mean():.0f} % of the pixels, moving "
                     f"objects {100 * objects:.1f} %; {clip.n_states} scene state(s)")
    return "\n".join(lines)


def show_frames(clip: object, n: int) -> list[int]:
    """``n`` frames spread over those with moving objects (over all frames if none)."""
    area = clip.object_mask.reshape(len(clip.object_mask), -1).mean(axis=1)
    pool = np.flatnonzero(area > 0) if (area > 0).any() else np.arange(len(area))
    picks = np.linspace(0, len(pool) - 1, min(n, len(pool))).round().astype(int)
    return [int(pool[k]) for k in picks]


def side_by_side_rows(clip: object, comparison: Comparison, clip_name: str, weights: str,
                      frames: Sequence[int]) -> list[dict[str, np.ndarray]]:
    """Image rows for a figure: rain, per-frame SPANet, the hybrid, SPANet's weight, clean.

    Args:
        clip: the :class:`spanetlib.synthesis.rain.RainClip`.
        comparison: a :class:`Comparison` that kept ``clip_name``.
        clip_name: the clip's name in the comparison.
        weights: the weights whose SPANet and hybrid to show.
        frames: the frame indices, one row each.

    Raises:
        ValueError: the comparison did not keep that clip and weights.
    """
    try:
        spanet = comparison.results[(clip_name, "per-frame SPANet", weights)]
        hybrid = comparison.results[(clip_name, "hybrid", weights)]
    except KeyError as err:
        raise ValueError(f"the comparison kept no results of clip {clip_name!r} with weights "
                         f"{weights!r}; pass keep=[{clip_name!r}]") from err
    return [{"Rain": clip.frames[i], f"Per-frame SPANet ({weights})": spanet.frames[i],
             "Hybrid": hybrid.frames[i], "SPANet weight": hybrid.weight[i],
             "Clean": clip.truth[i]} for i in frames]


#: The issue's goals: the hybrid this many dB above the better per-frame SPANet over whole
#: frames, and no more than ``OBJECT_TOLERANCE_DB`` below it inside the moving objects.
GAIN_GOAL_DB = 10.0


OBJECT_TOLERANCE_DB = 1.0
#: A clip whose camera moves less than this (pixels, :func:`describe_clips`) is steady: the
#: whole-frame goal must hold on each such clip.
STEADY_CAMERA_PX = 1.0


def best_spanet_weights(table: pd.DataFrame) -> str:
    """The weights whose per-frame SPANet scores best over all clips of a comparison table.

    Ranked by the mean over clips of the whole-frame PSNR (:func:`compare_methods` rows).
    """
    spanet = table[table["method"] == "per-frame SPANet"]
    return str(spanet.groupby("weights")["psnr"].mean().idxmax())


def methods_view(table: pd.DataFrame) -> pd.DataFrame:
    """The readable table of :func:`compare_methods`: one row per method and weights.

    Columns: the mean PSNR (dB) of each clip, their mean, the PSNR inside moving objects
    (mean over the clips that have them) and the frame-to-frame change in still regions
    (levels, mean over clips), then the share of the output SPANet made, and where the table
    has them the seconds per frame and peak memory (MB) of the method (means, maxima over
    clips).
    """
    rows = []
    clips = list(dict.fromkeys(table["clip"]))
    for (method, weights), group in table.groupby(["method", "weights"], sort=False):
        by_clip = group.set_index("clip")
        row = {"method": method, "weights": weights or "-"}
        row.update({clip: float(by_clip.loc[clip, "psnr"]) for clip in clips})
        row["mean"] = float(group["psnr"].mean())
        row["in objects"] = float(group["object_psnr"].mean())
        for column, name in (("overlay_psnr", "in overlays"), ("bright_psnr", "in bright")):
            if column in group and group[column].notna().any():
                row[name] = float(group[column].mean())
        row["change"] = float(group["temporal_change"].mean())
        row["SPANet share"] = float(group["spanet_share"].mean())
        if "seconds_per_frame" in group:
            row["s/frame"] = float(group["seconds_per_frame"].mean())
        if "peak_mb" in group:
            row["peak MB"] = float(group["peak_mb"].max())
        rows.append(row)
    return pd.DataFrame(rows)


def goal_verdicts(table: pd.DataFrame) -> list[str]:
    """The goals, checked per clip and over all clips, one line each (PASS/FAIL).

    The hybrid with the weights of the better per-frame SPANet (:func:`compare_methods`
    rows) must be :data:`GAIN_GOAL_DB` above it over whole frames, and at most
    :data:`OBJECT_TOLERANCE_DB` below it inside the moving objects (clips with objects),
    inside graphics fixed to the frame and inside bright content that moves (where the table
    has ``overlay_psnr`` / ``bright_psnr``). Where it has ``camera_px`` a last line checks the
    whole-frame goal on the clips whose camera is steady (under :data:`STEADY_CAMERA_PX`).
    """
    best = best_spanet_weights(table)
    pick = table[table["weights"] == best].set_index(["clip", "method"])
    lines = [f"goals (hybrid vs per-frame SPANet, both with the {best!r} weights, the better "
             f"per-frame SPANet): whole frame >= +{GAIN_GOAL_DB:g} dB, moving objects >= "
             f"-{OBJECT_TOLERANCE_DB:g} dB"]
    clips = list(dict.fromkeys(table["clip"]))
    for clip in [*clips, "all clips"]:
        rows = pick if clip == "all clips" else pick.loc[[clip]]
        hybrid = rows.xs("hybrid", level="method")
        spanet = rows.xs("per-frame SPANet", level="method")
        gain = float(hybrid["psnr"].mean() - spanet["psnr"].mean())
        text = f"  {clip}: whole frame {gain:+.1f} dB {'PASS' if gain >= GAIN_GOAL_DB else 'FAIL'}"
        objects = hybrid["object_psnr"].notna().to_numpy()
        if objects.any():
            diff = float(hybrid["object_psnr"][objects].mean()
                         - spanet["object_psnr"][objects].mean())
            ok = diff >= -OBJECT_TOLERANCE_DB
            text += f"; moving objects {diff:+.2f} dB {'PASS' if ok else 'FAIL'}"
        for column, what in (("overlay_psnr", "overlays"), ("bright_psnr", "bright moving")):
            if column not in hybrid:
                continue
            has = hybrid[column].notna().to_numpy()
            if has.any():
                diff = float(hybrid[column][has].mean() - spanet[column][has].mean())
                ok = diff >= -OBJECT_TOLERANCE_DB
                text += f"; {what} {diff:+.2f} dB {'PASS' if ok else 'FAIL'}"
        lines.append(text)
    if "camera_px" in pick:
        hybrid = pick.xs("hybrid", level="method")
        spanet = pick.xs("per-frame SPANet", level="method")
        steady = hybrid["camera_px"] < STEADY_CAMERA_PX
        if steady.any():
            gains = (hybrid["psnr"] - spanet["psnr"])[steady]
            worst = str(gains.idxmin())
            ok = bool((gains >= GAIN_GOAL_DB).all())
            lines.append(f"  steady-camera clips ({int(steady.sum())}): whole frame "
                         f"{float(gains.min()):+.1f} dB at worst ({worst}) "
                         f"{'PASS' if ok else 'FAIL'}")
    return lines


def goal_summary(table: pd.DataFrame) -> str:
    """The comparison in one paragraph: the hybrid against the better per-frame SPANet.

    Means over the clips of :func:`compare_methods`' table; the goals as in
    :func:`goal_verdicts`, with the clips that meet and miss them.
    """
    best = best_spanet_weights(table)
    pick = table[table["weights"] == best]
    hybrid = pick[pick["method"] == "hybrid"].set_index("clip")
    spanet = pick[pick["method"] == "per-frame SPANet"].set_index("clip")
    gain = hybrid["psnr"] - spanet["psnr"]
    met = [clip for clip in gain.index if gain[clip] >= GAIN_GOAL_DB]
    missed = [f"{clip} ({gain[clip]:+.1f} dB)" for clip in gain.index
              if gain[clip] < GAIN_GOAL_DB]
    objects = hybrid["object_psnr"].notna()
    diff = (hybrid["object_psnr"] - spanet["object_psnr"])[objects]
    text = (f"Over the {len(gain)} clips the hybrid scores {hybrid['psnr'].mean():.1f} dB "
            f"against {spanet['psnr'].mean():.1f} dB for the better per-frame SPANet (`{best}` "
            f"weights), {gain.mean():+.1f} dB; its output changes by "
            f"{hybrid['temporal_change'].mean():.2f} levels from frame to frame in still "
            f"regions, SPANet's by {spanet['temporal_change'].mean():.2f}. The +"
            f"{GAIN_GOAL_DB:g} dB goal is met on {', '.join(met) or 'no clip'}"
            + (f" and missed on {', '.join(missed)}" if missed else "") + ".")
    if objects.any():
        within = bool((diff >= -OBJECT_TOLERANCE_DB).all())
        text += (f" Inside the moving objects the hybrid scores "
                 f"{hybrid['object_psnr'][objects].mean():.2f} dB against "
                 f"{spanet['object_psnr'][objects].mean():.2f} dB (largest drop "
                 f"{max(0.0, -float(diff.min())):.2f} dB): the {OBJECT_TOLERANCE_DB:g} dB goal "
                 f"is {'met' if within else 'missed'}.")
    return text


def methods_caption(clips: dict[str, object], window: int) -> str:
    """The caption of ``video_derain.md``: clip size, frames and window."""
    n, h, w = next(iter(clips.values())).frames.shape[:3]
    return (f"Deraining whole clips ({h} x {w}, {n} frames, window {window}): mean PSNR (dB) "
            "per clip against the rain-free frames, PSNR inside the moving objects, "
            "frame-to-frame change in still regions (levels), share of the output made by "
            "SPANet")


def write_methods_table(table: pd.DataFrame, results_dir: str | os.PathLike,
                        caption: str = "") -> pd.DataFrame:
    """Write ``video_derain.csv`` (every clip and method) and ``video_derain.md`` (the view).

    Returns:
        The :func:`methods_view` (to display).
    """
    view = methods_view(table)
    write_table(table, Path(results_dir) / "video_derain", caption=caption, markdown=view)
    return view
