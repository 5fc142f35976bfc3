"""Clean backgrounds from rain videos (paper §3, Eqs. 2-4) and the Table 1 baselines.

A static camera films rain over a still scene. Rain streaks brighten a pixel in only some
frames, so the clean value is the one the pixel shows most often. The paper turns this into
one global percentile:

* Eq. 2 — per pixel, the temporal **mode** of the luminance.
* Eq. 3 — per pixel, the **percentile range** that the mode occupies among that pixel's own
  samples.
* Eq. 4 — the single percentile ``p`` that lies inside the most pixels' ranges; the
  background is, per pixel and channel, the ``p``-th percentile over time.

Conventions used throughout this module (the tests check each against a plain reference):

* **Levels.** uint8 samples are levels 0..255 as they are. Float samples in [0, 1] become
  levels ``floor(255 x + 0.5)`` (computed in float64; float64 frames are converted to
  float32 first, so float32 and float64 frames give the same result).
* **Luminance** (Eq. 2): BT.601 in 16-bit fixed point on the levels,
  ``Y = (19595 R + 38470 G + 7471 B + 32768) >> 16`` (weights 0.299, 0.587, 0.114 scaled by
  65536 and summing to 65536; the ``+ 32768`` rounds half up). Grayscale frames use their
  level directly. ``Y`` is an integer in 0..255.
* **Mode** (Eq. 2): the most frequent ``Y`` over the N frames; ties go to the smallest value.
* **Range** (Eq. 3): with ``a = #(Y < mode)`` and ``b = #(Y <= mode)``,
  ``range_low = 100 a / N`` and ``range_high = 100 b / N`` (percent). The mode fills the
  0-based sorted positions ``a .. b - 1``, so the *nearest-rank* ``p``-th percentile of ``Y``
  equals the mode exactly when ``range_low < p <= range_high``: ranges are half-open.
* **Global percentile** (Eq. 4): all range ends are multiples of ``100 / N``, so the coverage
  (how many pixels' ranges contain ``p``) is constant on each cell ``(100 k / N,
  100 (k + 1) / N]``, ``k = 0 .. N - 1``, and counts the pixels with ``a <= k < b``. The cells
  of maximal coverage are found with a difference array; among them the lowest run of
  consecutive cells (the "best plateau") is taken, and ``p`` is the centre of its middle cell
  (the lower middle one for an even count): ``p = 100 (k* + 0.5) / N``.
* **Percentile** (output): nearest rank, i.e. NumPy's ``method="inverted_cdf"``: the
  ``ceil(p N / 100)``-th smallest sample. For ``p = 100 (k* + 0.5) / N`` that is the 0-based
  order statistic ``k*`` of each pixel's N samples, taken per channel and exact for every
  input dtype (no interpolation: every output value is one of the pixel's samples).

The fast path is a pair of numba kernels (``parallel=True`` over image rows, ``cache=True``).
The first writes the luminance of one image row of all N frames to an N x W byte buffer,
then, per tile of 64 pixels, fills 256-bin histograms and scans them bin by bin across the
tile, so the mode, ``a`` and ``b`` come without sorting. The second selects the order
statistic of each uint8 sample column by a bitwise radix search: eight counting passes over a
tile of 256 bytes x N frames that compare whole rows of bytes at once (SIMD). Both read the
frames in their natural N x H x W x 3 layout, one contiguous image row at a time, and
allocate only small per-row buffers, so the extra memory is a few H x W arrays (about 0.1x
the frames' size for 100 frames). Float frames use the same first kernel and an exact
quickselect per sample column. Calls from several Python threads are serialized.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from spanetlib.io.errors import InputError
from spanetlib.pipeline.lazy_jit import lazy_njit, on_numba

__all__ = [
    "BackgroundEstimate",
    "MAX_FRAMES",
    "Reliability",
    "TABLE1_METHODS",
    "estimate_background",
    "luminance_levels",
    "mode_filter",
    "noise_sigma",
    "percentile_background",
    "reliability_map",
    "robust_pca_background",
    "temporal_mean",
    "temporal_median",
]

MAX_FRAMES = 65535
"""Most frames one call accepts (per-pixel counts are kept in 16 bits)."""

_MODE_TILE = 64  # pixels per histogram tile (256 x 64 uint16 counts = 32 KiB, fits L1)
_SELECT_TILE = 256  # bytes per radix-select tile (N x 256 bytes stay in L1/L2)
_BATCH = 255  # frames counted in uint8 before folding into uint16 counts
# numba's default "workqueue" threading layer must not run two parallel kernels at once, so
# calls from several Python threads take turns.
_KERNEL_LOCK = threading.Lock()


@dataclass(frozen=True)
class BackgroundEstimate:
    """The result of :func:`estimate_background` (paper Eqs. 2-4).

    Attributes:
        image: H x W x 3 float32 background, in the input's value scale (0..255 for uint8
            frames, 0..1 for float frames); grayscale input gives its channel repeated 3x.
        percentile: the global percentile ``p`` of Eq. 4, in percent (0 < p < 100).
        mode: H x W uint8, the per-pixel luminance mode of Eq. 2 in levels 0..255 (divide by
            255 for the [0, 1] scale).
        range_low: H x W float32, the lower end of the mode's percentile range (Eq. 3), percent.
        range_high: H x W float32, the upper end of that range (Eq. 3), percent.
        coverage: fraction of pixels whose range ``(range_low, range_high]`` contains
            ``percentile`` (the maximum that Eq. 4 reaches), in [0, 1].
        rank: the 0-based order statistic that ``percentile`` selects among N samples.
    """

    image: np.ndarray
    percentile: float
    mode: np.ndarray
    range_low: np.ndarray
    range_high: np.ndarray
    coverage: float
    rank: int


# --------------------------------------------------------------------------------------------
# Input checks
# --------------------------------------------------------------------------------------------


def _validate(frames: np.ndarray | Sequence[np.ndarray]) -> tuple[np.ndarray, bool]:
    """Check ``frames`` and return them as an N x H x W x C array of C-contiguous frames.

    uint8 stays uint8; float32/float64 become float32 (a copy only for float64 or frames
    that are not each C-contiguous: every other frame of a clip, ``frames[::2]``, is used
    in place, so a half of a long clip costs no copy). Raises :class:`InputError` (a
    ``ValueError``) for bad input. Returns the array and whether the input was grayscale.
    """
    if isinstance(frames, (list, tuple)):
        if len(frames) < 2:
            raise InputError(f"need at least 2 frames, got {len(frames)}")
        items = [np.asarray(f) for f in frames]
        for i, item in enumerate(items[1:], start=1):
            if item.shape != items[0].shape:
                raise InputError(
                    f"frames have mismatched shapes: frame 0 is {items[0].shape}, "
                    f"frame {i} is {item.shape}")
            if item.dtype != items[0].dtype:
                raise InputError(
                    f"frames have mixed dtypes: frame 0 is {items[0].dtype}, "
                    f"frame {i} is {item.dtype}")
        arr = np.stack(items)
    else:
        arr = np.asarray(frames)
    if arr.dtype not in (np.uint8, np.float32, np.float64):
        raise InputError(
            f"frames must be uint8 (0..255) or float32/float64 (0..1), got dtype {arr.dtype}")
    if arr.ndim == 3 and arr.shape[-1] == 3:
        raise InputError(
            f"got shape {arr.shape}, which looks like one H x W x 3 image; pass frames as "
            "N x H x W x 3 (or grayscale N x H x W with W != 3)")
    if arr.ndim not in (3, 4) or (arr.ndim == 4 and arr.shape[-1] != 3):
        raise InputError(
            f"frames must be N x H x W x 3 (RGB) or N x H x W (grayscale), got shape {arr.shape}")
    n, h, w = arr.shape[:3]
    if n < 2:
        raise InputError(f"need at least 2 frames, got {n}")
    if n > MAX_FRAMES:
        raise InputError(f"at most {MAX_FRAMES} frames are supported, got {n}")
    if h == 0 or w == 0:
        raise InputError(f"frames must not be empty, got shape {arr.shape}")
    if arr.dtype != np.uint8:
        lo, hi = arr.min(), arr.max()
        if np.isnan(lo) or np.isnan(hi):
            raise InputError("float frames contain NaN")
        if lo < 0 or hi > 1:
            raise InputError(
                f"float frames must lie in [0, 1], got values in [{lo:g}, {hi:g}]")
        arr = arr.astype(np.float32, copy=False)
    gray = arr.ndim == 3
    if gray:
        arr = arr[..., None]
    if not arr[0].flags.c_contiguous:
        arr = np.ascontiguousarray(arr)
    return arr, gray


def _to_rgb(image: np.ndarray, gray: bool) -> np.ndarray:
    """Repeat a one-channel H x W x 1 result to H x W x 3 (float32, contiguous)."""
    image = image.astype(np.float32, copy=False)
    if gray:
        image = np.repeat(image, 3, axis=2)
    return np.ascontiguousarray(image)


# --------------------------------------------------------------------------------------------
# numba kernels
# --------------------------------------------------------------------------------------------


def _level(x):  # pragma: no cover - replaced by the overload inside numba
    raise NotImplementedError


prange = range  # numba.prange once numba is imported (_numba_setup)


@on_numba
def _numba_setup(numba: Any) -> None:
    """Before the kernels compile: numba's ``prange`` and the overload of ``_level``."""
    from numba.core import types
    from numba.extending import overload

    globals()["prange"] = numba.prange

    @overload(_level)
    def _level_overload(x):
        """Levels 0..255 of one sample: uint8 as is, float as floor(255 x + 0.5) (float64)."""
        if isinstance(x, types.Integer):
            return lambda x: np.uint32(x)
        return lambda x: np.uint32(math.floor(np.float64(x) * 255.0 + 0.5))


