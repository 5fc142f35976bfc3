"""The paper's figures as plotting functions (matplotlib); each saves a PNG and returns the figure.

Notebooks call these; tests call them on tiny inputs. Images are H x W x 3 RGB, uint8 or float
in [0, 1] (or in 0..255 as float when ``scale=255`` is passed where noted).
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np

from spanetlib.io.files import atomic_write, to_unit_float
from spanetlib.pipeline.review_images import frame_colours

__all__ = [
    "plot_attention_maps",
    "plot_clip_timeline",
    "plot_image_grid",
    "plot_motion_trace",
    "plot_percentile_ranges",
    "plot_pixel_profile",
    "plot_quality_validation",
    "plot_training_curves",
    "save_figure",
]


def save_figure(fig: plt.Figure, path: str | os.PathLike | None, dpi: int = 110) -> Path | None:
    """Save ``fig`` atomically as PNG (no-op when ``path`` is None)."""
    if path is None:
        return None
    return atomic_write(path, lambda tmp: fig.savefig(tmp, dpi=dpi, bbox_inches="tight",
                                                       format="png"))














def plot_clip_timeline(membership: np.ndarray, period: np.ndarray,
                       true_state: np.ndarray | None = None, title: str = "",
                       path: str | os.PathLike | None = None) -> plt.Figure:
    """The stable periods a clip estimate found, frame by frame, beside the true states.

    Args:
        membership: N int, the period each frame is paired with (-1: none).
        period: N int, the period each frame falls in by the scene's signatures.
        true_state: N int, the scene state of a synthetic clip (-1: in a transition), or None.
        title: figure title.
        path: PNG to write.
    """
    rows = [("periods found", frame_colours(membership, period))]
    if true_state is not None:
        state = np.asarray(true_state)
        rows.append(("true scene state", frame_colours(state, np.where(state >= 0, 0, -1))))
    fig, ax = plt.subplots(figsize=(7.5, 0.45 * len(rows) + 0.9))
    for r, (_, colours) in enumerate(rows):
        ax.imshow(colours[None] / 255.0, aspect="auto", interpolation="nearest",
                  extent=(-0.5, len(colours) - 0.5, r + 0.9, r + 0.1))
    ax.set_ylim(len(rows), 0)
    ax.set_yticks([r + 0.5 for r in range(len(rows))], [label for label, _ in rows])
    ax.set_xlabel("frame (colour: stable period; light grey: not paired; dark grey: "
                  "transition)", fontsize=8)
    ax.set_title(title or "stable periods", fontsize=9)
    fig.tight_layout()
    save_figure(fig, path)
    return fig


def plot_motion_trace(measured: np.ndarray, true: np.ndarray | None = None, title: str = "",
                      path: str | os.PathLike | None = None) -> plt.Figure:
    """Camera motion per frame: the frame centre's displacement (x, y), measured and true.

    Args:
        measured: N x 2 displacement in pixels (see `spanetlib.paper.figure_data.centre_shift`).
        true: N x 2 true displacement of a synthetic clip, or None.
        title: figure title.
        path: PNG to write.
    """
    measured = np.asarray(measured, float)
    fig, ax = plt.subplots(figsize=(7.5, 2.6))
    frames = np.arange(len(measured))
    for axis, colour in ((0, "tab:blue"), (1, "tab:orange")):
        name = "xy"[axis]
        if true is not None:
            ax.plot(frames, np.asarray(true, float)[:, axis], color=colour, lw=4, alpha=0.3,
                    label=f"{name} true")
        ax.plot(frames, measured[:, axis], color=colour, lw=1.2, marker=".",
                label=f"{name} measured")
    ax.set_xlabel("frame")
    ax.set_ylabel("displacement (px)")
    ax.legend(fontsize=7, ncol=4, loc="best")
    ax.set_title(title or "camera motion", fontsize=9)
    fig.tight_layout()
    save_figure(fig, path)
    return fig


def plot_pixel_profile(intensities: np.ndarray, is_rain: np.ndarray, clean_value: float,
                       estimate_value: float | None = None, title: str = "",
                       path: str | os.PathLike | None = None) -> plt.Figure:
    """Figure 2: one pixel's intensity across the sequence and its histogram.

    Args:
        intensities: (N,) luminance of the pixel in each frame (0..255).
        is_rain: (N,) bool, frames where rain covers the pixel (known for synthetic video).
        clean_value: the true background luminance.
        estimate_value: the estimated background luminance (our method), drawn if given.
        title: figure title.
        path: PNG to write.
    """
    intensities = np.asarray(intensities, np.float32)
    is_rain = np.asarray(is_rain, bool)
    if intensities.shape != is_rain.shape or intensities.ndim != 1:
        raise ValueError(f"expected two (N,) arrays, got {intensities.shape} and {is_rain.shape}")
    frames = np.arange(len(intensities))
    fig, (ax0, ax1) = plt.subplots(1, 2, figsize=(10, 3.2), gridspec_kw={"width_ratios": [2, 1]})
    ax0.plot(frames, intensities, color="0.6", lw=0.8, zorder=1)
    ax0.scatter(frames[~is_rain], intensities[~is_rain], s=10, c="tab:blue", label="rain-free")
    ax0.scatter(frames[is_rain], intensities[is_rain], s=10, c="tab:red", label="rain")
    ax0.axhline(clean_value, color="k", ls="--", lw=1, label="true background")
    if estimate_value is not None:
        ax0.axhline(estimate_value, color="tab:green", lw=1, label="our estimate")
    ax0.set_xlabel("frame")
    ax0.set_ylabel("intensity (0-255)")
    ax0.legend(loc="upper right", fontsize=7, ncol=2)
    bins = np.arange(0, 257, 4)
    ax1.hist([intensities[~is_rain], intensities[is_rain]], bins=bins, stacked=True,
             color=["tab:blue", "tab:red"], label=["rain-free", "rain"])
    ax1.axvline(clean_value, color="k", ls="--", lw=1)
    ax1.set_xlabel("intensity")
    ax1.set_ylabel("frames")
    fig.suptitle(title or "Figure 2: one pixel across the rain sequence")
    fig.tight_layout()
    save_figure(fig, path)
    return fig


def plot_percentile_ranges(range_low: np.ndarray, range_high: np.ndarray, percentile: float,
                           n_show: int = 60, seed: int = 0, title: str = "",
                           path: str | os.PathLike | None = None) -> plt.Figure:
    """Figure 3: the percentile ranges that the pixels' modes occupy (Eq. 3) and the chosen p.

    Left: ranges of ``n_show`` random pixels as vertical bars with p drawn across. Right: for
    every percentile, the share of all pixels whose range contains it (Eq. 4 maximizes this).
    """
    low = np.asarray(range_low, np.float32).ravel()
    high = np.asarray(range_high, np.float32).ravel()
    if low.shape != high.shape:
        raise ValueError(f"range_low and range_high differ: {low.shape} vs {high.shape}")
    rng = np.random.default_rng(seed)
    pick = rng.choice(low.size, size=min(n_show, low.size), replace=False)
    fig, (ax0, ax1) = plt.subplots(1, 2, figsize=(10, 3.2), gridspec_kw={"width_ratios": [2, 1]})
    ax0.vlines(np.arange(len(pick)), low[pick], high[pick], color="tab:blue", lw=3)
    ax0.axhline(percentile, color="tab:red", lw=1.2, label=f"p = {percentile:.1f}")
    ax0.set_xlabel("pixel (random sample)")
    ax0.set_ylabel("percentile range of the mode (%)")
    ax0.set_ylim(0, 100)
    ax0.legend(loc="upper right", fontsize=8)
    grid = np.linspace(0, 100, 401)
    order_low, order_high = np.sort(low), np.sort(high)
    covered = (np.searchsorted(order_low, grid, side="right")
               - np.searchsorted(order_high, grid, side="left")) / low.size
    ax1.plot(covered * 100, grid, color="tab:blue")
    ax1.axhline(percentile, color="tab:red", lw=1.2)
    ax1.set_xlabel("pixels whose range holds it (%)")
    ax1.set_ylabel("percentile (%)")
    ax1.set_ylim(0, 100)
    fig.suptitle(title or "Figure 3: mode percentile ranges and the chosen p (Eq. 4)")
    fig.tight_layout()
    save_figure(fig, path)
    return fig


def plot_image_grid(images: Mapping[str, np.ndarray] | Sequence[Mapping[str, np.ndarray]],
                    captions: Mapping[str, str] | None = None, title: str = "",
                    crop: tuple[int, int, int, int] | None = None, panel_size: float = 2.6,
                    path: str | os.PathLike | None = None) -> plt.Figure:
    """Side-by-side images (Figures 4, 9-11): one row per mapping, one column per entry.

    Args:
        images: name -> H x W x 3 image (or H x W map, shown with a colour map); a sequence of
            such mappings gives several rows with the same columns.
        captions: optional extra text under each column name (e.g. "31.2 dB").
        title: figure title.
        crop: (y, x, h, w) zoom window applied to every image.
        panel_size: inches per panel.
        path: PNG to write.
    """
    rows = [images] if isinstance(images, Mapping) else list(images)
    if not rows or not rows[0]:
        raise ValueError("expected at least one image")
    names = list(rows[0])
    fig, axes = plt.subplots(len(rows), len(names), squeeze=False,
                             figsize=(panel_size * len(names), panel_size * len(rows) * 0.85))
    for r, row in enumerate(rows):
        for c, name in enumerate(names):
            ax = axes[r, c]
            image = np.asarray(row[name])
            if crop is not None:
                y, x, h, w = crop
                image = image[y:y + h, x:x + w]
            if image.ndim == 2:
                ax.imshow(image, cmap="inferno", vmin=0.0, vmax=max(float(image.max()), 1e-6))
            else:
                ax.imshow(to_unit_float(image))
            ax.set_xticks([])
            ax.set_yticks([])
            if r == 0 or len(rows) == 1:
                caption = (captions or {}).get(name)
                label = name if caption is None else f"{name}\n{caption}"
                ax.set_title(label, fontsize=8)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    save_figure(fig, path)
    return fig


def plot_attention_maps(rows: Sequence[Mapping[str, np.ndarray]], title: str = "",
                        path: str | os.PathLike | None = None) -> plt.Figure:
    """Figure 7: rain image, attention map(s) and rain mask per row (maps shown in [0, 1])."""
    if not rows:
        raise ValueError("expected at least one row")
    names = list(rows[0])
    fig, axes = plt.subplots(len(rows), len(names), squeeze=False,
                             figsize=(2.6 * len(names), 2.3 * len(rows)))
    for r, row in enumerate(rows):
        for c, name in enumerate(names):
            image = np.asarray(row[name])
            ax = axes[r, c]
            if image.ndim == 2:
                ax.imshow(image, cmap="jet", vmin=0.0, vmax=1.0)
            else:
                ax.imshow(to_unit_float(image))
            ax.set_xticks([])
            ax.set_yticks([])
            if r == 0:
                ax.set_title(name, fontsize=8)
    fig.suptitle(title or "Figure 7: spatial attention maps")
    fig.tight_layout()
    save_figure(fig, path)
    return fig


def plot_training_curves(logs: Mapping[str, object], columns: Sequence[str] = ("loss",
                         "train_psnr"), title: str = "", smooth: int = 10,
                         path: str | os.PathLike | None = None) -> plt.Figure:
    """Training curves from one or more training logs (pandas DataFrames with a ``step`` column).

    Args:
        logs: run name -> DataFrame (``spanetlib.training.train``'s ``log.csv`` read with pandas).
        columns: columns to plot, one panel each (missing columns are skipped).
        title: figure title.
        smooth: moving-average window (steps) drawn over the raw curve.
        path: PNG to write.
    """
    columns = [c for c in columns if any(c in df.columns for df in logs.values())]
    if not columns:
        raise ValueError("none of the requested columns is in the logs")
    fig, axes = plt.subplots(1, len(columns), squeeze=False, figsize=(4.8 * len(columns), 3.2))
    for ax, column in zip(axes[0], columns, strict=False):
        for name, df in logs.items():
            if column not in df.columns:
                continue
            data = df[["step", column]].dropna()
            if data.empty:
                continue
            (line,) = ax.plot(data["step"], data[column], alpha=0.35, lw=0.8,
                              marker="o" if len(data) < 20 else None, ms=3)
            if len(data) > smooth > 1:
                ax.plot(data["step"], data[column].rolling(smooth, min_periods=1).mean(),
                        color=line.get_color(), label=name)
            else:
                line.set_alpha(1.0)
                line.set_label(name)
        ax.set_xlabel("step")
        ax.set_ylabel(column)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    save_figure(fig, path)
    return fig


_QUALITY_COLUMNS = ("split", "preset", "true_psnr", "score", "accept")


def plot_quality_validation(table: str | os.PathLike | object, threshold: float | None = None,
                            good_db: float = 40.0, split: str | None = "report",
                            title: str = "", path: str | os.PathLike | None = None
                            ) -> plt.Figure:
    """The no-reference quality score against the true PSNR, one point per clip.

    Reads what ``benchmarks/bench_quality.py`` writes (``results/quality_validation.csv``):
    colour by preset, dots for accepted clips and crosses for refused ones (a refusal may come
    from a gate above the threshold: a veil, too few frames, frames not aligned), the accept
    threshold (horizontal) and the good-scene line (vertical) drawn; accepted clips below
    ``good_db`` (false accepts) are ringed in red. Clips without an estimate (no true PSNR)
    are counted in the title, not drawn.

    Args:
        table: the CSV's path or a pandas DataFrame with its columns (at least ``split``,
            ``preset``, ``true_psnr``, ``score``, ``accept``).
        threshold: the accept threshold to draw (default
            ``spanetlib.pipeline.quality.QUALITY_ACCEPT_THRESHOLD``).
        good_db: the true PSNR (dB) that makes a scene good.
        split: the rows to plot (``"report"``: the clips the model was not fitted on;
            ``"fit"``; None: all, the fit clips paler).
        title: figure title.
        path: PNG to write.

    Raises:
        ValueError: missing columns, or no row of that split.
    """
    import pandas as pd

    from spanetlib.pipeline.quality import QUALITY_ACCEPT_THRESHOLD

    df = table if isinstance(table, pd.DataFrame) else pd.read_csv(table)
    missing = [c for c in _QUALITY_COLUMNS if c not in df.columns]
    if missing:
        raise ValueError(f"quality table: missing column(s) {missing}; expected the CSV of "
                         "benchmarks/bench_quality.py")
    if split is not None:
        df = df[df["split"] == split]
    if df.empty:
        raise ValueError(f"quality table: no row of split {split!r}")
    threshold = QUALITY_ACCEPT_THRESHOLD if threshold is None else float(threshold)
    accept = df["accept"].astype(str).str.lower().isin(("true", "1"))
    shown = df[np.isfinite(df["true_psnr"].astype(float))]
    fig, ax = plt.subplots(figsize=(7.5, 4.6))
    presets = sorted(df["preset"].unique())
    colours = plt.get_cmap("tab20")(np.linspace(0, 1, max(len(presets), 2)))
    for preset, colour in zip(presets, colours, strict=False):
        ax.scatter([], [], s=26, color=colour, label=preset)
        rows = shown[shown["preset"] == preset]
        for taken, marker in ((True, "o"), (False, "x")):
            for part, alpha in (("fit", 0.45), ("report", 1.0)):
                pick = rows[(accept[rows.index] == taken) & ((rows["split"] == "fit")
                                                             == (part == "fit"))]
                if len(pick):
                    ax.scatter(pick["true_psnr"], pick["score"], s=28, color=colour,
                               alpha=alpha, marker=marker, linewidths=1.2)
    ax.scatter([], [], s=28, color="k", marker="o", label="accepted")
    ax.scatter([], [], s=28, color="k", marker="x", label="refused")
    wrong = shown[accept[shown.index] & (shown["true_psnr"] < good_db)]
    if len(wrong):
        ax.scatter(wrong["true_psnr"], wrong["score"], s=110, facecolors="none",
                   edgecolors="red", linewidths=1.4, label="accepted, < good")
    ax.axhline(threshold, color="k", ls="--", lw=1, label=f"accept threshold {threshold:.2f}")
    ax.axvline(good_db, color="0.4", ls=":", lw=1.2, label=f"{good_db:.0f} dB")
    ax.set_xlabel("true PSNR of the estimate (dB, worst period)")
    ax.set_ylabel("quality score (no reference)")
    ax.set_ylim(-0.03, 1.03)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=6.5, ncol=2, loc="center left", bbox_to_anchor=(1.01, 0.5))
    lost = len(df) - len(shown)
    note = f" ({lost} clip(s) without an estimate not drawn)" if lost else ""
    ax.set_title(title or f"No-reference quality score vs truth, {split or 'all'} clips{note}",
                 fontsize=9)
    fig.tight_layout()
    save_figure(fig, path)
    return fig
