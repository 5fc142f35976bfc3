"""The computations behind notebooks 02-06: trained runs, Tables 2-4 and the images of Figs. 7-12.

The notebooks only call these functions and display what they return; every loop lives here so
a test can run it on a tiny input.

Runs. Every model of the paper's Sec. 5 is trained with `spanetlib.train` into
``work_dir/runs/<run name>`` (`RunSpec`, `TABLE2_RUNS`, `TABLE4_RUNS`) by `ensure_trained`,
which reuses a finished run with the same settings and resumes an unfinished one, so the
notebooks share their runs: SPANet with shared SAMs (`SPANET_RUN`) is trained once (notebook
02) and used by Tables 2, 3 and 4 and the figures.

Scores. The §3 test set is scored twice when it is synthetic: against the *estimated* clean
images that the dataset pipeline made (what the paper does: its ground truth is that
estimate) and against the *true* background that only synthetic rain gives us (`truth_pairs`).
Scores are kept for every metric convention of `spanetlib.metrics`; the tables' main view
uses one (`main_view`, "standard" by default) and `save_table` writes both.
"""

from __future__ import annotations

import json
import math
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn

from .fileio import InputError, atomic_write_json, atomic_write_text, read_image

__all__ = [
    "OFFICIAL",
    "OURS",
    "RAIN_INPUT",
    "SPANET_RUN",
    "TABLE2_RUNS",
    "TABLE4_RUNS",
    "RunSpec",
    "Sample",
    "ablation_findings",
    "attention_rows",
    "derain_rows",
    "describe_runs",
    "difference_rows",
    "ensure_level_set",
    "ensure_run",
    "ensure_runs",
    "ensure_trained",
    "failure_rows",
    "failure_sample",
    "level_samples",
    "load_trained",
    "main_view",
    "models_for_tables",
    "parameter_counts",
    "photo_sample",
    "psnr_captions",
    "read_log",
    "save_table",
    "scene_samples",
    "score_models",
    "table2",
    "table3",
    "table4",
    "training_summary",
    "truth_pairs",
]

#: Display names of the rows that are not trained runs.
RAIN_INPUT = "Rain input"
OFFICIAL = "SPANet (authors' weights)"
OURS = "SPANet (ours)"


@dataclass(frozen=True)
class RunSpec:
    """One training run of the experiments.

    Attributes:
        run: folder name under ``work_dir/runs``.
        model: a `spanetlib.train.MODEL_FACTORIES` name.
        model_kwargs: constructor arguments added to the training profile's (e.g. SPANet's
            ``sam_mode``; the profile sets SPANet's ``channels``).
        attention_weight: weight of the attention loss (Eq. 7); None keeps the profile's (1).
    """

    run: str
    model: str
    model_kwargs: dict[str, Any] = field(default_factory=dict)
    attention_weight: float | None = None


#: SPANet as the paper trains it (shared SAMs, attention loss): trained in notebook 02.
SPANET_RUN = RunSpec("spanet_shared", "spanet", {"sam_mode": "shared"})

#: Table 2's trained rows, display name -> run (the baselines retrained with our trainer).
TABLE2_RUNS: dict[str, RunSpec] = {
    "DDN": RunSpec("ddn", "ddn"),
    "RESCAN": RunSpec("rescan", "rescan"),
    "PReNet": RunSpec("prenet", "prenet"),
    OURS: SPANET_RUN,
}

#: Table 4's rows: the SPANet variants of ``TABLE4_VARIANTS`` plus "No attention loss" (the
#: shared-SAM model trained with the attention-loss weight 0).
TABLE4_RUNS: dict[str, RunSpec] = {
    "ResNet (no SAM)": RunSpec("spanet_no_sam", "spanet", {"sam_mode": "none"}),
    "Single SAM": RunSpec("spanet_single_sam", "spanet", {"sam_mode": "single"}),
    "Unshared SAMs": RunSpec("spanet_unshared_sams", "spanet", {"sam_mode": "unshared"}),
    "Shared SAMs (SPANet)": SPANET_RUN,
    "No direction attention": RunSpec("spanet_no_direction_attention", "spanet",
                                      {"sam_mode": "shared", "direction_attention": False}),
    "No attention loss": RunSpec("spanet_no_attention_loss", "spanet", {"sam_mode": "shared"},
                                 attention_weight=0.0),
}

# Config entries that do not change the trained weights (ignored when deciding on reuse).
_NOT_WEIGHTS = frozenset({"out_dir", "device", "num_workers", "checkpoint_every", "val_every",
                          "log_every", "max_val_images", "val_crop", "val_list"})
