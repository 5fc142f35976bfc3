"""A run's files on disk: checkpoints written atomically, read back, and the run folder check.

`check_run` decides, before any heavy work, whether a run folder may be written (a run there
is resumed or replaced, never silently overwritten) and returns the checkpoint to resume.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

from spanetlib.io.errors import InputError
from spanetlib.io.files import atomic_write, check_output_folder, check_output_path
from spanetlib.models import read_checkpoint
from spanetlib.training.config import TrainConfig

__all__ = ["CHECKPOINT_FORMAT", "CHECKPOINT_VERSION", "RUN_FILES", "atomic_torch_save",
           "check_run", "load_checkpoint"]

CHECKPOINT_FORMAT = "spanetlib-train"
CHECKPOINT_VERSION = 1
# Config entries that must equal the checkpoint's when resuming (the rest may change, e.g.
# ``steps`` to train longer).
_RESUME_MUST_MATCH = ("model", "model_kwargs")
#: The files a run writes in its folder: what ``overwrite=True`` replaces, nothing else.
RUN_FILES = ("final.pt", "last.pt", "log.csv")


def atomic_torch_save(obj: Any, path: str | os.PathLike) -> Path:
    """``torch.save`` to ``path`` atomically (a checkpoint is never left half written)."""
    return atomic_write(path, lambda tmp: torch.save(obj, tmp))


def load_checkpoint(path: Path) -> dict[str, Any]:
    """Read a training checkpoint (``last.pt``, ``final.pt``) of this package.

    Raises:
        InputError: missing, unreadable or not a spanetlib training checkpoint.
    """
    if not path.is_file():
        raise InputError(f"nothing to resume: {path} not found")
    ckpt = read_checkpoint(path)
    if not isinstance(ckpt, dict) or ckpt.get("format") != CHECKPOINT_FORMAT:
        raise InputError(f"{path} is not a spanetlib training checkpoint")
    return ckpt


def _check_resume_config(config: TrainConfig, saved: dict[str, Any], path: Path) -> None:
    current = config.to_dict()
    for key in _RESUME_MUST_MATCH:
        if current.get(key) != saved.get(key):
            raise InputError(f"cannot resume from {path}: {key} is {saved.get(key)!r} in the "
                             f"checkpoint but {current.get(key)!r} now")


def check_run(config: TrainConfig, resume: bool = False, overwrite: bool = False
              ) -> dict[str, Any] | None:
    """Check a run's folder before any heavy work; return the checkpoint to resume from.

    The folder ``config.out_dir`` must be, or be creatable as, a writable folder. Without
    ``resume``, a folder that holds a run (any of `RUN_FILES`) is refused unless
    ``overwrite``; with ``resume``, ``last.pt`` must be a training checkpoint of the same model
    and model arguments. Nothing is read but ``last.pt``, nothing is written.

    Args:
        config: the run's settings.
        resume: continue from ``out_dir/last.pt``.
        overwrite: replace the run's own files (`RUN_FILES`; other files stay).

    Returns:
        The checkpoint (``resume``) or None.

    Raises:
        InputError: a bad folder, a run in the way, ``resume`` and ``overwrite`` together,
            nothing to resume, or a checkpoint that is unreadable or of another model.
    """
    out_dir = check_output_folder(config.out_dir)
    if resume and overwrite:
        raise InputError("resume and overwrite exclude each other: --resume continues the run "
                         f"in {out_dir}, --overwrite replaces it")
    if resume:
        last_path = out_dir / "last.pt"
        ckpt = load_checkpoint(last_path)
        _check_resume_config(config, ckpt["config"], last_path)
        return ckpt
    found = [name for name in RUN_FILES if os.path.lexists(out_dir / name)]
    if found and not overwrite:
        raise InputError(f"{out_dir} holds a training run ({', '.join(found)}); pass --resume "
                         "(resume=True) to continue it or --overwrite (overwrite=True) to "
                         "replace it")
    for name in found:  # only regular files (or links to them) are ever replaced
        check_output_path(out_dir / name, overwrite=True)
    return None
