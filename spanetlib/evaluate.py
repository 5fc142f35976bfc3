"""Benchmark tables: PSNR/SSIM of derainers over pair lists (``spanet evaluate``, Tables 2-4).

Results are kept in a **wide** per-image table, one row per (model, image pair):

- ``model`` (only from `compare_models` and `evaluate_command`): the display name;
- ``name``: the pair's name (the rain image path relative to the list's folder, POSIX style,
  for pair lists; the rain file name or the given name otherwise);
- label columns passed through from ``labels`` (e.g. ``level`` for Table 3);
- ``psnr[<convention>]`` and ``ssim[<convention>]`` for each metric convention of
  `spanetlib.metrics` ("standard", "spanet-paper", "y-matlab").

`summarize` averages the metric columns per model (and per label, with ``by``): a dataset score
is the mean of the per-image values, as in the authors' evaluation. Identical images score
PSNR ``inf`` (so does any mean that includes one) and SSIM 1. `write_table` writes a table as
``.csv`` (full precision) and ``.md`` (rounded) side by side, atomically.

The "model" ``None`` (or the string ``"input"``) scores the rain input itself against the clean
image: the "Rain input" row of the tables. `heldout_check` scores a derainer against the rain
input on rain outside the synthesizer's presets (`spanetlib.data.build_heldout_rain_set`).
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn

from .fileio import InputError, atomic_write_text, read_image

__all__ = [
    "DEFAULT_CONVENTIONS",
    "compare_models",
    "evaluate_command",
    "evaluate_model",
    "format_markdown",
    "heldout_check",
    "metric_column",
    "metric_columns",
    "summarize",
    "write_table",
]

#: Conventions scored by default (all of `spanetlib.metrics.CONVENTIONS`).
DEFAULT_CONVENTIONS: tuple[str, ...] = ("standard", "spanet-paper", "y-matlab")

_METRIC_RE = re.compile(r"^(psnr|ssim)\[(.+)\]$")
_INPUT = "input"

#: What `evaluate_model` accepts as a model: a derainer, ``None``/"input" (score the rain
#: input), or a weights name/path for `spanetlib.models.official.load_pretrained`.
ModelLike = nn.Module | str | os.PathLike | None
#: One pair: (rain, clean) or (rain, clean, name); rain/clean are paths or H x W x 3 arrays.
PairItem = tuple[Any, Any] | tuple[Any, Any, str]


def metric_column(metric: str, convention: str) -> str:
    """Column name of one metric under one convention, e.g. ``"psnr[standard]"``."""
    if metric not in ("psnr", "ssim"):
        raise ValueError(f"metric must be 'psnr' or 'ssim', got {metric!r}")
    return f"{metric}[{convention}]"


def metric_columns(df: pd.DataFrame) -> list[str]:
    """The ``psnr[...]`` / ``ssim[...]`` columns of ``df``, in column order."""
    return [c for c in df.columns if isinstance(c, str) and _METRIC_RE.match(c)]


# --------------------------------------------------------------------------------------------
# Inputs
# --------------------------------------------------------------------------------------------
@dataclass
class _Pair:
    name: str
    rain: Any   # Path or ndarray
    clean: Any  # Path or ndarray


def _check_conventions(conventions: str | Sequence[str]) -> tuple[str, ...]:
    from .metrics import CONVENTIONS

    if isinstance(conventions, str):
        conventions = (conventions,)
    conventions = tuple(conventions)
    if not conventions:
        raise ValueError("expected at least one metric convention, got none")
    for conv in conventions:
        if conv not in CONVENTIONS:
            raise ValueError(f"unknown metric convention {conv!r}; expected one of {CONVENTIONS}")
    return tuple(dict.fromkeys(conventions))


def _pairs_from_list(path: Path) -> list[_Pair]:
    from .data import find_pair_list, read_pair_list

    if path.is_dir():
        path = find_pair_list(path, "test")
    pairs = read_pair_list(path)
    if not pairs:
        raise InputError(f"pair list holds no pairs: {path}")
    list_dir = path.resolve().parent
    out = []
    for rain, clean in pairs:
        rel = os.path.relpath(rain, list_dir)
        name = Path(rel).as_posix() if not rel.startswith("..") else Path(rain).as_posix()
        out.append(_Pair(name, Path(rain), Path(clean)))
    return out


def _load_pairs(pairs: str | os.PathLike | Iterable[PairItem] | Sequence[_Pair]) -> list[_Pair]:
    if isinstance(pairs, (str, os.PathLike)):
        return _pairs_from_list(Path(pairs))
    out = []
    for i, item in enumerate(pairs):
        if isinstance(item, _Pair):
            out.append(item)
            continue
        if not isinstance(item, (tuple, list)) or len(item) not in (2, 3):
            raise ValueError(f"pair {i}: expected (rain, clean) or (rain, clean, name), "
                             f"got {type(item).__name__} of length {len(item)}"
                             if isinstance(item, (tuple, list)) else
                             f"pair {i}: expected a tuple, got {type(item).__name__}")
        rain, clean = item[0], item[1]
        for what, value in (("rain", rain), ("clean", clean)):
            if not isinstance(value, (str, os.PathLike, np.ndarray)):
                raise TypeError(f"pair {i}: {what} must be a path or an H x W x 3 array, "
                                f"got {type(value).__name__}")
        if len(item) == 3:
            name = str(item[2])
        elif isinstance(rain, (str, os.PathLike)):
            name = Path(rain).name
        else:
            name = f"{i:05d}"
        out.append(_Pair(name,
                         Path(rain) if isinstance(rain, (str, os.PathLike)) else rain,
                         Path(clean) if isinstance(clean, (str, os.PathLike)) else clean))
    if not out:
        raise ValueError("expected at least one image pair, got none")
    return out


def _read(value: Any, name: str, what: str) -> np.ndarray:
    if isinstance(value, Path):
        return read_image(value)
    img = np.asarray(value)
    if img.ndim != 3 or img.shape[2] != 3:
        raise ValueError(f"{name}: expected an H x W x 3 {what} image, got shape {img.shape}")
    if img.dtype != np.uint8 and not np.issubdtype(img.dtype, np.floating):
        raise TypeError(f"{name}: expected a uint8 or float {what} image, got dtype {img.dtype}")
    return img


def _resolve_device(device: str | torch.device) -> torch.device:
    from .models.official import resolve_torch_device

    return resolve_torch_device(device)


def _resolve_model(model: ModelLike, device: torch.device) -> nn.Module | None:
    if model is None or (isinstance(model, str) and model == _INPUT):
        return None
    if isinstance(model, (str, os.PathLike)):
        from .models.official import load_pretrained

        return load_pretrained(model, device=device)
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be an nn.Module, None, 'input' or a weights name/path, "
                        f"got {type(model).__name__}")
    return model


def _labels_table(labels: pd.DataFrame | str | os.PathLike | None) -> pd.DataFrame | None:
    if labels is None:
        return None
    if isinstance(labels, (str, os.PathLike)):
        path = Path(labels)
        if not path.is_file():
            raise InputError(f"labels file not found: {path}")
        labels = pd.read_csv(path)
    if not isinstance(labels, pd.DataFrame):
        raise TypeError(f"labels must be a DataFrame or a CSV path, got {type(labels).__name__}")
    if "name" not in labels.columns:
        raise ValueError(f"labels need a 'name' column, got columns {list(labels.columns)}")
    if labels["name"].duplicated().any():
        dup = labels.loc[labels["name"].duplicated(), "name"].iloc[0]
        raise ValueError(f"labels hold the name {dup!r} more than once")
    return labels.astype({"name": str})


# --------------------------------------------------------------------------------------------
# Evaluation
# --------------------------------------------------------------------------------------------
def _derain_batch(model: nn.Module, images: list[np.ndarray], device: torch.device
                  ) -> list[np.ndarray]:
    """Run ``model`` on same-sized images stacked into one batch; outputs clipped to [0, 1]."""
    from .metrics import image_to_tensor

    x = torch.cat([image_to_tensor(img) for img in images]).to(device)
    with torch.inference_mode():
        out, _ = model(x)
    out = out.clamp(0, 1).permute(0, 2, 3, 1).float().cpu().numpy()
    return list(out)


def evaluate_model(
    model: ModelLike,
    pairs: str | os.PathLike | Iterable[PairItem],
    conventions: str | Sequence[str] = DEFAULT_CONVENTIONS,
    device: str | torch.device = "cpu",
    tile: int | None = None,
    max_images: int | None = None,
    progress: bool = True,
    batch_size: int = 1,
    labels: pd.DataFrame | str | os.PathLike | None = None,
    desc: str | None = None,
) -> pd.DataFrame:
    """PSNR and SSIM of one derainer on every image pair.

    Each rain image is derained with `spanetlib.inference.derain_array` (output clipped to
    [0, 1], kept in float) and scored against its clean image with
    `spanetlib.metrics.psnr_ssim_np` under every convention.

    Args:
        model: a derainer (``forward(x) -> (image, attention)``; moved to ``device`` and put
            in eval mode in place; its train/eval mode is restored afterwards), ``None`` or
            ``"input"`` to score the rain input itself, or a weights name/path for
            `spanetlib.models.official.load_pretrained` ("official", "synthetic", a checkpoint).
        pairs: a pair-list file (SPA-Data format; a dataset folder picks its test list), or a
            sequence of ``(rain, clean)`` / ``(rain, clean, name)`` with paths or H x W x 3
            RGB arrays (uint8, or float in [0, 1]).
        conventions: metric conventions of `spanetlib.metrics.CONVENTIONS`.
        device: "cpu", "cuda", "cuda:N" or "auto".
        tile: tile size for large images (passed to ``derain_array``); ``None``: whole image.
        max_images: score only the first ``max_images`` pairs.
        progress: show a tqdm progress bar.
        batch_size: with ``tile=None``, consecutive images of equal size are derained as one
            batch of up to this many (faster on a GPU; results agree with batch size 1 to
            floating-point rounding). Tiled images are always derained one by one.
        labels: a table (DataFrame or CSV path) with a ``name`` column and extra columns (e.g.
            ``level``) merged into the result by pair name (the name, the name without its
            suffix, or the rain file's stem, as in ``labels.csv`` of
            `spanetlib.data.build_synthetic_test_set`); unmatched pairs get NaN.
        desc: progress-bar label.

    Returns:
        One row per pair: ``name``, the label columns, then ``psnr[<conv>]`` and
        ``ssim[<conv>]`` per convention (floats; PSNR ``inf`` for identical images).

    Raises:
        InputError: missing or unreadable list/images, rain and clean sizes differ, CUDA
            requested but absent.
        ValueError: unknown convention, bad ``max_images``/``batch_size``/``tile``, no pairs.
    """
    from tqdm.auto import tqdm

    from .metrics import psnr_ssim_np

    conventions = _check_conventions(conventions)
    for arg, value in (("max_images", max_images), ("tile", tile)):
        if value is not None and (not isinstance(value, int) or value < 1):
            raise ValueError(f"{arg} must be a positive int or None, got {value!r}")
    if not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
    table = _labels_table(labels)
    items = _load_pairs(pairs)
    if max_images is not None:
        items = items[:max_images]
    device = _resolve_device(device)
    net = _resolve_model(model, device)
    was_training = net.training if net is not None else False
    if net is not None:
        net.eval().to(device)  # as derain_array does

    rows: list[dict[str, Any]] = []
    bar = tqdm(total=len(items), desc=desc or ("input" if net is None else "evaluate"),
               unit="img", disable=not progress)
    try:
        for start in range(0, len(items), batch_size):
            chunk = items[start:start + batch_size]
            rains, cleans = [], []
            for item in chunk:
                rain = _read(item.rain, item.name, "rain")
                clean = _read(item.clean, item.name, "clean")
                if rain.shape != clean.shape:
                    raise InputError(f"{item.name}: rain and clean sizes differ: "
                                     f"{rain.shape[:2]} vs {clean.shape[:2]}")
                rains.append(rain)
                cleans.append(clean)
            preds = _derain_chunk(net, rains, device, tile)
            for item, pred, clean in zip(chunk, preds, cleans, strict=True):
                row: dict[str, Any] = {"name": item.name}
                for conv in conventions:
                    p, s = psnr_ssim_np(pred, clean, conv)
                    row[metric_column("psnr", conv)] = p
                    row[metric_column("ssim", conv)] = s
                rows.append(row)
            bar.update(len(chunk))
    finally:
        bar.close()
        if net is not None:
            net.train(was_training)

    df = pd.DataFrame(rows)
    if table is not None:
        df = _merge_labels(df, table)
    return df


def _merge_labels(df: pd.DataFrame, table: pd.DataFrame) -> pd.DataFrame:
    """Join label columns by name.

    A label's ``name`` may be the pair's name, that name without its suffix, or the rain
    file's stem (``labels.csv`` of `build_synthetic_test_set` names pairs by stem).
    """
    known = set(table["name"])
    keys = []
    for name in df["name"]:
        path = Path(name)
        candidates = (name, path.with_suffix("").as_posix(), path.stem)
        keys.append(next((c for c in candidates if c in known), None))
    extra = [c for c in table.columns if c != "name"]
    joined = table.set_index("name").reindex(keys)[extra].reset_index(drop=True)
    return pd.concat([df[["name"]], joined, df[metric_columns(df)]], axis=1)


def _derain_chunk(net: nn.Module | None, rains: list[np.ndarray], device: torch.device,
                  tile: int | None) -> list[np.ndarray]:
    if net is None:
        return rains
    if tile is None and len(rains) > 1:
        preds: list[np.ndarray] = []
        start = 0
        while start < len(rains):  # consecutive runs of equal size
            stop = start + 1
            while stop < len(rains) and rains[stop].shape == rains[start].shape:
                stop += 1
            preds.extend(_derain_batch(net, rains[start:stop], device))
            start = stop
        return preds
    from .inference import derain_array

    return [derain_array(net, rain, tile=tile, device=device)[0] for rain in rains]


def compare_models(
    models: Mapping[str, ModelLike],
    pairs: str | os.PathLike | Iterable[PairItem],
    conventions: str | Sequence[str] = DEFAULT_CONVENTIONS,
    device: str | torch.device = "cpu",
    tile: int | None = None,
    max_images: int | None = None,
    progress: bool = True,
    batch_size: int = 1,
    labels: pd.DataFrame | str | os.PathLike | None = None,
    by: str | Sequence[str] | None = None,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Evaluate several models on the same pairs (the rows of Tables 2-4).

    Args:
        models: display name -> model (anything `evaluate_model` accepts; ``None`` or
            ``"input"`` gives the "Rain input" row). Rows keep this order.
        pairs: as for `evaluate_model` (the list is read once).
        conventions: metric conventions.
        device: "cpu", "cuda", "cuda:N" or "auto".
        tile: tile size passed to ``derain_array``.
        max_images: score only the first ``max_images`` pairs.
        progress: show progress bars (one per model).
        batch_size: as for `evaluate_model`.
        labels: as for `evaluate_model`.
        by: label column(s) to group the summary by (e.g. ``"level"`` for Table 3).

    Returns:
        ``(per_image, summary)``: the per-image table with a leading ``model`` column, and
        `summarize` of it.

    Raises:
        ValueError: no models, or as `evaluate_model`.
    """
    if not models:
        raise ValueError("expected at least one model, got none")
    items = _load_pairs(pairs)
    frames = []
    for name, model in models.items():
        df = evaluate_model(model, items, conventions=conventions, device=device, tile=tile,
                            max_images=max_images, progress=progress, batch_size=batch_size,
                            labels=labels, desc=str(name))
        df.insert(0, "model", str(name))
        frames.append(df)
    per_image = pd.concat(frames, ignore_index=True)
    return per_image, summarize(per_image, by=by)


