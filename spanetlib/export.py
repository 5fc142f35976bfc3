"""Dataset export (``spanet build-dataset``): reviewed rain videos to SPA-Data style patch pairs.

`export_dataset` is the entry point. It runs as named steps on one `ExportPlan`, the state of
the run, so each step can be read, tested and extended alone:

1. `plan_export`: the scenes of ``SRC``, which of them are exported with which clean image
   (the review's decisions, or auto-accept), one `SceneJob` each, and the split by scene;
2. `check_output`: ``OUT`` must be new, empty, or an export of the same settings (resumed);
   an export of other settings is replaced only with ``overwrite`` (its own files removed);
3. `resume_exported`: scenes whose ``done.json`` records the same `SceneJob.key` are kept;
4. `export_scenes`: `export_scene` for each remaining job (in worker processes with
   ``workers > 1``), each outcome recorded in the manifest as it arrives (`record_outcome`);
5. `write_lists` and `write_manifest`: ``train.txt``, ``test.txt`` and ``manifest.json``,
   rebuilt from the per-scene records at every run.

`ExportSettings` holds what decides the content of an export (recorded in the manifest);
`ExportSummary` is what a run reports.
"""

from __future__ import annotations

import concurrent.futures as cf
import hashlib
import json
import multiprocessing
import os
import re
import time
import warnings
from collections.abc import Sequence
from concurrent.futures.process import BrokenProcessPool
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from .background import estimate_background
from .data import write_pair_list
from .fileio import (
    InputError,
    atomic_write_json,
    check_output_folder,
    read_image,
    write_image,
)
from .review import ReviewSession
from .selection import FRAME_COUNTS, GUESS_FRAMES, guess_density
from .video import count_frames, list_scenes, read_sequence, scene_name

__all__ = [
    "ExportPlan",
    "ExportSettings",
    "ExportSummary",
    "SceneJob",
    "SceneOutcome",
    "check_output",
    "export_dataset",
    "export_scene",
    "export_scenes",
    "plan_export",
    "record_outcome",
    "resume_exported",
    "write_lists",
    "write_manifest",
]

_MANIFEST_FORMAT = "spanetlib-export"
_MANIFEST_VERSION = 1


def _check_positive(name: str, value: int | None, allow_none: bool = True) -> None:
    if value is None and allow_none:
        return
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive int{' or None' if allow_none else ''}, "
                         f"got {value!r}")


def _scenes(k: int) -> str:
    return f"{k} scene" if k == 1 else f"{k} scenes"


# --------------------------------------------------------------------------------------------
# Settings, jobs, state, summary
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ExportSettings:
    """What decides the content of an export; the manifest records them as ``params``.

    Attributes:
        crop: patch size in pixels, or None for whole images.
        stride: patch step; None means ``crop`` (no overlap) and is resolved on construction.
        frames_per_video: rain frames K paired with the clean image (None: the N used).
        test_fraction: share of scenes in the test list, in [0, 1).
        seed: seed of the train/test split.
        auto_accept: export scenes without a decision too (see `export_dataset`).
        density: density of auto-accepted scenes (None: guess per scene).

    Raises:
        ValueError: a bad ``crop``, ``stride``, ``frames_per_video``, ``test_fraction`` or
            ``density``.

    Example:
        >>> ExportSettings(crop=64).stride
        64
        >>> ExportSettings(test_fraction=1.0)
        Traceback (most recent call last):
        ...
        ValueError: test_fraction must be in [0, 1), got 1.0
    """

    crop: int | None = 256
    stride: int | None = None
    frames_per_video: int | None = None
    test_fraction: float = 0.1
    seed: int = 0
    auto_accept: bool = False
    density: str | None = None

    def __post_init__(self) -> None:
        _check_positive("crop", self.crop)
        _check_positive("stride", self.stride)
        _check_positive("frames_per_video", self.frames_per_video)
        if not 0.0 <= self.test_fraction < 1.0:
            raise ValueError(f"test_fraction must be in [0, 1), got {self.test_fraction}")
        if self.density is not None and self.density not in FRAME_COUNTS:
            raise ValueError(f"density must be one of {tuple(FRAME_COUNTS)} or None, "
                             f"got {self.density!r}")
        if self.stride is None:  # frozen: the default is resolved once, here
            object.__setattr__(self, "stride", self.crop)


