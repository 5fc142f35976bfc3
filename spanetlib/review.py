"""Reviewing clean-image estimates: the paper's "Selection of N" loop (Sec. 3).

For each rain video of a static scene a clean image is estimated from the first N frames
(`spanetlib.background.estimate_background`, Eqs. 2-4); a person judges it, and N grows until
the estimate is clean. The paper starts with N = 20 / 100 / 200 frames for sparse / normal /
dense rain (`FRAME_COUNTS`) and adds 10 / 20 / 50 frames per rejection (`REJECT_INCREMENT`).

- `ReviewSession` holds the decisions in a JSON file, rewritten atomically after every change,
  so a crash or a kernel restart loses nothing and a new session object resumes.
- `ReviewWidget` is the ipywidgets view used in notebook 01 (rain frame, estimate, zoomed
  crops, difference map, Accept / Reject / Skip, density buttons).
- `run_review` drives a session without a person, for batch runs (papermill): ``"auto"``
  decides by a no-reference check (`split_half_change`), ``"file"`` replays a review file.

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
import html
import json
import os
import re
from collections import OrderedDict
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from .fileio import InputError, atomic_write_json, to_uint8, write_image

__all__ = [
    "AUTO_THRESHOLD",
    "DENSITIES",
    "DENSITY_THRESHOLDS",
    "FRAME_COUNTS",
    "GUESS_FRAMES",
    "RAIN_DELTA",
    "REJECT_INCREMENT",
    "REVIEW_MODES",
    "ReviewSession",
    "ReviewWidget",
    "STATUSES",
    "difference_map",
    "guess_density",
    "rain_fraction",
    "run_review",
    "scene_name",
    "split_half_change",
]

#: Initial N per rain density (paper, Sec. 3 "Selection of N").
FRAME_COUNTS: dict[str, int] = {"sparse": 20, "normal": 100, "dense": 200}
#: Frames added per rejection (paper, Sec. 3).
REJECT_INCREMENT: dict[str, int] = {"sparse": 10, "normal": 20, "dense": 50}
DENSITIES: tuple[str, ...] = tuple(FRAME_COUNTS)
STATUSES: tuple[str, ...] = ("pending", "accepted", "rejected-needs-more", "skipped",
                             "exhausted")
REVIEW_MODES: tuple[str, ...] = ("auto", "file", "interactive")
#: Frames `ReviewSession.add_scene` reads to guess a density.
GUESS_FRAMES = 20

#: A pixel of a frame counts as rain when it is brighter than the background estimate by more
#: than this, in [0, 1] units (well above sensor noise, below faint streaks).
RAIN_DELTA = 12.0 / 255.0
#: `rain_fraction` boundaries (sparse | normal | dense); see `guess_density`.
DENSITY_THRESHOLDS: tuple[float, float] = (0.04, 0.2)
#: `split_half_change` at or below which ``run_review(mode="auto")`` accepts an estimate.
AUTO_THRESHOLD = 0.003

_PENDING = ("pending", "rejected-needs-more")
_DONE = ("accepted", "skipped", "exhausted")
_DECISIONS = ("accept", "reject", "skip")
_FORMAT = "spanetlib-review"
_VERSION = 1
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def scene_name(source: str | os.PathLike) -> str:
    """The scene name of a video file (its stem) or a frame folder (its name)."""
    source = Path(source)
    return source.stem if source.is_file() else source.name


def _check_density(density: str) -> str:
    if density not in FRAME_COUNTS:
        raise ValueError(f"density must be one of {DENSITIES}, got {density!r}")
    return density


def _to_unit(image: np.ndarray) -> np.ndarray:
    """Float32 in [0, 1] from uint8 (/255) or float input (kept)."""
    image = np.asarray(image)
    if image.dtype == np.uint8:
        return image.astype(np.float32) / 255.0
    if np.issubdtype(image.dtype, np.floating):
        return image.astype(np.float32, copy=False)
    raise TypeError(f"expected uint8 or float images, got dtype {image.dtype}")


def _estimate_unit(image: np.ndarray, frames: np.ndarray) -> np.ndarray:
    """A background estimate in [0, 1]: ``estimate_background`` keeps the frames' scale."""
    image = np.asarray(image, dtype=np.float32)
    return image / 255.0 if frames.dtype == np.uint8 else image


def _check_frames(frames: np.ndarray) -> np.ndarray:
    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.shape[0] < 1:
        raise ValueError(f"expected frames N x H x W x 3 with N >= 1, got shape {frames.shape}")
    return frames


