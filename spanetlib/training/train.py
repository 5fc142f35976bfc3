"""Training SPANet and the baselines: profiles, the loop, checkpoints, exact resume, DDP.

The loop follows the paper (Sec. 5): Adam, a multi-step learning-rate schedule, random paired
crops, and the loss L1 + (1 - SSIM) + MSE(A_1, M) (Eqs. 6-7,
`spanetlib.training.losses.SPANetLoss`). Settings and profiles are `spanetlib.training.config`'s,
checkpoints and the run-folder check `spanetlib.training.checkpoints`', sampling, RNG state and
the distributed setup `spanetlib.training.runtime`'s.

Files written under ``out_dir`` (rank 0 only):

- ``log.csv``: one row every ``log_every`` steps, at every validation and at the last step:
  ``step, epoch, lr, loss, loss_<part>..., psnr, val_psnr, val_ssim, elapsed_s`` (training
  values are means over the steps since the previous row; ``psnr`` is the "standard" PSNR of the
  clipped training outputs; ``epoch`` counts epochs done, fractional). Each row is written in
  one call and flushed; a resumed run appends (after dropping rows past its checkpoint and a
  torn last line).
- ``last.pt`` (every ``checkpoint_every`` steps, on interruption and at the end) and
  ``final.pt`` (at the end): a dict, saved atomically, with

  ``format`` ("spanetlib-train"), ``version`` (1), ``model`` (state dict, no DDP ``module.``
  prefix), ``config`` (`TrainConfig.to_dict`, incl. ``model`` and ``model_kwargs``), ``step``,
  ``optimizer``, ``scheduler``, ``rng`` (``python``, ``numpy``, ``torch``, ``cuda`` (list, empty
  without CUDA), ``sampler``: ``{"epoch", "batches_done"}``), ``metrics`` (the last logged
  row), ``elapsed_s``, ``world_size``, ``torch_version``; ``final.pt`` adds ``param_digests``
  (one SHA-1 of the parameters per rank, equal when the ranks were in sync). All entries load
  with ``torch.load(path, weights_only=True)``.

A folder that already holds a run (`RUN_FILES`) is refused before any work unless the run is
resumed (``resume=True``) or replaced (``overwrite=True``: those files only; `check_run`).

Interruption: SIGINT (Ctrl+C, a notebook's interrupt) and SIGTERM stop the loop between two
steps; ``last.pt`` is saved, then SIGINT raises ``KeyboardInterrupt`` and SIGTERM exits with
status 143. A second Ctrl+C stops at once. ``train(config, resume=True)`` continues exactly.

Distributed training: launch with ``torchrun --nproc_per_node=N -m spanetlib.training.train --config
CONFIG.json``. Each rank then takes ``batch_size // N`` pairs per step (so the global batch stays
``batch_size``, rounded down to a multiple of N), gradients are averaged by
``DistributedDataParallel``, and only rank 0 writes files; logged training values are rank 0's.
"""

from __future__ import annotations

import argparse
import contextlib
import math
import os
import signal
import sys
import threading
import time
import warnings
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from spanetlib.evaluation.metrics import psnr, ssim
from spanetlib.io.errors import InputError
from spanetlib.io.pairs import find_pair_list
from spanetlib.models import build_model
from spanetlib.models.device import bf16_training_faults, cpu_has_fast_bf16
from spanetlib.training.checkpoints import (
    CHECKPOINT_FORMAT,
    CHECKPOINT_VERSION,
    atomic_torch_save,
    check_run,
)
from spanetlib.training.config import (
    TRAIN_PROFILES,
    TrainConfig,
    load_config,
    make_config,
    scale_milestones,
)
from spanetlib.training.data import PairDataset
from spanetlib.training.losses import SPANetLoss
from spanetlib.training.runtime import (
    CsvLog,
    DistInfo,
    EpochSampler,
    param_digest,
    resolve_device,
    rng_state,
    seed_everything,
    seed_worker,
    set_rng_state,
    setup_distributed,
)

