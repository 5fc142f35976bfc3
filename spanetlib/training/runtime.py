"""The training loop's machinery: epoch sampling, RNG state, distributed setup, the CSV log.

Everything here is what an exact resume needs to restore (the sampler's position, every
generator's state) or what several ranks must agree on (`DistInfo`, `param_digest`).
"""

from __future__ import annotations

import contextlib
import csv
import hashlib
import io
import math
import os
import random
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from spanetlib.io.files import atomic_write_text
from spanetlib.models.device import resolve_torch_device

__all__ = ["CsvLog", "DistInfo", "EpochSampler", "param_digest", "resolve_device", "rng_state",
           "seed_everything", "seed_worker", "set_rng_state", "setup_distributed"]


class EpochSampler(torch.utils.data.Sampler):
    """Shuffled indices per epoch, split across ranks, able to start mid-epoch.

    The permutation of epoch e comes from ``torch.Generator().manual_seed(seed + e)`` (as
    `torch.utils.data.DistributedSampler`, which is used for the split when distributed).
    """

    def __init__(self, size: int, seed: int, rank: int = 0, world_size: int = 1) -> None:
        self.size = size
        self.rank, self.world_size = rank, world_size
        if world_size > 1:
            # Same permutation as DistributedSampler(shuffle=True, drop_last=True, seed=seed).
            self._dist: torch.utils.data.DistributedSampler | None = (
                torch.utils.data.DistributedSampler(range(size), num_replicas=world_size,
                                                    rank=rank, shuffle=True, seed=seed,
                                                    drop_last=True))
        else:
            self._dist = None
        self.seed = seed
        self.epoch = 0
        self.skip = 0

    def set_epoch(self, epoch: int, skip: int = 0) -> None:
        """Start epoch ``epoch``, skipping its first ``skip`` indices (a resumed epoch)."""
        self.epoch = epoch
        self.skip = skip
        if self._dist is not None:
            self._dist.set_epoch(epoch)

    def _indices(self) -> list[int]:
        if self._dist is not None:
            return list(self._dist)
        gen = torch.Generator().manual_seed(self.seed + self.epoch)
        return torch.randperm(self.size, generator=gen).tolist()

    def __len__(self) -> int:
        return self.size // self.world_size if self._dist is not None else self.size

    def __iter__(self) -> Iterator[int]:
        indices = self._indices()[self.skip:]
        self.skip = 0
        return iter(indices)


def _numpy_state_to_torch(state: tuple) -> dict[str, Any]:
    name, keys, pos, has_gauss, cached = state
    return {"name": name, "keys": torch.from_numpy(np.asarray(keys, dtype=np.int64)),
            "pos": int(pos), "has_gauss": int(has_gauss), "cached_gaussian": float(cached)}


def _numpy_state_from_torch(data: dict[str, Any]) -> tuple:
    return (data["name"], data["keys"].numpy().astype(np.uint32), data["pos"],
            data["has_gauss"], data["cached_gaussian"])


def rng_state() -> dict[str, Any]:
    """Python, numpy, torch and CUDA generator states, as a checkpoint stores them."""
    cuda = ([s.clone() for s in torch.cuda.get_rng_state_all()]
            if torch.cuda.is_available() and torch.cuda.is_initialized() else [])
    return {"python": random.getstate(), "numpy": _numpy_state_to_torch(np.random.get_state()),
            "torch": torch.get_rng_state(), "cuda": cuda}


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore `rng_state`'s output (CUDA states only where CUDA is there)."""
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    np.random.set_state(_numpy_state_from_torch(state["numpy"]))
    torch.set_rng_state(state["torch"])
    if state.get("cuda") and torch.cuda.is_available():
        with contextlib.suppress(RuntimeError, IndexError):
            torch.cuda.set_rng_state_all(state["cuda"])


def seed_everything(seed: int) -> None:
    """Seed Python's, numpy's and torch's global generators."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def seed_worker(worker_id: int) -> None:
    """``DataLoader`` worker init: seed numpy and Python from the worker's torch seed."""
    seed = torch.initial_seed() % 2**32
    np.random.seed(seed)
    random.seed(seed)


