"""The paper's Tables 1-4: which rows, which test pairs, how they are shown, and the verdicts.

Scoring is `spanetlib.evaluate`'s one loop; the runs come from `spanetlib.runs`. This module
puts them together:

- Table 1 (`run_table1`): the background estimators of §3 on synthetic rain videos, scored
  against the true background.
- Tables 2 and 4 (`table2`, `table4`): the derainers on the §3 test set. When the set is
  synthetic each rain image is scored against two references (`reference_pairs`): the
  *estimated* clean image that the dataset pipeline made (what the paper does: its ground
  truth is that estimate) and the *true* background that only synthetic rain gives us.
- Table 3 (`table3`): single synthetic rain images at three levels (`ensure_level_set`).

Scores are kept for every metric convention of `spanetlib.metrics`; the tables' main view
uses one (`main_view`, "standard" by default) and `save_table` writes both. `findings` says in
words whether a run reproduces a finding of the paper.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn
from tqdm.auto import tqdm

from .background import TABLE1_METHODS, robust_pca_background
from .datasets import DatasetInfo
from .evaluate import (
    CLEAN,
    DEFAULT_CONVENTIONS,
    Pair,
    as_prediction,
    compare_models,
    metric_column,
    metric_columns,
    read_pairs,
    write_table,
)
from .fileio import atomic_write_json, atomic_write_text, read_image
from .metrics import psnr_ssim_np
from .models import count_parameters, load_pretrained
from .runs import OFFICIAL, OURS, RAIN_INPUT, load_trained
from .testsets import Table1Video, build_synthetic_test_set, scene_ground_truth

__all__ = [
    "ESTIMATED_CLEAN",
    "TRUE_BACKGROUND",
    "PatchPosition",
    "ablation_findings",
    "ensure_level_set",
    "main_view",
    "models_for_tables",
    "patch_position",
    "reference_pairs",
    "run_table1",
    "save_table",
    "table1_methods",
    "table2",
    "table3",
    "table4",
]

#: The two references of the §3 test set (the ``reference`` column of Tables 2 and 4).
ESTIMATED_CLEAN = "estimated clean"
TRUE_BACKGROUND = "true background"


# --------------------------------------------------------------------------------------------
# Table 1
# --------------------------------------------------------------------------------------------
def table1_methods(rpca_max_iter: int = 100) -> dict[str, Callable[[np.ndarray], np.ndarray]]:
    """Table 1's methods (`spanetlib.background.TABLE1_METHODS`) with the RPCA budget set.

    Example:
        >>> table1_methods(7)["Robust PCA (IALM)"].keywords
        {'max_iter': 7}
    """
    methods = dict(TABLE1_METHODS)
    for name, method in methods.items():
        if method is robust_pca_background:
            methods[name] = partial(robust_pca_background, max_iter=rpca_max_iter)
    return methods


def run_table1(videos: Sequence[Table1Video],
               methods: Mapping[str, Callable[[np.ndarray], np.ndarray]] | None = None,
               convention: str = "standard", max_input_frames: int | None = 20,
               progress: bool = False) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Table 1: PSNR/SSIM of the rain input, the baselines and ours against the true background.

    The "Rain input" row averages over frames of each video (up to ``max_input_frames``
    evenly spaced frames; each scored as every rain input row is, `as_prediction`), then over
    videos; every other row scores one background estimate per video. The dataset mean is the
    mean of per-video values.

    Args:
        videos: synthetic rain videos with their true background
            (`spanetlib.testsets.make_table1_videos`).
        methods: display name -> ``f(frames) -> H x W x 3`` in 0..255 (default: all of
            `spanetlib.background.TABLE1_METHODS`).
        convention: metric convention.
        max_input_frames: frames of each video scored for the input row (None: all).
        progress: show a progress bar.

    Returns:
        (per_video, summary): long table (video, density, method, psnr, ssim) and the mean per
        method in the order input, ``methods``.
    """
    methods = dict(TABLE1_METHODS if methods is None else methods)
    rows = []
    for video in tqdm(videos, desc="Table 1", disable=not progress):
        n = len(video.frames)
        index = np.linspace(0, n - 1, min(n, max_input_frames or n)).round().astype(int)
        scores = [psnr_ssim_np(as_prediction(video.frames[i]), video.clean, convention)
                  for i in index]
        rows.append({"video": video.name, "density": video.density, "method": RAIN_INPUT,
                     "psnr": float(np.mean([s[0] for s in scores])),
                     "ssim": float(np.mean([s[1] for s in scores]))})
        for name, method in methods.items():
            estimate = (np.clip(method(video.frames), 0, 255) / 255.0).astype(np.float32)
            psnr, ssim = psnr_ssim_np(estimate, video.clean, convention)
            rows.append({"video": video.name, "density": video.density, "method": name,
                         "psnr": psnr, "ssim": ssim})
    per_video = pd.DataFrame(rows)
    order = [RAIN_INPUT, *methods]
    summary = (per_video.groupby("method", sort=False)[["psnr", "ssim"]].mean()
               .reindex(order).reset_index())
    return per_video, summary


