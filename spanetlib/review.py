"""Reviewing clean-image estimates: the session of the paper's "Selection of N" loop (Sec. 3).

For each rain video of a static scene a clean image is estimated from the first N frames
(`spanetlib.background.estimate_background`, Eqs. 2-4); a person judges it, and N grows until
the estimate is clean. The rules (initial N per density, frames added per rejection, the
density guess, the batch acceptance check) live in `spanetlib.selection`.

- `ReviewSession` holds the decisions in a JSON file, rewritten atomically after every change,
  so a crash or a kernel restart loses nothing and a new session object resumes.
- `run_review` drives a session without a person, for batch runs (papermill): ``"auto"``
  decides by the no-reference check (`spanetlib.selection.passes_split_half`), ``"file"``
  replays a review file; ``"interactive"`` returns the notebook's
  `spanetlib.review_widget.ReviewWidget`.

Review file (JSON, ``"format": "spanetlib-review"``, ``"version": 1``)::

    {"format": "spanetlib-review", "version": 1, "created": ISO-8601, "updated": ISO-8601,
     "scenes": {NAME: {
        "name": NAME, "source": path of the video file or frame folder (absolute, or
            relative to the review file's folder),
        "density": "sparse" | "normal" | "dense", "density_guessed": bool,
        "n": frames used now, "start": first frame, "frames_available": int,
        "status": "pending" | "accepted" | "rejected-needs-more" | "skipped" | "exhausted",
        "history": [{"decision": "accept" | "reject" | "skip", "n": int,
                     "timestamp": ISO-8601}, ...],
        "clean_image": "clean/NAME.png" (relative to the review file's folder) | null,
        "percentile": p of the accepted estimate (Eq. 4, percent) | null}}}
"""

from __future__ import annotations

import copy
import json
import os
import re
from collections import OrderedDict
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from tqdm.auto import tqdm

from .background import estimate_background
from .fileio import InputError, atomic_write_json, check_image_values, write_image
from .selection import (
    AUTO_THRESHOLD,
    DENSITIES,
    FRAME_COUNTS,
    GUESS_FRAMES,
    REJECT_INCREMENT,
    guess_density,
    passes_split_half,
)
from .video import SCENE_NAME_PATTERN, count_frames, read_sequence

if TYPE_CHECKING:
    from .review_widget import ReviewWidget

__all__ = [
    "PENDING_STATUSES",
    "REVIEW_MODES",
    "ReviewSession",
    "STATUSES",
    "estimate_in_unit_range",
    "run_review",
]

STATUSES: tuple[str, ...] = ("pending", "accepted", "rejected-needs-more", "skipped",
                             "exhausted")
#: Statuses of scenes still waiting for a judgement (new, or rejected with frames to add).
PENDING_STATUSES: tuple[str, ...] = ("pending", "rejected-needs-more")
REVIEW_MODES: tuple[str, ...] = ("auto", "file", "interactive")

_DONE = ("accepted", "skipped", "exhausted")
_DECISIONS = ("accept", "reject", "skip")
_FORMAT = "spanetlib-review"
_VERSION = 1
_NAME_RE = re.compile(f"^{SCENE_NAME_PATTERN}$")


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _check_density(density: str) -> str:
    if density not in FRAME_COUNTS:
        raise ValueError(f"density must be one of {DENSITIES}, got {density!r}")
    return density


def estimate_in_unit_range(image: np.ndarray, frames: np.ndarray) -> np.ndarray:
    """A background estimate's image as float32 in [0, 1].

    ``estimate_background`` keeps the frames' scale: 0-255 for uint8 frames, 0-1 for floats.

    Args:
        image: H x W x 3, the estimate of ``frames``.
        frames: the N x H x W x 3 frames it was estimated from (only their dtype is used).

    Example:
        >>> frames = np.zeros((2, 1, 1, 3), np.uint8)
        >>> estimate_in_unit_range(np.full((1, 1, 3), 51.0), frames)[0, 0]
        array([0.2, 0.2, 0.2], dtype=float32)
    """
    image = np.asarray(image, dtype=np.float32)
    return image / 255.0 if frames.dtype == np.uint8 else image