@dataclass
class SceneJob:
    """One scene to export: its source and the clean image it is paired with.

    Attributes:
        scene: the scene's name (`spanetlib.video.scene_name`), its folder under ``out``.
        source: the scene's video file or frame folder (absolute).
        out: the dataset folder (absolute).
        settings: the export's settings.
        decision: ``"accepted"`` (in the review) or ``"auto-accepted"``.
        start: first frame used.
        clean_image: the clean image saved at accept time (accepted scenes).
        n: frames the clean image was estimated from (accepted scenes; auto-accepted: None,
            ``FRAME_COUNTS`` of the density).
        density: the review's density, or the one for auto-accepted scenes (None: guess).
        percentile: p of the accepted estimate (Eq. 4).
        frames_available: frames from ``start`` on (None: counted before the export).
        accepted_at: the time of the accept in the review.
    """

    scene: str
    source: Path
    out: Path
    settings: ExportSettings
    decision: str
    start: int = 0
    clean_image: Path | None = None
    n: int | None = None
    density: str | None = None
    percentile: float | None = None
    frames_available: int | None = None
    accepted_at: str | None = None

    @property
    def key(self) -> dict[str, Any]:
        """What a scene's ``done.json`` must record for a later run to keep it."""
        return {"crop": self.settings.crop, "stride": self.settings.stride,
                "frames_per_video": self.settings.frames_per_video, "n": self.n,
                "start": self.start, "decision": self.decision,
                "accepted_at": self.accepted_at}


@dataclass
class SceneOutcome:
    """What exporting one scene gave: its ``done.json`` record, or why it failed."""

    scene: str
    record: dict[str, Any] | None = None
    error: str | None = None
    warnings: list[tuple[str, type[Warning]]] = field(default_factory=list)


@dataclass
class ExportSummary:
    """What `export_dataset` did.

    Attributes:
        out: the dataset folder.
        train_list: ``OUT/train.txt``.
        test_list: ``OUT/test.txt``.
        manifest: ``OUT/manifest.json``.
        exported: scenes exported by this run.
        resumed: scenes already exported by an earlier run (kept as they were).
        not_exported: scene -> why it was left out (not accepted in the review, ...).
        failed: scene -> error message; the other scenes are exported regardless.
        renamed: scene -> its name in ``SRC``, for names made safe by
            `spanetlib.video.scene_name` (whitespace and other characters a pair list or a
            file name cannot hold); also in the manifest, as ``original_name``.
        train_scenes: scenes in ``train.txt``.
        test_scenes: scenes in ``test.txt``.
        n_train_pairs: lines of ``train.txt``.
        n_test_pairs: lines of ``test.txt``.

    Example:
        >>> summary = ExportSummary(Path("out"), Path("out/train.txt"), Path("out/test.txt"),
        ...                         Path("out/manifest.json"), exported=["a"], resumed=["b"],
        ...                         train_scenes=["a"], test_scenes=["b"], n_train_pairs=12,
        ...                         n_test_pairs=6)
        >>> print(summary)  # doctest: +NORMALIZE_WHITESPACE
        2 scenes in out (1 exported now, 1 already done): 12 train pairs from 1 scene,
        6 test pairs from 1 scene
        >>> summary.describe()
        '2 scenes: 12 train pairs from 1 scene, 6 test pairs from 1 scene'
    """

    out: Path
    train_list: Path
    test_list: Path
    manifest: Path
    exported: list[str] = field(default_factory=list)
    resumed: list[str] = field(default_factory=list)
    not_exported: dict[str, str] = field(default_factory=dict)
    failed: dict[str, str] = field(default_factory=dict)
    renamed: dict[str, str] = field(default_factory=dict)
    train_scenes: list[str] = field(default_factory=list)
    test_scenes: list[str] = field(default_factory=list)
    n_train_pairs: int = 0
    n_test_pairs: int = 0

    def _contents(self) -> str:
        text = (f"{self.n_train_pairs} train pairs from {_scenes(len(self.train_scenes))}, "
                f"{self.n_test_pairs} test pairs from {_scenes(len(self.test_scenes))}")
        if self.not_exported:
            text += f"; {len(self.not_exported)} not exported (see manifest.json)"
        if self.renamed:
            text += (f"; {_scenes(len(self.renamed))} renamed to names a pair list can hold "
                     "(see manifest.json)")
        if self.failed:
            text += f"; {len(self.failed)} FAILED: " + "; ".join(
                f"{name}: {msg}" for name, msg in self.failed.items())
        return text

    def describe(self) -> str:
        """The dataset in one line: scenes and pairs per split, without folder or run counts."""
        return f"{_scenes(len(self.train_scenes) + len(self.test_scenes))}: {self._contents()}"

    def __str__(self) -> str:
        return (f"{_scenes(len(self.train_scenes) + len(self.test_scenes))} in {self.out} "
                f"({len(self.exported)} exported now, {len(self.resumed)} already done): "
                f"{self._contents()}")