# --------------------------------------------------------------------------------------------
# The rows of Tables 2-4
# --------------------------------------------------------------------------------------------
def models_for_tables(runs: Mapping[str, str | os.PathLike], include_input: bool = True,
                      include_official: bool = True, device: str | torch.device = "cpu"
                      ) -> dict[str, nn.Module | None]:
    """The rows of Tables 2 and 3: rain input, the trained runs, the authors' SPANet.

    Args:
        runs: display name -> ``final.pt`` (e.g. from ``ensure_runs(TABLE2_RUNS, ...)``).
        include_input: start with the "Rain input" row (model None: the input is scored).
        include_official: add the authors' released SPANet (`load_pretrained("official")`,
            trained on the real SPA-Data) just before `OURS` (at the end without it).
        device: where to load the models.

    Returns:
        Display name -> model (None for the rain input), in table order.
    """
    models: dict[str, nn.Module | None] = {RAIN_INPUT: None} if include_input else {}
    loaded = {label: load_trained(path, device) for label, path in runs.items()}
    for label, net in loaded.items():
        if label == OURS and include_official:
            models[OFFICIAL] = load_pretrained("official", device=device)
        models[label] = net
    if include_official and OFFICIAL not in models:
        models[OFFICIAL] = load_pretrained("official", device=device)
    return models


# --------------------------------------------------------------------------------------------
# The §3 test pairs and their references
# --------------------------------------------------------------------------------------------
_PATCH_NAME = re.compile(r"^(?P<frame>\d+)_(?P<y>\d+)_(?P<x>\d+)$")


@dataclass(frozen=True)
class PatchPosition:
    """Where an exported rain patch comes from: its scene, frame and top-left corner."""

    scene: str
    frame: int
    y: int
    x: int


def patch_position(rain: str | os.PathLike) -> PatchPosition:
    """The origin of an exported rain patch ``<scene>/rain/<frame>_<y>_<x>.png``.

    Raises:
        ValueError: the path is not an exported rain patch.

    Example:
        >>> patch_position("dataset/scene_002_dense/rain/0017_32_64.png")
        PatchPosition(scene='scene_002_dense', frame=17, y=32, x=64)
    """
    rain = Path(rain)
    match = _PATCH_NAME.match(rain.stem)
    if match is None or rain.parent.name != "rain":
        raise ValueError(f"expected an exported rain patch <scene>/rain/<frame>_<y>_<x>.png, "
                         f"got {rain}")
    return PatchPosition(rain.parent.parent.name, int(match["frame"]), int(match["y"]),
                         int(match["x"]))


