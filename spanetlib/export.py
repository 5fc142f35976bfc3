"""TEMP shim (cut-B's branch only): cut-A's `spanetlib.export` re-exported from data.py.

Dropped at merge, where cut-A's real module replaces it.
"""

from __future__ import annotations

from .data import ExportSummary, export_dataset

__all__ = ["ExportSummary", "export_dataset"]
