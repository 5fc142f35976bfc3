"""The paper's rules for choosing N, the number of frames a clean image is estimated from (Sec. 3).

"Selection of N": a clean image is estimated from the first N frames of a static scene
(`spanetlib.pipeline.background.estimate_background`, Eqs. 2-4). N starts at 20 / 100 / 200
frames for sparse / normal / dense rain (`FRAME_COUNTS`) and grows by 10 / 20 / 50 frames each
time the estimate is rejected (`REJECT_INCREMENT`), until the estimate is clean.

This module holds only the rules; no state, no files, no user interface:

- `guess_density`: an automatic first guess of the density (a person may correct it), from
  `rain_fraction`, the share of pixels a frame's streaks brighten;
- `split_half_change` / `passes_split_half`: the no-reference acceptance check that stands in
  for the person in batch runs (the estimates of the two halves of the N frames must agree);
`spanetlib.pipeline.review` keeps the decisions of a review (`ReviewSession`) and runs it in batch
(`run_review`); `spanetlib.pipeline.review_widget` is the notebook's view.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from spanetlib.io.checks import check_frames
from spanetlib.pipeline.background import estimate_background
from spanetlib.pipeline.lazy_jit import lazy_njit

__all__ = [
    "AUTO_THRESHOLD",
    "DENSITIES",
    "DENSITY_THRESHOLDS",
    "FRAME_COUNTS",
    "GUESS_FRAMES",
    "RAIN_DELTA",
    "REJECT_INCREMENT",
    "density_of_fraction",
    "guess_density",
    "passes_split_half",
    "rain_fraction",
    "split_half_change",
]

#: Initial N per rain density (paper, Sec. 3 "Selection of N").
FRAME_COUNTS: dict[str, int] = {"sparse": 20, "normal": 100, "dense": 200}
#: Frames added per rejection (paper, Sec. 3).
REJECT_INCREMENT: dict[str, int] = {"sparse": 10, "normal": 20, "dense": 50}
#: The rain densities, from the fewest streaks to the most.
DENSITIES: tuple[str, ...] = tuple(FRAME_COUNTS)
#: Frames read to guess a density (`guess_density` needs no more).
GUESS_FRAMES = 20

#: A pixel of a frame counts as rain when it is brighter than the background estimate by more
#: than this, in [0, 1] units (well above sensor noise, below faint streaks).
RAIN_DELTA = 12.0 / 255.0
#: `rain_fraction` boundaries (sparse | normal | dense); see `guess_density`.
DENSITY_THRESHOLDS: tuple[float, float] = (0.04, 0.2)
#: `split_half_change` at or below which `passes_split_half` accepts an estimate.
AUTO_THRESHOLD = 0.003


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

    Example:
        >>> background = np.full((4, 4, 3), 100, np.uint8)
        >>> frames = np.stack([background, background])
        >>> frames[0, 0, :2] = 200  # two bright pixels in the first of two frames
        >>> rain_fraction(frames, background)
        0.0625
    """
    frames = check_frames(frames, floats=True)
    bg = np.asarray(background)
    if bg.shape != frames.shape[1:]:
        raise ValueError(f"background shape {bg.shape} does not match frames {frames.shape[1:]}")
    scale = 255.0 if frames.dtype == np.uint8 else 1.0
    bg_lum = bg.astype(np.float32).mean(axis=2) / scale
    if frames.dtype == np.uint8:
        # Exactly the float test below, per channel sum (0..765): the test grows with the
        # sum, so it holds from a per-pixel threshold on (766: never).
        threshold = _sum_thresholds(bg_lum.ravel(), np.float32(delta), _MEAN_LEVEL)
        total = 0
        for frame in frames:
            total += _count_at_least(np.ascontiguousarray(frame).reshape(-1), threshold) \
                / threshold.size
        return float(total) / len(frames)
    total = 0.0
    for frame in frames:
        lum = frame.astype(np.float32).mean(axis=2) / scale
        total += float(np.mean(lum - bg_lum > delta))
    return total / len(frames)


