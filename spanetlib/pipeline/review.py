"""Reviewing clean-image estimates: the session of the paper's "Selection of N" loop (Sec. 3).

For each rain video a clean image is estimated from the first N frames; a person judges it,
and N grows until the estimate is clean. The estimate is the clip estimator's
(`spanetlib.pipeline.clip_estimate.estimate_clip`, align mode ``"auto"`` by default): camera motion
measured and undone where it matters, one estimate (Eqs. 2-4) per stable period of the scene,
each with its reliability map. The rules (initial N per density, frames added per rejection,
the density guess) live in `spanetlib.pipeline.selection`, with the no-reference quality score that
stands in for the person in batch runs (`spanetlib.pipeline.quality.scene_quality`).

- `ReviewSession` holds the decisions in a JSON file, rewritten atomically after every change,
  so a crash or a kernel restart loses nothing and a new session object resumes. Each scene
  records the identity of its source (`spanetlib.io.video.source_identity`: path, size, frame
  count, a hash of the first decoded frames); a review is never applied to other content:
  adding a scene under a name the file holds for other frames, or loading frames that changed
  since, is refused with one line naming both.
- `review_batch` drives a session without a person, for batch runs (papermill): ``"auto"``
  accepts a scene iff `spanetlib.pipeline.quality.scene_quality` accepts its estimate, else rejects
  it (adding frames) until accepted or exhausted, and records the score and its reasons;
  ``"file"`` replays a review file; ``"interactive"`` returns the notebook's
  `spanetlib.pipeline.review_widget.ReviewWidget`.

Review file (JSON, ``"format": "spanetlib-review"``, ``"version": 2``)::

    {"format": "spanetlib-review", "version": 2, "created": ISO-8601, "updated": ISO-8601,
     "scenes": {NAME: {
        "name": NAME, "source": path of the video file or frame folder (absolute, or
            relative to the review file's folder),
        "identity": {"path", "size", "frames", "digest"} (`spanetlib.io.video.SourceIdentity`),
        "align": "auto" | "on" | "off" (`spanetlib.pipeline.alignment.ALIGN_MODES`),
        "density": "sparse" | "normal" | "dense", "density_guessed": bool,
        "n": frames used now, "start": first frame, "frames_available": int,
        "status": "pending" | "accepted" | "rejected-needs-more" | "skipped" | "exhausted",
        "history": [{"decision": "accept" | "reject" | "skip", "n": int,
                     "timestamp": ISO-8601, "quality": QUALITY (batch decisions)}, ...],
        "clean_image": the accepted clean image of the first period, relative to the review
            file's folder ("clean/NAME.png") | null,
        "clean_images": one per stable period ("clean/NAME.png", or "clean/NAME_period1.png",
            "clean/NAME_period2.png", ... when the scene changed) | null,
        "periods": [{"start", "stop", "frames", "percentile", "reliable_share", "valid_share",
                     "noise_sigma", "aligned"}, ...] of the accepted estimate | null,
        "motion": {"model", "largest_displacement_px", "median_residual", "warped",
                   "exposure_corrected", "paired", "transitions"} of the accepted estimate,
        "quality": {"score", "accept", "reasons", "cues"} of the last judged estimate | null,
        "percentile": p of the first period (Eq. 4, percent) | null,
        "periods_accepted": the periods of the estimate of N frames that were accepted
            (indices, time order) when a batch review accepted only part of the scene
            (`accepted_part`) | null (all),
        "periods_left_out": [{"period", "start", "stop", "frames", "reasons"}, ...] of the
            periods a partial accept left out | null}}}

Version 1 files (before source identities) are read: a scene without an identity is bound to
the content at its recorded path on first use, with a warning; given another path it is
refused (nothing tells the two apart).
"""

from __future__ import annotations

import copy
import json
import os
import re
import warnings
from collections import OrderedDict
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from tqdm.auto import tqdm

from spanetlib.io.checks import check_int
from spanetlib.io.errors import InputError
from spanetlib.io.files import atomic_write_json, check_image_values, round_to_uint8, write_image
from spanetlib.io.video import (
    SCENE_NAME_PATTERN,
    FrameSource,
    SourceIdentity,
    read_sequence,
    source_identity,
)
from spanetlib.pipeline.alignment import ALIGN_MODES, get_align_mode
from spanetlib.pipeline.clip_estimate import ClipEstimate, estimate_clip
from spanetlib.pipeline.quality import SceneQuality, scene_quality
from spanetlib.pipeline.resample import warp_frame
from spanetlib.pipeline.selection import (
    DENSITIES,
    FRAME_COUNTS,
    GUESS_FRAMES,
    REJECT_INCREMENT,
    guess_density,
)

__all__ = [
    "BATCH_REVIEW_MODES",
    "MIN_PERIOD_FRAMES",
    "PENDING_STATUSES",
    "REVIEW_MODES",
    "STATUSES",
    "ReviewSession",
    "accepted_part",
    "clip_record",
    "grow_n",
    "left_out_line",
    "quality_record",
    "reliable_for_frame",
    "review_batch",
    "review_estimate",
]

