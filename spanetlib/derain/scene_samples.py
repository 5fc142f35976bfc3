"""Samples of a frame's pixels at the same scene point in the other frames of its period.

A window's clip estimate (:func:`spanetlib.pipeline.clip_estimate.estimate_clip`) holds each
period's background in the reference frame's coordinates, and only where every frame of the
period sees the scene (the period's ``valid`` region). Two parts of a frame's background are
rebuilt here from the period's own frames instead, point by point:

* :func:`iter_scene_samples` maps points of frame ``local`` through the registration into
  each of the period's frames and reads them there (cubic, in frame ``local``'s exposure).
  :mod:`spanetlib.derain.frame_graphics` keeps the samples on the same side of a graphic's
  edge.
* :func:`fill_uncovered`: the bands along a frame's edges that some frames of the period do
  not see when the camera moves (a pan of 70 pixels leaves bands tens of pixels wide). Where
  at least :data:`MIN_COVER` of the period's frames see a point, its background is the order
  statistic the period's estimate took (Eq. 4's percentile, per channel) over those frames'
  samples alone (at most :data:`MAX_FILL_SAMPLES`). Without it SPANet ran on a crop of its
  context along every edge of every frame: two thirds of what it read on a real 1080p pan.
  A frame mostly outside its period's valid region is left as it is
  (:data:`MAX_FILL_SHARE`).
"""

from __future__ import annotations

from collections.abc import Iterator

import cv2
import numpy as np

from spanetlib.pipeline.clip_estimate import ClipEstimate

__all__ = ["MAX_FILL_SAMPLES", "MAX_FILL_SHARE", "MIN_COVER", "fill_uncovered",
           "iter_scene_samples"]

#: Fewest frames of the period that must see a point for :func:`fill_uncovered` to give it a
#: background: the percentile then lies among several samples, so one or two frames with a
#: streak over the point do not decide it.
MIN_COVER = 6
#: Most samples taken per point: this many frames spread over the period are sampled first,
#: the others only for points still short of :data:`MIN_COVER` (a clip whose view changes
#: all the time leaves most of every frame to fill; sampling all of a 60-frame window there
#: cost more than SPANet on the frame).
MAX_FILL_SAMPLES = 16
#: Largest share of a frame outside its period's valid region that is filled: more is no band
#: but a view the period barely shares (from a moving bus: 52-85 % of every frame), which is
#: content for SPANet anyway, and filling it cost a fifth of SPANet's time on the frame.
MAX_FILL_SHARE = 0.5
#: Pixels from a frame's edge a point must map inside to count as seen there (the cubic
#: kernel reads two pixels each side; beyond the edge it would read zeros).
_INSIDE_MARGIN = 1.0
_REMAP_WIDTH = 4096  # cv2.remap takes maps under 32,767 wide: points go in rows of a block
_CHUNK_POINTS = 1 << 16  # points per pass: bounded work arrays at any frame size