@lazy_njit(inline="always")
def _luma(r, g, b):
    """BT.601 luminance level of three sample levels, 16-bit fixed point, rounded half up."""
    return np.uint32(19595 * r + 38470 * g + 7471 * b + 32768) >> 16


@lazy_njit(inline="always")
def _row_levels(fr, h, channels, levels):
    """Luminance levels of image row ``h`` of all N frames into ``levels`` (N x W uint8)."""
    for n in range(fr.shape[0]):
        row = fr[n, h]
        out = levels[n]
        if channels == 3:
            for w in range(levels.shape[1]):
                out[w] = _luma(_level(row[3 * w]), _level(row[3 * w + 1]),
                               _level(row[3 * w + 2]))
        else:
            for w in range(levels.shape[1]):
                out[w] = _level(row[w])


@lazy_njit(parallel=True, cache=True)
def _mode_kernel(fr, channels, with_mean):
    """Eqs. 2-3 per pixel: luminance mode, #(Y < mode), #(Y <= mode) [, mean colour at mode].

    ``fr`` is N x H x (W * channels), uint8 or float32, C-contiguous. Per image row: the
    luminance levels of all N frames go into an N x W byte buffer (one long SIMD loop per
    frame row), then each tile of 64 pixels gets 256-bin histograms, scanned bin by bin
    across the tile's pixels.
    """
    n_frames, height, wc = fr.shape
    width = wc // channels
    mode = np.empty((height, width), np.uint8)
    low = np.empty((height, width), np.uint16)
    high = np.empty((height, width), np.uint16)
    if with_mean:
        mean = np.empty((height, width, channels), np.float64)
    else:
        mean = np.empty((0, 0, channels), np.float64)
    for h in prange(height):
        levels = np.empty((n_frames, width), np.uint8)
        hist = np.zeros(256 * _MODE_TILE, np.uint16)
        best = np.empty(_MODE_TILE, np.uint16)
        cum = np.empty(_MODE_TILE, np.uint16)
        less = np.empty(_MODE_TILE, np.uint16)
        md = np.empty(_MODE_TILE, np.uint8)
        acc = np.empty((_MODE_TILE, channels), np.float64)
        _row_levels(fr, h, channels, levels)
        for w0 in range(0, width, _MODE_TILE):
            nt = min(_MODE_TILE, width - w0)
            lo = 255
            hi = 0
            for n in range(n_frames):
                tile = levels[n, w0:w0 + nt]
                for t in range(nt):
                    hist[np.int64(tile[t]) * _MODE_TILE + t] += np.uint16(1)
                    lo = min(lo, np.int64(tile[t]))
                    hi = max(hi, np.int64(tile[t]))
            # Scan the bins in increasing order: the first maximum is the smallest tied value.
            for t in range(_MODE_TILE):
                best[t] = 0
                cum[t] = 0
                less[t] = 0
                md[t] = 0
            for v in range(lo, hi + 1):  # the bins outside the tile's levels are empty
                bins = hist[v * _MODE_TILE:(v + 1) * _MODE_TILE]
                vv = np.uint8(v)
                for t in range(_MODE_TILE):
                    count = bins[t]
                    if count > best[t]:
                        best[t] = count
                        md[t] = vv
                        less[t] = cum[t]
                    cum[t] += count
                    bins[t] = 0
            for t in range(nt):
                mode[h, w0 + t] = md[t]
                low[h, w0 + t] = less[t]
                high[h, w0 + t] = less[t] + best[t]
            if with_mean:
                acc[:, :] = 0.0
                for n in range(n_frames):
                    row = fr[n, h, w0 * channels:(w0 + nt) * channels]
                    tile = levels[n, w0:w0 + nt]
                    for t in range(nt):
                        if tile[t] == md[t]:
                            for c in range(channels):
                                acc[t, c] += row[channels * t + c]
                for t in range(nt):
                    for c in range(channels):
                        mean[h, w0 + t, c] = acc[t, c] / best[t]
    return mode, low, high, mean


