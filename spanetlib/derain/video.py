"""Derain a whole clip: the temporal estimate where the scene is still, SPANet where it moves.

The §3 estimate (Eqs. 2-4 over aligned frames,
:func:`spanetlib.pipeline.clip_estimate.estimate_clip`) is exact wherever the scene is still
but erases whatever moves; SPANet (per frame) keeps what moves but leaves some rain, flickers
and softens texture. :func:`derain_clip` takes each where
it is right. For every window of frames (:func:`derain_windows`):

1. **Estimate.** ``estimate_clip`` aligns the window's frames (``align``: camera motion and
   exposure, warping only what moved in ``"auto"``), splits it into stable periods and makes
   one background estimate per period.
2. **Background of each frame.** The frame's period (or, for a frame in no period: a
   transition, a frame mostly covered by an object, the nearest periods before and after it,
   whichever rain explains best; periods down to :data:`SHORT_PERIOD` frames get an estimate,
   and one shorter than :data:`MIN_FRAMES` competes with the periods beside it, as a cut
   where nothing changed leaves rain in so few frames' estimate) is rendered in the frame's
   own coordinates and exposure
   (:meth:`ClipEstimate.clean_for_frame`): the result is warped back when the camera moved.
3. **Rain or content.** :func:`spanetlib.pipeline.clip_estimate.pair_check` (the per-frame test the
   estimator pairs frames with) flags the pixels rain does not explain: rain only brightens,
   in thin streaks, so darker pixels and bright regions wider than rain are content (objects,
   people, lights), taken whole (their widened bounding box). Outside the period's valid
   region (what not every frame of the period sees: bands along the edges when the camera
   moves) the background comes from the frames that do see each pixel, where at least
   :data:`spanetlib.derain.scene_samples.MIN_COVER` do
   (:func:`spanetlib.derain.scene_samples.fill_uncovered`). Pixels fewer frames see and
   frames whose registration failed are content too: no background exists there, except in
   the outermost :data:`EDGE_EXTEND_PX` rows and columns, which take the background's
   reflected border (a shaking camera uncovers a few pixels there in every frame; SPANet
   would read a strip of the whole frame for them).
   Two more checks make content of what rain cannot be: bright pixels the pair check let
   pass as rain that are bright at the same scene position in the frames before and after
   (registered; rain streaks do not stay: :func:`_persistent_bright`), and, when the camera
   moved, pixels constant in FRAME coordinates over the window (logos, timestamps, subtitles,
   watermarks: :func:`frame_fixed_candidates`), whose background is taken from the window's
   median in frame coordinates instead of the scene estimate that smears them. Near the
   edges of such graphics (translucent strips and boxes included) the scene estimate mixes
   samples from under the graphic and beside it; there the background is rebuilt from
   samples on the same side of the edge
   (:mod:`spanetlib.derain.frame_graphics`), or the band along the edge would pass for
   persistent bright content and SPANet would run along the whole edge.
4. **Specks.** Content parts whose box fits in :data:`SPECK_SQUARES` streak squares (a splash
   ripple, a small dark thing, a compression block, a small part that stays bright; real
   footage has dozens per frame, all over it) take the frame's own pixels, except where the
   frame is brighter than the background by more than rain's level (a streak crossing them):
   SPANet would read a crop of its context around each, most of the frame for a few hundred
   pixels, and keep them as the frame shows them anyway (:func:`speck_parts`).
5. **Blend.** The rest of the content mask, with the bright pixels connected to it that passed
   for rain (within :data:`BRIGHT_REACH` feather radii: sky through a swaying branch, a
   highlight; :func:`_bright_parts_of`), is dilated and feathered (:func:`blend_weight`)
   into a weight ``w`` (1 on content, falling to 0 over a few pixels outside it); the output is
   ``w * SPANet(frame) + (1 - w) * background``, rounded to uint8 (the bands no background
   covers are feathered over only :data:`OUTSIDE_FEATHER` pixels: :func:`_frame_weight`).
   SPANet runs only where ``w > 0``, on the cheapest of (:func:`_spanet_plan`; a plan costs
   the pixels it reads plus :data:`CROP_OVERHEAD_PX` a forward pass): thin bands along the
   frame's edges (what the camera's motion left uncovered) as strips or not, the rest as
   grid cells in crops of one size (several per forward pass), as one crop per part (merged
   where their crops meet), or the need cut into boxes that follow it (:func:`_cut_tiles`),
   each with the context the model needs (measured once per model, :func:`spanet_context`;
   at most :data:`SPANET_CONTEXT` pixels); on the whole frame (in its tiles) only where that
   costs no more; a frame that rain explains everywhere needs no SPANet at all.

Why ``pair_check`` rather than :meth:`ClipEstimate.usable_mask`: the usable mask is built for
training pairs, where one wrong pixel is a wrong pair, so it is all False for every frame the
estimator does not pair (a transition, more than ``max_inconsistent`` of the frame flagged, a
frame darker than its clean image overall). A derained video needs every frame, and the still
part of such a frame is still explained by a neighbouring period's background; running the
same test per frame against the chosen period keeps the test and drops only the all-or-nothing
pairing rule.

**Windows.** ``window`` frames, by default 60 or as many as fit in :data:`WINDOW_FRAME_BYTES`
(28 at 1080p: :func:`auto_window`), as the estimate's copy of the window's frames lies on top
of what the first window's SPANet leaves resident. A clip no longer than ``window`` frames is
one window. A longer clip is cut into blocks of ``window // 2`` output frames; each block's
estimate uses the ``window`` frames centred on it (clamped to the clip), so every frame is
estimated with at least a quarter of the window before and after it (except at the clip's
ends) and memory holds one window of frames, whatever the clip's length. Consecutive windows
share half their frames, so their backgrounds agree to the estimate's noise.

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
import weakref
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

import cv2
import numpy as np
import torch
from torch import nn

from spanetlib.derain.frame_graphics import EdgeZone, edge_zone, same_side_background
from spanetlib.derain.images import (
    FORWARD_BYTES_PER_PIXEL,
    MEMORY_SHARE,
    DerainMemoryError,
    auto_tile,
    available_memory,
    derain_array,
    is_out_of_memory,
    tile_starts,
)
from spanetlib.derain.scene_samples import fill_uncovered
from spanetlib.io.checks import check_frames
from spanetlib.io.errors import InputError
from spanetlib.io.files import (
    IMAGE_SUFFIXES,
    ImageFormat,
    atomic_write_json,
    check_image_size,
    check_output_folder,
    check_output_path,
    read_image_with_format,
    restore_format,
    round_to_uint8,
    write_image,
)
from spanetlib.io.sound import has_sound_track
from spanetlib.io.video import (
    VIDEO_CODECS,
    VideoWriter,
    count_frames,
    list_frame_files,
    no_frames_message,
    sequence_path,
)
from spanetlib.models.convert import image_to_tensor
from spanetlib.models.device import autocast, resolve_precision, resolve_torch_device
from spanetlib.models.memory import (
    bound_primitive_caches,
    release_freed_memory,
    return_large_blocks,
    reuse_freed_memory,
)
from spanetlib.pipeline.alignment import AlignMode, get_align_mode, motion_displacement
from spanetlib.pipeline.clip_estimate import (
    EDGE_TOLERANCE_PX,
    PAIR_WIDEN_PX,
    ClipEstimate,
    estimate_clip,
    frame_valid_region,
    pair_check,
    streak_square_side,
)

__all__ = [
    "ClipDerain",
    "DEFAULT_WINDOW",
    "DerainWindow",
    "FrameRecord",
    "MANIFEST_NAME",
    "METHODS",
    "MIN_AUTO_WINDOW",
    "MIN_FRAMES",
    "SHORT_PERIOD",
    "VideoDerainSummary",
    "WINDOW_FRAME_BYTES",
    "auto_window",
    "blend_weight",
    "crop_context",
    "derain_clip",
    "derain_video",
    "derain_windows",
    "feather_radius",
    "spanet_context",
    "spanet_memory",
    "speck_parts",
]

#: Frames around each frame the temporal estimate uses (``window``): the paper's N for
#: normal rain is 100 (`spanetlib.pipeline.selection.FRAME_COUNTS`); 60 frames (2 s at 30 fps)
#: follow slow scene changes sooner. Large frames get fewer (:func:`auto_window`).
DEFAULT_WINDOW = 60
#: Fewest frames a clip (and a window) needs: the estimator's smallest period.
MIN_FRAMES = 5
#: Fewest frames of a window's period that get their own estimate: the shortest period the
#: split makes. A pan's fast start cuts real footage into such periods; without their own
#: estimate their frames took a later period's background and SPANet on most of the frame.
SHORT_PERIOD = 4
#: Most bytes of input frames a window holds when its length is left to the frame size
#: (:func:`auto_window`); the estimate holds an aligned copy of them as much again. A 1080p
#: window of 60 frames (373 MB, and its copy) peaked at 1,851 MB in the windows after the
#: first (derain-video, 150 hand-held frames): what the first window's SPANet and native
#: libraries leave resident (code, caches, heap) lies under every later estimate. With 28
#: frames at 1080p the command peaked at 1,474 MB over 150 frames (1,451 over 60; quiet
#: 2-core Xeon, results/video_derain_memory.md).
WINDOW_FRAME_BYTES = 168 << 20
#: Fewest frames :func:`auto_window` gives (a shorter window makes a noisier estimate).
MIN_AUTO_WINDOW = 20
#: What :func:`derain_clip` can return: the hybrid (the product), the temporal estimate
#: alone, per-frame SPANet alone (the last two for comparisons).
METHODS = ("hybrid", "temporal", "spanet")
#: The manifest a frame-folder output keeps (settings and input identity).
MANIFEST_NAME = "derain_video.json"

#: Most pixels of context SPANet sees around the part of a crop whose output is used
#: (:func:`spanetlib.derain.images.derain_array`'s default tile overlap); a model whose output
#: settles within less takes less (:func:`spanet_context`).
SPANET_CONTEXT = 32
#: Contexts :func:`spanet_context` tries, smallest first.
CONTEXT_STEPS = (8, 12, 16, 24)
#: Largest change (levels, 0..255) the context may make to the output of a probe crop's
#: core for :func:`spanet_context` to take it: a tenth of the rounding step, as the probe
#: is not the footage.
CONTEXT_TOLERANCE = 0.05
#: Sides of the grid cells SPANet may be run on where the frame needs it (each cell in a crop
#: of ``side + 2 * SPANET_CONTEXT`` pixels, several per forward pass); per frame, the side
#: that reads the fewest pixels (small cells for scattered bits, large ones for objects).
SPANET_CORES = (16, 32, 64, 128)
#: Memory SPANet's forward passes may take at once (bytes): caps the crops per pass and the
#: ``auto`` tile of whole frames, so a 1080p clip stays within its memory goal (at 1080p,
#: window 60, the rest of the process holds ~1.35 GB while SPANet runs).
SPANET_MEMORY = 160 << 20
#: Memory the rest of a derain-video process holds per pixel of its frames (bytes): peaks of
#: `spanet derain-video` (hand-held clips, 60 frames, synthetic weights, SPANet within
#: :data:`SPANET_MEMORY`) of 593, 915 and 1,447 MB at 360 x 640, 720 x 1280 and 1080p lie on
#: a line of 465 bytes a pixel; rounded down. What a smaller frame leaves of 1080p's memory
#: goes to SPANet's whole frames (:func:`spanet_memory`): a clip from a moving bus (SPANet on
#: most frames whole, official weights) then peaked at 943, 990 and 1,033 MB at 360 x 640,
#: 480 x 640 and 540 x 960.
PROCESS_BYTES_PER_PIXEL = 450
_FULL_HD_PIXELS = 1080 * 1920
#: Extra memory of one fp32 forward pass per pixel of the crops SPANet runs on here (bytes):
#: the growth of the resident set over each forward pass of a 1080p hand-held clip in a
#: derain-video process (batches of 56-pixel crops, edge strips of 25-105 x 1920 and
#: 1080 x 70-170 pixels; synthetic weights) reached 2,690, above what whole square images
#: need (:data:`spanetlib.derain.images.FORWARD_BYTES_PER_PIXEL`, 2,300); rounded up.
CROP_BYTES_PER_PIXEL = 2800
#: Most pixels one crop may have: an fp32 forward pass within :data:`SPANET_MEMORY`. A larger
#: crop (an edge band, one part's box) is split into pieces, each with its own context.
MAX_CROP_PIXELS = SPANET_MEMORY // CROP_BYTES_PER_PIXEL
#: Overlay candidates (:func:`frame_fixed_candidates`): constant in frame coordinates in at
#: least this share of consecutive frame pairs, in a window where the camera moved at least
#: ``OVERLAY_MIN_MOTION_PX`` pixels.
OVERLAY_STABLE_SHARE = 0.7
OVERLAY_MIN_MOTION_PX = 2.0
OVERLAY_RIM_PX = 2  # the rim around frame-fixed graphics that may take their median too
#: Feather radius (pixels) of SPANet's weight over the bands no background covers.
OUTSIDE_FEATHER = 2
#: Pixels along the frame's edges where a band no background covers takes the background's
#: reflected border instead of SPANet (the last rows and columns a shaking camera uncovers):
#: a band this thin would cost SPANet a strip of the frame's whole width or height with
#: its context, for a few pixels of output. Costs some PSNR there (the reflection is not
#: the scene); 0 turns it off.
EDGE_EXTEND_PX = 4
#: How far (in feather radii, :func:`feather_radius`) from an object's pixels the bright
#: pixels connected to it are taken as its own (:func:`_bright_parts_of`).
BRIGHT_REACH = 3
#: Fewest pixels of a bright part that :func:`_persistent_bright` may call content.
PERSIST_MIN_AREA = 6
#: Frames (this one included) over which a bright part must stay bright somewhere to be
#: content (:func:`_persistent_bright`).
PERSIST_SEED_FRAMES = 5
#: Least ratio of the smallest to the largest excess brightness (over the background) a seed
#: pixel of :func:`_persistent_bright` keeps over its frames: content adds about the same in
#: each, streaks that meet by chance (dense rain at 640 x 480 over 30+ frames) add each its own.
PERSIST_STEADY = 0.7
#: Working size (longer side, pixels) of the camera-motion measurement in each window's estimate
#: (``estimate_clip``'s ``max_side``, 640 there): at 480 x 640 half the size measures the motion
#: to within 0.05 px of full size (generated hand-held clip) in 0.65 of the time, the largest
#: cost of a still clip's window after SPANet.
MOTION_MAX_SIDE = 320
#: Largest displacement (pixels) between two frames' registrations under which a nearest-pixel
#: warp from one to the other is the identity (each pixel's nearest source is itself).
SAME_PIXEL_PX = 0.25
#: Side, in streak squares (:func:`spanetlib.pipeline.clip_estimate.streak_square_side`), of
#: the largest square a content part's bounding box may fit in to be a speck
#: (:func:`speck_parts`): smaller than the objects the pair check takes whole (two squares of
#: area), with the pair check's widening (:data:`PAIR_WIDEN_PX`) around it.
SPECK_SQUARES = 2
#: What one more forward pass costs :func:`_spanet_plan`, in crop pixels: SPANet took about
#: 7 ms a pass beyond 3.3 us a pixel (official weights, crops of 40 x 100 to 245 x 245, one
#: per pass, 2-core AMD EPYC), about 2,000 pixels' worth; rounded up.
CROP_OVERHEAD_PX = 2500
_TILE_OVERLAP = 32  # pixels: the overlap of a whole frame's tiles (derain_array's default)
_CUT_CELL = 8  # pixels: the cell of _cut_tiles's search
_CUT_DEPTH = 24  # most nested cuts of _cut_tiles


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
        spanet_run_share: share of the frame's pixels SPANet was run on (crops with context;
            1: the whole frame).
        overlay_share: share of the frame taken as an overlay fixed to the frame (logo,
            timestamp, subtitle, watermark) and kept from frame coordinates.
        speck_share: share of the frame in content specks (:func:`speck_parts`), taken from
            the frame itself where rain does not brighten it, without SPANet.
    """

    index: int
    window: tuple[int, int]
    segment: int
    paired: bool
    content_share: float
    outside_share: float
    spanet_share: float
    spanet_run_share: float
    overlay_share: float = 0.0
    speck_share: float = 0.0


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