@dataclass
class ExportPlan:
    """The state of one export run: its scenes, its split and what is done so far.

    Attributes:
        src: the folder of scenes.
        out: the dataset folder.
        review_file: the review whose decisions are exported (None: auto-accept only).
        settings: the export's settings.
        jobs: the scenes to export, in ``src`` order.
        test_scenes: names of the jobs that go to the test list.
        summary: the run's `ExportSummary`, filled in by the steps.
        records: scene -> its ``done.json`` record (exported by this run or an earlier one).
        left_out: scene -> the manifest entry of a scene not exported (not selected, failed).
    """

    src: Path
    out: Path
    review_file: Path | None
    settings: ExportSettings
    jobs: list[SceneJob]
    test_scenes: set[str]
    summary: ExportSummary
    records: dict[str, dict[str, Any]] = field(default_factory=dict)
    left_out: dict[str, dict[str, Any]] = field(default_factory=dict)


# --------------------------------------------------------------------------------------------
# Step 1: plan
# --------------------------------------------------------------------------------------------
def _split_rank(seed: int, name: str) -> str:
    return hashlib.sha256(f"{seed}:{name}".encode()).hexdigest()


def _split_scenes(names: Sequence[str], test_fraction: float, seed: int) -> set[str]:
    """Test scenes: the ``round(fraction * n)`` scenes ranked first by a seeded hash.

    At least one test scene when there are >= 2 scenes and ``test_fraction > 0``, and at least
    one training scene. A scene keeps its side when other scenes are added, as far as the
    counts allow.
    """
    n = len(names)
    if n < 2 or test_fraction <= 0:
        return set()
    n_test = min(max(1, round(test_fraction * n)), n - 1)
    return set(sorted(names, key=lambda s: _split_rank(seed, s))[:n_test])


def _scene_job(name: str, source: Path, out: Path, session: ReviewSession | None,
               settings: ExportSettings) -> SceneJob | str:
    """The scene's job, or why it is not exported."""
    entry = session.scene(name) if session is not None and name in session else None
    if entry is not None and entry["status"] == "accepted":
        return SceneJob(name, source, out, settings, "accepted", start=entry["start"],
                        clean_image=session.clean_image_path(name), n=entry["n"],
                        density=entry["density"], percentile=entry["percentile"],
                        frames_available=entry["frames_available"],
                        accepted_at=entry["history"][-1]["timestamp"])
    if settings.auto_accept and (entry is None or entry["status"] == "pending"):
        return SceneJob(name, source, out, settings, "auto-accepted", density=settings.density)
    if entry is not None:
        return f"review status {entry['status']}"
    return "not in the review file (use --auto-accept to export it)"


def plan_export(src: str | os.PathLike, out: str | os.PathLike,
                review_file: str | os.PathLike | None, settings: ExportSettings) -> ExportPlan:
    """Step 1: which scenes of ``src`` are exported, with which clean image, on which side.

    Reads the review file, writes nothing. See `export_dataset` for the rules.

    Returns:
        The plan: its jobs, test scenes, and the scenes left out (in ``summary.not_exported``
        and ``left_out``).

    Raises:
        InputError: ``src`` or ``review_file`` is missing, ``src`` holds no scenes, two of its
            scenes give the same name (``a.mp4`` and a folder ``a``), or neither
            ``review_file`` nor ``settings.auto_accept`` is given.
    """
    src, out = Path(src), Path(out)
    if not src.is_dir():
        raise InputError(f"scene folder not found: {src}")
    if review_file is None and not settings.auto_accept:
        raise InputError("nothing to export without a review: pass a review file "
                         "(--review-file F: export the scenes accepted there) or --auto-accept "
                         "(estimate every scene unreviewed, N from its guessed density)")
    session = None
    if review_file is not None:
        review_file = Path(review_file)
        if not review_file.is_file():
            raise InputError(f"review file not found: {review_file}")
        session = ReviewSession(review_file)
    out_resolved = out.resolve()
    scenes = [p for p in list_scenes(src) if p.resolve() != out_resolved]
    if not scenes:
        raise InputError(f"no scenes (video files or frame folders) in {src}")

    summary = ExportSummary(out=out, train_list=out / "train.txt", test_list=out / "test.txt",
                            manifest=out / "manifest.json")
    plan = ExportPlan(src, out, review_file, settings, [], set(), summary)
    seen: dict[str, Path] = {}
    for path in scenes:
        name, source = scene_name(path), path.resolve()
        if name in seen:
            raise InputError(f"{seen[name].name} and {path.name} in {src} both give the scene "
                             f"name {name!r}; rename one of them")
        seen[name] = path
        original = path.stem if path.is_file() else path.name
        if original != name:
            summary.renamed[name] = original
        job = _scene_job(name, source, out_resolved, session, settings)
        if isinstance(job, SceneJob):
            plan.jobs.append(job)
        else:
            summary.not_exported[name] = job
            plan.left_out[name] = {"status": "not-exported", "reason": job,
                                   "source": str(source)}
    if session is not None:
        for name in session.scenes:
            if name not in seen:
                summary.not_exported[name] = f"in the review file but not in {src}"
    plan.test_scenes = _split_scenes([job.scene for job in plan.jobs], settings.test_fraction,
                                     settings.seed)
    return plan