@lazy_njit(parallel=True, cache=True)
def _select_u8_kernel(fr, ranks):
    """Exact 0-based order statistics ``ranks`` over axis 0 of uint8 N x H x M (radix search).

    For each sample column the answer is built bit by bit from the top: with ``cand`` the bits
    found so far, ``thr = cand | bit``; if fewer than ``rank + 1`` samples are ``< thr`` the
    answer is at least ``thr``. Each step is one SIMD counting pass over the tile.
    """
    n_frames, height, m = fr.shape
    n_ranks = ranks.size
    out = np.empty((n_ranks, height, m), np.uint8)
    for h in prange(height):
        cand = np.empty(_SELECT_TILE, np.uint8)
        thr = np.empty(_SELECT_TILE, np.uint8)
        cnt8 = np.empty(_SELECT_TILE, np.uint8)
        cnt = np.empty(_SELECT_TILE, np.uint16)
        for c0 in range(0, m, _SELECT_TILE):
            nt = min(_SELECT_TILE, m - c0)
            for r in range(n_ranks):
                rank = np.uint16(ranks[r])
                cand[:] = 0
                for bit in range(7, -1, -1):
                    one = np.uint8(1 << bit)
                    for t in range(_SELECT_TILE):
                        thr[t] = cand[t] | one
                        cnt[t] = 0
                    for n0 in range(0, n_frames, _BATCH):
                        n1 = min(n0 + _BATCH, n_frames)
                        cnt8[:] = 0
                        if nt == _SELECT_TILE:
                            for n in range(n0, n1):
                                row = fr[n, h, c0:c0 + _SELECT_TILE]
                                for t in range(_SELECT_TILE):
                                    cnt8[t] += row[t] < thr[t]
                        else:
                            for n in range(n0, n1):
                                row = fr[n, h, c0:c0 + nt]
                                for t in range(nt):
                                    cnt8[t] += row[t] < thr[t]
                        for t in range(_SELECT_TILE):
                            cnt[t] += cnt8[t]
                    for t in range(_SELECT_TILE):
                        if cnt[t] <= rank:
                            cand[t] = thr[t]
                out[r, h, c0:c0 + nt] = cand[:nt]
    return out