def summarize(per_image: pd.DataFrame, by: str | Sequence[str] | None = None) -> pd.DataFrame:
    """Mean of every metric column per model (and per label), with the number of images.

    Args:
        per_image: a table from `evaluate_model` / `compare_models` (any table with
            ``psnr[...]`` / ``ssim[...]`` columns).
        by: extra column(s) to group by, after ``model`` when that column exists.

    Returns:
        One row per group (groups in order of first appearance): the group columns, the
        metric means, and ``n`` (images averaged). Without any grouping column, one row.

    Raises:
        ValueError: no metric columns, or a ``by`` column is missing.
    """
    metrics = metric_columns(per_image)
    if not metrics:
        raise ValueError("per_image has no psnr[...]/ssim[...] columns; got columns "
                         f"{list(per_image.columns)}")
    by_cols = [by] if isinstance(by, str) else list(by or ())
    for col in by_cols:
        if col not in per_image.columns:
            raise ValueError(f"cannot group by {col!r}: not a column of "
                             f"{list(per_image.columns)}")
    keys = (["model"] if "model" in per_image.columns and "model" not in by_cols else [])
    keys += by_cols
    if not keys:
        out = per_image[metrics].mean().to_frame().T
        out["n"] = len(per_image)
        return out.reset_index(drop=True)
    groups = per_image.groupby(keys, sort=False, dropna=False)
    out = groups[metrics].mean()
    out["n"] = groups.size()
    return out.reset_index()


