"""What is left of the notebooks' old helper module: the §3 dataset and the Table 1 videos.

cut-A moves these to `spanetlib.datasets` and `spanetlib.testsets`; this module is deleted at
the merge. Table 1 and its figures moved to `spanetlib.tables` and `spanetlib.figure_data`,
``prepare_dirs`` to `spanetlib.fileio.ensure_dirs`.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

__all__ = [
    "DatasetInfo",
    "Table1Video",
    "dataset_examples",
    "ensure_dataset",
    "make_table1_videos",
    "prepare_review",
]


@dataclass
class Table1Video:
    """A synthetic rain video with its ground truth, as used for Table 1."""

    name: str
    density: str
    frames: np.ndarray        # N x H x W x 3 uint8
    clean: np.ndarray         # H x W x 3 uint8
    rain_mask: np.ndarray     # N x H x W bool


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