# --------------------------------------------------------------------------------------------
# Step 2: the output folder
# --------------------------------------------------------------------------------------------
#: The settings an existing export must share to be resumed (with ``src``). The decisions
#: (the review file, auto-accept) may change: new accepts are added, changed ones redone.
_RESUME_SETTINGS = ("crop", "stride", "frames_per_video", "test_fraction", "seed", "density")


def _temp_or(name: str) -> re.Pattern[str]:
    """``name`` (a regex), or a temporary file `spanetlib.fileio.atomic_write` made for it."""
    return re.compile(rf"^(?:{name}|\.(?:{name})\.[0-9a-z_]+\.tmp\.[a-z]+)$")


# The files an export writes, per folder (relative to OUT / a scene folder); only these are
# ever removed.
_TOP_FILES = _temp_or(r"train\.txt|test\.txt|manifest\.json")
_SCENE_FILES = {".": _temp_or(r"clean\.png|done\.json"), "clean": _temp_or(r"\d+_\d+\.png"),
                "rain": _temp_or(r"\d+_\d+_\d+\.png")}


def _remove_matching(folder: Path, pattern: re.Pattern[str]) -> int:
    """Delete the regular files of ``folder`` whose names match; returns how many others stay."""
    kept = 0
    with os.scandir(folder) as entries:
        for entry in entries:
            if entry.is_file(follow_symlinks=False) and pattern.match(entry.name):
                os.unlink(entry.path)
            else:
                kept += 1
    return kept


def _remove_scene_files(scene_dir: Path) -> None:
    """Delete what `export_scene` writes in ``scene_dir``, and the folders left empty.

    Other files (a user's notes) stay; a symbolic link is never followed.
    """
    if scene_dir.is_symlink() or not scene_dir.is_dir():
        return
    for sub in ("clean", "rain"):
        folder = scene_dir / sub
        if not folder.is_symlink() and folder.is_dir() \
                and _remove_matching(folder, _SCENE_FILES[sub]) == 0:
            folder.rmdir()
    if _remove_matching(scene_dir, _SCENE_FILES["."]) == 0:
        scene_dir.rmdir()


def _is_plain_name(name: Any) -> bool:
    return (isinstance(name, str) and name not in ("", ".", "..")
            and not any(c in name for c in "/\\\0"))


def _remove_export(out: Path, manifest: dict[str, Any]) -> None:
    """Delete the files of the export ``manifest`` describes: its scenes' and its lists."""
    for name in manifest.get("scenes", {}):
        if _is_plain_name(name):
            _remove_scene_files(out / name)
    _remove_matching(out, _TOP_FILES)


def _read_manifest(out: Path) -> dict[str, Any] | None:
    """The manifest of an export in ``out``, None when there is none; refuses a foreign one."""
    path = out / "manifest.json"
    if not path.exists():
        return None
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        manifest = None
    if not isinstance(manifest, dict) or manifest.get("format") != _MANIFEST_FORMAT \
            or not isinstance(manifest.get("params"), dict) \
            or not isinstance(manifest.get("scenes"), dict):
        raise InputError(f"{path} is not a spanetlib export manifest; choose another output "
                         "folder")
    return manifest


def _differences(plan: ExportPlan, manifest: dict[str, Any]) -> list[str]:
    old, new = manifest["params"], asdict(plan.settings)
    diffs = [f"{key.replace('_', '-')} {old.get(key)!r} -> {new[key]!r}"
             for key in _RESUME_SETTINGS if old.get(key) != new[key]]
    src = str(plan.src.resolve())
    if manifest.get("src") != src:
        diffs.append(f"source {manifest.get('src')} -> {src}")
    return diffs