def reference_pairs(dataset: DatasetInfo, max_images: int | None = None) -> list[Pair]:
    """The §3 test pairs with every reference the data has, for `spanetlib.evaluate`.

    Each pair of the test list keeps its name (`spanetlib.evaluate.read_pairs`) and is scored
    against its *estimated* clean image (`ESTIMATED_CLEAN`) and, for synthetic data, the
    *true* background (`TRUE_BACKGROUND`): the crop at (y, x), of the patch's size, of the
    scene's true background (`spanetlib.testsets.scene_ground_truth` of
    ``scenes_dir/<scene>``), read from the patch name ``<scene>/rain/<frame>_<y>_<x>.png``.

    Args:
        dataset: the §3 dataset (synthetic: ``scenes_dir`` set).
        max_images: only the first pairs of the test list.

    Returns:
        One `spanetlib.evaluate.Pair` per test pair, in list order.

    Raises:
        ValueError: bad ``max_images``, or a rain path of synthetic data that is not an
            exported patch or lies outside its true background.
        InputError: a missing or empty test list, a missing ground-truth image.
    """
    if max_images is not None and (isinstance(max_images, bool) or not isinstance(max_images, int)
                                   or max_images < 1):
        raise ValueError(f"max_images must be a positive int or None, got {max_images!r}")
    pairs = read_pairs(dataset.test_list)[:max_images]
    if not (dataset.synthetic and dataset.scenes_dir is not None):
        return [Pair(p.name, p.rain, {ESTIMATED_CLEAN: p.references[CLEAN]}) for p in pairs]
    truths: dict[str, np.ndarray] = {}
    out = []
    for pair in pairs:
        where = patch_position(pair.rain)
        if where.scene not in truths:
            truths[where.scene] = read_image(
                scene_ground_truth(Path(dataset.scenes_dir) / where.scene))
        h, w = read_image(pair.rain).shape[:2]
        truth = truths[where.scene][where.y:where.y + h, where.x:where.x + w]
        if truth.shape[:2] != (h, w):
            raise ValueError(f"{pair.rain}: patch at ({where.y}, {where.x}) of size {h}x{w} "
                             f"lies outside the true background of size "
                             f"{truths[where.scene].shape[:2]}")
        out.append(Pair(pair.name, pair.rain, {ESTIMATED_CLEAN: pair.references[CLEAN],
                                               TRUE_BACKGROUND: np.ascontiguousarray(truth)}))
    return out