STATUSES: tuple[str, ...] = ("pending", "accepted", "rejected-needs-more", "skipped",
                             "exhausted")
#: Statuses of scenes still waiting for a judgement (new, or rejected with frames to add).
PENDING_STATUSES: tuple[str, ...] = ("pending", "rejected-needs-more")
REVIEW_MODES: tuple[str, ...] = ("auto", "file", "interactive")
#: The modes `review_batch` runs without a person.
BATCH_REVIEW_MODES: tuple[str, ...] = ("auto", "file")

_DONE = ("accepted", "skipped", "exhausted")
_DECISIONS = ("accept", "reject", "skip")
_FORMAT = "spanetlib-review"
_VERSION = 2
_READABLE_VERSIONS = (1, 2)
#: Fewest frames a stable period needs for its own estimate (fewer leave rain in it); a scene
#: reviewed with fewer frames than this uses all of them.
MIN_PERIOD_FRAMES = 5
_NAME_RE = re.compile(f"^{SCENE_NAME_PATTERN}$")


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _check_density(density: str) -> str:
    if density not in FRAME_COUNTS:
        raise ValueError(f"density must be one of {DENSITIES}, got {density!r}")
    return density


def review_estimate(frames: np.ndarray | FrameSource, align: str = "auto", *,
                    quality: bool = True) -> ClipEstimate:
    """The estimate a review judges: `estimate_clip` of the frames, per stable period.

    A period needs `MIN_PERIOD_FRAMES` frames (all of them when fewer are reviewed). A
    `spanetlib.io.video.FrameSource` is streamed (memory bounded whatever the clip's length).

    Args:
        frames: N x H x W x 3 uint8 RGB, N >= 2, or a `spanetlib.io.video.FrameSource`.
        align: an `spanetlib.pipeline.alignment.ALIGN_MODES` name.
        quality: measure the evidence `spanetlib.pipeline.quality.scene_quality` needs
            (False where no quality is judged: the clean images are the same).
    """
    return estimate_clip(frames, align, min_frames=max(2, min(MIN_PERIOD_FRAMES, len(frames))),
                         quality=quality)


def grow_n(n: int, density: str, available: int) -> int | None:
    """N after a rejection: ``n + REJECT_INCREMENT[density]`` capped by ``available``.

    Returns None when ``n`` already uses every available frame (the scene is exhausted).

    Example:
        >>> grow_n(20, "sparse", 100), grow_n(95, "sparse", 100), grow_n(100, "sparse", 100)
        (30, 100, None)
    """
    if n >= available:
        return None
    return min(n + REJECT_INCREMENT[_check_density(density)], available)


def quality_record(quality: SceneQuality) -> dict[str, Any]:
    """A `spanetlib.pipeline.quality.SceneQuality` as JSON: score, accept, reasons, cues."""
    return {"score": float(quality.score), "accept": bool(quality.accept),
            "reasons": [str(r) for r in quality.reasons],
            "cues": {str(k): float(v) for k, v in quality.cues.items()}}


def accepted_part(estimate: ClipEstimate, quality: SceneQuality
                  ) -> tuple[ClipEstimate, SceneQuality, list[dict[str, Any]]] | None:
    """The part of a scene a batch review accepts when the scene as a whole is not.

    Used once the scene's frames are exhausted (more frames cannot help): the periods that
    pass on their own (`SceneQuality.accepted_periods`) are kept, the others left out. A
    clip whose camera pans fast at its start, say, keeps its long steady period instead of
    losing it to two short ones.

    Args:
        estimate: the scene's estimate of every frame.
        quality: its `scene_quality`, which did not accept it.

    Returns:
        None when no period passes on its own; else the estimate of the kept periods
        (`ClipEstimate.only_segments`), their judgement (accepted), and per left-out period
        its index, frames (start, stop, count) and why it was left out.
    """
    keep = quality.accepted_periods
    if quality.accept or not keep:
        return None
    part = estimate.only_segments(keep)
    left_out = [{"period": k, "start": seg.start, "stop": seg.stop, "frames": len(seg.frames),
                 "reasons": list(quality.period_reasons[k])}
                for k, seg in enumerate(estimate.segments) if k not in keep]
    return part, scene_quality(part), left_out


def left_out_line(left_out: list[dict[str, Any]]) -> str:
    """One phrase for the periods a partial accept left out: which frames, and why."""
    return "; ".join(f"period {p['period']} (frames {p['start']}-{p['stop'] - 1}) left out: "
                     + ", ".join(p["reasons"]) for p in left_out)