def check_output(plan: ExportPlan, overwrite: bool = False) -> None:
    """Step 2: make sure writing the export into ``plan.out`` replaces nothing unasked.

    ``OUT`` may be new, an empty folder (hidden files aside), or an export made with the same
    settings (``crop``, ``stride``, ``frames_per_video``, ``test_fraction``, ``seed``,
    ``density`` and ``src``), which is then resumed. An export made with other settings is
    refused, naming the differences, unless ``overwrite``: then its files are deleted (only
    those an export writes, found by name in the folders its manifest lists, never through a
    symbolic link; anything else, a user's notes, stays) and the export starts afresh. A
    folder holding other files is never used. Writes nothing otherwise.

    Raises:
        InputError: one line saying why ``OUT`` cannot be used and what to do.
    """
    out = check_output_folder(plan.out)
    if not out.exists():
        return
    manifest = _read_manifest(out)
    if manifest is None:
        if any(not p.name.startswith(".") for p in out.iterdir()):
            raise InputError(f"{out} is not empty and holds no spanetlib export (no "
                             "manifest.json); choose a new or empty folder")
        return
    diffs = _differences(plan, manifest)
    if not diffs:
        return
    if not overwrite:
        raise InputError(f"{out} was built with other settings ({', '.join(diffs)}); pass "
                         "--overwrite (overwrite=True) to replace it, or choose another "
                         "output folder")
    _remove_export(out, manifest)