@lazy_njit(cache=True)
def _quickselect(a, k):
    """The k-th smallest (0-based) of ``a``, partially reordering ``a`` in place (Hoare)."""
    lo = 0
    hi = a.size - 1
    while hi > lo:
        mid = (lo + hi) >> 1
        x, y, z = a[lo], a[mid], a[hi]
        pivot = max(min(x, y), min(max(x, y), z))  # median of three
        i = lo
        j = hi
        while i <= j:
            while a[i] < pivot:
                i += 1
            while a[j] > pivot:
                j -= 1
            if i <= j:
                a[i], a[j] = a[j], a[i]
                i += 1
                j -= 1
        if k <= j:
            hi = j
        elif k >= i:
            lo = i
        else:
            return a[k]
    return a[k]


@lazy_njit(parallel=True, cache=True)
def _select_float_kernel(fr, ranks):
    """Exact 0-based order statistics ``ranks`` over axis 0 of float32 N x H x M (quickselect)."""
    n_frames, height, m = fr.shape
    n_ranks = ranks.size
    out = np.empty((n_ranks, height, m), np.float32)
    for h in prange(height):
        buf = np.empty((_SELECT_TILE, n_frames), np.float32)
        work = np.empty(n_frames, np.float32)
        for c0 in range(0, m, _SELECT_TILE):
            nt = min(_SELECT_TILE, m - c0)
            for n in range(n_frames):
                for t in range(nt):
                    buf[t, n] = fr[n, h, c0 + t]
            for t in range(nt):
                for r in range(n_ranks):
                    work[:] = buf[t]
                    out[r, h, c0 + t] = _quickselect(work, ranks[r])
    return out


def _order_statistics(arr: np.ndarray, ranks: Sequence[int]) -> np.ndarray:
    """0-based order statistics over time of validated N x H x W x C frames -> R x H x W x C."""
    n, h, w, c = arr.shape
    flat = arr.reshape(n, h, w * c)
    ranks_arr = np.asarray(ranks, dtype=np.int64)
    with _KERNEL_LOCK:
        if arr.dtype == np.uint8:
            out = _select_u8_kernel(flat, ranks_arr)
        else:
            out = _select_float_kernel(flat, ranks_arr)
    return out.reshape(len(ranks_arr), h, w, c)


def _best_plateau(low: np.ndarray, high: np.ndarray, n: int) -> tuple[int, int]:
    """Eq. 4 on counts: the cell k* of maximal coverage and that coverage (pixel count).

    Cell ``k`` (percentiles in ``(100 k / N, 100 (k + 1) / N]``) is covered by the pixels with
    ``low <= k < high``; the centre of the middle cell of the lowest best run is returned.
    """
    diff = np.bincount(low.ravel(), minlength=n + 1).astype(np.int64)
    diff -= np.bincount(high.ravel(), minlength=n + 1)
    coverage = np.cumsum(diff)[:n]
    best = int(coverage.max())
    start = int(np.argmax(coverage == best))
    stop = start
    while stop + 1 < n and coverage[stop + 1] == best:
        stop += 1
    return (start + stop) // 2, best


# --------------------------------------------------------------------------------------------
# Public API
# --------------------------------------------------------------------------------------------


def luminance_levels(frames: np.ndarray | Sequence[np.ndarray]) -> np.ndarray:
    """Integer luminance levels used by Eq. 2 (plain NumPy, for inspection and plots).

    Args:
        frames: N x H x W x 3 (RGB) or N x H x W (grayscale) frames, uint8 in 0..255 or float
            in [0, 1].

    Returns:
        N x H x W uint8 levels: ``(19595 R + 38470 G + 7471 B + 32768) >> 16`` on the levels
        (float samples ``x`` become ``floor(255 x + 0.5)``); grayscale frames give their
        levels.
    """
    arr, _ = _validate(frames)
    return _levels(arr)


def _levels(arr: np.ndarray) -> np.ndarray:
    """Luminance levels of validated N x H x W x C (C = 1 or 3) frames -> N x H x W uint8."""
    if arr.dtype == np.uint8:
        levels = arr.astype(np.uint32)
    else:
        levels = np.floor(arr.astype(np.float64) * 255.0 + 0.5).astype(np.uint32)
    if levels.shape[-1] == 1:
        return levels[..., 0].astype(np.uint8)
    y = (19595 * levels[..., 0] + 38470 * levels[..., 1] + 7471 * levels[..., 2] + 32768) >> 16
    return y.astype(np.uint8)


