"""The field: released weights on the field's test folders, as the field scores them (notebook 07).

Deraining papers compare on public test sets laid out the way their code bases read them
(`spanetlib.io.layouts`), with the Y-channel MATLAB metrics (`spanetlib.evaluation.metrics`:
``y-matlab`` for Restormer's and DRSformer's tables, ``y-matlab-builtin`` for PReNet's README; which
convention each published number uses: `spanetlib.evaluation.evaluate.convention_note`), against
released weights (`spanetlib.models.pretrained.load_pretrained`: ours, the SPANet authors',
PReNet's). Each job here is one small function over those pieces; the scoring is
`spanetlib.evaluation.evaluate.compare_models`, the package's one scoring loop:

- `field_folders`: the test folders to score (the user's, or tiny synthetic ones in every
  layout, `spanetlib.synthesis.testsets.build_layout_test_folders`);
- `weights_table`: what each weights file is and what it was trained on;
- `load_models`: the rain input and every model;
- `evaluate_folders`: every model on every folder, per image and per folder;
- `per_image_view`: one convention's PSNR per image, one column per model.

The side-by-side figure takes `spanetlib.paper.figure_data.folder_samples` and
`spanetlib.paper.figure_data.derain_rows`.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import pandas as pd
import torch
from torch import nn

from spanetlib.evaluation.evaluate import (
    DEFAULT_CONVENTIONS,
    compare_models,
    metric_column,
    metric_columns,
    summarize,
)
from spanetlib.io.layouts import FolderPairs, read_test_folder
from spanetlib.models.pretrained import describe_weights, load_pretrained
from spanetlib.paper.runs import RAIN_INPUT
from spanetlib.synthesis.testsets import build_layout_test_folders

__all__ = [
    "describe_folders",
    "evaluate_folders",
    "field_folders",
    "load_models",
    "per_image_view",
    "weights_table",
]


def _unique_label(path: Path, taken: Mapping[str, FolderPairs]) -> str:
    """The folder's name, with parent names prepended until it is unique."""
    if any(found.root.resolve() == path.resolve() for found in taken.values()):
        raise ValueError(f"test folder {path} is given twice")
    parts = path.resolve().parts
    labels = ("/".join(parts[-depth:]) for depth in range(1, len(parts) + 1))
    return next(label for label in labels if label not in taken)


def field_folders(data_root: str | os.PathLike | Sequence[str | os.PathLike] | None,
                  work_dir: str | os.PathLike, n_pairs: int = 2,
                  size: Sequence[int] = (48, 64), seed: int = 0
                  ) -> dict[str, FolderPairs]:
    """The test folders to score, read with `spanetlib.io.layouts.read_test_folder`.

    Args:
        data_root: a test folder or pair list in any layout, or a list of them; None: tiny
            synthetic folders in every layout, built once in ``work_dir/field_folders`` by
            `spanetlib.synthesis.testsets.build_layout_test_folders` (a smoke check of the readers
            and the models, not a benchmark).
        work_dir: where the synthetic folders go.
        n_pairs: rain images per synthetic folder.
        size: (H, W) of the synthetic images.
        seed: seed of the synthetic images.

    Returns:
        Label -> the folder's pairs and detected layout: the layout's name for synthetic
        folders, the folder's name (with parents when needed to be unique) otherwise.

    Raises:
        InputError: a folder that is missing, of no known layout, ambiguous or incomplete.
        ValueError: the same folder twice, or bad synthetic settings.
    """
    if data_root is None:
        built = build_layout_test_folders(Path(work_dir) / "field_folders", n_pairs=n_pairs,
                                          size=(int(size[0]), int(size[1])), seed=seed)
        return {name: read_test_folder(folder) for name, folder in built.items()}
    roots = [data_root] if isinstance(data_root, (str, os.PathLike)) else list(data_root)
    folders: dict[str, FolderPairs] = {}
    for root in roots:
        folders[_unique_label(Path(root), folders)] = read_test_folder(root)
    return folders


def describe_folders(folders: Mapping[str, FolderPairs]) -> str:
    """One line per folder: its label and `FolderPairs.describe` (layout, code bases, counts)."""
    return "\n".join(f"{label}: {found.describe()}" for label, found in folders.items())


