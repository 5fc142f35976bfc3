"""Graphics fixed to the frame over a moving scene: their edges, and backgrounds that respect them.

A logo, a subtitle strip or a watermark burned into hand-held footage stays at the same pixels
while the scene moves under it. The clip estimate (Eqs. 2-4) works in the scene's coordinates
and prefers low samples (rain only brightens), so a scene point within the camera's shake of a
graphic's edge takes the samples in which the graphic covered it wherever the graphic is darker
(a translucent dark strip, a red logo box over a bright scene), and the other way round inside
a graphic brighter than the scene. Mapped back into a frame where the point is on the other
side, that background is wrong in a band along the edge, at the same frame position in every
frame: the frame looks brighter than its background there, the band is taken for rain or for
persistent bright content, and SPANet runs along the whole edge.

This module finds those edges and rebuilds the background near them from samples on the same
side:

1. :func:`fixed_edges`: luminance edges at the same pixel in (nearly) every frame of a window
   while the scene moves across them. A scene edge moves with the scene; one that stays put
   while the scene moves at least ``min_cross_px`` across it belongs to the frame.
2. :func:`edge_sides`: each pixel near such an edge gets a label: which edge (edges closer than
   a gap are one: a graphic's outline and its text) and which side of it (brighter or darker
   in the window's median).
3. :func:`same_side_background`: near the edges, a frame's background is a low order
   statistic of the samples of the same scene point in the period's frames whose pixel has the
   same label, or the estimate, which mixed both sides, whichever is nearer the frame's own
   pixel from below (rain only brightens); on the edges themselves (anti-aliased rims mix
   both sides) the window's median colour there is a third candidate.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

from spanetlib.derain.scene_samples import iter_scene_samples
from spanetlib.pipeline.clip_estimate import ClipEstimate

__all__ = ["EDGE_PERSISTENCE", "EdgeZone", "MIN_CROSS_PX", "MIN_EDGE_STEP", "edge_sides",
           "edge_zone", "fixed_edges", "same_side_background"]

#: Least luminance gradient (levels per pixel, a step of twice this) of a fixed edge.
MIN_EDGE_STEP = 3.0
#: Share of the window's frames that must show the edge at the same pixel (rain hides some).
EDGE_PERSISTENCE = 0.9
#: Least scene motion (pixels) across an edge for it to count as fixed to the frame: an edge
#: the scene does not cross could as well be the scene's, and nothing mixes across it.
MIN_CROSS_PX = 2.0
#: Fewest pixels of a fixed edge (a share of the frame's shorter side): texture that happens to
#: pass the test comes in short pieces, graphics' outlines and text are long.
MIN_EDGE_SHARE = 0.1
#: Edges closer than this (pixels, along rows or columns) are one: a graphic whose outline
#: fades where the scene matches it, and the text inside it.
EDGE_GAP_PX = 25
#: Pixels around an edge pixel whose median gives the two levels of its step (:func:`edge_sides`).
SIDE_PX = 3
#: The order statistic (by luminance) of the same-side samples: low, as rain only brightens.
SAMPLE_RANK = 0.35
#: Fewest same-side samples for a pixel to take them (else it keeps the estimate).
MIN_SAMPLES = 3
#: Most frames of a period sampled per frame.
MAX_SAMPLES = 15
_CHUNK_POINTS = 1 << 16
_LUMA = np.array([0.299, 0.587, 0.114], np.float32)  # BT.601, as cv2's RGB2GRAY


def _median_gradient(luma: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Sobel gradient (x, y) of a float32 image in levels per pixel."""
    return (cv2.Sobel(luma, cv2.CV_32F, 1, 0, ksize=3) / np.float32(8.0),
            cv2.Sobel(luma, cv2.CV_32F, 0, 1, ksize=3) / np.float32(8.0))


