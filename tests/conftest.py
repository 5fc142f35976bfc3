"""Shared fixtures: tiny models, tiny synthetic rain scenes, one-thread torch, test helpers.

Also marks every item collected from a notebook (nbval) ``slow``: ``pytest -m "not slow"`` is
the quick inner loop, plain ``pytest`` still runs everything.
"""

from __future__ import annotations

import socket
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import numba
import numpy as np
import pytest
import torch
from torch import nn

from spanetlib.evaluation.metrics import psnr
from spanetlib.io.files import write_image
from spanetlib.io.pairs import write_pair_list
from spanetlib.io.video import scene_name
from spanetlib.models import build_model
from spanetlib.paper.datasets import DatasetInfo, ensure_dataset
from spanetlib.pipeline.review import ReviewSession
from spanetlib.synthesis.rain import CLIP_PRESETS, RainClip, make_rain_clip
from spanetlib.synthesis.testsets import build_layout_test_folders, build_synthetic_video_scenes


@pytest.hookimpl(tryfirst=True)  # before ``-m`` deselects by marker
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark the notebooks that nbval collects (``*.ipynb`` items) ``slow``.

    A session-wide hook: it sees the notebooks whenever this folder is collected too (plain
    ``pytest`` collects both); ``pytest -m "not slow" notebooks`` alone does not load it.
    """
    for item in items:
        if item.path.suffix == ".ipynb":
            item.add_marker(pytest.mark.slow)


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


@pytest.fixture
def tiny_weights(tmp_path: Path, save_checkpoint, tiny_spanet) -> Path:
    """A tiny random SPANet saved as a checkpoint (fast; its outputs are not rain-free)."""
    path = tmp_path / "tiny.pt"
    save_checkpoint(path, "spanet", tiny_spanet)
    return path


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
    forward passes many times slower.
    """
    saved = torch.get_num_threads(), numba.get_num_threads()
    torch.set_num_threads(1)
    numba.set_num_threads(1)
    yield
    torch.set_num_threads(saved[0])
    numba.set_num_threads(saved[1])


# --------------------------------------------------------------------------------------------
# Helpers shared by several test files
# --------------------------------------------------------------------------------------------
#: Machine epsilon of float32 (2 ** -23): the relative rounding error of one float32 operation
#: is at most half of it.
FLOAT32_EPS = float(torch.finfo(torch.float32).eps)


def _float32_atol(magnitude: float, roundings: int) -> float:
    """Absolute tolerance of a float32 result that passed ``roundings`` rounded steps in sequence.

    Each float32 operation on the longest path to a value (a convolution's sum, a bias or
    residual add, a gate's product) rounds with a relative error of at most eps / 2 of what it
    carries, and a sum's own accumulation error stays of the order of eps times the sum when its
    terms have random signs; these errors add up along the path. So ``eps * roundings *
    magnitude`` (``magnitude`` the largest value on the path, taken from the result) bounds how
    far a float32 result lands from the exact one, whatever the summation order of the CPU's
    kernels (AVX2, AVX-512, AMX, another machine that computed a stored reference). It is not a
    worst-case bound (that grows with the accumulation length), but no machine's setting either.
    """
    return FLOAT32_EPS * roundings * float(magnitude)


@pytest.fixture(scope="session")
def float32_atol() -> Callable[[float, int], float]:
    """``float32_atol(magnitude, roundings)``: a float32 result's tolerance (see `_float32_atol`).

    Compare a float64 recomputation (exact to ~1e-16) with a stored float32 reference, or this
    machine's float32 result with its float64 recomputation, each within this tolerance.
    """
    return _float32_atol


def _rain_clip(name: str, seed: int = 0, defaults: dict | None = None, **changes: Any
               ) -> RainClip:
    """The clip preset ``name``, its `ClipSpec` changed by ``defaults``, then by ``changes``."""
    return make_rain_clip(CLIP_PRESETS[name].replace(**{**(defaults or {}), **changes}), seed)


@pytest.fixture
def rain_clip(request: pytest.FixtureRequest) -> Callable[..., RainClip]:
    """``rain_clip(name, seed=0, **changes)``: a `CLIP_PRESETS` clip with changed fields.

    A test module's ``CLIP_SIZE`` dict (e.g. ``dict(size=(96, 128), n_frames=16)``), when it has
    one, is applied first, so the module's clips share a size unless a test changes it.
    """
    defaults = getattr(request.module, "CLIP_SIZE", None)

    def clip(name: str, seed: int = 0, **changes: Any) -> RainClip:
        return _rain_clip(name, seed, defaults, **changes)

    return clip


def _psnr255(a: np.ndarray, b: np.ndarray, mask: np.ndarray | None = None) -> float:
    """PSNR (dB) of two ``H x W x 3`` images in 0..255 (uint8 or float) by `metrics.psnr`.

    ``mask`` (``H x W`` bool) keeps only those pixels. Identical images give ``inf``.
    """
    a, b = (np.asarray(t, np.float64) / 255.0 for t in (a, b))
    if mask is not None:
        a, b = a[mask][:, None], b[mask][:, None]  # N x 1 x 3: the kept pixels as one column
    as_tensor = (torch.from_numpy(np.ascontiguousarray(t)).permute(2, 0, 1)[None] for t in (a, b))
    return float(psnr(*as_tensor)[0])


@pytest.fixture(scope="session")
def psnr255() -> Callable[..., float]:
    """``psnr255(a, b, mask=None)``: PSNR of images in 0..255 (see `_psnr255`)."""
    return _psnr255


def _free_port() -> int:
    """A TCP port on localhost that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def free_port() -> int:
    """A free TCP port on localhost (for a server or a torchrun rendezvous)."""
    return _free_port()


@pytest.fixture(scope="module")
def layout_folders(tmp_path_factory) -> dict[str, Path]:
    """Every layout of spanetlib.io.layouts, 2 pairs of 24 x 32 (Rain1400: 2 x 2 rain images)."""
    return build_layout_test_folders(tmp_path_factory.mktemp("layouts"), n_pairs=2,
                                     size=(24, 32))


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


# --------------------------------------------------------------------------- export scenes
@pytest.fixture(scope="module")
def scenes64(tmp_path_factory):
    """Three 64 x 96 scenes (sparse, normal, dense), 24 frames each; read only.

    64 x 96, not the 32 x 48 of ``tiny_scenes``: at 32 x 48 the camera-motion measurement can
    read a static scene as moving (too few samples for its model choice).
    """
    from spanetlib.synthesis.testsets import build_synthetic_video_scenes

    return build_synthetic_video_scenes(tmp_path_factory.mktemp("scenes64"), n_scenes=3,
                                        n_frames=24, size=(64, 96), seed=0)


@pytest.fixture
def quality_judge():
    """A factory of stand-ins for `scene_quality` (export tests need no real judgement)."""

    def make(min_frames):
        """A stand-in for `scene_quality`: accepts estimates of at least ``min_frames`` frames."""
        from spanetlib.pipeline.quality import SceneQuality

        def judge(estimate):
            ok = estimate.n_frames >= min_frames
            reasons = [] if ok else [f"fewer than {min_frames} frames"]
            return SceneQuality(score=1.0 if ok else 0.25, cues={"frames": estimate.n_frames},
                                accept=ok, reasons=reasons)

        return judge

    return make