def rain_fraction(frames: np.ndarray, background: np.ndarray,
                  delta: float = RAIN_DELTA) -> float:
    """Mean share of pixels per frame brighter than the background by more than ``delta``.

    Rain only brightens a pixel, so this counts the pixels a frame's streaks cover; it is the
    statistic `guess_density` thresholds.

    Args:
        frames: N x H x W x 3 RGB, uint8 or float in [0, 1].
        background: H x W x 3 RGB in the same scale as ``frames`` (uint8 or float: a float
            background with uint8 frames is taken in 0-255, as ``estimate_background``
            returns it).
        delta: brightness margin in [0, 1] units, compared on the channel mean.

    Returns:
        The fraction in [0, 1].
    """
    frames = _check_frames(frames)
    bg = np.asarray(background)
    if bg.shape != frames.shape[1:]:
        raise ValueError(f"background shape {bg.shape} does not match frames {frames.shape[1:]}")
    scale = 255.0 if frames.dtype == np.uint8 else 1.0
    bg_lum = bg.astype(np.float32).mean(axis=2) / scale
    total = 0.0
    for frame in frames:
        lum = frame.astype(np.float32).mean(axis=2) / scale
        total += float(np.mean(lum - bg_lum > delta))
    return total / len(frames)


def guess_density(frames: np.ndarray, estimate: Any = None) -> str:
    """An automatic first guess of the rain density of a sequence: sparse, normal or dense.

    Measures `rain_fraction` (the mean share of pixels per frame that are brighter than the
    estimated background by more than `RAIN_DELTA` = 12/255 on the channel mean) and compares
    it with `DENSITY_THRESHOLDS` = (0.04, 0.2): below 4 % sparse, below 20 % normal, else
    dense. The boundaries sit between the values measured with `estimate_background` on
    `spanetlib.rain`'s video presets (20 frames of 64 x 96 crops of the bundled photos, nine
    seeds: sparse 1.0-1.9 %, normal 8.9-13.6 %, dense 26-40 %), near their geometric means;
    the tests check the guess over several seeds. Real footage should be confirmed by a person,
    which the review widget's density buttons are for.

    Args:
        frames: N x H x W x 3 RGB, uint8 or float in [0, 1] (20 frames are plenty).
        estimate: the background: a ``BackgroundEstimate``, an H x W x 3 array in the frames'
            scale, or None to compute ``estimate_background(frames)``.

    Returns:
        ``"sparse"``, ``"normal"`` or ``"dense"``.
    """
    frames = _check_frames(frames)
    if estimate is None:
        from .background import estimate_background

        estimate = estimate_background(frames)
    background = getattr(estimate, "image", estimate)
    fraction = rain_fraction(frames, background)
    if fraction < DENSITY_THRESHOLDS[0]:
        return "sparse"
    if fraction < DENSITY_THRESHOLDS[1]:
        return "normal"
    return "dense"


def split_half_change(frames: np.ndarray, delta: float = RAIN_DELTA) -> float:
    """No-reference check of an estimate: how much it changes between two halves of the frames.

    The frames are split into the first and the second half, the background is estimated from
    each (``estimate_background``), and the share of pixels whose two estimates differ by more
    than ``delta`` (channel mean, [0, 1] units) is returned. Rain sits at random places in each
    frame, so a streak that survives into an estimate appears in one half's estimate only; when
    N is large enough for the rain density both halves agree up to noise. This mirrors the
    paper's loop (add frames until the estimate stops showing rain), and is conservative: the
    estimate from all N frames is at least as clean as the halves'.

    Args:
        frames: N x H x W x 3 RGB frames (uint8, or float in [0, 1]), N >= 4.
        delta: margin in [0, 1] units (12/255: far above sensor noise, below faint streaks).

    Returns:
        The changed share in [0, 1] (0: the halves agree everywhere).

    Raises:
        ValueError: fewer than 4 frames or a bad shape.
    """
    from .background import estimate_background

    frames = _check_frames(frames)
    if len(frames) < 4:
        raise ValueError(f"split_half_change needs at least 4 frames, got {len(frames)}")
    half = len(frames) // 2
    scale = 255.0 if frames.dtype == np.uint8 else 1.0
    first = estimate_background(frames[:half]).image.mean(axis=2) / scale
    second = estimate_background(frames[half:]).image.mean(axis=2) / scale
    return float(np.mean(np.abs(first - second) > delta))


# --------------------------------------------------------------------------------------------
# ReviewSession
# --------------------------------------------------------------------------------------------
def _read_frames(source: Path, start: int, count: int) -> np.ndarray:
    from .video import read_sequence

    return read_sequence(source, start=start, count=count, min_frames=1)


