"""Training settings: `TrainConfig`, the profiles (paper, quick, smoke) and config files.

`make_config` builds a config from a profile plus overrides; `load_config` reads the JSON file
``torchrun -m spanetlib.training.train --config`` takes.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from spanetlib.io.errors import InputError
from spanetlib.models import MODEL_FACTORIES

__all__ = ["TRAIN_PROFILES", "TrainConfig", "load_config", "make_config", "scale_milestones"]


@dataclass
class TrainConfig:
    """Everything a training run depends on (stored in every checkpoint).

    Attributes:
        model: a `MODEL_FACTORIES` name.
        model_kwargs: constructor arguments of the model.
        train_list: pair list (``rain_path clean_path`` per line, SPA-Data format).
        val_list: optional pair list scored every ``val_every`` steps.
        crop: side of the random training crops (RandomResizedCrop, as the authors).
        scale: area range of the random crops (fraction of the image).
        ratio: aspect-ratio range of the random crops.
        flip: random horizontal flips.
        batch_size: pairs per step over all ranks.
        steps: optimizer steps in all.
        lr: initial learning rate of Adam.
        milestones: steps at which the learning rate is multiplied by ``gamma``.
        gamma: the learning-rate factor at each milestone.
        betas: Adam betas.
        l1_weight: weight of the L1 loss.
        ssim_weight: weight of the (1 - SSIM) loss.
        attention_weight: weight of the attention loss MSE(A_1, M) (Eq. 7); 0 is Table 4's
            "no attention loss".
        mask_threshold: the rain mask M is 1 where |rain - clean| exceeds this in any channel.
        attention_balanced: average the attention MSE over rain and rain-free pixels
            separately (`spanetlib.training.losses.attention_loss` with ``balanced=True``); False is
            the paper's plain mean. Needed when M marks few pixels (a thresholded mask on
            sparse rain), where the plain mean drives A_1 to 0 everywhere.
        seed: seeds model initialisation, crops and shuffling.
        num_workers: DataLoader worker processes.
        checkpoint_every: steps between ``last.pt`` saves (0: only at the end).
        val_every: steps between validations (0: only at the end, when ``val_list`` is set).
        log_every: steps between log rows.
        out_dir: folder of ``log.csv``, ``last.pt`` and ``final.pt``.
        device: "auto" (CUDA when available), "cpu" or "cuda".
        amp: bf16 autocast of the forward pass on CUDA.
        amp_cpu: bf16 autocast of the forward pass on a CPU too, where the CPU has fast bf16
            (AMX or AVX512-BF16: `spanetlib.models.device.cpu_has_fast_bf16`; elsewhere the run
            stays in float32) and the model's convolutions pass the bf16 gradient check
            (`spanetlib.training.train.checked_cpu_bf16`: else NCHW memory, else float32, with
            a warning). Faster at
            bf16 precision (`benchmarks/bench_training_step.py` measures by how much). Off by
            default.
        channels_last: channels-last memory format (on CUDA and on the CPU, where oneDNN's
            convolutions and the numba IRNN are both faster in NHWC).
        max_val_images: the first N pairs of ``val_list`` are scored.
        val_crop: centre crop side for validation (None: full images).
        deterministic: ask PyTorch for deterministic algorithms during the run.
    """

    model: str = "spanet"
    model_kwargs: dict[str, Any] = field(default_factory=dict)
    train_list: str | None = None
    val_list: str | None = None
    crop: int = 256
    scale: tuple[float, float] = (0.8, 1.0)
    ratio: tuple[float, float] = (3 / 4, 4 / 3)
    flip: bool = True
    batch_size: int = 32
    steps: int = 60_000
    lr: float = 5e-3
    milestones: tuple[int, ...] = (5_000, 15_000, 30_000, 50_000)
    gamma: float = 0.1
    betas: tuple[float, float] = (0.9, 0.999)
    l1_weight: float = 1.0
    ssim_weight: float = 1.0
    attention_weight: float = 1.0
    mask_threshold: float = 0.0
    attention_balanced: bool = False
    seed: int = 2019
    num_workers: int = 0
    checkpoint_every: int = 1_000
    val_every: int = 1_000
    log_every: int = 50
    out_dir: str = "runs/spanet"
    device: str = "auto"
    amp: bool = True
    amp_cpu: bool = False
    channels_last: bool = True
    max_val_images: int = 50
    val_crop: int | None = None
    deterministic: bool = False

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Check types and ranges; normalise paths to strings and sequences to tuples.

        Raises:
            ValueError: a value out of range (the message says what was expected).
            TypeError: ``model_kwargs`` is not a dict.
        """
        if not isinstance(self.model_kwargs, dict):
            raise TypeError(f"model_kwargs: expected a dict, got {type(self.model_kwargs)}")
        self.model = str(self.model).lower()
        if self.model not in MODEL_FACTORIES:
            raise ValueError(f"unknown model {self.model!r}; expected one of "
                             f"{sorted(MODEL_FACTORIES)}")
        for name in ("train_list", "val_list"):
            value = getattr(self, name)
            if value is not None:
                setattr(self, name, os.fspath(value))
        self.out_dir = os.fspath(self.out_dir)
        self.scale = tuple(float(v) for v in self.scale)
        self.ratio = tuple(float(v) for v in self.ratio)
        self.betas = tuple(float(v) for v in self.betas)
        self.milestones = tuple(int(v) for v in self.milestones)
        for name in ("crop", "batch_size", "steps", "max_val_images"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"{name}: expected a positive integer, got {getattr(self, name)}")
        for name in ("num_workers", "checkpoint_every", "val_every", "log_every"):
            if int(getattr(self, name)) < 0:
                raise ValueError(f"{name}: expected an integer >= 0, got {getattr(self, name)}")
        if self.val_crop is not None and int(self.val_crop) < 1:
            raise ValueError(f"val_crop: expected None or a positive integer, got {self.val_crop}")
        if not self.lr > 0:
            raise ValueError(f"lr: expected > 0, got {self.lr}")
        if not 0 < self.gamma <= 1:
            raise ValueError(f"gamma: expected 0 < gamma <= 1, got {self.gamma}")
        if list(self.milestones) != sorted(self.milestones):
            raise ValueError(f"milestones: expected increasing steps, got {self.milestones}")
        for name in ("l1_weight", "ssim_weight", "attention_weight", "mask_threshold"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name}: expected >= 0, got {getattr(self, name)}")
        if not isinstance(self.attention_balanced, bool):
            raise ValueError("attention_balanced: expected true or false, got "
                             f"{self.attention_balanced!r}")
        if self.device not in ("auto", "cpu", "cuda"):
            raise ValueError(f"device: expected 'auto', 'cpu' or 'cuda', got {self.device!r}")

    def to_dict(self) -> dict[str, Any]:
        """Plain dict (JSON-able: tuples become lists)."""
        out = dataclasses.asdict(self)
        for key, value in out.items():
            if isinstance(value, tuple):
                out[key] = list(value)
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainConfig:
        """Build a config from `to_dict`'s output (or any subset of the fields).

        Raises:
            ValueError: unknown keys (the message lists them and the valid ones).
        """
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            raise ValueError(f"unknown TrainConfig field(s) {unknown}; expected some of "
                             f"{sorted(names)}")
        return cls(**copy.deepcopy(dict(data)))


