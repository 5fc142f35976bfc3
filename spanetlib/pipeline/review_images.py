"""Images a reviewer looks at: difference maps, reliability overlays, the period strip.

Pure numpy (no matplotlib), shared by the review widget and the paper's figures.
"""

from __future__ import annotations

import numpy as np

from spanetlib.io.files import round_to_uint8, to_unit_float

__all__ = ["PERIOD_COLOURS", "difference_map", "frame_colours", "period_strip",
           "reliability_overlay"]

_UNPAIRED = (170, 170, 170)  # in a period, but its pair check failed


_TRANSITION = (60, 60, 60)  # no period: the scene was changing, or registration failed


def difference_map(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Per-pixel max-over-channels absolute difference of two RGB images, H x W in [0, 1]."""
    a, b = to_unit_float(a), to_unit_float(b)
    if a.shape != b.shape:
        raise ValueError(f"images differ in shape: {a.shape} vs {b.shape}")
    diff = np.abs(a - b)
    return diff.max(axis=-1) if diff.ndim == 3 else diff


# --------------------------------------------------------------------------------------------
# Phone clips: stable periods, reliability, camera motion (review widget and notebook 01)
# --------------------------------------------------------------------------------------------
#: RGB colours (0..255) of stable periods 1, 2, ... in timelines.
PERIOD_COLOURS: tuple[tuple[int, int, int], ...] = (
    (31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40), (148, 103, 189),
    (140, 86, 75))


def frame_colours(membership: np.ndarray, period: np.ndarray) -> np.ndarray:
    """N x 3 uint8: each frame's period colour, light grey unpaired, dark grey transition."""
    membership, period = np.asarray(membership), np.asarray(period)
    colours = np.empty((len(membership), 3), np.uint8)
    colours[:] = _TRANSITION
    colours[(membership < 0) & (period >= 0)] = _UNPAIRED
    for k in np.unique(membership[membership >= 0]):
        colours[membership == k] = PERIOD_COLOURS[int(k) % len(PERIOD_COLOURS)]
    return colours


def period_strip(membership: np.ndarray, period: np.ndarray, width: int, height: int = 14,
                 current: int | None = None) -> np.ndarray:
    """A clip's frames as a colour strip: one band per frame, coloured by its stable period.

    Frames paired with period k take ``PERIOD_COLOURS[k]``; frames in a period whose pair
    check failed are light grey; transitions (no period) dark grey. ``current`` is marked
    with a white band.

    Args:
        membership: N int, a `spanetlib.pipeline.clip_estimate.ClipEstimate`'s ``membership``.
        period: N int, its ``period``.
        width: strip width in pixels (>= N is sharpest).
        height: strip height in pixels.
        current: a frame to mark, or None.

    Returns:
        height x width x 3 uint8 RGB.
    """
    n = len(membership)
    if n == 0 or width < 1 or height < 1:
        raise ValueError(f"expected frames and a positive size, got {n} frames, {width} x "
                         f"{height}")
    colours = frame_colours(membership, period)
    index = np.minimum((np.arange(width) * n) // width, n - 1)
    strip = np.repeat(colours[index][None], height, axis=0)
    if current is not None:
        strip[height // 3:, index == current] = 255
    return strip


def reliability_overlay(image: np.ndarray, unreliable: np.ndarray,
                        unusable: np.ndarray | None = None, strength: float = 0.55,
                        reliable_strength: float = 0.0) -> np.ndarray:
    """An image with its unreliable pixels tinted red and its unusable ones tinted blue.

    Args:
        image: H x W x 3 RGB, uint8 or float in [0, 1].
        unreliable: H x W bool, where the clean image is not explained by rain
            (`spanetlib.pipeline.background.Reliability.reliable` is False).
        unusable: H x W bool, pixels no pair may use (a passing object, outside the valid
            region); None for none.
        strength: tint opacity in [0, 1].
        reliable_strength: opacity of a green tint on the other pixels (0: none), so that an
            overlay with nothing to mark still shows it is on.

    Returns:
        H x W x 3 uint8 RGB.
    """
    base = to_unit_float(image)
    if base.ndim != 3 or np.shape(unreliable) != base.shape[:2]:
        raise ValueError(f"expected an H x W x 3 image and an H x W mask, got {base.shape} and "
                         f"{np.shape(unreliable)}")
    out = base.copy()
    unreliable = np.asarray(unreliable, bool)
    marked = unreliable if unusable is None else unreliable | np.asarray(unusable, bool)
    for mask, colour, alpha in ((~marked, (0.1, 0.85, 0.2), reliable_strength),
                                (unusable, (0.15, 0.35, 1.0), strength),
                                (unreliable, (1.0, 0.1, 0.1), strength)):
        if mask is None or alpha == 0:
            continue
        mask = np.asarray(mask, bool)
        out[mask] = (1 - alpha) * out[mask] + alpha * np.asarray(colour, np.float32)
    return round_to_uint8(out * 255.0)