def fixed_edges(lumas: np.ndarray, matrices: np.ndarray, *, min_step: float = MIN_EDGE_STEP,
                persistence: float = EDGE_PERSISTENCE, min_cross_px: float = MIN_CROSS_PX,
                min_pixels: int | None = None) -> tuple[np.ndarray, np.ndarray, float]:
    """Edges fixed to the frame while the scene moves across them.

    An edge pixel of the window's median (gradient at least ``min_step``) is fixed when at
    least ``persistence`` of the frames have a gradient along the median's there of at least
    half of it, the scene moves at least ``min_cross_px`` across it (along its gradient) over
    the frames, and it belongs to a connected edge of at least ``min_pixels`` pixels.

    Args:
        lumas: K x H x W float32 luminance of the window's frames, in their own coordinates.
        matrices: K x 3 x 3 camera motion of those frames (reference -> frame pixels).
        min_step: least gradient (levels per pixel).
        persistence: share of the frames showing the edge.
        min_cross_px: least scene motion across the edge (pixels).
        min_pixels: fewest pixels per connected edge (default :data:`MIN_EDGE_SHARE` of the
            shorter side).

    Returns:
        ``(edges, median, across)``: H x W bool, the H x W float32 median luminance, and the
        95th percentile of the scene's motion across the fixed edges (pixels; 0 without).
    """
    k, h, w = lumas.shape
    if min_pixels is None:
        min_pixels = max(8, round(MIN_EDGE_SHARE * min(h, w)))
    median = np.median(lumas, axis=0).astype(np.float32)
    mx, my = _median_gradient(median)
    strength = np.hypot(mx, my)
    norm = np.maximum(strength, np.float32(1e-6))
    need = np.maximum(np.float32(0.5 * min_step), np.float32(0.5) * strength)
    count = np.zeros((h, w), np.uint16)
    for luma in lumas:
        gx, gy = _median_gradient(luma)
        count += (gx * mx + gy * my) / norm >= need
    edges = (strength >= min_step) & (count >= persistence * k)
    ys, xs = np.nonzero(edges)
    if ys.size == 0:
        return edges, median, 0.0
    # The scene's motion along each edge pixel's normal: where the scene point under it was.
    nx, ny = mx[ys, xs] / norm[ys, xs], my[ys, xs] / norm[ys, xs]
    points = np.stack([xs, ys, np.ones_like(xs)]).astype(np.float64)
    low = np.full(ys.size, np.inf)
    high = np.full(ys.size, -np.inf)
    for matrix in matrices:
        scene = np.linalg.inv(matrix) @ points
        along = scene[0] / scene[2] * nx + scene[1] / scene[2] * ny
        low, high = np.minimum(low, along), np.maximum(high, along)
    across = high - low
    crossed = across >= min_cross_px
    edges[ys[~crossed], xs[~crossed]] = False
    count, parts, stats, _ = cv2.connectedComponentsWithStats(edges.astype(np.uint8),
                                                              connectivity=8)
    long = stats[:, cv2.CC_STAT_AREA] >= min_pixels
    long[0] = False
    edges = long[parts]
    kept = edges[ys, xs]
    return edges, median, float(np.percentile(across[kept], 95)) if kept.any() else 0.0


def edge_sides(edges: np.ndarray, median: np.ndarray, radius: float) -> np.ndarray:
    """Which fixed edge and which side of it each pixel within ``radius`` lies on.

    The label is ``2 * edge + side``: ``edge`` numbers the connected edges (edges closer
    than :data:`EDGE_GAP_PX` along a row or column are one), ``side`` is 1 on the side the
    median is brighter. A pixel's edge and side are those of its nearest edge pixel; the edge
    pixels themselves, and pixels next to one along its edge, take the side whose half of the
    step (the darkest and brightest median within :data:`SIDE_PX` pixels) their median is on.

    Args:
        edges: H x W bool, :func:`fixed_edges`.
        median: H x W float32 median luminance of the window.
        radius: pixels beyond this distance from every edge get -1.

    Returns:
        H x W int32 labels (-1 far from the edges).
    """
    h, w = edges.shape
    if not edges.any():
        return np.full((h, w), -1, np.int32)
    mask = edges.astype(np.uint8)
    bridged = np.maximum(
        cv2.morphologyEx(mask, cv2.MORPH_CLOSE, np.ones((1, EDGE_GAP_PX), np.uint8)),
        cv2.morphologyEx(mask, cv2.MORPH_CLOSE, np.ones((EDGE_GAP_PX, 1), np.uint8)))
    _, which = cv2.connectedComponents(bridged, connectivity=8)
    distance, nearest = cv2.distanceTransformWithLabels(
        1 - mask, cv2.DIST_L2, 5, labelType=cv2.DIST_LABEL_PIXEL)
    ys, xs = np.nonzero(edges)
    own = nearest[ys, xs]
    edge_y = np.zeros(int(own.max()) + 1, np.int64)
    edge_x = np.zeros_like(edge_y)
    edge_y[own], edge_x[own] = ys, xs
    near_y, near_x = edge_y[nearest], edge_x[nearest]
    mx, my = _median_gradient(median)
    norm = np.maximum(np.hypot(mx, my), np.float32(1e-6))
    nx, ny = mx / norm, my / norm
    grid_y, grid_x = np.mgrid[0:h, 0:w]
    along = nx[near_y, near_x] * (grid_x - near_x) + ny[near_y, near_x] * (grid_y - near_y)
    side = along > 0
    # On the edge, and beside an edge pixel along its edge (where the sign above is noise: a
    # letter's counter, a stroke's end), this pixel's median against the middle of the step
    # around it: the darkest and brightest median within SIDE_PX pixels.
    around = np.ones((2 * SIDE_PX + 1,) * 2, np.uint8)
    middle = 0.5 * (cv2.erode(median, around) + cv2.dilate(median, around))
    unsure = (np.abs(along) < 0.5) & (distance <= SIDE_PX)
    unsure[ys, xs] = True
    side[unsure] = median[unsure] > middle[unsure]
    labels = 2 * which[near_y, near_x].astype(np.int32) + side
    labels[distance > radius] = -1
    return labels


