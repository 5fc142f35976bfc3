"""Dataset export (``spanet build-dataset``): reviewed rain videos to SPA-Data style patch pairs.

`export_dataset` is the entry point. It runs as named steps on one `ExportPlan`, the state of
the run, so each step can be read, tested and extended alone:

1. `plan_export`: the scenes of ``SRC`` (and every other entry, with why it is skipped), which
   of them are exported with which clean image (the review's decisions, or auto-accept), one
   `SceneJob` each; a review made on other content than ``SRC`` holds is refused here;
2. `check_output`: ``OUT`` must be new, empty, or an export of the same settings (resumed);
   an export of other settings is replaced only with ``overwrite`` (its own files removed);
3. `resume_exported`: scenes whose ``done.json`` records the same `SceneJob.key` are kept;
4. `export_scenes`: `export_scene` for each remaining job (in worker processes, by default as
   many as the cores and the memory allow, or as tasks on a Dask cluster), each outcome
   recorded in the manifest by this process as it arrives (`record_outcome`);
5. `split_exported`, `write_lists` and `write_manifest`: the train/test split among the
   exported scenes, ``train.txt``, ``test.txt`` and ``manifest.json``, rebuilt from the
   per-scene records at every run.

`ExportSettings` holds what decides the content of an export (recorded in the manifest);
`ExportSummary` is what a run reports.

Never a wrong pair: each scene's N frames go through the clip estimator
(`spanetlib.pipeline.clip_estimate.estimate_clip`, via
`spanetlib.pipeline.review.review_estimate`): camera motion is measured and undone where it
matters, every stable period of the scene gets its own clean image, and each rain frame is
paired only with the clean image of its own period, rendered in the frame's own pixels and
exposure (`ClipEstimate.clean_for_frame`). Frames of no period (a scene change under way,
content rain does not explain) are not paired. Within a paired frame, pixels outside the
period's valid region, pixels its pair check flags (a car passing, an object the clean image
does not show) and pixels where the clean image is not reliable
(`spanetlib.pipeline.background.reliability_map`) are unusable; `UNRELIABLE_POLICIES` says what
happens to a patch holding some.
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
from collections.abc import Callable, Sequence
from concurrent.futures.process import BrokenProcessPool
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from tqdm.auto import tqdm

from spanetlib.io.checks import check_positive
from spanetlib.io.errors import InputError
from spanetlib.io.files import (
    atomic_write_json,
    check_output_folder,
    read_image,
    round_to_uint8,
    write_image,
)
from spanetlib.io.pairs import write_pair_list
from spanetlib.io.resources import cpus_available, host_memory_available
from spanetlib.io.video import (
    FrameSource,
    count_frames,
    frame_shape,
    read_sequence,
    scan_scenes,
    scene_name,
    source_identity,
)
from spanetlib.pipeline.alignment import ALIGN_MODES, crop_box
from spanetlib.pipeline.clip_estimate import ClipEstimate
from spanetlib.pipeline.quality import SceneQuality, scene_quality
from spanetlib.pipeline.review import (
    ReviewSession,
    accepted_part,
    clip_record,
    grow_n,
    left_out_line,
    quality_record,
    reliable_for_frame,
    review_estimate,
)
from spanetlib.pipeline.selection import FRAME_COUNTS, GUESS_FRAMES, guess_density

__all__ = [
    "DROP_MAX_UNUSABLE",
    "ExportPlan",
    "ExportSettings",
    "ExportSummary",
    "MASK_MIN_USABLE",
    "PAIR_MARGIN_PX",
    "SCENE_PEAK_PER_FRAME_BYTE",
    "SceneJob",
    "SceneOutcome",
    "UNRELIABLE_POLICIES",
    "WORKER_BASE_BYTES",
    "WORKER_MEMORY_SHARE",
    "check_output",
    "choose_workers",
    "export_dataset",
    "export_scene",
    "export_scenes",
    "plan_export",
    "record_outcome",
    "resume_exported",
    "scene_peak_bytes",
    "split_exported",
    "write_lists",
    "write_manifest",
]

_MANIFEST_FORMAT = "spanetlib-export"
_MANIFEST_VERSION = 2

#: What the export does with a patch holding unusable pixels (pixels rain does not explain,
#: outside the valid region, or where the clean image is unreliable). Either way, the unusable
#: pixels of a written rain patch take the clean patch's values, so the pair agrees there (no
#: rain, no object): a trainer that ignores masks never learns from a wrong pixel.
UNRELIABLE_POLICIES: dict[str, str] = {
    "drop": "leave out patches with more than DROP_MAX_UNUSABLE unusable pixels",
    "mask": "keep patches with at least MASK_MIN_USABLE usable pixels and write "
            "mask/<frame>_<y>_<x>.png beside each rain patch (255: usable, 0: made to agree) "
            "for a masked loss",
}
#: Policy "drop": the largest share of unusable pixels a written patch holds (scattered
#: pixels of dense rain that the pair check or the reliability map cannot tell from a change).
DROP_MAX_UNUSABLE = 0.1
#: Policy "mask": the smallest share of usable pixels a written patch holds.
MASK_MIN_USABLE = 0.5
#: Pixels the regions a frame's pair check flags are grown by before patches are cut: an
#: object's faint edge beside its flagged body (on the junction clip, a car's top rows) is
#: then left out too. The reliability map's scattered pixels are not grown.
PAIR_MARGIN_PX = 3
#: An accepted clean image matches the estimate its frames give when fewer than this share of
#: its pixels differ by more than 2 levels (rounding aside, the estimator is deterministic).
_ACCEPTED_MISMATCH = 0.001
#: Peak memory of exporting one scene, per byte of the decoded frames its estimate keeps (the
#: frames, their float and aligned working copies, the per-period stacks): an upper estimate
#: for choosing the number of worker processes (`choose_workers`).
SCENE_PEAK_PER_FRAME_BYTE = 8
#: Memory of a worker process besides its scene (the interpreter, NumPy, OpenCV).
WORKER_BASE_BYTES = 300 << 20
#: Share of the memory available now that the worker processes may take together.
WORKER_MEMORY_SHARE = 0.8


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
        align: align mode of auto-accepted scenes (`spanetlib.pipeline.alignment.ALIGN_MODES`);
            accepted scenes keep the mode their review used.
        unreliable: a `UNRELIABLE_POLICIES` name: "drop" or "mask".

    Raises:
        ValueError: a bad ``crop``, ``stride``, ``frames_per_video``, ``test_fraction``,
            ``density``, ``align`` or ``unreliable``.

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
    align: str = "auto"
    unreliable: str = "drop"

    def __post_init__(self) -> None:
        check_positive("crop", self.crop, allow_none=True)
        check_positive("stride", self.stride, allow_none=True)
        check_positive("frames_per_video", self.frames_per_video, allow_none=True)
        if not 0.0 <= self.test_fraction < 1.0:
            raise ValueError(f"test_fraction must be in [0, 1), got {self.test_fraction}")
        if self.density is not None and self.density not in FRAME_COUNTS:
            raise ValueError(f"density must be one of {tuple(FRAME_COUNTS)} or None, "
                             f"got {self.density!r}")
        if self.align not in ALIGN_MODES:
            raise ValueError(f"align must be one of {tuple(ALIGN_MODES)}, got {self.align!r}")
        if self.unreliable not in UNRELIABLE_POLICIES:
            raise ValueError(f"unreliable must be one of {tuple(UNRELIABLE_POLICIES)}, got "
                             f"{self.unreliable!r}")
        if self.stride is None:  # frozen: the default is resolved once, here
            object.__setattr__(self, "stride", self.crop)


@dataclass
class SceneJob:
    """One scene to export: its source and the clean image it is paired with.

    Attributes:
        scene: the scene's name (`spanetlib.io.video.scene_name`), its folder under ``out``.
        source: the scene's video file or frame folder (absolute).
        out: the dataset folder (absolute).
        settings: the export's settings.
        decision: ``"accepted"`` (in the review) or ``"auto-accepted"``.
        start: first frame used.
        clean_images: the clean images saved at accept time, one per stable period (accepted
            scenes); the export checks that its frames still give them.
        align: align mode of the scene's estimate (the review's, or the settings').
        n: frames the clean image was estimated from (accepted scenes; auto-accepted: None,
            ``FRAME_COUNTS`` of the density).
        density: the review's density, or the one for auto-accepted scenes (None: guess).
        percentile: p of the accepted estimate (Eq. 4).
        frames_available: frames from ``start`` on (None: counted before the export).
        accepted_at: the time of the accept in the review.
        periods_accepted: the periods of the estimate that were accepted, when a batch
            review accepted only part of the scene (None: all).
        periods_left_out: what the review said of the periods it left out (None: none).
    """

    scene: str
    source: Path
    out: Path
    settings: ExportSettings
    decision: str
    start: int = 0
    clean_images: list[Path] = field(default_factory=list)
    align: str = "auto"
    n: int | None = None
    density: str | None = None
    percentile: float | None = None
    frames_available: int | None = None
    accepted_at: str | None = None
    periods_accepted: list[int] | None = None
    periods_left_out: list[dict[str, Any]] | None = None

    @property
    def key(self) -> dict[str, Any]:
        """What a scene's ``done.json`` must record for a later run to keep it."""
        return {"crop": self.settings.crop, "stride": self.settings.stride,
                "frames_per_video": self.settings.frames_per_video, "n": self.n,
                "start": self.start, "decision": self.decision,
                "accepted_at": self.accepted_at, "align": self.align,
                "unreliable": self.settings.unreliable}


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
        skipped: entry of ``SRC`` -> why it is not a scene (`spanetlib.io.video.scan_scenes`:
            hidden, a single image, a folder without frames, a file FFmpeg cannot decode, the
            output folder).
        renamed: scene -> its name in ``SRC``, for names made safe by
            `spanetlib.io.video.scene_name` (whitespace and other characters a pair list or a
            file name cannot hold); also in the manifest, as ``original_name``.
        train_scenes: scenes in ``train.txt``.
        test_scenes: scenes in ``test.txt``.
        n_train_pairs: lines of ``train.txt``.
        n_test_pairs: lines of ``test.txt``.
        unpaired_frames: frames of the exported scenes' estimates paired with no clean image
            (a scene change under way, content rain does not explain).
        dropped_patches: patches left out for unusable pixels (policy "drop"), or with too
            few usable pixels (policy "mask").
        scene_reports: scene -> one line: motion, periods, frames paired, pairs, quality
            (exported and resumed scenes).
        test_fraction: the share of test scenes asked for (an empty test list is reported
            only when it is > 0).
        scenes_with_pairs: exported scenes with at least one pair: those the split shares.

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
    skipped: dict[str, str] = field(default_factory=dict)
    renamed: dict[str, str] = field(default_factory=dict)
    train_scenes: list[str] = field(default_factory=list)
    test_scenes: list[str] = field(default_factory=list)
    n_train_pairs: int = 0
    n_test_pairs: int = 0
    unpaired_frames: int = 0
    dropped_patches: int = 0
    scene_reports: dict[str, str] = field(default_factory=dict)
    test_fraction: float = 0.0
    scenes_with_pairs: int = 0

    @property
    def empty_splits(self) -> list[str]:
        """The lists that came out empty though asked for.

        ``"train"``, and ``"test"`` when ``test_fraction > 0`` (one exported scene, or none).
        """
        empty = [] if self.n_train_pairs else ["train"]
        if self.test_fraction > 0 and not self.n_test_pairs:
            empty.append("test")
        return empty

    def split_warnings(self) -> list[str]:
        """One line per list that came out empty though asked for (`empty_splits`).

        Example:
            >>> summary = ExportSummary(Path("o"), Path("o/train.txt"), Path("o/test.txt"),
            ...                         Path("o/manifest.json"), train_scenes=["b"],
            ...                         n_train_pairs=3, test_fraction=0.1,
            ...                         scenes_with_pairs=1)
            >>> summary.split_warnings()  # doctest: +NORMALIZE_WHITESPACE
            ['test.txt is empty: 1 scene exported with pairs, too few for a test split
              (--test-fraction 0.1 asks for one)']
        """
        lines = []
        exported = len(self.train_scenes) + len(self.test_scenes)
        for split in self.empty_splits:
            scenes = self.train_scenes if split == "train" else self.test_scenes
            if exported == 0:
                why = "no scene was exported"
            elif self.scenes_with_pairs == 0:
                why = f"the {_scenes(exported)} exported gave no pair"
            elif scenes and split == "train":
                why = f"its {_scenes(len(scenes))} gave no pair"
            else:
                why = (f"{_scenes(self.scenes_with_pairs)} exported with pairs, too few for a "
                       f"test split (--test-fraction {self.test_fraction:g} asks for one)")
            lines.append(f"{split}.txt is empty: {why}")
        return lines

    def _contents(self) -> str:
        text = (f"{self.n_train_pairs} train pairs from {_scenes(len(self.train_scenes))}, "
                f"{self.n_test_pairs} test pairs from {_scenes(len(self.test_scenes))}")
        if self.unpaired_frames or self.dropped_patches:
            text += (f"; {self.unpaired_frames} frame(s) left unpaired (scene changes, content "
                     f"rain does not explain), {self.dropped_patches} patch(es) with unusable "
                     "pixels left out")
        if self.not_exported:
            text += f"; {len(self.not_exported)} not exported (see manifest.json)"
        if self.skipped:
            text += f"; {len(self.skipped)} entr{'y' if len(self.skipped) == 1 else 'ies'} of " \
                "the source folder skipped (not scenes)"
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
        test_scenes: names of the exported scenes that go to the test list (`split_exported`
            decides it once the scenes are exported; empty before).
        split_decided: whether `split_exported` has run (the manifest gives each scene's
            side only then).
        report: called with one line per entry of ``src`` skipped and per scene not exported
            or failed, as soon as that is known (the CLI prints them); None: silent.
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
    split_decided: bool = False
    report: Callable[[str], None] | None = None

    def tell(self, line: str) -> None:
        """Pass ``line`` to `report` (when set)."""
        if self.report is not None:
            self.report(line)


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
                        clean_images=session.clean_image_paths(name), align=entry["align"],
                        n=entry["n"], density=entry["density"], percentile=entry["percentile"],
                        frames_available=entry["frames_available"],
                        accepted_at=entry["history"][-1]["timestamp"],
                        periods_accepted=entry.get("periods_accepted"),
                        periods_left_out=entry.get("periods_left_out"))
    if settings.auto_accept and (entry is None or entry["status"] == "pending"):
        return SceneJob(name, source, out, settings, "auto-accepted", align=settings.align,
                        density=settings.density)
    if entry is not None:
        return f"review status {entry['status']}"
    return "not in the review file (use --auto-accept to export it)"