def clip_record(result: ClipEstimate) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """What a review file and an export manifest say about a clip estimate.

    Returns:
        ``(periods, motion)``: per stable period its frames (start, stop, frames used),
        percentile p, reliable and valid shares, noise sigma and whether its frames were
        aligned; for the clip the motion model, the largest displacement (pixels), the median
        registration residual (levels), the frames warped, exposure-corrected, paired and in
        transitions.
    """
    periods = [{"start": seg.start, "stop": seg.stop, "frames": len(seg.frames),
                "percentile": float(seg.percentile),
                "reliable_share": float(seg.reliability.reliable_share),
                "valid_share": float(seg.valid.mean()), "noise_sigma": float(seg.noise_sigma),
                "aligned": bool(seg.aligned)} for seg in result.segments]
    residual = result.motion.residual
    motion = {"model": result.motion.model, "align": result.mode.name,
              "largest_displacement_px": float(result.motion.displacement.max()),
              "median_residual": float(np.nanmedian(residual)) if np.isfinite(residual).any()
              else None,
              "warped": int(result.warped.sum()), "exposure_corrected": int(result.exposed.sum()),
              "paired": int((result.membership >= 0).sum()),
              "transitions": int((result.period < 0).sum()), "frames": result.n_frames}
    return periods, motion


def reliable_for_frame(result: ClipEstimate, index: int) -> np.ndarray:
    """H x W bool: pixels of frame ``index`` where its period's estimate is valid and reliable.

    The period's `spanetlib.pipeline.background.Reliability` map (reference coordinates) brought
    into the frame's pixels (nearest neighbour) when the frame was warped.

    Raises:
        ValueError: the frame belongs to no period.
    """
    valid = result.valid_for_frame(index)  # checks the index and the frame's period
    reliable = result.segments[int(result.membership[index])].reliability.reliable
    if not result.warped[index]:
        return reliable & valid
    back = warp_frame(reliable.astype(np.uint8), np.linalg.inv(result.motion.matrices[index]),
                      cv2.INTER_NEAREST, dering=False)
    return (back > 0) & valid


# --------------------------------------------------------------------------------------------
# ReviewSession
# --------------------------------------------------------------------------------------------
def _read_frames(source: Path, start: int, count: int) -> np.ndarray:
    return read_sequence(source, start=start, count=count, min_frames=1)


