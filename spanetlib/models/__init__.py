"""Derainers: SPANet and its Table 4 variants, the baselines, and pretrained weights.

Every model's ``forward(x)`` takes B x 3 x H x W RGB in [0, 1] and returns
``(image, attention)``: the unclamped derained image and a B x 1 x H x W attention map, or
``None`` for models without one.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from torch import nn

from .baselines import BASELINES, DDN, RESCAN, PReNet, count_parameters
from .irnn import IRNN  # the function `irnn` stays in `spanetlib.models.irnn` (same name)
from .official import load_official_spanet, load_pretrained
from .spanet import TABLE4_VARIANTS, SPANet

__all__ = [
    "BASELINES",
    "DDN",
    "IRNN",
    "MODEL_FACTORIES",
    "PReNet",
    "RESCAN",
    "SPANet",
    "TABLE4_VARIANTS",
    "build_model",
    "count_parameters",
    "load_official_spanet",
    "load_pretrained",
]

# A plain dict of constructors (no registry): the names training configs and checkpoints use.
MODEL_FACTORIES: dict[str, Callable[..., nn.Module]] = {
    "spanet": SPANet,
    "ddn": DDN,
    "rescan": RESCAN,
    "prenet": PReNet,
}


def build_model(name: str, **kwargs: Any) -> nn.Module:
    """Build a derainer by name.

    Args:
        name: a key of `MODEL_FACTORIES` ("spanet", "ddn", "rescan", "prenet"), any case.
        **kwargs: constructor arguments (e.g. ``channels=32, sam_mode="shared"`` for SPANet).

    Returns:
        The model; its ``forward(x)`` returns ``(image, attention or None)``.

    Raises:
        ValueError: unknown name.
    """
    key = str(name).lower()
    if key not in MODEL_FACTORIES:
        raise ValueError(f"unknown model {name!r}; expected one of {sorted(MODEL_FACTORIES)}")
    return MODEL_FACTORIES[key](**kwargs)