# --------------------------------------------------------------------------------------------
# Tables 2-4
# --------------------------------------------------------------------------------------------
def table2(models: Mapping[str, Any], dataset: DatasetInfo,
           conventions: Sequence[str] | None = None, device: str | torch.device = "auto",
           max_images: int | None = None, progress: bool = False
           ) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Table 2: every derainer on the §3 test set, against each reference (`reference_pairs`).

    Args:
        models: display name -> model (from `models_for_tables`; None scores the rain input).
        dataset: the §3 dataset of the run.
        conventions: metric conventions (default: all).
        device: "auto" (CUDA when available), "cpu" or "cuda".
        max_images: only the first test pairs.
        progress: show progress bars.

    Returns:
        ``(per_image, summary)`` of `spanetlib.evaluate.compare_models`: per image ``model,
        reference, name, psnr[...], ssim[...]``; the summary has the means per model and
        reference and ``n``.
    """
    return compare_models(models, reference_pairs(dataset, max_images),
                          conventions=tuple(conventions or DEFAULT_CONVENTIONS), device=device,
                          progress=progress, by="reference")


def ensure_level_set(work_dir: str | os.PathLike, n_per_level: int, size: Sequence[int],
                     seed: int = 0) -> tuple[Path, Path]:
    """The light/medium/heavy synthetic test set of Table 3 (Rain1200's role), built once.

    Built by `spanetlib.testsets.build_synthetic_test_set` in ``work_dir/rain_levels`` and
    kept when ``params.json`` there records the same settings.

    Returns:
        ``(test_list, labels_csv)``.
    """
    folder = Path(work_dir) / "rain_levels"
    params = {"n_per_level": int(n_per_level), "size": [int(s) for s in size], "seed": int(seed)}
    test_list, labels = folder / "test.txt", folder / "labels.csv"
    try:
        old = json.loads((folder / "params.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        old = None
    if old != params or not test_list.is_file() or not labels.is_file():
        build_synthetic_test_set(folder, n_per_level=int(n_per_level),
                                 size=tuple(int(s) for s in size), seed=int(seed))
        atomic_write_json(folder / "params.json", params)
    return test_list, labels


def table3(models: Mapping[str, Any], test_list: str | os.PathLike,
           labels: str | os.PathLike | pd.DataFrame, conventions: Sequence[str] | None = None,
           device: str | torch.device = "auto", max_images: int | None = None,
           progress: bool = False) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Table 3: every derainer on single synthetic rain images, per rain level.

    Args:
        models: display name -> model.
        test_list: the pair list of `ensure_level_set`.
        labels: its ``labels.csv`` (``name, level``).
        conventions: metric conventions (default: all).
        device: "auto" (CUDA when available), "cpu" or "cuda".
        max_images: only the first pairs.
        progress: show progress bars.

    Returns:
        ``(per_image, summary)``; the summary has one row per model and ``level``.
    """
    return compare_models(models, test_list,
                          conventions=tuple(conventions or DEFAULT_CONVENTIONS), device=device,
                          max_images=max_images, progress=progress, batch_size=8,
                          labels=labels, by="level")


def table4(runs: Mapping[str, str | os.PathLike], dataset: DatasetInfo,
           conventions: Sequence[str] | None = None, device: str | torch.device = "auto",
           max_images: int | None = None, progress: bool = False
           ) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Table 4: the SPANet ablations on the §3 test set, with their parameter counts.

    Args:
        runs: display name -> ``final.pt`` (from ``ensure_runs(TABLE4_RUNS, ...)``).
        dataset: the §3 dataset of the run.
        conventions: metric conventions (default: all).
        device: "auto" (CUDA when available), "cpu" or "cuda".
        max_images: only the first test pairs.
        progress: show progress bars.

    Returns:
        ``(per_image, summary)`` as `table2`, the summary with a ``parameters`` column (all
        parameters of each model, used or not, as `spanetlib.models.count_parameters`).
    """
    models = {label: load_trained(path, device) for label, path in runs.items()}
    counts = {label: count_parameters(net, trainable_only=False)
              for label, net in models.items()}
    per_image, summary = table2(models, dataset, conventions, device, max_images, progress)
    summary.insert(2, "parameters", summary["model"].map(counts).astype(int))
    return per_image, summary


# --------------------------------------------------------------------------------------------
# Verdicts and views
# --------------------------------------------------------------------------------------------
def ablation_findings(summary: pd.DataFrame, full: str = "Shared SAMs (SPANet)",
                      reference: str = ESTIMATED_CLEAN, convention: str = "standard",
                      tolerance: float = 0.1,
                      claim: str = "that every part of the SAM helps",
                      others: str = "variants") -> str:
    """Say in words whether one row (the full model) beats every other row, as the paper found.

    Used for Table 4 (the full model against its ablations) and Table 2 (our SPANet against
    the rain input and the other derainers).

    Args:
        summary: the summary of `table4` / `table2` (any summary with a ``model`` column).
        full: the row of the complete model.
        reference: the ``reference`` rows to compare (when the summary has that column).
        convention: metric convention of the PSNR compared.
        tolerance: PSNR differences (dB) within this are called "no clear difference".
        claim: the paper's finding, as the end of "does not reproduce the paper's finding ...".
        others: what the other rows are called ("variants", "rows").

    Returns:
        A few lines: the full model's PSNR, the difference to each variant, and a verdict.

    Raises:
        ValueError: ``full`` or ``reference`` is not in the summary, or fewer than two rows.

    Example:
        >>> summary = pd.DataFrame({"model": ["A", "Shared SAMs (SPANet)"],
        ...                         "psnr[standard]": [20.0, 21.0]})
        >>> print(ablation_findings(summary))
        Shared SAMs (SPANet): 21.00 dB PSNR (standard, vs. estimated clean).
        - A: 20.00 dB (-1.00 dB against the full model)
        As in the paper, Shared SAMs (SPANet) beats every one of the variants by more than 0.1 dB.
    """
    column = metric_column("psnr", convention)
    if column not in summary.columns:
        raise ValueError(f"convention {convention!r} is not in the summary")
    rows = summary
    if "reference" in summary.columns:
        rows = summary[summary["reference"] == reference]
        if rows.empty:
            raise ValueError(f"reference {reference!r} is not in the summary; it has "
                             f"{sorted(summary['reference'].unique())}")
    psnr = dict(zip(rows["model"], rows[column], strict=True))
    if full not in psnr or len(psnr) < 2:
        raise ValueError(f"expected the row {full!r} and at least one other, got {list(psnr)}")
    base = psnr.pop(full)
    lines = [f"{full}: {base:.2f} dB PSNR ({convention}, vs. {reference})."]
    better, unclear, worse = [], [], []
    for label, value in psnr.items():
        diff = base - value
        (better if diff > tolerance else worse if diff < -tolerance else unclear).append(label)
        lines.append(f"- {label}: {value:.2f} dB ({-diff:+.2f} dB against the full model)")
    if len(better) == len(psnr):
        lines.append(f"As in the paper, {full} beats every one of the {others} by more than "
                     f"{tolerance} dB.")
    else:
        lines.append(f"{full} beats {len(better)} of {len(psnr)} {others} by more "
                     f"than {tolerance} dB; " + "; ".join(
                         part for part in (
                             f"no clear difference to {', '.join(unclear)}" if unclear else "",
                             f"worse than {', '.join(worse)}" if worse else "") if part)
                     + f". So this run does not reproduce the paper's finding {claim}.")
    return "\n".join(lines)


def main_view(summary: pd.DataFrame, by: str | None = None, convention: str = "standard"
              ) -> pd.DataFrame:
    """The readable table: one row per model, PSNR and SSIM of one convention per group.

    Args:
        summary: a summary from `table2`, `table3` or `table4`.
        by: the group column spread into columns (``"reference"``, ``"level"``); None: the
            summary has one row per model.
        convention: the metric convention shown.

    Returns:
        Columns ``model``, any extra columns of the summary (e.g. ``parameters``), then
        ``PSNR (<group>)`` and ``SSIM (<group>)`` per group (``PSNR`` / ``SSIM`` without
        ``by``).

    Raises:
        ValueError: the convention or the ``by`` column is not in the summary.
    """
    psnr_col, ssim_col = metric_column("psnr", convention), metric_column("ssim", convention)
    if psnr_col not in summary.columns or ssim_col not in summary.columns:
        raise ValueError(f"convention {convention!r} is not in the summary; its metric columns "
                         f"are {metric_columns(summary)}")
    if by is not None and by not in summary.columns:
        raise ValueError(f"cannot spread {by!r}: not a column of {list(summary.columns)}")
    extras = [c for c in summary.columns
              if c not in ("model", by, "n") and c not in metric_columns(summary)]
    rows = []
    for model, group in summary.groupby("model", sort=False):
        row: dict[str, Any] = {"model": model}
        row.update({c: group[c].iloc[0] for c in extras})
        for _, rec in group.iterrows():
            suffix = f" ({rec[by]})" if by is not None else ""
            row[f"PSNR{suffix}"] = rec[psnr_col]
            row[f"SSIM{suffix}"] = rec[ssim_col]
        rows.append(row)
    return pd.DataFrame(rows)


def save_table(summary: pd.DataFrame, path_stem: str | os.PathLike, by: str | None = None,
               convention: str = "standard", caption: str | None = None,
               per_image: pd.DataFrame | None = None) -> pd.DataFrame:
    """Write a table: ``<stem>.md`` (the main view), ``<stem>.csv`` (every convention).

    ``<stem>.md`` holds `main_view` (one convention, one row per model) under ``caption``;
    ``<stem>.csv`` holds the whole summary at full precision (every convention, ``n``), and
    ``<stem>_per_image.csv`` the per-image scores when given.

    Returns:
        The main view (to display).
    """
    view = main_view(summary, by=by, convention=convention)
    stem = Path(path_stem)
    write_table(view, stem, caption=caption)
    atomic_write_text(stem.parent / f"{stem.name}.csv", summary.to_csv(index=False))
    if per_image is not None:
        atomic_write_text(stem.parent / f"{stem.name}_per_image.csv",
                          per_image.to_csv(index=False))
    return view