# --------------------------------------------------------------------------------------------
# Writing tables
# --------------------------------------------------------------------------------------------
def _default_format(column: Any) -> str:
    return "%.4f" if str(column).lower().startswith("ssim") else "%.2f"


def _format_cell(value: Any, fmt: str) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    if isinstance(value, (float, np.floating)):
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return fmt % value
    return str(value).replace("|", "\\|").replace("\n", " ")


def format_markdown(df: pd.DataFrame, float_format: str | Mapping[str, str] | None = None
                    ) -> str:
    """Render ``df`` as a GitHub markdown table (numeric columns right-aligned).

    Args:
        df: the table; a non-default index is written as leading column(s).
        float_format: one printf format for every float column, or column -> format; columns
            not given use ``"%.4f"`` for SSIM columns and ``"%.2f"`` for the others.

    Returns:
        The table text: a header row, a separator row, one row per record.
    """
    if not isinstance(df.index, pd.RangeIndex):
        df = df.reset_index()
    fmts = {}
    for col in df.columns:
        if isinstance(float_format, str):
            fmts[col] = float_format
        elif float_format is not None and col in float_format:
            fmts[col] = float_format[col]
        else:
            fmts[col] = _default_format(col)
    header = [str(c).replace("|", "\\|") for c in df.columns]
    numeric = [pd.api.types.is_numeric_dtype(df[c]) for c in df.columns]
    lines = ["| " + " | ".join(header) + " |",
             "|" + "|".join("---:" if num else "---" for num in numeric) + "|"]
    for record in df.itertuples(index=False, name=None):
        cells = [_format_cell(v, fmts[c]) for v, c in zip(record, df.columns, strict=True)]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _stem(path_stem: str | os.PathLike) -> Path:
    stem = Path(path_stem)
    if stem.suffix in (".csv", ".md"):
        stem = stem.with_suffix("")
    return stem


