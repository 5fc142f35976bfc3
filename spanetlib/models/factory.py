"""Building derainers by name, and counting their parameters.

`MODEL_FACTORIES` is the plain dict of constructors (no registry) whose names training configs
and checkpoints store; `build_model` looks one up; `count_parameters` is the package's one
parameter counter.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from torch import nn

from spanetlib.models.baselines import DDN, RESCAN, PReNet
from spanetlib.models.spanet import SPANet

__all__ = ["MODEL_FACTORIES", "build_model", "count_parameters"]

#: Model name (as stored in training configs and checkpoints) -> constructor.
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

    Example:
        >>> net = build_model("DDN", channels=4, num_blocks=1)
        >>> type(net).__name__, count_parameters(net)
        ('DDN', 549)
    """
    key = str(name).lower()
    if key not in MODEL_FACTORIES:
        raise ValueError(f"unknown model {name!r}; expected one of {sorted(MODEL_FACTORIES)}")
    return MODEL_FACTORIES[key](**kwargs)


def count_parameters(model: nn.Module, trainable_only: bool = True) -> int:
    """Number of scalar parameters of ``model``.

    Args:
        model: any module.
        trainable_only: count only parameters with ``requires_grad`` (the default); False
            counts every parameter, used or not (as the parameter counts of Table 4).

    Returns:
        The total number of parameter entries.

    Example:
        >>> layer = nn.Linear(2, 3)
        >>> count_parameters(layer)
        9
        >>> _ = layer.bias.requires_grad_(False)
        >>> count_parameters(layer), count_parameters(layer, trainable_only=False)
        (6, 9)
    """
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)