# The paper (Sec. 5.1): Adam, lr 5e-3 divided by 10 at 5K, 15K, 30K and 50K steps, 60K steps,
# batch 32, 256 x 256 crops, L1 + (1 - SSIM) + attention loss with weights 1, seed 2019.
# NOTE: the authors' released checkpoint (spanet_official_latest.pth) was trained otherwise:
# lr 5e-4, batch 16, one drop (x0.1) at 30K steps, 40K steps in all.
# ``quick``: the paper's SPANet (32 channels, numba IRNN) on 48 x 48 crops, batch 4, bf16
# autocast where the CPU has fast bf16 (``amp_cpu``); the notebooks' step budget is
# `spanetlib.paper.profiles` ``train_steps``. Small crops and batches keep the runs of notebooks
# 02-06 within the hour on a 2-core CPU (`benchmarks/bench_training_step.py` times a step).
# Adam at 1e-3 (5e-3 is for batch 32 and 60K steps), x0.1 at 2/3 and 11/12 of the run.
# ``smoke``: seconds (8 channels, 32 x 32 crops, batch 2, 10 steps), for CI and notebooks.
# ``mask_threshold``: ``paper`` keeps the authors' 0 ("any difference" between the rain and the
# clean patch). ``quick`` and ``smoke`` train on our synthetic videos, whose sensor noise makes
# "any difference" mark about 99 % of pixels (M would teach the attention nothing), so they
# use 10/255, which leaves about 8 %: the streaks.
# ``attention_balanced``: with such a sparse M the paper's plain MSE (``paper`` keeps it)
# drives the attention to 0 everywhere (why: `spanetlib.training.losses`); ``quick`` and
# ``smoke`` weight rain and rain-free pixels equally.
TRAIN_PROFILES: dict[str, dict[str, Any]] = {
    "paper": {
        "model_kwargs": {"spanet": {"channels": 32}},
        "crop": 256, "batch_size": 32, "steps": 60_000, "lr": 5e-3,
        "milestones": (5_000, 15_000, 30_000, 50_000), "gamma": 0.1, "betas": (0.9, 0.999),
        "l1_weight": 1.0, "ssim_weight": 1.0, "attention_weight": 1.0, "seed": 2019,
        "num_workers": 4, "checkpoint_every": 1_000, "val_every": 2_000, "log_every": 50,
        "max_val_images": 100, "val_crop": None, "amp": True, "channels_last": True,
    },
    "quick": {
        "model_kwargs": {"spanet": {"channels": 32}},
        "crop": 48, "batch_size": 4, "steps": 600, "lr": 1e-3,
        "milestones": (400, 550), "gamma": 0.1, "betas": (0.9, 0.999),
        "l1_weight": 1.0, "ssim_weight": 1.0, "attention_weight": 1.0, "seed": 2019,
        "mask_threshold": 10 / 255, "attention_balanced": True,
        "num_workers": 0, "checkpoint_every": 100, "val_every": 200, "log_every": 10,
        "max_val_images": 20, "val_crop": 128, "amp": True, "amp_cpu": True,
        "channels_last": True,
    },
    "smoke": {
        "model_kwargs": {"spanet": {"channels": 8}},
        "crop": 32, "batch_size": 2, "steps": 10, "lr": 1e-3,
        "milestones": (8,), "gamma": 0.1, "betas": (0.9, 0.999),
        "l1_weight": 1.0, "ssim_weight": 1.0, "attention_weight": 1.0, "seed": 0,
        "mask_threshold": 10 / 255, "attention_balanced": True,
        "num_workers": 0, "checkpoint_every": 5, "val_every": 10, "log_every": 1,
        "max_val_images": 4, "val_crop": 64, "amp": False, "channels_last": False,
    },
}