def write_table(
    df: pd.DataFrame,
    path_stem: str | os.PathLike,
    float_format: str | Mapping[str, str] | None = None,
    caption: str | None = None,
) -> tuple[Path, Path]:
    """Write ``df`` as ``<stem>.csv`` (full precision) and ``<stem>.md`` (rounded), atomically.

    Args:
        df: the table (e.g. from `summarize`); a non-default index is written as column(s).
        path_stem: output path without suffix (a ``.csv``/``.md`` suffix is dropped).
        float_format: markdown number format(s), as for `format_markdown`; the CSV keeps every
            digit so it reads back to the same numbers.
        caption: a line written above the markdown table.

    Returns:
        ``(csv_path, md_path)``.
    """
    stem = _stem(path_stem)
    table = df if isinstance(df.index, pd.RangeIndex) else df.reset_index()
    csv_path = atomic_write_text(stem.parent / f"{stem.name}.csv", table.to_csv(index=False))
    md = format_markdown(table, float_format)
    if caption:
        md = f"{caption.strip()}\n\n{md}"
    md_path = atomic_write_text(stem.parent / f"{stem.name}.md", md)
    return csv_path, md_path


# --------------------------------------------------------------------------------------------
# Held-out check
# --------------------------------------------------------------------------------------------
class _PassThrough(nn.Module):
    """Returns its input: scores the rain input through the same float path as a derainer."""

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, None]:
        return x, None