# --------------------------------------------------------------------------------------------
# ReviewSession
# --------------------------------------------------------------------------------------------
def _read_frames(source: Path, start: int, count: int) -> np.ndarray:
    return read_sequence(source, start=start, count=count, min_frames=1)


class ReviewSession:
    """Review state of a set of rain scenes, saved to a JSON file after every change.

    Every change (adding a scene, a decision, a new density) writes the whole file atomically
    (`spanetlib.fileio.atomic_write_json`); the in-memory state is replaced only after the
    write succeeded, so memory and disk always agree. ``ReviewSession(path)`` on an existing
    file resumes where the last one stopped. See the module docstring for the file's schema.

    Args:
        path: the review file (created on the first change; its folder also gets ``clean/``).
        cache_scenes: how many scenes' frames to keep in memory for `estimate`.

    Raises:
        InputError: the file exists but is not a valid review file (it is left unchanged).
    """

    def __init__(self, path: str | os.PathLike, cache_scenes: int = 2) -> None:
        self.path = Path(path)
        self.root = self.path.absolute().parent
        self.cache_scenes = max(1, int(cache_scenes))
        self._frames: OrderedDict[str, np.ndarray] = OrderedDict()
        self._estimates: dict[tuple[str, int], Any] = {}
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
        if data.get("version") != _VERSION:
            raise self._corrupt(f"unsupported version {data.get('version')!r}")
        scenes = data.get("scenes")
        if not isinstance(scenes, dict):
            raise self._corrupt("\"scenes\" is not an object")
        for name, entry in scenes.items():
            problem = self._entry_problem(name, entry)
            if problem:
                raise self._corrupt(f"scene {name!r}: {problem}")
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

    def clean_image_path(self, name: str) -> Path | None:
        """The accepted clean image's absolute path, or None when not accepted."""
        rel = self._entry(name).get("clean_image")
        return None if rel is None else self.root / rel

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

    # ---------------------------------------------------------------- changes
    def add_scene(self, name: str, source: str | os.PathLike, density: str | None = None,
                  n: int | None = None, start: int = 0) -> dict[str, Any]:
        """Add a scene (idempotent: a scene already there keeps its state).

        Args:
            name: letters, digits, ``.``, ``_``, ``-`` (it names files); see
                `spanetlib.video.scene_name`.
            source: the scene's video file or frame folder.
            density: "sparse", "normal" or "dense"; None reads `GUESS_FRAMES` frames and
                uses `guess_density`.
            n: initial frame count N (>= 2); None uses ``FRAME_COUNTS[density]``. Capped by
                the frames available after ``start``.
            start: first frame used.

        Returns:
            A copy of the scene's state.

        Raises:
            ValueError: a bad name, density, ``n`` or ``start``.
            InputError: the source is missing or unreadable, or has no frame at ``start``.
        """
        if not isinstance(name, str) or not _NAME_RE.match(name):
            raise ValueError(f"scene name must match {_NAME_RE.pattern} (it names files), "
                             f"got {name!r}")
        if name in self._data["scenes"]:
            return self.scene(name)
        if density is not None:
            _check_density(density)
        if n is not None and (isinstance(n, bool) or not isinstance(n, int) or n < 2):
            raise ValueError(f"n must be an int >= 2 or None, got {n!r}")
        if isinstance(start, bool) or not isinstance(start, int) or start < 0:
            raise ValueError(f"start must be a non-negative int, got {start!r}")
        source_path = Path(source)
        if not source_path.exists():
            raise InputError(f"scene source not found: {source_path}")
        available = count_frames(source_path) - start
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
            "source": str(source_path.resolve()),
            "density": density,
            "density_guessed": guessed,
            "n": min(n, available),
            "start": start,
            "frames_available": available,
            "status": "pending",
            "history": [],
            "clean_image": None,
            "percentile": None,
        }
        data = copy.deepcopy(self._data)
        data["scenes"][name] = entry
        self._commit(data)
        return copy.deepcopy(entry)

    def _decide(self, name: str, decision: str, **changes: Any) -> dict[str, Any]:
        data = copy.deepcopy(self._data)
        entry = data["scenes"][name]
        entry["history"].append({"decision": decision, "n": entry["n"], "timestamp": _now()})
        entry.update(changes)
        self._commit(data)
        return copy.deepcopy(entry)

    def accept(self, name: str, clean_image: Any, percentile: float | None = None
               ) -> dict[str, Any]:
        """Accept the scene's clean image: write ``clean/<name>.png`` and record it.

        Args:
            name: a scene of this session.
            clean_image: H x W x 3 RGB uint8 or float in [0, 1], or a ``BackgroundEstimate``
                (its image in the frames' scale, 0-255 for uint8 frames as `estimate` gives),
                the size of the scene's frames.
            percentile: p of the estimate (Eq. 4); taken from a ``BackgroundEstimate`` or the
                cached estimate at the current N when not given.

        Returns:
            A copy of the scene's new state.

        Raises:
            TypeError, ValueError: an image that is not uint8 or float in [0, 1] (a float
                image in 0-255 is refused, not clipped), not H x W x 3, or not the size of the
                scene's frames. Nothing is written then.
        """
        entry = self._entry(name)
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
        if image.ndim != 3 or image.shape[2] != 3:
            raise ValueError(f"clean image must be H x W x 3, got shape {image.shape}")
        frames = self._frames.get(name)
        if frames is None:
            frames = _read_frames(self.source(name), entry["start"], 1)
        if image.shape[:2] != frames.shape[1:3]:
            raise ValueError(f"clean image is {image.shape[0]} x {image.shape[1]} but the "
                             f"scene's frames are {frames.shape[1]} x {frames.shape[2]}")
        if percentile is None:
            cached = self._estimates.get((name, entry["n"]))
            percentile = None if cached is None else float(cached.percentile)
        rel = f"clean/{name}.png"
        write_image(self.root / rel, image)
        return self._decide(name, "accept", status="accepted", clean_image=rel,
                            percentile=None if percentile is None else float(percentile))

    def reject(self, name: str) -> dict[str, Any]:
        """Reject the estimate: N grows by ``REJECT_INCREMENT[density]``, capped by the frames.

        When N already uses every available frame the scene is marked ``"exhausted"``
        (reviewed, not accepted).

        Returns:
            A copy of the scene's new state.
        """
        entry = self._entry(name)
        if entry["n"] >= entry["frames_available"]:
            return self._decide(name, "reject", status="exhausted", clean_image=None,
                                percentile=None)
        n = min(entry["n"] + REJECT_INCREMENT[entry["density"]], entry["frames_available"])
        return self._decide(name, "reject", status="rejected-needs-more", clean_image=None,
                            percentile=None, n=n)

    def skip(self, name: str) -> dict[str, Any]:
        """Skip the scene (reviewed, not exported). Returns a copy of its new state."""
        self._entry(name)
        return self._decide(name, "skip", status="skipped", clean_image=None, percentile=None)

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
        if isinstance(n, bool) or not isinstance(n, int) or n < 2:
            raise ValueError(f"n must be an int >= 2, got {n!r}")
        data = copy.deepcopy(self._data)
        data["scenes"][name]["n"] = min(n, entry["frames_available"])
        self._commit(data)
        return copy.deepcopy(data["scenes"][name])

    # ---------------------------------------------------------------- estimates
    def frames(self, name: str,
               frames_loader: Callable[[Path, int, int], np.ndarray] | None = None
               ) -> np.ndarray:
        """The scene's first N frames (N x H x W x 3 uint8 RGB), cached between calls.

        Args:
            name: a scene of this session.
            frames_loader: ``(source, start, count) -> frames``; default
                ``video.read_sequence(source, start=start, count=count)``. After a rejection
                only the added frames are read.
        """
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
                 frames_loader: Callable[[Path, int, int], np.ndarray] | None = None) -> Any:
        """The background estimate of the scene's first N frames (cached per scene and N).

        Returns:
            ``BackgroundEstimate`` from ``estimate_background`` (its image H x W x 3 float32
            in 0-255, since the frames are uint8).
        """
        frames = self.frames(name, frames_loader)
        key = (name, len(frames))
        if key not in self._estimates:
            self._estimates[key] = estimate_background(frames)
        return self._estimates[key]