def estimate_background(frames: np.ndarray | Sequence[np.ndarray]) -> BackgroundEstimate:
    """Estimate the clean background of a static rain video (paper Eqs. 2-4).

    Eq. 2 takes each pixel's temporal luminance mode, Eq. 3 the percentile range that the mode
    occupies among the pixel's own samples, Eq. 4 the one percentile inside the most ranges;
    the background is then, per pixel and channel, that percentile over time. The exact
    conventions (luminance levels, ties, half-open ranges, plateau midpoint, nearest-rank
    percentile) are listed in the module docstring.

    Args:
        frames: N x H x W x 3 RGB frames (N >= 2), uint8 in 0..255 or float32/float64 in
            [0, 1], as one array or a sequence of H x W x 3 arrays; grayscale N x H x W is
            accepted too (an N x H x W array whose last axis is 3 is rejected as ambiguous).

    Returns:
        A :class:`BackgroundEstimate` whose ``image`` is H x W x 3 float32 in the input's
        value scale (grayscale repeated to 3 channels); each of its values is one of that
        pixel's samples.

    Raises:
        InputError: (a ``ValueError``) for fewer than 2 frames, a wrong shape or dtype,
            mismatched frame shapes, float values outside [0, 1] or NaN.

    Example:
        >>> frames = np.full((5, 2, 2, 3), 40, np.uint8)
        >>> frames[0] = 250  # a rain streak in one frame
        >>> estimate_background(frames).image[0, 0]
        array([40., 40., 40.], dtype=float32)
    """
    arr, gray = _validate(frames)
    n, h, w, c = arr.shape
    with _KERNEL_LOCK:
        mode, low, high, _ = _mode_kernel(arr.reshape(n, h, w * c), c, False)
    rank, covered = _best_plateau(low, high, n)
    image = _order_statistics(arr, [rank])[0]
    return BackgroundEstimate(
        image=_to_rgb(image, gray),
        percentile=100.0 * (rank + 0.5) / n,
        mode=mode,
        range_low=(low.astype(np.float32) * np.float32(100.0 / n)),
        range_high=(high.astype(np.float32) * np.float32(100.0 / n)),
        coverage=covered / (h * w),
        rank=rank,
    )


def percentile_background(frames: np.ndarray | Sequence[np.ndarray]) -> np.ndarray:
    """The image of :func:`estimate_background` ("Ours (Eqs. 2-4)" in Table 1).

    Args:
        frames: N x H x W x 3 (or N x H x W) frames, uint8 or float in [0, 1].

    Returns:
        H x W x 3 float32 background in the input's value scale.
    """
    return estimate_background(frames).image


def temporal_mean(frames: np.ndarray | Sequence[np.ndarray]) -> np.ndarray:
    """Per-pixel mean over time (Table 1 baseline "Mean").

    Args:
        frames: N x H x W x 3 (or N x H x W) frames, uint8 or float in [0, 1].

    Returns:
        H x W x 3 float32 in the input's value scale (accumulated in float64).
    """
    arr, gray = _validate(frames)
    return _to_rgb(arr.mean(axis=0, dtype=np.float64), gray)