def _count_frames(source: Path) -> int:
    """Frames in a frame folder (exact) or a video file (the container's count)."""
    from .video import list_frame_files, read_sequence

    source = Path(source)
    if source.is_dir():
        return len(list_frame_files(source))
    if not source.is_file():
        raise InputError(f"scene source not found: {source}")
    capture = cv2.VideoCapture(str(source))
    try:
        reported = int(capture.get(cv2.CAP_PROP_FRAME_COUNT)) if capture.isOpened() else 0
    finally:
        capture.release()
    if reported > 0:
        return reported
    return len(read_sequence(source, min_frames=1))  # no count in the container: read all


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
        return [n for n, e in self._data["scenes"].items() if e["status"] in _PENDING]

    def next_pending(self, after: str | None = None) -> str | None:
        """The first pending scene after ``after`` in order (wrapping around), or None."""
        names = list(self._data["scenes"])
        if after in names:
            i = names.index(after)
            names = names[i + 1:] + names[:i + 1]
        for name in names:
            if self._data["scenes"][name]["status"] in _PENDING:
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
            name: letters, digits, ``.``, ``_``, ``-`` (it names files); see `scene_name`.
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
        available = _count_frames(source_path) - start
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
                (its image in the frames' scale, 0-255 for uint8 frames as `estimate` gives).
            percentile: p of the estimate (Eq. 4); taken from a ``BackgroundEstimate`` or the
                cached estimate at the current N when not given.

        Returns:
            A copy of the scene's new state.
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
        if image.ndim != 3 or image.shape[2] != 3:
            raise ValueError(f"clean image must be H x W x 3, got shape {image.shape}")
        if percentile is None:
            cached = self._estimates.get((name, entry["n"]))
            percentile = None if cached is None else float(cached.percentile)
        rel = f"clean/{name}.png"
        write_image(self.root / rel, to_uint8(image))
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
        from .background import estimate_background

        frames = self.frames(name, frames_loader)
        key = (name, len(frames))
        if key not in self._estimates:
            self._estimates[key] = estimate_background(frames)
        return self._estimates[key]


# --------------------------------------------------------------------------------------------
# ReviewWidget
# --------------------------------------------------------------------------------------------
def _png(image: np.ndarray) -> bytes:
    ok, data = cv2.imencode(".png", cv2.cvtColor(to_uint8(image), cv2.COLOR_RGB2BGR))
    if not ok:
        raise ValueError("cannot encode the image as PNG")
    return data.tobytes()


def _fit(image: np.ndarray, max_side: int) -> np.ndarray:
    """Resize so the longer side is ``max_side``: area filter down, nearest (pixels) up."""
    h, w = image.shape[:2]
    scale = max_side / max(h, w)
    if scale == 1.0:
        return image
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    interpolation = cv2.INTER_AREA if scale < 1.0 else cv2.INTER_NEAREST
    return cv2.resize(image, size, interpolation=interpolation)


def _show(widget: Any, image: np.ndarray) -> None:
    widget.value = _png(image)
    widget.width, widget.height = str(image.shape[1]), str(image.shape[0])


def difference_map(rain: np.ndarray, clean: np.ndarray) -> np.ndarray:
    """``|rain - clean|`` (channel maximum) as an H x W x 3 uint8 RGB heat map (inferno).

    Scaled so that a difference of 64/255 or the 99.5th percentile, whichever is larger, is
    the brightest colour; noise stays dark and streaks glow.
    """
    diff = np.abs(_to_unit(rain) - _to_unit(clean)).max(axis=2)
    top = max(float(np.percentile(diff, 99.5)), 64.0 / 255.0)
    scaled = (np.clip(diff / top, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
    return cv2.cvtColor(cv2.applyColorMap(scaled, cv2.COLORMAP_INFERNO), cv2.COLOR_BGR2RGB)


class ReviewWidget:
    """An ipywidgets view of a `ReviewSession`: judge one scene's estimate at a time.

    Shows the current scene's rain frame and estimated clean image side by side (resized so
    the longer side is ``max_display`` pixels: area filter down, nearest-pixel up), a zoomed
    crop of both (zoom factor and position controls), the difference map ``|rain - clean|``,
    buttons Accept / Reject (add frames) / Skip, the density (sparse / normal / dense),
    "k of n reviewed" and a status line with N and p.

    The handlers `on_accept`, `on_reject`, `on_skip` and `on_density` are plain methods bound
    to the buttons, so code and tests can drive the widget without a browser. After an accept
    or skip the next pending scene is shown; after a reject the same scene is shown again with
    the larger N (the paper's loop), or the next one when its frames are exhausted.

    Args:
        session: the review session.
        max_display: largest side, in pixels, of the displayed images.
        frames_loader: passed to `ReviewSession.estimate` (default: ``video.read_sequence``).
    """

    def __init__(self, session: ReviewSession, max_display: int = 512,
                 frames_loader: Callable[[Path, int, int], np.ndarray] | None = None) -> None:
        import ipywidgets as w

        if max_display < 16:
            raise ValueError(f"max_display must be >= 16, got {max_display}")
        self.session = session
        self.max_display = int(max_display)
        self.frames_loader = frames_loader
        self.current: str | None = None
        self._updating = False
        self._estimate: Any = None
        self._frames: np.ndarray | None = None

        self.title = w.HTML()
        self.progress_label = w.Label()
        self.status = w.HTML()
        self.message = w.HTML()
        self.rain_image = w.Image(format="png")
        self.clean_image = w.Image(format="png")
        self.rain_zoom = w.Image(format="png")
        self.clean_zoom = w.Image(format="png")
        self.diff_image = w.Image(format="png")
        self.frame_slider = w.IntSlider(value=0, min=0, max=0, description="frame")
        self.zoom_factor = w.Dropdown(options=[2, 3, 4], value=3, description="zoom",
                                      layout=w.Layout(width="150px"))
        self.zoom_x = w.IntSlider(value=50, min=0, max=100, description="x %")
        self.zoom_y = w.IntSlider(value=50, min=0, max=100, description="y %")
        self.accept_button = w.Button(description="Accept", button_style="success",
                                      tooltip="the estimate is clean: use it")
        self.reject_button = w.Button(description="Reject (add frames)", button_style="warning",
                                      tooltip="rain remains: estimate again with more frames",
                                      layout=w.Layout(width="200px"))
        self.skip_button = w.Button(description="Skip", tooltip="leave this scene out")
        self.density_buttons = w.ToggleButtons(options=list(DENSITIES), description="density")

        self.accept_button.on_click(lambda _: self._safe(self.on_accept))
        self.reject_button.on_click(lambda _: self._safe(self.on_reject))
        self.skip_button.on_click(lambda _: self._safe(self.on_skip))
        self.density_buttons.observe(self._density_changed, names="value")
        for control in (self.frame_slider, self.zoom_factor, self.zoom_x, self.zoom_y):
            control.observe(lambda _: self._safe(self._draw), names="value")

        def column(label: str, image: Any) -> Any:
            return w.VBox([w.Label(label), image])

        self.box = w.VBox([
            w.HBox([self.title, self.progress_label]),
            w.HBox([column("rain frame", self.rain_image),
                    column("estimated clean image", self.clean_image)]),
            w.HBox([self.frame_slider]),
            w.HBox([column("rain (zoom)", self.rain_zoom),
                    column("clean (zoom)", self.clean_zoom),
                    column("|rain - clean|", self.diff_image)]),
            w.HBox([self.zoom_factor, self.zoom_x, self.zoom_y]),
            self.density_buttons,
            w.HBox([self.accept_button, self.reject_button, self.skip_button]),
            self.status,
            self.message,
        ])
        self.show(session.next_pending())

    # ---------------------------------------------------------------- display
    def display(self) -> None:
        """Display the widget in the notebook."""
        from IPython.display import display

        display(self.box)

    def _ipython_display_(self) -> None:
        self.display()

    def _safe(self, action: Callable[[], Any]) -> None:
        try:
            action()
        except Exception as err:  # shown in the widget; the kernel log has no console
            self.message.value = f"<b style='color:#b00'>{html.escape(str(err))}</b>"

    def show(self, name: str | None) -> None:
        """Show scene ``name`` (None: the "all reviewed" state)."""
        self.current = name
        self.message.value = ""
        done, total = self.session.progress()
        self.progress_label.value = f"{done} of {total} reviewed"
        buttons = (self.accept_button, self.reject_button, self.skip_button,
                   self.density_buttons)
        if name is None:
            self._estimate = self._frames = None
            self.title.value = "<b>All scenes reviewed</b>"
            self.status.value = (f"All {total} scenes are reviewed "
                                 f"({self._count('accepted')} accepted).")
            for b in buttons:
                b.disabled = True
            for image in (self.rain_image, self.clean_image, self.rain_zoom, self.clean_zoom,
                          self.diff_image):
                image.value = b""
            return
        for b in buttons:
            b.disabled = False
        entry = self.session.scene(name)
        self._updating = True
        try:
            self.density_buttons.value = entry["density"]
        finally:
            self._updating = False
        self._estimate = self.session.estimate(name, self.frames_loader)
        self._frames = self.session.frames(name, self.frames_loader)
        self._updating = True
        try:
            self.frame_slider.max = len(self._frames) - 1
            self.frame_slider.value = min(self.frame_slider.value, len(self._frames) - 1)
        finally:
            self._updating = False
        self.title.value = f"<b>{html.escape(name)}</b>&nbsp;&nbsp;"
        guessed = " (guessed)" if entry["density_guessed"] else ""
        self.status.value = (f"N = {entry['n']} of {entry['frames_available']} frames, "
                             f"p = {self._estimate.percentile:.1f}, density "
                             f"{entry['density']}{guessed}, status {entry['status']}")
        self._draw()

    def _count(self, status: str) -> int:
        return sum(e["status"] == status for e in self.session.scenes.values())

    def _draw(self) -> None:
        if self._updating or self._frames is None or self._estimate is None:
            return
        rain = self._frames[min(self.frame_slider.value, len(self._frames) - 1)]
        clean = _estimate_unit(self._estimate.image, self._frames)
        rain_u = _to_unit(rain)
        _show(self.rain_image, _fit(rain_u, self.max_display))
        _show(self.clean_image, _fit(clean, self.max_display))
        h, w = rain.shape[:2]
        zoom = int(self.zoom_factor.value)
        ch, cw = max(1, h // zoom), max(1, w // zoom)
        cy = int(round(self.zoom_y.value / 100 * (h - ch)))
        cx = int(round(self.zoom_x.value / 100 * (w - cw)))
        side = max(16, self.max_display * 2 // 3)
        for target, image in ((self.rain_zoom, rain_u), (self.clean_zoom, clean)):
            _show(target, _fit(image[cy:cy + ch, cx:cx + cw], side))
        _show(self.diff_image, _fit(difference_map(rain_u, clean), side))

    # ---------------------------------------------------------------- handlers
    def _require_scene(self) -> str:
        if self.current is None:
            raise ValueError("no scene to review: all scenes are reviewed")
        return self.current

    def on_accept(self) -> None:
        """Accept the current estimate (writes the clean image) and show the next scene."""
        name = self._require_scene()
        estimate = self.session.estimate(name, self.frames_loader)
        self.session.accept(name, estimate)
        self.show(self.session.next_pending(after=name))

    def on_reject(self) -> None:
        """Reject: add frames and show the scene again (or the next one when exhausted)."""
        name = self._require_scene()
        state = self.session.reject(name)
        self.show(name if state["status"] in _PENDING else self.session.next_pending(name))

    def on_skip(self) -> None:
        """Skip the current scene and show the next one."""
        name = self._require_scene()
        self.session.skip(name)
        self.show(self.session.next_pending(after=name))

    def on_density(self, value: str) -> None:
        """Set the current scene's density (resets N before any decision) and redraw."""
        name = self._require_scene()
        self.session.set_density(name, value)
        self.show(name)

    def _density_changed(self, change: dict[str, Any]) -> None:
        if self._updating or self.current is None:
            return
        if change["new"] != self.session.scene(self.current)["density"]:
            self._safe(lambda: self.on_density(change["new"]))


# --------------------------------------------------------------------------------------------
# Batch review
# --------------------------------------------------------------------------------------------
def _review_auto(session: ReviewSession, threshold: float,
                 frames_loader: Callable[[Path, int, int], np.ndarray] | None,
                 progress: bool) -> None:
    from tqdm.auto import tqdm

    for name in tqdm(session.pending(), desc="auto review", unit="scene",
                     disable=not progress):
        while session.scene(name)["status"] in _PENDING:
            frames = session.frames(name, frames_loader)
            if len(frames) >= 4 and split_half_change(frames) <= threshold:
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
            write_image(session.root / f"clean/{name}.png",
                        _estimate_unit(estimate.image, session.frames(name, frames_loader)))


def run_review(session: ReviewSession, mode: str, review_file: str | os.PathLike | None = None,
               *, threshold: float = AUTO_THRESHOLD,
               frames_loader: Callable[[Path, int, int], np.ndarray] | None = None,
               progress: bool = True) -> dict[str, str] | ReviewWidget:
    """Review a session in batch (papermill) or return the interactive widget.

    Modes:

    - ``"auto"``: each pending scene is judged by `split_half_change` (the share of pixels
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
    - ``"interactive"``: returns a `ReviewWidget` (display it in the notebook).

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