# --------------------------------------------------------------------------------------------
# Batch review
# --------------------------------------------------------------------------------------------
def _review_auto(session: ReviewSession, threshold: float,
                 frames_loader: Callable[[Path, int, int], np.ndarray] | None,
                 progress: bool) -> None:
    for name in tqdm(session.pending(), desc="auto review", unit="scene",
                     disable=not progress):
        while session.scene(name)["status"] in PENDING_STATUSES:
            frames = session.frames(name, frames_loader)
            if passes_split_half(frames, threshold):
                session.accept(name, session.estimate(name, frames_loader))
            else:
                session.reject(name)


def _review_replay(session: ReviewSession, review_file: Path,
                   frames_loader: Callable[[Path, int, int], np.ndarray] | None) -> None:
    """Replay another review file's decisions into ``session``, re-estimating accepts."""
    recorded = ReviewSession(review_file)
    for name, entry in recorded.scenes.items():
        if name not in session:
            first_n = entry["history"][0]["n"] if entry["history"] else entry["n"]
            session.add_scene(name, recorded.source(name), density=entry["density"],
                              n=first_n, start=entry["start"])
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
                session.accept(name, session.estimate(name, frames_loader))
            elif step["decision"] == "reject":
                session.reject(name)
            else:
                session.skip(name)


