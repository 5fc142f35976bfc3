"""spanetlib: SPANet (CVPR 2019) rain removal, real rain/clean pairs from videos, reproduction.

Submodules are imported on first use (``spanetlib.background``, ``spanetlib.models`` ...), so
``import spanetlib`` stays cheap and the CLI starts quickly.
"""

from importlib import import_module
from typing import Any

__version__ = "0.1.0"

_SUBMODULES = (
    "alignment", "background", "claims", "clip_estimate", "data", "datasets", "deviations",
    "device", "evaluate", "export", "field", "figure_data", "figures", "fileio", "inference",
    "layouts", "losses", "metrics", "models", "profiles", "rain", "readme", "reproduce",
    "review", "review_widget", "runs", "selection", "tables", "testsets", "train", "video",
    "video_derain",
)

__all__ = sorted(("__version__", *_SUBMODULES))


def __getattr__(name: str) -> Any:
    if name in _SUBMODULES:
        return import_module(f"{__name__}.{name}")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
