"""TEMP shim (cut-B's branch only): cut-A's `spanetlib.testsets`, re-exported.

From data.py and experiments.py; dropped at merge, where cut-A's real module replaces it.
"""

from __future__ import annotations

from .data import (
    HELDOUT_RAIN_CONDITIONS,
    build_heldout_rain_set,
    build_synthetic_test_set,
    build_synthetic_video_scenes,
    scene_ground_truth,
)
from .experiments import Table1Video, make_table1_videos

__all__ = ["HELDOUT_RAIN_CONDITIONS", "Table1Video", "build_heldout_rain_set",
           "build_synthetic_test_set", "build_synthetic_video_scenes", "make_table1_videos",
           "scene_ground_truth"]