def _restore_clean_images(session: ReviewSession,
                          frames_loader: Callable[[Path, int, int], np.ndarray] | None) -> None:
    """Rewrite accepted clean images that are missing on disk (same N: same estimate)."""
    for name, entry in session.scenes.items():
        path = session.clean_image_path(name)
        if entry["status"] == "accepted" and (path is None or not path.is_file()):
            estimate = session.estimate(name, frames_loader)
            frames = session.frames(name, frames_loader)
            write_image(session.root / f"clean/{name}.png",
                        estimate_in_unit_range(estimate.image, frames))


def run_review(session: ReviewSession, mode: str, review_file: str | os.PathLike | None = None,
               *, threshold: float = AUTO_THRESHOLD,
               frames_loader: Callable[[Path, int, int], np.ndarray] | None = None,
               progress: bool = True) -> dict[str, str] | ReviewWidget:
    """Review a session in batch (papermill) or return the interactive widget.

    Modes:

    - ``"auto"``: each pending scene is judged by `spanetlib.selection.passes_split_half`
      (`spanetlib.selection.split_half_change`, the share of pixels
      whose estimates from the first and the second half of the N frames differ by more than
      12/255): at or below ``threshold`` (default `AUTO_THRESHOLD` = 0.3 %) the estimate of
      all N frames is accepted, else the scene is rejected, adding frames
      (``REJECT_INCREMENT``), until accepted or the frames are exhausted. N < 4 counts as a
      rejection (too few frames to check). On `spanetlib.rain`'s presets the check passes
      from about 6 (sparse), 10-20 (normal) and 50 (dense) frames, well below the paper's
      initial N.
    - ``"file"``: replays the decisions recorded in ``review_file`` (a review made by a person
      earlier) into ``session``, re-estimating each accepted scene at its recorded N. With
      ``review_file`` None or equal to the session's own file, the recorded decisions are kept
      and only missing clean images are rewritten.
    - ``"interactive"``: returns a `spanetlib.review_widget.ReviewWidget` (display it in the
      notebook).

    Args:
        session: the session to review (its file is updated after every decision).
        mode: "auto", "file" or "interactive".
        review_file: the decisions to replay (mode "file").
        threshold: acceptance threshold of mode "auto".
        frames_loader: passed to `ReviewSession.estimate`.
        progress: show a tqdm bar (mode "auto").

    Returns:
        Modes "auto" and "file": scene name -> final status. Mode "interactive": the widget.

    Raises:
        ValueError: unknown mode.
        InputError: ``review_file`` is missing or not a review file.
    """
    if mode not in REVIEW_MODES:
        raise ValueError(f"mode must be one of {REVIEW_MODES}, got {mode!r}")
    if mode == "interactive":
        # Imported here: review_widget imports this module (a cycle at the top), and batch runs
        # need no ipywidgets.
        from .review_widget import ReviewWidget

        return ReviewWidget(session, frames_loader=frames_loader)
    if mode == "auto":
        if not threshold >= 0:
            raise ValueError(f"threshold must be >= 0, got {threshold}")
        _review_auto(session, threshold, frames_loader, progress)
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
