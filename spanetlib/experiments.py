"""The computations behind the notebooks' tables (the notebooks only call these and display).

Each function here is one step of the paper's experiments, written so a test can run it on a
tiny input. Figures are drawn by `spanetlib.figures`; tables are written by
`spanetlib.evaluate.write_table`.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

__all__ = [
    "DatasetInfo",
    "Table1Video",
    "dataset_examples",
    "ensure_dataset",
    "luminance",
    "make_table1_videos",
    "pick_rainy_pixel",
    "prepare_dirs",
    "prepare_review",
    "run_table1",
    "table1_images",
    "table1_methods",
]


@dataclass
class Table1Video:
    """A synthetic rain video with its ground truth, as used for Table 1."""

    name: str
    density: str
    frames: np.ndarray        # N x H x W x 3 uint8
    clean: np.ndarray         # H x W x 3 uint8
    rain_mask: np.ndarray     # N x H x W bool


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


def make_table1_videos(n_videos: int, n_frames: int, size: tuple[int, int], seed: int = 0,
                       densities: Sequence[str] = ("sparse", "normal", "dense"),
                       ) -> list[Table1Video]:
    """Synthetic rain videos over scikit-image's photos, densities taken in turn.

    Args:
        n_videos: number of videos (the paper's Table 1 uses 10).
        n_frames: frames per video (the paper: 100).
        size: (H, W) of each frame.
        seed: base seed; video ``i`` uses ``seed + i``.
        densities: rain presets cycled over the videos.
    """
    from .rain import BACKGROUND_NAMES, load_background, make_rain_video

    if n_videos < 1 or n_frames < 2:
        raise ValueError(f"expected n_videos >= 1 and n_frames >= 2, got {n_videos}, {n_frames}")
    videos = []
    names = itertools.cycle(BACKGROUND_NAMES)
    dens = itertools.cycle(densities)
    for i in range(n_videos):
        name, density = next(names), next(dens)
        video = make_rain_video(load_background(name, size=size), n_frames, density=density,
                                seed=seed + i)
        videos.append(Table1Video(f"{i:02d}_{name}_{density}", density, video.frames,
                                  video.clean, video.rain_mask))
    return videos


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


@dataclass
class DatasetInfo:
    """Where the §3 dataset of a run lives (built by `ensure_dataset` or given as data_root)."""

    root: Path
    train_list: Path
    test_list: Path
    scenes_dir: Path | None       # synthetic source videos (None for a real data_root)
    synthetic: bool
    summary: str


def prepare_review(profile: str, work_dir: str | os.PathLike, seed: int = 0):
    """Synthetic rain videos of static scenes and a review session over them (§3).

    Writes the scenes under ``work_dir/scenes`` (kept when already there) and opens (or
    resumes) ``work_dir/review.json`` with every scene added.

    Returns:
        The `spanetlib.review.ReviewSession`.
    """
    from .data import build_synthetic_video_scenes
    from .profiles import DATASET_PARAMETERS
    from .review import ReviewSession

    if profile not in DATASET_PARAMETERS:
        raise ValueError(f"unknown profile {profile!r}; expected one of "
                         f"{tuple(DATASET_PARAMETERS)}")
    params = DATASET_PARAMETERS[profile]
    work = Path(work_dir)
    scenes = build_synthetic_video_scenes(work / "scenes", n_scenes=params["n_scenes"],
                                          n_frames=params["n_frames"], size=params["size"],
                                          densities=params["densities"], seed=seed)
    session = ReviewSession(work / "review.json")
    for scene in scenes:
        session.add_scene(scene.name, scene)
    return session


def dataset_examples(dataset: DatasetInfo, n: int = 3, split: str = "train"
                     ) -> list[dict[str, np.ndarray]]:
    """A few exported pairs with their rain mask M (Eq. 7's target), for display."""
    from .data import rain_mask, read_pair_list
    from .fileio import read_image

    pairs = read_pair_list(dataset.train_list if split == "train" else dataset.test_list)
    if not pairs:
        raise ValueError(f"the {split} list of {dataset.root} is empty")
    pick = np.linspace(0, len(pairs) - 1, min(n, len(pairs))).round().astype(int)
    rows = []
    for i in pick:
        rain, clean = read_image(pairs[i][0]), read_image(pairs[i][1])
        rows.append({"rain": rain, "clean (estimated)": clean,
                     "mask M": rain_mask(rain, clean).astype(np.float32)})
    return rows


def ensure_dataset(profile: str, work_dir: str | os.PathLike, data_root: str | os.PathLike
                   | None = None, seed: int = 0, review_mode: str = "auto",
                   review_file: str | os.PathLike | None = None, progress: bool = False
                   ) -> DatasetInfo:
    """The §3 training/test pairs of a run, built with the paper's pipeline when missing.

    With ``data_root`` (a folder in our export layout or the real SPA-Data layout with
    ``real_world.txt`` / ``real_test_1000.txt``), its lists are used as they are. Otherwise
    synthetic rain videos (`spanetlib.data.build_synthetic_video_scenes`, sizes from
    `spanetlib.profiles.DATASET_PARAMETERS`) are reviewed (`spanetlib.review.run_review`, mode
    ``review_mode``: "auto" or "file") and exported (`spanetlib.data.export_dataset`) under
    ``work_dir``. Every step resumes: a second call reuses what exists.

    Args:
        profile: a name from `spanetlib.profiles.PROFILE_NAMES` (dataset sizes).
        work_dir: folder for the scenes, the review file and the dataset.
        data_root: an existing dataset to use instead.
        seed: seed of the synthetic scenes and of the split.
        review_mode: "auto" (no-reference acceptance), "file" (replay ``review_file``) or
            "interactive" (export what a person accepted in the review widget so far).
        review_file: decisions to replay in mode "file".
        progress: show progress bars.
    """
    from .data import export_dataset, find_pair_list
    from .profiles import DATASET_PARAMETERS
    from .review import run_review

    if data_root is not None:
        root = Path(data_root)
        train, test = find_pair_list(root, "train"), find_pair_list(root, "test")
        return DatasetInfo(root, train, test, None, False, f"existing dataset at {root}")
    if review_mode not in ("auto", "file", "interactive"):
        raise ValueError(f"review_mode must be 'auto', 'file' or 'interactive', "
                         f"got {review_mode!r}")
    params = DATASET_PARAMETERS[profile]
    session = prepare_review(profile, work_dir, seed=seed)
    if review_mode != "interactive":  # interactive: the decisions a person made in the widget
        run_review(session, review_mode, review_file=review_file, progress=progress)
    scenes_dir = Path(work_dir) / "scenes"
    summary = export_dataset(scenes_dir, Path(work_dir) / "dataset", review_file=session.path,
                             crop=params["crop"], stride=params["stride"],
                             frames_per_video=params["frames_per_video"],
                             test_fraction=params["test_fraction"], seed=seed,
                             progress=progress)
    if summary.failed:
        raise RuntimeError(f"dataset export failed: {summary}")
    return DatasetInfo(summary.out, summary.train_list, summary.test_list, scenes_dir, True,
                       str(summary))