__all__ = ["TrainResult", "checked_cpu_bf16", "main", "train", "train_command"]


@dataclass
class TrainResult:
    """What `train` returns.

    Attributes:
        checkpoint: ``final.pt`` (the weights to load with ``load_pretrained``).
        last_checkpoint: ``last.pt`` (for ``resume=True``).
        log_path: ``log.csv``.
        step: steps done.
        metrics: the last logged row (``loss``, ``psnr``, ``val_psnr`` ... as floats).
        elapsed_s: training seconds over all resumed sessions.
    """

    checkpoint: Path
    last_checkpoint: Path
    log_path: Path
    step: int
    metrics: dict[str, float]
    elapsed_s: float

    def __str__(self) -> str:
        parts = [f"{k} {v:.4g}" for k, v in self.metrics.items()
                 if k in ("loss", "psnr", "val_psnr", "val_ssim") and v == v]
        return (f"trained {self.step} steps in {self.elapsed_s:.0f} s ({', '.join(parts)}); "
                f"weights: {self.checkpoint}; log: {self.log_path}")



# --------------------------------------------------------------------------------------------
# The loop
# --------------------------------------------------------------------------------------------
class _StopFlag:
    """SIGINT/SIGTERM set a flag; the loop stops between steps, saves ``last.pt`` and exits."""

    def __init__(self) -> None:
        self.signum: int | None = None
        self._previous: dict[int, Any] = {}

    def install(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            return
        for signum in (signal.SIGINT, signal.SIGTERM):
            try:
                self._previous[signum] = signal.signal(signum, self._handle)
            except (ValueError, OSError):       # pragma: no cover - exotic embedders
                pass

    def _handle(self, signum: int, frame: Any) -> None:
        if self.signum is not None and signum == signal.SIGINT:
            raise KeyboardInterrupt             # second Ctrl+C: stop now
        self.signum = signum

    def restore(self) -> None:
        for signum, handler in self._previous.items():
            with contextlib.suppress(ValueError, OSError, TypeError):
                signal.signal(signum, handler)
        self._previous.clear()


def _validate(model: nn.Module, val_set: Any, config: TrainConfig, device: torch.device,
              autocast: Callable[[], Any]) -> tuple[float, float]:
    was_training = model.training
    model.eval()
    psnrs, ssims = [], []
    with torch.no_grad():
        for i in range(min(len(val_set), config.max_val_images)):
            item = val_set[i]
            rain, clean = item["rain"].unsqueeze(0), item["clean"].unsqueeze(0)
            if config.val_crop is not None:
                rain, clean = _centre_crop(rain, config.val_crop), _centre_crop(clean,
                                                                               config.val_crop)
            rain, clean = rain.to(device), clean.to(device)
            with autocast():
                pred = model(rain)[0]
            pred = pred.float().clamp(0, 1)
            psnrs.append(float(psnr(pred, clean, convention="standard")[0]))
            ssims.append(float(ssim(pred, clean, convention="standard")[0]))
    model.train(was_training)
    return float(np.mean(psnrs)), float(np.mean(ssims))


def _centre_crop(x: torch.Tensor, size: int) -> torch.Tensor:
    h, w = x.shape[-2:]
    ch, cw = min(size, h), min(size, w)
    top, left = (h - ch) // 2, (w - cw) // 2
    return x[..., top:top + ch, left:left + cw]


def _check_list(path: str | None, what: str) -> Path:
    if path is None:
        raise InputError(f"no {what} list given (a file of 'rain_path clean_path' lines)")
    p = Path(path)
    if not p.is_file():
        raise InputError(f"{what} list not found: {p}")
    return p


class _Stop(Exception):
    """Internal: a signal asked the loop to stop between steps."""


@dataclass
class _TrainData:
    """The training pairs, their sampler and loader, and the validation pairs (rank 0)."""

    train_set: PairDataset
    sampler: EpochSampler
    loader: torch.utils.data.DataLoader
    loader_gen: torch.Generator
    steps_per_epoch: int
    val_set: PairDataset | None


@dataclass
class _TrainState:
    """One training run as the named steps of `train` see it: settings, objects, counters.

    The counters (``step``, ``epoch``, ``batches_done``, ``elapsed_before``, ``last_metrics``)
    and the RNG states are what a checkpoint saves; ``window`` holds the training values
    summed since the last log row.
    """

    config: TrainConfig
    dist: DistInfo
    device: torch.device
    out_dir: Path
    data: _TrainData
    model: nn.Module
    net: nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.MultiStepLR
    criterion: SPANetLoss
    memory_format: torch.memory_format
    cpu_bf16: bool = False        # bf16 autocast on the CPU (`checked_cpu_bf16`)
    step: int = 0
    epoch: int = 0
    batches_done: int = 0
    elapsed_before: float = 0.0
    started: float = field(default_factory=time.perf_counter)
    last_metrics: dict[str, Any] = field(default_factory=dict)
    window: dict[str, float] = field(default_factory=dict)
    window_n: int = 0
    running_psnr: float = 0.0     # exponential mean of the batch PSNR, for the progress bar
    consistent: bool = True       # False while optimizer.step() may be half done
    log: CsvLog | None = None
    writer: Any = None

    @property
    def last_path(self) -> Path:
        return self.out_dir / "last.pt"

    @property
    def final_path(self) -> Path:
        return self.out_dir / "final.pt"

    @property
    def log_path(self) -> Path:
        return self.out_dir / "log.csv"

    @property
    def on_cuda(self) -> bool:
        return self.device.type == "cuda"

    def elapsed(self) -> float:
        """Training seconds over this and every earlier (resumed) session."""
        return self.elapsed_before + time.perf_counter() - self.started

    def autocast(self) -> Any:
        """bf16 autocast where the config asks for it and the device runs it fast."""
        if self.on_cuda and self.config.amp:
            return torch.autocast("cuda", dtype=torch.bfloat16)
        if not self.on_cuda and self.cpu_bf16:
            return torch.autocast("cpu", dtype=torch.bfloat16)
        return contextlib.nullcontext()


def _open_data(config: TrainConfig, train_path: Path, val_path: Path | None, dist: DistInfo,
               on_cuda: bool) -> _TrainData:
    """Step 1: the training pairs (random crops), a resumable sampler, the loader."""
    train_set = PairDataset(train_path, crop=config.crop, scale=config.scale,
                            ratio=config.ratio, flip=config.flip,
                            mask_threshold=config.mask_threshold, seed=config.seed)
    per_rank_batch = max(1, config.batch_size // dist.world_size)
    if len(train_set) < per_rank_batch * dist.world_size:
        raise InputError(f"{train_path} has {len(train_set)} pair(s), fewer than the batch "
                         f"size {per_rank_batch * dist.world_size}")
    sampler = EpochSampler(len(train_set), config.seed, dist.rank, dist.world_size)
    loader_gen = torch.Generator()
    loader = torch.utils.data.DataLoader(
        train_set, batch_size=per_rank_batch, sampler=sampler, drop_last=True,
        num_workers=config.num_workers, pin_memory=on_cuda, generator=loader_gen,
        worker_init_fn=seed_worker if config.num_workers else None,
        persistent_workers=False)
    val_set = (PairDataset(val_path, crop=None, flip=False, mask_threshold=config.mask_threshold)
               if val_path is not None and dist.main else None)
    return _TrainData(train_set, sampler, loader, loader_gen, len(loader), val_set)


def _build_state(config: TrainConfig, dist: DistInfo, device: torch.device,
                 data: _TrainData) -> _TrainState:
    """Step 2: the seeded model, Adam, the multi-step schedule and the loss (Sec. 5.1)."""
    seed_everything(config.seed)
    model = build_model(config.model, **config.model_kwargs).to(device)
    memory_format = torch.channels_last if config.channels_last else torch.contiguous_format
    cpu_bf16 = device.type != "cuda" and config.amp_cpu and cpu_has_fast_bf16()
    if cpu_bf16:
        cpu_bf16, memory_format = checked_cpu_bf16(model, config.channels_last,
                                                    data.loader.batch_size or 1, config.crop)
    model = model.to(memory_format=memory_format)
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr, betas=config.betas)
    scheduler = torch.optim.lr_scheduler.MultiStepLR(optimizer, list(config.milestones),
                                                     gamma=config.gamma)
    criterion = SPANetLoss(l1_weight=config.l1_weight, ssim_weight=config.ssim_weight,
                           attention_weight=config.attention_weight,
                           attention_balanced=config.attention_balanced).to(device)
    return _TrainState(config=config, dist=dist, device=device,
                       out_dir=Path(config.out_dir), data=data, model=model, net=model,
                       optimizer=optimizer, scheduler=scheduler, criterion=criterion,
                       memory_format=memory_format, cpu_bf16=cpu_bf16)


def checked_cpu_bf16(model: nn.Module, channels_last: bool, batch: int, crop: int
                      ) -> tuple[bool, torch.memory_format]:
    """Whether to train in CPU bf16, and in which memory format, after checking the model.

    bf16 is kept only if every convolution's bf16 gradients are right on this CPU
    (`spanetlib.models.device.bf16_training_faults`): in the requested format, else in NCHW (with a
    warning), else the run trains in float32 (with a warning).
    """
    wanted = torch.channels_last if channels_last else torch.contiguous_format
    faults = bf16_training_faults(model, channels_last, batch, crop)
    if not faults:
        return True, wanted
    what = faults[0] + (f" and {len(faults) - 1} more" if len(faults) > 1 else "")
    if channels_last and not bf16_training_faults(model, False, batch, crop):
        warnings.warn(f"bf16 weight gradients of {what} are wrong in channels-last memory on "
                      "this CPU (oneDNN); training in bf16 with NCHW memory instead",
                      RuntimeWarning, stacklevel=2)
        return True, torch.contiguous_format
    warnings.warn(f"bf16 weight gradients of {what} are wrong on this CPU (oneDNN); training "
                  "in float32 instead", RuntimeWarning, stacklevel=2)
    return False, wanted


def _restore(state: _TrainState, ckpt: dict[str, Any]) -> None:
    """Step 3 (resume): weights, optimizer, schedule, counters and every RNG from ``last.pt``."""
    state.model.load_state_dict(ckpt["model"])
    state.optimizer.load_state_dict(ckpt["optimizer"])
    state.scheduler.load_state_dict(ckpt["scheduler"])
    # Keep a changed schedule (e.g. more steps with new milestones) in force.
    state.scheduler.milestones = Counter(state.config.milestones)
    state.step = int(ckpt["step"])
    state.epoch = int(ckpt["rng"]["sampler"]["epoch"])
    state.batches_done = int(ckpt["rng"]["sampler"]["batches_done"])
    if state.batches_done >= state.data.steps_per_epoch:
        state.epoch, state.batches_done = state.epoch + 1, 0
    state.elapsed_before = float(ckpt.get("elapsed_s", 0.0))
    state.last_metrics = dict(ckpt.get("metrics", {}))
    set_rng_state(ckpt["rng"])


def _open_outputs(state: _TrainState, resumed: bool) -> None:
    """Step 4: wrap the model for DDP; rank 0 opens ``log.csv`` and TensorBoard (if present)."""
    if state.dist.enabled:
        state.net = nn.parallel.DistributedDataParallel(
            state.model, device_ids=[state.device.index] if state.on_cuda else None)
    if not state.dist.main:
        return
    state.log = CsvLog(state.log_path, state.step if resumed else None)
    state.out_dir.mkdir(parents=True, exist_ok=True)
    if not resumed:  # a replaced run's checkpoints (check_run allowed it); log.csv is gone
        for path in (state.last_path, state.final_path):
            if path.exists():
                path.unlink()
    try:
        from torch.utils.tensorboard import SummaryWriter  # optional dependency
    except ImportError:
        return
    state.writer = SummaryWriter(str(state.out_dir / "tensorboard"))


def _save_checkpoint(state: _TrainState, path: Path, extra: dict[str, Any] | None = None
                     ) -> None:
    """Write a checkpoint of the run as it stands (the format of the module docstring)."""
    ckpt = {
        "format": CHECKPOINT_FORMAT, "version": CHECKPOINT_VERSION,
        "model": {k: v.detach().cpu().contiguous() for k, v in state.model.state_dict().items()},
        "config": state.config.to_dict(), "step": state.step,
        "optimizer": state.optimizer.state_dict(), "scheduler": state.scheduler.state_dict(),
        "rng": {**rng_state(), "sampler": {"epoch": state.epoch,
                                            "batches_done": state.batches_done}},
        "metrics": dict(state.last_metrics), "elapsed_s": state.elapsed(),
        "world_size": state.dist.world_size, "torch_version": str(torch.__version__),
        **(extra or {}),
    }
    atomic_torch_save(ckpt, path)


def _optimizer_step(state: _TrainState, batch: dict[str, torch.Tensor]) -> dict[str, Any]:
    """Step 5a: one forward/backward/update on a batch; returns the step's values for the log.

    Returns:
        ``step``, ``epoch`` (epochs done, fractional), ``lr`` (of this step), ``loss``, the
        loss parts (``loss_<name>``) and ``psnr`` (this batch, "standard", clipped output).

    Raises:
        FloatingPointError: the loss is NaN or infinite.
    """
    rain = batch["rain"].to(state.device, non_blocking=True, memory_format=state.memory_format)
    clean = batch["clean"].to(state.device, non_blocking=True)
    mask = batch["mask"].to(state.device, non_blocking=True)
    with state.autocast():
        pred, attention = state.net(rain)
    pred = pred.float()
    attention = attention.float() if attention is not None else None
    total, parts = state.criterion(pred, clean, attention=attention, mask=mask)
    loss_value = float(total.detach())
    if not math.isfinite(loss_value):
        raise FloatingPointError(
            f"the training loss is {loss_value} at step {state.step + 1} (lr "
            f"{state.optimizer.param_groups[0]['lr']:g}); lower the learning rate or "
            "check the data")
    state.optimizer.zero_grad(set_to_none=True)
    total.backward()
    lr = state.optimizer.param_groups[0]["lr"]
    state.consistent = False
    state.optimizer.step()
    state.scheduler.step()
    state.step += 1
    state.batches_done += 1
    if state.batches_done >= state.data.steps_per_epoch:
        state.epoch, state.batches_done = state.epoch + 1, 0
    state.consistent = True

    with torch.no_grad():
        batch_psnr = float(psnr(pred.detach().clamp(0, 1), clean, convention="standard").mean())
    values = {"loss": loss_value}
    values.update({f"loss_{k}": float(v) for k, v in parts.items() if k != "total"})
    values["psnr"] = batch_psnr
    for k, v in values.items():
        state.window[k] = state.window.get(k, 0.0) + v
    state.window_n += 1
    epochs = round(state.epoch + state.batches_done / state.data.steps_per_epoch, 4)
    return {"step": state.step, "epoch": epochs, "lr": lr, **values}


def _validate_and_log(state: _TrainState, info: dict[str, Any]) -> None:
    """Step 5b: validate and write a log row, each when due.

    Rank 0 validates (adding ``val_psnr``/``val_ssim`` to ``info``); a log row holds the
    means over the window since the previous row.
    """
    config, step = state.config, state.step
    # Rank 0 validates; the other ranks wait in the next step's all-reduce.
    do_val = state.data.val_set is not None and (
        step == config.steps or (config.val_every and step % config.val_every == 0))
    if do_val:
        info["val_psnr"], info["val_ssim"] = _validate(state.model, state.data.val_set, config,
                                                       state.device, state.autocast)
    if state.log is None or not (do_val or step == config.steps or (
            config.log_every and step % config.log_every == 0)):
        return
    row = {"step": step, "epoch": info["epoch"], "lr": info["lr"],
           **{k: v / state.window_n for k, v in state.window.items()},
           "val_psnr": info.get("val_psnr", float("nan")),
           "val_ssim": info.get("val_ssim", float("nan")),
           "elapsed_s": round(state.elapsed(), 3)}
    state.log.write(row)
    state.last_metrics = {k: float(v) for k, v in row.items()}
    if state.writer is not None:
        for k, v in row.items():
            if k not in ("step", "epoch") and v == v:
                state.writer.add_scalar(f"train/{k}", v, step)
    state.window, state.window_n = {}, 0


def _periodic_checkpoint(state: _TrainState) -> None:
    """Step 5c: ``last.pt`` every ``checkpoint_every`` steps (all ranks wait for rank 0)."""
    every = state.config.checkpoint_every
    if every and state.step % every == 0 and state.step < state.config.steps:
        state.dist.barrier()
        if state.dist.main:
            _save_checkpoint(state, state.last_path)
        state.dist.barrier()


def _run_steps(state: _TrainState, bar: Any, stop: _StopFlag,
               callbacks: Sequence[Callable[[dict[str, Any]], None]]) -> None:
    """Step 5: epochs of steps until ``config.steps``, resuming mid-epoch where saved."""
    config, data = state.config, state.data
    while state.step < config.steps:
        data.sampler.set_epoch(state.epoch, skip=state.batches_done * data.loader.batch_size)
        if hasattr(data.train_set, "set_epoch"):
            data.train_set.set_epoch(state.epoch)
        data.loader_gen.manual_seed(config.seed + state.epoch)
        for batch in data.loader:
            info = _optimizer_step(state, batch)
            _validate_and_log(state, info)
            bar.update(1)
            state.running_psnr = (0.9 * state.running_psnr + 0.1 * info["psnr"]
                                  if state.running_psnr else info["psnr"])
            bar.set_postfix(loss=f"{info['loss']:.4f}", psnr=f"{state.running_psnr:.2f}")
            _periodic_checkpoint(state)
            for callback in callbacks:
                callback(dict(info))
            if _stop_requested(stop, state.dist):
                raise _Stop()
            if state.step >= config.steps:
                break


def _finish(state: _TrainState) -> TrainResult:
    """Step 6: ``final.pt`` and ``last.pt`` with each rank's parameter digest."""
    digest = param_digest(state.model)
    digests = [digest]
    if state.dist.enabled:
        digests = [None] * state.dist.world_size
        torch.distributed.all_gather_object(digests, digest)
    if state.dist.main:
        _save_checkpoint(state, state.last_path)
        _save_checkpoint(state, state.final_path, {"param_digests": digests})
    state.dist.barrier()
    return TrainResult(checkpoint=state.final_path, last_checkpoint=state.last_path,
                       log_path=state.log_path, step=state.step,
                       metrics={k: float(v) for k, v in state.last_metrics.items()},
                       elapsed_s=state.elapsed())


def train(config: TrainConfig, resume: bool = False, progress: bool = True,
          callbacks: Sequence[Callable[[dict[str, Any]], None]] | None = None,
          overwrite: bool = False) -> TrainResult:
    """Train a derainer as ``config`` says; write ``log.csv``, ``last.pt`` and ``final.pt``.

    Sampling is reproducible: epoch e shuffles with ``seed + e`` and the dataset's crops are
    keyed by ``set_epoch``; a resumed run restores every RNG and the position in the epoch, so
    N steps + resume + N steps gives the same weights as 2N steps (on CPU, ``num_workers=0``).

    The folder is checked first (`check_run`): a run already there is continued only with
    ``resume`` and replaced only with ``overwrite``.

    The run is a sequence of named steps on one `_TrainState`: `_open_data`, `_build_state`,
    `_restore` (resume), `_open_outputs`, `_run_steps` (`_optimizer_step`,
    `_validate_and_log`, `_periodic_checkpoint`), `_finish`.

    Args:
        config: the run's settings (see `TrainConfig`, `make_config`).
        resume: continue from ``out_dir/last.pt`` (its model and model_kwargs must match).
        progress: show a tqdm bar (rank 0) with the loss and the running PSNR.
        callbacks: called after every step on every rank with a dict of ``step``, ``epoch``
            (epochs done, fractional), ``lr`` (of this step), ``loss``, the loss parts
            (``loss_l1`` ...), ``psnr`` (this step's batch) and, at validation
            steps, ``val_psnr``/``val_ssim``. An exception raised by a callback (e.g.
            KeyboardInterrupt) stops training after ``last.pt`` is saved.
        overwrite: replace a run in ``out_dir`` (its `RUN_FILES`, removed when training
            starts); without it (or ``resume``) such a folder is refused.

    Returns:
        The `TrainResult`.

    Raises:
        InputError: missing train list, empty or too small data set, an unusable output
            folder, a run there without ``resume`` or ``overwrite``, ``resume`` without a
            checkpoint or with a mismatched one, CUDA requested but absent.
        FloatingPointError: the loss became NaN or infinite.
        KeyboardInterrupt: SIGINT (saved ``last.pt`` first).
        SystemExit: SIGTERM (status 143, saved ``last.pt`` first).
    """
    config = TrainConfig.from_dict(config.to_dict())        # private, validated copy
    ckpt = check_run(config, resume=resume, overwrite=overwrite)
    train_path = _check_list(config.train_list, "train")
    val_path = _check_list(config.val_list, "validation") if config.val_list else None

    dist = setup_distributed("cuda" if config.device == "cuda" or (
        config.device == "auto" and torch.cuda.is_available()) else "cpu")
    deterministic_before = (torch.are_deterministic_algorithms_enabled(),
                            torch.is_deterministic_algorithms_warn_only_enabled(),
                            torch.backends.cudnn.benchmark)
    stop = _StopFlag()
    state: _TrainState | None = None
    try:
        device = resolve_device(config.device, dist)
        if config.deterministic:
            torch.use_deterministic_algorithms(True, warn_only=True)
            torch.backends.cudnn.benchmark = False
        elif device.type == "cuda":
            torch.backends.cudnn.benchmark = True
        data = _open_data(config, train_path, val_path, dist, device.type == "cuda")
        state = _build_state(config, dist, device, data)
        if ckpt is not None:
            _restore(state, ckpt)
        _open_outputs(state, resumed=ckpt is not None)
        state.started = time.perf_counter()
        bar = tqdm(total=config.steps, initial=state.step,
                   disable=not (progress and dist.main), desc=f"train {config.model}",
                   dynamic_ncols=True)
        stop.install()
        state.model.train()
        try:
            _run_steps(state, bar, stop, callbacks or ())
        except (KeyboardInterrupt, _Stop) as exc:
            bar.close()
            if dist.main and state.consistent:
                _save_checkpoint(state, state.last_path)
            if isinstance(exc, _Stop) and stop.signum == signal.SIGTERM:
                raise SystemExit(128 + signal.SIGTERM) from None
            if isinstance(exc, _Stop):
                raise KeyboardInterrupt from None
            raise
        bar.close()
        return _finish(state)
    finally:
        stop.restore()
        if state is not None and state.writer is not None:
            state.writer.close()
        if config.deterministic:
            torch.use_deterministic_algorithms(deterministic_before[0],
                                               warn_only=deterministic_before[1])
        torch.backends.cudnn.benchmark = deterministic_before[2]
        if dist.owns_group and torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()


def _stop_requested(stop: _StopFlag, dist_info: DistInfo) -> bool:
    flag = stop.signum is not None
    if dist_info.enabled:                    # every rank stops at the same step
        t = torch.tensor([1.0 if flag else 0.0])
        if torch.distributed.get_backend() == "nccl":
            t = t.cuda()
        torch.distributed.all_reduce(t, op=torch.distributed.ReduceOp.MAX)
        flag = bool(t.item() > 0)
    return flag


# --------------------------------------------------------------------------------------------
# Command-line side
# --------------------------------------------------------------------------------------------
def _resolve_list(path: str | os.PathLike, split: str) -> Path:
    """A pair list file, or a dataset folder (ours: ``train.txt``; SPA-Data's layout)."""
    return Path(find_pair_list(path, split))


def train_command(profile: str = "quick", train_list: str | os.PathLike | None = None,
                  out_dir: str | os.PathLike | None = None, model: str = "spanet",
                  steps: int | None = None, resume: bool = False, device: str = "auto",
                  progress: bool = True, overwrite: bool = False, **overrides: Any
                  ) -> TrainResult:
    """The library side of ``spanet train``: a profile plus overrides, then `train`.

    Args:
        profile: a `TRAIN_PROFILES` name.
        train_list: a pair list, or a dataset folder (``train.txt``, or SPA-Data's layout).
        out_dir: run folder (default ``runs/<model>-<profile>``).
        model: a `MODEL_FACTORIES` name.
        steps: override the profile's number of steps.
        resume: continue from ``out_dir/last.pt``.
        device: "auto", "cpu" or "cuda".
        progress: show a progress bar.
        overwrite: replace a run already in ``out_dir`` (see `train`).
        **overrides: other `TrainConfig` fields (``batch_size``, ``lr``, ``val_list`` ...).

    Returns:
        The `TrainResult`.

    Raises:
        InputError: bad data paths, unknown profile/model/field, a value out of range, a run
            in ``out_dir`` without ``resume`` or ``overwrite`` (see `check_run`).
    """
    if train_list is None:
        raise InputError("no training data given (a pair list or a dataset folder)")
    values = dict(overrides)
    values["train_list"] = str(_resolve_list(train_list, "train"))
    if values.get("val_list") is not None:
        values["val_list"] = str(_resolve_list(values["val_list"], "test"))
    if steps is not None:
        values["steps"] = steps
    values["model"] = model
    values["device"] = device
    values["out_dir"] = str(out_dir) if out_dir is not None else f"runs/{model}-{profile}"
    try:
        config = make_config(profile, **values)
    except (ValueError, TypeError) as exc:
        raise InputError(str(exc)) from exc
    if steps is not None and "milestones" not in overrides:
        # Scale the profile's schedule to the new length.
        base = TRAIN_PROFILES[profile]
        config.milestones = scale_milestones(base["milestones"], base["steps"], steps)
        config.validate()
    return train(config, resume=resume, progress=progress, overwrite=overwrite)


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m spanetlib.training.train --config CONFIG.json [--resume]`` (torchrun too)."""
    parser = argparse.ArgumentParser(prog="python -m spanetlib.training.train",
                                     description="Train a derainer from a JSON TrainConfig.")
    parser.add_argument("--config", type=Path, required=True, help="JSON file of TrainConfig "
                        "fields (optionally 'profile' to start from one)")
    parser.add_argument("--resume", action="store_true", help="continue from OUT/last.pt")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace a run in OUT (its final.pt, last.pt and log.csv)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    args = parser.parse_args(argv)
    try:
        result = train(load_config(args.config), resume=args.resume,
                       progress=not args.no_progress, overwrite=args.overwrite)
    except (InputError, OSError) as exc:
        print(f"spanetlib.training.train: {exc}", file=sys.stderr)
        return 2
    if int(os.environ.get("RANK", "0")) == 0:
        print(result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
