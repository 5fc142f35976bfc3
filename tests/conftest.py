"""Shared fixtures: tiny synthetic rain scenes (frame folders with known backgrounds)."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def tiny_scenes(tmp_path_factory) -> list[Path]:
    """Three 32 x 48 frame-folder scenes (sparse, normal, dense), 24 frames each; read only."""
    from spanetlib.data import build_synthetic_video_scenes

    return build_synthetic_video_scenes(tmp_path_factory.mktemp("scenes"), n_scenes=3,
                                        n_frames=24, size=(32, 48), seed=0)
