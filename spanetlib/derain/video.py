"""Derain a whole clip: the temporal estimate where the scene is still, SPANet where it moves.

The §3 estimate (Eqs. 2-4 over aligned frames, :func:`spanetlib.pipeline.clip_estimate.estimate_clip`)
is exact wherever the scene is still but erases whatever moves; SPANet (per frame) keeps what
moves but leaves some rain, flickers and softens texture. :func:`derain_clip` takes each where
it is right. For every window of frames (:func:`derain_windows`):

1. **Estimate.** ``estimate_clip`` aligns the window's frames (``align``: camera motion and
   exposure, warping only what moved in ``"auto"``), splits it into stable periods and makes
   one background estimate per period.
2. **Background of each frame.** The frame's period (or, for a frame in no period: a
   transition, a frame mostly covered by an object, the nearest periods before and after it,
   whichever rain explains best) is rendered in the frame's own coordinates and exposure
   (:meth:`ClipEstimate.clean_for_frame`): the result is warped back when the camera moved.
3. **Rain or content.** :func:`spanetlib.pipeline.clip_estimate.pair_check` (the per-frame test the
   estimator pairs frames with) flags the pixels rain does not explain: rain only brightens,
   in thin streaks, so darker pixels and bright regions wider than rain are content (objects,
   people, lights), taken whole (their widened bounding box). Pixels outside the period's
   valid region (not seen by every frame of the period) and frames whose registration failed
   are content too: no background exists there.
4. **Blend.** The content mask is dilated and feathered (:func:`blend_weight`) into a weight
   ``w`` (1 on content, falling to 0 over a few pixels outside it); the output is
   ``w * SPANet(frame) + (1 - w) * background``, rounded to uint8. SPANet runs only on crops
   around the pixels with ``w > 0`` (with ``_CONTEXT`` pixels of context on every side, as
   :func:`spanetlib.derain.images.derain_array`'s tiles overlap) or on the whole frame when those
   crops would cover most of it; a frame that rain explains everywhere needs no SPANet at all.

Why ``pair_check`` rather than :meth:`ClipEstimate.usable_mask`: the usable mask is built for
training pairs, where one wrong pixel is a wrong pair, so it is all False for every frame the
estimator does not pair (a transition, more than ``max_inconsistent`` of the frame flagged, a
frame darker than its clean image overall). A derained video needs every frame, and the still
part of such a frame is still explained by a neighbouring period's background; running the
same test per frame against the chosen period keeps the test and drops only the all-or-nothing
pairing rule.

**Windows.** A clip no longer than ``window`` frames is one window. A longer clip is cut into
blocks of ``window // 2`` output frames; each block's estimate uses the ``window`` frames
centred on it (clamped to the clip), so every frame is estimated with at least a quarter of
the window before and after it (except at the clip's ends) and memory holds one window of
frames, whatever the clip's length. Consecutive windows share half their frames, so their
backgrounds agree to the estimate's noise.

Files (:func:`derain_video`, the ``spanet derain-video`` command): the input is a video file or
a folder of frames, read forward a window at a time; the output a video file (``.avi``/``.mkv``:
lossless FFV1; ``.mp4``: mp4v, lossy) written to a hidden temporary file and moved into place
at the end, or a folder of PNG frames (named after the input frames, or ``frame_00000.png`` ...
for a video) with a manifest of the settings: a rerun keeps the frames already written and
computes the rest (the windows are fixed by frame index, so a resumed folder equals an
uninterrupted one bit for bit); other settings are refused unless ``overwrite``.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

import cv2
import numpy as np
from torch import nn

from spanetlib.derain.images import derain_array
from spanetlib.io.checks import check_frames
from spanetlib.io.errors import InputError
from spanetlib.io.files import (
    IMAGE_SUFFIXES,
    atomic_write_json,
    check_image_size,
    check_output_folder,
    check_output_path,
    read_image,
    round_to_uint8,
    write_image,
)
from spanetlib.io.video import VIDEO_CODECS, VideoWriter, count_frames, list_frame_files
from spanetlib.models.device import resolve_precision, resolve_torch_device
from spanetlib.pipeline.alignment import AlignMode, get_align_mode
from spanetlib.pipeline.clip_estimate import (
    EDGE_TOLERANCE_PX,
    ClipEstimate,
    estimate_clip,
    frame_valid_region,
    pair_check,
)

__all__ = [
    "ClipDerain",
    "DEFAULT_WINDOW",
    "DerainWindow",
    "FrameRecord",
    "MANIFEST_NAME",
    "METHODS",
    "MIN_FRAMES",
    "VideoDerainSummary",
    "blend_weight",
    "derain_clip",
    "derain_video",
    "derain_windows",
]

#: Frames around each frame the temporal estimate uses (``window``): the paper's N for
#: normal rain is 100 (`spanetlib.pipeline.selection.FRAME_COUNTS`); 60 frames (2 s at 30 fps) keep
#: a 1080p window under 400 MB of frames and follow slow scene changes sooner.
DEFAULT_WINDOW = 60
#: Fewest frames a clip (and a window) needs: the estimator's smallest period.
MIN_FRAMES = 5
#: What :func:`derain_clip` can return: the hybrid (the product), the temporal estimate
#: alone, per-frame SPANet alone (the last two for comparisons).
METHODS = ("hybrid", "temporal", "spanet")
#: The manifest a frame-folder output keeps (settings and input identity).
MANIFEST_NAME = "derain_video.json"

_CONTEXT = 32  # pixels of context around a SPANet crop (derain_array's default tile overlap)
_WHOLE_FRAME_SHARE = 0.5  # crops covering more than this share of the frame: whole frame


# --------------------------------------------------------------------------------------------
# Records
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class FrameRecord:
    """Where one derained frame came from.

    Attributes:
        index: the frame's index in the clip.
        window: ``(start, stop)``, the frames (half-open) its temporal estimate used.
        segment: the stable period of that window whose background it took (-1: none, the
            whole frame is SPANet's).
        paired: whether the estimator paired the frame with that period
            (``ClipEstimate.membership``); False for transitions and frames mostly covered
            by content, whose still part still takes the background.
        content_share: share of the frame's pixels flagged as content by the pair check.
        outside_share: share outside the period's valid region (camera motion).
        spanet_share: mean SPANet weight over the frame (0: background everywhere).
        spanet_run_share: share of the frame's pixels SPANet was run on (crops with context).
    """

    index: int
    window: tuple[int, int]
    segment: int
    paired: bool
    content_share: float
    outside_share: float
    spanet_share: float
    spanet_run_share: float


@dataclass
class ClipDerain:
    """The result of :func:`derain_clip`.

    Attributes:
        frames: N x H x W x 3 uint8, the derained frames.
        weight: N x H x W float32 in [0, 1], SPANet's share of each output pixel (0: the
            temporal estimate, 1: SPANet's output for that frame).
        records: one :class:`FrameRecord` per frame.
        method: the method used (one of :data:`METHODS`).
    """

    frames: np.ndarray
    weight: np.ndarray
    records: tuple[FrameRecord, ...]
    method: str

    def describe(self) -> str:
        """One line: frames, windows, and how much of the output SPANet made."""
        windows = sorted({r.window for r in self.records})
        spanet = float(np.mean([r.spanet_share for r in self.records]))
        ran = float(np.mean([r.spanet_run_share for r in self.records]))
        none = sum(r.segment < 0 for r in self.records)
        return (f"{len(self.records)} frames ({self.method}), {len(windows)} window(s); SPANet "
                f"makes {100 * spanet:.1f} % of the output (run on {100 * ran:.1f} % of the "
                f"pixels), {none} frame(s) without a background")


class DerainWindow(NamedTuple):
    """One window of :func:`derain_windows`.

    The estimate uses frames ``[start, stop)``; the window derains ``[out_start, out_stop)``.
    """

    start: int
    stop: int
    out_start: int
    out_stop: int


def derain_windows(n_frames: int, window: int = DEFAULT_WINDOW) -> list[DerainWindow]:
    """The windows a clip of ``n_frames`` frames is derained in.

    A clip of at most ``window`` frames is one window. Otherwise output blocks of
    ``window // 2`` frames tile the clip, each estimated from the ``window`` frames centred on
    it, shifted to stay inside the clip.

    Args:
        n_frames: frames in the clip (>= 1).
        window: frames per estimate (>= :data:`MIN_FRAMES`).

    Returns:
        The windows, in order; their output ranges partition ``range(n_frames)``.

    Raises:
        ValueError: bad arguments.

    Example:
        >>> derain_windows(10, 6)
        [DerainWindow(start=0, stop=6, out_start=0, out_stop=3), \
DerainWindow(start=1, stop=7, out_start=3, out_stop=6), \
DerainWindow(start=4, stop=10, out_start=6, out_stop=9), \
DerainWindow(start=4, stop=10, out_start=9, out_stop=10)]
    """
    if isinstance(n_frames, bool) or not isinstance(n_frames, (int, np.integer)) \
            or n_frames < 1:
        raise ValueError(f"n_frames: expected an int >= 1, got {n_frames!r}")
    _check_window(window)
    if n_frames <= window:
        return [DerainWindow(0, int(n_frames), 0, int(n_frames))]
    hop = window // 2
    out = []
    for out_start in range(0, n_frames, hop):
        out_stop = min(n_frames, out_start + hop)
        start = int(math.floor((out_start + out_stop) / 2 - window / 2))
        start = min(max(0, start), n_frames - window)
        out.append(DerainWindow(start, start + window, out_start, out_stop))
    return out


def _check_window(window: int) -> None:
    if isinstance(window, bool) or not isinstance(window, (int, np.integer)) \
            or window < MIN_FRAMES:
        raise ValueError(f"window: expected an int >= {MIN_FRAMES} (frames per temporal "
                         f"estimate), got {window!r}")


# --------------------------------------------------------------------------------------------
# One frame
# --------------------------------------------------------------------------------------------


def blend_weight(content: np.ndarray, radius: int | None = None) -> np.ndarray:
    """The soft SPANet weight of a content mask: 1 on content, feathered to 0 outside it.

    The mask is dilated by a disc of ``radius`` pixels and blurred (Gaussian, sigma
    ``radius / 2``); content pixels keep weight 1. The ramp lies outside the content, where
    background and SPANet both show the scene, so it hides the seam without mixing the
    background into an object. Weights under 1/510 (which cannot change a uint8 output by
    half a level) are 0, so the ramp ends where the blur's support does.

    Args:
        content: H x W bool.
        radius: feather radius in pixels (default ``max(3, round(min(H, W) / 60))``).

    Returns:
        H x W float32 in [0, 1].
    """
    content = np.asarray(content, bool)
    if content.ndim != 2:
        raise ValueError(f"content: expected an H x W mask, got shape {content.shape}")
    if radius is None:
        radius = max(3, round(min(content.shape) / 60))
    if not content.any():
        return np.zeros(content.shape, np.float32)
    disc = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * radius + 1, 2 * radius + 1))
    grown = cv2.dilate(content.astype(np.uint8), disc).astype(np.float32)
    weight = cv2.GaussianBlur(grown, (0, 0), radius / 2.0, borderType=cv2.BORDER_REPLICATE)
    weight[content] = 1.0
    # Below 1/510 a weight cannot move a uint8 output by half a level: exactly background.
    weight[weight < 1.0 / 510.0] = 0.0
    return np.clip(weight, 0.0, 1.0)


@dataclass
class _Background:
    """A frame's background and what it flags (frame coordinates)."""

    segment: int
    image: np.ndarray  # H x W x 3 uint8
    content: np.ndarray  # H x W bool: pair check flags, inside the valid region
    valid: np.ndarray  # H x W bool
    paired: bool


def _frame_background(estimate: ClipEstimate, local: int, frame: np.ndarray
                      ) -> _Background | None:
    """The background of window frame ``local`` from its period or the best neighbouring one.

    None when the window has no usable period or the frame's registration failed.
    """
    if not estimate.motion.ok[local]:
        return None
    usable = [k for k, seg in enumerate(estimate.segments) if seg.aligned]
    if not usable:
        return None
    member = int(estimate.membership[local])
    if member >= 0:
        candidates = [member]
    else:
        # The nearest usable period before and after the frame (or containing it).
        before = [k for k in usable if estimate.segments[k].start <= local]
        after = [k for k in usable if estimate.segments[k].stop > local]
        candidates = sorted({*before[-1:], *after[:1]})
    best: _Background | None = None
    warped = bool(estimate.warped[local])
    for k in candidates:
        seg = estimate.segments[k]
        clean = estimate.clean_for_frame(local, k)
        valid = frame_valid_region(seg.valid, estimate.motion, local, warped)
        bad, _ = pair_check(frame, clean, seg.noise_sigma, EDGE_TOLERANCE_PX[warped])
        content = bad & valid
        if best is None or content.sum() < best.content.sum():
            best = _Background(k, clean, content, valid, k == member)
    return best


def _crop_boxes(need: np.ndarray) -> list[tuple[int, int, int, int]] | None:
    """Boxes ``(y0, y1, x0, x1)`` covering ``need`` with ``_CONTEXT`` pixels of context.

    Each box holds one connected part of ``need`` grown by the context; None when the boxes
    would cover most of the frame (run on the whole frame instead).
    """
    h, w = need.shape
    side = 2 * _CONTEXT + 1
    grown = cv2.dilate(need.astype(np.uint8), np.ones((side, side), np.uint8))
    count, labels, stats, _ = cv2.connectedComponentsWithStats(grown, connectivity=8)
    boxes = [(int(y), int(y + bh), int(x), int(x + bw)) for x, y, bw, bh, _ in stats[1:count]]
    if sum((y1 - y0) * (x1 - x0) for y0, y1, x0, x1 in boxes) > _WHOLE_FRAME_SHARE * h * w:
        return None
    return boxes


def _spanet_where(model: nn.Module, frame: np.ndarray, need: np.ndarray,
                  run: Callable[[np.ndarray], np.ndarray]) -> tuple[np.ndarray, float]:
    """SPANet's output (H x W x 3 float32, 0..255) wherever ``need``; elsewhere zeros.

    Returns the output and the share of the frame SPANet ran on.
    """
    h, w = need.shape
    out = np.zeros((h, w, 3), np.float32)
    if not need.any():
        return out, 0.0
    boxes = _crop_boxes(need)
    if boxes is None:
        return run(frame), 1.0
    area = 0
    for y0, y1, x0, x1 in boxes:
        out[y0:y1, x0:x1] = run(frame[y0:y1, x0:x1])
        area += (y1 - y0) * (x1 - x0)
    return out, area / float(h * w)


# --------------------------------------------------------------------------------------------
# The stream: windows of frames in, derained frames out
# --------------------------------------------------------------------------------------------


def _derainer(model: nn.Module | None, tile: int | None, device: str, precision: str
              ) -> Callable[[np.ndarray], np.ndarray]:
    """``run(image uint8) -> H x W x 3 float32 in 0..255`` with the given options."""
    # Refused before the first frame (a still clip may never run the model).
    resolve_precision(precision, resolve_torch_device(device))

    def run(image: np.ndarray) -> np.ndarray:
        if model is None:
            raise ValueError("method needs a model")
        h, w = image.shape[:2]
        use_tile = tile if tile is not None and max(h, w) > tile else None
        derained, _ = derain_array(model, image, tile=use_tile, device=device,
                                   precision=precision)
        return derained * np.float32(255.0)

    return run


def _derain_window(frames: np.ndarray, first: int, outputs: Sequence[int], method: str,
                   align: AlignMode, run: Callable[[np.ndarray], np.ndarray],
                   model: nn.Module | None
                   ) -> Iterator[tuple[int, np.ndarray, np.ndarray, FrameRecord]]:
    """Derain ``outputs`` (clip indices) of a window whose frames start at clip index ``first``."""
    n, h, w = frames.shape[:3]
    window = (first, first + n)
    estimate = None
    if method != "spanet":
        estimate = estimate_clip(frames, align)
    for index in outputs:
        local = index - first
        frame = frames[local]
        background = None if estimate is None else _frame_background(estimate, local, frame)
        if background is None:
            content = np.ones((h, w), bool)
            outside = np.ones((h, w), bool)
            weight = np.ones((h, w), np.float32)
        else:
            content = background.content
            outside = ~background.valid
            weight = blend_weight(content | outside)
        if method == "temporal":
            weight = np.zeros((h, w), np.float32)
            out = frame if background is None else background.image
            ran = 0.0
        else:
            spanet, ran = _spanet_where(model, frame, weight > 0, run)
            if background is None:
                mixed = spanet
            else:
                wt = weight[..., None]
                mixed = wt * spanet + (1.0 - wt) * background.image.astype(np.float32)
            out = round_to_uint8(mixed)
        record = FrameRecord(
            index=int(index), window=window,
            segment=-1 if background is None else background.segment,
            paired=bool(background is not None and background.paired),
            content_share=float(content.mean()), outside_share=float(outside.mean()),
            spanet_share=float(weight.mean()), spanet_run_share=float(ran))
        yield int(index), out, weight, record


def _derain_stream(frames_from: Callable[[int], Iterator[np.ndarray]], n_frames: int, *,
                   model: nn.Module | None, method: str, align: AlignMode, window: int,
                   tile: int | None, device: str, precision: str,
                   done: Callable[[int], bool] | None = None
                   ) -> Iterator[tuple[int, np.ndarray, np.ndarray, FrameRecord]]:
    """Derained frames in order, one window of input frames in memory at a time.

    ``frames_from(k)`` iterates over the clip's frames from index ``k``; ``done(i)`` says
    that output frame ``i`` exists already (it is skipped, and so is a window whose outputs
    all exist).
    """
    run = _derainer(model, tile, device, precision)
    plan = derain_windows(n_frames, window)
    todo = [(win, [i for i in range(win.out_start, win.out_stop) if not (done and done(i))])
            for win in plan]
    todo = [(win, outputs) for win, outputs in todo if outputs]
    if not todo:
        return
    source = frames_from(todo[0][0].start)
    buffer: dict[int, np.ndarray] = {}
    next_index = todo[0][0].start
    shape = None
    for win, outputs in todo:
        for i in [i for i in buffer if i < win.start]:
            del buffer[i]
        while next_index < win.stop:
            frame = next(source, None)
            if frame is None:
                raise InputError(f"the input ended at frame {next_index}; expected "
                                 f"{n_frames} frames")
            if next_index >= win.start:
                shape = shape or frame.shape
                if frame.shape != shape:
                    raise InputError(f"frame {next_index} is {frame.shape[1]} x "
                                     f"{frame.shape[0]} but earlier frames are {shape[1]} x "
                                     f"{shape[0]}; all frames must have the same size")
                buffer[next_index] = frame
            next_index += 1
        frames = np.stack([buffer[i] for i in range(win.start, win.stop)])
        yield from _derain_window(frames, win.start, outputs, method, align, run, model)


def _check_method(method: str) -> str:
    if method not in METHODS:
        raise ValueError(f"method: expected one of {METHODS}, got {method!r}")
    return method


def _check_frames(frames: np.ndarray) -> np.ndarray:
    arr = check_frames(frames)
    if len(arr) < MIN_FRAMES:
        raise InputError(f"found {len(arr)} frame(s); a clip needs at least {MIN_FRAMES} "
                         "frames for the temporal estimate (derain single images with "
                         "`spanet derain`)")
    check_image_size(arr[0], "frame 0")
    return arr


def _load_model(model: nn.Module | str | os.PathLike | None, device: str) -> nn.Module | None:
    if model is None or isinstance(model, nn.Module):
        return model
    from spanetlib.models import load_pretrained

    return load_pretrained(model, device=device)


def derain_clip(frames: np.ndarray, model: nn.Module | str | os.PathLike | None = "official",
                *, method: str = "hybrid", align: str | AlignMode = "auto",
                window: int = DEFAULT_WINDOW, tile: int | None = None, device: str = "cpu",
                precision: str = "fp32", progress: bool = False) -> ClipDerain:
    """Derain a clip held in memory (see the module docstring for the method).

    Args:
        frames: N x H x W x 3 uint8 RGB frames, N >= :data:`MIN_FRAMES`.
        model: a derainer (``forward(x) -> (image, attention)``), or weights for
            :func:`spanetlib.models.load_pretrained` (``"official"``, ``"synthetic"``, a
            path); None only with ``method="temporal"``.
        method: ``"hybrid"`` (default), ``"temporal"`` (the estimate alone: the background
            everywhere, its warp's reflected border included; a frame with no background
            is returned as it is) or ``"spanet"`` (per-frame SPANet on every whole frame).
        align: ``"auto"``, ``"on"``, ``"off"`` or an :class:`AlignMode` (see
            :func:`spanetlib.pipeline.alignment.align_frames`).
        window: frames per temporal estimate (:func:`derain_windows`).
        tile: SPANet tile size for frames larger than it (None: whole frames).
        device: where SPANet runs (``"cpu"``, ``"cuda"``, ``"auto"``).
        precision: SPANet's precision (``"fp32"``; ``"bf16"``/``"auto"`` where
            :func:`spanetlib.derain.images.derain_array` offers them).
        progress: show a progress bar.

    Returns:
        A :class:`ClipDerain` (frames, SPANet weight per pixel, one record per frame).

    Raises:
        InputError: frames that are not N x H x W x 3 uint8 with N >= :data:`MIN_FRAMES`,
            unusable weights or device.
        ValueError: bad options.
    """
    from tqdm.auto import tqdm

    arr = _check_frames(frames)
    method = _check_method(method)
    mode = get_align_mode(align)
    _check_window(window)
    if model is None and method != "temporal":
        raise ValueError(f"model: method {method!r} needs a model or weights")
    net = _load_model(model, device) if method != "temporal" else None
    n, h, w = arr.shape[:3]
    out = np.empty_like(arr)
    weights = np.empty((n, h, w), np.float32)
    records: list[FrameRecord] = []
    stream = _derain_stream(lambda k: iter(arr[k:]), n, model=net, method=method, align=mode,
                            window=window, tile=tile, device=device, precision=precision)
    for i, frame, weight, record in tqdm(stream, total=n, desc=f"derain clip ({method})",
                                         unit="frame", disable=not progress):
        out[i], weights[i] = frame, weight
        records.append(record)
    return ClipDerain(frames=out, weight=weights, records=tuple(records), method=method)


# --------------------------------------------------------------------------------------------
# Scores on clips with a known truth
# --------------------------------------------------------------------------------------------


































# --------------------------------------------------------------------------------------------
# Files: the `spanet derain-video` command
# --------------------------------------------------------------------------------------------


@dataclass
class VideoDerainSummary:
    """What :func:`derain_video` did.

    Attributes:
        input: the input video or frame folder.
        output: the output video or frame folder.
        n_frames: frames in the clip.
        written: frames derained and written by this run.
        kept: frames a previous run had written (frame folders only; resumed).
        records: the :class:`FrameRecord` of every frame written by this run.
        weights: the weights used.
        seconds: wall time.
    """

    input: Path
    output: Path
    n_frames: int
    written: int = 0
    kept: int = 0
    records: list[FrameRecord] = field(default_factory=list)
    weights: str = ""
    seconds: float = 0.0

    def __str__(self) -> str:
        kept = f" ({self.kept} kept from an earlier run)" if self.kept else ""
        share = (f"; SPANet made {100 * np.mean([r.spanet_share for r in self.records]):.1f} %"
                 " of the output" if self.records else "")
        return (f"derained {self.written} of {self.n_frames} frames{kept} -> {self.output} in "
                f"{self.seconds:.1f} s (weights: {self.weights}){share}")


@dataclass(frozen=True)
class _Input:
    """A clip on disk: its frame count, size, names and frame rate."""

    path: Path
    n_frames: int
    shape: tuple[int, int, int]
    names: tuple[str, ...]  # output PNG names, in frame order
    fps: float
    is_video: bool

    def frames_from(self, start: int) -> Iterator[np.ndarray]:
        """Frames ``start, start + 1, ...`` (the folder's files or the video's decoded frames)."""
        if not self.is_video:
            for path in list_frame_files(self.path)[start:self.n_frames]:
                yield read_image(path)
            return
        cap = cv2.VideoCapture(str(self.path))
        try:
            for _ in range(start):
                if not cap.grab():
                    return
            for _ in range(start, self.n_frames):
                ok, frame = cap.read()
                if not ok or frame is None:
                    return
                yield (cv2.cvtColor(frame, cv2.COLOR_GRAY2RGB) if frame.ndim == 2
                       else cv2.cvtColor(frame[:, :, :3], cv2.COLOR_BGR2RGB))
        finally:
            cap.release()


def _open_input(path: Path) -> _Input:
    """Check the input clip before any heavy work (exists, is a clip, enough frames)."""
    if not path.exists():
        raise InputError(f"input not found: {path}")
    if path.is_dir():
        files = list_frame_files(path)
        if not files:
            raise InputError(f"no image frames ({', '.join(IMAGE_SUFFIXES)}) in folder: {path}")
        names = tuple(f"{p.stem}.png" for p in files)
        if len(set(names)) != len(names):
            dup = next(name for name in names if names.count(name) > 1)
            raise InputError(f"two frames in {path} would both be written as {dup}")
        n, fps, is_video = len(files), 25.0, False
        first = read_image(files[0])
    else:
        if path.suffix.lower() in IMAGE_SUFFIXES:
            raise InputError(f"expected a video file or a folder of frames, got an image: "
                             f"{path} (derain single images with `spanet derain`)")
        n = count_frames(path)
        cap = cv2.VideoCapture(str(path))
        try:
            fps = float(cap.get(cv2.CAP_PROP_FPS)) or 25.0
        finally:
            cap.release()
        first = next(_Input(path, n, (0, 0, 0), (), fps, True).frames_from(0), None)
        if first is None:
            raise InputError(f"cannot read any frame from video: {path}")
        digits = max(5, len(str(n - 1)))
        names = tuple(f"frame_{i:0{digits}d}.png" for i in range(n))
        is_video = True
    if n < MIN_FRAMES:
        raise InputError(f"found {n} frame(s) in {path}; a clip needs at least {MIN_FRAMES} "
                         "frames for the temporal estimate (derain single images with "
                         "`spanet derain`)")
    check_image_size(first, f"frame 0 of {path}")
    return _Input(path, n, first.shape, names, fps if math.isfinite(fps) and fps > 0 else 25.0,
                  is_video)


def _output_kind(output: Path) -> str:
    """``"video"`` or ``"folder"`` by the output's suffix (an existing folder is a folder)."""
    if output.is_dir():
        return "folder"
    suffix = output.suffix.lower()
    if suffix in VIDEO_CODECS:
        return "video"
    if not suffix:
        return "folder"
    raise InputError(f"output {output}: expected a video file ({', '.join(VIDEO_CODECS)}) or "
                     "a folder (no suffix) for PNG frames")


def _weights_identity(weights: str | os.PathLike | nn.Module) -> str:
    """A name for the manifest: the packaged name, or a file's path and SHA-256."""
    if isinstance(weights, nn.Module):
        return f"model {type(weights).__name__}"
    text = str(weights)
    path = Path(text)
    if text in ("official", "synthetic") or not path.is_file():
        return text
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    return f"{path.resolve()} (sha256 {digest})"


def _check_folder(source: _Input, output: Path, settings: dict, overwrite: bool
                  ) -> list[str]:
    """Check a frame-folder output before any work; return the files to remove first.

    A folder with our manifest and the same settings is resumed: the frames it holds are
    kept. Other settings, or PNG frames of ours without the manifest, are refused unless
    ``overwrite``, which removes the frames the old manifest lists (or the clashing ones).
    """
    check_output_folder(output)
    if output.exists() and not output.is_dir():
        raise InputError(f"output {output} exists and is not a folder")
    if not source.is_video and output.resolve() == source.path.resolve():
        raise InputError(f"the output folder {output} is the input folder; choose another")
    if not output.is_dir():
        return []
    manifest_path = output / MANIFEST_NAME
    if manifest_path.is_file():
        try:
            old = json.loads(manifest_path.read_text(encoding="utf-8"))
            old_settings, old_frames = dict(old["settings"]), list(old["frames"])
        except (OSError, ValueError, KeyError, TypeError) as err:
            if not overwrite:
                raise InputError(f"cannot read {manifest_path} ({err}); pass --overwrite to "
                                 "start over") from err
            old_settings, old_frames = {}, []
        if old_settings == settings:
            return []
        if not overwrite:
            changed = sorted(k for k in {**settings, **old_settings}
                             if settings.get(k) != old_settings.get(k))
            raise InputError(f"{output} holds frames derained with other settings ("
                             f"{', '.join(changed)} differ); pass --overwrite to replace them "
                             "or choose another folder")
        return [name for name in old_frames
                if isinstance(name, str) and Path(name).name == name]
    clash = [name for name in source.names if (output / name).exists()]
    if clash and not overwrite:
        raise InputError(f"{output / clash[0]} already exists ({len(clash)} frame(s) of this "
                         "clip's names) but the folder holds no derain-video manifest; pass "
                         "--overwrite to replace them")
    return clash


def _prepare_folder(output: Path, remove: list[str], source: _Input, settings: dict
                    ) -> Callable[[int], bool]:
    """Remove ``remove``, write the manifest; return ``done(i)``: frame ``i`` is written."""
    for name in remove:
        if (output / name).is_file():
            (output / name).unlink()
    output.mkdir(parents=True, exist_ok=True)
    atomic_write_json(output / MANIFEST_NAME, {"command": "spanet derain-video",
                                               "settings": settings,
                                               "frames": list(source.names)})
    return lambda i: (output / source.names[i]).is_file()


def derain_video(input: str | os.PathLike, output: str | os.PathLike,
                 weights: str | os.PathLike | nn.Module = "official", *,
                 align: str = "auto", window: int = DEFAULT_WINDOW, tile: int | None = 512,
                 device: str = "auto", precision: str = "fp32", fps: float | None = None,
                 overwrite: bool = False, progress: bool = True) -> VideoDerainSummary:
    """Derain a video file or a folder of frames into a video file or a folder of PNGs.

    Every check (input readable with at least :data:`MIN_FRAMES` frames, output writable and
    not replaced without ``overwrite``, options, weights and device) happens before the first
    window is estimated. Frames are read a window at a time (:func:`derain_windows`), so
    memory does not grow with the clip's length.

    Args:
        input: a video file or a folder of image frames (natural name order).
        output: a video file (``.avi``/``.mkv``: lossless FFV1; ``.mp4``/``.m4v``/``.mov``:
            mp4v, lossy) or a folder (no suffix) for PNG frames named after the input frames
            (``frame_00000.png`` ... for a video input). A folder output is resumable.
        weights: ``"official"``, ``"synthetic"``, a checkpoint path, or a model.
        align: ``"auto"``, ``"on"`` or ``"off"`` (:data:`spanetlib.pipeline.alignment.ALIGN_MODES`).
        window: frames per temporal estimate.
        tile: SPANet tile size for frames larger than it (None: whole frames).
        device: ``"auto"``, ``"cpu"`` or ``"cuda"``.
        precision: SPANet's precision (``"fp32"``, or ``"bf16"``/``"auto"`` where offered).
        fps: frame rate of a video output (default: the input video's, 25 for frames).
        overwrite: replace an existing output (a frame folder with other settings too).
        progress: show a progress bar.

    Returns:
        A :class:`VideoDerainSummary`.

    Raises:
        InputError: a missing or unreadable input, too few frames, an output that exists
            (video) or holds other frames or settings (folder) without ``overwrite``, an
            unwritable output, unusable weights or device.
        ValueError: bad options.
    """
    from tqdm.auto import tqdm

    start_time = time.perf_counter()
    input_path, output = Path(input), Path(output)
    mode = get_align_mode(align)
    _check_window(window)
    if tile is not None and (isinstance(tile, bool) or tile <= 32):
        raise ValueError(f"tile: expected None or an int > 32 (the tile overlap), got {tile!r}")
    if fps is not None and not (math.isfinite(fps) and fps > 0):
        raise ValueError(f"fps: expected a positive number, got {fps!r}")
    kind = _output_kind(output)
    source = _open_input(input_path)
    settings = {"input": str(source.path.resolve()), "n_frames": source.n_frames,
                "size": list(source.shape[:2]), "weights": _weights_identity(weights),
                "align": mode.name, "window": int(window), "tile": tile,
                "precision": precision}
    remove: list[str] = []
    if kind == "video":
        if output.resolve() == source.path.resolve():
            raise InputError(f"the output {output} is the input video; choose another path")
        check_output_path(output, overwrite=overwrite)
    else:
        remove = _check_folder(source, output, settings, overwrite)
    model = _load_model(weights, device)
    _derainer(model, tile, device, precision)  # refuses an unsupported precision now
    done = _prepare_folder(output, remove, source, settings) if kind == "folder" else None
    summary = VideoDerainSummary(input=input_path, output=output, n_frames=source.n_frames,
                                 weights=settings["weights"])
    if done is not None:
        summary.kept = sum(done(i) for i in range(source.n_frames))
    stream = _derain_stream(source.frames_from, source.n_frames, model=model, method="hybrid",
                            align=mode, window=window, tile=tile, device=device,
                            precision=precision, done=done)
    bar = tqdm(total=source.n_frames, initial=summary.kept, desc="derain-video", unit="frame",
               disable=not progress)
    with bar:
        if kind == "folder":
            for i, frame, _, record in stream:
                write_image(output / source.names[i], frame)
                summary.written += 1
                summary.records.append(record)
                bar.update(1)
        else:
            _write_video(output, stream, source.shape, fps or source.fps, summary, bar)
    summary.seconds = time.perf_counter() - start_time
    return summary


def _write_video(output: Path, stream: Iterator[tuple[int, np.ndarray, np.ndarray,
                                                       FrameRecord]],
                 shape: tuple[int, int, int], fps: float, summary: VideoDerainSummary,
                 bar: object) -> None:
    """Write the stream to a hidden temporary video, then move it onto ``output``."""
    with VideoWriter(output, shape[:2], fps) as out:
        for _, frame, _, record in stream:
            out.write(frame)
            summary.written += 1
            summary.records.append(record)
            bar.update(1)
