"""Shared fixtures: tiny models, tiny synthetic rain scenes, one-thread torch."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import numba
import numpy as np
import pytest
import torch
from torch import nn

from spanetlib.io.files import write_image
from spanetlib.io.pairs import write_pair_list
from spanetlib.io.video import scene_name
from spanetlib.models import build_model
from spanetlib.paper.datasets import DatasetInfo, ensure_dataset
from spanetlib.pipeline.review import ReviewSession
from spanetlib.synthesis.testsets import build_synthetic_video_scenes


class Identity(nn.Module):
    """A "derainer" that returns its input (so it must score exactly like the rain input)."""

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, None]:
        return x, None


@pytest.fixture
def identity() -> nn.Module:
    """A derainer that returns its input, with no attention map."""
    return Identity()


@pytest.fixture
def tiny_spanet() -> dict:
    """Constructor arguments of a SPANet small enough to train a few steps in a second.

    4 channels, one residual block before and after two spatial attentive blocks of one
    SARB each; the plain-PyTorch IRNN (no JIT compile). A fresh dict per test.
    """
    return {"channels": 4, "num_pre_blocks": 1, "blocks_per_sab": 1, "num_post_blocks": 1,
            "num_sabs": 2, "irnn_backend": "reference"}


@pytest.fixture
def save_checkpoint() -> Callable[[Path, str, dict], nn.Module]:
    """``save_checkpoint(path, model, kwargs)``: a seeded model saved as a training checkpoint.

    Only ``model`` and ``config`` (``model``, ``model_kwargs``) are written, what
    `spanetlib.models.load_pretrained` needs; returns the model in eval mode.
    """

    def save(path: Path, model: str, kwargs: dict) -> nn.Module:
        torch.manual_seed(0)
        net = build_model(model, **kwargs)
        torch.save({"model": net.state_dict(),
                    "config": {"model": model, "model_kwargs": kwargs}}, path)
        return net.eval()

    return save



@pytest.fixture(scope="session")
def tiny_scenes(tmp_path_factory) -> list[Path]:
    """Three 32 x 48 frame-folder scenes (sparse, normal, dense), 24 frames each; read only."""
    return build_synthetic_video_scenes(tmp_path_factory.mktemp("scenes"), n_scenes=3,
                                        n_frames=24, size=(32, 48), seed=0)


@pytest.fixture(scope="session")
def smoke_dataset(tmp_path_factory) -> DatasetInfo:
    """The §3 dataset of the smoke profile (synthetic scenes, reviewed, exported); read only."""
    return ensure_dataset("smoke", tmp_path_factory.mktemp("smoke_work"), seed=0)


@pytest.fixture
def real_dataset(smoke_dataset: DatasetInfo) -> DatasetInfo:
    """The smoke dataset seen as real data: the same lists, no scenes and no true background."""
    return DatasetInfo(smoke_dataset.root, smoke_dataset.train_list, smoke_dataset.test_list,
                       None, False, "")


@pytest.fixture(scope="module")
def single_thread():
    """One torch and one numba thread for a test module (use via ``pytest.mark.usefixtures``).

    On a CPU shared with other jobs, two OpenMP runtimes spinning on 2 threads each make small
    forward passes up to 20x slower.
    """
    saved = torch.get_num_threads(), numba.get_num_threads()
    torch.set_num_threads(1)
    numba.set_num_threads(1)
    yield
    torch.set_num_threads(saved[0])
    numba.set_num_threads(saved[1])


# --------------------------------------------------------------------------------------------
# Data fixtures (owned by the data modules: data, export, testsets)
# --------------------------------------------------------------------------------------------
def _write_pairs(list_path: Path, images: Iterable[tuple[np.ndarray, np.ndarray]],
                 rain_name: str = "rain/{i}.png", clean_name: str = "clean/{i}.png") -> Path:
    """Write (rain, clean) image pairs beside ``list_path`` and their pair list; returns it.

    Pair ``i`` is written to ``rain_name.format(i=i)`` and ``clean_name.format(i=i)``,
    relative to the list's folder (float images in [0, 1] or uint8, as `write_image` takes).
    """
    root = Path(list_path).parent
    pairs = [(write_image(root / rain_name.format(i=i), rain),
              write_image(root / clean_name.format(i=i), clean))
             for i, (rain, clean) in enumerate(images)]
    return write_pair_list(list_path, pairs)


@pytest.fixture(scope="session")
def write_pairs() -> Callable[..., Path]:
    """The one pair-list writer of the tests: ``write_pairs(list_path, [(rain, clean), ...])``.

    Optional ``rain_name`` / ``clean_name`` format strings with ``{i}`` name the files
    (default ``rain/{i}.png`` and ``clean/{i}.png`` beside the list).
    """
    return _write_pairs


def _start_review(folder: Path, scenes: Iterable[Path], **add_scene: Any) -> ReviewSession:
    """A review session at ``folder/review.json`` with every scene added under its name."""
    session = ReviewSession(Path(folder) / "review.json")
    for path in scenes:
        session.add_scene(scene_name(path), path, **add_scene)
    return session


@pytest.fixture(scope="session")
def start_review() -> Callable[..., ReviewSession]:
    """``start_review(folder, scenes, **add_scene_kwargs)``: a new or resumed ReviewSession."""
    return _start_review