def _check_review_content(session: ReviewSession, jobs: Sequence[SceneJob]) -> None:
    """Refuse a review whose accepted scenes were reviewed on other content than ``SRC``'s.

    A scene of an older review file (no recorded identity) gets a warning; its export still
    checks that the frames give the accepted clean image.
    """
    mismatched = []
    for job in jobs:
        if job.decision != "accepted":
            continue
        recorded = session.identity(job.scene)
        if recorded is None:
            warnings.warn(f"review file {session.path}: scene {job.scene!r} has no recorded "
                          "source identity (an older review file); its export checks that "
                          f"{job.source} still gives the accepted clean image", UserWarning,
                          stacklevel=3)
            continue
        current = source_identity(job.source)
        if not recorded.same_content(current):
            mismatched.append(f"scene {job.scene!r} was reviewed on {recorded.describe()} but "
                              f"the scene folder has {current.describe()}")
    if mismatched:
        more = f" (and {len(mismatched) - 1} more scene(s))" if len(mismatched) > 1 else ""
        raise InputError(f"review file {session.path} was made on other content: "
                         f"{mismatched[0]}{more}; refusing to pair these frames with that "
                         "review's clean images (pass the review file made on these scenes, or "
                         "review them anew)")


def plan_export(src: str | os.PathLike, out: str | os.PathLike,
                review_file: str | os.PathLike | None, settings: ExportSettings) -> ExportPlan:
    """Step 1: which scenes of ``src`` are exported, with which clean image, on which side.

    Reads the review file, writes nothing. See `export_dataset` for the rules.

    Returns:
        The plan: its jobs, the scenes left out (in ``summary.not_exported`` and
        ``left_out``) and the entries of ``src`` that are no scenes (``summary.skipped``). The
        split waits for the exports (`split_exported`).

    Raises:
        InputError: ``src`` or ``review_file`` is missing, ``src`` holds no scenes, two of its
            scenes give the same name (``a.mp4`` and a folder ``a``), neither
            ``review_file`` nor ``settings.auto_accept`` is given, or a scene accepted in the
            review was reviewed on other content (`spanetlib.io.video.source_identity`).
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
    listing = scan_scenes(src)
    skipped = {entry.name: reason for entry, reason in listing.skipped}
    scenes = []
    for path in listing.scenes:
        if path.resolve() == out_resolved:
            skipped[path.name] = "the dataset's output folder"
        else:
            scenes.append(path)
    if not scenes:
        raise InputError(f"no scenes (video files or frame folders) in {src}" + (
            f"; skipped {len(skipped)} entr{'y' if len(skipped) == 1 else 'ies'}: " + "; ".join(
                f"{name}: {why}" for name, why in skipped.items()) if skipped else ""))

    summary = ExportSummary(out=out, train_list=out / "train.txt", test_list=out / "test.txt",
                            manifest=out / "manifest.json", skipped=skipped,
                            test_fraction=settings.test_fraction)
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
        _check_review_content(session, plan.jobs)
    return plan


# --------------------------------------------------------------------------------------------
# Step 2: the output folder
# --------------------------------------------------------------------------------------------
#: The settings an existing export must share to be resumed (with ``src``). The decisions
#: (the review file, auto-accept) may change: new accepts are added, changed ones redone.
_RESUME_SETTINGS = ("crop", "stride", "frames_per_video", "test_fraction", "seed", "density",
                    "align", "unreliable")


def _temp_or(name: str) -> re.Pattern[str]:
    """``name`` (a regex), or a temporary file `spanetlib.io.files.atomic_write` made for it."""
    return re.compile(rf"^(?:{name}|\.(?:{name})\.[0-9a-z_]+\.tmp\.[a-z]+)$")


# The files an export writes, per folder (relative to OUT / a scene folder); only these are
# ever removed.
_TOP_FILES = _temp_or(r"train\.txt|test\.txt|manifest\.json")
_SCENE_FILES = {".": _temp_or(r"(?:clean|reliability)(?:_period\d+)?\.png|done\.json"),
                "clean": _temp_or(r"(?:period\d+_)?\d+_\d+\.png|\d+_\d+_\d+\.png"),
                "rain": _temp_or(r"\d+_\d+_\d+\.png"), "mask": _temp_or(r"\d+_\d+_\d+\.png")}


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
    for sub in ("clean", "rain", "mask"):
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
            reason = _rejection(done)
            if reason is None:
                plan.summary.resumed.append(job.scene)
            else:
                plan.summary.not_exported[job.scene] = reason
                plan.tell(f"not exported: {job.scene}: {reason} (an earlier run)")
        else:
            todo.append(job)
    return todo


# --------------------------------------------------------------------------------------------
# Step 4: export the scenes
# --------------------------------------------------------------------------------------------
@dataclass
class _SceneEstimate:
    """A scene's frames, their clip estimate, and how it was decided."""

    frames: FrameSource  # the N frames the estimate used, read again for the pairs
    result: ClipEstimate | None  # None: auto-accept never accepted the scene
    n: int
    density: str
    quality: SceneQuality
    history: list[dict[str, Any]] = field(default_factory=list)  # auto-accept's judgements
    left_out: list[dict[str, Any]] | None = None  # periods a partial accept left out