@dataclass
class DistInfo:
    """This process's place in a distributed run (rank 0 of 1 when not distributed)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    owns_group: bool = False

    @property
    def enabled(self) -> bool:
        """Whether the run has more than one rank."""
        return self.world_size > 1

    @property
    def main(self) -> bool:
        """Whether this is rank 0 (the one that writes files)."""
        return self.rank == 0

    def barrier(self) -> None:
        """Wait for every rank (nothing when not distributed)."""
        if self.enabled:
            torch.distributed.barrier()


def setup_distributed(device_name: str) -> DistInfo:
    """Join the process group torchrun describes (``WORLD_SIZE`` > 1), else a single rank."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistInfo()
    import torch.distributed as dist

    owns = False
    if not dist.is_initialized():
        backend = "nccl" if device_name == "cuda" else "gloo"
        dist.init_process_group(backend=backend)
        owns = True
    return DistInfo(rank=dist.get_rank(), world_size=dist.get_world_size(),
                 local_rank=int(os.environ.get("LOCAL_RANK", "0")), owns_group=owns)


def resolve_device(name: str, dist_info: DistInfo) -> torch.device:
    """`spanetlib.models.device.resolve_torch_device`, with this process's GPU under DDP."""
    dev = resolve_torch_device(name)
    if dev.type != "cuda":
        return dev
    index = dist_info.local_rank if dist_info.enabled else (
        dev.index if dev.index is not None else torch.cuda.current_device())
    torch.cuda.set_device(index)
    return torch.device("cuda", index)


def param_digest(model: nn.Module) -> str:
    """SHA-1 of the model's state dict (equal on ranks that are in sync)."""
    sha = hashlib.sha1()
    for name, tensor in sorted(model.state_dict().items()):
        sha.update(name.encode())
        sha.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return sha.hexdigest()


# --------------------------------------------------------------------------------------------
# Log
# --------------------------------------------------------------------------------------------
_LOG_HEAD = ("step", "epoch", "lr", "loss")
_LOG_TAIL = ("psnr", "val_psnr", "val_ssim", "elapsed_s")


class CsvLog:
    """``log.csv``: rows written whole and flushed; the header comes with the first row."""

    def __init__(self, path: Path, resume_step: int | None) -> None:
        self.path = path
        self.columns: list[str] | None = None
        if resume_step is None:
            if path.exists():
                path.unlink()
            return
        if path.exists():
            self._truncate_after(resume_step)

    def _truncate_after(self, step: int) -> None:
        """Keep the header and the complete rows up to ``step`` (drops a torn last line)."""
        text = self.path.read_text(encoding="utf-8")
        lines = text.split("\n")
        if not text.endswith("\n"):
            lines = lines[:-1]                      # torn last line (killed mid-write)
        lines = [ln for ln in lines if ln]
        if not lines:
            return
        self.columns = next(csv.reader([lines[0]]))
        kept = [lines[0]]
        for line in lines[1:]:
            row = next(csv.reader([line]))
            with contextlib.suppress(ValueError, IndexError):
                if len(row) == len(self.columns) and int(row[0]) <= step:
                    kept.append(line)
        atomic_write_text(self.path, "\n".join(kept) + "\n")

    def write(self, row: dict[str, Any]) -> None:
        """Append one row (the first fixes the columns) in one call, flushed."""
        if self.columns is None:
            parts = [k for k in row if k not in _LOG_HEAD and k not in _LOG_TAIL]
            self.columns = [*_LOG_HEAD, *parts, *_LOG_TAIL]
        buf = io.StringIO()
        writer = csv.writer(buf, lineterminator="\n")
        new = not self.path.exists() or self.path.stat().st_size == 0
        if new:
            writer.writerow(self.columns)
        writer.writerow([_fmt(row.get(c, "")) for c in self.columns])
        with open(self.path, "a", encoding="utf-8", newline="") as fh:
            fh.write(buf.getvalue())
            fh.flush()


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return "" if math.isnan(value) else f"{value:.6g}"
    return str(value)

