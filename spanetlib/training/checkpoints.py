"""Checkpoints on disk: written atomically so that a run is never left with half a file."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

from spanetlib.io.files import atomic_write

__all__ = ["atomic_torch_save"]


def atomic_torch_save(obj: Any, path: str | os.PathLike) -> Path:
    """``torch.save`` to ``path`` atomically (a checkpoint is never left half written)."""
    return atomic_write(path, lambda tmp: torch.save(obj, tmp))