def heldout_check(
    model: ModelLike,
    out_dir: str | os.PathLike,
    n_per_condition: int = 2,
    size: tuple[int, int] = (128, 128),
    seed: int = 0,
    device: str | torch.device = "cpu",
    conventions: str | Sequence[str] = ("standard",),
) -> pd.DataFrame:
    """Score a derainer on rain outside the synthesizer's presets, on held-out photos.

    Builds the set with `spanetlib.data.build_heldout_rain_set` (every condition of
    `spanetlib.data.HELDOUT_RAIN_CONDITIONS`, photos `spanetlib.rain.HELDOUT_BACKGROUND_NAMES`)
    in ``out_dir/heldout_set``, rebuilding it on every call; scores the rain input and the model
    with `compare_models`, and writes the table with `write_table` to
    ``out_dir/heldout_check.csv`` and ``.md``. A gain is the model's mean minus the input's
    mean over the same images. The input is scored as the output of a pass-through model, in
    the same float32 path as the model's output (it differs from the ``"input"`` row of
    `evaluate_model`, which scores the uint8 image in float64, by about 1e-6 dB), so an
    identity model gains exactly 0. A model that generalises has positive gains in every row.

    Args:
        model: anything `evaluate_model` accepts (a derainer, or a weights name/path).
        out_dir: output folder (created).
        n_per_condition: images per condition.
        size: image size (H, W), each >= 8 (SSIM needs at least 11).
        seed: seed of the crops and the rain.
        device: "cpu", "cuda", "cuda:N" or "auto".
        conventions: metric conventions; the "standard" columns are named ``psnr_input`` ...,
            those of another convention ``psnr_input[<convention>]`` ....

    Returns:
        One row per condition (in `HELDOUT_RAIN_CONDITIONS` order), then an ``"all"`` row
        averaged over every image: ``condition``, ``n``, then per convention ``psnr_input``,
        ``psnr_model``, ``psnr_gain``, ``ssim_input``, ``ssim_model``, ``ssim_gain``.

    Raises:
        ValueError: bad counts, size or convention, as `build_heldout_rain_set` and
            `evaluate_model`.
    """
    from .data import build_heldout_rain_set

    conventions = _check_conventions(conventions)
    out_dir = Path(out_dir)
    list_path = build_heldout_rain_set(out_dir / "heldout_set", n_per_condition=n_per_condition,
                                       size=size, seed=seed)
    per_image, by_condition = compare_models(
        {"input": _PassThrough(), "model": model}, list_path, conventions=conventions,
        device=device, progress=False, labels=list_path.parent / "labels.csv", by="condition")
    overall = summarize(per_image).assign(condition="all")
    scores = pd.concat([by_condition, overall], ignore_index=True)
    input_scores = scores[scores["model"] == "input"].set_index("condition")
    model_scores = scores[scores["model"] == "model"].set_index("condition")
    table = pd.DataFrame({"condition": model_scores.index, "n": model_scores["n"].to_numpy()})
    for conv in conventions:
        suffix = "" if conv == "standard" else f"[{conv}]"
        for metric in ("psnr", "ssim"):
            column = metric_column(metric, conv)
            before = input_scores.loc[model_scores.index, column].to_numpy()
            after = model_scores[column].to_numpy()
            table[f"{metric}_input{suffix}"] = before
            table[f"{metric}_model{suffix}"] = after
            table[f"{metric}_gain{suffix}"] = after - before
    caption = (f"Held-out check: {len(per_image) // 2} images of {size[0]} x {size[1]} px with "
               "rain outside the training presets, on held-out photos")
    write_table(table, out_dir / "heldout_check", caption=caption)
    return table


