"""Derainers: SPANet and its Table 4 variants, the baselines, and pretrained weights.

Every model's ``forward(x)`` takes B x 3 x H x W RGB in [0, 1] and returns
``(image, attention)``: the unclamped derained image and a B x 1 x H x W attention map, or
``None`` for models without one.
"""

from __future__ import annotations

from spanetlib.models.baselines import BASELINES, DDN, RESCAN, PReNet
from spanetlib.models.factory import MODEL_FACTORIES, build_model, count_parameters
from spanetlib.models.irnn import (
    IRNN,  # the function `irnn` stays in `spanetlib.models.irnn` (same name)
)
from spanetlib.models.pretrained import load_official_spanet, load_pretrained, read_checkpoint
from spanetlib.models.spanet import TABLE4_VARIANTS, SPANet

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
    "read_checkpoint",
]