# Entries that may grow when a run is resumed (train more steps).
_SCHEDULE = frozenset({"steps", "milestones"})


# --------------------------------------------------------------------------------------------
# Training runs
# --------------------------------------------------------------------------------------------
def _full_model_kwargs(model: str, kwargs: Mapping[str, Any]) -> dict[str, Any]:
    """Every constructor argument of the model (so equal models compare equal)."""
    from .train import build_model

    net = build_model(model, **kwargs)
    full = getattr(net, "model_kwargs", None)
    return dict(full) if isinstance(full, Mapping) else dict(kwargs)


def _read_config(path: Path) -> tuple[dict[str, Any], int] | None:
    """The ``config`` and ``step`` of a training checkpoint, or None when unreadable."""
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception:  # noqa: BLE001 - a torn or foreign file is simply not reused
        return None
    if not isinstance(ckpt, dict) or not isinstance(ckpt.get("config"), dict):
        return None
    return ckpt["config"], int(ckpt.get("step", -1))


def _same(saved: Mapping[str, Any], wanted: Mapping[str, Any], ignore: frozenset[str]) -> bool:
    keys = (set(saved) | set(wanted)) - ignore
    return all(saved.get(k) == wanted.get(k) for k in keys)


def ensure_trained(name: str, model: str, model_kwargs: Mapping[str, Any] | None, dataset: Any,
                   work_dir: str | os.PathLike, profile: str, steps: int | None = None,
                   attention_weight: float | None = None, seed: int = 0,
                   progress: bool = False) -> Path:
    """Train a model into ``work_dir/runs/<name>`` unless that run exists; its ``final.pt``.

    The run's `spanetlib.train.TrainConfig` is ``make_config(profile, ...)`` with the
    dataset's train list (its test list for validation), ``seed``, ``steps`` (the profile's
    learning-rate milestones scaled to the new length, as ``spanet train --steps`` does, and
    validation at least every ``steps // 4`` steps) and ``attention_weight``. Then:

    - ``final.pt`` exists and was trained with the same settings (all entries that change
      the weights: model, its arguments, data, schedule, losses, seed ...): it is returned
      as it is, nothing is trained;
    - else ``last.pt`` exists with the same settings apart from the length of the schedule
      and fewer (or as many) steps: training resumes from it (to train a finished run
      longer, or to finish an interrupted one);
    - else the run is trained from scratch (replacing what the folder held).

    Args:
        name: run folder name.
        model: a `spanetlib.train.MODEL_FACTORIES` name.
        model_kwargs: constructor arguments, added to the profile's for that model (e.g.
            ``{"sam_mode": "none"}``; the profile gives SPANet its ``channels``).
        dataset: a `spanetlib.experiments.DatasetInfo` (``train_list``, ``test_list``).
        work_dir: the run's work folder.
        profile: a `spanetlib.train.TRAIN_PROFILES` name ("smoke", "quick", "paper").
        steps: optimizer steps (None: the profile's).
        attention_weight: weight of the attention loss, Eq. 7 (None: the profile's).
        seed: seed of the initialisation, crops and shuffling.
        progress: show the trainer's progress bar.

    Returns:
        The run's ``final.pt``.

    Raises:
        ValueError: unknown profile or model, bad steps (from `spanetlib.train.make_config`).
    """
    from .train import TRAIN_PROFILES, make_config, train

    if profile not in TRAIN_PROFILES:
        raise ValueError(f"unknown profile {profile!r}; expected one of {sorted(TRAIN_PROFILES)}")
    if steps is not None and (isinstance(steps, bool) or not isinstance(steps, int)
                              or steps < 1):
        raise ValueError(f"steps must be a positive int or None, got {steps!r}")
    base = TRAIN_PROFILES[profile]
    kwargs = {**base["model_kwargs"].get(str(model).lower(), {}), **dict(model_kwargs or {})}
    out_dir = Path(work_dir).absolute() / "runs" / name
    overrides: dict[str, Any] = {
        "model": model, "model_kwargs": _full_model_kwargs(model, kwargs),
        "train_list": str(Path(dataset.train_list).absolute()),
        "val_list": str(Path(dataset.test_list).absolute()),
        "out_dir": str(out_dir), "seed": int(seed),
    }
    if steps is not None:
        overrides["steps"] = steps
        overrides["milestones"] = tuple(max(1, round(m * steps / base["steps"]))
                                        for m in base["milestones"])
        # At least four validations per run, for the curves (no effect on the weights).
        overrides["val_every"] = min(base["val_every"], max(1, steps // 4))
    if attention_weight is not None:
        overrides["attention_weight"] = float(attention_weight)
    config = make_config(profile, **overrides)
    wanted = config.to_dict()

    final, last = out_dir / "final.pt", out_dir / "last.pt"
    saved = _read_config(final) if final.is_file() else None
    if saved is not None and _same(saved[0], wanted, _NOT_WEIGHTS):
        return final
    saved = _read_config(last) if last.is_file() else None
    resume = (saved is not None and _same(saved[0], wanted, _NOT_WEIGHTS | _SCHEDULE)
              and 0 <= saved[1] <= config.steps)
    return train(config, resume=resume, progress=progress).checkpoint


def ensure_run(spec: RunSpec, dataset: Any, work_dir: str | os.PathLike, profile: str,
               steps: int | None = None, seed: int = 0, progress: bool = False) -> Path:
    """`ensure_trained` for one `RunSpec`; returns its ``final.pt``."""
    return ensure_trained(spec.run, spec.model, spec.model_kwargs, dataset, work_dir, profile,
                          steps=steps, attention_weight=spec.attention_weight, seed=seed,
                          progress=progress)


def ensure_runs(specs: Mapping[str, RunSpec], dataset: Any, work_dir: str | os.PathLike,
                profile: str, steps: int | None = None, seed: int = 0,
                progress: bool = False) -> dict[str, Path]:
    """`ensure_run` for every run of a table (all at the same budget), in order.

    Args:
        specs: display name -> run, e.g. `TABLE2_RUNS` or `TABLE4_RUNS`.
        dataset: a `spanetlib.experiments.DatasetInfo`.
        work_dir: the work folder (runs in ``work_dir/runs``).
        profile: a training profile name.
        steps: steps of every run (None: the profile's).
        seed: training seed.
        progress: show progress bars.

    Returns:
        Display name -> ``final.pt``.
    """
    if not specs:
        raise ValueError("expected at least one run, got none")
    return {label: ensure_run(spec, dataset, work_dir, profile, steps=steps, seed=seed,
                              progress=progress) for label, spec in specs.items()}


def load_trained(path: str | os.PathLike, device: str | torch.device = "cpu") -> nn.Module:
    """Load any model saved by `spanetlib.train` (DDN, RESCAN, PReNet, SPANet variants).

    Args:
        path: a training checkpoint (``final.pt`` / ``last.pt``).
        device: "cpu", "cuda", "auto" or a ``torch.device``.

    Returns:
        ``build_model(config["model"], **config["model_kwargs"])`` with the saved weights, in
        eval mode on ``device``.

    Raises:
        InputError: missing or unreadable file, not a training checkpoint, or weights that do
            not fit the model.
    """
    from .models.pretrained import load_pretrained

    path = Path(path)
    if not path.is_file():
        raise InputError(f"checkpoint not found: {path}")
    return load_pretrained(path, device=device)


def read_log(run: str | os.PathLike) -> pd.DataFrame:
    """A run's ``log.csv`` (a run folder or a checkpoint inside it) as a DataFrame."""
    folder = Path(run)
    if folder.is_file() or folder.suffix == ".pt":
        folder = folder.parent
    path = folder / "log.csv"
    if not path.is_file():
        raise InputError(f"training log not found: {path}")
    return pd.read_csv(path)


def training_summary(runs: Mapping[str, str | os.PathLike]) -> pd.DataFrame:
    """One row per run: steps, training seconds, last training loss/PSNR, last validation.

    Args:
        runs: display name -> ``final.pt`` (or the run folder).

    Returns:
        Columns ``model, steps, train_loss, train_psnr, val_psnr, val_ssim, seconds``: the
        training values are the mean of the last logged window, the validation values are
        the last validation (the test list, "standard" PSNR/SSIM).
    """
    rows = []
    for label, run in runs.items():
        log = read_log(run)
        last = log.iloc[-1]
        val = log.dropna(subset=["val_psnr"]) if "val_psnr" in log else log.iloc[:0]
        rows.append({"model": label, "steps": int(last["step"]),
                     "train_loss": float(last["loss"]), "train_psnr": float(last["psnr"]),
                     "val_psnr": float(val["val_psnr"].iloc[-1]) if len(val) else math.nan,
                     "val_ssim": float(val["val_ssim"].iloc[-1]) if len(val) else math.nan,
                     "seconds": float(last["elapsed_s"])})
    return pd.DataFrame(rows)


def parameter_counts(runs: Mapping[str, str | os.PathLike]) -> dict[str, int]:
    """Display name -> number of parameters of each run's model (from its checkpoint)."""
    return {label: sum(p.numel() for p in load_trained(path).parameters())
            for label, path in runs.items()}


def describe_runs(specs: Mapping[str, RunSpec]) -> pd.DataFrame:
    """The runs of a table as a DataFrame: ``row, run, model, model_kwargs, attention loss``.

    ``attention loss`` is the weight of Eq. 7 ("profile" when the profile's is kept).
    """
    return pd.DataFrame([{"row": label, "run": spec.run, "model": spec.model,
                          "model_kwargs": dict(spec.model_kwargs),
                          "attention loss": ("profile" if spec.attention_weight is None
                                             else spec.attention_weight)}
                         for label, spec in specs.items()])


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
    from .models.pretrained import load_pretrained

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
# Scoring
# --------------------------------------------------------------------------------------------
_PATCH_NAME = re.compile(r"^(?P<frame>\d+)_(?P<y>\d+)_(?P<x>\d+)$")


def _parse_patch(rain: Path) -> tuple[str, int, int, int]:
    """(scene, frame, y, x) of an exported rain patch ``<scene>/rain/<frame>_<y>_<x>.png``."""
    match = _PATCH_NAME.match(rain.stem)
    if match is None or rain.parent.name != "rain":
        raise ValueError(f"expected an exported rain patch <scene>/rain/<frame>_<y>_<x>.png, "
                         f"got {rain}")
    return (rain.parent.parent.name, int(match["frame"]), int(match["y"]), int(match["x"]))


def _pair_name(rain: Path, list_path: Path) -> str:
    """A pair's name as `spanetlib.evaluate` gives it (rain path relative to the list)."""
    rel = os.path.relpath(rain, list_path.resolve().parent)
    return Path(rel).as_posix() if not rel.startswith("..") else Path(rain).as_posix()


def truth_pairs(dataset: Any, max_images: int | None = None
                ) -> list[tuple[Path, np.ndarray, str]]:
    """The §3 test pairs with the *true* background instead of the estimated clean image.

    Only synthetic data has it: each rain patch ``OUT/<scene>/rain/<frame>_<y>_<x>.png`` is
    paired with the crop at (y, x), of the patch's size, of the scene's true background
    (`spanetlib.data.scene_ground_truth` of ``scenes_dir/<scene>``).

    Args:
        dataset: a synthetic `spanetlib.experiments.DatasetInfo`.
        max_images: only the first pairs of the test list.

    Returns:
        ``(rain_path, truth H x W x 3 uint8, name)`` per test pair, in list order; ``name`` is
        the one `spanetlib.evaluate` gives the pair, so both scores join by name.

    Raises:
        ValueError: the dataset is not synthetic, or a rain path is not an exported patch.
        InputError: a ground-truth image is missing.
    """
    from .data import read_pair_list, scene_ground_truth

    if not dataset.synthetic or dataset.scenes_dir is None:
        raise ValueError("the true background exists only for synthetic data (got a dataset "
                         f"without scenes_dir: {dataset.root})")
    list_path = Path(dataset.test_list)
    pairs = read_pair_list(list_path)[:max_images]
    truths: dict[str, np.ndarray] = {}
    out = []
    for rain, _ in pairs:
        scene, _, y, x = _parse_patch(rain)
        if scene not in truths:
            truths[scene] = read_image(scene_ground_truth(Path(dataset.scenes_dir) / scene))
        h, w = read_image(rain).shape[:2]
        truth = truths[scene][y:y + h, x:x + w]
        if truth.shape[:2] != (h, w):
            raise ValueError(f"{rain}: patch at ({y}, {x}) of size {h}x{w} lies outside the "
                             f"true background of size {truths[scene].shape[:2]}")
        out.append((rain, np.ascontiguousarray(truth), _pair_name(rain, list_path)))
    return out


def score_models(models: Mapping[str, Any], dataset: Any, conventions: Sequence[str] | None
                 = None, device: str | torch.device = "auto", max_images: int | None = None,
                 progress: bool = False) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Score models on the §3 test set against the estimated clean and the true background.

    Each rain image is derained once per model (`spanetlib.inference.derain_array`, output
    clipped to [0, 1]) and scored with `spanetlib.metrics.psnr_ssim_np` against each
    reference; a dataset score is the mean over images (as `spanetlib.evaluate.summarize`).

    Args:
        models: display name -> a derainer, None (scores the rain input itself), or a weights
            name/path for `spanetlib.models.pretrained.load_pretrained`.
        dataset: a `spanetlib.experiments.DatasetInfo`; with real data only the first
            reference exists.
        conventions: metric conventions (default: all of `spanetlib.evaluate`).
        device: "auto" (CUDA when available), "cpu" or "cuda".
        max_images: only the first pairs of the test list.
        progress: show a progress bar.

    Returns:
        ``(per_image, summary)``: per image ``model, reference, name, psnr[...], ssim[...]``;
        the summary has the means per model and reference (``"estimated clean"`` and, for
        synthetic data, ``"true background"``) and ``n``.

    Raises:
        ValueError: no models, a bad ``max_images`` or an unknown convention.
        InputError: a missing or empty test list, unreadable images or weights.
    """
    from tqdm.auto import tqdm

    from .data import read_pair_list
    from .evaluate import DEFAULT_CONVENTIONS, metric_column, summarize
    from .metrics import CONVENTIONS, psnr_ssim_np
    from .models.pretrained import load_pretrained

    if not models:
        raise ValueError("expected at least one model, got none")
    if max_images is not None and (isinstance(max_images, bool) or not isinstance(max_images, int)
                                   or max_images < 1):
        raise ValueError(f"max_images must be a positive int or None, got {max_images!r}")
    conventions = tuple(conventions or DEFAULT_CONVENTIONS)
    for conv in conventions:
        if conv not in CONVENTIONS:
            raise ValueError(f"unknown metric convention {conv!r}; expected one of {CONVENTIONS}")
    list_path = Path(dataset.test_list)
    pairs = read_pair_list(list_path)[:max_images]
    if not pairs:
        raise InputError(f"the test list {list_path} holds no pairs")
    truths = (truth_pairs(dataset, max_images)
              if dataset.synthetic and dataset.scenes_dir is not None else None)
    rows = []
    bar = tqdm(total=len(models) * len(pairs), desc="score", unit="img", disable=not progress)
    try:
        for label, model in models.items():
            if isinstance(model, (str, os.PathLike)):
                model = load_pretrained(model, device=device)
            for i, (rain_path, clean_path) in enumerate(pairs):
                rain = read_image(rain_path)
                pred = _derain(model, rain, device)[0] if model is not None else rain
                references = [("estimated clean", read_image(clean_path))]
                if truths is not None:
                    references.append(("true background", truths[i][1]))
                for reference, target in references:
                    if target.shape != rain.shape:
                        raise InputError(f"{rain_path}: rain and clean sizes differ: "
                                         f"{rain.shape[:2]} vs {target.shape[:2]}")
                    row: dict[str, Any] = {"model": str(label), "reference": reference,
                                           "name": _pair_name(rain_path, list_path)}
                    for conv in conventions:
                        p, q = psnr_ssim_np(pred, target, conv)
                        row[metric_column("psnr", conv)] = p
                        row[metric_column("ssim", conv)] = q
                    rows.append(row)
                bar.update(1)
    finally:
        bar.close()
    per_image = pd.DataFrame(rows)
    per_image = per_image.sort_values(["reference"], kind="stable", key=lambda c: c.map(
        {"estimated clean": 0, "true background": 1})).reset_index(drop=True)
    per_image = per_image.sort_values("model", kind="stable", key=lambda c: c.map(
        {str(k): i for i, k in enumerate(models)})).reset_index(drop=True)
    return per_image, summarize(per_image, by="reference")


def table2(models: Mapping[str, Any], dataset: Any, conventions: Sequence[str] | None = None,
           device: str | torch.device = "auto", max_images: int | None = None,
           progress: bool = False) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Table 2: every derainer on the §3 test set (see `score_models`).

    Args:
        models: display name -> model (from `models_for_tables`).
        dataset: the `spanetlib.experiments.DatasetInfo` of the run.
        conventions: metric conventions (default: all).
        device: "auto" (CUDA when available), "cpu" or "cuda".
        max_images: only the first test pairs.
        progress: show progress bars.

    Returns:
        ``(per_image, summary)`` as `score_models`.
    """
    return score_models(models, dataset, conventions, device, max_images, progress)


def ensure_level_set(work_dir: str | os.PathLike, n_per_level: int, size: Sequence[int],
                     seed: int = 0) -> tuple[Path, Path]:
    """The light/medium/heavy synthetic test set of Table 3 (Rain1200's role), built once.

    Built by `spanetlib.data.build_synthetic_test_set` in ``work_dir/rain_levels`` and kept
    when ``params.json`` there records the same settings.

    Returns:
        ``(test_list, labels_csv)``.
    """
    from .data import build_synthetic_test_set

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
    from .evaluate import DEFAULT_CONVENTIONS, compare_models

    return compare_models(models, test_list, conventions=tuple(conventions or
                                                               DEFAULT_CONVENTIONS),
                          device=device, max_images=max_images, progress=progress,
                          batch_size=8, labels=labels, by="level")


def table4(runs: Mapping[str, str | os.PathLike], dataset: Any,
           conventions: Sequence[str] | None = None, device: str | torch.device = "auto",
           max_images: int | None = None, progress: bool = False
           ) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Table 4: the SPANet ablations on the §3 test set, with their parameter counts.

    Args:
        runs: display name -> ``final.pt`` (from ``ensure_runs(TABLE4_RUNS, ...)``).
        dataset: the `spanetlib.experiments.DatasetInfo` of the run.
        conventions: metric conventions (default: all).
        device: "auto" (CUDA when available), "cpu" or "cuda".
        max_images: only the first test pairs.
        progress: show progress bars.

    Returns:
        ``(per_image, summary)`` as `score_models`, the summary with a ``parameters`` column.
    """
    models = {label: load_trained(path, device) for label, path in runs.items()}
    counts = {label: sum(p.numel() for p in net.parameters()) for label, net in models.items()}
    per_image, summary = score_models(models, dataset, conventions, device, max_images,
                                      progress)
    summary.insert(2, "parameters", summary["model"].map(counts).astype(int))
    return per_image, summary


def ablation_findings(summary: pd.DataFrame, full: str = "Shared SAMs (SPANet)",
                      reference: str = "estimated clean", convention: str = "standard",
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
    """
    from .evaluate import metric_column

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
        summary: a summary from `score_models`, `table3` or `table4`.
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
    from .evaluate import metric_column, metric_columns

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
    from .evaluate import write_table

    view = main_view(summary, by=by, convention=convention)
    stem = Path(path_stem)
    write_table(view, stem, caption=caption)
    atomic_write_text(stem.parent / f"{stem.name}.csv", summary.to_csv(index=False))
    if per_image is not None:
        atomic_write_text(stem.parent / f"{stem.name}_per_image.csv",
                          per_image.to_csv(index=False))
    return view


# --------------------------------------------------------------------------------------------
# Images for the figures
# --------------------------------------------------------------------------------------------
@dataclass
class Sample:
    """One image of a figure: rain, its clean image and (synthetic data) the true background.

    Attributes:
        name: a label.
        rain: H x W x 3 uint8.
        clean: the clean image the dataset pairs it with (the estimate for §3 data).
        truth: the true background (None for real data).
    """

    name: str
    rain: np.ndarray
    clean: np.ndarray
    truth: np.ndarray | None = None


def _spread(items: Sequence[Any], n: int) -> list[Any]:
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    if len(items) <= n:
        return list(items)
    index = np.linspace(0, len(items) - 1, n).round().astype(int)
    return [items[i] for i in index]


def scene_samples(dataset: Any, n: int = 3) -> list[Sample]:
    """Whole frames of the §3 test scenes (test pairs for real data), ``n`` spread evenly.

    For synthetic data, each distinct (scene, frame) of the test list gives the full rain
    frame (``scenes_dir/<scene>``), the scene's estimated clean image (``OUT/<scene>/
    clean.png``) and its true background. For real data, ``n`` test pairs.

    Raises:
        ValueError: ``n`` < 1.
        InputError: the test list is missing or empty.
    """
    from .data import read_pair_list, scene_ground_truth
    from .video import list_frame_files

    pairs = read_pair_list(dataset.test_list)
    if not pairs:
        raise InputError(f"the test list {dataset.test_list} holds no pairs")
    if not (dataset.synthetic and dataset.scenes_dir is not None):
        return [Sample(rain.stem, read_image(rain), read_image(clean))
                for rain, clean in _spread(pairs, n)]
    frames = list(dict.fromkeys(_parse_patch(rain)[:2] for rain, _ in pairs))
    out = []
    for scene, frame in _spread(frames, n):
        folder = Path(dataset.scenes_dir) / scene
        rain = read_image(list_frame_files(folder)[frame])
        out.append(Sample(f"{scene} frame {frame}", rain,
                          read_image(Path(dataset.root) / scene / "clean.png"),
                          read_image(scene_ground_truth(folder))))
    return out


def level_samples(test_list: str | os.PathLike, labels: str | os.PathLike,
                  per_level: int = 1) -> list[Sample]:
    """The first ``per_level`` images of each rain level of the Table 3 set (truth = clean)."""
    from .data import read_pair_list

    table = pd.read_csv(labels)
    pairs = {rain.stem: (rain, clean) for rain, clean in read_pair_list(test_list)}
    out = []
    for level, group in table.groupby("level", sort=False):
        for name in group["name"].astype(str).iloc[:per_level]:
            rain, clean = pairs[name]
            image = read_image(clean)
            out.append(Sample(f"{level}: {name}", read_image(rain), image, image))
    return out


def _photo(name: str, size: Sequence[int]) -> np.ndarray:
    from .rain import load_background

    return load_background(name, size=(int(size[0]), int(size[1])))


def photo_sample(size: Sequence[int] = (240, 320), seed: int = 0, name: str = "astronaut"
                 ) -> Sample:
    """A "real-world-like" photo (Fig. 11): rain unlike anything in training.

    A scikit-image photo with one rain layer from `spanetlib.rain.make_rain_image` whose
    settings lie outside the training presets (the §3 videos fall at 6-10 degrees, 1 px wide,
    brightness about 0.35): streaks leaning the other way (-20 degrees), twice as wide,
    brighter, softer, plus sensor noise.
    """
    from .rain import make_rain_image

    image = make_rain_image(_photo(name, size), level="medium", seed=seed, noise_sigma=0.01,
                            angle=-20.0, angle_jitter=6.0, width=2.0, blur=1.2,
                            brightness=0.7, length=40.0)
    return Sample(f"{name} (held-out rain)", image.rain, image.clean, image.clean)


def failure_sample(size: Sequence[int] = (240, 320), seed: int = 0, name: str = "coffee"
                   ) -> Sample:
    """Dense rain (Fig. 12): the heavy level with twice its streak density, longer streaks."""
    from .rain import IMAGE_RAIN_LEVELS, make_rain_image

    heavy = IMAGE_RAIN_LEVELS["heavy"]
    image = make_rain_image(_photo(name, size), level="heavy", seed=seed,
                            density=2.0 * heavy.density, length=1.3 * heavy.length,
                            brightness=0.75)
    return Sample(f"{name} (dense rain)", image.rain, image.clean, image.clean)


def _derain(model: nn.Module | None, image: np.ndarray, device: str | torch.device
            ) -> tuple[np.ndarray, np.ndarray | None]:
    from .inference import derain_array

    if model is None:
        return image.astype(np.float32) / 255.0, None
    return derain_array(model, image, device=device)


def derain_rows(models: Mapping[str, nn.Module | None], samples: Sequence[Sample],
                device: str | torch.device = "auto") -> list[dict[str, np.ndarray]]:
    """Figs. 9-11: per sample, the rain image, each model's output, the clean image(s).

    Returns:
        One dict per sample: ``"Rain"``, one entry per model (float [0, 1]; a None model is
        skipped), then the reference images: ``"Clean"`` when the sample's clean image is its
        truth (single synthetic images), else ``"Clean (dataset)"`` (the pair's clean image:
        the estimate for §3 data) and, when the sample has one, ``"True background"``.
    """
    rows = []
    for sample in samples:
        row: dict[str, np.ndarray] = {"Rain": sample.rain}
        for label, model in models.items():
            if model is not None:
                row[label] = _derain(model, sample.rain, device)[0]
        if sample.truth is not None and sample.truth is sample.clean:
            row["Clean"] = sample.clean
        else:
            row["Clean (dataset)"] = sample.clean
            if sample.truth is not None:
                row["True background"] = sample.truth
        rows.append(row)
    return rows


def psnr_captions(rows: Sequence[Mapping[str, np.ndarray]], reference: str | None = None,
                  convention: str = "standard") -> dict[str, str]:
    """Column captions: mean PSNR of every image column against ``reference``; map ranges.

    Maps (H x W columns, e.g. difference or attention maps) are shown scaled to their own
    maximum, so their caption gives the scale: the mean and the maximum value over all rows.

    Args:
        rows: rows of images (e.g. from `derain_rows`), the same columns in every row.
        reference: the column scored against; None: the first of ``"True background"``,
            ``"Clean"``, ``"Clean (dataset)"`` that the rows have.
        convention: metric convention.

    Returns:
        Column -> ``"xx.xx dB"`` for every RGB column but the reference, and
        ``"mean m, max M"`` for every map column.

    Raises:
        ValueError: no rows, or ``reference`` is not a column of the rows.
    """
    from .metrics import psnr_ssim_np

    columns = list(rows[0]) if rows else []
    if reference is None:
        reference = next((c for c in ("True background", "Clean", "Clean (dataset)")
                          if c in columns), None)
    if reference not in columns:
        raise ValueError(f"reference {reference!r} is not a column of the rows {columns}")
    captions = {}
    for column, image in rows[0].items():
        if np.asarray(image).ndim == 2:
            maps = np.stack([np.asarray(row[column], np.float32) for row in rows])
            captions[column] = f"mean {maps.mean():.3f}, max {maps.max():.3f}"
            continue
        if column == reference:
            continue
        values = [psnr_ssim_np(_to_float(row[column]), _to_float(row[reference]),
                               convention)[0] for row in rows]
        captions[column] = f"{np.mean(values):.2f} dB"
    return captions


def _to_float(image: np.ndarray) -> np.ndarray:
    image = np.asarray(image)
    if image.dtype == np.uint8:
        return image.astype(np.float32) / 255.0
    return np.clip(image, 0.0, 1.0).astype(np.float32)


def attention_rows(models: Mapping[str, nn.Module], samples: Sequence[Sample],
                   device: str | torch.device = "auto", mask_thresholds: Sequence[float] = (0.0,)
                   ) -> list[dict[str, np.ndarray]]:
    """Fig. 7: per sample the rain image, each model's first attention map A_1, the mask M.

    M is `spanetlib.data.rain_mask` of the rain image and the sample's clean image (the
    target of the attention loss, Eq. 7) at each threshold (in [0, 1] units, as
    ``TrainConfig.mask_threshold``; 0, the authors' choice, marks every changed pixel).

    Returns:
        One dict per sample: ``"Rain image"``, ``"A_1 <label>"`` per model, then ``"Rain mask
        M"`` (a single threshold 0) or ``"M (> k/255)"`` per threshold.

    Raises:
        ValueError: a model returns no attention map, or no / a negative threshold.
    """
    from .data import rain_mask

    if not mask_thresholds or min(mask_thresholds) < 0:
        raise ValueError(f"expected thresholds >= 0, got {tuple(mask_thresholds)}")
    single = tuple(mask_thresholds) == (0.0,)
    rows = []
    for sample in samples:
        row: dict[str, np.ndarray] = {"Rain image": sample.rain}
        for label, model in models.items():
            attention = _derain(model, sample.rain, device)[1]
            if attention is None:
                raise ValueError(f"model {label!r} returns no attention map")
            row[f"A_1 {label}"] = attention
        for threshold in mask_thresholds:
            key = "Rain mask M" if single else f"M (> {threshold * 255:.0f}/255)"
            row[key] = rain_mask(sample.rain, sample.clean,
                                 threshold * 255.0).astype(np.float32)
        rows.append(row)
    return rows


def difference_rows(samples: Sequence[Sample]) -> list[dict[str, np.ndarray]]:
    """Fig. 8: how clean the estimated clean images are.

    Per sample: the rain frame, the estimated clean image, ``|rain - estimate|`` (what a
    network learns to remove) and ``|estimate - truth|`` (rain or error left in the ground
    truth), as max-over-channels maps in [0, 1].

    Raises:
        ValueError: a sample has no true background.
    """
    from .figures import difference_map

    rows = []
    for sample in samples:
        if sample.truth is None:
            raise ValueError(f"sample {sample.name!r} has no true background")
        rows.append({"Rain frame": sample.rain, "Estimated clean": sample.clean,
                     "|rain - estimate|": difference_map(sample.rain, sample.clean),
                     "|estimate - truth|": difference_map(sample.clean, sample.truth),
                     "True background": sample.truth})
    return rows


def failure_rows(models: Mapping[str, nn.Module], sample: Sample, focus: str = OURS,
                 device: str | torch.device = "auto") -> list[dict[str, np.ndarray]]:
    """Fig. 12: every model on one dense-rain image, and where ``focus`` leaves streaks.

    Returns:
        One row (a list of one dict, for `spanetlib.figures.plot_image_grid`): ``"Rain"``,
        each model's output, ``"|<focus> - truth|"`` (the rain it left, max over channels),
        ``"A_1 <focus>"`` (its attention map; omitted for models without one) and
        ``"True background"``.

    Raises:
        ValueError: ``focus`` is not a model, or the sample has no true background.
    """
    from .figures import difference_map

    if focus not in models:
        raise ValueError(f"focus {focus!r} is not one of the models {list(models)}")
    if sample.truth is None:
        raise ValueError(f"sample {sample.name!r} has no true background")
    row: dict[str, np.ndarray] = {"Rain": sample.rain}
    focus_attention = None
    for label, model in models.items():
        output, attention = _derain(model, sample.rain, device)
        row[label] = output
        if label == focus:
            focus_output, focus_attention = output, attention
    row[f"|{focus} - truth|"] = difference_map(focus_output, sample.truth)
    if focus_attention is not None:
        row[f"A_1 {focus}"] = focus_attention
    row["True background"] = sample.truth
    return [row]