def _as_uint8(image: np.ndarray) -> np.ndarray:
    return round_to_uint8(image)


def _check_accepted_images(job: SceneJob, result: ClipEstimate) -> None:
    """The accepted clean images must be what the frames give now (the review's estimate)."""
    if not job.clean_images:
        raise InputError(f"the review records {job.scene} as accepted without a clean image")
    made = [_as_uint8(seg.image) for seg in result.segments]
    problem = None
    if len(made) != len(job.clean_images):
        problem = (f"{len(job.clean_images)} clean image(s) accepted, the frames give "
                   f"{len(made)} stable period(s)")
    else:
        for path, image in zip(job.clean_images, made, strict=True):
            accepted = read_image(path)
            if accepted.shape != image.shape:
                problem = (f"{path.name} is {accepted.shape[1]} x {accepted.shape[0]}, the "
                           f"frames {image.shape[1]} x {image.shape[0]}")
                break
            off = (np.abs(accepted.astype(np.int16) - image).max(axis=2) > 2).mean()
            if off > _ACCEPTED_MISMATCH:
                problem = (f"{path.name} differs from the estimate in {100 * off:.1f} % of its "
                           "pixels")
                break
    if problem is not None:
        raise InputError(f"{job.scene}: the clean image accepted in the review is not the "
                         f"estimate of its {job.n} frames ({problem}; align {job.align}); "
                         "refusing to pair the frames with it: review the scene again")


