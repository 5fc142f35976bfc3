"""The §3 dataset the notebooks share: synthetic rain videos, reviewed and exported, or real data.

Notebook 01 builds it (`prepare_review`, `spanetlib.pipeline.review_widget.run_review`,
`ensure_dataset`); notebooks 02-06 call `ensure_dataset` with the same arguments and reuse what
exists. With ``data_root`` a real dataset (our export layout or SPA-Data's) is used as it is.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from spanetlib.io.files import atomic_write_json, read_image
from spanetlib.io.pairs import find_pair_list, read_pair_list
from spanetlib.paper.profiles import DATASET_PARAMETERS
from spanetlib.pipeline.export import ExportSummary, export_dataset
from spanetlib.pipeline.review import REVIEW_MODES, ReviewSession, review_batch
from spanetlib.synthesis.testsets import build_single_image_train_set, build_synthetic_video_scenes
from spanetlib.training.data import rain_mask

__all__ = ["DatasetInfo", "dataset_examples", "ensure_dataset", "ensure_single_image_set",
           "prepare_review"]

def _count(k: int, noun: str) -> str:
    return f"{k} {noun}" if k == 1 else f"{k} {noun}s"


@dataclass
class DatasetInfo:
    """Where the §3 dataset of a run lives (built by `ensure_dataset` or given as data_root).

    Attributes:
        root: the dataset folder.
        train_list: the training pair list.
        test_list: the test pair list.
        scenes_dir: the synthetic source videos (None for a given ``data_root``).
        synthetic: built from synthetic videos (their true backgrounds are known).
        summary: what built it (`spanetlib.pipeline.export.ExportSummary` as text), or where it is.
        export: the export's summary (None for a given ``data_root``).

    Example:
        >>> import tempfile
        >>> from spanetlib.io.pairs import write_pair_list
        >>> with tempfile.TemporaryDirectory() as tmp:
        ...     pairs = [(Path(tmp, "rain.png"), Path(tmp, "clean.png"))]
        ...     info = DatasetInfo(Path(tmp), write_pair_list(Path(tmp, "train.txt"), pairs * 3),
        ...                        write_pair_list(Path(tmp, "test.txt"), pairs), None, False,
        ...                        "existing dataset")
        ...     info.describe().endswith(": 3 train pairs, 1 test pair")
        True
    """

    root: Path
    train_list: Path
    test_list: Path
    scenes_dir: Path | None
    synthetic: bool
    summary: str
    export: ExportSummary | None = None

    def describe(self) -> str:
        """The dataset in one line, for notebooks: scenes and pairs per split.

        An exported dataset: ``"K scenes: A train pairs from B scenes, C test pairs from D
        scenes"`` (`spanetlib.pipeline.export.ExportSummary.describe`); a given one: ``"existing
        dataset at ROOT: A train pairs, C test pairs"`` (its lists are read to count them).
        """
        if self.export is not None:
            return self.export.describe()
        n_train, n_test = len(read_pair_list(self.train_list)), len(read_pair_list(self.test_list))
        return (f"existing dataset at {self.root}: {_count(n_train, 'train pair')}, "
                f"{_count(n_test, 'test pair')}")


def prepare_review(profile: str, work_dir: str | os.PathLike, seed: int = 0) -> ReviewSession:
    """Synthetic rain videos of static scenes and a review session over them (§3).

    Writes the scenes under ``work_dir/scenes`` (kept when already there) and opens (or
    resumes) ``work_dir/review.json`` with every scene added.

    Args:
        profile: a name from `spanetlib.paper.profiles.PROFILE_NAMES` (scene count and size).
        work_dir: folder for the scenes and the review file.
        seed: seed of the synthetic scenes.

    Returns:
        The `spanetlib.pipeline.review.ReviewSession`.

    Raises:
        ValueError: an unknown profile.
    """
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
    """A few exported pairs with their rain mask M (Eq. 7's target), for display.

    Args:
        dataset: the dataset.
        n: pairs to show, evenly spaced over the list.
        split: ``"train"`` or ``"test"``.

    Returns:
        One dict per pair: ``"rain"`` and ``"clean (estimated)"`` (H x W x 3 uint8 RGB) and
        ``"mask M"`` (H x W float32 in {0, 1}).

    Raises:
        ValueError: the list is empty.
    """
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
    synthetic rain videos (`spanetlib.synthesis.testsets.build_synthetic_video_scenes`, sizes from
    `spanetlib.paper.profiles.DATASET_PARAMETERS`) are reviewed
    (`spanetlib.pipeline.review.review_batch`, mode ``review_mode``: "auto" or "file") and exported
    (`spanetlib.pipeline.export.export_dataset`) under ``work_dir``. Every step resumes: a second
    call reuses what exists. The export is this work folder's cache: one made with other settings
    (an older version of the pipeline) is replaced deliberately; the review file, the human
    decisions, is kept.

    Args:
        profile: a name from `spanetlib.paper.profiles.PROFILE_NAMES` (dataset sizes).
        work_dir: folder for the scenes, the review file and the dataset.
        data_root: an existing dataset to use instead.
        seed: seed of the synthetic scenes and of the split.
        review_mode: "auto" (no-reference acceptance), "file" (replay ``review_file``) or
            "interactive" (export what a person accepted in the review widget so far).
        review_file: decisions to replay in mode "file".
        progress: show progress bars.

    Returns:
        The `DatasetInfo`.

    Raises:
        ValueError: an unknown ``review_mode`` or profile.
        InputError: ``data_root`` holds no pair lists.
        RuntimeError: a scene failed to export.
    """
    if data_root is not None:
        root = Path(data_root)
        train, test = find_pair_list(root, "train"), find_pair_list(root, "test")
        return DatasetInfo(root, train, test, None, False, f"existing dataset at {root}")
    if review_mode not in REVIEW_MODES:
        raise ValueError(f"review_mode must be 'auto', 'file' or 'interactive', "
                         f"got {review_mode!r}")
    session = prepare_review(profile, work_dir, seed=seed)
    params = DATASET_PARAMETERS[profile]
    if review_mode != "interactive":  # interactive: the decisions a person made in the widget
        review_batch(session, review_mode, review_file=review_file, progress=progress)
    scenes_dir = Path(work_dir) / "scenes"
    summary = export_dataset(scenes_dir, Path(work_dir) / "dataset", review_file=session.path,
                             crop=params["crop"], stride=params["stride"],
                             frames_per_video=params["frames_per_video"],
                             test_fraction=params["test_fraction"], seed=seed,
                             overwrite=True, progress=progress)
    if summary.failed:
        raise RuntimeError(f"dataset export failed: {summary}")
    return DatasetInfo(summary.out, summary.train_list, summary.test_list, scenes_dir, True,
                       str(summary), summary)


def ensure_single_image_set(dataset: DatasetInfo, work_dir: str | os.PathLike, seed: int = 0
                            ) -> DatasetInfo:
    """The single-image synthetic training set beside a §3 dataset, built once.

    Table 2's "original" rows are trained on it:
    `spanetlib.synthesis.testsets.build_single_image_train_set` adds single-image synthetic rain to
    the clean images of ``dataset.train_list`` (the role of Rain100H / Rain1400), in
    ``work_dir/single_image``; it is kept while ``params.json`` there records the same source list
    (path and content hash) and seed.

    Args:
        dataset: the §3 dataset (its training list gives the clean images).
        work_dir: the run's work folder.
        seed: seed of the rain.

    Returns:
        A `DatasetInfo` with the new training list and the §3 test list (validation and
        scoring stay on the §3 test set), not synthetic-scene based.

    Raises:
        InputError: a missing or empty training list.
    """
    folder = Path(work_dir) / "single_image"
    source = Path(dataset.train_list)
    params = {"source": str(source.absolute()),
              "source_sha256": hashlib.sha256(source.read_bytes()).hexdigest()
              if source.is_file() else None,
              "seed": int(seed)}
    train_list = folder / "train.txt"
    try:
        old = json.loads((folder / "params.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        old = None
    if old != params or not train_list.is_file():
        build_single_image_train_set(source, folder, seed=seed)
        atomic_write_json(folder / "params.json", params)
    n = len(read_pair_list(train_list))
    return replace(dataset, root=folder, train_list=train_list, scenes_dir=None, synthetic=True,
                   summary=f"single-image synthetic rain on the {n} clean images of "
                   f"{source}", export=None)