class ReviewSession:
    """Review state of a set of rain scenes, saved to a JSON file after every change.

    Every change (adding a scene, a decision, a new density) writes the whole file atomically
    (`spanetlib.io.files.atomic_write_json`); the in-memory state is replaced only after the
    write succeeded, so memory and disk always agree. ``ReviewSession(path)`` on an existing
    file resumes where the last one stopped. See the module docstring for the file's schema.

    Every scene is bound to its source's content (`spanetlib.io.video.source_identity`): the
    first time a session reads a scene's frames, and whenever `add_scene` meets a name the file
    already holds, the source is identified again and compared; other content is refused.

    Args:
        path: the review file (created on the first change; its folder also gets ``clean/``).
        cache_scenes: how many scenes' frames to keep in memory for `estimate`.
        align: align mode of the scenes this session adds
            (`spanetlib.pipeline.alignment.ALIGN_MODES`: "auto", the default, warps only frames that
            moved; "on"; "off").

    Raises:
        InputError: the file exists but is not a valid review file (it is left unchanged).
        ValueError: an unknown ``align``.
    """

    def __init__(self, path: str | os.PathLike, cache_scenes: int = 2,
                 align: str = "auto") -> None:
        self.path = Path(path)
        self.root = self.path.absolute().parent
        self.cache_scenes = max(1, int(cache_scenes))
        self.align = get_align_mode(align).name
        self._frames: OrderedDict[str, np.ndarray] = OrderedDict()
        self._estimates: dict[tuple[str, int], ClipEstimate] = {}
        self._bound: set[str] = set()
        if self.path.exists():
            self._data = self._load()
        else:
            now = _now()
            self._data = {"format": _FORMAT, "version": _VERSION, "created": now,
                          "updated": now, "scenes": {}}

    # ---------------------------------------------------------------- persistence
    def _corrupt(self, reason: str) -> InputError:
        return InputError(f"review file {self.path} is not a valid review file ({reason}); "
                          "it was left unchanged: repair it or choose another path")

    def _load(self) -> dict[str, Any]:
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as err:
            raise self._corrupt(f"not JSON: {err}") from None
        except OSError as err:
            raise InputError(f"cannot read review file {self.path}: {err}") from None
        if not isinstance(data, dict) or data.get("format") != _FORMAT:
            raise self._corrupt(f"expected a JSON object with \"format\": \"{_FORMAT}\"")
        if data.get("version") not in _READABLE_VERSIONS:
            raise self._corrupt(f"unsupported version {data.get('version')!r}")
        scenes = data.get("scenes")
        if not isinstance(scenes, dict):
            raise self._corrupt("\"scenes\" is not an object")
        for name, entry in scenes.items():
            problem = self._entry_problem(name, entry)
            if problem:
                raise self._corrupt(f"scene {name!r}: {problem}")
            entry.setdefault("align", "auto")  # version 1: before alignment, "auto" now
        data["version"] = _VERSION  # written as version 2 from the next change on
        return data

    @staticmethod
    def _entry_problem(name: str, entry: Any) -> str | None:
        if not isinstance(entry, dict):
            return "not an object"
        if entry.get("name") != name or not _NAME_RE.match(name):
            return "bad name"
        if entry.get("density") not in FRAME_COUNTS:
            return f"density {entry.get('density')!r} not in {DENSITIES}"
        if entry.get("status") not in STATUSES:
            return f"status {entry.get('status')!r} not in {STATUSES}"
        for key in ("n", "start", "frames_available"):
            if not isinstance(entry.get(key), int) or entry[key] < 0:
                return f"{key} is not a non-negative integer"
        if not isinstance(entry.get("source"), str):
            return "source is not a string"
        if entry.get("align", "auto") not in ALIGN_MODES:
            return f"align {entry.get('align')!r} not in {tuple(ALIGN_MODES)}"
        if entry.get("identity") is not None:
            try:
                SourceIdentity.from_dict(entry["identity"])
            except ValueError as err:
                return str(err)
        images = entry.get("clean_images")
        if images is not None and not (isinstance(images, list)
                                       and all(isinstance(x, str) for x in images)):
            return "clean_images is not a list of paths"
        history = entry.get("history")
        if not isinstance(history, list) or not all(
                isinstance(h, dict) and h.get("decision") in _DECISIONS for h in history):
            return "bad history"
        return None

    def _commit(self, data: dict[str, Any]) -> None:
        data["updated"] = _now()
        atomic_write_json(self.path, data)
        self._data = data

    # ---------------------------------------------------------------- queries
    @property
    def scenes(self) -> dict[str, dict[str, Any]]:
        """All scenes, name -> a copy of its state (insertion order)."""
        return copy.deepcopy(self._data["scenes"])

    def scene(self, name: str) -> dict[str, Any]:
        """A copy of one scene's state (see the module docstring for the keys)."""
        return copy.deepcopy(self._entry(name))

    def _entry(self, name: str) -> dict[str, Any]:
        scenes = self._data["scenes"]
        if name not in scenes:
            raise ValueError(f"unknown scene {name!r}; choices: {list(scenes)}")
        return scenes[name]

    def source(self, name: str) -> Path:
        """The scene's video file or frame folder (relative paths: to the review folder)."""
        source = Path(self._entry(name)["source"])
        return source if source.is_absolute() else self.root / source

    def identity(self, name: str) -> SourceIdentity | None:
        """The recorded identity of the scene's source (None: a version 1 entry)."""
        recorded = self._entry(name).get("identity")
        return None if recorded is None else SourceIdentity.from_dict(recorded)

    def clean_image_path(self, name: str) -> Path | None:
        """The accepted clean image's absolute path (the first period's), or None."""
        rel = self._entry(name).get("clean_image")
        return None if rel is None else self.root / rel

    def clean_image_paths(self, name: str) -> list[Path]:
        """The accepted clean images, one per stable period (empty when not accepted)."""
        entry = self._entry(name)
        rels = entry.get("clean_images")
        if rels is None:  # version 1: one image
            rels = [] if entry.get("clean_image") is None else [entry["clean_image"]]
        return [self.root / rel for rel in rels]

    def pending(self) -> list[str]:
        """Scenes still waiting for a judgement (new, or rejected with frames to add)."""
        return [n for n, e in self._data["scenes"].items() if e["status"] in PENDING_STATUSES]

    def next_pending(self, after: str | None = None) -> str | None:
        """The first pending scene after ``after`` in order (wrapping around), or None."""
        names = list(self._data["scenes"])
        if after in names:
            i = names.index(after)
            names = names[i + 1:] + names[:i + 1]
        for name in names:
            if self._data["scenes"][name]["status"] in PENDING_STATUSES:
                return name
        return None

    def progress(self) -> tuple[int, int]:
        """``(reviewed, total)``: scenes accepted, skipped or exhausted, and all scenes."""
        scenes = self._data["scenes"].values()
        return sum(e["status"] in _DONE for e in scenes), len(self._data["scenes"])

    def __len__(self) -> int:
        return len(self._data["scenes"])

    def __contains__(self, name: object) -> bool:
        return name in self._data["scenes"]

    def __repr__(self) -> str:
        done, total = self.progress()
        return f"ReviewSession({str(self.path)!r}: {done} of {total} reviewed)"

    # ---------------------------------------------------------------- source identity
    def check_source(self, name: str, source: str | os.PathLike | None = None,
                     record: bool = True) -> None:
        """Refuse to review ``name`` on content other than the file records for it.

        ``source`` (default: the recorded one) is identified (`spanetlib.io.video.source_identity`)
        and compared with the recorded identity: the same frames pass (a moved folder too:
        the recorded path is updated); other frames are refused. A version 1 entry (no
        identity) is bound to its recorded path's content, with a warning; another path is
        refused (nothing tells the two apart).

        Args:
            name: a scene of this session.
            source: the video file or frame folder to check (default: the recorded one).
            record: write a new path or a first identity into the file (False: only check).

        Raises:
            InputError: one line naming the review file, the recorded and the given source.
        """
        entry = self._entry(name)
        given = self.source(name) if source is None else Path(source)
        current = source_identity(given)
        recorded = self.identity(name)
        if recorded is None:
            if Path(current.path) != self.source(name).resolve():
                raise InputError(
                    f"review file {self.path}: scene {name!r} was reviewed on "
                    f"{self.source(name)} by an older spanetlib that did not record its "
                    f"content, so {current.path} cannot be told apart from it; review "
                    f"{current.path} in a new review file")
            warnings.warn(f"review file {self.path}: scene {name!r} has no recorded source "
                          f"identity (an older review file); binding it to the frames now at "
                          f"{current.describe()}", UserWarning, stacklevel=3)
        elif not recorded.same_content(current):
            raise InputError(
                f"review file {self.path}: scene {name!r} was reviewed on "
                f"{recorded.describe()} but {current.describe()} holds other frames; refusing "
                "to apply that review to it (review it in a new review file)")
        if record and (recorded != current or entry["source"] != current.path):
            data = copy.deepcopy(self._data)
            data["scenes"][name].update(identity=current.to_dict(), source=current.path)
            self._commit(data)
        self._bound.add(name)

    # ---------------------------------------------------------------- changes
    def add_scene(self, name: str, source: str | os.PathLike, density: str | None = None,
                  n: int | None = None, start: int = 0, align: str | None = None
                  ) -> dict[str, Any]:
        """Add a scene (idempotent: a scene already there keeps its state).

        A scene already there must be the same content (`check_source`): a review file made
        on another folder whose scenes have the same names is refused, not resumed.

        Args:
            name: letters, digits, ``.``, ``_``, ``-`` (it names files); see
                `spanetlib.io.video.scene_name`.
            source: the scene's video file or frame folder.
            density: "sparse", "normal" or "dense"; None reads `GUESS_FRAMES` frames and
                uses `guess_density`.
            n: initial frame count N (>= 2); None uses ``FRAME_COUNTS[density]``. Capped by
                the frames available after ``start``.
            start: first frame used.
            align: align mode of its estimate (default: the session's).

        Returns:
            A copy of the scene's state.

        Raises:
            ValueError: a bad name, density, ``n``, ``start`` or ``align``.
            InputError: the source is missing or unreadable, has no frame at ``start``, or
                differs from the content recorded under ``name``.
        """
        if not isinstance(name, str) or not _NAME_RE.match(name):
            raise ValueError(f"scene name must match {_NAME_RE.pattern} (it names files), "
                             f"got {name!r}")
        if name in self._data["scenes"]:
            self.check_source(name, source)
            return self.scene(name)
        if density is not None:
            _check_density(density)
        align = self.align if align is None else get_align_mode(align).name
        check_int("n", n, minimum=2, allow_none=True)
        check_int("start", start, minimum=0)
        source_path = Path(source)
        if not source_path.exists():
            raise InputError(f"scene source not found: {source_path}")
        identity = source_identity(source_path)
        available = identity.frames - start
        if available < 2:
            raise InputError(f"{source_path} has {max(available, 0)} frame(s) from frame "
                             f"{start}; a background estimate needs at least 2")
        guessed = density is None
        if guessed:
            frames = _read_frames(source_path, start, min(GUESS_FRAMES, available))
            density = guess_density(frames)
        n = FRAME_COUNTS[density] if n is None else n
        entry = {
            "name": name,
            "source": identity.path,
            "identity": identity.to_dict(),
            "align": align,
            "density": density,
            "density_guessed": guessed,
            "n": min(n, available),
            "start": start,
            "frames_available": available,
            "status": "pending",
            "history": [],
            "clean_image": None,
            "clean_images": None,
            "periods": None,
            "motion": None,
            "quality": None,
            "percentile": None,
            "periods_accepted": None,
            "periods_left_out": None,
        }
        data = copy.deepcopy(self._data)
        data["scenes"][name] = entry
        self._commit(data)
        self._bound.add(name)
        return copy.deepcopy(entry)

    def _decide(self, name: str, decision: str, quality: SceneQuality | None = None,
                **changes: Any) -> dict[str, Any]:
        data = copy.deepcopy(self._data)
        entry = data["scenes"][name]
        step = {"decision": decision, "n": entry["n"], "timestamp": _now()}
        if changes.get("periods_accepted") is not None:  # replayed as it was decided
            step["periods"] = changes["periods_accepted"]
            step["periods_left_out"] = changes["periods_left_out"]
        if quality is not None:
            step["quality"] = quality_record(quality)
            changes["quality"] = step["quality"]
        entry["history"].append(step)
        entry.update(changes)
        self._commit(data)
        return copy.deepcopy(entry)

    def accept(self, name: str, clean_image: Any, percentile: float | None = None,
               quality: SceneQuality | None = None, *,
               part: tuple[list[int], list[dict[str, Any]]] | None = None) -> dict[str, Any]:
        """Accept the scene's clean image(s): write them under ``clean/`` and record them.

        Args:
            name: a scene of this session.
            clean_image: the `spanetlib.pipeline.clip_estimate.ClipEstimate` of the scene's N frames
                (`estimate`): one image per stable period is written (``clean/<name>.png``,
                or ``clean/<name>_period<k>.png``, k = 1, 2, ... when the scene changed), and
                its periods and motion are recorded. Or one H x W x 3 RGB image (uint8 or
                float in [0, 1]) or a ``BackgroundEstimate`` (its image in the frames'
                scale): written as ``clean/<name>.png``; an export pairs frames with it only
                if it is what the frames give (`spanetlib.pipeline.export`).
            percentile: p of a single image (Eq. 4); taken from the estimate when not given.
            quality: the `spanetlib.pipeline.quality.SceneQuality` that decided (batch review);
                None computes it for a `ClipEstimate`.
            part: accept only some periods of a `ClipEstimate` (`accepted_part`): their
                indices, and what `accepted_part` says of the periods left out.

        Returns:
            A copy of the scene's new state.

        Raises:
            TypeError, ValueError: an image that is not uint8 or float in [0, 1] (a float
                image in 0-255 is refused, not clipped), not H x W x 3, or not the size of the
                scene's frames; an estimate with no stable period. Nothing is written then.
        """
        self._entry(name)
        if isinstance(clean_image, ClipEstimate):
            return self._accept_clip(name, clean_image, quality, part)
        if part is not None:
            raise ValueError("part: only the periods of a ClipEstimate can be accepted apart")
        if hasattr(clean_image, "image"):
            if percentile is None:
                percentile = float(clean_image.percentile)
            image = np.asarray(clean_image.image, dtype=np.float32)
            # estimate_background keeps the frames' scale (0-255 for uint8 frames, 0-1 for
            # floats); its luminance mode is always in levels 0-255, which tells them apart.
            top, mode_top = float(image.max()), float(np.max(clean_image.mode))
            if abs(top - mode_top) <= abs(top * 255.0 - mode_top):
                image = image / 255.0
        else:
            image = np.asarray(clean_image)
        image = check_image_values(image, "clean image")
        self._check_size(name, image)
        rel = f"clean/{name}.png"
        write_image(self.root / rel, image)
        return self._decide(name, "accept", quality, status="accepted", clean_image=rel,
                            clean_images=[rel], periods=None, motion=None,
                            percentile=None if percentile is None else float(percentile),
                            periods_accepted=None, periods_left_out=None)

    def _check_size(self, name: str, image: np.ndarray) -> None:
        if image.ndim != 3 or image.shape[2] != 3:
            raise ValueError(f"clean image must be H x W x 3, got shape {image.shape}")
        frames = self._frames.get(name)
        if frames is None:
            frames = _read_frames(self.source(name), self._entry(name)["start"], 1)
        if image.shape[:2] != frames.shape[1:3]:
            raise ValueError(f"clean image is {image.shape[0]} x {image.shape[1]} but the "
                             f"scene's frames are {frames.shape[1]} x {frames.shape[2]}")

    def _accept_clip(self, name: str, result: ClipEstimate, quality: SceneQuality | None,
                     part: tuple[list[int], list[dict[str, Any]]] | None) -> dict[str, Any]:
        kept, left_out = (None, None) if part is None else (sorted(part[0]), part[1])
        if kept is not None:
            result = result.only_segments(kept)
        if not result.segments:
            raise ValueError(f"scene {name!r}: the estimate has no stable period of "
                             f"{MIN_PERIOD_FRAMES} frames to accept; reject it (add frames) or "
                             "skip it")
        images = [round_to_uint8(seg.image)
                  for seg in result.segments]
        for image in images:
            self._check_size(name, image)
        if quality is None:
            quality = scene_quality(result)
        rels = [f"clean/{name}.png"] if len(images) == 1 else \
            [f"clean/{name}_period{k}.png" for k in range(1, len(images) + 1)]
        for rel, image in zip(rels, images, strict=True):
            write_image(self.root / rel, image)
        periods, motion = clip_record(result)
        return self._decide(name, "accept", quality, status="accepted", clean_image=rels[0],
                            clean_images=rels, periods=periods, motion=motion,
                            percentile=periods[0]["percentile"], periods_accepted=kept,
                            periods_left_out=left_out)

    def reject(self, name: str, quality: SceneQuality | None = None) -> dict[str, Any]:
        """Reject the estimate: N grows by ``REJECT_INCREMENT[density]``, capped by the frames.

        When N already uses every available frame the scene is marked ``"exhausted"``
        (reviewed, not accepted).

        Args:
            name: a scene of this session.
            quality: the judgement that rejected it (batch review), recorded.

        Returns:
            A copy of the scene's new state.
        """
        entry = self._entry(name)
        cleared = dict(clean_image=None, clean_images=None, periods=None, motion=None,
                       percentile=None, periods_accepted=None, periods_left_out=None)
        n = grow_n(entry["n"], entry["density"], entry["frames_available"])
        if n is None:
            return self._decide(name, "reject", quality, status="exhausted", **cleared)
        return self._decide(name, "reject", quality, status="rejected-needs-more", n=n,
                            **cleared)

    def skip(self, name: str) -> dict[str, Any]:
        """Skip the scene (reviewed, not exported). Returns a copy of its new state."""
        self._entry(name)
        return self._decide(name, "skip", status="skipped", clean_image=None,
                            clean_images=None, periods=None, motion=None, percentile=None,
                            periods_accepted=None, periods_left_out=None)

    def set_density(self, name: str, density: str) -> dict[str, Any]:
        """Set the scene's density; before any decision N is reset to ``FRAME_COUNTS``.

        Returns:
            A copy of the scene's new state.
        """
        entry = self._entry(name)
        _check_density(density)
        data = copy.deepcopy(self._data)
        new = data["scenes"][name]
        new["density"] = density
        new["density_guessed"] = False
        if not entry["history"]:
            new["n"] = min(FRAME_COUNTS[density], entry["frames_available"])
        self._commit(data)
        return copy.deepcopy(new)

    def set_n(self, name: str, n: int) -> dict[str, Any]:
        """Set the scene's frame count N directly (capped by the frames available)."""
        entry = self._entry(name)
        check_int("n", n, minimum=2)
        data = copy.deepcopy(self._data)
        data["scenes"][name]["n"] = min(n, entry["frames_available"])
        self._commit(data)
        return copy.deepcopy(data["scenes"][name])

    # ---------------------------------------------------------------- estimates
    def frames(self, name: str,
               frames_loader: Callable[[Path, int, int], np.ndarray] | None = None
               ) -> np.ndarray:
        """The scene's first N frames (N x H x W x 3 uint8 RGB), cached between calls.

        The first read of a scene in a session checks its source (`check_source`).

        Args:
            name: a scene of this session.
            frames_loader: ``(source, start, count) -> frames``; default
                ``video.read_sequence(source, start=start, count=count)``. After a rejection
                only the added frames are read.
        """
        entry = self._entry(name)
        if name not in self._bound:
            self.check_source(name)
            entry = self._entry(name)
        loader = frames_loader or _read_frames
        n, start = entry["n"], entry["start"]
        cached = self._frames.get(name)
        if cached is None or len(cached) < n:
            have = 0 if cached is None else len(cached)
            more = np.asarray(loader(self.source(name), start + have, n - have))
            if more.ndim != 4 or len(more) > n - have or (have == 0 and len(more) == 0):
                raise InputError(f"{self.source(name)}: expected {n - have} frames from frame "
                                 f"{start + have}, got shape {more.shape}")
            cached = more if cached is None else np.concatenate([cached, more])
            if len(cached) < n:  # the container's frame count was too high: correct it
                data = copy.deepcopy(self._data)
                data["scenes"][name].update(n=len(cached), frames_available=len(cached))
                self._commit(data)
                n = len(cached)
        self._frames[name] = cached
        self._frames.move_to_end(name)
        while len(self._frames) > self.cache_scenes:
            old, _ = self._frames.popitem(last=False)
            self._estimates = {k: v for k, v in self._estimates.items() if k[0] != old}
        return cached[:n]

    def estimate(self, name: str,
                 frames_loader: Callable[[Path, int, int], np.ndarray] | None = None
                 ) -> ClipEstimate:
        """The clip estimate of the scene's first N frames (cached per scene and N).

        Returns:
            `review_estimate` of the frames with the scene's align mode: per stable period an
            estimate (Eqs. 2-4) with its reliability map, and per frame its period.
        """
        frames = self.frames(name, frames_loader)
        key = (name, len(frames))
        if key not in self._estimates:
            self._estimates[key] = review_estimate(frames, self._entry(name)["align"])
        return self._estimates[key]


