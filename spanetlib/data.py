"""Training data: pair lists (SPA-Data format), the rain mask M, `PairDataset`, dataset export.

Pair lists hold one ``rain_path clean_path`` pair per line, separated by whitespace, the
format of SPA-Data's ``training/real_world.txt`` and ``testing/real_test_1000.txt``. The lists
this package writes are relative to the list's folder with POSIX separators; reading also
accepts SPA-Data's own lists, whose paths (often with a leading ``/``) are relative to the data
root, the list folder's parent.

`export_dataset` turns reviewed rain videos into an SPA-Data style training set (the library
side of ``spanet build-dataset``); `build_synthetic_test_set` and `build_synthetic_video_scenes`
make the synthetic stand-ins the notebooks use where the real data is absent, and
`build_heldout_rain_set` makes rain images outside the synthesizer's presets, on held-out photos.
"""

from __future__ import annotations

import concurrent.futures as cf
import csv
import hashlib
import io
import json
import math
import multiprocessing
import os
import re
import shutil
import time
import warnings
from collections.abc import Iterable, Sequence
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
from torch.utils.data import Dataset

from .fileio import InputError, atomic_write_json, atomic_write_text, read_image, write_image

__all__ = [
    "ExportSummary",
    "HELDOUT_RAIN_CONDITIONS",
    "PairDataset",
    "build_heldout_rain_set",
    "build_synthetic_test_set",
    "build_synthetic_video_scenes",
    "export_dataset",
    "find_pair_list",
    "rain_mask",
    "random_resized_crop_box",
    "read_pair_list",
    "scene_ground_truth",
    "write_pair_list",
]

#: Where `find_pair_list` looks, in order, for each split (our export layout first).
PAIR_LIST_CANDIDATES: dict[str, tuple[str, ...]] = {
    "train": ("train.txt", "training/real_world.txt", "Training/real_world.txt",
              "training/real_world/real_world.txt", "real_world.txt"),
    "test": ("test.txt", "testing/real_test_1000.txt", "Testing/real_test_1000.txt",
             "real_test_1000.txt"),
}

_MANIFEST_VERSION = 1


# --------------------------------------------------------------------------------------------
# The rain mask M (Eq. 7's attention target)
# --------------------------------------------------------------------------------------------
def rain_mask(rain: torch.Tensor | np.ndarray, clean: torch.Tensor | np.ndarray,
              threshold: float = 0.0) -> torch.Tensor | np.ndarray:
    """The binary rain mask M that supervises the attention map (the target of Eq. 7).

    M is 1 where the rain image and the clean image differ by more than ``threshold`` in any
    colour channel. With ``threshold=0`` it marks every pixel that differs at all, as in the
    authors' training data.

    Args:
        rain: torch ``B x 3 x H x W`` float in [0, 1], or numpy ``H x W x 3`` (uint8, or float
            in [0, 1]).
        clean: the same type, shape and dtype as ``rain``.
        threshold: the largest absolute difference still counted as "no rain", in the inputs'
            value scale (0-255 for uint8 arrays, 0-1 for floats); >= 0.

    Returns:
        torch input: ``B x 1 x H x W`` float32 (0 or 1) on the input's device; numpy input:
        ``H x W`` bool.

    Raises:
        TypeError: the inputs are not both tensors or both arrays.
        ValueError: the shapes differ, have the wrong layout, or ``threshold`` < 0.
    """
    if not threshold >= 0:
        raise ValueError(f"threshold must be >= 0, got {threshold}")
    if isinstance(rain, torch.Tensor) and isinstance(clean, torch.Tensor):
        if rain.shape != clean.shape:
            raise ValueError(f"rain and clean shapes differ: {tuple(rain.shape)} vs "
                             f"{tuple(clean.shape)}")
        if rain.ndim != 4:
            raise ValueError(f"expected B x C x H x W tensors, got shape {tuple(rain.shape)}")
        diff = (rain.float() - clean.float()).abs().amax(dim=1, keepdim=True)
        return (diff > threshold).float()
    if isinstance(rain, np.ndarray) and isinstance(clean, np.ndarray):
        if rain.shape != clean.shape:
            raise ValueError(f"rain and clean shapes differ: {rain.shape} vs {clean.shape}")
        if rain.ndim != 3:
            raise ValueError(f"expected H x W x C arrays, got shape {rain.shape}")
        if rain.dtype != clean.dtype:
            raise TypeError(f"rain and clean dtypes differ: {rain.dtype} vs {clean.dtype}")
        diff = np.abs(rain.astype(np.float32) - clean.astype(np.float32)).max(axis=2)
        return diff > threshold
    raise TypeError("rain and clean must both be torch tensors or both numpy arrays, got "
                    f"{type(rain).__name__} and {type(clean).__name__}")


# --------------------------------------------------------------------------------------------
# Pair lists
# --------------------------------------------------------------------------------------------
def _parse_pair_lines(path: Path) -> list[tuple[int, str, str]]:
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as err:
        raise InputError(f"{path}: not a text pair list ({err.reason})") from None
    rows = []
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        parts = line.split()
        if len(parts) != 2:
            raise InputError(f"{path}, line {number}: expected 'rain_path clean_path' (two "
                             f"paths separated by whitespace), got {len(parts)} field(s): "
                             f"{line[:80]!r}")
        rows.append((number, parts[0], parts[1]))
    return rows


def _choose_base(rows: list[tuple[int, str, str]], list_dir: Path) -> Path | None:
    """The folder the list's relative paths are relative to (None: they are absolute)."""
    bases = (list_dir, list_dir.parent)
    for _, rain, _ in rows[:5]:
        if os.path.isabs(rain) and Path(rain).is_file():
            return None
        rel = rain.lstrip("/")
        for base in bases:
            if (base / rel).is_file():
                return base
    return list_dir


