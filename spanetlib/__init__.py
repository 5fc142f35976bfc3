"""spanetlib: SPANet (CVPR 2019) rain removal, real rain/clean pairs from videos, reproduction.

Sub-packages, lowest layer first (a layer imports only those before it):

- `io`: files, videos, test-folder layouts, pair lists;
- `pipeline`: paper §3, rain videos to pairs; `synthesis`: synthetic rain with its truth;
- `models`: SPANet (§4), its variants, baselines, pretrained weights;
- `derain`: photos and clips; `evaluation`: metrics and scoring; `training`: the trainer;
- `paper`: the notebooks' experiments, tables and figures;
- `cli`: the ``spanet`` command.

Sub-packages are imported on first use, so ``import spanetlib`` stays cheap.
"""

from importlib import import_module
from typing import Any

__version__ = "0.1.0"

SUBPACKAGES = ("derain", "evaluation", "io", "models", "paper", "pipeline", "synthesis",
               "training")

__all__ = sorted(("SUBPACKAGES", "__version__", *SUBPACKAGES))


def __getattr__(name: str) -> Any:
    if name in SUBPACKAGES:
        return import_module(f"{__name__}.{name}")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
