"""The paper's Tables 1-4: which rows, which test pairs, how they are shown, and the verdicts.

Scoring is `spanetlib.evaluation.evaluate`'s one loop; the runs come from
`spanetlib.paper.runs`. This module puts them together:

- Table 1 (`run_table1`): the background estimators of §3 on synthetic rain videos, scored
  against the true background.
- Tables 2 and 4 (`score_test_pairs`; `table4_view` adds parameter counts): the derainers
  on the §3 test set. When the set is synthetic each rain image is scored against two references
  (`reference_pairs`): the *estimated* clean image that the dataset pipeline made (what the
  paper does: its ground truth is that estimate) and the *true* background that only
  synthetic rain gives us.
- Table 3 (`table3`): single synthetic rain images at three levels (`ensure_level_set`).

Scores are kept for every metric convention of `spanetlib.evaluation.metrics`; the tables'
main view uses one (`main_view`, "standard" by default) and `save_table` writes both. Over several
training seeds (`score_over_seeds`, `save_seed_table`) cells are mean ± std, Table 2 reads
"original (retrained)" (`table2_rows`, `table2_view`), and the paper's findings are decided by
paired tests (`table2_claims`, `table4_claims`, `save_claims`; the tests are
`spanetlib.paper.claims`').
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

from spanetlib.evaluation.evaluate import (
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
from spanetlib.evaluation.metrics import psnr_ssim_np
from spanetlib.io.checks import check_positive
from spanetlib.io.files import atomic_write_json, atomic_write_text, read_image
from spanetlib.models import load_pretrained
from spanetlib.paper.claims import (
    Claim,
    beats_all,
    claim_rows,
    mean_std_view,
    pairs_improve,
    seed_summary,
)
from spanetlib.paper.datasets import DatasetInfo
from spanetlib.paper.runs import (
    OFFICIAL,
    ORIGINAL_OF,
    OURS,
    RAIN_INPUT,
    TABLE2_ORIGINAL_RUNS,
    TABLE2_RUNS,
    TABLE4_RUNS,
    RunSpec,
    load_trained,
)
from spanetlib.pipeline.background import TABLE1_METHODS, robust_pca_background
from spanetlib.synthesis.testsets import Table1Video, build_synthetic_test_set, scene_ground_truth

__all__ = [
    "ESTIMATED_CLEAN",
    "TRUE_BACKGROUND",
    "PatchPosition",
    "ensure_level_set",
    "main_view",
    "models_for_tables",
    "patch_position",
    "reference_pairs",
    "run_table1",
    "save_claims",
    "save_seed_table",
    "score_over_seeds",
    "score_test_pairs",
    "table1_methods",
    "table2_claims",
    "table2_rows",
    "table2_view",
    "table3",
    "table4_claims",
    "table4_view",
]

#: The two references of the §3 test set (the ``reference`` column of Tables 2 and 4).
ESTIMATED_CLEAN = "estimated clean"
TRUE_BACKGROUND = "true background"


# --------------------------------------------------------------------------------------------
# Table 1
# --------------------------------------------------------------------------------------------
def table1_methods(rpca_max_iter: int = 100) -> dict[str, Callable[[np.ndarray], np.ndarray]]:
    """Table 1's methods (`spanetlib.pipeline.background.TABLE1_METHODS`) with the RPCA budget set.

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
            (`spanetlib.synthesis.testsets.make_table1_videos`).
        methods: display name -> ``f(frames) -> H x W x 3`` in 0..255 (default: all of
            `spanetlib.pipeline.background.TABLE1_METHODS`).
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
        runs: display name -> ``final.pt`` (e.g. one seed of ``ensure_seed_runs``).
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
    """The §3 test pairs with every reference the data has, for `spanetlib.evaluation.evaluate`.

    Each pair of the test list keeps its name (`spanetlib.evaluation.evaluate.read_pairs`) and
    is scored against its *estimated* clean image (`ESTIMATED_CLEAN`) and, for synthetic data, the
    *true* background (`TRUE_BACKGROUND`): the crop at (y, x), of the patch's size, of the
    scene's true background (`spanetlib.synthesis.testsets.scene_ground_truth` of
    ``scenes_dir/<scene>``), read from the patch name ``<scene>/rain/<frame>_<y>_<x>.png``.

    Args:
        dataset: the §3 dataset (synthetic: ``scenes_dir`` set).
        max_images: only the first pairs of the test list.

    Returns:
        One `spanetlib.evaluation.evaluate.Pair` per test pair, in list order.

    Raises:
        ValueError: bad ``max_images``, or a rain path of synthetic data that is not an
            exported patch or lies outside its true background.
        InputError: a missing or empty test list, a missing ground-truth image.
    """
    check_positive("max_images", max_images, allow_none=True)
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
def score_test_pairs(models: Mapping[str, Any], dataset: DatasetInfo,
                     conventions: Sequence[str] | None = None,
                     device: str | torch.device = "auto", max_images: int | None = None,
                     progress: bool = False) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Score derainers on the §3 test pairs against each reference (`reference_pairs`).

    The scoring behind Table 2 (the derainers) and Table 4 (SPANet's variants).

    Args:
        models: display name -> model (from `models_for_tables`; None scores the rain input).
        dataset: the §3 dataset of the run.
        conventions: metric conventions (default: all).
        device: "auto" (CUDA when available), "cpu" or "cuda".
        max_images: only the first test pairs.
        progress: show progress bars.

    Returns:
        ``(per_image, summary)`` of `spanetlib.evaluation.evaluate.compare_models`: per image
        ``model, reference, name, psnr[...], ssim[...]``; the summary has the means per model and
        reference and ``n``.
    """
    # Exported test patches share one size, so they go through the models 16 at a time.
    return compare_models(models, reference_pairs(dataset, max_images),
                          conventions=tuple(conventions or DEFAULT_CONVENTIONS), device=device,
                          progress=progress, batch_size=16, by="reference")


def ensure_level_set(work_dir: str | os.PathLike, n_per_level: int, size: Sequence[int],
                     seed: int = 0) -> tuple[Path, Path]:
    """The light/medium/heavy synthetic test set of Table 3 (Rain1200's role), built once.

    Built by `spanetlib.synthesis.testsets.build_synthetic_test_set` in ``work_dir/rain_levels`` and
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


# --------------------------------------------------------------------------------------------
# Several training seeds
# --------------------------------------------------------------------------------------------
def score_over_seeds(score: Callable[[dict[str, nn.Module | None]],
                                     tuple[pd.DataFrame, pd.DataFrame]],
                     seed_runs: Mapping[int, Mapping[str, str | os.PathLike]],
                     fixed: Mapping[str, nn.Module | None] | None = None,
                     device: str | torch.device = "cpu") -> pd.DataFrame:
    """The per-image scores of every seed's runs and of seed-independent rows, in one table.

    Args:
        score: a table function of the models, e.g. ``partial(score_test_pairs, dataset=dataset)``
            (returns ``(per_image, summary)``).
        seed_runs: seed -> display name -> ``final.pt`` (`spanetlib.paper.runs.ensure_seed_runs`).
        fixed: rows that do not depend on the training seed, scored once: the rain input
            (None), released weights.
        device: where to load the trained models.

    Returns:
        The per-image table of ``score`` with a ``seed`` column first (missing for the
        ``fixed`` rows, which come first), the input of `spanetlib.paper.claims`.

    Raises:
        ValueError: no seeds and no fixed rows.
    """
    if not seed_runs and not fixed:
        raise ValueError("expected runs of at least one seed or a fixed row, got neither")
    frames = []
    if fixed:
        per_image, _ = score(dict(fixed))
        per_image.insert(0, "seed", np.nan)
        frames.append(per_image)
    for seed, runs in seed_runs.items():
        per_image, _ = score({label: load_trained(path, device) for label, path in runs.items()})
        per_image.insert(0, "seed", float(seed))
        frames.append(per_image)
    return pd.concat(frames, ignore_index=True)


def _table2_order(model: str) -> int:
    """Rain input, the earlier derainers, the authors' SPANet, ours, then any other row."""
    order = [RAIN_INPUT, *(m for m in TABLE2_RUNS if m != OURS), OFFICIAL, OURS]
    return order.index(model) if model in order else len(order)


def table2_view(summary: pd.DataFrame, original_of: Mapping[str, str] | None = None,
                digits: int = 2) -> pd.DataFrame:
    """Table 2 as the paper prints it: each derainer's cell "original (retrained)".

    Args:
        summary: `spanetlib.paper.claims.seed_summary` of the Table 2 scores (by model and
            reference).
        original_of: retrained row -> its original row (default `spanetlib.paper.runs.ORIGINAL_OF`;
            e.g. ``{"PReNet": "PReNet (released weights)"}`` added for a user's download).
        digits: decimals of PSNR.

    Returns:
        Columns ``model`` and ``PSNR (<reference>)`` / ``SSIM (<reference>)``: "mean ± std"
        over seeds; a derainer with both rows reads "original (retrained)", a row with one
        (the rain input, the authors' weights) its single value. Order: rain input, the
        earlier derainers, the authors' SPANet, ours.
    """
    original_of = dict(ORIGINAL_OF if original_of is None else original_of)
    view = mean_std_view(summary, by="reference", digits=digits).set_index("model")
    columns = list(view.columns)
    originals = {o for r, o in original_of.items() if r in view.index and o in view.index}
    rows = []
    for model in view.index:
        if model in originals:
            continue
        original = original_of.get(model)
        if original in view.index:
            cells = {c: f"{view.at[original, c]} ({view.at[model, c]})" for c in columns}
        else:
            cells = {c: view.at[model, c] for c in columns}
        rows.append({"model": model, **cells})
    rows.sort(key=lambda row: _table2_order(row["model"]))
    return pd.DataFrame(rows, columns=["model", *columns])


#: Table 2's row for a user's download of PReNet's released weights (its "original" row).
RELEASED_PRENET = "PReNet (released weights)"


def table2_rows(released_prenet: str | os.PathLike | None = None,
                device: str | torch.device = "cpu"
                ) -> tuple[dict[str, RunSpec], dict[str, nn.Module | None], dict[str, str]]:
    """What Table 2 trains and what it scores once, and which row is whose original.

    Args:
        released_prenet: a file of PReNet's released weights (loaded by
            `spanetlib.models.load_pretrained`; never shipped or downloaded): it replaces the
            PReNet trained on single-image rain as PReNet's "original" row.
        device: where to load the seed-independent models.

    Returns:
        ``(runs, fixed, original_of)``: the runs to train per seed (`TABLE2_RUNS` and
        `TABLE2_ORIGINAL_RUNS`); the rows scored once (rain input, the authors' SPANet, the
        released PReNet); retrained row -> original row.

    Raises:
        InputError: ``released_prenet`` cannot be loaded.
    """
    specs = {**TABLE2_RUNS, **TABLE2_ORIGINAL_RUNS}
    original_of = dict(ORIGINAL_OF)
    fixed = models_for_tables({}, include_official=True, device=device)
    if released_prenet is not None:
        del specs[original_of["PReNet"]]
        original_of["PReNet"] = RELEASED_PRENET
        fixed[RELEASED_PRENET] = load_pretrained(Path(released_prenet), device=device)
    return specs, fixed, original_of


def table2_claims(per_image: pd.DataFrame, original_of: Mapping[str, str] | None = None,
                  alpha: float = 0.05) -> list[Claim]:
    """The paper's Table 2 findings, decided by `spanetlib.paper.claims` for every reference.

    - "SPANet beats the earlier derainers": our SPANet against DDN, RESCAN and PReNet, all
      retrained on the §3 pairs;
    - "retraining on the §3 pairs helps": each derainer retrained against its original row.

    Args:
        per_image: `score_over_seeds` of Table 2.
        original_of: retrained row -> original row (default `spanetlib.paper.runs.ORIGINAL_OF`).
        alpha: significance level of each comparison.

    Returns:
        The claims, per reference in the order of the table.
    """
    original_of = dict(ORIGINAL_OF if original_of is None else original_of)
    models = set(per_image["model"])
    earlier = [m for m in TABLE2_RUNS if m != OURS and m in models]
    pairs = [(m, o) for m, o in original_of.items() if m in models and o in models]
    references = (list(dict.fromkeys(per_image["reference"])) if "reference" in per_image
                  else [None])
    found = []
    for reference in references:
        where = f" (vs. the {reference})" if reference is not None else ""
        found.append(beats_all(per_image, OURS, earlier,
                               f"SPANet beats the earlier derainers{where}",
                               reference=reference, alpha=alpha))
        found.append(pairs_improve(per_image, pairs,
                                   f"retraining on the §3 pairs helps{where}",
                                   reference=reference, alpha=alpha))
    return found


def table4_view(summary: pd.DataFrame, parameters: Mapping[str, int], digits: int = 2
                ) -> pd.DataFrame:
    """Table 4 over seeds: "mean ± std" cells and each variant's number of parameters."""
    view = mean_std_view(summary, by="reference", digits=digits)
    view.insert(1, "parameters", view["model"].map(dict(parameters)).astype("Int64"))
    return view


def table4_claims(per_image: pd.DataFrame, full: str = "Shared SAMs (SPANet)",
                  alpha: float = 0.05) -> list[Claim]:
    """"Every part of the SAM helps": the full model against each ablation, per reference."""
    variants = [m for m in TABLE4_RUNS if m != full and m in set(per_image["model"])]
    references = (list(dict.fromkeys(per_image["reference"])) if "reference" in per_image
                  else [None])
    return [beats_all(per_image, full, variants,
                      "the full SPANet (shared SAMs) beats every ablation"
                      + (f" (vs. the {reference})" if reference is not None else ""),
                      reference=reference, alpha=alpha)
            for reference in references]


def save_seed_table(per_image: pd.DataFrame, path_stem: str | os.PathLike,
                    by: str | None = "reference", caption: str | None = None,
                    view: Callable[[pd.DataFrame], pd.DataFrame] | None = None,
                    convention: str = "standard") -> pd.DataFrame:
    """Write a table over seeds: ``<stem>.md`` (mean ± std), ``<stem>.csv``, per-image scores.

    Args:
        per_image: scores of every seed (`score_over_seeds`).
        path_stem: ``results/table2`` writes ``table2.md``, ``table2.csv`` (the
            `spanetlib.paper.claims.seed_summary`: means, stds, seeds, images) and
            ``table2_per_image.csv``.
        by: the group column (``"reference"``, ``"level"``).
        caption: the Markdown table's caption.
        view: the readable table from the summary (default: `spanetlib.paper.claims.mean_std_view`).
        convention: the metric convention shown.

    Returns:
        The readable table.
    """
    keys = ("model",) if by is None else ("model", by)
    summary = seed_summary(per_image, convention=convention, by=keys)
    table = (view(summary) if view is not None else mean_std_view(summary, by=by))
    stem = Path(path_stem)
    write_table(summary, stem, caption=caption, markdown=table)
    atomic_write_text(stem.parent / f"{stem.name}_per_image.csv", per_image.to_csv(index=False))
    return table


def save_claims(claims: Sequence[Claim], path_stem: str | os.PathLike) -> pd.DataFrame:
    """Write the claims' comparisons: ``<stem>.csv`` (`spanetlib.paper.claims.claim_rows`).

    Returns:
        The rows written.
    """
    rows = claim_rows(claims)
    stem = Path(path_stem)
    atomic_write_text(stem.parent / f"{stem.name}.csv", rows.to_csv(index=False))
    return rows


# --------------------------------------------------------------------------------------------
# Verdicts and views
# --------------------------------------------------------------------------------------------
def main_view(summary: pd.DataFrame, by: str | None = None, convention: str = "standard"
              ) -> pd.DataFrame:
    """The readable table: one row per model, PSNR and SSIM of one convention per group.

    Args:
        summary: a summary from `score_test_pairs` or `table3`.
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
    write_table(summary, stem, caption=caption, markdown=view)
    if per_image is not None:
        atomic_write_text(stem.parent / f"{stem.name}_per_image.csv",
                          per_image.to_csv(index=False))
    return view