def _accepted_estimate(job: SceneJob) -> _SceneEstimate:
    """The review's N frames, their clip estimate, checked against the accepted images."""
    count = min(job.n, job.frames_available)
    frames = FrameSource(job.source, start=job.start, count=count)
    result = review_estimate(frames, job.align)
    if job.periods_accepted is not None:
        result = result.only_segments(job.periods_accepted)
    _check_accepted_images(job, result)
    return _SceneEstimate(frames, result, len(frames), job.density, scene_quality(result),
                          left_out=job.periods_left_out)


def _auto_estimate(job: SceneJob) -> _SceneEstimate:
    """Auto-accept: the batch review of ``run_review`` without a review file.

    As `spanetlib.pipeline.review_widget.run_review` does in mode "auto".

    Density guessed (or given), N = ``FRAME_COUNTS[density]``; the estimate is accepted iff
    `spanetlib.pipeline.quality.scene_quality` accepts it, else N grows by ``REJECT_INCREMENT``
    until accepted or every frame is used. Then the periods that pass on their own are
    exported (`spanetlib.pipeline.review.accepted_part`); with none, the scene is not.
    """
    available = job.frames_available
    density = job.density
    if density is None:
        density = guess_density(read_sequence(job.source, start=job.start, min_frames=1,
                                              count=min(GUESS_FRAMES, available)))
    n: int | None = min(FRAME_COUNTS[density], available)
    history = []
    while n is not None:
        # Streamed: each try reads its N frames again, so memory does not grow with N.
        frames = FrameSource(job.source, start=job.start, count=n)
        if len(frames) < n:  # the container's frame count was too high
            n = available = len(frames)
        result = review_estimate(frames, job.align)
        quality = scene_quality(result)
        history.append({"n": n, **quality_record(quality)})
        if quality.accept:
            return _SceneEstimate(frames, result, n, density, quality, history)
        last = n
        n = grow_n(n, density, available)
    part = accepted_part(result, quality)
    if part is not None:
        history.append({"n": last, "periods": quality.accepted_periods,
                        **quality_record(part[1])})
        return _SceneEstimate(frames, part[0], last, density, part[1], history, part[2])
    return _SceneEstimate(frames, None, last, density, quality, history)


def _patch_origins(size: int, crop: int | None, stride: int) -> list[int]:
    """Patch starts along one axis: a regular grid plus the last full patch at the border."""
    if crop is None or size <= crop:
        return [0]
    starts = list(range(0, size - crop + 1, stride))
    if starts[-1] != size - crop:
        starts.append(size - crop)
    return starts


def _chosen_pairs(result: ClipEstimate, k: int | None) -> list[tuple[int, int]]:
    """The ``(frame, period)`` pairs to export: all, or ``k`` spread evenly over them."""
    pairs = result.pairs()
    if k is None or k >= len(pairs):
        return pairs
    index = np.unique(np.linspace(0, len(pairs) - 1, k).round().astype(int))
    return [pairs[i] for i in index]


def _write_periods(scene_dir: Path, result: ClipEstimate) -> list[str]:
    """Each period's clean image and reliability map; returns the clean patches' prefixes."""
    several = len(result.segments) > 1
    prefixes = []
    for k, seg in enumerate(result.segments, start=1):
        tag = f"_period{k}" if several else ""
        write_image(scene_dir / f"clean{tag}.png", _as_uint8(seg.image))
        score = np.where(seg.valid, seg.reliability.score, 0.0)
        write_image(scene_dir / f"reliability{tag}.png", score.astype(np.float32))
        prefixes.append(f"period{k}_" if several else "")
    return prefixes


@dataclass
class _PatchCounts:
    considered: int = 0
    written: int = 0
    dropped: int = 0
    filled_pixels: int = 0
    pixels: int = 0


def _usable(result: ClipEstimate, index: int) -> np.ndarray:
    """H x W bool: pixels of frame ``index`` a pair may use.

    Inside its valid region, outside the regions its pair check flags grown by
    `PAIR_MARGIN_PX`, and reliable (`spanetlib.pipeline.review.reliable_for_frame`).
    """
    valid = result.valid_for_frame(index)
    flagged = (valid & ~result.usable_mask(index)).astype(np.uint8)
    side = 2 * PAIR_MARGIN_PX + 1
    grown = cv2.dilate(flagged, np.ones((side, side), np.uint8)) > 0
    return valid & ~grown & reliable_for_frame(result, index)