# --------------------------------------------------------------------------------------------
# Batch review
# --------------------------------------------------------------------------------------------
def _review_auto(session: ReviewSession,
                 frames_loader: Callable[[Path, int, int], np.ndarray] | None,
                 progress: bool) -> None:
    for name in tqdm(session.pending(), desc="auto review", unit="scene",
                     disable=not progress):
        while session.scene(name)["status"] in PENDING_STATUSES:
            estimate = session.estimate(name, frames_loader)
            quality = scene_quality(estimate)
            entry = session.scene(name)
            part = None if grow_n(entry["n"], entry["density"], entry["frames_available"]) \
                else accepted_part(estimate, quality)
            if quality.accept:
                session.accept(name, estimate, quality=quality)
            elif part is not None:  # the frames are exhausted: keep the periods that pass
                session.accept(name, estimate, quality=part[1],
                               part=(quality.accepted_periods, part[2]))
            else:
                session.reject(name, quality=quality)


def _review_replay(session: ReviewSession, review_file: Path,
                   frames_loader: Callable[[Path, int, int], np.ndarray] | None) -> None:
    """Replay another review file's decisions into ``session``, re-estimating accepts."""
    recorded = ReviewSession(review_file)
    for name, entry in recorded.scenes.items():
        # the decisions were made on the content recorded there (that file is only read)
        recorded.check_source(name, record=False)
        if name not in session:
            first_n = entry["history"][0]["n"] if entry["history"] else entry["n"]
            session.add_scene(name, recorded.source(name), density=entry["density"],
                              n=first_n, start=entry["start"], align=entry["align"])
        else:
            session.check_source(name, recorded.source(name))
        if session.scene(name)["history"] == entry["history"]:
            continue
        if session.scene(name)["history"]:
            raise InputError(f"scene {name!r} already has other decisions in {session.path}; "
                             f"replay {review_file} into a fresh review file")
        if session.scene(name)["density"] != entry["density"]:
            session.set_density(name, entry["density"])
        for step in entry["history"]:
            session.set_n(name, int(step["n"]))
            if step["decision"] == "accept":
                part = None if step.get("periods") is None \
                    else (step["periods"], step.get("periods_left_out") or [])
                session.accept(name, session.estimate(name, frames_loader), part=part)
            elif step["decision"] == "reject":
                session.reject(name)
            else:
                session.skip(name)