# --------------------------------------------------------------------------------------------
# Step 3: resume
# --------------------------------------------------------------------------------------------
def _done_marker(scene_dir: Path) -> dict[str, Any] | None:
    try:
        done = json.loads((scene_dir / "done.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return done if isinstance(done, dict) and isinstance(done.get("pairs"), list) else None


def resume_exported(plan: ExportPlan) -> list[SceneJob]:
    """Step 3: keep the scenes an earlier run finished with the same `SceneJob.key`.

    Returns:
        The jobs still to do, in plan order.
    """
    todo = []
    for job in plan.jobs:
        done = _done_marker(plan.out / job.scene)
        if done is not None and done.get("key") == job.key:
            plan.records[job.scene] = done
            plan.summary.resumed.append(job.scene)
        else:
            todo.append(job)
    return todo


# --------------------------------------------------------------------------------------------
# Step 4: export the scenes
# --------------------------------------------------------------------------------------------
@dataclass
class _SceneImages:
    """A scene's clean image and the rain frames paired with it."""

    clean: np.ndarray   # H x W x 3 uint8
    frames: np.ndarray  # K x H x W x 3 uint8
    n: int
    density: str
    percentile: float | None


def _accepted_images(job: SceneJob) -> _SceneImages:
    """The clean image accepted in the review and the first K frames."""
    if job.clean_image is None:
        raise InputError(f"the review records {job.scene} as accepted without a clean image")
    clean = read_image(job.clean_image)
    count = min(job.settings.frames_per_video or job.n, job.frames_available)
    frames = read_sequence(job.source, start=job.start, count=count, min_frames=1)
    return _SceneImages(clean, frames, job.n, job.density, job.percentile)


def _auto_accepted_images(job: SceneJob) -> _SceneImages:
    """Auto-accept: density guessed (or given), N = ``FRAME_COUNTS``, estimate of N frames."""
    available, per_video = job.frames_available, job.settings.frames_per_video
    density = job.density
    if density is None:
        density = guess_density(read_sequence(job.source, start=job.start, min_frames=1,
                                              count=min(GUESS_FRAMES, available)))
    n = min(FRAME_COUNTS[density], available)
    count = min(max(n, per_video or n), available)
    frames = read_sequence(job.source, start=job.start, count=count, min_frames=1)
    n = min(n, len(frames))  # the container's frame count can be too high
    estimate = estimate_background(frames[:n])
    clean = np.clip(np.rint(estimate.image), 0, 255).astype(np.uint8)
    return _SceneImages(clean, frames[:per_video or n], n, density, float(estimate.percentile))


def _patch_origins(size: int, crop: int | None, stride: int) -> list[int]:
    """Patch starts along one axis: a regular grid plus the last full patch at the border."""
    if crop is None or size <= crop:
        return [0]
    starts = list(range(0, size - crop + 1, stride))
    if starts[-1] != size - crop:
        starts.append(size - crop)
    return starts


def _write_patches(job: SceneJob, images: _SceneImages) -> tuple[list[list[str]], int]:
    """Write ``clean.png``, the clean patches and every frame's rain patches.

    Returns:
        The ``[rain, clean]`` pairs relative to ``job.out``, and the patches per frame.
    """
    scene_dir = job.out / job.scene
    crop, stride = job.settings.crop, job.settings.stride
    clean, frames = images.clean, images.frames
    h, w = clean.shape[:2]
    boxes = [(y, x) for y in _patch_origins(h, crop, stride)
             for x in _patch_origins(w, crop, stride)]
    ph, pw = (h, w) if crop is None else (min(crop, h), min(crop, w))
    write_image(scene_dir / "clean.png", clean)
    for y, x in boxes:
        write_image(scene_dir / "clean" / f"{y}_{x}.png", clean[y:y + ph, x:x + pw])
    pairs = []
    width = max(4, len(str(job.start + len(frames) - 1)))
    for i, frame in enumerate(frames):
        index = f"{job.start + i:0{width}d}"
        for y, x in boxes:
            rain_rel = f"{job.scene}/rain/{index}_{y}_{x}.png"
            write_image(job.out / rain_rel, frame[y:y + ph, x:x + pw])
            pairs.append([rain_rel, f"{job.scene}/clean/{y}_{x}.png"])
    return pairs, len(boxes)


def export_scene(job: SceneJob) -> dict[str, Any]:
    """Export one scene: ``clean.png``, the patch pairs, and ``done.json`` written last.

    What an earlier run left in the scene's folder (an interrupted run's partial export, or
    an export of another decision) is deleted first: the files an export writes, nothing
    else. Runs in a worker process when `export_dataset` has ``workers > 1``.

    Returns:
        The scene's record, as written to ``done.json`` (the resume marker).

    Raises:
        InputError: the source, the frame count or the clean image cannot be read, or the
            clean image's size differs from the frames'.
    """
    scene_dir = job.out / job.scene
    _remove_scene_files(scene_dir)
    if job.decision == "accepted":
        images = _accepted_images(job)
    else:
        images = _auto_accepted_images(job)
    if images.clean.shape != images.frames.shape[1:]:
        raise InputError(f"clean image size {images.clean.shape[:2]} does not match the frames "
                         f"{images.frames.shape[1:3]} of {job.source}")
    pairs, patches_per_frame = _write_patches(job, images)
    record = {
        "scene": job.scene, "source": str(job.source), "key": job.key, "n": int(images.n),
        "percentile": images.percentile, "density": images.density,
        "decision": job.decision, "frames": len(images.frames), "start": job.start,
        "patches_per_frame": patches_per_frame, "pairs": pairs,
        "finished": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    atomic_write_json(scene_dir / "done.json", record)  # the marker: written last
    return record


def _run_job(job: SceneJob) -> SceneOutcome:
    # Warnings are carried back (a worker process's would print there, unformatted) and
    # re-emitted by record_outcome in the calling process.
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            outcome = SceneOutcome(job.scene, record=export_scene(job))
        except Exception as err:  # one bad scene must not stop the others
            message = str(err) if isinstance(err, InputError) else f"{type(err).__name__}: {err}"
            outcome = SceneOutcome(job.scene, error=message)
    outcome.warnings = [(str(w.message), w.category) for w in caught]
    return outcome


def _count_available(job: SceneJob) -> str | None:
    """Fill in ``job.frames_available`` where the review did not; returns an error or None."""
    if job.frames_available is None:
        try:
            job.frames_available = count_frames(job.source) - job.start
        except Exception as err:  # an unreadable scene fails alone
            return str(err)
    return None


def record_outcome(plan: ExportPlan, outcome: SceneOutcome) -> None:
    """Add one scene's outcome to the plan's summary and records, and rewrite the manifest.

    Warnings raised while the scene was exported are issued again here.
    """
    for message, category in outcome.warnings:
        warnings.warn(message, category, stacklevel=2)
    if outcome.error is not None:
        plan.summary.failed[outcome.scene] = outcome.error
        plan.left_out[outcome.scene] = {"status": "failed", "error": outcome.error}
    else:
        plan.records[outcome.scene] = outcome.record
        plan.summary.exported.append(outcome.scene)
    write_manifest(plan)


def _export_in_workers(plan: ExportPlan, jobs: Sequence[SceneJob], workers: int,
                       bar: tqdm) -> list[SceneJob]:
    """Export ``jobs`` in worker processes; returns the jobs whose worker could not run."""
    # "spawn": fork is unsafe after torch / numba started threads in this process
    context = multiprocessing.get_context("spawn")
    broken = []
    with cf.ProcessPoolExecutor(max_workers=min(workers, len(jobs)),
                                mp_context=context) as pool:
        futures = {pool.submit(_run_job, job): job for job in jobs}
        for future in cf.as_completed(futures):
            try:
                outcome = future.result()
            except BrokenProcessPool:
                broken.append(futures[future])
                continue
            record_outcome(plan, outcome)
            bar.update()
    return broken


def export_scenes(plan: ExportPlan, jobs: Sequence[SceneJob], workers: int = 1,
                  progress: bool = True) -> None:
    """Step 4: export ``jobs``, recording each outcome (`record_outcome`) as it arrives.

    Args:
        plan: the run's state.
        jobs: the scenes to export (`resume_exported` gives them).
        workers: scenes exported in parallel, in "spawn" worker processes; if they cannot
            start, the scenes are exported in this process, with a ``RuntimeWarning``.
        progress: show a tqdm progress bar.
    """
    with tqdm(total=len(jobs), desc="export", unit="scene", disable=not progress) as bar:
        runnable = []
        for job in jobs:
            error = _count_available(job)
            if error is None:
                runnable.append(job)
            else:
                record_outcome(plan, SceneOutcome(job.scene, error=error))
                bar.update()
        if workers > 1 and len(runnable) > 1:
            runnable = _export_in_workers(plan, runnable, workers, bar)
            if runnable:  # workers could not start (e.g. a script without a __main__ guard)
                warnings.warn(f"export_dataset: worker processes failed ({len(runnable)} "
                              "scenes left); exporting those in this process", RuntimeWarning,
                              stacklevel=3)
        for job in runnable:
            record_outcome(plan, _run_job(job))
            bar.update()


# --------------------------------------------------------------------------------------------
# Step 5: lists and manifest
# --------------------------------------------------------------------------------------------
def write_lists(plan: ExportPlan) -> None:
    """Step 5: write ``train.txt`` and ``test.txt`` from the records, split by scene.

    Sets the summary's scenes and pair counts per split.
    """
    summary = plan.summary
    train: list[tuple[Path, Path]] = []
    test: list[tuple[Path, Path]] = []
    summary.train_scenes, summary.test_scenes = [], []
    for job in plan.jobs:
        record = plan.records.get(job.scene)
        if record is None:
            continue
        pairs = [(plan.out / rain, plan.out / clean) for rain, clean in record["pairs"]]
        if job.scene in plan.test_scenes:
            test.extend(pairs)
            summary.test_scenes.append(job.scene)
        else:
            train.extend(pairs)
            summary.train_scenes.append(job.scene)
    write_pair_list(summary.train_list, train)
    write_pair_list(summary.test_list, test)
    summary.n_train_pairs, summary.n_test_pairs = len(train), len(test)


def _manifest_entry(plan: ExportPlan, record: dict[str, Any]) -> dict[str, Any]:
    return {"status": "exported",
            "split": "test" if record["scene"] in plan.test_scenes else "train",
            "n": record["n"], "percentile": record["percentile"],
            "density": record["density"], "decision": record["decision"],
            "pairs": len(record["pairs"]), "frames": record["frames"],
            "source": record["source"]}


def write_manifest(plan: ExportPlan) -> None:
    """Write ``manifest.json``: settings, and per scene N, p, density, decision, pairs, split.

    Scenes planned but not done yet are ``"pending"`` (the manifest is first written before
    any scene, so it always names every folder the export may have written); a renamed
    scene's entry has its name in ``SRC`` as ``original_name``.
    """
    scenes = {job.scene: {"status": "pending", "source": str(job.source)} for job in plan.jobs}
    scenes.update(plan.left_out)
    scenes.update({name: _manifest_entry(plan, record) for name, record in plan.records.items()})
    for name, original in plan.summary.renamed.items():
        if name in scenes:
            scenes[name]["original_name"] = original
    atomic_write_json(plan.out / "manifest.json", {
        "format": _MANIFEST_FORMAT, "version": _MANIFEST_VERSION,
        "updated": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "src": str(plan.src.resolve()),
        "review_file": None if plan.review_file is None else str(plan.review_file.resolve()),
        "params": asdict(plan.settings),
        "scenes": {name: scenes[name] for name in sorted(scenes)},
    })


# --------------------------------------------------------------------------------------------
# The whole export
# --------------------------------------------------------------------------------------------
def export_dataset(src: str | os.PathLike, out: str | os.PathLike,
                   review_file: str | os.PathLike | None = None, auto_accept: bool = False,
                   crop: int | None = 256, stride: int | None = None,
                   frames_per_video: int | None = None, test_fraction: float = 0.1,
                   workers: int = 1, seed: int = 0, density: str | None = None,
                   overwrite: bool = False, progress: bool = True) -> ExportSummary:
    """Export reviewed rain videos as an SPA-Data style set of rain/clean patch pairs.

    The library side of ``spanet build-dataset SRC -o OUT``. ``SRC`` holds one video file or
    frame folder per scene (`spanetlib.video.list_scenes`); a scene's name is the file's stem
    or the folder's name. Which scenes are exported, with which clean image:

    - with ``review_file``: the scenes accepted there, with the clean image saved at accept
      time (N, p and density from the review); other decisions are left out;
    - with ``auto_accept``: scenes without a decision (not in the review file, or pending
      there) too: density guessed (`spanetlib.selection.guess_density`, or ``density`` for
      all), N = ``FRAME_COUNTS[density]`` (capped by the frames), ``estimate_background`` of
      the first N frames.

    Layout (all paths in the lists relative to ``OUT``, ``/`` separators)::

        OUT/<scene>/clean.png                 full clean image
        OUT/<scene>/clean/<y>_<x>.png         clean patch at (y, x), shared by all frames
        OUT/<scene>/rain/<frame>_<y>_<x>.png  rain patch of frame <frame> (zero-padded index)
        OUT/<scene>/done.json                 per-scene record, written last (resume marker)
        OUT/train.txt, OUT/test.txt           "rain clean" pair lists, split by scene
        OUT/manifest.json                     scene -> N, p, density, decision, pairs, split

    Each of the first K frames (``frames_per_video``; default N, every frame the estimate
    used) is cut into ``crop x crop`` patches on a grid with step ``stride``, plus one more
    row / column flush with the bottom / right border so the whole image is covered; an image
    smaller than ``crop`` along an axis is used whole along it (no padding), and
    ``crop=None`` keeps whole images. The split is by scene, so no scene is in both lists:
    ``round(test_fraction * scenes)`` test scenes (at least one when there are >= 2 scenes),
    chosen by a hash of ``(seed, name)``, so it is deterministic and a scene keeps its side
    when others are added where the counts allow.

    Scene names: a scene's name (`spanetlib.video.scene_name`) names its folder and goes into
    the pair lists, whose format cannot hold whitespace; a name with whitespace or other
    unsafe characters is replaced by a safe one (``my street`` -> ``my_street-3abb2a40``),
    recorded in the manifest (``original_name``) and `ExportSummary.renamed`. Two scenes that
    give the same name (``a.mp4`` and a folder ``a``) are refused before any work.

    An existing ``OUT`` (`check_output`): an export made with the same settings is resumed;
    one made with other settings (crop, stride, K, test fraction, seed, density, ``src``) is
    refused, naming the differences, unless ``overwrite``, which deletes that export's own
    files (nothing else) and starts afresh; a non-empty folder that holds no export is refused.

    Resume: a scene whose ``done.json`` exists (and was made with the same crop, stride, K
    and decision, including the time of the accept) is kept; the export files of a scene
    folder without it are deleted and the scene redone. The lists and the manifest are
    rebuilt from the ``done.json`` files at every run (folders of scenes an earlier run
    exported but this one does not select stay on disk, outside the lists).
    A scene that cannot be read fails alone: the others are exported and
    `ExportSummary.failed` names it.

    Args:
        src: folder of scenes.
        out: dataset folder (created).
        review_file: a `spanetlib.review.ReviewSession` file.
        auto_accept: export scenes without a decision, as described above.
        crop: patch size in pixels, or None for whole images.
        stride: patch step (default ``crop``: no overlap).
        frames_per_video: rain frames K paired with the clean image (default: the N used).
        test_fraction: share of scenes in the test list, in [0, 1).
        workers: scenes exported in parallel, in "spawn" worker processes (a script calling
            this with ``workers > 1`` needs the usual ``if __name__ == "__main__":`` guard;
            if the workers cannot start, the scenes are exported in this process instead).
        seed: seed of the train/test split.
        density: density for auto-accepted scenes (None: guess per scene).
        overwrite: replace an export in ``out`` made with other settings (``--overwrite``).
        progress: show a tqdm progress bar.

    Returns:
        An `ExportSummary`.

    Raises:
        InputError: ``src`` or ``review_file`` is missing, ``src`` holds no scenes or two
            scenes with one name, neither ``review_file`` nor ``auto_accept`` is given, or
            ``out`` cannot be used (see `check_output`); all before any scene is exported.
        ValueError: a bad ``crop``, ``stride``, ``frames_per_video``, ``test_fraction``,
            ``workers`` or ``density``.
    """
    settings = ExportSettings(crop=crop, stride=stride, frames_per_video=frames_per_video,
                              test_fraction=test_fraction, seed=seed, auto_accept=auto_accept,
                              density=density)
    _check_positive("workers", workers, allow_none=False)
    plan = plan_export(src, out, review_file, settings)
    check_output(plan, overwrite)
    plan.out.mkdir(parents=True, exist_ok=True)
    todo = resume_exported(plan)
    write_manifest(plan)
    export_scenes(plan, todo, workers=workers, progress=progress)
    write_lists(plan)
    write_manifest(plan)
    return plan.summary