@lazy_njit(nogil=True, cache=True)
def _sum_thresholds(background, delta, levels):
    """Per pixel, the smallest channel sum ``s`` with ``levels[s] - background > delta``.

    In float32, as numpy compares; ``len(levels)`` where no sum passes.
    """
    n = levels.size
    out = np.empty(background.size, np.int32)
    for k in range(background.size):
        b = background[k]
        guess = (b + delta) * np.float32(n - 1)  # levels[s] is s / (n - 1)
        s = 0 if not guess > 0 else (n if guess >= n else int(guess))
        while s > 0 and levels[s - 1] - b > delta:
            s -= 1
        while s < n and not levels[s] - b > delta:
            s += 1
        out[k] = s
    return out


@lazy_njit(nogil=True, cache=True)
def _count_at_least(rgb, threshold):
    """Pixels whose channel sum is at least their ``threshold`` (``rgb`` flat, 3 a pixel)."""
    count = 0
    for k in range(threshold.size):
        total = np.int32(rgb[3 * k]) + np.int32(rgb[3 * k + 1]) + np.int32(rgb[3 * k + 2])
        count += total >= threshold[k]
    return count


#: float32 channel mean / 255 of each uint8 channel sum 0..765, as ``mean(axis=2) / 255`` gives.
_MEAN_LEVEL = np.arange(3 * 255 + 1, dtype=np.float32) / np.float32(3) / np.float32(255.0)


def guess_density(frames: np.ndarray, estimate: Any = None) -> str:
    """An automatic first guess of the rain density of a sequence: sparse, normal or dense.

    Measures `rain_fraction` (the mean share of pixels per frame that are brighter than the
    estimated background by more than `RAIN_DELTA` = 12/255 on the channel mean) and compares
    it with `DENSITY_THRESHOLDS` = (0.04, 0.2): below 4 % sparse, below 20 % normal, else
    dense. The boundaries sit between the values `estimate_background` gives on
    `spanetlib.synthesis.rain`'s sparse, normal and dense video presets (crops of the bundled
    photos over several seeds), near their geometric means; the tests check the guess over
    several seeds. Real footage should be confirmed by a person,
    which the review widget's density buttons are for.

    Args:
        frames: N x H x W x 3 RGB, uint8 or float in [0, 1] (`GUESS_FRAMES` = 20 frames are
            plenty).
        estimate: the background: a ``BackgroundEstimate``, an H x W x 3 array in the frames'
            scale, or None to compute ``estimate_background(frames)``.

    Returns:
        ``"sparse"``, ``"normal"`` or ``"dense"``.

    Example:
        >>> background = np.full((10, 10, 3), 100, np.uint8)
        >>> frames = np.stack([background] * 4)
        >>> frames[:, :3] = 220  # streaks cover 30 % of every frame
        >>> guess_density(frames, background)
        'dense'
    """
    frames = check_frames(frames, floats=True)
    if estimate is None:
        estimate = estimate_background(frames)
    background = getattr(estimate, "image", estimate)
    return density_of_fraction(rain_fraction(frames, background))


def density_of_fraction(fraction: float) -> str:
    """The density a `rain_fraction` reads as: below 4 % sparse, below 20 % normal, else dense.

    Example:
        >>> density_of_fraction(0.1)
        'normal'
    """
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
    frames = check_frames(frames, floats=True)
    if len(frames) < 4:
        raise ValueError(f"split_half_change needs at least 4 frames, got {len(frames)}")
    half = len(frames) // 2
    scale = 255.0 if frames.dtype == np.uint8 else 1.0
    first = estimate_background(frames[:half]).image.mean(axis=2) / scale
    second = estimate_background(frames[half:]).image.mean(axis=2) / scale
    return float(np.mean(np.abs(first - second) > delta))


def passes_split_half(frames: np.ndarray, threshold: float = AUTO_THRESHOLD) -> bool:
    """The batch acceptance rule: N >= 4 frames and ``split_half_change(frames) <= threshold``.

    With fewer than 4 frames there is nothing to compare, so the estimate is not accepted
    (the review adds frames instead).

    Args:
        frames: the N x H x W x 3 frames the estimate is made from.
        threshold: the largest accepted `split_half_change` (default `AUTO_THRESHOLD` = 0.3 %).

    Returns:
        Whether the estimate of these frames is accepted.

    Example:
        >>> passes_split_half(np.zeros((3, 8, 8, 3), np.uint8))  # too few frames to check
        False
    """
    return len(frames) >= 4 and split_half_change(frames) <= threshold




