def read_pair_list(path: str | os.PathLike) -> list[tuple[Path, Path]]:
    """Read a pair list: one ``rain_path clean_path`` per line (SPA-Data's format).

    Blank lines and lines starting with ``#`` are skipped; paths may not contain whitespace.
    Relative paths are resolved against the list's folder (the layout `write_pair_list`
    writes) or, for SPA-Data's own lists such as ``training/real_world.txt``, against the data
    root (the list folder's parent); a leading ``/`` on such paths is taken as relative, as the
    authors' code does. The base is chosen once per list, by which candidate holds the first
    lines' rain images; when none does (images not there yet) the list folder is used.

    Args:
        path: the list file.

    Returns:
        ``(rain, clean)`` absolute paths, in file order.

    Raises:
        InputError: the file is missing, not text, or a line does not hold exactly two paths
            (the message names the line number).
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(f"pair list not found: {path}")
    rows = _parse_pair_lines(path)
    list_dir = path.resolve().parent
    base = _choose_base(rows, list_dir)
    pairs = []
    for _, rain, clean in rows:
        if base is None:
            pairs.append((Path(rain), Path(clean)))
        else:
            pairs.append((Path(os.path.normpath(base / rain.lstrip("/"))),
                          Path(os.path.normpath(base / clean.lstrip("/")))))
    return pairs


def write_pair_list(path: str | os.PathLike,
                    pairs: Iterable[tuple[str | os.PathLike, str | os.PathLike]]) -> Path:
    """Write a pair list atomically, paths relative to the list's folder with ``/`` separators.

    Args:
        path: the list file to write (its folders are created).
        pairs: ``(rain, clean)`` paths, absolute or relative to the current directory.

    Returns:
        The list's path.

    Raises:
        ValueError: a path contains whitespace (the format cannot hold it).
    """
    path = Path(path)
    list_dir = path.absolute().parent
    lines = []
    for pair in pairs:
        if len(pair) != 2:
            raise ValueError(f"expected (rain, clean) pairs, got {pair!r}")
        rel = []
        for p in pair:
            r = Path(os.path.relpath(Path(p).absolute(), list_dir)).as_posix()
            if any(ch.isspace() for ch in r):
                raise ValueError(f"pair list paths cannot contain whitespace, got {r!r}")
            rel.append(r)
        lines.append(f"{rel[0]} {rel[1]}\n")
    return atomic_write_text(path, "".join(lines))


def find_pair_list(data_root: str | os.PathLike, split: str) -> Path:
    """The pair list of ``split`` in a dataset folder (our export layout or SPA-Data's).

    Looks, in order, for ``train.txt`` / ``test.txt`` (written by `export_dataset`), then
    SPA-Data's ``training/real_world.txt`` / ``testing/real_test_1000.txt``, then
    ``real_world.txt`` / ``real_test_1000.txt`` at the root. A path to a list file is returned
    unchanged.

    Args:
        data_root: a dataset folder, or a list file.
        split: ``"train"`` or ``"test"``.

    Returns:
        The list file.

    Raises:
        ValueError: ``split`` is not ``"train"`` or ``"test"``.
        InputError: ``data_root`` is missing or holds none of the candidate lists.
    """
    if split not in PAIR_LIST_CANDIDATES:
        raise ValueError(f"split must be one of {tuple(PAIR_LIST_CANDIDATES)}, got {split!r}")
    root = Path(data_root)
    if root.is_file():
        return root
    if not root.is_dir():
        raise InputError(f"dataset folder not found: {root}")
    for name in PAIR_LIST_CANDIDATES[split]:
        if (root / name).is_file():
            return root / name
    raise InputError(f"no {split} pair list in {root}: looked for "
                     + ", ".join(PAIR_LIST_CANDIDATES[split]))


# --------------------------------------------------------------------------------------------
# PairDataset
# --------------------------------------------------------------------------------------------
def random_resized_crop_box(height: int, width: int, rng: np.random.Generator,
                            scale: tuple[float, float] = (0.8, 1.0),
                            ratio: tuple[float, float] = (3 / 4, 4 / 3)
                            ) -> tuple[int, int, int, int]:
    """Draw a crop box the way torchvision's ``RandomResizedCrop`` does.

    Up to ten tries draw an area fraction uniformly from ``scale`` and an aspect ratio
    (width / height) log-uniformly from ``ratio``; the first box that fits is placed uniformly.
    If none fits, the largest centred box with a ratio inside ``ratio`` is used.

    Args:
        height: image height H.
        width: image width W.
        rng: the random generator.
        scale: range of the box area as a fraction of H * W.
        ratio: range of the box's width / height.

    Returns:
        ``(top, left, box_height, box_width)``.
    """
    area = height * width
    log_lo, log_hi = math.log(ratio[0]), math.log(ratio[1])
    for _ in range(10):
        target = area * rng.uniform(scale[0], scale[1])
        aspect = math.exp(rng.uniform(log_lo, log_hi))
        w = int(round(math.sqrt(target * aspect)))
        h = int(round(math.sqrt(target / aspect)))
        if 0 < w <= width and 0 < h <= height:
            top = int(rng.integers(0, height - h + 1))
            left = int(rng.integers(0, width - w + 1))
            return top, left, h, w
    in_ratio = width / height
    if in_ratio < min(ratio):
        w, h = width, int(round(width / min(ratio)))
    elif in_ratio > max(ratio):
        h, w = height, int(round(height * max(ratio)))
    else:
        w, h = width, height
    return (height - h) // 2, (width - w) // 2, h, w


def _check_range(name: str, value: Sequence[float], low_ok: float) -> tuple[float, float]:
    if len(value) != 2 or not (low_ok < value[0] <= value[1]):
        raise ValueError(f"{name} must be (low, high) with {low_ok} < low <= high, got {value!r}")
    return float(value[0]), float(value[1])


def _to_tensor(image: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1))).float().div_(255.0)


class PairDataset(Dataset):
    """Rain/clean training pairs from a pair list, with SPANet's paired augmentation.

    Each item is a dict:

    - ``"rain"``: ``3 x h x w`` float32 RGB in [0, 1];
    - ``"clean"``: ``3 x h x w`` float32 RGB in [0, 1];
    - ``"mask"``: ``1 x h x w`` float32 in {0, 1}, the rain mask M (`rain_mask`, Eq. 7);
    - ``"name"``: the rain image's path relative to the list's base folder, without suffix.

    With ``crop`` set (training), one box is drawn per item like torchvision's
    ``RandomResizedCrop`` (`random_resized_crop_box`), cut from both images and resized to
    ``crop x crop`` with OpenCV's bicubic filter; then both are flipped horizontally with
    probability 0.5 when ``flip`` is true. The mask is computed on the resized **uint8** pair,
    as the authors did: where rain and clean agree in a neighbourhood the bicubic filter gives
    identical values, so "any difference" (``mask_threshold=0``) stays meaningful, and the mask
    grows by at most the filter's 2-pixel reach around streaks. With ``crop=None`` (testing)
    the full images are returned with no random transform at all (``flip`` is ignored).

    Randomness: with ``seed`` given, item ``i`` in epoch ``e`` draws from a generator seeded
    with ``(seed, e, i)``, so results do not depend on the order or the worker that loads it;
    call `set_epoch` each epoch. Without a seed every call draws fresh entropy.

    Args:
        list_path: a pair list (see `read_pair_list`).
        crop: output size of the random crop, or None for full images.
        scale: range of the crop area as a fraction of the image.
        ratio: range of the crop's width / height.
        flip: random horizontal flips (only with ``crop``).
        mask_threshold: in [0, 1]; a pixel is rain where any channel differs by more than
            this (compared on the uint8 pair, as ``threshold * 255``).
        seed: makes the augmentation reproducible per (seed, epoch, index).

    Raises:
        InputError: the list is missing, malformed or empty.
        ValueError: a bad ``crop``, ``scale``, ``ratio`` or ``mask_threshold``.
    """

    def __init__(self, list_path: str | os.PathLike, crop: int | None = 256,
                 scale: tuple[float, float] = (0.8, 1.0),
                 ratio: tuple[float, float] = (3 / 4, 4 / 3), flip: bool = True,
                 mask_threshold: float = 0.0, seed: int | None = None) -> None:
        if crop is not None and (isinstance(crop, bool) or not isinstance(crop, int)
                                 or crop < 1):
            raise ValueError(f"crop must be a positive int or None, got {crop!r}")
        self.scale = _check_range("scale", scale, 0.0)
        if self.scale[1] > 1.0:
            raise ValueError(f"scale must lie in (0, 1], got {scale!r}")
        self.ratio = _check_range("ratio", ratio, 0.0)
        if not 0.0 <= mask_threshold <= 1.0:
            raise ValueError(f"mask_threshold must be in [0, 1], got {mask_threshold}")
        self.list_path = Path(list_path)
        self.pairs = read_pair_list(self.list_path)
        if not self.pairs:
            raise InputError(f"pair list is empty: {self.list_path}")
        self.crop = crop
        self.flip = bool(flip)
        self.mask_threshold = float(mask_threshold)
        self.seed = seed
        self.epoch = 0
        base = self.pairs[0][0]
        self._root = self.list_path.resolve().parent
        try:  # SPA-Data lists are relative to the list folder's parent
            base.relative_to(self._root)
        except ValueError:
            self._root = self._root.parent

    def __len__(self) -> int:
        return len(self.pairs)

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch whose random crops and flips `__getitem__` draws (with a seed)."""
        self.epoch = int(epoch)

    def _rng(self, index: int) -> np.random.Generator:
        if self.seed is None:
            return np.random.default_rng()
        return np.random.default_rng([int(self.seed) & 0xFFFFFFFF, self.epoch, index])

    def _name(self, rain_path: Path) -> str:
        try:
            rel = rain_path.relative_to(self._root)
        except ValueError:
            rel = Path(rain_path.name)
        return rel.with_suffix("").as_posix()

    def __getitem__(self, index: int) -> dict[str, Any]:
        if not -len(self) <= index < len(self):
            raise IndexError(f"index {index} out of range for {len(self)} pairs")
        index %= len(self)
        rain_path, clean_path = self.pairs[index]
        rain, clean = read_image(rain_path), read_image(clean_path)
        if rain.shape != clean.shape:
            raise InputError(f"rain and clean sizes differ: {rain_path} {rain.shape[:2]} vs "
                             f"{clean_path} {clean.shape[:2]}")
        if self.crop is not None:
            rng = self._rng(index)
            top, left, h, w = random_resized_crop_box(rain.shape[0], rain.shape[1], rng,
                                                      self.scale, self.ratio)
            size = (self.crop, self.crop)
            rain = cv2.resize(rain[top:top + h, left:left + w], size,
                              interpolation=cv2.INTER_CUBIC)
            clean = cv2.resize(clean[top:top + h, left:left + w], size,
                               interpolation=cv2.INTER_CUBIC)
            if self.flip and rng.random() < 0.5:
                rain, clean = rain[:, ::-1], clean[:, ::-1]
        mask = rain_mask(rain, clean, threshold=self.mask_threshold * 255.0)
        return {
            "rain": _to_tensor(rain),
            "clean": _to_tensor(clean),
            "mask": torch.from_numpy(np.ascontiguousarray(mask)).float()[None],
            "name": self._name(rain_path),
        }


# --------------------------------------------------------------------------------------------
# Dataset export (spanet build-dataset)
# --------------------------------------------------------------------------------------------
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
        train_scenes: scenes in ``train.txt``.
        test_scenes: scenes in ``test.txt``.
        n_train_pairs: lines of ``train.txt``.
        n_test_pairs: lines of ``test.txt``.
    """

    out: Path
    train_list: Path
    test_list: Path
    manifest: Path
    exported: list[str] = field(default_factory=list)
    resumed: list[str] = field(default_factory=list)
    not_exported: dict[str, str] = field(default_factory=dict)
    failed: dict[str, str] = field(default_factory=dict)
    train_scenes: list[str] = field(default_factory=list)
    test_scenes: list[str] = field(default_factory=list)
    n_train_pairs: int = 0
    n_test_pairs: int = 0

    def __str__(self) -> str:
        def scenes(k: int) -> str:
            return f"{k} scene" if k == 1 else f"{k} scenes"

        text = (f"{scenes(len(self.train_scenes) + len(self.test_scenes))} in {self.out} "
                f"({len(self.exported)} exported now, {len(self.resumed)} already done): "
                f"{self.n_train_pairs} train pairs from {scenes(len(self.train_scenes))}, "
                f"{self.n_test_pairs} test pairs from {scenes(len(self.test_scenes))}")
        if self.not_exported:
            text += f"; {len(self.not_exported)} not exported (see manifest.json)"
        if self.failed:
            text += f"; {len(self.failed)} FAILED: " + "; ".join(
                f"{name}: {msg}" for name, msg in self.failed.items())
        return text


def _patch_origins(size: int, crop: int | None, stride: int) -> list[int]:
    """Patch starts along one axis: a regular grid plus the last full patch at the border."""
    if crop is None or size <= crop:
        return [0]
    starts = list(range(0, size - crop + 1, stride))
    if starts[-1] != size - crop:
        starts.append(size - crop)
    return starts


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


def _done_marker(scene_dir: Path) -> dict[str, Any] | None:
    try:
        done = json.loads((scene_dir / "done.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return done if isinstance(done, dict) and isinstance(done.get("pairs"), list) else None


def _export_scene(job: dict[str, Any]) -> dict[str, Any]:
    """Export one scene (runs in a worker process): patches, ``clean.png``, ``done.json``."""
    from .review import FRAME_COUNTS, GUESS_FRAMES, guess_density
    from .video import read_sequence

    out = Path(job["out"])
    scene_dir = out / job["scene"]
    source, start = Path(job["source"]), int(job["start"])
    if scene_dir.exists():  # a partial export (no done.json): redo it
        shutil.rmtree(scene_dir)
    available = job["frames_available"]
    if job["clean_image"] is not None:  # accepted in the review
        clean = read_image(job["clean_image"])
        n, density, percentile = job["n"], job["density"], job["percentile"]
        count = min(job["frames_per_video"] or n, available)
        frames = read_sequence(source, start=start, count=count, min_frames=1)
    else:  # auto-accept: guessed density, N = FRAME_COUNTS[density]
        from .background import estimate_background

        density = job["density"]
        if density is None:
            density = guess_density(read_sequence(source, start=start, min_frames=1,
                                                  count=min(GUESS_FRAMES, available)))
        n = min(FRAME_COUNTS[density], available)
        count = min(max(n, job["frames_per_video"] or n), available)
        frames = read_sequence(source, start=start, count=count, min_frames=1)
        estimate = estimate_background(frames[:n])
        clean = np.clip(np.rint(estimate.image), 0, 255).astype(np.uint8)
        percentile = float(estimate.percentile)
        frames = frames[:job["frames_per_video"] or n]
    if clean.shape != frames.shape[1:]:
        raise InputError(f"clean image size {clean.shape[:2]} does not match the frames "
                         f"{frames.shape[1:3]} of {source}")
    crop, stride = job["crop"], job["stride"]
    h, w = clean.shape[:2]
    boxes = [(y, x) for y in _patch_origins(h, crop, stride)
             for x in _patch_origins(w, crop, stride)]
    ph, pw = (h, w) if crop is None else (min(crop, h), min(crop, w))
    write_image(scene_dir / "clean.png", clean)
    pairs = []
    width = max(4, len(str(start + len(frames) - 1)))
    for y, x in boxes:
        write_image(scene_dir / "clean" / f"{y}_{x}.png", clean[y:y + ph, x:x + pw])
    for i, frame in enumerate(frames):
        index = f"{start + i:0{width}d}"
        for y, x in boxes:
            rain_rel = f"{job['scene']}/rain/{index}_{y}_{x}.png"
            write_image(out / rain_rel, frame[y:y + ph, x:x + pw])
            pairs.append([rain_rel, f"{job['scene']}/clean/{y}_{x}.png"])
    record = {
        "scene": job["scene"], "source": str(source), "key": job["key"], "n": int(n),
        "percentile": percentile, "density": density, "decision": job["decision"],
        "frames": len(frames), "start": start, "patches_per_frame": len(boxes),
        "pairs": pairs, "finished": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    atomic_write_json(scene_dir / "done.json", record)  # the marker: written last
    return record


def _run_job(job: dict[str, Any]) -> dict[str, Any]:
    try:
        return _export_scene(job)
    except Exception as err:  # one bad scene must not stop the others
        return {"scene": job["scene"], "error": f"{type(err).__name__}: {err}"
                if not isinstance(err, InputError) else str(err)}


def _check_positive(name: str, value: int | None, allow_none: bool = True) -> None:
    if value is None and allow_none:
        return
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive int{' or None' if allow_none else ''}, "
                         f"got {value!r}")


def export_dataset(src: str | os.PathLike, out: str | os.PathLike,
                   review_file: str | os.PathLike | None = None, auto_accept: bool = False,
                   crop: int | None = 256, stride: int | None = None,
                   frames_per_video: int | None = None, test_fraction: float = 0.1,
                   workers: int = 1, seed: int = 0, density: str | None = None,
                   progress: bool = True) -> ExportSummary:
    """Export reviewed rain videos as an SPA-Data style set of rain/clean patch pairs.

    The library side of ``spanet build-dataset SRC -o OUT``. ``SRC`` holds one video file or
    frame folder per scene (`spanetlib.video.list_scenes`); a scene's name is the file's stem
    or the folder's name. Which scenes are exported, with which clean image:

    - with ``review_file``: the scenes accepted there, with the clean image saved at accept
      time (N, p and density from the review); other decisions are left out;
    - with ``auto_accept``: scenes without a decision (not in the review file, or pending
      there) too: density guessed (`spanetlib.review.guess_density`, or ``density`` for all),
      N = ``FRAME_COUNTS[density]`` (capped by the frames), ``estimate_background`` of the
      first N frames.

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

    Resume: a scene whose ``done.json`` exists (and was made with the same crop, stride, K
    and decision, including the time of the accept) is kept; a scene folder without it is
    deleted and redone. The lists and the manifest are rebuilt from the ``done.json`` files
    at every run (folders of scenes an earlier run exported but this one does not select stay
    on disk, outside the lists).
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
        progress: show a tqdm progress bar.

    Returns:
        An `ExportSummary`.

    Raises:
        InputError: ``src`` or ``review_file`` is missing, ``src`` holds no scenes, or neither
            ``review_file`` nor ``auto_accept`` is given.
        ValueError: a bad ``crop``, ``stride``, ``frames_per_video``, ``test_fraction``,
            ``workers`` or ``density``.
    """
    from tqdm.auto import tqdm

    from .review import FRAME_COUNTS, ReviewSession, scene_name
    from .review import _count_frames as count_frames
    from .video import list_scenes

    _check_positive("crop", crop)
    _check_positive("stride", stride)
    _check_positive("frames_per_video", frames_per_video)
    _check_positive("workers", workers, allow_none=False)
    if not 0.0 <= test_fraction < 1.0:
        raise ValueError(f"test_fraction must be in [0, 1), got {test_fraction}")
    if density is not None and density not in FRAME_COUNTS:
        raise ValueError(f"density must be one of {tuple(FRAME_COUNTS)} or None, "
                         f"got {density!r}")
    src, out = Path(src), Path(out)
    if not src.is_dir():
        raise InputError(f"scene folder not found: {src}")
    if review_file is None and not auto_accept:
        raise InputError("nothing to export without a review: pass a review file "
                         "(--review-file F: export the scenes accepted there) or --auto-accept "
                         "(estimate every scene unreviewed, N from its guessed density)")
    session = None
    if review_file is not None:
        if not Path(review_file).is_file():
            raise InputError(f"review file not found: {review_file}")
        session = ReviewSession(review_file)
    stride = stride or crop
    out_resolved = out.resolve()
    scenes = [p for p in list_scenes(src) if p.resolve() != out_resolved]
    if not scenes:
        raise InputError(f"no scenes (video files or frame folders) in {src}")
    out.mkdir(parents=True, exist_ok=True)

    summary = ExportSummary(out=out, train_list=out / "train.txt", test_list=out / "test.txt",
                            manifest=out / "manifest.json")
    jobs: list[dict[str, Any]] = []
    manifest_scenes: dict[str, dict[str, Any]] = {}
    for path in scenes:
        name = scene_name(path)
        job = {"scene": name, "source": str(path.resolve()), "out": str(out.resolve()),
               "crop": crop, "stride": stride, "frames_per_video": frames_per_video,
               "start": 0, "clean_image": None, "n": None, "density": density,
               "percentile": None, "frames_available": None}
        entry = session.scene(name) if session is not None and name in session else None
        if entry is not None and entry["status"] == "accepted":
            job.update(clean_image=str(session.clean_image_path(name)), n=entry["n"],
                       start=entry["start"], density=entry["density"],
                       percentile=entry["percentile"], decision="accepted",
                       frames_available=entry["frames_available"],
                       accepted_at=entry["history"][-1]["timestamp"])
        elif auto_accept and (entry is None or entry["status"] == "pending"):
            job["decision"] = "auto-accepted"
        else:
            reason = (f"review status {entry['status']}" if entry is not None
                      else "not in the review file (use --auto-accept to export it)")
            summary.not_exported[name] = reason
            manifest_scenes[name] = {"status": "not-exported", "reason": reason,
                                     "source": job["source"]}
            continue
        job["key"] = {k: job.get(k) for k in ("crop", "stride", "frames_per_video", "n",
                                              "start", "decision", "accepted_at")}
        jobs.append(job)
    if session is not None:
        in_src = {scene_name(p) for p in scenes}
        for name in session.scenes:
            if name not in in_src:
                summary.not_exported[name] = f"in the review file but not in {src}"

    test_names = _split_scenes([j["scene"] for j in jobs], test_fraction, seed)
    records: dict[str, dict[str, Any]] = {}
    todo = []
    for job in jobs:
        done = _done_marker(out / job["scene"])
        if done is not None and done.get("key") == job["key"]:
            records[job["scene"]] = done
            summary.resumed.append(job["scene"])
        else:
            todo.append(job)

    def manifest_entry(record: dict[str, Any]) -> dict[str, Any]:
        name = record["scene"]
        return {"status": "exported", "split": "test" if name in test_names else "train",
                "n": record["n"], "percentile": record["percentile"],
                "density": record["density"], "decision": record["decision"],
                "pairs": len(record["pairs"]), "frames": record["frames"],
                "source": record["source"]}

    def write_manifest() -> None:
        scenes_out = dict(manifest_scenes)
        scenes_out.update({name: manifest_entry(r) for name, r in records.items()})
        atomic_write_json(out / "manifest.json", {
            "format": "spanetlib-export", "version": _MANIFEST_VERSION,
            "updated": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "src": str(src.resolve()),
            "review_file": None if review_file is None else str(Path(review_file).resolve()),
            "params": {"crop": crop, "stride": stride, "frames_per_video": frames_per_video,
                       "test_fraction": test_fraction, "seed": seed,
                       "auto_accept": auto_accept, "density": density},
            "scenes": {name: scenes_out[name] for name in sorted(scenes_out)},
        })

    def finish(result: dict[str, Any]) -> None:
        name = result["scene"]
        if "error" in result:
            summary.failed[name] = result["error"]
            manifest_scenes[name] = {"status": "failed", "error": result["error"]}
        else:
            records[name] = result
            summary.exported.append(name)
        write_manifest()

    for job in todo:
        if job["frames_available"] is None:
            try:
                job["frames_available"] = count_frames(Path(job["source"])) - job["start"]
            except Exception as err:
                job["error"] = str(err)
    with tqdm(total=len(todo), desc="export", unit="scene", disable=not progress) as bar:
        runnable = [j for j in todo if "error" not in j]
        for job in todo:
            if "error" in job:
                finish({"scene": job["scene"], "error": job["error"]})
                bar.update()
        if workers == 1 or len(runnable) <= 1:
            for job in runnable:
                finish(_run_job(job))
                bar.update()
        else:
            # "spawn": fork is unsafe after torch / numba started threads in this process
            context = multiprocessing.get_context("spawn")
            retry = []
            with cf.ProcessPoolExecutor(max_workers=min(workers, len(runnable)),
                                        mp_context=context) as pool:
                futures = {pool.submit(_run_job, job): job for job in runnable}
                for future in cf.as_completed(futures):
                    try:
                        result = future.result()
                    except BrokenProcessPool:
                        retry.append(futures[future])
                        continue
                    finish(result)
                    bar.update()
            if retry:  # workers could not start (e.g. a script without a __main__ guard)
                warnings.warn(f"export_dataset: worker processes failed ({len(retry)} scenes "
                              "left); exporting those in this process", RuntimeWarning,
                              stacklevel=2)
                for job in retry:
                    finish(_run_job(job))
                    bar.update()

    train, test = [], []
    for job in jobs:
        record = records.get(job["scene"])
        if record is None:
            continue
        pairs = [(out / r, out / c) for r, c in record["pairs"]]
        if job["scene"] in test_names:
            test.extend(pairs)
            summary.test_scenes.append(job["scene"])
        else:
            train.extend(pairs)
            summary.train_scenes.append(job["scene"])
    write_pair_list(summary.train_list, train)
    write_pair_list(summary.test_list, test)
    summary.n_train_pairs, summary.n_test_pairs = len(train), len(test)
    write_manifest()
    return summary


# --------------------------------------------------------------------------------------------
# Synthetic stand-ins for the real data
# --------------------------------------------------------------------------------------------
def _random_crop(image: np.ndarray, size: tuple[int, int], rng: np.random.Generator
                 ) -> np.ndarray:
    h, w = size
    if image.shape[0] < h or image.shape[1] < w:
        scale = max(h / image.shape[0], w / image.shape[1])
        new = (math.ceil(image.shape[1] * scale), math.ceil(image.shape[0] * scale))
        image = cv2.resize(image, new, interpolation=cv2.INTER_CUBIC)
    top = int(rng.integers(0, image.shape[0] - h + 1))
    left = int(rng.integers(0, image.shape[1] - w + 1))
    return np.ascontiguousarray(image[top:top + h, left:left + w])


def _check_size(size: Sequence[int]) -> tuple[int, int]:
    if (len(size) != 2 or any(isinstance(s, bool) or not isinstance(s, (int, np.integer))
                              or s < 8 for s in size)):
        raise ValueError(f"size must be (H, W) with ints >= 8, got {size!r}")
    return int(size[0]), int(size[1])


def _check_backgrounds(backgrounds: Sequence[str]) -> tuple[str, ...]:
    """Validate photo names for `spanetlib.rain.load_background`; returns them as a tuple."""
    from .rain import BACKGROUND_NAMES, HELDOUT_BACKGROUND_NAMES

    known = sorted(set(BACKGROUND_NAMES) | set(HELDOUT_BACKGROUND_NAMES))
    if isinstance(backgrounds, str) or not isinstance(backgrounds, Sequence):
        raise ValueError(f"backgrounds must be a sequence of photo names, got {backgrounds!r}")
    if not backgrounds:
        raise ValueError("backgrounds must name at least one photo, got none")
    for name in backgrounds:
        if name not in known:
            raise ValueError(f"unknown background {name!r}; expected names from {known}")
    return tuple(backgrounds)


def _write_rain_image_set(out: Path,
                          jobs: Sequence[tuple[str, str, dict[str, Any], tuple[str, ...]]],
                          label_columns: Sequence[str], size: tuple[int, int], seed: int
                          ) -> Path:
    """Render and write single rain images; the writing part of the synthetic test sets.

    Each job is ``(name, background, rain_kwargs, labels)``: a random ``size`` crop of the
    photo ``background`` gets rain from ``rain.make_rain_image(crop, seed=..., **rain_kwargs)``
    (crops and rain seeds drawn in turn from one generator seeded with ``seed``), written as
    ``out/rain/<name>.png`` and ``out/clean/<name>.png``; ``labels`` fill the columns
    ``label_columns`` of ``out/labels.csv`` after ``name``. Returns the pair list
    ``out/test.txt``.
    """
    from .rain import load_background, make_rain_image

    rng = np.random.default_rng(seed)
    photos: dict[str, np.ndarray] = {}
    pairs, rows = [], []
    for name, background_name, rain_kwargs, labels in jobs:
        if background_name not in photos:
            photos[background_name] = load_background(background_name)
        background = _random_crop(photos[background_name], size, rng)
        image = make_rain_image(background, seed=int(rng.integers(2**31)), **rain_kwargs)
        pairs.append((write_image(out / "rain" / f"{name}.png", image.rain),
                      write_image(out / "clean" / f"{name}.png", image.clean)))
        rows.append((name, *labels))
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(("name", *label_columns))
    writer.writerows(rows)
    atomic_write_text(out / "labels.csv", buffer.getvalue())
    return write_pair_list(out / "test.txt", pairs)


def build_synthetic_test_set(out: str | os.PathLike, n_per_level: int = 100,
                             size: tuple[int, int] = (256, 256), seed: int = 0,
                             levels: Sequence[str] = ("light", "medium", "heavy")) -> Path:
    """Write single synthetic rain images at several rain levels: the paper's Rain1200 role.

    Each image is a random ``size`` crop of one of `spanetlib.rain.BACKGROUND_NAMES` (taken in
    turn) with rain from ``rain.make_rain_image`` at the level, each with its own seed. Output::

        out/rain/<level>_<i>.png, out/clean/<level>_<i>.png
        out/test.txt     "rain/<name>.png clean/<name>.png" per line (see `read_pair_list`)
        out/labels.csv   name,level

    Args:
        out: output folder (created; existing files of the same names are replaced).
        n_per_level: images per level (Rain1200 has 400).
        size: image size (H, W).
        seed: seed of the crops and the rain.
        levels: names from ``rain.IMAGE_RAIN_LEVELS``.

    Returns:
        The pair list ``out/test.txt``.

    Raises:
        ValueError: a bad count, size or level.
    """
    from .rain import BACKGROUND_NAMES, IMAGE_RAIN_LEVELS

    _check_positive("n_per_level", n_per_level, allow_none=False)
    size = _check_size(size)
    for level in levels:
        if level not in IMAGE_RAIN_LEVELS:
            raise ValueError(f"level must be one of {tuple(IMAGE_RAIN_LEVELS)}, got {level!r}")
    jobs = []
    for level in levels:
        for i in range(n_per_level):
            photo = BACKGROUND_NAMES[len(jobs) % len(BACKGROUND_NAMES)]
            jobs.append((f"{level}_{i:04d}", photo, {"level": level}, (level,)))
    return _write_rain_image_set(Path(out), jobs, ("level",), size, seed)


# Held-out rain. The presets the synthetic training data is made with span: angle 5 to 15
# degrees (jitter 2 to 8), length 16 to 36 px, density 0.0004 to 0.0068 streaks per pixel,
# width 1 to 2 px, blur 0.5 to 1.0 px, sensor noise 0 (images) or 0.01 (videos), screen blend
# only (``rain.IMAGE_RAIN_LEVELS``, ``rain.DENSITY_PRESETS`` and the defaults of
# ``make_rain_image`` / ``make_rain_video``). Each condition below leaves that range in at
# least one of these parameters; the others stay at the base level's values.
#: Held-out rain conditions: name -> keyword arguments of `spanetlib.rain.make_rain_image`
#: (``level``, ``RainParams`` overrides, ``noise_sigma``, ``blend``).
HELDOUT_RAIN_CONDITIONS: dict[str, dict[str, Any]] = {
    "angle +30": {"level": "medium", "angle": 30.0},
    "angle -25": {"level": "medium", "angle": -25.0},  # falling the other way
    "short streaks": {"level": "medium", "length": 8.0},
    "long streaks": {"level": "medium", "length": 55.0},
    "very dense": {"level": "medium", "density": 0.011},
    "wide and blurred": {"level": "medium", "width": 3.0, "blur": 1.6},
    "noisy": {"level": "medium", "noise_sigma": 0.03},
    "additive blend": {"level": "medium", "blend": "additive"},
    "combined": {"level": "medium", "angle": -20.0, "length": 45.0, "density": 0.008,
                 "noise_sigma": 0.02},
}


def _file_stem(condition: str) -> str:
    """A file-name-safe form of a condition name ("angle +30" -> "angle_plus30")."""
    text = condition.lower().replace("+", "plus").replace("-", "minus")
    return re.sub(r"[^0-9a-z]+", "_", text).strip("_")


def build_heldout_rain_set(out: str | os.PathLike, n_per_condition: int = 2,
                           size: tuple[int, int] = (128, 128), seed: int = 0,
                           conditions: Sequence[str] | None = None,
                           backgrounds: Sequence[str] | None = None) -> Path:
    """Write rain images outside the synthesizer's presets, on photos held out from training.

    Like `build_synthetic_test_set`, with rain from `HELDOUT_RAIN_CONDITIONS` instead of the
    levels: each image is a random ``size`` crop of one of ``backgrounds`` (taken in turn over
    the whole set; photos smaller than ``size`` are enlarged first) with the condition's rain,
    each with its own seed. Output::

        out/rain/<stem>_<i>.png, out/clean/<stem>_<i>.png   stem: the condition's name with
                                                            "+" -> "plus", "-" -> "minus",
                                                            other runs of symbols -> "_"
        out/test.txt     "rain/<name>.png clean/<name>.png" per line (see `read_pair_list`)
        out/labels.csv   name,condition,background

    Args:
        out: output folder (created; existing files of the same names are replaced).
        n_per_condition: images per condition.
        size: image size (H, W), each >= 8.
        seed: seed of the crops and the rain (same seed, same files).
        conditions: names from `HELDOUT_RAIN_CONDITIONS`; None: all of them, in dict order.
        backgrounds: photo names for `spanetlib.rain.load_background`; None:
            `spanetlib.rain.HELDOUT_BACKGROUND_NAMES`.

    Returns:
        The pair list ``out/test.txt``.

    Raises:
        ValueError: a bad count or size, an unknown or repeated condition, an unknown photo,
            or an empty ``conditions`` / ``backgrounds``.
    """
    from .rain import HELDOUT_BACKGROUND_NAMES

    _check_positive("n_per_condition", n_per_condition, allow_none=False)
    size = _check_size(size)
    if conditions is None:
        conditions = tuple(HELDOUT_RAIN_CONDITIONS)
    if isinstance(conditions, str) or not conditions:
        raise ValueError(f"conditions must be a non-empty sequence of names from "
                         f"{list(HELDOUT_RAIN_CONDITIONS)}, got {conditions!r}")
    for condition in conditions:
        if condition not in HELDOUT_RAIN_CONDITIONS:
            raise ValueError(f"unknown condition {condition!r}; expected names from "
                             f"{list(HELDOUT_RAIN_CONDITIONS)}")
    if len(set(conditions)) != len(conditions):
        raise ValueError(f"conditions must not repeat a name, got {list(conditions)}")
    backgrounds = _check_backgrounds(HELDOUT_BACKGROUND_NAMES if backgrounds is None
                                     else backgrounds)
    jobs = []
    for condition in conditions:
        for i in range(n_per_condition):
            photo = backgrounds[len(jobs) % len(backgrounds)]
            jobs.append((f"{_file_stem(condition)}_{i:04d}", photo,
                         HELDOUT_RAIN_CONDITIONS[condition], (condition, photo)))
    return _write_rain_image_set(Path(out), jobs, ("condition", "background"), size, seed)


def scene_ground_truth(scene: str | os.PathLike) -> Path:
    """The true background written beside a synthetic scene: ``<folder>/<scene>_gt.png``."""
    scene = Path(scene)
    return scene.parent / f"{scene.name}_gt.png"


def build_synthetic_video_scenes(out: str | os.PathLike, n_scenes: int = 3, n_frames: int = 40,
                                 size: tuple[int, int] = (96, 128),
                                 densities: Sequence[str] = ("sparse", "normal", "dense"),
                                 seed: int = 0, backgrounds: Sequence[str] | None = None
                                 ) -> list[Path]:
    """Write synthetic rain videos of static scenes as frame folders: the default SRC.

    Scene ``i`` is a random ``size`` crop of one of ``backgrounds`` (taken in turn) with rain of
    density ``densities[i % len(densities)]`` from
    ``rain.make_rain_video``, written with ``video.write_frames``. Layout::

        out/scene_<i>_<density>/frame_<k>.png   the rain frames (a scene for list_scenes)
        out/scene_<i>_<density>_gt.png          the true background (`scene_ground_truth`)
        out/scene_<i>_<density>.json            density, background name, seed, frame count

    A scene whose sidecar JSON already records the same settings is kept as it is.

    Args:
        out: output folder (created).
        n_scenes: number of scenes.
        n_frames: frames per scene.
        size: frame size (H, W).
        densities: names from ``rain.DENSITY_PRESETS``, used in turn.
        seed: seed of the crops and the rain.
        backgrounds: photo names for `spanetlib.rain.load_background`, used in turn; None:
            `spanetlib.rain.BACKGROUND_NAMES` (pass `spanetlib.rain.TRAINING_BACKGROUND_NAMES`
            to keep the held-out photos out).

    Returns:
        The scene folders, in order.

    Raises:
        ValueError: a bad count, size, density or photo name.
    """
    from .rain import BACKGROUND_NAMES, DENSITY_PRESETS, load_background, make_rain_video
    from .video import list_frame_files, write_frames

    _check_positive("n_scenes", n_scenes, allow_none=False)
    _check_positive("n_frames", n_frames, allow_none=False)
    size = _check_size(size)
    if not densities:
        raise ValueError("densities must name at least one density")
    for density in densities:
        if density not in DENSITY_PRESETS:
            raise ValueError(f"density must be one of {tuple(DENSITY_PRESETS)}, "
                             f"got {density!r}")
    backgrounds = _check_backgrounds(BACKGROUND_NAMES if backgrounds is None else backgrounds)
    out = Path(out)
    rng = np.random.default_rng(seed)
    scenes = []
    for i in range(n_scenes):
        density = densities[i % len(densities)]
        background_name = backgrounds[i % len(backgrounds)]
        crop_seed, rain_seed = (int(v) for v in rng.integers(0, 2**31, 2))
        name = f"scene_{i:03d}_{density}"
        folder = out / name
        meta = {"scene": name, "density": density, "background": background_name,
                "size": list(size), "n_frames": n_frames, "seed": seed,
                "crop_seed": crop_seed, "rain_seed": rain_seed}
        sidecar = out / f"{name}.json"
        try:
            old = json.loads(sidecar.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            old = None
        if (old == meta and scene_ground_truth(folder).is_file() and folder.is_dir()
                and len(list_frame_files(folder)) == n_frames):
            scenes.append(folder)
            continue
        if folder.is_dir():
            for stale in list_frame_files(folder):
                stale.unlink()
        background = _random_crop(load_background(background_name), size,
                                  np.random.default_rng(crop_seed))
        video = make_rain_video(background, n_frames, density=density, seed=rain_seed)
        write_frames(folder, video.frames)
        write_image(scene_ground_truth(folder), video.clean)
        atomic_write_json(sidecar, meta)
        scenes.append(folder)
    return scenes