def _write_patches(job: SceneJob, est: _SceneEstimate
                   ) -> tuple[list[list[str]], _PatchCounts, int]:
    """Write every chosen frame's patches with the clean patch of its own period.

    Returns:
        The ``[rain, clean]`` pairs relative to ``job.out``, the patch counts, and the frames
        exported.
    """
    result, frames = est.result, est.frames
    scene_dir = job.out / job.scene
    crop, stride = job.settings.crop, job.settings.stride
    policy = job.settings.unreliable
    prefixes = _write_periods(scene_dir, result)
    chosen = _chosen_pairs(result, job.settings.frames_per_video)
    width = max(4, len(str(job.start + len(frames) - 1)))
    counts = _PatchCounts()
    written_clean: set[str] = set()
    pairs = []
    period_of = dict(chosen)  # frame -> period; pairs() lists the frames in order
    decoded = 0
    for i, frame in frames.iter_at(list(period_of)):  # one pass, one frame held at a time
        k = period_of[i]
        decoded += 1
        index = f"{job.start + i:0{width}d}"
        own = bool(result.warped[i] or result.exposed[i])  # its own clean image, else shared
        clean = result.clean_for_frame(i)
        usable = _usable(result, i)
        y0, y1, x0, x1 = crop_box(result.valid_for_frame(i))
        ph, pw = (y1 - y0, x1 - x0) if crop is None else (min(crop, y1 - y0), min(crop, x1 - x0))
        for y in (y0 + o for o in _patch_origins(y1 - y0, crop, stride)):
            for x in (x0 + o for o in _patch_origins(x1 - x0, crop, stride)):
                counts.considered += 1
                ok = usable[y:y + ph, x:x + pw]
                share = float(ok.mean())
                if share < (1.0 - DROP_MAX_UNUSABLE if policy == "drop" else MASK_MIN_USABLE):
                    counts.dropped += 1
                    continue
                clean_rel = (f"{job.scene}/clean/{index}_{y}_{x}.png" if own else
                             f"{job.scene}/clean/{prefixes[k]}{y}_{x}.png")
                clean_patch = clean[y:y + ph, x:x + pw]
                if clean_rel not in written_clean:
                    write_image(job.out / clean_rel, clean_patch)
                    written_clean.add(clean_rel)
                rain_patch = np.where(ok[..., None], frame[y:y + ph, x:x + pw], clean_patch)
                if policy == "mask":
                    write_image(scene_dir / "mask" / f"{index}_{y}_{x}.png",
                                ok.astype(np.uint8) * np.uint8(255))
                counts.filled_pixels += int(ok.size - ok.sum())
                counts.pixels += ok.size
                rain_rel = f"{job.scene}/rain/{index}_{y}_{x}.png"
                write_image(job.out / rain_rel, rain_patch)
                pairs.append([rain_rel, clean_rel])
                counts.written += 1
    if decoded < len(chosen):
        raise InputError(f"{job.source}: only {decoded} of the {len(chosen)} paired frames "
                         "decoded on the second reading")
    return pairs, counts, len(chosen)


def _scene_record(job: SceneJob, est: _SceneEstimate) -> dict[str, Any]:
    """What ``done.json`` and the manifest say about a scene, its pairs aside."""
    record = {"scene": job.scene, "source": str(job.source), "key": job.key, "n": int(est.n),
              "density": est.density, "decision": job.decision, "start": job.start,
              "align": job.align, "quality": quality_record(est.quality)}
    if est.history:
        record["auto_review"] = est.history
    if est.left_out:
        record["periods_left_out"] = est.left_out
    if est.result is not None:
        periods, motion = clip_record(est.result)
        record.update(periods=periods, motion=motion, percentile=periods[0]["percentile"]
                      if periods else None)
    else:
        record.update(periods=[], motion=None, percentile=None)
    return record