# --------------------------------------------------------------------------------------------
# CLI
# --------------------------------------------------------------------------------------------
def evaluate_command(
    model_spec: str | os.PathLike,
    list_path: str | os.PathLike,
    out_stem: str | os.PathLike,
    conventions: str | Sequence[str] = DEFAULT_CONVENTIONS,
    device: str = "auto",
    tile: int | None = None,
    max_images: int | None = None,
    progress: bool = True,
) -> pd.DataFrame:
    """The ``spanet evaluate`` command: score one model over a pair list and write the tables.

    Writes ``<out_stem>_per_image.csv`` (one row per pair) and the summary as
    ``<out_stem>.csv`` and ``<out_stem>.md``, then prints the summary and the paths.

    Args:
        model_spec: "official", "synthetic", a checkpoint path (via
            `spanetlib.models.official.load_pretrained`), or "input" to score the rain input.
        list_path: a pair-list file, or a dataset folder (its test list is used).
        out_stem: output path without suffix.
        conventions: metric conventions.
        device: "auto", "cpu", "cuda" or "cuda:N".
        tile: tile size for large images.
        max_images: score only the first ``max_images`` pairs.
        progress: show a progress bar.

    Returns:
        The summary table (one row: ``model``, metric means, ``n``).

    Raises:
        InputError: missing list, images or weights; CUDA requested but absent.
    """
    list_path = Path(list_path)
    if not list_path.exists():
        raise InputError(f"pair list not found: {list_path}")
    conventions = _check_conventions(conventions)
    device = _resolve_device(device)
    spec = os.fspath(model_spec)
    label = spec if spec in ("official", "synthetic", _INPUT) else Path(spec).stem
    per_image = evaluate_model(spec, list_path, conventions=conventions, device=device,
                               tile=tile, max_images=max_images, progress=progress, desc=label)
    per_image.insert(0, "model", label)
    summary = summarize(per_image)
    stem = _stem(out_stem)
    per_image_path = atomic_write_text(stem.parent / f"{stem.name}_per_image.csv",
                                       per_image.to_csv(index=False))
    caption = f"PSNR / SSIM of {label} on {list_path} ({len(per_image)} images)"
    csv_path, md_path = write_table(summary, stem, caption=caption)
    print(format_markdown(summary), end="")
    print(f"wrote {csv_path}, {md_path} and {per_image_path}")
    return summary
