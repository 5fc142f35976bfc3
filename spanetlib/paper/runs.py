"""The training runs of the paper's Sec. 5 experiments: specs, ensure-trained, logs, summaries.

Every model of Tables 2-4 is trained with `spanetlib.training.train` into ``work_dir/runs/<run
name>`` (`RunSpec`, `TABLE2_RUNS`, `TABLE4_RUNS`) by `ensure_trained`, which reuses a finished run
with the same settings and resumes an unfinished one, so the notebooks share their runs: SPANet with
shared SAMs (`SPANET_RUN`) is trained once (notebook 02) and used by Tables 2, 3 and 4 and the
figures. Table 4's runs are derived from the SPANet variants of
`spanetlib.models.spanet.TABLE4_VARIANTS`, plus "No attention loss" (the shared-SAM model
trained with the attention-loss weight 0).

Table 2 scores each derainer twice, as the paper does: *retrained* on the §3 pairs
(`TABLE2_RUNS`) and *original*, trained on single-image synthetic rain (`TABLE2_ORIGINAL_RUNS`,
`ORIGINAL_OF`; the set is `spanetlib.paper.datasets.ensure_single_image_set`). Every run is trained
once per seed (`ensure_seed_runs`; folder ``<run>_seed<k>``), so the tables can show the spread
over seeds and decide the paper's claims by paired tests (`spanetlib.paper.claims`).
"""

from __future__ import annotations

import math
import multiprocessing
import os
from collections.abc import Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn
from tqdm.auto import tqdm

from spanetlib.io.checks import check_positive
from spanetlib.io.errors import InputError
from spanetlib.models import build_model, count_parameters, load_pretrained, read_checkpoint
from spanetlib.models.spanet import TABLE4_VARIANTS
from spanetlib.paper.datasets import DatasetInfo
from spanetlib.training.config import TRAIN_PROFILES, make_config, scale_milestones
from spanetlib.training.train import train

__all__ = [
    "OFFICIAL",
    "ORIGINAL_OF",
    "OURS",
    "RAIN_INPUT",
    "SECTION3",
    "SINGLE_IMAGE",
    "SPANET_RUN",
    "TABLE2_ORIGINAL_RUNS",
    "TABLE2_RUNS",
    "TABLE4_RUNS",
    "RunSpec",
    "describe_runs",
    "ensure_run",
    "ensure_runs",
    "ensure_seed_runs",
    "ensure_trained",
    "load_trained",
    "parameter_counts",
    "read_log",
    "training_summary",
    "validation_gain",
]

#: Display names of the table rows that are not trained runs, and of our SPANet.
RAIN_INPUT = "Rain input"
OFFICIAL = "SPANet (authors' weights)"
OURS = "SPANet (ours)"

#: Training sets of a run: the §3 pairs, or single-image synthetic rain on the same clean images.
SECTION3 = "section3"
SINGLE_IMAGE = "single-image"


@dataclass(frozen=True)
class RunSpec:
    """One training run of the experiments.

    Attributes:
        run: folder name under ``work_dir/runs``.
        model: a `spanetlib.models.MODEL_FACTORIES` name.
        model_kwargs: constructor arguments added to the training profile's (e.g. SPANet's
            ``sam_mode``; the profile sets SPANet's ``channels``).
        attention_weight: weight of the attention loss (Eq. 7); None keeps the profile's (1).
        training_set: `SECTION3` (the §3 pairs) or `SINGLE_IMAGE` (single-image synthetic
            rain, Table 2's "original" rows).
    """

    run: str
    model: str
    model_kwargs: dict[str, Any] = field(default_factory=dict)
    attention_weight: float | None = None
    training_set: str = SECTION3

    def __post_init__(self) -> None:
        if self.training_set not in (SECTION3, SINGLE_IMAGE):
            raise ValueError(f"training_set must be {SECTION3!r} or {SINGLE_IMAGE!r}, got "
                             f"{self.training_set!r}")


#: SPANet as the paper trains it (shared SAMs, attention loss): trained in notebook 02.
SPANET_RUN = RunSpec("spanet_shared", "spanet", dict(TABLE4_VARIANTS["Shared SAMs (SPANet)"]))

#: Table 2's trained rows, display name -> run (the baselines retrained with our trainer).
TABLE2_RUNS: dict[str, RunSpec] = {
    "DDN": RunSpec("ddn", "ddn"),
    "RESCAN": RunSpec("rescan", "rescan"),
    "PReNet": RunSpec("prenet", "prenet"),
    OURS: SPANET_RUN,
}