@dataclass(frozen=True)
class EdgeZone:
    """A window's fixed edges: where backgrounds are rebuilt and the labels that decide how.

    Attributes:
        labels: H x W int32, :func:`edge_sides` (-1 far from the edges).
        points: 2 x P int64 ``(y, x)`` of the pixels whose background is rebuilt: within the
            scene's motion across the edges, plus 2.
        on_edge: P bool, the points on an edge or next to it.
        edge_colour: E x 3 uint8, the window's median colour (frame coordinates) at the
            points ``on_edge`` (in their order).
    """

    labels: np.ndarray
    points: np.ndarray
    on_edge: np.ndarray
    edge_colour: np.ndarray


def edge_zone(frames: np.ndarray, estimate: ClipEstimate) -> EdgeZone | None:
    """The :class:`EdgeZone` of a window whose camera moved; None without fixed edges.

    Args:
        frames: N x H x W x 3 uint8, the window's frames.
        estimate: their :class:`ClipEstimate`.
    """
    ok = np.flatnonzero(estimate.motion.ok)
    if ok.size < 3:
        return None
    pick = ok[np.linspace(0, ok.size - 1, min(MAX_SAMPLES, ok.size)).round().astype(np.int64)]
    lumas = np.stack([cv2.cvtColor(frames[i], cv2.COLOR_RGB2GRAY) for i in pick]
                     ).astype(np.float32)
    edges, median, across = fixed_edges(lumas, estimate.motion.matrices[pick])
    if not edges.any():
        return None
    reach = math.ceil(across) + 2
    zone = cv2.dilate(edges.astype(np.uint8), np.ones((2 * reach + 1,) * 2, np.uint8)) > 0
    on_edge = cv2.dilate(edges.astype(np.uint8), np.ones((3, 3), np.uint8)) > 0
    # Labels reach twice as far: a sample may lie up to the motion away from the zone.
    labels = edge_sides(edges, median, 2 * reach + 2)
    points = np.stack(np.nonzero(zone))
    on_edge = on_edge[points[0], points[1]]
    ey, ex = points[0][on_edge], points[1][on_edge]
    # The points of the picked frames only: frames[pick] would copy whole frames (~90 MB at
    # 1080p).
    colour = np.median(frames[pick[:, None], ey, ex], axis=0).round().astype(np.uint8)
    return EdgeZone(labels=labels, points=points, on_edge=on_edge, edge_colour=colour)