def _restore_clean_images(session: ReviewSession,
                          frames_loader: Callable[[Path, int, int], np.ndarray] | None) -> None:
    """Rewrite accepted clean images that are missing on disk (same N: same estimate)."""
    for name, entry in session.scenes.items():
        paths = session.clean_image_paths(name)
        if entry["status"] != "accepted" or (paths and all(p.is_file() for p in paths)):
            continue
        if entry.get("periods") is None:  # one image accepted as it was: not re-made
            raise InputError(f"review file {session.path}: the clean image accepted for "
                             f"{name!r} is missing ({paths[0] if paths else 'no path'}) and "
                             "was not an estimate of the frames; review the scene again")
        result = session.estimate(name, frames_loader)
        if entry.get("periods_accepted") is not None:
            result = result.only_segments(entry["periods_accepted"])
        if len(result.segments) != len(paths):
            raise InputError(f"review file {session.path}: {name!r} was accepted with "
                             f"{len(paths)} period(s), its frames give {len(result.segments)} "
                             "now; review the scene again")
        for path, seg in zip(paths, result.segments, strict=True):
            write_image(path, round_to_uint8(seg.image))


def review_batch(session: ReviewSession, mode: str, review_file: str | os.PathLike | None = None,
                 *, frames_loader: Callable[[Path, int, int], np.ndarray] | None = None,
                 progress: bool = True) -> dict[str, str]:
    """Review a session without a person (papermill, ``build-dataset``).

    Modes:

    - ``"auto"``: each pending scene's estimate (`ReviewSession.estimate`) is judged by
      `spanetlib.pipeline.quality.scene_quality`: accepted iff the judgement accepts it, else
      rejected, adding frames (``REJECT_INCREMENT``), until accepted or the frames are
      exhausted. Every judgement's score, cues and reasons are recorded with the decision.
    - ``"file"``: replays the decisions recorded in ``review_file`` (a review made by a person
      earlier) into ``session``, re-estimating each accepted scene at its recorded N. The
      recorded sources must still hold the frames that were reviewed, and a scene the session
      already has must be the same content (`ReviewSession.check_source`). With
      ``review_file`` None or equal to the session's own file, the recorded decisions are kept
      and only missing clean images are rewritten.

    The notebook's entry point, `spanetlib.pipeline.review_widget.run_review`, adds the
    interactive mode.

    Args:
        session: the session to review (its file is updated after every decision).
        mode: "auto" or "file".
        review_file: the decisions to replay (mode "file").
        frames_loader: passed to `ReviewSession.estimate`.
        progress: show a tqdm bar (mode "auto").

    Returns:
        Scene name -> final status.

    Raises:
        ValueError: unknown mode.
        InputError: ``review_file`` is missing or not a review file, or was made on other
            content.
    """
    if mode not in BATCH_REVIEW_MODES:
        raise ValueError(f"mode must be one of {BATCH_REVIEW_MODES}, got {mode!r}")
    if mode == "auto":
        _review_auto(session, frames_loader, progress)
    else:
        own = review_file is None or (
            Path(review_file).exists() and session.path.exists()
            and Path(review_file).resolve() == session.path.resolve())
        if own:
            _restore_clean_images(session, frames_loader)
        else:
            if not Path(review_file).is_file():
                raise InputError(f"review file not found: {review_file}")
            _review_replay(session, Path(review_file), frames_loader)
    return {name: entry["status"] for name, entry in session.scenes.items()}