def _original_label(label: str) -> str:
    """``"DDN" -> "DDN (original)"``, ``"SPANet (ours)" -> "SPANet (ours, original)"``."""
    return f"{label[:-1]}, original)" if label.endswith(")") else f"{label} (original)"


#: Table 2's "original" rows: each trained row of `TABLE2_RUNS` trained on single-image
#: synthetic rain instead (the role of the weights its authors released, trained on Rain100H /
#: Rain1400), display name -> run.
TABLE2_ORIGINAL_RUNS: dict[str, RunSpec] = {
    _original_label(label): RunSpec(f"{spec.run}_original", spec.model, dict(spec.model_kwargs),
                                   spec.attention_weight, SINGLE_IMAGE)
    for label, spec in TABLE2_RUNS.items()
}

#: Retrained row -> its original row (``"DDN" -> "DDN (original)"``).
ORIGINAL_OF: dict[str, str] = dict(zip(TABLE2_RUNS, TABLE2_ORIGINAL_RUNS, strict=True))

# Run folders of Table 4's variants (names only; the settings are TABLE4_VARIANTS').
_TABLE4_FOLDERS = {
    "ResNet (no SAM)": "spanet_no_sam",
    "Single SAM": "spanet_single_sam",
    "Unshared SAMs": "spanet_unshared_sams",
    "No direction attention": "spanet_no_direction_attention",
}


def _table4_runs() -> dict[str, RunSpec]:
    runs = {}
    for label, kwargs in TABLE4_VARIANTS.items():
        if kwargs == SPANET_RUN.model_kwargs:
            runs[label] = SPANET_RUN
        else:
            folder = _TABLE4_FOLDERS.get(label, "spanet_" + "_".join(
                "".join(ch if ch.isalnum() else " " for ch in label.lower()).split()))
            runs[label] = RunSpec(folder, "spanet", dict(kwargs))
    runs["No attention loss"] = RunSpec("spanet_no_attention_loss", "spanet",
                                        dict(SPANET_RUN.model_kwargs), attention_weight=0.0)
    return runs


#: Table 4's rows: one run per SPANet variant of ``TABLE4_VARIANTS`` (the full model is
#: `SPANET_RUN`), plus "No attention loss".
TABLE4_RUNS: dict[str, RunSpec] = _table4_runs()

# Config entries that do not change the trained weights (ignored when deciding on reuse).
_NOT_WEIGHTS = frozenset({"out_dir", "device", "num_workers", "checkpoint_every", "val_every",
                          "log_every", "max_val_images", "val_crop", "val_list"})
# Entries that may grow when a run is resumed (train more steps).
_SCHEDULE = frozenset({"steps", "milestones"})


def _full_model_kwargs(model: str, kwargs: Mapping[str, Any]) -> dict[str, Any]:
    """Every constructor argument of the model (so equal models compare equal)."""
    net = build_model(model, **kwargs)
    full = getattr(net, "model_kwargs", None)
    return dict(full) if isinstance(full, Mapping) else dict(kwargs)


def _read_config(path: Path) -> tuple[dict[str, Any], int] | None:
    """The ``config`` and ``step`` of a training checkpoint, or None when missing/unreadable."""
    if not path.is_file():
        return None
    try:
        ckpt = read_checkpoint(path)
    except InputError:  # a torn or foreign file is simply not reused
        return None
    if not isinstance(ckpt, dict) or not isinstance(ckpt.get("config"), dict):
        return None
    return ckpt["config"], int(ckpt.get("step", -1))


def _same(saved: Mapping[str, Any], wanted: Mapping[str, Any], ignore: frozenset[str]) -> bool:
    keys = (set(saved) | set(wanted)) - ignore
    return all(saved.get(k) == wanted.get(k) for k in keys)