def temporal_median(frames: np.ndarray | Sequence[np.ndarray]) -> np.ndarray:
    """Per-pixel median over time (Table 1 baseline "Median"), equal to ``np.median(axis=0)``.

    For an even N it is the mean of the two middle samples. uint8 frames use the fast radix
    selection kernel; float frames use ``np.median`` (float64 frames after conversion to
    float32).

    Args:
        frames: N x H x W x 3 (or N x H x W) frames, uint8 or float in [0, 1].

    Returns:
        H x W x 3 float32 in the input's value scale.
    """
    arr, gray = _validate(frames)
    n = arr.shape[0]
    if arr.dtype == np.uint8:
        lo_hi = _order_statistics(arr, [(n - 1) // 2, n // 2]).astype(np.float32)
        median = (lo_hi[0] + lo_hi[1]) * np.float32(0.5)
    else:
        median = np.median(arr, axis=0)
    return _to_rgb(median, gray)


def mode_filter(frames: np.ndarray | Sequence[np.ndarray]) -> np.ndarray:
    """Eq. 2 alone (Table 1 baseline "Mode filter"): the mean colour of the mode frames.

    Per pixel, the samples whose luminance level (see the module docstring) equals the
    pixel's luminance mode are averaged, channel by channel.

    Args:
        frames: N x H x W x 3 (or N x H x W) frames, uint8 or float in [0, 1].

    Returns:
        H x W x 3 float32 in the input's value scale.
    """
    arr, gray = _validate(frames)
    n, h, w, c = arr.shape
    with _KERNEL_LOCK:
        _, _, _, mean = _mode_kernel(arr.reshape(n, h, w * c), c, True)
    return _to_rgb(mean, gray)


@lazy_njit(cache=True)
def _ialm_sparse_step(data, dual, low_rank, sparse, work, inv_mu, thresh):
    """Fused IALM step: ``S = shrink(D + Y/mu - L, thresh)`` and ``work = D + Y/mu - S``."""
    rows, cols = data.shape
    for i in range(rows):
        for j in range(cols):
            t = data[i, j] + dual[i, j] * inv_mu
            e = t - low_rank[i, j]
            e = e - min(max(e, -thresh), thresh)
            sparse[i, j] = e
            work[i, j] = t - e


@lazy_njit(cache=True)
def _ialm_dual_step(data, dual, low_rank, sparse, mu):
    """Fused IALM step: ``Z = D - L - S``, ``Y += mu Z``; returns ``||Z||_F^2`` (float64)."""
    rows, cols = data.shape
    sums = np.zeros(rows, np.float64)
    for i in range(rows):
        acc = 0.0
        for j in range(cols):
            z = data[i, j] - low_rank[i, j] - sparse[i, j]
            acc += np.float64(z) * z
            dual[i, j] += mu * z
        sums[i] = acc
    return sums.sum()


def _ialm(data: np.ndarray, lam: float, max_iter: int, tol: float) -> tuple[np.ndarray, int]:
    """Low-rank part of ``data`` (m x n, float32) by inexact ALM RPCA (Lin et al. 2010).

    Solves ``min ||L||_* + lam ||S||_1`` subject to ``D = L + S``. Singular value thresholding
    works on the small m x m Gram matrix: with ``M M^T = U diag(s^2) U^T``,
    ``SVT_tau(M) = U diag(max(s - tau, 0) / s) U^T M``. Returns L and the iteration count.
    """
    def gram_eig(mat: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        gram = (mat @ mat.T).astype(np.float64)
        evals, evecs = np.linalg.eigh(gram)
        return np.sqrt(np.clip(evals, 0.0, None)), evecs

    sig, _ = gram_eig(data)
    norm_two = float(sig.max())
    if norm_two == 0.0:
        return np.zeros_like(data), 0
    norm_inf = float(np.abs(data).max()) / lam
    dual = data / np.float32(max(norm_two, norm_inf))  # Lagrange multiplier Y
    mu = 1.25 / norm_two
    mu_max = mu * 1e7
    rho = 1.5
    d_norm = float(np.linalg.norm(data.astype(np.float64)))
    low_rank = np.zeros_like(data)
    sparse = np.empty_like(data)
    work = np.empty_like(data)
    iterations = 0
    for _ in range(max_iter):
        iterations += 1
        # S = shrink(D - L + Y / mu, lam / mu);  work = D - S + Y / mu
        _ialm_sparse_step(data, dual, low_rank, sparse, work, np.float32(1.0 / mu),
                          np.float32(lam / mu))
        # L = SVT(work, 1 / mu)
        sig, evecs = gram_eig(work)
        tau = 1.0 / mu
        safe = np.where(sig > 0, sig, 1.0)
        shrink = np.where(sig > tau, (sig - tau) / safe, 0.0)
        np.matmul(((evecs * shrink) @ evecs.T).astype(np.float32), work, out=low_rank)
        # Z = D - L - S;  Y += mu Z
        residual = math.sqrt(_ialm_dual_step(data, dual, low_rank, sparse, np.float32(mu)))
        mu = min(mu * rho, mu_max)
        if residual / d_norm < tol:
            break
    return low_rank, iterations


def robust_pca_background(
    frames: np.ndarray | Sequence[np.ndarray],
    lam: float | None = None,
    max_iter: int = 100,
    tol: float = 1e-5,
    max_pixels: int | None = None,
) -> np.ndarray:
    """Robust PCA background (Table 1 baseline "Robust PCA (IALM)").

    The frames form a matrix D of N rows (frames) and H*W*3 columns (all channels stacked),
    split as D = L + S, low rank plus sparse, by the inexact augmented Lagrange multiplier
    method of Lin, Chen and Ma (2010) with their schedule (``mu_0 = 1.25 / ||D||_2``,
    ``rho = 1.5``, ``mu <= 1e7 mu_0``). The background is the per-pixel median over time of L,
    clipped to the value range. Computed in float32 (SVDs via the N x N Gram matrix in float64);
    with the default ``tol`` about 45 iterations, and 100 frames of 256 x 256 take about
    6 CPU-seconds (one core).

    Args:
        frames: N x H x W x 3 (or N x H x W) frames, uint8 or float in [0, 1].
        lam: weight of the sparse term; default ``1 / sqrt(max(rows, columns))`` of the
            decomposed matrix.
        max_iter: most ALM iterations (per pixel block).
        tol: stop when ``||D - L - S||_F / ||D||_F < tol``.
        max_pixels: if given, the pixels are split into blocks of at most this many pixels
            (row-major order) and each block is decomposed on its own, bounding the memory
            to about ``24 * N * max_pixels * 3`` bytes (float32 work arrays).

    Returns:
        H x W x 3 float32 in the input's value scale.

    Raises:
        ValueError: for bad frames (see :func:`estimate_background`) or bad parameters.
    """
    if lam is not None and not lam > 0:
        raise ValueError(f"lam must be > 0 or None, got {lam}")
    if max_iter < 1:
        raise ValueError(f"max_iter must be >= 1, got {max_iter}")
    if not tol > 0:
        raise ValueError(f"tol must be > 0, got {tol}")
    if max_pixels is not None and max_pixels < 1:
        raise ValueError(f"max_pixels must be >= 1 or None, got {max_pixels}")
    arr, gray = _validate(frames)
    n, h, w, c = arr.shape
    scale = 255.0 if arr.dtype == np.uint8 else 1.0
    flat = arr.reshape(n, h * w * c)
    block = h * w if max_pixels is None else max_pixels
    out = np.empty(h * w * c, np.float32)
    for start in range(0, h * w, block):
        cols = slice(start * c, min(start + block, h * w) * c)
        data = flat[:, cols].astype(np.float32)
        block_lam = lam if lam is not None else 1.0 / math.sqrt(max(data.shape))
        low_rank, _ = _ialm(data, block_lam, max_iter, tol)
        out[cols] = np.median(low_rank, axis=0)
    np.clip(out, 0.0, scale, out=out)
    return _to_rgb(out.reshape(h, w, c), gray)



# --------------------------------------------------------------------------------------------
# Reliability: is each pixel's estimate explained by rain?
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Reliability:
    """Per-pixel evidence that an estimate is explained by rain (see :func:`reliability_map`).

    Rain only brightens a pixel (§3), so a pixel whose frames fall clearly *below* the
    estimate, or whose luminance history holds a second tight population (something arrived
    or left, a light changed), is not explained by rain over a static scene.

    Attributes:
        below: H x W float32, share of frames whose luminance level is more than
            ``tolerance`` below the estimate's.
        second: H x W float32, share of frames in the fullest window of ``2 spread + 1``
            levels that keeps ``tolerance`` levels away from the estimate's luminance, is a
            peak (twice as full as each neighbouring window) and is held over time (it holds
            at least half of the frames from its first to its last); levels >= 253, where
            rain saturates, are not counted.
        score: H x W float32 in [0, 1]: ``1 - max(below, second) / limit``, clipped.
        reliable: H x W bool, ``score > 0.5`` (both shares under half the limit).
        tolerance: levels a frame may fall below the estimate (noise, compression).
        spread: half-width (levels) of a population's window.
        limit: the share at which the score reaches 0.
    """

    below: np.ndarray
    second: np.ndarray
    score: np.ndarray
    reliable: np.ndarray
    tolerance: int
    spread: int
    limit: float

    @property
    def reliable_share(self) -> float:
        """Fraction of the pixels marked reliable."""
        return float(self.reliable.mean())


def noise_sigma(frames: np.ndarray | Sequence[np.ndarray], mode: np.ndarray,
                max_samples: int = 2_000_000) -> float:
    """Temporal noise of the luminance levels around each pixel's mode, in levels.

    Rain only brightens, so below its mode (Eq. 2) a static pixel's history is noise alone.
    The deviations ``Y - mode`` of all pixels are pooled; on the dark side their counts
    ``c(k)`` at ``k = 1, 2, ...`` levels below the mode fall off as ``exp(-k^2 / 2 sigma^2)``
    (the mode's own bin is left out: being the maximum, it is biased high). sigma comes from
    a least-squares line through ``log c(k)`` against ``k^2`` over the core (counts above
    5 % of ``c(1)``), so far-off populations (a dark object in many frames) do not inflate
    it. Floor 0.5 level (quantization), ceiling 20 levels.

    Args:
        frames: N x H x W x 3 (or N x H x W) frames, uint8 or float in [0, 1].
        mode: H x W luminance mode (``BackgroundEstimate.mode``).
        max_samples: most samples pooled (an even subsample of the pixels).

    Returns:
        sigma in levels (0..255 scale).
    """
    arr, _ = _validate(frames)
    n, h, w = arr.shape[:3]
    step = max(1, int(math.ceil(math.sqrt(n * h * w / max_samples))))
    levels = _levels(arr[:, ::step, ::step]).astype(np.int16)
    dev = levels - np.asarray(mode)[::step, ::step].astype(np.int16)[None]
    counts = np.bincount(-dev[dev < 0].ravel(), minlength=257).astype(np.float64)[1:]
    if counts[0] <= 0:
        return 0.5
    core = np.flatnonzero(counts < 0.05 * counts[0])
    stop = int(core[0]) if core.size else counts.size
    k = np.arange(1, stop + 1, dtype=np.float64)
    if k.size < 2:
        return 0.5
    slope = np.polyfit(k ** 2, np.log(counts[:stop]), 1)[0]
    if slope >= 0:
        return 20.0
    return float(np.clip(math.sqrt(-0.5 / slope), 0.5, 20.0))


@lazy_njit(inline="always")
def _clamped_count(cum, lo, hi, i):
    """Samples below level ``i``, from cumulative counts kept in ``cum[lo..hi + 1]`` only."""
    return cum[min(max(i, lo), hi + 1)]


@lazy_njit(parallel=True, cache=True)
def _reliability_kernel(fr, channels, est, tol, spread):
    """Per pixel: #frames below ``est - tol`` and the fullest far peak window (Reliability)."""
    n_frames, height, wc = fr.shape
    width = wc // channels
    below = np.zeros((height, width), np.uint16)
    second = np.zeros((height, width), np.uint16)
    for h in prange(height):
        levels = np.empty((n_frames, width), np.uint8)
        hist = np.zeros(256, np.int32)  # zero between pixels
        cum = np.zeros(257, np.int32)
        _row_levels(fr, h, channels, levels)
        # Each pixel's lowest and highest level (one SIMD pass per frame row): the histogram
        # is empty outside them, so the loops below skip those levels.
        lows = levels[0].copy()
        highs = levels[0].copy()
        for n in range(1, n_frames):
            row = levels[n]
            for w in range(width):
                lows[w] = min(lows[w], row[w])
                highs[w] = max(highs[w], row[w])
        for w in range(width):
            lo = np.int64(lows[w])
            hi = np.int64(highs[w])
            for n in range(n_frames):
                hist[levels[n, w]] += 1
            e = np.int64(est[h, w])
            cut = e - tol  # levels < cut are clearly below
            if cut > 0:
                total = 0
                for v in range(lo, min(cut, hi + 1)):
                    total += hist[v]
                below[h, w] = total
            for v in range(253, 256):  # rain saturates here: not a population
                hist[v] = 0
            # Cumulative counts are kept for cum[lo..hi + 1] only: _clamped_count reads them.
            cum[lo] = 0
            for v in range(lo, hi + 1):
                cum[v + 1] = cum[v] + hist[v]
            best = 0
            window = 2 * spread + 1
            # A window [v - spread, v + spread] that misses [lo, hi] counts nothing.
            for v in range(max(0, lo - spread), min(255, hi + spread) + 1):
                if abs(v - e) <= tol + spread:
                    continue
                a = max(0, v - spread)
                b = min(255, v + spread)
                count = _clamped_count(cum, lo, hi, b + 1) - _clamped_count(cum, lo, hi, a)
                if count <= best:
                    continue
                # A population is a peak: twice as full as each neighbouring window (rain's
                # brightenings fall off smoothly from the estimate and are no peak) ...
                left = _clamped_count(cum, lo, hi, a) \
                    - _clamped_count(cum, lo, hi, max(0, a - window))
                right = _clamped_count(cum, lo, hi, min(256, b + 1 + window)) \
                    - _clamped_count(cum, lo, hi, b + 1)
                if count < 2 * left or count < 2 * right:
                    continue
                # ... held over a stretch of time: at least half of the frames between its
                # first and its last (rain may hide the rest). Rain falls anew every frame.
                # (count > 0: both searches stop at a sample)
                first = 0
                while not a <= levels[first, w] <= b:
                    first += 1
                last = n_frames - 1
                while not a <= levels[last, w] <= b:
                    last -= 1
                if 2 * count >= last - first + 1:
                    best = count
            for v in range(lo, hi + 1):
                hist[v] = 0
            second[h, w] = best
    return below, second


def reliability_map(frames: np.ndarray | Sequence[np.ndarray], estimate: BackgroundEstimate,
                    tolerance: int | None = None, spread: int | None = None,
                    limit: float = 0.25) -> Reliability:
    """Per-pixel reliability of a background estimate over the frames it came from.

    Luminance levels (the conventions of Eq. 2) of every frame are compared with those of
    the estimate's image: ``below`` counts the frames more than ``tolerance`` levels darker
    than the estimate (rain cannot darken), ``second`` the frames in the fullest window of
    ``2 spread + 1`` levels away from the estimate that is a peak held over time (a second
    scene state; rain's brightenings fall off smoothly and change every frame). A pixel is
    reliable when both shares stay under ``limit / 2``; short-lived passers-by (a few frames)
    leave it reliable, a state held for a quarter of the frames does not.

    Args:
        frames: N x H x W x 3 (or N x H x W) frames, uint8 or float in [0, 1], aligned.
        estimate: the :class:`BackgroundEstimate` of these frames.
        tolerance: levels; default ``ceil(3.5 sigma) + 2`` with sigma from
            :func:`noise_sigma`.
        spread: levels; default ``max(2, ceil(2 sigma))``.
        limit: share of frames at which the score reaches 0, in (0, 1].

    Returns:
        A :class:`Reliability`.

    Raises:
        InputError: bad frames, or an image that does not match them.
        ValueError: bad ``tolerance``, ``spread`` or ``limit``.
    """
    arr, _ = _validate(frames)
    n, h, w, c = arr.shape
    image = np.asarray(estimate.image)
    if image.shape != (h, w, 3):
        raise InputError(f"estimate: expected an image of shape {(h, w, 3)} to match the "
                         f"frames, got {image.shape}")
    if not 0 < limit <= 1:
        raise ValueError(f"limit: expected a share in (0, 1], got {limit!r}")
    sigma = None
    if tolerance is None or spread is None:
        sigma = noise_sigma(arr if c == 3 else arr[..., 0], estimate.mode)  # validated again
    tolerance = int(math.ceil(3.5 * sigma) + 2) if tolerance is None else tolerance
    spread = max(2, int(math.ceil(2.0 * sigma))) if spread is None else spread
    if isinstance(tolerance, bool) or not 0 <= int(tolerance) <= 255 \
            or isinstance(spread, bool) or not 0 <= int(spread) <= 127:
        raise ValueError(f"expected 0 <= tolerance <= 255 and 0 <= spread <= 127, got "
                         f"{tolerance!r}, {spread!r}")
    scale = 255.0 if arr.dtype == np.uint8 else 1.0
    est = np.clip(np.floor(image.astype(np.float64) * (255.0 / scale) + 0.5), 0, 255)
    est = est.astype(np.uint32)
    est_y = ((19595 * est[..., 0] + 38470 * est[..., 1] + 7471 * est[..., 2] + 32768) >> 16)
    if c == 1:
        est_y = est[..., 0]
    with _KERNEL_LOCK:
        below, second = _reliability_kernel(arr.reshape(n, h, w * c), c,
                                            est_y.astype(np.uint8), int(tolerance), int(spread))
    below = below.astype(np.float32) / np.float32(n)
    second = second.astype(np.float32) / np.float32(n)
    score = np.clip(1.0 - np.maximum(below, second) / np.float32(limit), 0.0, 1.0)
    return Reliability(below=below, second=second, score=score.astype(np.float32),
                       reliable=score > 0.5, tolerance=int(tolerance), spread=int(spread),
                       limit=float(limit))


TABLE1_METHODS: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "Mean": temporal_mean,
    "Median": temporal_median,
    "Mode filter (Eq. 2)": mode_filter,
    "Robust PCA (IALM)": robust_pca_background,
    "Ours (Eqs. 2-4)": percentile_background,
}
"""Table 1 methods: display name -> ``f(frames) -> H x W x 3 float32`` (input's scale)."""