def iter_scene_samples(ys: np.ndarray, xs: np.ndarray, frames: np.ndarray,
                       estimate: ClipEstimate, local: int, used: np.ndarray
                       ) -> Iterator[tuple[int, np.ndarray, np.ndarray, np.ndarray]]:
    """Frame ``local``'s points ``(ys, xs)`` read at the same scene point in frames ``used``.

    Args:
        ys: P int rows of the points in frame ``local``.
        xs: P int columns of the points.
        frames: N x H x W x 3 uint8, the window's frames.
        estimate: their :class:`ClipEstimate` (its ``motion`` maps between them).
        local: the frame the points belong to.
        used: frames to read (indices into ``frames``).

    Yields:
        ``(j, map_x, map_y, value)`` per frame of ``used`` in order: its position ``j`` in
        ``used``, where the points land in that frame (float32 blocks of rows of
        ``4096``, padded with -1: ``map.ravel()[:P]`` are the P coordinates) and the cubic
        samples there (P x 3 uint8, 0 outside the frame), in frame ``local``'s exposure.
    """
    motion = estimate.motion
    to_reference = np.linalg.inv(motion.matrices[local])
    points = np.stack([xs, ys, np.ones_like(xs)]).astype(np.float64)
    rows = -(-ys.size // _REMAP_WIDTH)
    pad = rows * _REMAP_WIDTH - ys.size

    def block(values: np.ndarray) -> np.ndarray:
        return np.pad(values.astype(np.float32), (0, pad), constant_values=-1.0
                      ).reshape(rows, _REMAP_WIDTH)

    for j, other in enumerate(used):
        mapped = motion.matrices[other] @ to_reference @ points
        map_x, map_y = block(mapped[0] / mapped[2]), block(mapped[1] / mapped[2])
        value = cv2.remap(frames[other], map_x, map_y, cv2.INTER_CUBIC,
                          borderMode=cv2.BORDER_CONSTANT).reshape(-1, 3)[:ys.size]
        if estimate.exposed[other] or estimate.exposed[local]:
            scaled = value.astype(np.float32)
            if estimate.exposed[other]:
                scaled = (scaled - np.float32(motion.offset[other])) \
                    / np.float32(motion.gain[other])
            if estimate.exposed[local]:
                scaled = scaled * np.float32(motion.gain[local]) \
                    + np.float32(motion.offset[local])
            value = np.clip(np.rint(scaled), 0, 255).astype(np.uint8)
        yield j, map_x, map_y, value


def _spread(used: np.ndarray, first: int) -> np.ndarray:
    """``used`` reordered: ``first`` of them spread evenly over it, then the others in order."""
    picked = dict.fromkeys(np.linspace(0, used.size - 1, min(first, used.size)).round()
                           .astype(np.int64).tolist())
    rest = [i for i in range(used.size) if i not in picked]
    return used[np.array([*picked, *rest], np.int64)]


def fill_uncovered(clean: np.ndarray, valid: np.ndarray, frames: np.ndarray,
                   estimate: ClipEstimate, local: int, segment: int,
                   min_cover: int = MIN_COVER) -> tuple[np.ndarray, np.ndarray]:
    """Frame ``local``'s background outside the period's valid region, from the frames that see it.

    For each pixel of frame ``local`` outside ``valid``, the period's registered frames that
    see its scene point (the point maps at least a pixel inside them) are sampled
    (:func:`iter_scene_samples`; :data:`MAX_FILL_SAMPLES` frames spread over the period,
    then the others for the points still short of ``min_cover``); where at least
    ``min_cover`` do (and no more than :data:`MAX_FILL_SHARE` of the frame lies outside
    ``valid``), the background is, per channel, the order statistic at the percentile
    the period's estimate took (Eq. 4: ``estimate.segments[segment].estimate.percentile``,
    nearest rank) over those samples.

    Args:
        clean: H x W x 3 uint8, the period's estimate in frame ``local``'s pixels.
        valid: H x W bool, where ``clean`` holds it (the period's valid region there).
        frames: N x H x W x 3 uint8, the window's frames.
        estimate: their :class:`ClipEstimate`.
        local: the frame.
        segment: the period whose frames are sampled.
        min_cover: fewest frames that must see a pixel.

    Returns:
        ``(clean, valid)``: the background with the pixels given one, and ``valid`` grown by
        them (the inputs themselves where none is).
    """
    seg = estimate.segments[segment]
    used = np.asarray(seg.frames)
    used = used[estimate.motion.ok[used]]
    if used.size < min_cover or valid.all() or (~valid).mean() > MAX_FILL_SHARE:
        return clean, valid
    h, w = valid.shape
    ys_all, xs_all = np.nonzero(~valid)
    fraction = float(seg.estimate.percentile) / 100.0
    most = max(MAX_FILL_SAMPLES, min_cover)
    order = _spread(used, most)
    clean, valid = clean.copy(), valid.copy()
    for lo in range(0, ys_all.size, _CHUNK_POINTS):
        ys, xs = ys_all[lo:lo + _CHUNK_POINTS], xs_all[lo:lo + _CHUNK_POINTS]
        # Slots no frame filled sort last (256 is above every level).
        samples = np.full((most, ys.size, 3), 256, np.uint16)
        count = np.zeros(ys.size, np.int64)
        for step, other in enumerate(order):
            if step < most:  # a spread frame: every point, one slot per frame
                todo = None
            else:  # the others: only points still short, into their next free slot
                if step == most:  # their samples first, free slots (256) after
                    short = np.flatnonzero(count < min_cover)
                    samples[:, short] = np.sort(samples[:, short], axis=0)
                todo = np.flatnonzero(count < min_cover)
                if not todo.size:
                    break
            ys_at, xs_at = (ys, xs) if todo is None else (ys[todo], xs[todo])
            for _, map_x, map_y, value in iter_scene_samples(ys_at, xs_at, frames, estimate,
                                                             local, other[None]):
                mx, my = map_x.ravel()[:ys_at.size], map_y.ravel()[:ys_at.size]
                seen = (mx >= _INSIDE_MARGIN) & (mx <= w - 1 - _INSIDE_MARGIN) \
                    & (my >= _INSIDE_MARGIN) & (my <= h - 1 - _INSIDE_MARGIN)
                if todo is None:
                    np.copyto(samples[step], value, where=seen[:, None])
                    count += seen
                else:
                    at = todo[seen]
                    samples[count[at], at] = value[seen]
                    count[at] += 1
        filled = count >= min_cover
        if not filled.any():
            continue
        samples = np.sort(samples[:, filled], axis=0)
        # Nearest rank, as the estimate's percentile is ``100 (rank + 0.5) / N``.
        rank = np.clip(np.floor(fraction * count[filled]).astype(np.int64), 0,
                       count[filled] - 1)
        chosen = np.take_along_axis(samples, rank[None, :, None], axis=0)[0]
        clean[ys[filled], xs[filled]] = chosen.astype(np.uint8)
        valid[ys[filled], xs[filled]] = True
    return clean, valid