def ensure_trained(name: str, model: str, model_kwargs: Mapping[str, Any] | None,
                   dataset: DatasetInfo, work_dir: str | os.PathLike, profile: str,
                   steps: int | None = None, attention_weight: float | None = None,
                   seed: int = 0, progress: bool = False) -> Path:
    """Train a model into ``work_dir/runs/<name>`` unless that run exists; its ``final.pt``.

    The run's `spanetlib.training.config.TrainConfig` is ``make_config(profile, ...)`` with the
    dataset's train list (its test list for validation), ``seed``, ``steps`` (the profile's
    learning-rate milestones moved to the new length by
    `spanetlib.training.config.scale_milestones`, as ``spanet train --steps`` does, and validation
    at least every ``steps // 10`` steps) and ``attention_weight``. Then:

    - ``final.pt`` exists and was trained with the same settings (all entries that change
      the weights: model, its arguments, data, schedule, losses, seed ...): it is returned
      as it is, nothing is trained;
    - else ``last.pt`` exists with the same settings apart from the length of the schedule
      and fewer (or as many) steps: training resumes from it (to train a finished run
      longer, or to finish an interrupted one);
    - else the run is trained from scratch (replacing what the folder held).

    Args:
        name: run folder name.
        model: a `spanetlib.models.MODEL_FACTORIES` name.
        model_kwargs: constructor arguments, added to the profile's for that model (e.g.
            ``{"sam_mode": "none"}``; the profile gives SPANet its ``channels``).
        dataset: the §3 dataset (`spanetlib.paper.datasets.DatasetInfo`: ``train_list``,
            ``test_list``).
        work_dir: the run's work folder.
        profile: a `spanetlib.training.config.TRAIN_PROFILES` name ("smoke", "quick", "paper").
        steps: optimizer steps (None: the profile's).
        attention_weight: weight of the attention loss, Eq. 7 (None: the profile's).
        seed: seed of the initialisation, crops and shuffling.
        progress: show the trainer's progress bar.

    Returns:
        The run's ``final.pt``.

    Raises:
        ValueError: unknown profile or model, bad steps (from
            `spanetlib.training.config.make_config`).
    """
    if profile not in TRAIN_PROFILES:
        raise ValueError(f"unknown profile {profile!r}; expected one of {sorted(TRAIN_PROFILES)}")
    check_positive("steps", steps, allow_none=True)
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
        overrides["milestones"] = scale_milestones(base["milestones"], base["steps"], steps)
        # At least ten validations per run, to see whether the curve has flattened (no effect
        # on the weights).
        overrides["val_every"] = min(base["val_every"], max(1, steps // 10))
    if attention_weight is not None:
        overrides["attention_weight"] = float(attention_weight)
    config = make_config(profile, **overrides)
    wanted = config.to_dict()

    final, last = out_dir / "final.pt", out_dir / "last.pt"
    saved = _read_config(final)
    if saved is not None and _same(saved[0], wanted, _NOT_WEIGHTS):
        return final
    saved = _read_config(last)
    resume = (saved is not None and _same(saved[0], wanted, _NOT_WEIGHTS | _SCHEDULE)
              and 0 <= saved[1] <= config.steps)
    # Deliberate: a run of other settings is replaced (overwrite), one of these is resumed.
    return train(config, resume=resume, overwrite=not resume, progress=progress).checkpoint


def _training_data(spec: RunSpec, dataset: DatasetInfo, single_image: DatasetInfo | None
                   ) -> DatasetInfo:
    if spec.training_set == SECTION3:
        return dataset
    if single_image is None:
        raise ValueError(f"run {spec.run!r} trains on single-image synthetic rain: pass "
                         "single_image (spanetlib.paper.datasets.ensure_single_image_set)")
    return single_image


def ensure_run(spec: RunSpec, dataset: DatasetInfo, work_dir: str | os.PathLike, profile: str,
               steps: int | None = None, seed: int = 0, progress: bool = False,
               single_image: DatasetInfo | None = None) -> Path:
    """`ensure_trained` for one `RunSpec` and seed, in ``work_dir/runs/<run>_seed<seed>``.

    Args:
        spec: the run.
        dataset: the §3 dataset (the training set of `SECTION3` runs; its test list validates
            every run).
        work_dir: the work folder.
        profile: a training profile name.
        steps: optimizer steps (None: the profile's).
        seed: training seed.
        progress: show the trainer's progress bar.
        single_image: the training set of `SINGLE_IMAGE` runs
            (`spanetlib.paper.datasets.ensure_single_image_set`).

    Returns:
        The run's ``final.pt``.

    Raises:
        ValueError: a `SINGLE_IMAGE` run without ``single_image``, or as `ensure_trained`.
    """
    data = _training_data(spec, dataset, single_image)
    return ensure_trained(f"{spec.run}_seed{int(seed)}", spec.model, spec.model_kwargs, data,
                          work_dir, profile, steps=steps, attention_weight=spec.attention_weight,
                          seed=seed, progress=progress)


def ensure_runs(specs: Mapping[str, RunSpec], dataset: DatasetInfo,
                work_dir: str | os.PathLike, profile: str, steps: int | None = None,
                seed: int = 0, progress: bool = False,
                single_image: DatasetInfo | None = None) -> dict[str, Path]:
    """`ensure_run` for every run of a table (all at the same budget and seed), in order.

    Args:
        specs: display name -> run, e.g. `TABLE2_RUNS` or `TABLE4_RUNS`.
        dataset: the §3 dataset.
        work_dir: the work folder (runs in ``work_dir/runs``).
        profile: a training profile name.
        steps: steps of every run (None: the profile's).
        seed: training seed.
        progress: show progress bars.
        single_image: the training set of `SINGLE_IMAGE` runs.

    Returns:
        Display name -> ``final.pt``.

    Raises:
        ValueError: no runs, or as `ensure_run`.
    """
    if not specs:
        raise ValueError("expected at least one run, got none")
    return {label: ensure_run(spec, dataset, work_dir, profile, steps=steps, seed=seed,
                              progress=progress, single_image=single_image)
            for label, spec in specs.items()}


def _run_job(spec: RunSpec, dataset: DatasetInfo, work_dir: str, profile: str,
             steps: int | None, seed: int, single_image: DatasetInfo | None) -> Path:
    """One run in a worker process of `ensure_seed_runs`: one thread, no progress bar."""
    import numba

    torch.set_num_threads(1)
    numba.set_num_threads(1)
    return ensure_run(spec, dataset, work_dir, profile, steps=steps, seed=seed,
                      single_image=single_image)


def ensure_seed_runs(specs: Mapping[str, RunSpec], dataset: DatasetInfo,
                     work_dir: str | os.PathLike, profile: str, seeds: Sequence[int],
                     steps: int | None = None, progress: bool = False,
                     single_image: DatasetInfo | None = None, workers: int | None = 1
                     ) -> dict[int, dict[str, Path]]:
    """`ensure_runs` once per training seed: seed -> display name -> ``final.pt``.

    With ``workers`` > 1 the runs are trained side by side in that many processes of one
    thread each: on a CPU the small models of the ``quick`` profile use a second thread poorly,
    so two runs at once train faster than one after the other. Each run is seeded, so its weights
    are the same either way when this process also uses one thread (with more threads they
    differ by floating-point summation order only); `ensure_trained` reuses and resumes runs
    as usual.

    Args:
        specs: display name -> run.
        dataset: the §3 dataset.
        work_dir: the work folder.
        profile: a training profile name.
        seeds: training seeds (distinct integers).
        steps: steps of every run (None: the profile's).
        progress: each run's progress bar (one process) or a bar over the runs (several).
        single_image: the training set of `SINGLE_IMAGE` runs.
        workers: processes (None: one per CPU core, at most one per run; 1: in this process).

    Raises:
        ValueError: no seeds, a repeated or non-integer seed, bad ``workers``, or as
            `ensure_runs`.
    """
    seeds = list(seeds)
    if not seeds:
        raise ValueError("expected at least one seed, got none")
    if any(isinstance(k, bool) or not isinstance(k, int) for k in seeds) \
            or len(set(seeds)) != len(seeds):
        raise ValueError(f"seeds must be distinct integers, got {seeds}")
    if not specs:
        raise ValueError("expected at least one run, got none")
    jobs = [(k, label, spec) for k in seeds for label, spec in specs.items()]
    if workers is None:
        workers = min(len(jobs), os.cpu_count() or 1)
    check_positive("workers", workers)
    for _, _, spec in jobs:  # refuse a missing training set before any run starts
        _training_data(spec, dataset, single_image)
    if workers == 1:
        return {k: ensure_runs(specs, dataset, work_dir, profile, steps=steps, seed=k,
                               progress=progress, single_image=single_image) for k in seeds}
    out: dict[int, dict[str, Path]] = {k: {} for k in seeds}
    context = multiprocessing.get_context("spawn")  # fork would copy torch's thread pools
    with ProcessPoolExecutor(max_workers=workers, mp_context=context) as pool:
        futures = {pool.submit(_run_job, spec, dataset, str(work_dir), profile, steps, k,
                               single_image): (k, label) for k, label, spec in jobs}
        for future in tqdm(as_completed(futures), total=len(futures), desc="runs",
                           disable=not progress):
            k, label = futures[future]
            out[k][label] = future.result()
    return {k: {label: out[k][label] for label in specs} for k in seeds}


def load_trained(path: str | os.PathLike, device: str | torch.device = "cpu") -> nn.Module:
    """Load any model saved by `spanetlib.training.train` (DDN, RESCAN, PReNet, SPANet variants).

    Args:
        path: a training checkpoint (``final.pt`` / ``last.pt``).
        device: "cpu", "cuda", "auto" or a ``torch.device``.

    Returns:
        ``build_model(config["model"], **config["model_kwargs"])`` with the saved weights, in
        eval mode on ``device`` (`spanetlib.models.load_pretrained` of the file).

    Raises:
        InputError: missing or unreadable file, not a training checkpoint, or weights that do
            not fit the model.
    """
    return load_pretrained(Path(path), device=device)


def read_log(run: str | os.PathLike) -> pd.DataFrame:
    """A run's ``log.csv`` (a run folder or a checkpoint inside it) as a DataFrame.

    Raises:
        InputError: the run has no ``log.csv``.
    """
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


def validation_gain(runs: Mapping[str, str | os.PathLike], fraction: float = 0.25
                    ) -> pd.DataFrame:
    """How much each run's validation PSNR still rose over the last part of its training.

    A flat curve is one whose gain over the last ``fraction`` of the steps is small next to
    the gain before it. Uses the validations of the run's ``log.csv``: the last one, and the
    first at or after step ``(1 - fraction) * last step``.

    Args:
        runs: display name -> ``final.pt`` (or the run folder).
        fraction: the share of the run at its end (0 < fraction < 1).

    Returns:
        Columns ``model, first, start, end, late_gain, total_gain``: validation PSNR (dB) at the
        first validation, at the start of the last part and at the end; ``late_gain = end -
        start``, ``total_gain = end - first``. NaN where the log has fewer than two
        validations.

    Raises:
        ValueError: ``fraction`` outside (0, 1).
        InputError: a run without ``log.csv``.
    """
    if not 0 < fraction < 1:
        raise ValueError(f"fraction must be in (0, 1), got {fraction!r}")
    rows = []
    for label, run in runs.items():
        log = read_log(run)
        val = (log.dropna(subset=["val_psnr"]) if "val_psnr" in log else log.iloc[:0])
        if len(val) < 2:
            rows.append({"model": label, "first": math.nan, "start": math.nan,
                         "end": math.nan, "late_gain": math.nan, "total_gain": math.nan})
            continue
        steps, psnr = val["step"].to_numpy(), val["val_psnr"].to_numpy(dtype=float)
        start = int(np.argmax(steps >= (1 - fraction) * steps[-1]))
        start = min(start, len(steps) - 2)
        rows.append({"model": label, "first": psnr[0], "start": psnr[start], "end": psnr[-1],
                     "late_gain": psnr[-1] - psnr[start], "total_gain": psnr[-1] - psnr[0]})
    return pd.DataFrame(rows)


def parameter_counts(runs: Mapping[str, str | os.PathLike]) -> dict[str, int]:
    """Display name -> number of parameters of each run's model (all, used or not)."""
    return {label: count_parameters(load_trained(path), trainable_only=False)
            for label, path in runs.items()}


def describe_runs(specs: Mapping[str, RunSpec]) -> pd.DataFrame:
    """The runs of a table: ``row, run, model, model_kwargs, attention loss, training set``.

    ``attention loss`` is the weight of Eq. 7 ("profile" when the profile's is kept).

    Example:
        >>> describe_runs({"No attention loss": TABLE4_RUNS["No attention loss"]}).iloc[0]
        row                      No attention loss
        run               spanet_no_attention_loss
        model                               spanet
        model_kwargs          {'sam_mode': 'shared'}
        attention loss                         0.0
        training set                      section3
        Name: 0, dtype: object
    """
    return pd.DataFrame([{"row": label, "run": spec.run, "model": spec.model,
                          "model_kwargs": dict(spec.model_kwargs),
                          "attention loss": ("profile" if spec.attention_weight is None
                                             else spec.attention_weight),
                          "training set": spec.training_set}
                         for label, spec in specs.items()])