def weights_table(weights: Mapping[str, str | os.PathLike]) -> pd.DataFrame:
    """What each weights name or file is (`spanetlib.models.pretrained.describe_weights`).

    Args:
        weights: label -> a weights name (``"official"``, ``"synthetic"``) or path.

    Returns:
        One row per label: ``model`` (the label), ``weights``, ``format``, ``trained on``.

    Raises:
        InputError: unknown name, missing or unreadable file, unknown format.
    """
    rows = []
    for label, spec in weights.items():
        info = describe_weights(spec)
        rows.append({"model": label, "weights": info.weights, "format": info.format,
                     "trained on": info.trained_on})
    return pd.DataFrame(rows, columns=["model", "weights", "format", "trained on"])


def load_models(weights: Mapping[str, str | os.PathLike], device: str | torch.device = "cpu",
                include_input: bool = True) -> dict[str, nn.Module | None]:
    """The rain input (model None) and each weights loaded with `load_pretrained`.

    Args:
        weights: label -> a weights name or path; labels become the tables' ``model`` column.
        device: where to load the models.
        include_input: start with the "Rain input" row.

    Returns:
        Label -> model, in the given order after "Rain input".

    Raises:
        ValueError: a label equal to "Rain input".
        InputError: as `load_pretrained`.
    """
    if RAIN_INPUT in weights:
        raise ValueError(f"{RAIN_INPUT!r} is the rain input's row; choose another label")
    models: dict[str, nn.Module | None] = {RAIN_INPUT: None} if include_input else {}
    models.update({label: load_pretrained(spec, device=device)
                   for label, spec in weights.items()})
    return models


def evaluate_folders(models: Mapping[str, nn.Module | str | os.PathLike | None],
                     folders: Mapping[str, FolderPairs],
                     conventions: str | Sequence[str] = DEFAULT_CONVENTIONS,
                     device: str | torch.device = "auto", max_images: int | None = None,
                     progress: bool = False, save_outputs: str | os.PathLike | None = None,
                     overwrite: bool = False) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Every model on every folder with `spanetlib.evaluation.evaluate.compare_models`.

    Args:
        models: label -> model (anything `compare_models` takes; None: the rain input).
        folders: label -> the folder's pairs (`field_folders`).
        conventions: metric conventions.
        device: "auto", "cpu", "cuda".
        max_images: score only the first pairs of each folder.
        progress: show progress bars.
        save_outputs: a folder: derained images go to ``<folder>/<folder label>/<model>/
            <pair name>.png``.
        overwrite: replace existing output images.

    Returns:
        ``(per_image, summary)``: per image ``folder``, ``layout``, ``model``, ``name`` and
        the metric columns; the summary has the means per model and folder (rows grouped by
        model, folders in the given order) and ``n``.

    Raises:
        ValueError: no folders, or as `compare_models`.
    """
    if not folders:
        raise ValueError("expected at least one test folder, got none")
    frames = []
    for label, found in folders.items():
        out = None if save_outputs is None else Path(save_outputs) / label
        per_image, _ = compare_models(models, found, conventions=conventions, device=device,
                                      max_images=max_images, progress=progress,
                                      save_outputs=out, overwrite=overwrite)
        per_image.insert(0, "layout", found.layout.name)
        per_image.insert(0, "folder", label)
        frames.append(per_image)
    per_image = pd.concat(frames, ignore_index=True)
    rank = {"model": {str(m): i for i, m in enumerate(models)},
            "folder": {f: i for i, f in enumerate(folders)}}
    summary = summarize(per_image, by="folder").sort_values(
        ["model", "folder"], key=lambda column: column.map(rank[column.name]), kind="stable")
    return per_image, summary.reset_index(drop=True)


def per_image_view(per_image: pd.DataFrame, convention: str, metric: str = "psnr"
                   ) -> pd.DataFrame:
    """One metric of one convention per image: rows ``folder, name``, one column per model.

    Args:
        per_image: the per-image table of `evaluate_folders`.
        convention: a convention scored in it.
        metric: ``"psnr"`` or ``"ssim"``.

    Returns:
        Columns ``folder``, ``name``, then one per model (in the table's order); rows in the
        table's order.

    Raises:
        ValueError: the convention or metric is not in the table.
    """
    column = metric_column(metric, convention)
    if column not in per_image.columns:
        raise ValueError(f"{column!r} is not in the table; its metric columns are "
                         f"{metric_columns(per_image)}")
    rows = list(dict.fromkeys(zip(per_image["folder"], per_image["name"], strict=True)))
    view = per_image.pivot(index=["folder", "name"], columns="model", values=column)
    view = view.reindex(index=pd.MultiIndex.from_tuples(rows, names=["folder", "name"]),
                        columns=list(dict.fromkeys(per_image["model"])))
    return view.reset_index().rename_axis(columns=None)