def export_scene(job: SceneJob) -> dict[str, Any]:
    """Export one scene: its clean images, reliability maps, patch pairs, ``done.json`` last.

    What an earlier run left in the scene's folder (an interrupted run's partial export, or
    an export of another decision) is deleted first: the files an export writes, nothing
    else. Runs in a worker process when `export_dataset` has ``workers > 1``. An auto-accepted
    scene whose quality is never accepted writes only ``done.json`` (no pairs, decision
    ``"auto-rejected"``).

    Returns:
        The scene's record, as written to ``done.json`` (the resume marker).

    Raises:
        InputError: the source, the frame count or a clean image cannot be read, or the
            accepted clean images are not what the frames give.
    """
    scene_dir = job.out / job.scene
    _remove_scene_files(scene_dir)
    est = _accepted_estimate(job) if job.decision == "accepted" else _auto_estimate(job)
    record = _scene_record(job, est)
    if est.result is None:
        record.update(decision="auto-rejected", pairs=[], frames=0, patches_per_frame=0)
    else:
        pairs, counts, exported = _write_patches(job, est)
        filled = counts.filled_pixels / counts.pixels if counts.pixels else 0.0
        record.update(
            frames=exported, pairs=pairs,
            frames_paired=len(est.result.pairs()), frames_unpaired=est.result.n_frames
            - len(est.result.pairs()),
            patches={"policy": job.settings.unreliable, "considered": counts.considered,
                     "written": counts.written, "dropped": counts.dropped,
                     "filled_pixel_share": filled},
            patches_per_frame=counts.considered // max(1, exported))
    record["finished"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    scene_dir.mkdir(parents=True, exist_ok=True)
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
        plan.tell(f"FAILED: {outcome.scene}: {outcome.error}")
    else:
        plan.records[outcome.scene] = outcome.record
        reason = _rejection(outcome.record)
        if reason is None:
            plan.summary.exported.append(outcome.scene)
        else:
            plan.summary.not_exported[outcome.scene] = reason
            plan.tell(f"not exported: {outcome.scene}: {reason}")
    write_manifest(plan)


def _rejection(record: dict[str, Any]) -> str | None:
    """Why an auto-accepted scene was not exported (its quality never accepted), or None."""
    if record.get("decision") != "auto-rejected":
        return None
    quality = record["quality"]
    why = "; ".join(quality["reasons"]) or "not accepted"
    return (f"auto-accept: quality {quality['score']:.2f} not accepted up to N = {record['n']} "
            f"(every frame): {why}")


def scene_peak_bytes(job: SceneJob) -> int:
    """An upper estimate of the memory exporting ``job`` takes at its peak, in bytes.

    Frame size x frames kept x 3 x `SCENE_PEAK_PER_FRAME_BYTE`: the frames kept are the
    review's N for an accepted scene, and every frame from ``start`` for an auto-accepted one
    (auto-accept may grow N up to them). Needs ``job.frames_available`` (counted already).

    Raises:
        InputError: the scene's first frame cannot be read.
    """
    h, w = frame_shape(job.source)
    available = job.frames_available or 0
    kept = available if job.n is None else min(job.n, available)
    return int(h * w * 3 * max(kept, 1) * SCENE_PEAK_PER_FRAME_BYTE)


def choose_workers(peaks: Sequence[int], cores: int, available: int | None) -> int:
    """How many scenes to export at once: the cores, as far as the memory holds them.

    The largest k <= ``cores`` (and <= the scenes) such that the k largest scene peaks plus
    `WORKER_BASE_BYTES` each fit in `WORKER_MEMORY_SHARE` of the available memory; at least 1.

    Args:
        peaks: each scene's peak memory in bytes (`scene_peak_bytes`).
        cores: cores to use (`spanetlib.io.resources.cpus_available`).
        available: bytes available now (`spanetlib.io.resources.host_memory_available`; None
            when unknown: the cores decide).

    Returns:
        The worker count, >= 1.

    Example:
        >>> gib = 1 << 30
        >>> choose_workers([2 * gib] * 8, cores=4, available=16 * gib)
        4
        >>> choose_workers([6 * gib] * 8, cores=4, available=16 * gib)
        2
        >>> choose_workers([40 * gib, gib], cores=4, available=16 * gib)  # one scene too big
        1
    """
    limit = max(1, min(cores, len(peaks)))
    if available is None:
        return limit
    budget = WORKER_MEMORY_SHARE * available
    largest = sorted(peaks, reverse=True)
    k = 0
    while k < limit and sum(largest[:k + 1]) + (k + 1) * WORKER_BASE_BYTES <= budget:
        k += 1
    return max(1, k)


def _limit_threads(threads: int) -> None:
    """Worker initializer: OpenCV's threads per process, so the processes share the cores."""
    cv2.setNumThreads(threads)


def _export_in_workers(plan: ExportPlan, jobs: Sequence[SceneJob], workers: int,
                       bar: tqdm) -> list[SceneJob]:
    """Export ``jobs`` in worker processes; returns the jobs whose worker could not run."""
    # "spawn": fork is unsafe after torch / numba started threads in this process
    context = multiprocessing.get_context("spawn")
    broken = []
    workers = min(workers, len(jobs))
    threads = max(1, cpus_available() // workers)
    with cf.ProcessPoolExecutor(max_workers=workers, mp_context=context,
                                initializer=_limit_threads, initargs=(threads,)) as pool:
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


def _dask_client(scheduler: Any) -> tuple[Any, bool]:
    """A `distributed.Client` for ``scheduler`` (an address or a client); whether we made it."""
    try:
        from distributed import Client
    except ImportError as err:
        raise InputError("a Dask scheduler needs Dask distributed: pip install "
                         "'spanetlib[cluster]' (or dask[distributed])") from err
    if isinstance(scheduler, Client):
        return scheduler, False
    try:
        return Client(scheduler, set_as_default=False, timeout=30), True
    except (OSError, TimeoutError, ValueError) as err:
        raise InputError(f"cannot reach the Dask scheduler at {scheduler}: "
                         f"{' '.join(str(err).split()) or type(err).__name__}") from err


def _export_on_dask(plan: ExportPlan, jobs: Sequence[SceneJob], scheduler: Any,
                    bar: tqdm) -> None:
    """Export ``jobs`` as Dask tasks, one per scene; the outcomes are merged here as they come."""
    from distributed import as_completed

    client, own = _dask_client(scheduler)
    try:
        run = hashlib.sha256(f"{plan.out}:{time.time_ns()}".encode()).hexdigest()[:12]
        futures = {client.submit(_run_job, job, key=f"spanet-export-{run}-{job.scene}",
                                 pure=False): job for job in jobs}
        for future in as_completed(list(futures), loop=client.loop):
            job = futures[future]
            try:
                outcome = future.result()
            except Exception as err:  # a worker died (KilledWorker), a task was cancelled
                outcome = SceneOutcome(job.scene, error=f"on the Dask cluster: "
                                       f"{type(err).__name__}: {err}")
            record_outcome(plan, outcome)
            bar.update()
    finally:
        if own:
            client.close()


def export_scenes(plan: ExportPlan, jobs: Sequence[SceneJob], workers: int | None = 1,
                  progress: bool = True, scheduler: Any = None) -> None:
    """Step 4: export ``jobs``, recording each outcome (`record_outcome`) as it arrives.

    The outcomes are merged into the manifest by this process alone (each rewrite atomic),
    however the scenes run; a scene exports the same files whichever way it runs.

    Args:
        plan: the run's state.
        jobs: the scenes to export (`resume_exported` gives them).
        workers: scenes exported in parallel, in "spawn" worker processes; None: as many as
            the cores and the memory allow (`choose_workers`); if they cannot start, the
            scenes are exported in this process, with a ``RuntimeWarning``.
        progress: show a tqdm progress bar.
        scheduler: a Dask distributed scheduler address (``tcp://host:8786``) or a
            ``distributed.Client``: each scene a task on that cluster, whose workers must see
            ``plan.src`` and ``plan.out`` at the same paths and have spanetlib installed.
            ``workers`` is then not used.

    Raises:
        InputError: Dask distributed is not installed, or the scheduler cannot be reached.
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
        if scheduler is not None:
            if runnable:
                _export_on_dask(plan, runnable, scheduler, bar)
            return
        if workers is None and len(runnable) > 1:
            peaks = []
            for job in runnable:
                try:
                    peaks.append(scene_peak_bytes(job))
                except Exception:  # an unreadable scene fails in its own export
                    peaks.append(0)
            workers = choose_workers(peaks, cpus_available(), host_memory_available())
        if workers is not None and workers > 1 and len(runnable) > 1:
            runnable = _export_in_workers(plan, runnable, workers, bar)
            if runnable:  # workers could not start (e.g. a script without a __main__ guard)
                warnings.warn(f"export_dataset: worker processes failed ({len(runnable)} "
                              "scenes left); exporting those in this process", RuntimeWarning,
                              stacklevel=3)
        for job in runnable:
            record_outcome(plan, _run_job(job))
            bar.update()


# --------------------------------------------------------------------------------------------
# Step 5: split, lists and manifest
# --------------------------------------------------------------------------------------------
def _exported(plan: ExportPlan) -> list[str]:
    """The planned scenes exported with at least one pair (this run or an earlier one)."""
    return [job.scene for job in plan.jobs if job.scene in plan.records
            and _rejection(plan.records[job.scene]) is None
            and plan.records[job.scene]["pairs"]]


def split_exported(plan: ExportPlan) -> None:
    """Step 5a: the test scenes, chosen among the EXPORTED scenes with pairs only.

    Scenes not exported (not selected, auto-rejected, failed) and scenes whose every patch
    was dropped take no place in the split, so the test fraction applies to the scenes that
    have pairs: a single such scene always goes to the training list, whatever the others
    did. Sets ``summary.scenes_with_pairs``.
    """
    exported = _exported(plan)
    plan.test_scenes = _split_scenes(exported, plan.settings.test_fraction, plan.settings.seed)
    plan.summary.scenes_with_pairs = len(exported)
    plan.split_decided = True


def write_lists(plan: ExportPlan) -> None:
    """Step 5b: write ``train.txt`` and ``test.txt`` from the records, split by scene.

    Splits first (`split_exported`) when that has not run. Sets the summary's scenes and pair
    counts per split.
    """
    if not plan.split_decided:
        split_exported(plan)
    summary = plan.summary
    train: list[tuple[Path, Path]] = []
    test: list[tuple[Path, Path]] = []
    summary.train_scenes, summary.test_scenes = [], []
    summary.unpaired_frames = summary.dropped_patches = 0
    for job in plan.jobs:
        record = plan.records.get(job.scene)
        if record is None or _rejection(record) is not None:
            continue
        summary.unpaired_frames += record.get("frames_unpaired", 0)
        summary.dropped_patches += record.get("patches", {}).get("dropped", 0)
        summary.scene_reports[job.scene] = _scene_line(record)
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


#: Record keys copied into a scene's manifest entry when present.
_MANIFEST_KEYS = ("n", "percentile", "density", "decision", "frames", "frames_paired",
                  "frames_unpaired", "align", "motion", "periods", "periods_left_out",
                  "patches", "quality", "auto_review", "source")


def _scene_line(record: dict[str, Any]) -> str:
    """One line per exported scene: motion, periods, frames paired, pairs, quality."""
    motion, patches = record.get("motion"), record.get("patches")
    if motion is None or patches is None:  # a record of an older export
        return f"{record['scene']}: {len(record['pairs'])} pairs"
    periods = len(record["periods"])
    left_out = record.get("periods_left_out")
    return (f"{record['scene']}: N = {record['n']}, motion {motion['model']} up to "
            f"{motion['largest_displacement_px']:.1f} px ({motion['warped']} warped), "
            f"{periods} stable period{'s' if periods != 1 else ''}, {record['frames_paired']}/"
            f"{record['n']} frames paired, {len(record['pairs'])} pairs ({patches['dropped']} "
            f"patches dropped), quality {record['quality']['score']:.2f}"
            + (f"; {left_out_line(left_out)}" if left_out else ""))


def _manifest_entry(plan: ExportPlan, record: dict[str, Any]) -> dict[str, Any]:
    reason = _rejection(record)
    entry: dict[str, Any] = {"status": "exported" if reason is None else "not-exported"}
    if reason is None and plan.split_decided:
        entry["split"] = "test" if record["scene"] in plan.test_scenes else "train"
    else:
        entry["reason"] = reason
    entry.update({key: record[key] for key in _MANIFEST_KEYS if key in record})
    entry["pairs"] = len(record["pairs"])
    return entry


def write_manifest(plan: ExportPlan) -> None:
    """Write ``manifest.json``: settings, and per scene what was exported and why.

    Per exported scene: N, p, density, decision, pairs, split, the align mode and measured
    motion (model, largest displacement, median residual, frames warped, exposure-corrected,
    paired, in transitions), each stable period (frames, p, reliable and valid shares, noise
    sigma, aligned), the patches considered, written and dropped under the unreliable-pixel
    policy, and the quality judgement (score, reasons; auto-accept: every judgement).

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
                   workers: int | None = None, seed: int = 0, density: str | None = None,
                   align: str = "auto", unreliable: str = "drop",
                   overwrite: bool = False, progress: bool = True, scheduler: Any = None,
                   report: Callable[[str], None] | None = None) -> ExportSummary:
    """Export reviewed rain videos as an SPA-Data style set of rain/clean patch pairs.

    The library side of ``spanet build-dataset SRC -o OUT``. ``SRC`` holds one video file (any
    container FFmpeg decodes) or frame folder per scene (`spanetlib.io.video.scan_scenes`); a
    scene's name is the file's stem or the folder's name. Every other entry of ``SRC`` is
    skipped and named with the reason (`ExportSummary.skipped`, and ``report``). Which scenes
    are exported, with which clean image:

    - with ``review_file``: the scenes accepted there, at the review's N, density and align
      mode. The review must have been made on the same content (each scene's recorded
      `spanetlib.io.video.source_identity`, else the run is refused before any work), and the
      frames must still give the clean images accepted (else that scene fails);
    - with ``auto_accept``: scenes without a decision (not in the review file, or pending
      there) too, reviewed in batch as `spanetlib.pipeline.review_widget.run_review` does in
      mode "auto": density guessed (`spanetlib.pipeline.selection.guess_density`, or
      ``density`` for all), N = ``FRAME_COUNTS[density]`` (capped by the frames), the estimate
      accepted iff `spanetlib.pipeline.quality.scene_quality` accepts it, else N grows by
      ``REJECT_INCREMENT``; a scene never accepted is not exported (the manifest gives its
      score and reasons).

    Every scene's estimate is `spanetlib.pipeline.review.review_estimate` of its N frames (the clip
    estimator: alignment, stable periods, pair checks; see the module docstring). Each paired
    frame is cut into ``crop x crop`` patches on a grid with step ``stride`` inside its valid
    region (plus one row / column flush with the region's bottom / right border; a region
    smaller than ``crop`` along an axis is used whole along it, and ``crop=None`` keeps the
    whole region), each paired with the clean patch of the frame's own period. The unusable
    pixels of a written rain patch take the clean patch's values (the pair agrees there);
    ``unreliable`` (`UNRELIABLE_POLICIES`) decides which patches are written: ``"drop"``
    (default) leaves out those with more than `DROP_MAX_UNUSABLE` unusable pixels, ``"mask"``
    keeps those at least `MASK_MIN_USABLE` usable and writes a mask of the usable pixels.

    Layout (all paths in the lists relative to ``OUT``, ``/`` separators)::

        OUT/<scene>/clean.png                 clean image (reference frame's coordinates)
        OUT/<scene>/reliability.png           its reliability map: 255 reliable, 0 not or
                                              outside the valid region (8-bit score)
        OUT/<scene>/clean_period<k>.png, reliability_period<k>.png
                                              the same per stable period k = 1, 2, ... when
                                              the scene changed
        OUT/<scene>/clean/<y>_<x>.png         clean patch at (y, x), shared by the frames
                                              that were not warped (period<k>_<y>_<x>.png
                                              with several periods)
        OUT/<scene>/clean/<frame>_<y>_<x>.png clean patch of a warped or exposure-corrected
                                              frame (its clean image in its own pixels)
        OUT/<scene>/rain/<frame>_<y>_<x>.png  rain patch of frame <frame> (zero-padded index)
        OUT/<scene>/mask/<frame>_<y>_<x>.png  policy "mask": its usable pixels (255)
        OUT/<scene>/done.json                 per-scene record, written last (resume marker)
        OUT/train.txt, OUT/test.txt           "rain clean" pair lists, split by scene
        OUT/manifest.json                     per scene: N, p, density, decision, pairs,
                                              split, motion, periods, patches, quality

    ``frames_per_video`` K: export K of the paired frames, spread evenly over them (default:
    every paired frame). The split is by scene, so no scene is in both lists, and among the
    EXPORTED scenes only (scenes not selected, auto-rejected or failed take no place in it):
    ``round(test_fraction * exported)`` test scenes (at least one when >= 2 scenes are
    exported and ``test_fraction > 0``, and at least one training scene), chosen by a hash of
    ``(seed, name)``, so it is deterministic and a scene keeps its side when others are added
    where the counts allow. A list that comes out empty though asked for (``train.txt``
    always; ``test.txt`` when ``test_fraction > 0``: a single scene exported) gives a
    ``UserWarning`` and `ExportSummary.empty_splits` names it (the CLI then exits with 1).

    Parallel work: by default as many worker processes as `choose_workers` allows (the
    cores, as far as the memory holds each scene's peak, `scene_peak_bytes`); ``workers``
    sets the count; ``scheduler`` sends each scene as a task to a Dask distributed cluster
    instead (``pip install "spanetlib[cluster]"``). This process alone writes the manifest
    and the lists, each rewrite atomic; the files are the same whichever way the scenes run.

    Scene names: a scene's name (`spanetlib.io.video.scene_name`) names its folder and goes into
    the pair lists, whose format cannot hold whitespace; a name with whitespace or other
    unsafe characters is replaced by a safe one (``my street`` -> ``my_street-3abb2a40``),
    recorded in the manifest (``original_name``) and `ExportSummary.renamed`. Two scenes that
    give the same name (``a.mp4`` and a folder ``a``) are refused before any work.

    An existing ``OUT`` (`check_output`): an export made with the same settings is resumed;
    one made with other settings (crop, stride, K, test fraction, seed, density, align,
    unreliable, ``src``) is refused, naming the differences, unless ``overwrite``, which
    deletes that export's own files (nothing else) and starts afresh; a non-empty folder that
    holds no export is refused.

    Resume: a scene whose ``done.json`` exists (and was made with the same crop, stride, K,
    align mode, policy and decision, including the time of the accept) is kept; the export
    files of a scene folder without it are deleted and the scene redone. The lists and the
    manifest are rebuilt from the ``done.json`` files at every run (folders of scenes an
    earlier run exported but this one does not select stay on disk, outside the lists).
    A scene that cannot be read fails alone: the others are exported and
    `ExportSummary.failed` names it.

    Args:
        src: folder of scenes.
        out: dataset folder (created).
        review_file: a `spanetlib.pipeline.review.ReviewSession` file.
        auto_accept: export scenes without a decision, as described above.
        crop: patch size in pixels, or None for whole images.
        stride: patch step (default ``crop``: no overlap).
        frames_per_video: paired frames K exported per scene (default: all).
        test_fraction: share of scenes in the test list, in [0, 1).
        workers: scenes exported in parallel, in "spawn" worker processes; None: as many
            as the cores and the memory allow (`choose_workers`). A script calling this with
            more than one worker needs the usual ``if __name__ == "__main__":`` guard; if the
            workers cannot start, the scenes are exported in this process instead.
        seed: seed of the train/test split.
        density: density for auto-accepted scenes (None: guess per scene).
        align: align mode of auto-accepted scenes ("auto", "on", "off").
        unreliable: "drop" or "mask" (`UNRELIABLE_POLICIES`).
        overwrite: replace an export in ``out`` made with other settings (``--overwrite``).
        progress: show a tqdm progress bar.
        scheduler: a Dask distributed scheduler address (``tcp://host:8786``) or a
            ``distributed.Client``: each scene a task there (its workers must see ``src`` and
            ``out`` at the same paths); not with ``workers``.
        report: called with one line per entry of ``src`` skipped, per scene not exported
            and per scene failed, as soon as it is known (the CLI prints them).

    Returns:
        An `ExportSummary`.

    Warns:
        UserWarning: ``train.txt``, or ``test.txt`` with ``test_fraction > 0``, came out
            empty (one line each, `ExportSummary.split_warnings`).

    Raises:
        InputError: Dask distributed is missing or the scheduler cannot be reached (with
            ``scheduler``); ``src`` or ``review_file`` is missing, ``src`` holds no scenes or two
            scenes with one name, neither ``review_file`` nor ``auto_accept`` is given, the
            review was made on other content, or ``out`` cannot be used (see
            `check_output`); all before any scene is exported.
        ValueError: a bad ``crop``, ``stride``, ``frames_per_video``, ``test_fraction``,
            ``workers``, ``density``, ``align`` or ``unreliable``; ``workers`` with
            ``scheduler``.
    """
    settings = ExportSettings(crop=crop, stride=stride, frames_per_video=frames_per_video,
                              test_fraction=test_fraction, seed=seed, auto_accept=auto_accept,
                              density=density, align=align, unreliable=unreliable)
    check_positive("workers", workers, allow_none=True)
    if workers is not None and scheduler is not None:
        raise ValueError("workers and scheduler: pass one of them (a Dask cluster sets its own "
                         "number of workers)")
    plan = plan_export(src, out, review_file, settings)
    plan.report = report
    for name, reason in plan.summary.skipped.items():
        plan.tell(f"skipped {name}: {reason}")
    for name, reason in plan.summary.not_exported.items():
        plan.tell(f"not exported: {name}: {reason}")
    check_output(plan, overwrite)
    # the cluster is reached before anything is written
    client, own = _dask_client(scheduler) if scheduler is not None else (None, False)
    try:
        plan.out.mkdir(parents=True, exist_ok=True)
        todo = resume_exported(plan)
        write_manifest(plan)
        export_scenes(plan, todo, workers=workers, progress=progress, scheduler=client)
    finally:
        if own:
            client.close()
    split_exported(plan)
    write_lists(plan)
    write_manifest(plan)
    for line in plan.summary.split_warnings():
        warnings.warn(line, UserWarning, stacklevel=2)
    return plan.summary