def same_side_background(clean: np.ndarray, frames: np.ndarray, estimate: ClipEstimate,
                         local: int, segment: int, zone: EdgeZone) -> np.ndarray:
    """Frame ``local``'s background ``clean`` rebuilt near fixed edges from same-side samples.

    For each pixel of the zone, the samples of its scene point in (up to
    :data:`MAX_SAMPLES` of) the period's frames, in this frame's exposure, whose own pixel
    has this pixel's :func:`edge_sides` label; the :data:`SAMPLE_RANK` one by luminance
    is a candidate where at least :data:`MIN_SAMPLES` qualify. Either it or the estimate may
    hold the other side's value (a label wrong where the edge was not found, the estimate's
    mix): the background is the candidate nearest the frame's own pixel without being
    brighter than it by more than the noise (rain only brightens; the darkest where all
    are). On an edge a pixel mixes both sides (anti-aliasing, a graphic's rim over the
    scene) in proportions no sample from either side has: there the window's median colour
    at the pixel (:attr:`EdgeZone.edge_colour`) is a candidate too, and one qualifying
    sample suffices.

    Args:
        clean: H x W x 3 uint8, the estimate in frame ``local``'s pixels.
        frames: N x H x W x 3 uint8, the window's frames.
        estimate: their :class:`ClipEstimate`.
        local: the frame.
        segment: the period whose frames are sampled.
        zone: the window's :class:`EdgeZone`.

    Returns:
        H x W x 3 uint8 (``clean`` itself where nothing changes).
    """
    used = np.asarray(estimate.segments[segment].frames)
    motion = estimate.motion
    used = used[motion.ok[used]]
    if used.size < MIN_SAMPLES:
        return clean
    used = used[np.linspace(0, used.size - 1, min(MAX_SAMPLES, used.size)).round()
                .astype(np.int64)]
    labels = zone.labels.astype(np.float32)
    tol = np.float32(3.5 * float(estimate.segments[segment].noise_sigma) + 2.0)
    edge_index = np.cumsum(zone.on_edge) - 1  # each on-edge point's row of edge_colour
    out = clean.copy()
    ys_all, xs_all = zone.points
    for lo in range(0, ys_all.size, _CHUNK_POINTS):  # bounded work arrays at any frame size
        ys, xs = ys_all[lo:lo + _CHUNK_POINTS], xs_all[lo:lo + _CHUNK_POINTS]
        value, count = _same_side_values(ys, xs, frames, estimate, local, used, labels)
        value = np.clip(np.rint(value), 0, 255).astype(np.uint8)
        on = zone.on_edge[lo:lo + _CHUNK_POINTS]
        off = ~on & (count >= MIN_SAMPLES)
        if off.any():
            oy, ox = ys[off], xs[off]
            options = np.stack([clean[oy, ox], value[off]])
            out[oy, ox] = _nearest_below(options, frames[local][oy, ox], tol)
        if on.any():
            ey, ex = ys[on], xs[on]
            options = np.stack([clean[ey, ex], value[on],
                                zone.edge_colour[edge_index[lo:lo + _CHUNK_POINTS][on]]])
            options[1, count[on] < 1] = clean[ey, ex][count[on] < 1]  # no same-side sample
            out[ey, ex] = _nearest_below(options, frames[local][ey, ex], tol)
    return out


def _nearest_below(options: np.ndarray, frame: np.ndarray, tol: float) -> np.ndarray:
    """Per point, the option nearest the frame without being brighter by more than ``tol``.

    ``options``: K x P x 3 uint8, ``frame``: P x 3 uint8 (compared by luminance). Rain only
    brightens, so an option brighter than the frame is wrong; the darkest where all are.
    """
    luma = options.astype(np.float32) @ _LUMA  # K x P
    own = frame.astype(np.float32) @ _LUMA
    score = np.where(luma <= own + tol, np.abs(own - luma), np.float32(1e6) + luma)
    return options[np.argmin(score, axis=0), np.arange(options.shape[1])]


def _same_side_values(ys: np.ndarray, xs: np.ndarray, frames: np.ndarray,
                      estimate: ClipEstimate, local: int, used: np.ndarray, labels: np.ndarray
                      ) -> tuple[np.ndarray, np.ndarray]:
    """Same-side samples of the points ``(ys, xs)`` of frame ``local``, one chosen per point.

    Returns the chosen sample (P x 3 float32) and how many qualified (P int).
    """
    own = labels[ys, xs]
    samples = np.empty((used.size, ys.size, 3), np.uint8)
    luma = np.full((used.size, ys.size), np.inf, np.float32)
    for j, map_x, map_y, value in iter_scene_samples(ys, xs, frames, estimate, local, used):
        label = cv2.remap(labels, map_x, map_y, cv2.INTER_NEAREST,
                          borderMode=cv2.BORDER_CONSTANT, borderValue=-1.0).ravel()[:ys.size]
        same = (label == own) & (own >= 0)
        samples[j] = value
        luma[j, same] = value[same].astype(np.float32) @ _LUMA
    count = np.isfinite(luma).sum(axis=0)
    rank = np.floor(SAMPLE_RANK * np.maximum(count - 1, 0)).astype(np.int64)
    chosen = np.take_along_axis(np.argsort(luma, axis=0), rank[None], axis=0)[0]
    return samples[chosen, np.arange(ys.size)].astype(np.float32), count
