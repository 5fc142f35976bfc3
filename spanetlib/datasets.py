"""TEMP shim (cut-B's branch only): cut-A's `spanetlib.datasets` re-exported from experiments.py.

Dropped at merge, where cut-A's real module replaces it. ``DatasetInfo.describe`` is patched in
here so the notebooks can call it before cut-A's version lands.
"""

from __future__ import annotations

from .experiments import DatasetInfo, dataset_examples, ensure_dataset, prepare_review

__all__ = ["DatasetInfo", "dataset_examples", "ensure_dataset", "prepare_review"]


def _describe(self: DatasetInfo) -> str:
    """One line: scenes, train and test pairs (what the notebooks printed before)."""
    if " in " not in self.summary or ": " not in self.summary:
        return self.summary
    return self.summary.split(" in ")[0] + ": " + self.summary.split(": ", 1)[1]


DatasetInfo.describe = _describe  # type: ignore[attr-defined]
