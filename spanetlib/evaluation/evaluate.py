"""Benchmark tables: PSNR/SSIM of derainers over test folders (``spanet evaluate``, Tables 2-4).

Pairs come from any test folder the field uses (`spanetlib.io.layouts.read_test_folder`: Restormer's
input/target, PReNet's Rain100H/L, DDN's Rain1400, SPA-Data, DID-MDN's Rain1200, pair lists),
from what it returned (`spanetlib.io.layouts.FolderPairs`), or from images given directly.

Results are kept in a **wide** per-image table, one row per (model, image pair):

- ``model`` (only from `compare_models` and `evaluate_command`): the display name;
- ``reference`` (only when the pairs name their references, see `Pair`): which clean image
  the row is scored against, e.g. "estimated clean" and "true background" for the §3 test
  set, whose every rain image is derained once and scored against both;
- ``name``: the pair's name (for a test folder or pair list, the rain image's path relative to
  its folder without extension, POSIX style, as `spanetlib.io.layouts` names it; the rain file
  name or the given name otherwise);
- label columns passed through from ``labels`` (e.g. ``level`` for Table 3);
- ``psnr[<convention>]`` and ``ssim[<convention>]`` for each metric convention of
  `spanetlib.evaluation.metrics` ("standard", "spanet-paper", "y-matlab", "y-matlab-builtin"; which
  published numbers use which: `convention_note`).

`summarize` averages the metric columns per model (and per label, with ``by``): a dataset score
is the mean of the per-image values, as in the authors' evaluation. Identical images score
PSNR ``inf`` (so does any mean that includes one) and SSIM 1. `write_table` writes a table as
``.csv`` (full precision) and ``.md`` (rounded) side by side, atomically.

The "model" ``None`` (or the string ``"input"``) scores the rain input itself: the "Rain input"
row of every table. It is scored in the form a derainer's output has (`as_prediction`: float32
in [0, 1]), so a model that returns its input scores exactly like the rain input.
`heldout_check` scores a derainer against the rain input on rain outside the synthesizer's
presets (`spanetlib.synthesis.testsets.build_heldout_rain_set`).

With ``save_outputs``, `evaluate_model` also writes every derained image as a lossless PNG,
``<folder>/<name>.png`` (the pair's name; a known image suffix of the name is replaced by
``.png``), of the rain image's size; existing files are never replaced unless
``overwrite=True``, and that is checked before any model is loaded.
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
from tqdm.auto import tqdm

from spanetlib.derain.images import derain_array
from spanetlib.evaluation.metrics import CONVENTIONS, METRIC_CONVENTIONS, psnr_ssim_np
from spanetlib.io.checks import check_positive
from spanetlib.io.errors import InputError
from spanetlib.io.files import (
    IMAGE_SUFFIXES,
    ImageFormat,
    atomic_write_text,
    check_image_values,
    read_image_with_format,
    restore_format,
    write_image,
)
from spanetlib.io.layouts import FolderPairs, ImagePair, ImageRef, read_test_folder
from spanetlib.models.convert import image_to_tensor
from spanetlib.models.device import autocast, resolve_precision, resolve_torch_device
from spanetlib.models.pretrained import PRETRAINED_NAMES, load_pretrained
from spanetlib.synthesis.testsets import build_heldout_rain_set

__all__ = [
    "CLEAN",
    "DEFAULT_CONVENTIONS",
    "Pair",
    "as_prediction",
    "compare_models",
    "convention_note",
    "evaluate_command",
    "evaluate_model",
    "format_markdown",
    "heldout_check",
    "metric_column",
    "metric_columns",
    "output_paths",
    "read_pairs",
    "summarize",
    "write_table",
]

#: Conventions scored by default: all of `spanetlib.evaluation.metrics.CONVENTIONS`, so a table
# holds
#: the published numbers' conventions (`y-matlab`, `y-matlab-builtin`, `spanet-paper`) too.
DEFAULT_CONVENTIONS: tuple[str, ...] = CONVENTIONS

#: The reference of a plain (rain, clean) pair.
CLEAN = "clean"

_METRIC_RE = re.compile(r"^(psnr|ssim)\[(.+)\]$")
_INPUT = "input"


@dataclass(frozen=True)
class Pair:
    """One rain image and the clean image(s) it is scored against.

    Attributes:
        name: the pair's name (the ``name`` column).
        rain: a path, a `spanetlib.io.layouts.ImageRef` (a file or half of one) or an H x W x 3
            RGB array (uint8, or float in [0, 1]).
        references: reference name -> clean image (as ``rain``) of the rain image's size.
            A pair from a pair list or a ``(rain, clean)`` tuple has one, `CLEAN`; the §3 test
            set of synthetic data has two, ``"estimated clean"`` and ``"true background"``.
    """

    name: str
    rain: Any
    references: Mapping[str, Any]


#: What `evaluate_model` accepts as a model: a derainer, ``None``/"input" (score the rain
#: input), or a weights name/path for `spanetlib.models.pretrained.load_pretrained`.
ModelLike = nn.Module | str | os.PathLike | None
#: One pair: (rain, clean), (rain, clean, name), a `Pair` or a `spanetlib.io.layouts.ImagePair`;
#: images are paths, `ImageRef` or arrays.
PairItem = tuple[Any, Any] | tuple[Any, Any, str] | Pair | ImagePair
#: Every form of pairs `read_pairs` takes.
PairsLike = str | os.PathLike | FolderPairs | Iterable[PairItem]


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
def _check_conventions(conventions: str | Sequence[str]) -> tuple[str, ...]:
    if isinstance(conventions, str):
        conventions = (conventions,)
    conventions = tuple(conventions)
    if not conventions:
        raise ValueError("expected at least one metric convention, got none")
    for conv in conventions:
        if conv not in CONVENTIONS:
            raise ValueError(f"unknown metric convention {conv!r}; expected one of {CONVENTIONS}")
    return tuple(dict.fromkeys(conventions))


def _image_value(ref: ImageRef) -> Path | ImageRef:
    return ref.path if ref.half == "full" else ref


def _from_image_pair(pair: ImagePair) -> Pair:
    return Pair(pair.name, _image_value(pair.rain), {CLEAN: _image_value(pair.clean)})


def _as_image(value: Any) -> Any:
    return Path(value) if isinstance(value, (str, os.PathLike)) else value


def read_pairs(pairs: PairsLike) -> list[Pair]:
    """The pairs to score, as `Pair` objects.

    Args:
        pairs: a test folder in any layout of `spanetlib.io.layouts` or a pair-list file (read
            with `spanetlib.io.layouts.read_test_folder`, layout detected), what that function
            returned (a `FolderPairs`, e.g. with a forced layout), or a sequence of
            ``(rain, clean)`` / ``(rain, clean, name)`` tuples (paths, `ImageRef` or H x W x 3
            arrays), `Pair` or `ImagePair` objects.

    Returns:
        One `Pair` per item, in order. A test folder's pairs keep their names and order
        (`spanetlib.io.layouts`: the rain file's path relative to its folder, without
        extension); a tuple is named by its name, else its rain file's name, else its index
        (``"00003"``).

    Raises:
        InputError: the folder or list is missing, has no known layout, is ambiguous or
            incomplete (one line saying what was expected).
        ValueError: no pairs, or an item of the wrong length.
        TypeError: an image that is neither a path, an `ImageRef` nor an array.

    Example:
        >>> image = np.zeros((4, 4, 3), np.uint8)
        >>> [(p.name, list(p.references)) for p in read_pairs([(image, image, "a"),
        ...                                                    ("x/rain/1.png", "x/gt/1.png")])]
        [('a', ['clean']), ('1.png', ['clean'])]
    """
    if isinstance(pairs, (str, os.PathLike)):
        pairs = read_test_folder(pairs)
    if isinstance(pairs, FolderPairs):
        return [_from_image_pair(pair) for pair in pairs.pairs]
    out = []
    for i, item in enumerate(pairs):
        if isinstance(item, ImagePair):
            out.append(_from_image_pair(item))
            continue
        if isinstance(item, Pair):
            images = [("rain", item.rain), *item.references.items()]
        elif not isinstance(item, (tuple, list)) or len(item) not in (2, 3):
            raise ValueError(f"pair {i}: expected (rain, clean) or (rain, clean, name), "
                             f"got {type(item).__name__} of length {len(item)}"
                             if isinstance(item, (tuple, list)) else
                             f"pair {i}: expected a tuple, got {type(item).__name__}")
        else:
            images = [("rain", item[0]), ("clean", item[1])]
        for what, value in images:
            if not isinstance(value, (str, os.PathLike, np.ndarray, ImageRef)):
                raise TypeError(f"pair {i}: {what} must be a path, an ImageRef or an H x W x 3 "
                                f"array, got {type(value).__name__}")
        if isinstance(item, Pair):
            if not item.references:
                raise ValueError(f"pair {i} ({item.name}): expected at least one reference")
            out.append(Pair(item.name, _as_image(item.rain),
                            {k: _as_image(v) for k, v in item.references.items()}))
            continue
        rain, clean = item[0], item[1]
        if len(item) == 3:
            name = str(item[2])
        elif isinstance(rain, (str, os.PathLike)):
            name = Path(rain).name
        else:
            name = f"{i:05d}"
        out.append(Pair(name, _as_image(rain), {CLEAN: _as_image(clean)}))
    if not out:
        raise ValueError("expected at least one image pair, got none")
    return out


def as_prediction(image: np.ndarray) -> np.ndarray:
    """An RGB image in the form a derainer's output has: H x W x 3 float32 in [0, 1].

    uint8 is divided by 255 in float32 (as the derainers' input is made), floats are clipped
    to [0, 1]. This is how the rain input is scored, so a model that returns its input scores
    exactly like the "Rain input" row.

    Example:
        >>> out = as_prediction(np.array([[[0, 51, 255]]], np.uint8))
        >>> out.dtype, out.tolist()
        (dtype('float32'), [[[0.0, 0.20000000298023224, 1.0]]])
    """
    image = np.asarray(image)
    if image.dtype != np.uint8:
        return np.clip(image, 0.0, 1.0).astype(np.float32)
    return image_to_tensor(image)[0].permute(1, 2, 0).numpy()


def _read(value: Any, name: str, what: str) -> tuple[np.ndarray, ImageFormat | None]:
    """An image of a pair as H x W x 3 RGB, and its file's format (None for an array).

    Files keep their precision (16-bit as float in [0, 1]); arrays are checked for their
    value range (a 0-255 float image is refused, never clipped).
    """
    if isinstance(value, Path):
        return read_image_with_format(value)
    if isinstance(value, ImageRef):
        return value.read_with_format()
    img = np.asarray(value)
    if img.ndim != 3 or img.shape[2] != 3:
        raise ValueError(f"{name}: expected an H x W x 3 {what} image, got shape {img.shape}")
    if img.dtype != np.uint8 and not np.issubdtype(img.dtype, np.floating):
        raise TypeError(f"{name}: expected a uint8 or float {what} image, got dtype {img.dtype}")
    return check_image_values(img, f"{name}: {what} image"), None


def _as_scored(pred: np.ndarray, reference: ImageFormat | None) -> np.ndarray:
    """The prediction as it is scored against a reference (its file's format, or None).

    Against a gray reference file: gray, the mean of its channels (what `spanet derain`
    writes for a gray input); otherwise unchanged.
    """
    if reference is None or not reference.gray:
        return pred
    return np.repeat(pred.mean(axis=2, keepdims=True, dtype=np.float32), 3, axis=2)


def _resolve_model(model: ModelLike, device: torch.device) -> nn.Module | None:
    if model is None or (isinstance(model, str) and model == _INPUT):
        return None
    if isinstance(model, (str, os.PathLike)):
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
# Outputs on disk
# --------------------------------------------------------------------------------------------
def output_paths(pairs: Sequence[Pair], folder: str | os.PathLike) -> list[Path]:
    """Where ``save_outputs`` writes each pair's derained image: ``folder/<name>.png``.

    A name ending in an image suffix (``rain/1.jpg``) has it replaced by ``.png``; names keep
    their subfolders (``scene_1/rain/0003``).

    Args:
        pairs: the pairs (from `read_pairs`).
        folder: the output folder.

    Returns:
        One path per pair, in order.

    Raises:
        ValueError: a name that is empty, absolute or climbs out of the folder (``..``), or
            two pairs that would write the same file.

    Example:
        >>> image = np.zeros((4, 4, 3), np.uint8)
        >>> [p.as_posix() for p in output_paths(read_pairs([(image, image, "a/1.jpg"),
        ...                                                 (image, image, "b")]), "out")]
        ['out/a/1.png', 'out/b.png']
    """
    folder = Path(folder)
    paths, seen = [], {}
    for pair in pairs:
        name = Path(pair.name)
        if (not pair.name or name.is_absolute() or ".." in name.parts
                or pair.name.startswith("~")):
            raise ValueError(f"pair name {pair.name!r} cannot name an output file: expected a "
                             "relative path inside the output folder")
        if name.suffix.lower() in IMAGE_SUFFIXES:
            name = name.with_suffix("")
        path = folder / f"{name.as_posix()}.png"
        if path in seen:
            raise ValueError(f"pairs {seen[path]!r} and {pair.name!r} would both be saved as "
                             f"{path}; give them distinct names")
        seen[path] = pair.name
        paths.append(path)
    return paths


def _refuse_existing(paths: Sequence[Path], overwrite: bool, what: str) -> None:
    """One-line error when any of ``paths`` exists (and is not to be replaced) or is a folder."""
    existing = [p for p in paths if p.exists() or p.is_symlink()]
    folders = [p for p in existing if p.is_dir()]
    if folders:
        raise InputError(f"{folders[0]} is a folder, not a {what} file; choose another output")
    if existing and not overwrite:
        shown = ", ".join(str(p) for p in existing[:3])
        more = f" and {len(existing) - 3} more" if len(existing) > 3 else ""
        raise InputError(f"{len(existing)} {what} file(s) exist: {shown}{more}; pass "
                         "--overwrite (overwrite=True) to replace them")


def _check_folder_usable(folder: Path) -> None:
    """The folder exists or can be made: no file in its way, the nearest existing one writable."""
    for parent in (folder, *folder.parents):
        if parent.exists():
            if not parent.is_dir():
                raise InputError(f"cannot write under {folder}: {parent} is a file")
            if not os.access(parent, os.W_OK | os.X_OK):
                raise InputError(f"cannot write under {folder}: {parent} is not writable")
            return


def _check_outputs(pairs: Sequence[Pair], folder: str | os.PathLike | None, overwrite: bool
                   ) -> list[Path] | None:
    if folder is None:
        return None
    paths = output_paths(pairs, folder)
    _check_folder_usable(Path(folder))
    inputs = {Path(image.path if isinstance(image, ImageRef) else image).resolve()
              for pair in pairs for image in (pair.rain, *pair.references.values())
              if isinstance(image, (Path, ImageRef))}
    clash = next((p for p in paths if p.resolve() in inputs), None)
    if clash is not None:  # even with overwrite: a test set is never written over
        raise InputError(f"output image {clash} would replace an input image of the test "
                         "set; choose another --save-outputs folder")
    _refuse_existing(paths, overwrite, "output image")
    return paths


# --------------------------------------------------------------------------------------------
# Evaluation
# --------------------------------------------------------------------------------------------
def _derain_batch(model: nn.Module, images: list[np.ndarray], device: torch.device,
                  dtype: torch.dtype) -> list[np.ndarray]:
    """Run ``model`` on same-sized images stacked into one batch; outputs clipped to [0, 1]."""
    x = torch.cat([image_to_tensor(img) for img in images]).to(device)
    with torch.inference_mode(), autocast(dtype, device):
        out, _ = model(x)
    out = out.clamp(0, 1).permute(0, 2, 3, 1).float().cpu().numpy()
    return list(out)


def evaluate_model(
    model: ModelLike,
    pairs: PairsLike,
    conventions: str | Sequence[str] = DEFAULT_CONVENTIONS,
    device: str | torch.device = "cpu",
    tile: int | None = None,
    max_images: int | None = None,
    progress: bool = True,
    batch_size: int = 1,
    labels: pd.DataFrame | str | os.PathLike | None = None,
    desc: str | None = None,
    save_outputs: str | os.PathLike | None = None,
    overwrite: bool = False,
    precision: str = "fp32",
) -> pd.DataFrame:
    """PSNR and SSIM of one derainer on every image pair: the package's one scoring loop.

    Each rain image is derained once with `spanetlib.derain.images.derain_array` (output clipped
    to [0, 1], kept in float; `as_prediction` of the rain image for the input row) and scored
    against each of its references with `spanetlib.evaluation.metrics.psnr_ssim_np` under every
    convention. Image files keep their precision (16-bit files are read as float in [0, 1]);
    against a grayscale reference the prediction is scored gray (the mean of its channels, as
    `spanet derain` writes a gray input); an alpha channel is not scored.

    Args:
        model: a derainer (``forward(x) -> (image, attention)``; moved to ``device`` and put
            in eval mode in place; its train/eval mode is restored afterwards), ``None`` or
            ``"input"`` to score the rain input itself, or a weights name/path for
            `spanetlib.models.pretrained.load_pretrained` ("official", "synthetic", a checkpoint).
        pairs: a test folder in any layout of `spanetlib.io.layouts` or a pair-list file, what
            `spanetlib.io.layouts.read_test_folder` returned, or a sequence of ``(rain, clean)`` /
            ``(rain, clean, name)`` with paths or H x W x 3 RGB arrays (uint8, or float in
            [0, 1]), of `Pair` objects (several references each) or of
            `spanetlib.io.layouts.ImagePair`; see `read_pairs`.
        conventions: metric conventions of `spanetlib.evaluation.metrics.CONVENTIONS`.
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
            `spanetlib.synthesis.testsets.build_synthetic_test_set`); unmatched pairs get NaN.
        desc: progress-bar label.
        save_outputs: a folder: write each derained image there as ``<name>.png`` (lossless,
            the rain image's size and kind: gray, 16-bit, alpha as in the rain file;
            `output_paths`).
        overwrite: replace existing output images (otherwise refused before the model is
            loaded).
        precision: ``"fp32"``, ``"bf16"`` or ``"auto"``
            (`spanetlib.models.device.resolve_precision`; checked before the model is loaded): the
            compute precision of every forward pass.

    Returns:
        One row per pair and reference: ``reference`` (only when a pair has a reference other
        than the single `CLEAN`; rows grouped by reference, in order of first appearance),
        ``name``, the label columns, then ``psnr[<conv>]`` and ``ssim[<conv>]`` per
        convention (floats; PSNR ``inf`` for identical images).

    Raises:
        InputError: missing or unreadable list/images, a folder of no known layout, rain and
            reference sizes differ, CUDA requested but absent, output images that exist.
        ValueError: unknown convention, bad ``max_images``/``batch_size``/``tile``, no pairs,
            pair names that cannot name output files.
    """
    conventions = _check_conventions(conventions)
    check_positive("max_images", max_images, allow_none=True)
    check_positive("tile", tile, allow_none=True)
    check_positive("batch_size", batch_size)
    table = _labels_table(labels)
    items = read_pairs(pairs)
    if max_images is not None:
        items = items[:max_images]
    named = any(list(item.references) != [CLEAN] for item in items)
    outputs = _check_outputs(items, save_outputs, overwrite)
    device = resolve_torch_device(device)
    dtype = resolve_precision(precision, device)
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
            read = [_read(item.rain, item.name, "rain") for item in chunk]
            rains = [image for image, _ in read]
            preds = _derain_chunk(net, rains, device, tile, dtype, progress)
            if outputs is not None:
                for path, pred, (_, fmt) in zip(outputs[start:start + batch_size], preds, read,
                                                strict=True):
                    write_image(path, pred if fmt is None else restore_format(pred, fmt))
            for item, rain, pred in zip(chunk, rains, preds, strict=True):
                for reference, value in item.references.items():
                    target, target_fmt = _read(value, item.name, reference)
                    if target.shape != rain.shape:
                        raise InputError(f"{item.name}: rain and {reference} sizes differ: "
                                         f"{rain.shape[:2]} vs {target.shape[:2]}")
                    scored = _as_scored(pred, target_fmt)
                    row: dict[str, Any] = {"reference": reference} if named else {}
                    row["name"] = item.name
                    for conv in conventions:
                        p, q = psnr_ssim_np(scored, target, conv)
                        row[metric_column("psnr", conv)] = p
                        row[metric_column("ssim", conv)] = q
                    rows.append(row)
            bar.update(len(chunk))
    finally:
        bar.close()
        if net is not None:
            net.train(was_training)

    df = pd.DataFrame(rows)
    if named:  # all rows of a reference together, references in order of first appearance
        order = {ref: i for i, ref in enumerate(dict.fromkeys(df["reference"]))}
        df = df.sort_values("reference", kind="stable", key=lambda c: c.map(order))
        df = df.reset_index(drop=True)
    if table is not None:
        df = _merge_labels(df, table)
    return df


def _merge_labels(df: pd.DataFrame, table: pd.DataFrame) -> pd.DataFrame:
    """Join label columns by name, after the pair's own columns (``reference``, ``name``).

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
    metrics = metric_columns(df)
    own = [c for c in df.columns if c not in metrics]
    return pd.concat([df[own], joined, df[metrics]], axis=1)


def _derain_chunk(net: nn.Module | None, rains: list[np.ndarray], device: torch.device,
                  tile: int | None, dtype: torch.dtype, progress: bool) -> list[np.ndarray]:
    if net is None:
        return [as_prediction(rain) for rain in rains]
    if tile is None and len(rains) > 1:
        preds: list[np.ndarray] = []
        start = 0
        while start < len(rains):  # consecutive runs of equal size
            stop = start + 1
            while stop < len(rains) and rains[stop].shape == rains[start].shape:
                stop += 1
            preds.extend(_derain_batch(net, rains[start:stop], device, dtype))
            start = stop
        return preds
    precision = "bf16" if dtype == torch.bfloat16 else "fp32"
    return [derain_array(net, rain, tile=tile, device=device, precision=precision,
                         progress=progress)[0] for rain in rains]


def compare_models(
    models: Mapping[str, ModelLike],
    pairs: PairsLike,
    conventions: str | Sequence[str] = DEFAULT_CONVENTIONS,
    device: str | torch.device = "cpu",
    tile: int | None = None,
    max_images: int | None = None,
    progress: bool = True,
    batch_size: int = 1,
    labels: pd.DataFrame | str | os.PathLike | None = None,
    by: str | Sequence[str] | None = None,
    save_outputs: str | os.PathLike | None = None,
    overwrite: bool = False,
    precision: str = "fp32",
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
        save_outputs: a folder: each model's derained images go to ``<folder>/<model>/``
            (as for `evaluate_model`); every model's files are checked before the first runs.
        overwrite: replace existing output images.
        precision: as for `evaluate_model`.

    Returns:
        ``(per_image, summary)``: the per-image table with a leading ``model`` column, and
        `summarize` of it.

    Raises:
        ValueError: no models, a model name that cannot name a folder (with
            ``save_outputs``), or as `evaluate_model`.
        InputError: as `evaluate_model`.
    """
    if not models:
        raise ValueError("expected at least one model, got none")
    items = read_pairs(pairs)
    folders: dict[str, Path | None] = {str(name): None for name in models}
    if save_outputs is not None:
        scored = items[:max_images] if isinstance(max_images, int) else items
        for name in folders:
            if name in ("", ".", "..") or "/" in name or "\\" in name:
                raise ValueError(f"model name {name!r} cannot name an output folder")
            folders[name] = Path(save_outputs) / name
            _check_outputs(scored, folders[name], overwrite)
    frames = []
    for name, model in models.items():
        df = evaluate_model(model, items, conventions=conventions, device=device, tile=tile,
                            max_images=max_images, progress=progress, batch_size=batch_size,
                            labels=labels,
                            desc=str(name), save_outputs=folders[str(name)],
                            overwrite=overwrite, precision=precision)
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
    markdown: pd.DataFrame | None = None,
) -> tuple[Path, Path]:
    """Write ``df`` as ``<stem>.csv`` (full precision) and ``<stem>.md`` (rounded), atomically.

    The one table writer of the package: every result table (the paper's tables, the
    benchmarks', the video experiment's) goes through it.

    Args:
        df: the table (e.g. from `summarize`); a non-default index is written as column(s).
        path_stem: output path without suffix (a ``.csv``/``.md`` suffix is dropped).
        float_format: markdown number format(s), as for `format_markdown`; the CSV keeps every
            digit so it reads back to the same numbers.
        caption: a line written above the markdown table.
        markdown: the table shown in ``<stem>.md`` when it is not ``df`` (a readable view of
            a summary whose every column goes to the CSV).

    Returns:
        ``(csv_path, md_path)``.
    """
    stem = _stem(path_stem)
    table = df if isinstance(df.index, pd.RangeIndex) else df.reset_index()
    csv_path = atomic_write_text(stem.parent / f"{stem.name}.csv", table.to_csv(index=False))
    md = format_markdown(table if markdown is None else markdown, float_format)
    if caption:
        md = f"{caption.strip()}\n\n{md}"
    md_path = atomic_write_text(stem.parent / f"{stem.name}.md", md)
    return csv_path, md_path


# --------------------------------------------------------------------------------------------
# Held-out check
# --------------------------------------------------------------------------------------------
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

    Builds the set with `spanetlib.synthesis.testsets.build_heldout_rain_set` (every condition of
    `spanetlib.synthesis.testsets.HELDOUT_RAIN_CONDITIONS`, photos
    `spanetlib.synthesis.rain.HELDOUT_BACKGROUND_NAMES`) in ``out_dir/heldout_set``, rebuilding it
    on every call; scores the rain input and the model with `compare_models`, and writes the table
    with `write_table` to ``out_dir/heldout_check.csv`` and ``.md``. A gain is the model's mean
    minus the input's mean over the same images; the input is scored as every "Rain input" row is
    (`as_prediction`), so an identity model gains exactly 0. A model that generalises has
    positive gains in every row.

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
    conventions = _check_conventions(conventions)
    out_dir = Path(out_dir)
    list_path = build_heldout_rain_set(out_dir / "heldout_set", n_per_condition=n_per_condition,
                                       size=size, seed=seed)
    per_image, by_condition = compare_models(
        {"input": None, "model": model}, list_path, conventions=conventions,
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
def convention_note(conventions: str | Sequence[str] = DEFAULT_CONVENTIONS) -> str:
    """Which published numbers each convention matches, one line per convention that has any.

    Example:
        >>> print(convention_note(["standard", "y-matlab-builtin"]))  # doctest: +ELLIPSIS
        Published numbers to compare with, by convention:
        - y-matlab-builtin: PReNet's README (Rain100H: PReNet6 29.46 dB / 0.899, ...
    """
    lines = [f"- {conv}: {METRIC_CONVENTIONS[conv].published}"
             for conv in _check_conventions(conventions) if METRIC_CONVENTIONS[conv].published]
    if not lines:
        return "No published numbers we know of use these conventions."
    return "\n".join(["Published numbers to compare with, by convention:", *lines])


def evaluate_command(
    model_spec: str | os.PathLike,
    test_path: str | os.PathLike,
    out_stem: str | os.PathLike,
    conventions: str | Sequence[str] = DEFAULT_CONVENTIONS,
    device: str = "auto",
    tile: int | None = None,
    max_images: int | None = None,
    progress: bool = True,
    layout: str | None = None,
    save_outputs: str | os.PathLike | None = None,
    overwrite: bool = False,
    precision: str = "fp32",
) -> pd.DataFrame:
    """The ``spanet evaluate`` command: score one model over a test folder and write the tables.

    Prints the folder's detected layout (`spanetlib.io.layouts.FolderPairs.describe`), scores with
    `evaluate_model`, writes ``<out_stem>_per_image.csv`` (one row per pair, named as the
    layout names it) and the summary as ``<out_stem>.csv`` and ``<out_stem>.md``, then prints
    the summary, which published numbers each convention matches (`convention_note`) and the
    paths. Existing result files (and output images) are refused without ``overwrite``, before
    the model is loaded or anything is scored.

    Args:
        model_spec: "official", "synthetic", a weights path (via
            `spanetlib.models.pretrained.load_pretrained`: our checkpoints, the authors'
            SPANet, PReNet's released files), or "input" to score the rain input.
        test_path: a test folder in any layout of `spanetlib.io.layouts`, or a pair-list file.
        out_stem: output path without suffix.
        conventions: metric conventions.
        device: "auto", "cpu", "cuda" or "cuda:N".
        tile: tile size for large images.
        max_images: score only the first ``max_images`` pairs.
        progress: show a progress bar.
        layout: a name of `spanetlib.io.layouts.LAYOUTS` to use instead of detecting one.
        save_outputs: a folder for the derained images (``<name>.png``, see `output_paths`).
        overwrite: replace existing result files and output images.
        precision: ``"fp32"``, ``"bf16"`` or ``"auto"`` (see `evaluate_model`).

    Returns:
        The summary table (one row: ``model``, metric means, ``n``).

    Raises:
        InputError: missing folder, images or weights; no or several layouts match; result
            files or output images exist (without ``overwrite``); CUDA requested but absent.
    """
    stem = _stem(out_stem)
    results = [stem.parent / f"{stem.name}{end}" for end in (".csv", ".md", "_per_image.csv")]
    _check_folder_usable(stem.parent)
    _refuse_existing(results, overwrite, "result")
    conventions = _check_conventions(conventions)
    device = resolve_torch_device(device)
    resolve_precision(precision, device)  # refused before the folder is read
    found = read_test_folder(test_path, layout=layout)
    print(found.describe())
    label = os.fspath(model_spec)  # the weights as given: a name or the path
    per_image = evaluate_model(label, found, conventions=conventions, device=device, tile=tile,
                               max_images=max_images, progress=progress,
                               desc=label if label in PRETRAINED_NAMES else Path(label).stem,
                               save_outputs=save_outputs, overwrite=overwrite,
                               precision=precision)
    per_image.insert(0, "model", label)
    summary = summarize(per_image)
    per_image_path = atomic_write_text(results[2], per_image.to_csv(index=False))
    caption = (f"PSNR / SSIM of {label} on {found.root} (layout {found.layout.name}, "
               f"{len(per_image)} images)")
    csv_path, md_path = write_table(summary, stem, caption=caption)
    print(format_markdown(summary), end="")
    print(convention_note(conventions))
    saved = f"; derained images in {save_outputs}" if save_outputs is not None else ""
    print(f"wrote {csv_path}, {md_path} and {per_image_path}{saved}")
    return summary