def scale_milestones(milestones: Sequence[int], base_steps: int, steps: int
                     ) -> tuple[int, ...]:
    """Learning-rate milestones of a schedule of ``base_steps`` moved to a run of ``steps``.

    Each milestone keeps its share of the run (rounded, at least step 1), so a shorter or
    longer run drops the learning rate at the same fractions of its length.

    Args:
        milestones: steps of the original schedule (increasing).
        base_steps: length of the original schedule (> 0).
        steps: length of the new run (> 0).

    Returns:
        The new milestones.

    Raises:
        ValueError: ``base_steps`` or ``steps`` is not positive.

    Example:
        >>> scale_milestones((400, 550), 600, 300)      # the quick profile at half length
        (200, 275)
        >>> scale_milestones((8,), 10, 3)
        (2,)
    """
    if base_steps < 1 or steps < 1:
        raise ValueError(f"expected positive step counts, got base_steps={base_steps}, "
                         f"steps={steps}")
    return tuple(max(1, round(m * steps / base_steps)) for m in milestones)


def make_config(profile: str = "quick", **overrides: Any) -> TrainConfig:
    """A `TrainConfig` from a profile of `TRAIN_PROFILES` plus overrides.

    The profile's ``model_kwargs`` are per model name (``{"spanet": {...}}``); the chosen
    model's entry is used unless ``model_kwargs`` is overridden.

    Args:
        profile: "paper", "quick" or "smoke".
        **overrides: any `TrainConfig` field, e.g. ``steps=100, train_list="data/train.txt"``.

    Returns:
        The config.

    Raises:
        ValueError: unknown profile or field, or a value out of range.
    """
    if profile not in TRAIN_PROFILES:
        raise ValueError(f"unknown profile {profile!r}; expected one of {sorted(TRAIN_PROFILES)}")
    values = copy.deepcopy(TRAIN_PROFILES[profile])
    per_model = values.pop("model_kwargs", {})
    values.update(overrides)
    values.setdefault("model", "spanet")
    if "model_kwargs" not in overrides:
        values["model_kwargs"] = copy.deepcopy(per_model.get(str(values["model"]).lower(), {}))
    return TrainConfig.from_dict(values)


def load_config(path: str | os.PathLike) -> TrainConfig:
    """Read a `TrainConfig` from a JSON file (a dict of fields; ``"profile"`` picks a base).

    Raises:
        InputError: missing or malformed file, unknown fields.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(f"config file not found: {path}")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise InputError(f"config file {path} is not valid JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise InputError(f"config file {path}: expected a JSON object, got {type(data).__name__}")
    try:
        profile = data.pop("profile", None)
        return make_config(profile, **data) if profile else TrainConfig.from_dict(data)
    except (ValueError, TypeError) as exc:
        raise InputError(f"config file {path}: {exc}") from exc