def auto_window(shape: Sequence[int]) -> int:
    """Frames per window for frames of ``shape`` (H x W or H x W x C) when none is asked for.

    :data:`DEFAULT_WINDOW`, or fewer where that many frames would take more than
    :data:`WINDOW_FRAME_BYTES` (as RGB, 8 bits): as many as fit, at least
    :data:`MIN_AUTO_WINDOW`. 60 at 640 x 480 and 1280 x 720, 28 at 1080p, 20 at 4K.

    Example:
        >>> auto_window((1080, 1920, 3)), auto_window((480, 640))
        (28, 60)
    """
    frame_bytes = 3 * int(shape[0]) * int(shape[1])
    return int(min(DEFAULT_WINDOW, max(MIN_AUTO_WINDOW, WINDOW_FRAME_BYTES // frame_bytes)))


def _check_window(window: int) -> None:
    if isinstance(window, bool) or not isinstance(window, (int, np.integer)) \
            or window < MIN_FRAMES:
        raise ValueError(f"window: expected an int >= {MIN_FRAMES} (frames per temporal "
                         f"estimate), got {window!r}")


# --------------------------------------------------------------------------------------------
# One frame
# --------------------------------------------------------------------------------------------


def feather_radius(shape: tuple[int, int]) -> int:
    """The feather radius (pixels) of :func:`blend_weight` for an H x W frame."""
    return max(3, round(min(shape[:2]) / 60))


def _grown(mask: np.ndarray, radius: int) -> np.ndarray:
    """``mask`` (H x W bool) dilated by a disc of ``radius`` pixels, as 0/1 uint8."""
    disc = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * radius + 1, 2 * radius + 1))
    return cv2.dilate(mask.astype(np.uint8), disc)


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
        radius = feather_radius(content.shape)
    if not content.any():
        return np.zeros(content.shape, np.float32)
    grown = _grown(content, radius).astype(np.float32)
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
    overlay: np.ndarray  # H x W bool: frame-fixed overlay, taken from frame coordinates
    bright: np.ndarray  # H x W bool: brighter than the background, not flagged (rain?)
    excess: np.ndarray  # H x W uint8: luminance above the background (levels, clipped)
    rain_level: float  # an excess over this is rain's, where nothing else explains it


def _frame_background(estimate: ClipEstimate, local: int, frame: np.ndarray,
                      candidates: np.ndarray | None = None, fixed: np.ndarray | None = None,
                      frames: np.ndarray | None = None, zone: EdgeZone | None = None
                      ) -> _Background | None:
    """The background of window frame ``local`` from its period or the best neighbouring one.

    Near edges fixed to the frame (``zone``, :func:`edge_zone`) it is rebuilt from samples of
    the window's ``frames`` on the same side (:func:`same_side_background`). Where
    ``candidates`` (pixels constant in frame coordinates while the camera moved,
    :func:`frame_fixed_candidates`) disagree with the period's background, the background
    takes ``fixed`` (their value in frame coordinates): an overlay fixed to the frame, which
    the scene-coordinate estimate smears along the camera's path.

    None when the window has no usable period or the frame's registration failed.
    """
    if not estimate.motion.ok[local]:
        return None
    usable = [k for k, seg in enumerate(estimate.segments) if seg.aligned]
    if not usable:
        return None
    member = int(estimate.membership[local])
    if member >= 0:
        candidates_k = [member]
        seg = estimate.segments[member]
        if len(seg.frames) < MIN_FRAMES:
            # A period this short may be a cut where nothing changed, its few frames leaving
            # rain in its estimate: the periods beside it compete, the longest winning ties.
            before = [k for k in usable if estimate.segments[k].stop <= seg.start]
            after = [k for k in usable if estimate.segments[k].start >= seg.stop]
            candidates_k = sorted({member, *before[-1:], *after[:1]},
                                  key=lambda k: -len(estimate.segments[k].frames))
    else:
        # The nearest usable period before and after the frame (or containing it).
        before = [k for k in usable if estimate.segments[k].start <= local]
        after = [k for k in usable if estimate.segments[k].stop > local]
        candidates_k = sorted({*before[-1:], *after[:1]})
    best: _Background | None = None
    warped = bool(estimate.warped[local])
    for k in candidates_k:
        seg = estimate.segments[k]
        clean = estimate.clean_for_frame(local, k)
        valid = frame_valid_region(seg.valid, estimate.motion, local, warped)
        if frames is not None:
            clean, valid = fill_uncovered(clean, valid, frames, estimate, local, k)
        if zone is not None and frames is not None:
            clean = same_side_background(clean, frames, estimate, local, k, zone)
        overlay = np.zeros(valid.shape, bool)
        if candidates is not None and fixed is not None:
            tol = 3.5 * float(seg.noise_sigma) + 2.0
            luma_clean = _luma_u8(clean).astype(np.int16)
            luma_fixed = _luma_u8(fixed).astype(np.int16)
            luma_frame = _luma_u8(frame).astype(np.int16)
            differ = np.abs(luma_clean - luma_fixed) > tol
            # The frame itself shows the graphics (not the scene the estimate shows there):
            # scene texture that merely stayed put for a while follows the estimate.
            shows = np.abs(luma_frame - luma_fixed) < np.abs(luma_frame - luma_clean)
            core = (candidates & differ & shows).astype(np.uint8)
            overlay = cv2.dilate(core, np.ones((3, 3), np.uint8)) > 0
            overlay &= candidates
            # The graphics' anti-aliased rim over the moving scene changes with it, so it is
            # no candidate; the scene estimate lacks the graphics there, and the bright rim
            # would pass for rain. Next to graphics, where the frame shows them, the rim
            # takes its window median in frame coordinates too.
            rim = cv2.dilate(core, np.ones((2 * OVERLAY_RIM_PX + 1,) * 2, np.uint8)) > 0
            overlay |= rim & differ & shows & ~candidates
            if overlay.any():
                clean = clean.copy()
                clean[overlay] = fixed[overlay]
                valid = valid | overlay
        bad, dy = pair_check(frame, clean, seg.noise_sigma, EDGE_TOLERANCE_PX[warped])
        content = bad & valid
        if best is None or content.sum() < best.content.sum():
            tol = 3.5 * float(seg.noise_sigma) + 2.0
            bright = (dy > 1.5 * tol) & valid & ~bad
            excess = np.clip(dy, 0.0, 255.0).astype(np.uint8)
            best = _Background(k, clean, content, valid, k == member, overlay, bright, excess,
                               1.5 * tol)
    return best


def _run_depth(mask: np.ndarray, lo: int, hi: int) -> int:
    """Longest run of True from row 0 down the columns ``lo:hi`` of ``mask`` (0: none)."""
    part = mask[:, lo:hi]
    if part.size == 0 or not part[0].any():
        return 0
    first_gap = np.argmin(part, axis=0)  # first False per column (0 if all True)
    first_gap[part.all(axis=0)] = part.shape[0]
    return int(first_gap.max())


def _edge_depths(need: np.ndarray, limit: int) -> tuple[int, int, int, int]:
    """How deep ``need`` reaches in from each side in unbroken runs: top, bottom, left, right.

    First over each side's middle (the ``limit`` pixels at either end left out, where the
    perpendicular bands lie), then again over all it does not share with those bands (the
    corners a rotated frame leaves uncovered). A depth over ``limit`` counts as 0 (not a thin
    band: the grid covers it).
    """
    h, w = need.shape
    sides = (need, need[::-1], need.T, need.T[::-1])  # top, bottom, left, right
    first = [_run_depth(m, limit, m.shape[1] - limit) for m in sides]
    first = [d if d <= limit else 0 for d in first]
    top, bottom, left, right = first
    spans = ((left, w - right), (left, w - right), (top, h - bottom), (top, h - bottom))
    out = []
    for mask, d, (lo, hi) in zip(sides, first, spans, strict=True):
        again = _run_depth(mask, lo, hi)
        out.append(again if again <= limit else d)
    return out[0], out[1], out[2], out[3]


def _spanet_plan(need: np.ndarray, context: int = SPANET_CONTEXT
                 ) -> list[list[tuple[tuple[slice, slice], tuple[slice, slice]]]]:
    """Where SPANet runs to cover ``need``: groups of equal-size crops, each one batch.

    Each item is ``(crop, core)``: the crop fed to SPANet (frame slices) and the part of the
    frame whose output it gives (inside the crop, with ``context`` pixels of context on
    every side that is not the frame's edge). The plan is the cheapest (:func:`_plan_cost`)
    of: thin bands along the frame's edges (what the period's valid region misses when the
    camera moved) run as strips or not, the rest as a grid of cells (:data:`SPANET_CORES`)
    in crops of one size, clamped inside the frame, or as one box per part
    (:func:`_box_tiles`); or the whole need cut into boxes that follow it
    (:func:`_cut_tiles`). A crop over :data:`MAX_CROP_PIXELS` is run in pieces
    (:func:`_split_crop`). An empty plan: nothing needed. None of this depends on anything
    but ``need`` and ``context``, so a frame is derained the same way in every run.
    """
    m = int(context)
    if not need.any():
        return []
    # Candidates, the one that costs least wins (ties: the first): edge bands as strips or
    # not (content touching an edge is no band), the rest as grid cells of one size (batched)
    # or as one box per part of the need (merged where their crops would meet); or the need
    # cut into boxes.
    plans = [_plan_with_bands(need, m, boxes) for boxes in (False, True)]
    plans += [[_best_grid(need, m)], [[tile] for tile in _box_tiles(need, m)],
              [[tile] for tile in _cut_tiles(need, m)]]
    return min((_capped(plan, m, need.shape) for plan in plans), key=_plan_cost)


def _capped(plan: list[list[tuple[tuple[slice, slice], tuple[slice, slice]]]], m: int,
            shape: tuple[int, int]
            ) -> list[list[tuple[tuple[slice, slice], tuple[slice, slice]]]]:
    """``plan`` with every crop over :data:`MAX_CROP_PIXELS` run in pieces (:func:`_split_crop`)."""
    out = []
    for group in plan:
        fits = [tile for tile in group if _plan_area([[tile]]) <= MAX_CROP_PIXELS]
        out += [fits] if fits else []
        for tile in group:
            if _plan_area([[tile]]) > MAX_CROP_PIXELS:
                out += _split_crop(tile, m, shape)
    return out


def _split_crop(tile: tuple[tuple[slice, slice], tuple[slice, slice]], m: int,
                shape: tuple[int, int]
                ) -> list[list[tuple[tuple[slice, slice], tuple[slice, slice]]]]:
    """A crop over :data:`MAX_CROP_PIXELS` as pieces, in groups of one crop size.

    Its core is cut into a grid of near-equal pieces, each read with ``m`` pixels of context
    on every side that is not the frame's edge; of the grids whose crops fit, the one that
    reads the fewest pixels (ties: fewer rows).
    """
    _, core = tile
    h, w = shape
    y0, y1, x0, x1 = core[0].start, core[0].stop, core[1].start, core[1].stop
    best: tuple[int, int, int] | None = None  # (pixels read, rows, columns)
    for ny in range(1, y1 - y0 + 1):
        side_y = -(-(y1 - y0) // ny) + 2 * m
        side_x = MAX_CROP_PIXELS // side_y - 2 * m
        if side_x < 1:
            continue
        nx = -(-(x1 - x0) // side_x)
        read = ny * nx * side_y * (-(-(x1 - x0) // nx) + 2 * m)
        if best is None or read < best[0]:
            best = (read, ny, nx)
    if best is None:  # the context alone is over the limit: as it is
        return [[tile]]
    _, ny, nx = best
    rows = np.linspace(y0, y1, ny + 1).round().astype(int)
    cols = np.linspace(x0, x1, nx + 1).round().astype(int)
    by_size: dict[tuple[int, int], list[tuple[tuple[slice, slice], tuple[slice, slice]]]] = {}
    for a, b in zip(rows[:-1], rows[1:], strict=True):
        for c, d in zip(cols[:-1], cols[1:], strict=True):
            piece = (slice(max(0, int(a) - m), min(h, int(b) + m)),
                     slice(max(0, int(c) - m), min(w, int(d) + m)))
            size = (piece[0].stop - piece[0].start, piece[1].stop - piece[1].start)
            by_size.setdefault(size, []).append((piece, (slice(int(a), int(b)),
                                                          slice(int(c), int(d)))))
    return list(by_size.values())


def _box_tiles(rest: np.ndarray, m: int) -> list[tuple[tuple[slice, slice], tuple[slice, slice]]]:
    """One crop per connected part of ``rest``: its bounding box with ``m`` pixels of context.

    Boxes whose crops would overlap are merged into their common bounding box (until none
    do), so no pixel is read twice and the cores are disjoint.
    """
    h, w = rest.shape
    count, _, stats, _ = cv2.connectedComponentsWithStats(rest.astype(np.uint8), connectivity=8)
    boxes = [(int(y), int(x), int(y + bh), int(x + bw)) for x, y, bw, bh in
             stats[1:, :4].tolist()]
    merged = True
    while merged and len(boxes) > 1:
        merged = False
        out: list[tuple[int, int, int, int]] = []
        for box in boxes:
            for k, other in enumerate(out):
                if (box[0] - m < other[2] + m and other[0] - m < box[2] + m
                        and box[1] - m < other[3] + m and other[1] - m < box[3] + m):
                    out[k] = (min(box[0], other[0]), min(box[1], other[1]),
                              max(box[2], other[2]), max(box[3], other[3]))
                    merged = True
                    break
            else:
                out.append(box)
        boxes = out
    boxes.sort()
    return [_with_context((slice(y0, y1), slice(x0, x1)), m, (h, w)) for y0, x0, y1, x1 in boxes]


def _with_context(core: tuple[slice, slice], m: int, shape: tuple[int, int]
                  ) -> tuple[tuple[slice, slice], tuple[slice, slice]]:
    """``(crop, core)``: the crop of ``core`` with ``m`` pixels of context, inside the frame."""
    h, w = shape
    return ((slice(max(0, core[0].start - m), min(h, core[0].stop + m)),
             slice(max(0, core[1].start - m), min(w, core[1].stop + m))), core)


def _cut_tiles(need: np.ndarray, m: int) -> list[tuple[tuple[slice, slice], tuple[slice, slice]]]:
    """One crop per box of a guillotine partition of ``need`` chosen for the least cost.

    The need's bounding box is cut in two, by rows or by columns, where the two parts' crops
    (their own bounding boxes with ``m`` pixels of context) cost least; each part is cut
    again the same way, and a part stays whole where that costs less than its best cut.
    The cost of a crop is its pixels plus :data:`CROP_OVERHEAD_PX` (a forward pass's own
    time), a crop over :data:`MAX_CROP_PIXELS` counted as its pieces (:func:`_split_crop`).
    Unlike merged boxes (:func:`_box_tiles`) this follows a ragged need, such as a band
    along part of an edge with objects beside it, or bright content spread over the frame.
    The search runs on cells of :data:`_CUT_CELL` pixels; each core is the need's exact
    bounding box inside its part, so the cores are disjoint.
    """
    h, w = need.shape
    c = _CUT_CELL
    ny, nx = -(-h // c), -(-w // c)
    padded = np.zeros((ny * c, nx * c), bool)
    padded[:h, :w] = need
    cells = padded.reshape(ny, c, nx, c).any(axis=(1, 3))

    def crop_area(y0, y1, x0, x1):  # cell bounds (arrays or ints) -> crop pixels
        rows = np.minimum(h, y1 * c + m) - np.maximum(0, y0 * c - m)
        cols = np.minimum(w, x1 * c + m) - np.maximum(0, x0 * c - m)
        return rows * cols

    def tight(y0: int, y1: int, x0: int, x1: int) -> tuple[int, int, int, int]:
        part = cells[y0:y1, x0:x1]
        rows, cols = np.flatnonzero(part.any(axis=1)), np.flatnonzero(part.any(axis=0))
        return y0 + int(rows[0]), y0 + int(rows[-1]) + 1, x0 + int(cols[0]), x0 + int(cols[-1]) + 1

    def core_of(box: tuple[int, int, int, int]) -> tuple[slice, slice]:
        y0, y1, x0, x1 = box
        part = need[y0 * c:y1 * c, x0 * c:x1 * c]
        rows, cols = np.flatnonzero(part.any(axis=1)), np.flatnonzero(part.any(axis=0))
        return (slice(y0 * c + int(rows[0]), y0 * c + int(rows[-1]) + 1),
                slice(x0 * c + int(cols[0]), x0 * c + int(cols[-1]) + 1))

    def own_cost(box: tuple[int, int, int, int]) -> float:
        return _plan_cost(_capped([[_with_context(core_of(box), m, (h, w))]], m, (h, w)))

    def best_cut(box: tuple[int, int, int, int]):
        # Every cut position at once, along rows and along columns: each side's bounding
        # box from running ORs of the part's rows (columns) from either end.
        y0, y1, x0, x1 = box
        best = None
        for part, flip in ((cells[y0:y1, x0:x1], False), (cells[y0:y1, x0:x1].T, True)):
            n, k = part.shape
            if n < 2:
                continue
            ramp = np.arange(n)
            used = part.any(axis=1)
            last_before = np.maximum.accumulate(np.where(used, ramp, -1))[:-1]
            first_after = np.minimum.accumulate(np.where(used, ramp, n)[::-1])[::-1][1:]
            heads = np.logical_or.accumulate(part, axis=0)[:-1]
            tails = np.logical_or.accumulate(part[::-1], axis=0)[::-1][1:]
            head_lo, head_hi = heads.argmax(axis=1), k - heads[:, ::-1].argmax(axis=1)
            tail_lo, tail_hi = tails.argmax(axis=1), k - tails[:, ::-1].argmax(axis=1)
            a0, b0 = (x0, y0) if flip else (y0, x0)
            spans = [(np.full(n - 1, a0), a0 + last_before + 1, b0 + head_lo, b0 + head_hi),
                     (a0 + first_after, np.full(n - 1, a0 + n), b0 + tail_lo, b0 + tail_hi)]
            cost = 0
            for lo, hi, plo, phi in spans:
                cost = cost + (crop_area(plo, phi, lo, hi) if flip else crop_area(lo, hi, plo, phi))
            cost = cost + 2 * CROP_OVERHEAD_PX
            cost[~used[:-1] & ~used[1:]] = np.iinfo(np.int64).max  # cut next to a used line
            cut = int(np.argmin(cost))
            if best is None or cost[cut] < best[0]:
                best = (int(cost[cut]), cut + 1, flip)
        return best

    def solve(box: tuple[int, int, int, int], depth: int
              ) -> tuple[float, list[tuple[int, int, int, int]]]:
        own = own_cost(box)
        y0, y1, x0, x1 = box
        # No cut pays where two crops of one cell each would cost as much already.
        floor = 2 * (CROP_OVERHEAD_PX + (c + m) ** 2)
        if depth >= _CUT_DEPTH or own <= floor:
            return own, [box]
        cut = best_cut(box)
        if cut is None:
            return own, [box]
        _, at, flip = cut
        parts = ((y0, y1, x0, x0 + at), (y0, y1, x0 + at, x1)) if flip \
            else ((y0, y0 + at, x0, x1), (y0 + at, y1, x0, x1))
        total, boxes = 0.0, []
        for part in parts:
            sub_cost, sub_boxes = solve(tight(*part), depth + 1)
            total += sub_cost
            boxes += sub_boxes
            if total >= own:
                return own, [box]
        return total, boxes

    if not cells.any():
        return []
    _, boxes = solve(tight(0, ny, 0, nx), 0)
    return [_with_context(core_of(box), m, (h, w)) for box in sorted(boxes)]


def _plan_with_bands(need: np.ndarray, m: int, boxes: bool = False
                     ) -> list[list[tuple[tuple[slice, slice], tuple[slice, slice]]]]:
    """:func:`_spanet_plan` with the edge bands as strips, the rest as grid cells or boxes.

    ``boxes``: the rest as one crop per part (:func:`_box_tiles`) instead of grid cells.
    """
    h, w = need.shape
    rest = need.copy()
    groups: list[list[tuple[tuple[slice, slice], tuple[slice, slice]]]] = []
    top, bottom, left, right = _edge_depths(need, max(8, min(h, w) // 6))
    # Each band in its own pass (bands of different depths would read the deeper one twice).
    if top:
        groups.append([((slice(0, min(h, top + m)), slice(0, w)), (slice(0, top), slice(0, w)))])
        rest[:top] = False
    if bottom:
        groups.append([((slice(max(0, h - bottom - m), h), slice(0, w)),
                        (slice(h - bottom, h), slice(0, w)))])
        rest[h - bottom:] = False
    if left and rest[:, :left].any():
        groups.append([((slice(0, h), slice(0, min(w, left + m))), (slice(0, h), slice(0, left)))])
        rest[:, :left] = False
    if right and rest[:, w - right:].any():
        groups.append([((slice(0, h), slice(max(0, w - right - m), w)),
                        (slice(0, h), slice(w - right, w)))])
        rest[:, w - right:] = False
    if rest.any():
        if boxes:
            groups += [[tile] for tile in _box_tiles(rest, m)]
        else:
            groups.append(_best_grid(rest, m))
    return groups


def _best_grid(rest: np.ndarray, m: int) -> list[tuple[tuple[slice, slice], tuple[slice, slice]]]:
    """The grid tiles of the cell size (:data:`SPANET_CORES`) that read the fewest pixels."""
    best: list[tuple[tuple[slice, slice], tuple[slice, slice]]] = []
    if not rest.any():
        return best
    for c in SPANET_CORES:
        tiles = _grid_tiles(rest, c, m)
        if not best or _plan_area([tiles]) < _plan_area([best]):
            best = tiles
    return best


def _grid_tiles(rest: np.ndarray, c: int, m: int
                ) -> list[tuple[tuple[slice, slice], tuple[slice, slice]]]:
    """Crops of one size around the ``c``-pixel grid cells holding a pixel of ``rest``."""
    h, w = rest.shape
    sy, sx = min(h, c + 2 * m), min(w, c + 2 * m)
    ny, nx = -(-h // c), -(-w // c)
    padded = np.zeros((ny * c, nx * c), bool)
    padded[:h, :w] = rest
    hit = padded.reshape(ny, c, nx, c).any(axis=(1, 3))
    tiles = []
    for ty, tx in zip(*np.nonzero(hit), strict=True):
        y0, x0 = int(ty) * c, int(tx) * c
        cy0 = min(max(0, y0 - m), h - sy)
        cx0 = min(max(0, x0 - m), w - sx)
        tiles.append(((slice(cy0, cy0 + sy), slice(cx0, cx0 + sx)),
                      (slice(y0, min(h, y0 + c)), slice(x0, min(w, x0 + c)))))
    return tiles


def _plan_area(groups: list[list[tuple[tuple[slice, slice], tuple[slice, slice]]]]) -> int:
    """Pixels SPANet reads for a plan (crops, overlaps counted)."""
    return sum((crop[0].stop - crop[0].start) * (crop[1].stop - crop[1].start)
               for group in groups for crop, _ in group)


def _passes(group: list[tuple[tuple[slice, slice], tuple[slice, slice]]],
            dtype: torch.dtype = torch.float32) -> int:
    """Forward passes :meth:`_Spanet.where` runs a group of equal-size crops in."""
    per_pass = max(1, int(SPANET_MEMORY // (_plan_area([group[:1]]) * _crop_bytes(dtype))))
    return -(-len(group) // per_pass)


def _plan_cost(groups: list[list[tuple[tuple[slice, slice], tuple[slice, slice]]]]) -> int:
    """What a plan costs in crop pixels: those it reads, plus :data:`CROP_OVERHEAD_PX` a pass."""
    return _plan_area(groups) + CROP_OVERHEAD_PX * sum(_passes(g) for g in groups if g)


def spanet_context(forward: Callable[[np.ndarray], np.ndarray]) -> int:
    """The context (pixels) a crop needs for SPANet's output on its core to match a larger crop.

    SPANet's IRNN carries information along whole rows and columns, so how far the output
    depends on the input depends on the weights: measured, not assumed. A seeded probe
    (smooth texture with bright streaks, 128 x 128) is run whole; its central 32 x 32 core
    (48 pixels of context) is the reference. The first of :data:`CONTEXT_STEPS` whose crop
    gives that core within :data:`CONTEXT_TOLERANCE` levels is the answer, otherwise
    :data:`SPANET_CONTEXT`. The probe is fixed, so a model gets the same context in every run
    on a machine (resumes stay identical).

    Args:
        forward: B x h x w x 3 uint8 -> B x h x w x 3 float32 in 0..255.

    Returns:
        Pixels of context, at most :data:`SPANET_CONTEXT`.
    """
    rng = np.random.default_rng(22)
    side, core, lo = 128, 32, 48
    probe = cv2.GaussianBlur(rng.uniform(40, 200, (side, side, 3)).astype(np.float32),
                             (0, 0), 3.0)
    probe += rng.normal(0, 6, probe.shape).astype(np.float32)
    for _ in range(40):  # bright slanted streaks, as rain
        y, x = rng.integers(0, side, 2)
        cv2.line(probe, (int(x), int(y)), (int(x) + 4, int(y) + 18), (235, 235, 235), 1)
    probe = np.clip(probe, 0, 255).astype(np.uint8)
    reference = forward(probe[None])[0][lo:lo + core, lo:lo + core]
    for m in CONTEXT_STEPS:
        crop = probe[lo - m:lo + core + m, lo - m:lo + core + m]
        out = forward(crop[None])[0][m:m + core, m:m + core]
        if float(np.abs(out - reference).max()) <= CONTEXT_TOLERANCE:
            return m
    return SPANET_CONTEXT


#: model -> ((device, dtype, parameter sums), context): measured once per model and weights.
_CONTEXTS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def crop_context(model: nn.Module, device: str = "cpu", precision: str = "fp32") -> int:
    """The context (pixels) the hybrid gives ``model``'s crops, measured once and cached.

    :func:`spanet_context` on the model as :func:`derain_clip` runs it; later calls with the
    same model, weights, device and precision return the cached value. Its cost (a few
    forward passes on a 128 x 128 probe) is paid once per process by the first frame that
    needs SPANet; calling this first moves it out of a timing.
    """
    return _Spanet(model, None, device, precision).context


def spanet_memory(shape: Sequence[int]) -> int:
    """Memory (bytes) SPANet's whole-frame passes may take for frames of ``shape`` (H x W ...).

    :data:`SPANET_MEMORY` at 1080p and above; below, also what the rest of the process holds
    less than at 1080p (:data:`PROCESS_BYTES_PER_PIXEL` a pixel), so the process peaks about
    where it does at 1080p and a small frame runs in fewer tiles or whole. Crops keep
    :data:`SPANET_MEMORY` (:data:`MAX_CROP_PIXELS`): more of them per pass saves little.

    Example:
        >>> spanet_memory((1080, 1920)) == SPANET_MEMORY < spanet_memory((360, 640))
        True
    """
    pixels = int(shape[0]) * int(shape[1])
    return SPANET_MEMORY + PROCESS_BYTES_PER_PIXEL * max(0, _FULL_HD_PIXELS - pixels)


def _crop_bytes(dtype: torch.dtype) -> float:
    """Memory of a forward pass per crop pixel: measured in fp32, scaled for other dtypes."""
    fp32 = FORWARD_BYTES_PER_PIXEL[torch.float32]
    return CROP_BYTES_PER_PIXEL * FORWARD_BYTES_PER_PIXEL.get(dtype, fp32) / fp32


class _Spanet:
    """SPANet on a whole frame (``whole``) or on the crops of a plan (``where``), batched."""

    def __init__(self, model: nn.Module | None, tile: int | str | None, device: str,
                 precision: str) -> None:
        # Refused before the first frame (a still clip may never run the model).
        self.dev = resolve_torch_device(device)
        self.dtype = resolve_precision(precision, self.dev)
        if tile is not None and tile != "auto" and (isinstance(tile, bool)
                                                    or not isinstance(tile, (int, np.integer))
                                                    or tile <= 32):
            raise ValueError(f"tile: expected 'auto', None or an int > 32 (the tile overlap), "
                             f"got {tile!r}")
        self.model, self.tile, self.precision = model, tile, precision
        self._context: int | None = None

    @property
    def context(self) -> int:
        """Pixels of context around each crop's core (:func:`spanet_context`, measured once)."""
        if self._context is None:
            if self.model is None:
                raise ValueError("method needs a model")
            self.model.eval().to(self.dev)
            with torch.no_grad():
                key = (str(self.dev), str(self.dtype), tuple(
                    float(p.detach().float().sum()) for p in self.model.parameters()))
            cached = _CONTEXTS.get(self.model)
            if cached is None or cached[0] != key:
                cached = (key, spanet_context(self._forward))
                _CONTEXTS[self.model] = cached
            self._context = cached[1]
        return self._context

    def _tile_for(self, h: int, w: int) -> int | None:
        if self.tile == "auto":
            budget = spanet_memory((h, w))
            budget = min(budget, available_memory(self.dev) or budget)
            return auto_tile(h, w, self.dtype, int(budget / MEMORY_SHARE), _TILE_OVERLAP)
        return self.tile if self.tile is not None and max(h, w) > self.tile else None

    def whole_cost(self, h: int, w: int) -> int:
        """:func:`_plan_cost` of :meth:`whole` on an H x W frame: its tiles, one per pass."""
        tile = self._tile_for(h, w)
        if tile is None:
            return h * w + CROP_OVERHEAD_PX
        ys, xs = tile_starts(h, tile, _TILE_OVERLAP), tile_starts(w, tile, _TILE_OVERLAP)
        return len(ys) * len(xs) * (min(tile, h) * min(tile, w) + CROP_OVERHEAD_PX)

    def whole(self, image: np.ndarray) -> np.ndarray:
        """``derain_array`` on the whole frame (tiled as set): H x W x 3 float32, 0..255."""
        if self.model is None:
            raise ValueError("method needs a model")
        h, w = image.shape[:2]
        release_freed_memory()  # what the frame's checks freed, before SPANet's peak
        derained, _ = derain_array(self.model, image, tile=self._tile_for(h, w),
                                   overlap=_TILE_OVERLAP, device=self.dev,
                                   precision=self.precision)
        return derained * np.float32(255.0)

    def where(self, frame: np.ndarray, need: np.ndarray) -> tuple[np.ndarray, float]:
        """SPANet's output (H x W x 3 float32, 0..255) wherever ``need``; zeros elsewhere.

        Runs on the crops of :func:`_spanet_plan`, several per forward pass, or on the whole
        frame where that costs no more (:meth:`whole_cost`). Returns the output and the
        share of the frame's pixels SPANet read (crops with context, at most 1: the whole
        frame).
        """
        h, w = need.shape
        out = np.zeros((h, w, 3), np.float32)
        if not need.any():
            return out, 0.0
        plan = _spanet_plan(need, self.context)
        if _plan_cost(plan) >= self.whole_cost(h, w):
            return self.whole(frame), 1.0
        area = _plan_area(plan)
        if self.model is None:
            raise ValueError("method needs a model")
        self.model.eval().to(self.dev)
        release_freed_memory()  # what the frame's checks freed, before SPANet's peak
        # One block for all the frame's passes: each reuses the memory the last one freed
        # instead of faulting it in afresh (returned to the system once, at the end).
        with reuse_freed_memory():
            for group in plan:
                per_pass = -(-len(group) // _passes(group, self.dtype))
                for k in range(0, len(group), per_pass):
                    part = group[k:k + per_pass]
                    batch = np.stack([frame[crop] for crop, _ in part])
                    for (crop, core), result in zip(part, self._forward(batch), strict=True):
                        oy, ox = crop[0].start, crop[1].start
                        out[core] = result[core[0].start - oy:core[0].stop - oy,
                                           core[1].start - ox:core[1].stop - ox]
        return out, min(1.0, area / float(h * w))

    def _forward(self, batch: np.ndarray) -> np.ndarray:
        """B x h x w x 3 uint8 -> B x h x w x 3 float32 in 0..255 (clipped as derain_array)."""
        x = image_to_tensor(batch, dtype=torch.float32).to(self.dev)
        try:
            with torch.inference_mode(), reuse_freed_memory(), autocast(self.dtype, self.dev):
                result = self.model(x)
        except (RuntimeError, MemoryError) as err:
            if not is_out_of_memory(err):
                raise
            raise DerainMemoryError(
                f"out of memory running SPANet on {len(batch)} crops of {batch.shape[2]} x "
                f"{batch.shape[1]} on {self.dev}; free memory or use --precision bf16 "
                "where offered") from err
        image = result if isinstance(result, torch.Tensor) else result[0]
        image = image.float().cpu().numpy().transpose(0, 2, 3, 1)
        return np.clip(image, 0.0, 1.0) * np.float32(255.0)


# --------------------------------------------------------------------------------------------
# The stream: windows of frames in, derained frames out
# --------------------------------------------------------------------------------------------


def _luma_u8(image: np.ndarray) -> np.ndarray:
    return cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)


def frame_fixed_candidates(frames: np.ndarray, motion_px: float, tol: float = 4.0
                           ) -> np.ndarray:
    """Pixels that stay nearly constant in FRAME coordinates over a window: overlay candidates.

    A logo, timestamp, subtitle or watermark burned into the footage stays at the same pixel
    of every frame while the camera moves the scene under it. A pixel is a candidate when its
    luminance changes by at most ``tol`` levels between consecutive frames in at least
    :data:`OVERLAY_STABLE_SHARE` of the pairs (rain falls on a pixel in few frames, so it
    does not break the count). Without camera motion (``motion_px`` under
    :data:`OVERLAY_MIN_MOTION_PX`) the scene is just as constant, and the window's background
    shows what is fixed: no candidates.

    Args:
        frames: N x H x W x 3 uint8, the window's frames in their own coordinates.
        motion_px: the largest camera displacement over the window (pixels).
        tol: luminance change (levels) still counted as constant.

    Returns:
        H x W bool.
    """
    n, h, w = frames.shape[:3]
    if n < 3 or motion_px < OVERLAY_MIN_MOTION_PX:
        return np.zeros((h, w), bool)
    stable = np.zeros((h, w), np.uint16)
    prev = _luma_u8(frames[0])
    for k in range(1, n):
        cur = _luma_u8(frames[k])
        stable += cv2.absdiff(cur, prev) <= tol
        prev = cur
    candidates = stable >= OVERLAY_STABLE_SHARE * (n - 1)
    # Single pixels and thin lines are noise (flat scene parts, edges along the motion).
    return cv2.morphologyEx(candidates.astype(np.uint8), cv2.MORPH_OPEN,
                            np.ones((3, 3), np.uint8)) > 0


@dataclass
class _Analysis:
    """One window frame's background and what the checks flag (frame coordinates).

    Once the frame is derained, only ``bright`` and ``excess`` stay (``background`` None):
    what later frames' persistence check reads.
    """

    background: _Background | None
    bright: np.ndarray | None  # H x W bool: brighter than the background, taken for rain
    excess: np.ndarray | None = None  # H x W uint8: the background's ``excess``


class _WindowAnalysis:
    """The window's estimate, its frame-fixed overlays, and each frame's analysis (cached)."""

    def __init__(self, frames: np.ndarray, align: AlignMode, temporal: bool) -> None:
        self.frames = frames
        self.estimate = (estimate_clip(frames, align, quality=False, max_side=MOTION_MAX_SIDE,
                                      min_frames=SHORT_PERIOD)
                         if temporal else None)
        self.cache: dict[int, _Analysis] = {}
        self.fixed = None
        self.candidates = None
        self.zone: EdgeZone | None = None
        if self.estimate is None:
            return
        h, w = frames.shape[1:3]
        motion = self.estimate.motion
        ok = motion.ok
        moved = motion_displacement(motion.matrices[ok], (h, w)) if ok.any() else np.zeros(1)
        spread = float(moved.max() - moved.min()) if moved.size else 0.0
        if spread >= OVERLAY_MIN_MOTION_PX:
            self.zone = edge_zone(frames, self.estimate)
        candidates = frame_fixed_candidates(frames, spread)
        if candidates.any():
            self.candidates = candidates
            # The overlay's own value in frame coordinates, on it and its rim: the median over
            # the window (rain brightens a pixel in few frames).
            zone = cv2.dilate(candidates.astype(np.uint8),
                              np.ones((2 * OVERLAY_RIM_PX + 1,) * 2, np.uint8)) > 0
            fixed = np.zeros(frames.shape[1:], np.uint8)
            fixed[zone] = np.median(frames[:, zone], axis=0).round().astype(np.uint8)
            self.fixed = fixed

    def get(self, local: int) -> _Analysis:
        """The analysis of window frame ``local`` (computed once)."""
        if local not in self.cache:
            self.cache[local] = self._analyse(local)
        return self.cache[local]

    def forget_before(self, local: int) -> None:
        """Drop the analyses of frames before ``local`` (one window's worth at 1080p is GBs)."""
        for k in [k for k in self.cache if k < local]:
            del self.cache[k]

    def derained(self, local: int) -> None:
        """Frame ``local`` is derained: keep only what later frames read of its analysis."""
        found = self.cache.get(local)
        if found is not None:
            self.cache[local] = _Analysis(None, found.bright, found.excess)

    def _analyse(self, local: int) -> _Analysis:
        if self.estimate is None:
            return _Analysis(None, None)
        frame = self.frames[local]
        background = _frame_background(self.estimate, local, frame, self.candidates,
                                       self.fixed, self.frames, self.zone)
        if background is None:
            return _Analysis(None, None)
        return _Analysis(background, background.bright, background.excess)


def _to_frame(analysis: _WindowAnalysis, image: np.ndarray, other: int, local: int
              ) -> np.ndarray:
    """A map of window frame ``other`` in frame ``local``'s pixels (nearest; 0 outside).

    Where the two frames' registrations differ by under :data:`SAME_PIXEL_PX` pixels
    everywhere, every pixel's nearest source is itself: the map as it is (a still camera).
    """
    h, w = image.shape[:2]
    matrices = analysis.estimate.motion.matrices
    to_other = matrices[other] @ np.linalg.inv(matrices[local])
    if motion_displacement(to_other[None], (h, w))[0] < SAME_PIXEL_PX:
        return image
    return cv2.warpPerspective(image, to_other, (w, h), flags=cv2.INTER_NEAREST
                               | cv2.WARP_INVERSE_MAP, borderMode=cv2.BORDER_CONSTANT)


def _bright_stays(analysis: _WindowAnalysis, local: int, others: Sequence[int],
                  steady: bool = False) -> np.ndarray | None:
    """Frame ``local``'s bright pixels also bright at the same scene position in ``others``.

    ``steady``: and as bright there: the least excess over the background (luminance) over
    these frames is at least :data:`PERSIST_STEADY` of the largest. Content (sky, a light)
    adds the same in every frame; independent streaks that happen to meet at a pixel add
    each its own.
    """
    stays = analysis.get(local).bright.copy()
    low = high = analysis.get(local).excess if steady else None
    for other in others:
        found = analysis.get(other)
        if found.bright is None:
            return None
        stays &= _to_frame(analysis, found.bright.view(np.uint8), other, local) > 0
        if steady:
            excess = _to_frame(analysis, found.excess, other, local)
            low, high = np.minimum(low, excess), np.maximum(high, excess)
    if steady:
        stays &= low >= PERSIST_STEADY * high.astype(np.float32)
    return stays


def _persistent_bright(analysis: _WindowAnalysis, local: int) -> np.ndarray | None:
    """Bright pixels taken for rain in frame ``local`` that stay put over consecutive frames.

    Rain streaks are short-lived: a streak is gone (or has fallen far) by the next frame. A
    pixel bright at the same scene position (the neighbours' bright pixels mapped into this
    frame by the measured camera motion; not widened: streaks fall near parallel, so a widened
    streak would meet the next frame's streaks along their whole length) in the frames before
    AND after it is content (sky through foliage, a light, a reflection), not rain, where
    such pixels make a part of at least :data:`PERSIST_MIN_AREA` pixels that holds a pixel
    bright over :data:`PERSIST_SEED_FRAMES` consecutive frames around these three by a
    steady amount (:data:`PERSIST_STEADY`; heavy rain meets itself over three frames in
    streak-shaped patches now and then, over five rarely and then with each streak's own
    brightness, while content stays as bright), together with the frame's bright pixels connected
    to such a part (its moving edge). At the window's ends the frames on the one side decide.
    """
    own = analysis.get(local).bright
    n = len(analysis.frames)
    if own is None or not own.any() or n < 3:
        return None
    # The frames just before and after; at the window's ends the two on the one side.
    others = [local - 1, local + 1] if 0 < local < n - 1 else \
        ([1, 2] if local == 0 else [n - 2, n - 3])
    stays = _bright_stays(analysis, local, others)
    if stays is None or not stays.any():
        return None
    count, labels, stats, _ = cv2.connectedComponentsWithStats(stays.astype(np.uint8),
                                                               connectivity=8)
    keep = stats[:, cv2.CC_STAT_AREA] >= PERSIST_MIN_AREA
    keep[0] = False
    if not keep.any():
        return None
    # The seed: bright over some PERSIST_SEED_FRAMES consecutive frames of the window that
    # hold this one and its neighbours.
    if n > PERSIST_SEED_FRAMES:
        span = {local, *others}
        seeded = np.zeros(len(keep), bool)
        for lo in range(max(0, max(span) - PERSIST_SEED_FRAMES + 1),
                        min(min(span), n - PERSIST_SEED_FRAMES) + 1):
            seed = _bright_stays(analysis, local, [k for k in range(lo, lo + PERSIST_SEED_FRAMES)
                                                   if k != local], steady=True)
            if seed is not None:
                seeded[np.unique(labels[seed])] = True
        keep &= seeded
        if not keep.any():
            return None
    # Whole parts: the frame's bright pixels connected to a persistent part (within a pixel)
    # are the same content at its moving edge (a gap in swaying foliage), bright only now.
    persistent = keep[labels]
    return _bright_touching(own, persistent) | persistent


def _bright_touching(bright: np.ndarray, seeds: np.ndarray) -> np.ndarray:
    """The pixels of ``bright`` in parts that touch ``seeds`` (H x W bool each).

    Parts are 8-connected, gaps of one pixel bridged.
    """
    grown = cv2.dilate(bright.astype(np.uint8), np.ones((3, 3), np.uint8))
    count, labels = cv2.connectedComponents(grown, connectivity=8)
    touched = np.zeros(count, bool)
    touched[np.unique(labels[seeds])] = True
    touched[0] = False
    return touched[labels] & bright


def _bright_parts_of(objects: np.ndarray, bright: np.ndarray) -> np.ndarray:
    """Bright pixels that passed for rain but belong to ``objects`` (H x W bool each).

    Those connected to an object within :data:`BRIGHT_REACH` feather radii of it: a sky gap
    in a swaying branch, a highlight, a pole on a moving thing. Left to the background they
    would be replaced by a darker one; SPANet keeps them, and removes the streaks that touch
    the object too. Further out, chains of overlapping streaks (dense rain) would reach
    across the frame.
    """
    near = _grown(objects, BRIGHT_REACH * feather_radius(objects.shape)) > 0
    return _bright_touching(bright & near, objects)


def speck_parts(content: np.ndarray, side: int) -> np.ndarray:
    """The parts of ``content`` (H x W bool) whose bounding box fits in a ``side`` square.

    Returns:
        H x W bool: the pixels of those parts (8-connected).
    """
    count, labels, stats, _ = cv2.connectedComponentsWithStats(content.astype(np.uint8),
                                                               connectivity=8)
    small = ((stats[:, cv2.CC_STAT_WIDTH] <= side) & (stats[:, cv2.CC_STAT_HEIGHT] <= side))
    small[0] = False
    return small[labels]


def _with_specks(background: _Background, frame: np.ndarray, specks: np.ndarray,
                 persistent: np.ndarray | None) -> np.ndarray:
    """The background image with the frame's own pixels on ``specks``, where rain is not.

    A speck is a few pixels the pair check flags (a splash ripple, a small dark thing, a
    compression block) or a small part that stays bright: SPANet would read a crop many times
    its size for it, and keep it as the frame shows it. Rain only brightens, so the frame's
    pixel is kept unless it is brighter than the background by more than rain's level and not
    persistently bright (a streak crossing the speck takes the background); the kept pixels
    are feathered over :data:`OUTSIDE_FEATHER` pixels.
    """
    rain = background.excess > background.rain_level
    if persistent is not None:
        rain &= ~persistent
    keep = specks & ~rain
    if not keep.any():
        return background.image
    weight = blend_weight(keep, OUTSIDE_FEATHER)
    weight[rain] = 0.0
    rows, cols = np.flatnonzero(weight.any(axis=1)), np.flatnonzero(weight.any(axis=0))
    box = (slice(rows[0], rows[-1] + 1), slice(cols[0], cols[-1] + 1))
    out = background.image.copy()
    wt = weight[box][..., None]
    out[box] = round_to_uint8(wt * frame[box].astype(np.float32)
                              + (1.0 - wt) * out[box].astype(np.float32))
    return out


def _frame_weight(content: np.ndarray, outside: np.ndarray) -> np.ndarray:
    """SPANet's weight in a frame (H x W float32): content and the part no background covers.

    Content is feathered by :func:`blend_weight`; the part no background covers
    (``outside``: the bands the camera's motion leaves along the frame's edges) with a
    feather of :data:`OUTSIDE_FEATHER` pixels: its seam is a straight line along the frame's
    edge over the same scene, where a short ramp hides it, and a long one would run SPANet on
    a band several times as deep.
    """
    weight = blend_weight(content)
    if outside.any():
        weight = np.maximum(weight, blend_weight(outside, OUTSIDE_FEATHER))
    return weight


def _blend(spanet: _Spanet, frame: np.ndarray, weight: np.ndarray, background: np.ndarray
           ) -> tuple[np.ndarray, float]:
    """``weight * SPANet(frame) + (1 - weight) * background`` as uint8, and SPANet's run share.

    Only the bounding box of ``weight > 0`` is mixed (in float32); elsewhere the output is the
    background itself, exactly what the mix gives there.
    """
    need = weight > 0
    derained, ran = spanet.where(frame, need)
    out = background.copy()
    if ran:
        rows, cols = np.flatnonzero(need.any(axis=1)), np.flatnonzero(need.any(axis=0))
        box = (slice(rows[0], rows[-1] + 1), slice(cols[0], cols[-1] + 1))
        wt = weight[box][..., None]
        out[box] = round_to_uint8(wt * derained[box] + (1.0 - wt) * background[box].astype(
            np.float32))
    return out, ran


def _derain_window(frames: np.ndarray, first: int, outputs: Sequence[int], method: str,
                   align: AlignMode, spanet: _Spanet
                   ) -> Iterator[tuple[int, np.ndarray, np.ndarray, FrameRecord]]:
    """Derain ``outputs`` (clip indices) of a window whose frames start at clip index ``first``."""
    n, h, w = frames.shape[:3]
    window = (first, first + n)
    analysis = _WindowAnalysis(frames, align, method != "spanet")
    release_freed_memory()  # the estimate's aligned copy and work arrays
    for index in outputs:
        local = index - first
        frame = frames[local]
        # Later frames look back at most PERSIST_SEED_FRAMES frames (_persistent_bright).
        analysis.forget_before(local - PERSIST_SEED_FRAMES)
        release_freed_memory()  # the last frame's work arrays, before this frame's checks
        background = analysis.get(local).background
        specks = None
        if background is None:
            content = np.ones((h, w), bool)
            outside = np.ones((h, w), bool)
            weight = np.ones((h, w), np.float32)
        else:
            content = background.content
            image = background.image
            persistent = _persistent_bright(analysis, local) if method == "hybrid" else None
            if persistent is not None:
                content = content | cv2.dilate(persistent.astype(np.uint8),
                                               np.ones((5, 5), np.uint8)) > 0
            objects = content
            if method == "hybrid":
                square = streak_square_side((h, w))
                specks = speck_parts(content, SPECK_SQUARES * square + 2 * PAIR_WIDEN_PX)
                image = _with_specks(background, frame, specks, persistent)
                objects = content & ~specks
                if objects.any():
                    objects = objects | _bright_parts_of(objects, background.bright)
            outside = ~background.valid
            if EDGE_EXTEND_PX:  # the outermost pixels: the background's reflected border
                k = EDGE_EXTEND_PX
                outside[:k], outside[h - k:], outside[:, :k], outside[:, w - k:] = (
                    False, False, False, False)
            weight = _frame_weight(objects, outside)
        if method == "temporal":
            weight = np.zeros((h, w), np.float32)
            # A copy: the window's array is reused by the next window.
            out = frame.copy() if background is None else background.image
            ran = 0.0
        elif background is None:
            out, ran = round_to_uint8(spanet.whole(frame)), 1.0
        else:
            out, ran = _blend(spanet, frame, weight, image)
        record = FrameRecord(
            index=int(index), window=window,
            segment=-1 if background is None else background.segment,
            paired=bool(background is not None and background.paired),
            content_share=float(content.mean()), outside_share=float(outside.mean()),
            spanet_share=float(weight.mean()), spanet_run_share=float(ran),
            overlay_share=0.0 if background is None else float(background.overlay.mean()),
            speck_share=0.0 if specks is None else float(specks.mean()))
        analysis.derained(local)
        yield int(index), out, weight, record


def _derain_stream(frames_from: Callable[[int], Iterator[np.ndarray]], n_frames: int, *,
                   model: nn.Module | None, method: str, align: AlignMode, window: int,
                   tile: int | str | None, device: str, precision: str,
                   done: Callable[[int], bool] | None = None,
                   describe: Callable[[int], str] | None = None
                   ) -> Iterator[tuple[int, np.ndarray, np.ndarray, FrameRecord]]:
    """Derained frames in order, one window of input frames in memory at a time.

    ``frames_from(k)`` iterates over the clip's frames from index ``k``; ``done(i)`` says
    that output frame ``i`` exists already (it is skipped, and so is a window whose outputs
    all exist: a resumed run estimates only the windows it derains); ``describe(i)`` names
    frame ``i`` in messages (its file).
    """
    describe = describe or (lambda i: f"frame {i}")
    bound_primitive_caches()  # crops of new shapes every frame: the caches would grow
    spanet = _Spanet(model, tile, device, precision)
    plan = derain_windows(n_frames, window)
    todo = [(win, [i for i in range(win.out_start, win.out_stop) if not (done and done(i))])
            for win in plan]
    todo = [(win, outputs) for win, outputs in todo if outputs]
    if not todo:
        return
    # Frame-sized work arrays go back to the system when freed (glibc's heaps held on to them).
    with return_large_blocks():
        source = frames_from(todo[0][0].start)
        next_index = todo[0][0].start
        # The window's frames, one array for every window (they all have the same length): the
        # frames a window shares with the previous one move to its front, the rest are read in.
        frames: np.ndarray | None = None
        held = todo[0][0].start  # clip index of frames[0]
        for win, outputs in todo:
            kept = max(0, next_index - win.start)  # frames read already (windows only advance)
            if frames is not None:
                for j in range(kept):  # each source lies after its target: no overlap
                    frames[j] = frames[win.start - held + j]
            held = win.start
            while next_index < win.stop:
                frame = next(source, None)
                if frame is None:
                    raise InputError(f"the input ended before {describe(next_index)}; expected "
                                     f"{n_frames} frames")
                if next_index >= win.start:
                    if frames is None:
                        frames = np.empty((win.stop - win.start, *frame.shape), frame.dtype)
                    if frame.shape != frames.shape[1:]:
                        raise InputError(f"{describe(next_index)} is {frame.shape[1]} x "
                                         f"{frame.shape[0]} but earlier frames are "
                                         f"{frames.shape[2]} x {frames.shape[1]}; all frames "
                                         "must have the same size")
                    frames[next_index - win.start] = frame
                next_index += 1
            yield from _derain_window(frames, win.start, outputs, method, align, spanet)


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
                window: int | None = None, tile: int | str | None = None,
                device: str = "cpu",
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
        window: frames per temporal estimate (:func:`derain_windows`); None: from the
            frame size (:func:`auto_window`).
        tile: SPANet tile size for whole frames larger than it (None: whole frames;
            ``"auto"``: from the memory available, within :func:`spanet_memory`).
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
    window = auto_window(arr.shape[1:]) if window is None else window
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
        sound_from: the input video when it has a sound track, which the output lacks
            (OpenCV writes pictures only; :func:`spanetlib.io.sound.has_sound_track`), else
            None.
    """

    input: Path
    output: Path
    n_frames: int
    written: int = 0
    kept: int = 0
    records: list[FrameRecord] = field(default_factory=list)
    weights: str = ""
    seconds: float = 0.0
    sound_from: Path | None = None

    def __str__(self) -> str:
        kept = f" ({self.kept} kept from an earlier run)" if self.kept else ""
        share = (f"; SPANet made {100 * np.mean([r.spanet_share for r in self.records]):.1f} %"
                 " of the output" if self.records else "")
        text = (f"derained {self.written} of {self.n_frames} frames{kept} -> {self.output} in "
                f"{self.seconds:.1f} s (weights: {self.weights}){share}")
        if self.sound_from is not None and self.output.suffix.lower() in VIDEO_CODECS:
            both = self.output.with_name(f"{self.output.stem}_with_sound{self.output.suffix}")
            text += (f"\nnote: {self.output} has no sound (OpenCV writes pictures only); to add "
                     f"{self.sound_from.name}'s: ffmpeg -i {self.output} -i {self.sound_from} "
                     f"-map 0:v -map 1:a -c copy {both}")
        elif self.sound_from is not None:
            text += f"\nnote: the sound of {self.sound_from} is not in the frames"
        return text


@dataclass
class _Input:
    """A clip on disk (or the part of it asked for): frame count, size, names, frame rate.

    Frame ``i`` of the clip is frame ``start + i`` of the file or folder. For a folder,
    ``formats`` collects what each frame file held as it is read (alpha plane, gray), so the
    output frame can be written alike.
    """

    path: Path
    n_frames: int
    shape: tuple[int, int, int]
    names: tuple[str, ...]  # output PNG names, in frame order
    fps: float
    is_video: bool
    start: int = 0
    files: tuple[Path, ...] = ()
    first_format: ImageFormat | None = None
    formats: dict[int, ImageFormat] = field(default_factory=dict)

    def describe_frame(self, i: int) -> str:
        """How messages name frame ``i``: its file (and index), or its index in the video."""
        if self.files:
            return f"{self.files[i].name} (frame {i + self.start})"
        return f"frame {i + self.start} of {self.path.name}"

    def frames_from(self, start: int) -> Iterator[np.ndarray]:
        """Frames ``start, start + 1, ...`` (the folder's files or the video's decoded frames)."""
        if not self.is_video:
            for i in range(start, self.n_frames):
                image, fmt = read_image_with_format(self.files[i])
                self._check_format(i, image, fmt)
                if fmt.has_alpha or fmt.gray:
                    self.formats[i] = fmt
                yield image
            return
        cap = cv2.VideoCapture(str(self.path))
        try:
            for _ in range(self.start + start):
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

    def _check_format(self, i: int, image: np.ndarray, fmt: ImageFormat) -> None:
        if fmt.bit_depth != 8:
            raise InputError(f"{self.files[i]} is a {fmt.describe()} image; derain-video "
                             "works on 8-bit frames: convert the frames to 8 bits first, or "
                             "derain them one by one with `spanet derain` (it keeps 16 bits)")
        first = self.first_format
        if first is not None and fmt.has_alpha != first.has_alpha:
            raise InputError(f"{self.files[i]} is {fmt.describe()} but {self.files[0].name} "
                             f"is {first.describe()}; all frames must be alike")

    def output_frame(self, i: int, frame: np.ndarray) -> np.ndarray:
        """Derained frame ``i`` in its input's kind (gray stays gray, alpha carried over)."""
        fmt = self.formats.pop(i, None)
        return frame if fmt is None else restore_format(frame, fmt)


def _check_sizes(files: Sequence[Path], shape: tuple[int, ...], start: int) -> None:
    """Refuse frame files of another size than the first (read from their headers)."""
    try:
        from PIL import Image
    except ImportError:  # the stream checks every frame as it reads it
        return
    for k, path in enumerate(files):
        try:
            with Image.open(path) as image:
                w, h = image.size
        except (OSError, ValueError):
            continue  # unreadable: reported when it is read
        if (h, w) != tuple(shape[:2]):
            raise InputError(f"{path.name} (frame {start + k}) is {w} x {h} but "
                             f"{files[0].name} is {shape[1]} x {shape[0]}; all frames must "
                             "have the same size")


def _open_input(path: Path, start: int = 0, frames: int | None = None) -> _Input:
    """Check the input clip before any heavy work (exists, is a clip, enough frames)."""
    if isinstance(start, bool) or not isinstance(start, (int, np.integer)) or start < 0:
        raise ValueError(f"start: expected an int >= 0, got {start!r}")
    if frames is not None and (isinstance(frames, bool)
                               or not isinstance(frames, (int, np.integer)) or frames < 1):
        raise ValueError(f"frames: expected None or an int >= 1, got {frames!r}")
    if not path.exists():
        raise InputError(f"input not found: {path}")
    path = sequence_path(path)
    files: tuple[Path, ...] = ()
    first_format = None
    if path.is_dir():
        every = list_frame_files(path)
        if not every:
            raise InputError(no_frames_message(path))
        if start >= len(every):
            raise InputError(f"--start {start}: {path} holds only {len(every)} frame(s)")
        files = tuple(every[start:start + frames if frames is not None else None])
        names = tuple(f"{p.stem}.png" for p in files)
        if len(set(names)) != len(names):
            dup = next(name for name in names if names.count(name) > 1)
            raise InputError(f"two frames in {path} would both be written as {dup}")
        n, fps, is_video = len(files), 25.0, False
    else:
        if path.suffix.lower() in IMAGE_SUFFIXES:
            raise InputError(f"expected a video file or a folder of frames, got an image: "
                             f"{path} (derain single images with `spanet derain`)")
        total = count_frames(path)
        if total and start >= total:
            raise InputError(f"--start {start}: {path} holds only {total} frame(s)")
        n = max(0, total - start) if frames is None else max(0, min(frames, total - start))
        cap = cv2.VideoCapture(str(path))
        try:
            fps = float(cap.get(cv2.CAP_PROP_FPS)) or 25.0
        finally:
            cap.release()
        digits = max(5, len(str(start + n - 1)))
        names = tuple(f"frame_{start + i:0{digits}d}.png" for i in range(n))
        is_video = True
    if n < MIN_FRAMES:
        raise InputError(f"found {n} frame(s) in {path}"
                         + (f" from frame {start}" if start else "")
                         + f"; a clip needs at least {MIN_FRAMES} frames for the temporal "
                         "estimate (derain single images with `spanet derain`)")
    source = _Input(path, n, (0, 0, 0), names, fps, is_video, start, files)
    if is_video:
        first = next(source.frames_from(0), None)
        if first is None:
            raise InputError(f"cannot read any frame from video: {path}")
    else:
        first, first_format = read_image_with_format(files[0])
        source._check_format(0, first, first_format)
        _check_sizes(files, first.shape, start)
    check_image_size(first, source.describe_frame(0) + f" of {path}")
    source.shape = first.shape
    source.first_format = first_format
    source.fps = fps if math.isfinite(fps) and fps > 0 else 25.0
    return source


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
    if source.is_video and output.is_dir() \
            and sequence_path(output).resolve() == source.path.resolve():
        # Frames written there would make the folder a frame folder, no longer this video.
        raise InputError(f"the output folder {output} holds the input video and nothing else; "
                         "choose another")
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
                 align: str = "auto", window: int | None = None,
                 tile: int | str | None = "auto", device: str = "auto",
                 precision: str = "fp32", fps: float | None = None, start: int = 0,
                 frames: int | None = None, overwrite: bool = False,
                 progress: bool = True) -> VideoDerainSummary:
    """Derain a video file or a folder of frames into a video file or a folder of PNGs.

    Every check (input readable with at least :data:`MIN_FRAMES` frames of one size and
    kind, output writable and not replaced without ``overwrite``, options, weights and
    device) happens before the first window is estimated. Frames are read a window at a time
    (:func:`derain_windows`), so memory does not grow with the clip's length. A frame folder
    keeps its kind in a folder output (an alpha channel is carried over, gray stays gray);
    16-bit frames are refused (the estimate works on 8 bits; ``spanet derain`` keeps them).
    A run refused while reading (a frame that cannot be read, or of another size or kind)
    leaves nothing behind: the frames it wrote and the manifest it made are removed.

    Args:
        input: a video file or a folder of image frames (natural name order).
        output: a video file (``.avi``/``.mkv``: lossless FFV1; ``.mp4``/``.m4v``/``.mov``:
            mp4v, lossy) or a folder (no suffix) for PNG frames named after the input frames
            (``frame_00000.png`` ... for a video input: its frame numbers). A folder output
            is resumable.
        weights: ``"official"``, ``"synthetic"``, a checkpoint path, or a model.
        align: ``"auto"``, ``"on"`` or ``"off"`` (:data:`spanetlib.pipeline.alignment.ALIGN_MODES`).
        window: frames per temporal estimate; None (default): from the frame size
            (:func:`auto_window`: 60, fewer for frames over 1280 x 720, 28 at 1080p).
        tile: SPANet tile size for whole frames larger than it; ``"auto"`` (default): from
            the memory available, within :func:`spanet_memory`; None: whole frames.
        device: ``"auto"``, ``"cpu"`` or ``"cuda"``.
        precision: SPANet's precision (``"fp32"``, or ``"bf16"``/``"auto"`` where offered).
        fps: frame rate of a video output (default: the input video's, 25 for frames).
        start: first frame of the input to derain.
        frames: derain this many frames (default: all from ``start``).
        overwrite: replace an existing output (a frame folder with other settings too).
        progress: show a progress bar.

    Returns:
        A :class:`VideoDerainSummary`.

    Raises:
        InputError: a missing or unreadable input, too few frames, frames of different sizes
            or kinds, 16-bit frames, alpha into a video, an output that exists (video) or
            holds other frames or settings (folder) without ``overwrite``, an unwritable
            output, unusable weights or device.
        ValueError: bad options.
    """
    from tqdm.auto import tqdm

    start_time = time.perf_counter()
    input_path, output = Path(input), Path(output)
    mode = get_align_mode(align)
    if window is not None:
        _check_window(window)
    if fps is not None and not (math.isfinite(fps) and fps > 0):
        raise ValueError(f"fps: expected a positive number, got {fps!r}")
    _Spanet(None, tile, "cpu", "fp32")  # checks the tile before any reading
    kind = _output_kind(output)
    source = _open_input(input_path, start, frames)
    window = auto_window(source.shape) if window is None else window
    if kind == "video" and source.first_format is not None and source.first_format.has_alpha:
        raise InputError(f"{source.files[0]} has an alpha channel, which a video cannot "
                         "hold; write a folder of PNG frames (-o FOLDER) to keep it")
    settings = {"input": str(source.path.resolve()), "n_frames": source.n_frames,
                "start": int(start), "size": list(source.shape[:2]),
                "weights": _weights_identity(weights), "align": mode.name,
                "window": int(window), "tile": tile, "precision": precision}
    remove: list[str] = []
    if kind == "video":
        if output.resolve() == source.path.resolve():
            raise InputError(f"the output {output} is the input video; choose another path")
        check_output_path(output, overwrite=overwrite)
    else:
        remove = _check_folder(source, output, settings, overwrite)
    model = _load_model(weights, device)
    _Spanet(model, tile, device, precision)  # refuses an unsupported precision now
    made_folder = kind == "folder" and not output.exists()
    had_manifest = kind == "folder" and (output / MANIFEST_NAME).is_file() and not remove
    done = _prepare_folder(output, remove, source, settings) if kind == "folder" else None
    summary = VideoDerainSummary(input=input_path, output=output, n_frames=source.n_frames,
                                 weights=settings["weights"],
                                 sound_from=source.path if source.is_video
                                 and has_sound_track(source.path) else None)
    if done is not None:
        summary.kept = sum(done(i) for i in range(source.n_frames))
    stream = _derain_stream(source.frames_from, source.n_frames, model=model, method="hybrid",
                            align=mode, window=window, tile=tile, device=device,
                            precision=precision, done=done, describe=source.describe_frame)
    bar = tqdm(total=source.n_frames, initial=summary.kept, desc="derain-video", unit="frame",
               disable=not progress)
    written: list[Path] = []
    try:
        with bar:
            if kind == "folder":
                for i, frame, _, record in stream:
                    written.append(write_image(output / source.names[i],
                                               source.output_frame(i, frame)))
                    summary.written += 1
                    summary.records.append(record)
                    bar.update(1)
            else:
                _write_video(output, stream, source.shape, fps or source.fps, summary, bar)
    except InputError:
        # A refused run leaves nothing behind (an interrupted one keeps its frames: resume).
        if kind == "folder":
            for path in written:
                path.unlink(missing_ok=True)
            if not had_manifest:
                (output / MANIFEST_NAME).unlink(missing_ok=True)
            if made_folder and output.is_dir() and not any(output.iterdir()):
                output.rmdir()
        raise
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
