"""The computations behind the notebooks' tables (the notebooks only call these and display).

Each function here is one step of the paper's experiments, written so a test can run it on a
tiny input. Figures are drawn by `spanetlib.figures`; tables are written by
`spanetlib.evaluate.write_table`.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

# Moved to spanetlib.datasets and spanetlib.testsets (issue 10); imported here only so the
# notebooks run until they call them there. This module is deleted when they do.
from .datasets import DatasetInfo, dataset_examples, ensure_dataset, prepare_review  # noqa: F401
from .testsets import Table1Video, make_table1_videos  # noqa: F401

__all__ = [
    "luminance",
    "pick_rainy_pixel",
    "prepare_dirs",
    "run_table1",
    "table1_images",
    "table1_methods",
]


def prepare_dirs(*folders: str | os.PathLike) -> tuple[Path, ...]:
    """Create the notebooks' output folders (results, figures, work) and return them as Paths."""
    paths = tuple(Path(folder) for folder in folders)
    for path in paths:
        path.mkdir(parents=True, exist_ok=True)
    return paths


def luminance(image: np.ndarray) -> np.ndarray:
    """BT.601 luma of RGB values (any leading shape, last axis 3), in the input's scale."""
    image = np.asarray(image, np.float32)
    return image[..., 0] * 0.299 + image[..., 1] * 0.587 + image[..., 2] * 0.114


def pick_rainy_pixel(rain_mask: np.ndarray, target_share: float = 0.5) -> tuple[int, int]:
    """The pixel whose share of rainy frames is closest to ``target_share`` (for Figure 2)."""
    share = np.asarray(rain_mask, bool).mean(axis=0)
    flat = int(np.argmin(np.abs(share - target_share)))
    return divmod(flat, share.shape[1])


def table1_methods(rpca_max_iter: int = 100) -> dict[str, Callable[[np.ndarray], np.ndarray]]:
    """Table 1's methods (`spanetlib.background.TABLE1_METHODS`) with the RPCA budget set."""
    from functools import partial

    from .background import TABLE1_METHODS, robust_pca_background

    methods = dict(TABLE1_METHODS)
    for name, method in methods.items():
        if method is robust_pca_background:
            methods[name] = partial(robust_pca_background, max_iter=rpca_max_iter)
    return methods


def table1_images(video: Table1Video,
                  methods: Mapping[str, Callable[[np.ndarray], np.ndarray]],
                  convention: str = "standard") -> tuple[dict[str, np.ndarray], dict[str, str]]:
    """Figure 4: one rain frame, every method's estimate and the truth, with PSNR captions."""
    from .metrics import psnr_ssim_np

    frame = video.frames[int(np.argmax(video.rain_mask.mean(axis=(1, 2))))]
    images = {"Rain frame": frame}
    for name, method in methods.items():
        images[name] = (np.clip(method(video.frames), 0, 255) / 255.0).astype(np.float32)
    captions = {name: f"{psnr_ssim_np(image, video.clean, convention)[0]:.2f} dB"
                for name, image in images.items()}
    images["Ground truth"] = video.clean
    return images, captions


def run_table1(videos: Sequence[Table1Video],
               methods: Mapping[str, Callable[[np.ndarray], np.ndarray]] | None = None,
               convention: str = "standard", max_input_frames: int | None = 20,
               progress: bool = False) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Table 1: PSNR/SSIM of the rain input, the baselines and ours against the true background.

    The "Rain input" row averages over frames of each video (up to ``max_input_frames``
    evenly spaced frames), then over videos; every other row scores one background estimate per
    video. The dataset mean is the mean of per-video values.

    Returns:
        (per_video, summary): long table (video, density, method, psnr, ssim) and the mean per
        method in the order input, ``methods``.
    """
    from tqdm.auto import tqdm

    from .background import TABLE1_METHODS
    from .metrics import psnr_ssim_np

    methods = dict(TABLE1_METHODS if methods is None else methods)
    rows = []
    for video in tqdm(videos, desc="Table 1", disable=not progress):
        n = len(video.frames)
        index = np.linspace(0, n - 1, min(n, max_input_frames or n)).round().astype(int)
        scores = [psnr_ssim_np(video.frames[i], video.clean, convention) for i in index]
        rows.append({"video": video.name, "density": video.density, "method": "Rain input",
                     "psnr": float(np.mean([s[0] for s in scores])),
                     "ssim": float(np.mean([s[1] for s in scores]))})
        for name, method in methods.items():
            estimate = np.clip(method(video.frames), 0, 255) / 255.0
            psnr, ssim = psnr_ssim_np(estimate.astype(np.float32), video.clean, convention)
            rows.append({"video": video.name, "density": video.density, "method": name,
                         "psnr": psnr, "ssim": ssim})
    per_video = pd.DataFrame(rows)
    order = ["Rain input", *methods]
    summary = (per_video.groupby("method", sort=False)[["psnr", "ssim"]].mean()
               .reindex(order).reset_index())
    return per_video, summary
