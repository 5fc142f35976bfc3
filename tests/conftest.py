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


@pytest.fixture(scope="module")
def single_thread():
    """One torch and one numba thread for a test module (use via ``pytest.mark.usefixtures``).

    On a CPU shared with other jobs, two OpenMP runtimes spinning on 2 threads each make small
    forward passes up to 20x slower.
    """
    import numba
    import torch

    saved = torch.get_num_threads(), numba.get_num_threads()
    torch.set_num_threads(1)
    numba.set_num_threads(1)
    yield
    torch.set_num_threads(saved[0])
    numba.set_num_threads(saved[1])
