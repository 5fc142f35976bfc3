"""Camera motion of rain clips: measure it, warp only when it matters, know the valid region.

The background estimate of §3 (Eqs. 2-4, :mod:`spanetlib.pipeline.background`) needs every pixel to
show the same scene point in every frame. Phone clips move (hand-held shake, slow pans,
rolling shutter) and change exposure, so :func:`measure_motion` measures, for every frame ``i``,
the transform ``motion[i]`` (3 x 3, homogeneous) that maps the pixel coordinates of a
*reference frame* to frame ``i``'s (pixel centres are integers, as in OpenCV):
frame ``i`` sampled at ``motion[i] @ (x, y, 1)`` shows what the reference frame shows at
``(x, y)``. It also measures each frame's exposure gain ``frame_i ~ gain_i * reference``.

How the motion is measured (all on luminance copies whose longer side is at most
``max_side`` pixels; the transforms are scaled back to full resolution):

1. **Rain suppression.** Rain streaks are thin, bright and move every frame. A white top-hat
   with a horizontal line element (wider than a streak) finds them; those pixels are left out
   of every fit, and the coarse step works on the morphological opening (the frame without
   its thin bright structures).
   **Overlays** (logos, timestamps, subtitles, watermarks: drawn on the frame, not the
   scene) are left out the same way when the camera moves: over the template's frames, in
   frame coordinates, textured pixels whose lower levels hardly change are fixed to the
   frame (:func:`_fixed_to_frame`). Strong graphics also pull the coarse step towards no
   motion, so it is measured again with them filled in, and that is kept where it explains
   more of the frame (:func:`_scene_moved_under`).
2. **Coarse translation.** Phase correlation (Hann window) of every opened frame against the
   opened reference frame, or no shift where that matches the reference's textured pixels
   better: the peak follows whatever dominates the spectrum, a bright light crossing a dim
   scene included (:func:`_coarse_shift`).
3. **Robust temporal reference.** The coarsely aligned frames (at most ``_REFERENCE_FRAMES``,
   spread over the clip) give a per-pixel low percentile (35 %): rain, which only brightens,
   and short-lived objects drop out, the scene's texture stays.
4. **Refinement.** Robust Gauss-Newton registration of every frame to that template over its
   ``_MAX_POINTS`` strongest-gradient samples, on a two-level pyramid: the frame is sampled
   with cubic B-splines (OpenCV's remap rounds positions to 1/32 pixel and its Keys cubic
   pulls sub-pixel shifts towards whole pixels by up to 0.04 px; B-splines do not), the
   residual gets Tukey weights and samples brighter than 2.5 sigma (rain) weight 0, a gain
   and offset are fitted along. The motion model is chosen on 10 frames spread over the clip:
   Euclidean (rotation) over translation when it moves some frame corner by more than
   ``min_motion_px`` and lowers the residual in a fifth of them; a homography over Euclidean
   when it lowers the residual by 5 % besides (rolling shutter, perspective). The template's
   frames are then fitted and the template rebuilt from that motion; every frame is fitted
   to that sharper template as it streams past (the Gauss-Newton loop runs in numba), so
   memory does not grow with the clip: only the template's and model's frames are held.
5. **Exposure.** Per frame, a gain by quantile regression (20 %: rain only brightens) over
   an even grid of template samples. A change that is not a global gain is no exposure
   change and keeps gain 1: a fit with an offset needing more than 2 levels (a veil of
   rain) or a quarter of the cells of a 4 x 4 grid off the fit by 4 levels (a light in one
   region: a scene change).
6. **Anchoring.** Transforms are re-expressed relative to the reference frame (which
   therefore has the identity exactly), exposures relative to the frame of median
   brightness (gain 1: mapping frames to an extreme one would clip them).
7. **Misfits.** A fit whose residual is several times the lower quartile of the clip's
   (``_MISFIT_RATIO``) ended in a wrong minimum: the frame is reported unregistered.

On the synthetic clips of :func:`spanetlib.synthesis.rain.make_rain_clip` (rain, noise) the
motion is within 0.02 px (mean) of the truth at 360 x 640 and 0.03 px at 120 x 160
(``benchmarks/bench_clips.py``, ``tests/test_alignment.py``).

:func:`align_frames` then applies a named :class:`AlignMode`: ``"off"`` measures only,
``"on"`` warps (and exposure-corrects) every frame, ``"auto"`` only the frames whose
measured motion exceeds ``min_motion_px`` anywhere in the frame (or whose exposure differs by
more than ``min_exposure_levels``), so a static clip stays bit-identical. Warps use cubic
B-splines (:mod:`spanetlib.pipeline.resample`); samples are clamped to the range of the four
nearest source pixels, so the warp adds no ringing next to bright streaks. The valid region
is the set of reference pixels that every warped frame covers (sample points on or inside the
frame's outermost pixel centres), returned as a mask and as a large axis-parallel crop box
inside it.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import cv2
import numpy as np

from spanetlib.io.checks import check_frames
from spanetlib.io.errors import InputError
from spanetlib.io.files import round_to_uint8
from spanetlib.io.pools import ordered_map, worker_threads
from spanetlib.io.video import FrameSource
from spanetlib.pipeline import resample
from spanetlib.pipeline.lazy_jit import compile_module, lazy_njit, on_numba
from spanetlib.pipeline.resample import (
    INTER_BSPLINE,
    bspline_coefficients,
    bspline_sample,
    warp_frame,
)

__all__ = [
    "ALIGN_MODES",
    "AlignMode",
    "Alignment",
    "MOTION_MODELS",
    "Motion",
    "WorkingLuma",
    "align_frame",
    "align_frames",
    "alignment_plan",
    "common_footprint",
    "crop_box",
    "footprint_mask",
    "get_align_mode",
    "measure_motion",
    "measured_or_checked",
    "motion_displacement",
    "valid_region",
    "working_luma",
    "working_scale",
    "working_shape",
]

MOTION_MODELS = ("translation", "euclidean", "homography")
"""Motion models from the simplest; ``measure_motion(models=...)`` takes a prefix of them."""

_REFERENCE_FRAMES = 31  # most frames the temporal reference is built from
_REFERENCE_PERCENTILE = 35.0  # low, because rain only brightens
_MODEL_FRAMES = 10  # frames the motion model is chosen on
_MAX_POINTS = 20000  # template samples per fit (the stronger gradients, spread evenly)
_GRADIENT_PERCENTILE = 40.0  # samples above this gradient percentile are used
_EXPOSURE_QUANTILE = 0.2  # the exposure fit follows this quantile of the residuals
_FIXED_MIN_GRADIENT = 4.0  # levels per pixel: a pixel with texture to register on
_FIXED_SPREAD = 0.2  # fixed to the frame: its levels spread less than this times its gradient
_FIXED_MAX_SHARE = 0.5  # more of the textured pixels fixed than this: a camera that stayed
_FIXED_DENSITY = 0.5  # share of fixed among the textured pixels around a fixed one
_FIXED_DENSITY_BOX = 9  # working-scale pixels: the box that share is taken over
_FIXED_MIN_SHIFT = 1.0  # working-scale pixels of coarse shift below which the camera stayed
_OVERLAY_MAX_SHARE = 0.25  # a "fixed" region larger than this share of the frame is no overlay
_OVERLAY_MIN_PART = 0.005  # parts of the region smaller than this share of the frame: specks
_MASKED_GAIN = 0.95  # shifts without the fixed pixels must lower the frame's residual to this
_VEIL_LEVELS = 2.0  # an exposure fit needing a larger offset than this reads a veil
_REGIONAL_LEVELS = 4.0  # a grid cell this far off the exposure fit changed on its own
_HOMOGRAPHY_GAIN = 0.95  # a homography must lower the residual to 95 % of the Euclidean one
# A fit whose residual exceeds this multiple of the lower quartile of the clip's fit
# residuals, plus _MISFIT_LEVELS, ended in a wrong minimum: registered frames stayed within
# 2.4x of it on every generated and real clip measured (3.0x where no frame registers: a
# camera in a moving bus), fits started at a moving object's shift ended at 12-18x. The
# quartile, not the median: such fits can be most of a short clip.
_MISFIT_RATIO = 4.0
_MISFIT_LEVELS = 2.0
_SHIFT_SAMPLE_STEP = 2  # the coarse shift's check against none samples every 2nd row and column


@dataclass(frozen=True)
class AlignMode:
    """One named way of aligning a clip (see :data:`ALIGN_MODES`).

    Attributes:
        name: the mode's name (a key of :data:`ALIGN_MODES`).
        warp: ``"never"`` (measure only: no frame is changed), ``"moved"`` (warp the frames
            that moved by more than ``min_motion_px``) or ``"always"`` (every frame but the
            reference).
        min_motion_px: a frame moved when some point of it is displaced by more than this
            many pixels (full resolution); also the smallest displacement for which a richer
            motion model is used.
        photometric: map each frame whose exposure differs (see ``min_exposure_levels``) to
            the exposure reference's (``Motion.exposure_reference``).
        min_exposure_levels: a frame's exposure differs when ``gain x + offset`` departs from
            ``x`` by more than this many levels (0..255) over the reference's range of
            levels (a rain veil that varies from frame to frame reads as 1-3 levels).
        interpolation: OpenCV interpolation flag of the warp.
        dering: clamp warped samples to the range of the 2 x 2 nearest source pixels.
        description: one line for reports.
    """

    name: str
    warp: str
    min_motion_px: float = 0.1
    photometric: bool = True
    min_exposure_levels: float = 3.0
    interpolation: int = INTER_BSPLINE
    dering: bool = True
    description: str = ""

    def __post_init__(self) -> None:
        if self.warp not in ("never", "moved", "always"):
            raise ValueError(f"AlignMode.warp: expected 'never', 'moved' or 'always', got "
                             f"{self.warp!r}")
        if not self.min_motion_px > 0 or not self.min_exposure_levels > 0:
            raise ValueError(f"AlignMode: expected min_motion_px > 0 and min_exposure_levels > "
                             f"0, got {self.min_motion_px!r}, {self.min_exposure_levels!r}")


ALIGN_MODES: dict[str, AlignMode] = {
    "auto": AlignMode("auto", warp="moved",
                      description="warp only frames that moved (> 0.1 px) or changed exposure"),
    "on": AlignMode("on", warp="always", description="warp every frame to the reference"),
    "off": AlignMode("off", warp="never", description="measure and report, never warp"),
}
"""Alignment modes by name: ``auto`` (the default), ``on``, ``off``."""


def get_align_mode(mode: str | AlignMode) -> AlignMode:
    """Return the :class:`AlignMode` named ``mode`` (instances pass through).

    Raises:
        ValueError: unknown name.
    """
    if isinstance(mode, AlignMode):
        return mode
    if mode not in ALIGN_MODES:
        raise ValueError(f"unknown align mode {mode!r}; expected one of {tuple(ALIGN_MODES)}")
    return ALIGN_MODES[mode]


@dataclass(frozen=True)
class Motion:
    """Measured camera motion and exposure of every frame, relative to reference frames.

    Attributes:
        reference: index of the reference frame (identity transform).
        matrices: N x 3 x 3 float64, reference pixel coordinates -> frame ``i``'s.
        model: the motion model used (one of :data:`MOTION_MODELS`).
        gain: N float64 exposure gain: ``frame_i ~ gain_i * reference + offset_i`` (the
            exposure reference, see ``exposure_reference``).
        offset: N float64 exposure offset, levels (0..255 scale).
        residual: N float64 registration residual: RMS luminance difference (levels) between
            the registered frame and the temporal reference over the pixels the fit used
            (noise, compression and what the model cannot explain); NaN where not measured.
        ok: N bool, False where the registration failed (no fit, or a fit far worse than the
            clip's typical one: a wrong minimum); the frame should not be used.
        shape: ``(H, W)`` of the frames.
        levels: ``(low, high)``, the 2nd and 98th percentiles of the reference frame's
            luminance: the range over which exposure changes are judged.
        exposure_reference: the frame whose exposure is the reference's (gain 1, offset 0):
            the one of median brightness, so that few frames clip when mapped to it
            (``None``: the reference frame).
        overlay: H x W bool, in frame coordinates: the region of graphics fixed to the frame
            (logos, timestamps, subtitle strips, watermarks) that the registration left out,
            their enclosed parts filled; ``None`` where none was found (or the camera stayed).
    """

    reference: int
    matrices: np.ndarray
    model: str
    gain: np.ndarray
    offset: np.ndarray
    residual: np.ndarray
    ok: np.ndarray
    shape: tuple[int, int]
    levels: tuple[float, float] = (0.0, 255.0)
    exposure_reference: int | None = None
    overlay: np.ndarray | None = None

    @classmethod
    def from_matrices(cls, matrices: np.ndarray, shape: tuple[int, int], reference: int,
                      gain: np.ndarray | None = None, offset: np.ndarray | None = None,
                      model: str = "homography") -> Motion:
        """A :class:`Motion` from known transforms (e.g. a synthetic clip's truth).

        Args:
            matrices: N x 3 x 3 (or N x 2 x 3) reference -> frame transforms.
            shape: ``(H, W)`` of the frames.
            reference: the reference frame's index.
            gain: N exposure gains (default 1).
            offset: N exposure offsets in levels (default 0).
            model: the model name to record.
        """
        mats = np.asarray(matrices, np.float64)
        if mats.ndim != 3 or mats.shape[1:] not in ((3, 3), (2, 3)):
            raise ValueError(f"matrices: expected N x 3 x 3 or N x 2 x 3, got {mats.shape}")
        if mats.shape[1] == 2:
            mats = np.concatenate([mats, np.tile([[[0.0, 0.0, 1.0]]], (len(mats), 1, 1))], 1)
        n = len(mats)
        gain = np.ones(n) if gain is None else np.asarray(gain, np.float64)
        offset = np.zeros(n) if offset is None else np.asarray(offset, np.float64)
        return cls(reference=int(reference), matrices=mats, model=model, gain=gain,
                   offset=offset, residual=np.full(n, np.nan), ok=np.ones(n, bool),
                   shape=(int(shape[0]), int(shape[1])))

    @property
    def displacement(self) -> np.ndarray:
        """N float64: largest displacement (pixels) of any frame corner.

        See :func:`motion_displacement`.
        """
        return motion_displacement(self.matrices, self.shape)

    @property
    def exposure_change(self) -> np.ndarray:
        """N float64: largest ``|gain x + offset - x|`` (levels) over the reference's levels.

        ``x`` runs over ``levels`` (the 2nd to 98th percentile of the reference's luminance).
        """
        lo, hi = self.levels
        return np.maximum(np.abs((self.gain - 1.0) * lo + self.offset),
                          np.abs((self.gain - 1.0) * hi + self.offset))


@dataclass
class Alignment:
    """The result of :func:`align_frames`.

    Attributes:
        frames: N x H x W x 3 uint8 frames in the reference's coordinates and exposure (the
            input array itself when no frame changed).
        motion: the measured (or given) :class:`Motion`.
        mode: the :class:`AlignMode` applied.
        warped: N bool, the frames that were resampled into the reference's coordinates.
        exposed: N bool, the frames whose exposure was mapped to the reference's.
        valid: H x W bool, reference pixels that every warped frame covers.
        crop: ``(y0, y1, x0, x1)``: the largest axis-parallel box found inside ``valid``
            (half-open ranges).
        moved: N bool, the frames that moved more than ``mode.min_motion_px`` (whether or not
            the mode warped them).
    """

    frames: np.ndarray
    motion: Motion
    mode: AlignMode
    warped: np.ndarray
    exposed: np.ndarray
    valid: np.ndarray
    crop: tuple[int, int, int, int]
    moved: np.ndarray


# --------------------------------------------------------------------------------------------
# Geometry helpers
# --------------------------------------------------------------------------------------------


def _corners(shape: tuple[int, int]) -> np.ndarray:
    h, w = shape
    return np.array([[0.0, w - 1.0, 0.0, w - 1.0],
                     [0.0, 0.0, h - 1.0, h - 1.0],
                     [1.0, 1.0, 1.0, 1.0]])


def _apply(matrices: np.ndarray, points: np.ndarray) -> np.ndarray:
    """... x 3 x 3 transforms applied to 3 x P homogeneous points -> ... x 2 x P."""
    out = matrices @ points
    return out[..., :2, :] / out[..., 2:3, :]


def motion_displacement(matrices: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Largest displacement (pixels) of a frame's four corners under each transform.

    For translations, Euclidean motions and homographies without strong perspective this
    is the largest displacement of any pixel.

    Args:
        matrices: N x 3 x 3 transforms.
        shape: ``(H, W)``.

    Returns:
        N float64.
    """
    pts = _corners(shape)
    moved = _apply(np.asarray(matrices, np.float64), pts)
    return np.sqrt(((moved - pts[:2]) ** 2).sum(axis=-2)).max(axis=-1)


def _scale_matrix(s: float) -> np.ndarray:
    """Full-resolution pixel coordinates -> coordinates after an area resize by factor s."""
    off = 0.5 * s - 0.5
    return np.array([[s, 0.0, off], [0.0, s, off], [0.0, 0.0, 1.0]])


_FOOTPRINT_CHUNK = 128  # transforms per pass of common_footprint


def footprint_mask(matrix: np.ndarray, shape: tuple[int, int], inset: float = 0.0
                   ) -> np.ndarray:
    """Reference pixels whose sample point lies inside the frame's outermost pixel centres.

    Args:
        matrix: 3 x 3 reference -> frame transform.
        shape: ``(H, W)`` of reference and frame.
        inset: distance the sample point must keep from the outermost pixel centres (0:
            on or inside them).

    Returns:
        H x W bool.
    """
    return common_footprint(np.asarray(matrix, np.float64)[None], shape, inset)


def common_footprint(matrices: np.ndarray, shape: tuple[int, int], inset: float = 0.0
                     ) -> np.ndarray:
    """Reference pixels inside every frame's :func:`footprint_mask`.

    Where each transform's denominator stays positive over the image (every registered
    frame), each bound ``inset <= u <= w - 1 - inset`` (and the same for ``v``), times the
    denominator, is linear in ``x`` along a row: an interval per row and transform, so the
    work grows with rows times transforms, not pixels times transforms.

    Args:
        matrices: K x 3 x 3 reference -> frame transforms (K >= 1).
        shape: ``(H, W)`` of reference and frames.
        inset: as in :func:`footprint_mask`.

    Returns:
        H x W bool.
    """
    h, w = shape
    mats = np.asarray(matrices, np.float64)
    xs = np.arange(w, dtype=np.float64)
    ys = np.arange(h, dtype=np.float64)
    # The denominator is linear: its extremes over the image lie at the corners.
    den_corners = (mats[:, 2, 0, None] * np.array([0.0, w - 1.0, 0.0, w - 1.0])
                   + mats[:, 2, 1, None] * np.array([0.0, 0.0, h - 1.0, h - 1.0])
                   + mats[:, 2, 2, None])
    if den_corners.min() <= 1e-6:  # a horizon inside the image: test every pixel
        valid = np.ones((h, w), bool)
        for m in mats:
            den = m[2, 0] * xs + m[2, 1] * ys[:, None] + m[2, 2]
            with np.errstate(divide="ignore", invalid="ignore"):
                u = (m[0, 0] * xs + m[0, 1] * ys[:, None] + m[0, 2]) / den
                v = (m[1, 0] * xs + m[1, 1] * ys[:, None] + m[1, 2]) / den
            valid &= (u >= inset) & (u <= w - 1 - inset) & (v >= inset) & (v <= h - 1 - inset)
        return valid
    lo = np.zeros(h)
    hi = np.full(h, w - 1.0)
    # In chunks of transforms: the work arrays stay a few MB for a clip of thousands of frames.
    for first in range(0, len(mats), _FOOTPRINT_CHUNK):
        part = mats[first:first + _FOOTPRINT_CHUNK]
        den_a = part[:, 2, 0][:, None]
        den_rest = part[:, 2, 1][:, None] * ys[None] + part[:, 2, 2][:, None]
        for row, size in ((0, w), (1, h)):
            num_a = part[:, row, 0][:, None]
            num_rest = part[:, row, 1][:, None] * ys[None] + part[:, row, 2][:, None]
            # num / den >= bound <=> (num_a - bound den_a) x + (num_rest - bound den_rest) >= 0;
            # num / den <= bound: the same with both signs turned.
            for bound, sign in ((inset, 1.0), (size - 1.0 - inset, -1.0)):
                a = sign * (num_a - bound * den_a)
                rest = sign * (num_rest - bound * den_rest)
                with np.errstate(divide="ignore", invalid="ignore"):
                    cut = -rest / a
                flat = np.abs(a) < 1e-12
                holds = rest >= 0.0  # a = 0: the bound holds on the whole row or nowhere
                lower = np.where(flat, np.where(holds, -np.inf, np.inf),
                                 np.where(a > 0, cut, -np.inf))
                upper = np.where(flat, np.where(holds, np.inf, -np.inf),
                                 np.where(a < 0, cut, np.inf))
                lo = np.maximum(lo, lower.max(axis=0))
                hi = np.minimum(hi, upper.min(axis=0))
    return (xs[None] >= lo[:, None] - 1e-9) & (xs[None] <= hi[:, None] + 1e-9)


def crop_box(mask: np.ndarray) -> tuple[int, int, int, int]:
    """A large axis-parallel box inside a (convex) mask: ``(y0, y1, x0, x1)``, half-open.

    Starts from the mask's bounding box and drops, one line at a time, the border line with
    the most pixels outside the mask, until every pixel inside is in the mask. Exact for
    boxes; close to the largest box for the convex regions that frame footprints intersect to.

    Args:
        mask: H x W bool.

    Returns:
        The box; ``(0, 0, 0, 0)`` for an empty mask.
    """
    mask = np.asarray(mask, bool)
    rows = np.flatnonzero(mask.any(axis=1))
    cols = np.flatnonzero(mask.any(axis=0))
    if rows.size == 0:
        return (0, 0, 0, 0)
    y0, y1, x0, x1 = int(rows[0]), int(rows[-1]) + 1, int(cols[0]), int(cols[-1]) + 1
    bad = (~mask).astype(np.int64)
    sat = np.zeros((bad.shape[0] + 1, bad.shape[1] + 1), np.int64)
    sat[1:, 1:] = bad.cumsum(0).cumsum(1)

    def count(a: int, b: int, c: int, d: int) -> int:
        return int(sat[b, d] - sat[a, d] - sat[b, c] + sat[a, c])

    while y1 > y0 and x1 > x0 and count(y0, y1, x0, x1) > 0:
        sides = (count(y0, y0 + 1, x0, x1) / (x1 - x0), count(y1 - 1, y1, x0, x1) / (x1 - x0),
                 count(y0, y1, x0, x0 + 1) / (y1 - y0), count(y0, y1, x1 - 1, x1) / (y1 - y0))
        worst = int(np.argmax(sides))
        if worst == 0:
            y0 += 1
        elif worst == 1:
            y1 -= 1
        elif worst == 2:
            x0 += 1
        else:
            x1 -= 1
    if y1 <= y0 or x1 <= x0:
        return (0, 0, 0, 0)
    return (y0, y1, x0, x1)


# --------------------------------------------------------------------------------------------
# Measurement
# --------------------------------------------------------------------------------------------


@dataclass
class _Frame:
    """Working copies of one frame: luminance pyramid, gradients, rain masks, opening."""

    levels: list[np.ndarray]  # float32 luminance 0..255: working scale, then half of it
    coeffs: list[np.ndarray]  # their B-spline coefficients (H x W x 1)
    clear: list[np.ndarray]  # uint8 per level, 255 = no rain
    opened: np.ndarray  # working scale, thin bright structures removed (coarse step)


@dataclass
class _Points:
    """Template samples one level of the fit uses: coordinates, values, gradients."""

    x: np.ndarray
    y: np.ndarray
    value: np.ndarray
    gx: np.ndarray
    gy: np.ndarray


def _gradients(image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    return (cv2.Sobel(image, cv2.CV_32F, 1, 0, ksize=1, scale=0.5),
            cv2.Sobel(image, cv2.CV_32F, 0, 1, ksize=1, scale=0.5))


def _median_level(levels: np.ndarray) -> float:
    """``np.median`` of an array of whole levels 0..255, from their histogram."""
    counts = np.bincount(levels.astype(np.uint8).ravel(), minlength=256).cumsum()
    n = int(counts[-1])
    lo = int(np.searchsorted(counts, (n - 1) // 2, side="right"))
    hi = int(np.searchsorted(counts, n // 2, side="right"))
    return (lo + hi) / 2.0


def working_scale(shape: tuple[int, int], max_side: int) -> float:
    """The scale :func:`measure_motion` registers frames of ``shape`` at (side <= max_side)."""
    return min(1.0, max_side / max(shape))


def working_luma(frame: np.ndarray, scale: float) -> np.ndarray:
    """A frame's uint8 luminance at the registration's working scale (area reduction).

    Args:
        frame: H x W x 3 uint8 RGB.
        scale: :func:`working_scale` of the clip.

    Returns:
        h x w uint8, what :func:`measure_motion` registers.
    """
    # The colour image is reduced first: luminance rounded at full size before the reduction
    # measured worse (4K hand-held clip: 0.061 px motion error against 0.047 px).
    small = frame if scale == 1.0 else cv2.resize(
        frame, working_shape(frame.shape[:2], scale)[::-1], interpolation=cv2.INTER_AREA)
    return cv2.cvtColor(small, cv2.COLOR_RGB2GRAY)


def working_shape(shape: tuple[int, int], scale: float) -> tuple[int, int]:
    """``(h, w)`` of :func:`working_luma` for frames of ``shape``."""
    h, w = shape
    return (h, w) if scale == 1.0 else (max(8, round(h * scale)), max(8, round(w * scale)))


@dataclass(frozen=True)
class WorkingLuma:
    """Every frame of a clip as :func:`working_luma`, for :func:`measure_motion`.

    A clip decoded once can be registered from these (a few percent of its size at 1080p)
    instead of being decoded again.

    Attributes:
        frames: N x h x w uint8.
        shape: ``(H, W)`` of the full-size frames.
        max_side: the ``max_side`` they were reduced for (:func:`working_scale`).
        source: what they came from, for messages.
    """

    frames: np.ndarray
    shape: tuple[int, int]
    max_side: int
    source: str

    def __len__(self) -> int:
        return len(self.frames)

    def __iter__(self) -> Iterator[np.ndarray]:
        return iter(self.frames)

    def iter_at(self, indices: np.ndarray) -> Iterator[tuple[int, np.ndarray]]:
        """``(index, luma)`` for the frames at ``indices``, in order."""
        for i in sorted({int(i) for i in indices}):
            yield i, self.frames[i]


def _prepare(frame: np.ndarray, scale: float, fixed: np.ndarray | None = None) -> _Frame:
    """Working copies of an RGB frame, or of its :func:`working_luma` (2-D)."""
    gray = (frame if frame.ndim == 2 else working_luma(frame, scale)).astype(np.float32)
    element = np.ones((1, max(3, int(round(5 * scale)) | 1)), np.uint8)  # wider than a streak
    opened = cv2.morphologyEx(gray, cv2.MORPH_OPEN, element)
    tophat = gray - opened
    # Noise alone gives a small positive top-hat; streaks stand far above its typical value.
    # (Whole levels from 0 to 255: the median from their histogram.)
    thr = 4.0 * _median_level(tophat) + 4.0
    rain = cv2.dilate((tophat > thr).astype(np.uint8), np.ones((3, 3), np.uint8))
    clear = np.where(rain > 0, 0, 255).astype(np.uint8)
    if fixed is not None:
        clear[fixed] = 0
    half = cv2.pyrDown(gray)
    half_clear = cv2.resize(clear, half.shape[::-1], interpolation=cv2.INTER_AREA)
    return _Frame(levels=[gray, half],
                  coeffs=[bspline_coefficients(gray), bspline_coefficients(half)],
                  clear=[clear, np.where(half_clear > 250, 255, 0).astype(np.uint8)],
                  opened=opened)


def _fixed_to_frame(grays: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray] | None:
    """Textured pixels that stay put in the frame while the scene moves: overlays.

    Logos, timestamps, subtitles and watermarks are drawn on the frame, not the scene: a fit
    that counts them pulls the motion towards none. Over frames spread over the clip (frame
    coordinates), such a pixel's lower levels (rain only brightens) hardly change although
    its gradient is strong; a scene pixel's change with the camera by about its gradient
    times the motion. When most textured pixels are fixed (a camera that stayed), nothing is.

    Args:
        grays: working-scale luminance of the frames (at least 3).

    Returns:
        ``(fixed, dense)``: H x W bool, both widened by 2 pixels: every fixed pixel (what
        :func:`_overlay_region` outlines), and those among many fixed neighbours (graphics
        rather than scattered scene pixels), or None when nothing (or most of it) is fixed.
    """
    if len(grays) < 3:
        return None
    stack = np.stack(grays)
    low, middle = np.percentile(stack, [10.0, 50.0], axis=0)
    grad = np.median(np.stack([np.hypot(*_gradients(g)) for g in grays]), axis=0)
    textured = grad >= _FIXED_MIN_GRADIENT
    if textured.sum() < 64:
        return None
    fixed = textured & (middle - low <= _FIXED_SPREAD * grad)
    if fixed.sum() >= _FIXED_MAX_SHARE * textured.sum() or not fixed.any():
        return None
    # Graphics are dense: most textured pixels around a letter or a logo's edge are fixed.
    # Scene pixels pass the test here and there (an edge along the motion), scattered.
    box = (_FIXED_DENSITY_BOX, _FIXED_DENSITY_BOX)
    density = cv2.boxFilter(fixed.astype(np.float32), -1, box, normalize=False) \
        / np.maximum(1.0, cv2.boxFilter(textured.astype(np.float32), -1, box, normalize=False))
    dense = fixed & (density >= _FIXED_DENSITY)
    widen = np.ones((5, 5), np.uint8)
    return (cv2.dilate(fixed.astype(np.uint8), widen) > 0,
            cv2.dilate(dense.astype(np.uint8), widen) > 0)


def _overlay_region(fixed: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """The region of the frame-fixed graphics at full resolution, enclosed parts filled.

    ``fixed`` holds the graphics' textured pixels (text, edges); a subtitle strip's or a
    logo's flat inside is enclosed by them (closing over 1/40 of the width, then the holes
    filled); parts under :data:`_OVERLAY_MIN_PART` of the frame are dropped.
    """
    side = max(3, int(round(fixed.shape[1] / 40.0)) | 1)
    closed = cv2.morphologyEx(fixed.astype(np.uint8), cv2.MORPH_CLOSE,
                              np.ones((side, side), np.uint8))
    h, w = closed.shape
    outside = np.zeros((h + 4, w + 4), np.uint8)
    flood = cv2.copyMakeBorder(closed, 1, 1, 1, 1, cv2.BORDER_CONSTANT, value=0)
    cv2.floodFill(flood, outside, (0, 0), 1)  # reaches every pixel not enclosed
    region = ((flood[1:-1, 1:-1] == 0) | (closed > 0)).astype(np.uint8)
    # Scattered specks (scene texture that happened to stay) are no graphics.
    count, labels, stats, _ = cv2.connectedComponentsWithStats(region, connectivity=8)
    big = stats[:, cv2.CC_STAT_AREA] >= _OVERLAY_MIN_PART * h * w
    big[0] = False
    region = big[labels]
    return cv2.resize(region.astype(np.uint8), (shape[1], shape[0]),
                      interpolation=cv2.INTER_NEAREST) > 0


def _textured(image: np.ndarray, step: int = 1) -> np.ndarray:
    """Pixels with texture to register on (gradient of at least ``_FIXED_MIN_GRADIENT``).

    ``step`` > 1 keeps only those on every ``step``-th row and column (a sample for a median).
    """
    textured = np.hypot(*_gradients(image)) >= _FIXED_MIN_GRADIENT
    if step > 1:
        grid = np.zeros_like(textured)
        grid[::step, ::step] = True
        textured &= grid
    return textured


def _coarse_shift(ref: np.ndarray, moving: np.ndarray, window: np.ndarray,
                  textured: np.ndarray) -> tuple[float, float]:
    """The shift of ``moving`` against ``ref``: phase correlation's peak, or none.

    The peak follows whatever dominates the spectrum, and a bright object moving over a
    still scene can (a lamp crossing a dim street): where no shift at all matches the
    ``textured`` pixels of ``ref`` better (:func:`_shift_residual`), the camera stayed.
    """
    # Copies: OpenCV's phaseCorrelate may apply the window in place.
    (sx, sy), _ = cv2.phaseCorrelate(ref.copy(), moving.copy(), window)
    if max(abs(sx), abs(sy)) >= _FIXED_MIN_SHIFT / 2:
        none = np.zeros(2)
        if _shift_residual(ref, moving, none, textured) \
                < _shift_residual(ref, moving, np.array([sx, sy]), textured):
            return 0.0, 0.0
    return sx, sy


def _fill_fixed(opened: np.ndarray, fixed: np.ndarray) -> np.ndarray:
    """``opened`` with the frame-fixed pixels replaced by their smooth surroundings.

    Phase correlation sees graphics fixed to the frame as a peak at zero shift, strong enough
    to win over a moving scene; filled in (a normalized Gaussian average of the other
    pixels), they leave no sharp structure that stays put.
    """
    sigma = max(2.0, opened.shape[1] / 80.0)
    keep = (~fixed).astype(np.float32)
    total = cv2.GaussianBlur(opened * keep, (0, 0), sigma)
    weight = cv2.GaussianBlur(keep, (0, 0), sigma)
    smooth = total / np.maximum(weight, 1e-3)
    return np.where(fixed, smooth, opened).astype(np.float32)


def _shift_residual(ref: np.ndarray, moving: np.ndarray, shift: np.ndarray,
                    textured: np.ndarray) -> float:
    """How far ``moving`` shifted by ``shift`` is from ``ref``: a median over ``textured``.

    The median absolute difference, ``moving`` sampled at ``x + shift`` (bilinear; pixels
    whose sample falls outside are left out).
    """
    h, w = ref.shape
    m = _translation(*shift)[:2].astype(np.float32)
    flags = cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP
    warped = cv2.warpAffine(moving, m, (w, h), flags=flags, borderValue=-1.0)
    inside = textured & (warped >= 0)
    if inside.sum() < 64:
        return float("inf")
    return float(np.median(np.abs(warped[inside] - ref[inside])))


def _scene_moved_under(work: dict, reference: int, ids: list[int], plain: dict,
                       masked: dict) -> bool:
    """Whether the scene moved under graphics fixed to the frame.

    True when the shifts measured without the frame-fixed pixels (``masked``) explain the
    frames better than those measured with them (``plain``).

    The test counts every textured pixel, fixed or not, so it picks the hypothesis that
    holds for most of the frame: graphics are a small part of it, while a still scene with
    moving parts (foliage, traffic) whose still parts look "fixed" keeps its plain shifts.
    """
    ref = work[reference].opened
    textured = _textured(ref)
    votes = 0
    counted = 0
    for i in ids:
        if i == reference:
            continue
        a, b = plain[i][:2, 2], masked[i][:2, 2]
        if np.abs(a - b).max() < _FIXED_MIN_SHIFT / 2:
            continue  # the same shift either way: no evidence
        counted += 1
        moving = work[i].opened
        votes += _shift_residual(ref, moving, b, textured) \
            < _MASKED_GAIN * _shift_residual(ref, moving, a, textured)
    return counted > 0 and votes > counted / 2


def _translation(sx: float, sy: float) -> np.ndarray:
    return np.array([[1.0, 0.0, sx], [0.0, 1.0, sy], [0.0, 0.0, 1.0]])


def _temporal_reference(work: list[_Frame], mats: np.ndarray, chosen: np.ndarray
                        ) -> tuple[np.ndarray, np.ndarray]:
    """Template: a low temporal percentile of the chosen frames warped by ``mats``.

    Returns it (working scale) with the mask of the pixels all of them cover, away from the
    border.
    """
    h, w = work[0].levels[0].shape
    stack = np.empty((len(chosen), h, w), np.float32)
    for k, i in enumerate(chosen):
        stack[k] = cv2.warpPerspective(work[i].levels[0], mats[i], (w, h),
                                       flags=cv2.INTER_LANCZOS4 | cv2.WARP_INVERSE_MAP,
                                       borderMode=cv2.BORDER_REFLECT_101)
    covered = common_footprint(mats[chosen], (h, w), inset=2.0)
    rank = int(round(_REFERENCE_PERCENTILE / 100.0 * (len(chosen) - 1)))
    ref = np.partition(stack, rank, axis=0)[rank]
    border = 4
    covered[:border] = covered[-border:] = False
    covered[:, :border] = covered[:, -border:] = False
    return ref, covered


def _template_points(template: np.ndarray, covered: np.ndarray) -> list[_Points]:
    """Per level, the template samples with the stronger gradients (at most _MAX_POINTS)."""
    out = []
    image, mask = template, covered
    for level in range(2):
        gx, gy = _gradients(image)
        mag = np.hypot(gx, gy)
        inside = mask & (mag > 0)
        if inside.sum() >= 64:
            inside &= mag >= np.percentile(mag[inside], _GRADIENT_PERCENTILE)
        ys, xs = np.nonzero(inside)
        cap = _MAX_POINTS >> (2 * level)
        if ys.size > cap:
            keep = np.linspace(0, ys.size - 1, cap).astype(np.int64)
            ys, xs = ys[keep], xs[keep]
        out.append(_Points(x=xs.astype(np.float64), y=ys.astype(np.float64),
                           value=image[ys, xs].astype(np.float64),
                           gx=gx[ys, xs].astype(np.float64), gy=gy[ys, xs].astype(np.float64)))
        if level == 0:
            image = cv2.pyrDown(image)
            mask = cv2.resize(mask.astype(np.uint8), image.shape[::-1],
                              interpolation=cv2.INTER_NEAREST) > 0
            mask = cv2.erode(mask.astype(np.uint8), np.ones((3, 3), np.uint8)) > 0
    return out


def _exposure_points(template: np.ndarray, covered: np.ndarray) -> _Points:
    """Template samples on an even grid (flat and textured alike) for the exposure fit."""
    ys, xs = np.nonzero(covered & (template > 3.0) & (template < 252.0))
    if ys.size > _MAX_POINTS // 2:
        keep = np.linspace(0, ys.size - 1, _MAX_POINTS // 2).astype(np.int64)
        ys, xs = ys[keep], xs[keep]
    zero = np.zeros(ys.size)
    return _Points(x=xs.astype(np.float64), y=ys.astype(np.float64),
                   value=template[ys, xs].astype(np.float64), gx=zero, gy=zero)


def _exposure(points: _Points, frame: _Frame, matrix: np.ndarray) -> float | None:
    """Exposure gain of ``frame ~ gain T`` (offset 0), by quantile regression (20 %).

    Rain only brightens, so the fit follows the lower part of the residuals (pinball loss,
    solved by iteratively reweighted least squares); streak pixels and clipped values are
    left out. The same bias from noise applies to every frame and cancels in the gains and
    offsets relative to the reference frame. None when the change is not a global gain (a fit
    with an offset needs more than 2 levels of it: a veil of rain; or a quarter of the cells
    of a 4 x 4 grid sit more than 4 levels off the fit: a regional light change): such a
    frame keeps the exposure reference's exposure.
    """
    h, w = frame.clear[0].shape
    pts = _apply(matrix, np.stack([points.x, points.y, np.ones(points.x.size)]))
    mx, my = pts[0], pts[1]
    use = (mx >= 1) & (mx <= w - 2) & (my >= 1) & (my <= h - 2)
    use[use] = frame.clear[0][np.rint(my[use]).astype(np.intp),
                              np.rint(mx[use]).astype(np.intp)] > 0
    x = bspline_sample(frame.coeffs[0], mx[use], my[use])[:, 0].astype(np.float64)
    t = points.value[use]
    ok = (x > 3.0) & (x < 252.0)
    x, t = x[ok], t[ok]
    if x.size < 32:
        return None
    # Exposure is a gain (exposure time and ISO scale the light; after the tone curve a gain
    # still): an offset would mostly read a rain veil (haze-like rain) as exposure.
    gain = _quantile_fit(t[:, None], x)[0]
    # A veil (or flare) adds light: gain below 1 with an offset. If a fit with an offset
    # needs one, the change is not an exposure change.
    _, offset = _quantile_fit(np.stack([t, np.ones_like(t)], axis=1), x)
    if abs(offset) > max(_VEIL_LEVELS, 0.5 * abs(gain - 1.0) * float(np.median(t))):
        return None
    # Global or regional? Per cell of a 4 x 4 grid, the residual's quantile; when more than
    # a quarter of the cells sit off the others, the light changed in a region (a lamp, a
    # cloud's shadow): a scene change, left to the stable periods, not an exposure change.
    r = x - gain * t
    th, tw = frame.clear[0].shape
    cell = (np.minimum(points.y[use][ok] * 4 // th, 3) * 4
            + np.minimum(points.x[use][ok] * 4 // tw, 3)).astype(np.int64)
    levels = np.array([np.quantile(r[cell == k], _EXPOSURE_QUANTILE)
                       for k in range(16) if (cell == k).sum() >= 16])
    if levels.size >= 4 and np.mean(np.abs(levels - np.median(levels)) > _REGIONAL_LEVELS) > 0.25:
        return None
    return float(gain)


def _quantile_fit(design: np.ndarray, x: np.ndarray) -> np.ndarray:
    """Coefficients of ``x ~ design @ c`` at the _EXPOSURE_QUANTILE quantile (pinball loss).

    Iteratively reweighted least squares from the least-squares start.
    """
    coef = np.linalg.lstsq(design, x, rcond=None)[0]
    for _ in range(12):
        r = x - design @ coef
        wgt = np.where(r > 0, _EXPOSURE_QUANTILE, 1.0 - _EXPOSURE_QUANTILE) / np.maximum(
            np.abs(r), 0.25)
        weighted = design * wgt[:, None]
        coef = np.linalg.solve(weighted.T @ design + 1e-9 * np.eye(design.shape[1]),
                               weighted.T @ x)
    return coef


def _step(model: str, m: np.ndarray, dp: np.ndarray) -> np.ndarray:
    m = m.copy()
    if model == "translation":
        m[:2, 2] += dp
    elif model == "euclidean":
        theta = math.atan2(m[1, 0], m[0, 0]) + dp[0]
        c, s = math.cos(theta), math.sin(theta)
        m[:2, :2] = [[c, -s], [s, c]]
        m[:2, 2] += dp[1:]
    else:
        m[0] += dp[0:3]
        m[1] += dp[3:6]
        m[2, :2] += dp[6:8]
    return m


@on_numba
def _compile_resample(numba: object) -> None:
    # The registration kernels call resample's kernels: those must be numba dispatchers first.
    compile_module(resample.__name__)


_N_PARAMS = {"translation": 2, "euclidean": 3, "homography": 8}


@lazy_njit(nogil=True, cache=True)
def _gn_residuals(coeffs, clear, m, xn, yn, t, half, cx, cy, gain, offset, r, usable):
    """Residuals ``frame(M x) - (gain T + offset)`` of every template sample, in place.

    ``usable`` marks the samples inside the frame (1 pixel from its edge) on rain-free
    pixels. Returns their count. The sampled value is rounded to float32 as
    :func:`bspline_sample` returns it.
    """
    h, w = clear.shape
    count = 0
    for k in range(xn.size):
        den = m[2, 0] * xn[k] + m[2, 1] * yn[k] + 1.0
        mx = (m[0, 0] * xn[k] + m[0, 1] * yn[k] + m[0, 2]) / den * half + cx
        my = (m[1, 0] * xn[k] + m[1, 1] * yn[k] + m[1, 2]) / den * half + cy
        ok = mx >= 1 and mx <= w - 2 and my >= 1 and my <= h - 2
        if ok:
            ok = clear[int(np.rint(my)), int(np.rint(mx))] > 0
        usable[k] = ok
        count += ok
        r[k] = np.float32(resample.bspline_point(coeffs, mx, my)) - (gain * t[k] + offset)
    return count


@lazy_njit(nogil=True, cache=True)
def _gn_normal(r, usable, sigma, m, model, xn, yn, tgx, tgy, t, gain, normal, rhs, weighted):
    """Tukey-weighted normal equations ``J^T W J`` and ``J^T W r`` of one Gauss-Newton step.

    Samples brighter than 2.5 sigma (rain) get weight 0. ``model`` indexes
    :data:`MOTION_MODELS`; the parameters are the model's, then gain and offset. Returns
    ``(sum of weights, weighted sum of squared residuals, samples with weight > 0)`` and
    marks those samples in ``weighted``.
    """
    n_par = normal.shape[0]
    normal[:, :] = 0.0
    rhs[:] = 0.0
    jac = np.empty(n_par)
    jx = np.zeros(8)
    jy = np.zeros(8)
    wsum = 0.0
    wr2 = 0.0
    kept = 0
    c, s = m[0, 0], m[1, 0]
    for k in range(r.size):
        weighted[k] = False
        if not usable[k]:
            continue
        z = r[k] / sigma
        if z >= 2.5:
            continue
        a = 1.0 - (z / 4.685) ** 2
        if a <= 0.0:
            continue
        wgt = a * a
        weighted[k] = True
        kept += 1
        x, y = xn[k], yn[k]
        if model == 0:
            jx[0], jx[1] = 1.0, 0.0
            jy[0], jy[1] = 0.0, 1.0
        elif model == 1:
            jx[0], jx[1], jx[2] = -s * x - c * y, 1.0, 0.0
            jy[0], jy[1], jy[2] = c * x - s * y, 0.0, 1.0
        else:
            den = m[2, 0] * x + m[2, 1] * y + 1.0
            u = (m[0, 0] * x + m[0, 1] * y + m[0, 2]) / den
            v = (m[1, 0] * x + m[1, 1] * y + m[1, 2]) / den
            pa, pb, pc = x / den, y / den, 1.0 / den
            jx[0], jx[1], jx[2], jx[3], jx[4], jx[5], jx[6], jx[7] = (
                pa, pb, pc, 0.0, 0.0, 0.0, -u * pa, -u * pb)
            jy[0], jy[1], jy[2], jy[3], jy[4], jy[5], jy[6], jy[7] = (
                0.0, 0.0, 0.0, pa, pb, pc, -v * pa, -v * pb)
        for p in range(n_par - 2):
            jac[p] = gain * (tgx[k] * jx[p] + tgy[k] * jy[p])
        jac[n_par - 2] = -t[k]
        jac[n_par - 1] = -1.0
        for p in range(n_par):
            wp = wgt * jac[p]
            rhs[p] += wp * r[k]
            for q in range(p, n_par):
                normal[p, q] += wp * jac[q]
        wsum += wgt
        wr2 += wgt * r[k] * r[k]
    for p in range(n_par):
        for q in range(p):
            normal[p, q] = normal[q, p]
    return wsum, wr2, kept


def _gauss_newton(points: _Points, frame: _Frame, level: int, init: np.ndarray, model: str,
                  iterations: int, tol: float = 1e-3) -> _Fit:
    """Robust Gauss-Newton registration of one frame to template samples at one level.

    Fits ``frame(M x) = gain T(x) + offset`` over the template samples. The frame is sampled
    with cubic B-splines (no position bias); the Jacobian uses the template's gradients
    (times the gain), chained through the motion model; Tukey weights on the residual, and
    samples brighter than 2.5 sigma (rain) get weight 0. ``init`` and the result are at the
    working scale; parameters live in coordinates centred on the image and scaled by its half
    size (well conditioned for homographies). Stops when no corner moves by more than
    ``tol`` pixels.
    """
    coeffs = frame.coeffs[level]
    clear = frame.clear[level]
    h, w = clear.shape
    lv = np.diag([0.5 ** level, 0.5 ** level, 1.0])
    half = max(h, w) / 2.0
    cx, cy = (w - 1) / 2.0, (h - 1) / 2.0
    norm = np.array([[1.0 / half, 0.0, -cx / half], [0.0, 1.0 / half, -cy / half],
                     [0.0, 0.0, 1.0]])
    to_norm = norm @ lv
    m = to_norm @ init @ np.linalg.inv(to_norm)
    m /= m[2, 2]
    if model != "homography":
        m[2] = (0.0, 0.0, 1.0)
    model_id = MOTION_MODELS.index(model)
    xn, yn = (points.x - cx) / half, (points.y - cy) / half
    t = points.value
    tgx, tgy = points.gx * half, points.gy * half
    n_par = _N_PARAMS[model] + 2
    r = np.empty(t.size)
    usable = np.empty(t.size, np.bool_)
    weighted = np.empty(t.size, np.bool_)
    normal = np.empty((n_par, n_par))
    rhs = np.empty(n_par)
    gain, offset, sigma = 1.0, 0.0, None
    wsum = wr2 = 0.0
    for _ in range(iterations):
        # One pass over the samples (numba): residuals, then the weighted normal equations.
        if _gn_residuals(coeffs, clear, m, xn, yn, t, half, cx, cy, gain, offset, r,
                         usable) < 32:
            return _Fit(init, float("nan"), 1.0, 0.0, False)
        if sigma is None:
            ru = r[usable]
            sigma = 1.4826 * float(np.median(np.abs(ru - np.median(ru)))) + 0.5
        wsum, wr2, kept = _gn_normal(r, usable, sigma, m, model_id, xn, yn, tgx, tgy, t,
                                     gain, normal, rhs, weighted)
        try:
            dp = -np.linalg.solve(normal, rhs)
        except np.linalg.LinAlgError:
            return _Fit(init, float("nan"), 1.0, 0.0, False)
        before = m
        m = _step(model, m, dp[:-2])
        gain += dp[-2]
        offset += dp[-1]
        if kept >= 32:
            sigma = 1.4826 * float(np.median(np.abs(r[weighted]))) + 0.5
        if not np.all(np.isfinite(m)):
            return _Fit(init, float("nan"), 1.0, 0.0, False)
        moved = motion_displacement((np.linalg.inv(before) @ m)[None], (2.0, 2.0))[0] * half
        if moved < tol * 0.5 ** level:
            break
    out = np.linalg.inv(to_norm) @ m @ to_norm
    rms = float(np.sqrt(wr2 / max(wsum, 1e-9)))
    return _Fit(out / out[2, 2], rms, float(gain), float(offset), True)


@dataclass
class _Fit:
    """One frame's registration to the template (working scale)."""

    matrix: np.ndarray
    residual: float
    gain: float
    offset: float
    ok: bool


def _richer_needed(simple: list[_Fit], rich: list[_Fit], model: str, shape: tuple[int, int],
                   min_motion: float) -> bool:
    """Whether the clip needs ``model`` rather than the simpler fits.

    Yes when, in at least a fifth of the frames tried (one at least), the richer fit moves
    some corner by more than ``min_motion`` and lowers the residual (a homography by 5 %).
    """
    factor = _HOMOGRAPHY_GAIN if model == "homography" else 1.0
    votes = 0
    for a, b in zip(simple, rich, strict=True):
        if not (a.ok and b.ok):
            continue
        change = float(motion_displacement((np.linalg.inv(a.matrix) @ b.matrix)[None],
                                           shape)[0])
        votes += change > min_motion and b.residual < a.residual * factor
    return votes >= max(1, int(math.ceil(0.2 * len(simple))))


def measure_motion(frames: np.ndarray | FrameSource | WorkingLuma,
                   reference: int | None = None, *,
                   models: tuple[str, ...] = MOTION_MODELS, max_side: int = 640,
                   min_motion_px: float = 0.1, iterations: int = 30,
                   workers: int | None = None,
                   on_frame: Callable[[int, np.ndarray], None] | None = None) -> Motion:
    """Measure every frame's camera motion and exposure relative to a reference frame.

    See the module docstring for the method: rain-robust (streaks are masked and bright
    residuals ignored; the template is a low temporal percentile), sub-pixel (Gauss-Newton
    with cubic sampling), and it picks the simplest model that explains the motion.

    Memory does not grow with the clip: the template, the model choice and the sharper
    template are made from at most ``_REFERENCE_FRAMES + _MODEL_FRAMES`` frames spread over
    the clip; every frame is then registered as it streams past (a
    :class:`spanetlib.io.video.FrameSource` decodes a file in passes) and only its transform
    and exposure are kept.

    Args:
        frames: N x H x W x 3 uint8 RGB frames (N >= 1), a
            :class:`spanetlib.io.video.FrameSource` (a video file or frame folder), or the
            clip's :class:`WorkingLuma` for ``max_side`` (nothing decoded again).
        reference: the reference frame (default the middle one, ``N // 2``: the shortest
            reach over a pan).
        models: a prefix of :data:`MOTION_MODELS`: the richest model allowed.
        max_side: longer side of the working copies (motion is scaled back).
        min_motion_px: smallest full-resolution displacement for which a richer model is used.
        iterations: most Gauss-Newton iterations per fit and level.
        workers: threads (default: the CPU count, at most 4).
        on_frame: called as ``on_frame(index, frame)`` in the caller's thread for every frame
            of the streaming pass, so a caller can keep the frames it needs without decoding
            the clip again (the frame must not be modified; a working luma when ``frames``
            is a :class:`WorkingLuma`).

    Returns:
        A :class:`Motion`.

    Raises:
        InputError: frames that are not N x H x W x 3 uint8, or a bad reference index.
        ValueError: bad ``models`` or sizes.
    """
    source = frames if isinstance(frames, (FrameSource, WorkingLuma)) \
        else FrameSource(check_frames(frames))
    if isinstance(source, WorkingLuma) and source.max_side != max_side:
        raise ValueError(f"frames: working luma for max_side {source.max_side}, asked to "
                         f"register at {max_side}")
    n = len(source)
    h, w = source.shape
    if reference is None:
        reference = n // 2
    if isinstance(reference, bool) or not isinstance(reference, (int, np.integer)) \
            or not 0 <= reference < n:
        raise InputError(f"reference: expected a frame index in [0, {n}), got {reference!r}")
    reference = int(reference)
    models = tuple(models)
    if not models or models != MOTION_MODELS[:len(models)]:
        raise ValueError(f"models: expected a prefix of {MOTION_MODELS}, got {models}")
    if max_side < 32:
        raise ValueError(f"max_side: expected >= 32, got {max_side}")
    scale = working_scale((h, w), max_side)
    workers = workers or min(4, os.cpu_count() or 1)
    chosen = np.unique(np.linspace(0, n - 1, min(n, _REFERENCE_FRAMES)).round().astype(int))
    trial = np.unique(np.linspace(0, n - 1, min(n, _MODEL_FRAMES)).round().astype(int))
    keep = np.union1d(np.union1d(chosen, trial), [reference])
    with worker_threads(workers) as pool:
        # The few frames the template and the model choice need, prepared once.
        # Streamed: the template's full-size frames are never held together.
        work = dict(ordered_map(pool, lambda item: (item[0], _prepare(item[1], scale)),
                                source.iter_at(keep), 2 * workers))
        if len(work) != len(keep):
            raise InputError(f"{source.name}: only {len(work)} of the {len(keep)} frames "
                             "asked for decoded")
        shape_s = work[reference].levels[0].shape
        window = cv2.createHanningWindow(shape_s[::-1], cv2.CV_32F)
        ref_open = work[reference].opened
        ref_textured = _textured(ref_open, _SHIFT_SAMPLE_STEP)
        coarse = dict(zip(keep.tolist(), pool.map(
            lambda i: _translation(*_coarse_shift(ref_open, work[i].opened, window,
                                                  ref_textured)),
            keep.tolist()), strict=True))
        coarse[reference] = np.eye(3)
        # Overlays fixed to the frame (logos, subtitles) are left out of every fit when the
        # camera moved (a still camera has nothing to tell them from). Strong graphics pull
        # the coarse shifts towards none, so these are measured again without them, and kept
        # where they explain the whole frame better.
        found = _fixed_to_frame([work[int(i)].levels[0] for i in chosen])
        # filled_ref, filled_out: the reference and the mask the coarse shifts are measured
        # with when graphics are filled in (the fits leave out ``fixed``)
        fixed = filled_ref = filled_out = overlay = None
        if found is not None:
            every, dense = found
            filled = _fill_fixed(ref_open, dense)
            filled_textured = _textured(filled, _SHIFT_SAMPLE_STEP)
            masked = coarse if not dense.any() else dict(zip(keep.tolist(), pool.map(
                lambda i: _translation(*_coarse_shift(
                    filled, _fill_fixed(work[i].opened, dense), window, filled_textured)),
                keep.tolist()), strict=True))
            masked[reference] = np.eye(3)
            region = _overlay_region(every, (h, w))
            plausible = region.mean() <= _OVERLAY_MAX_SHARE  # graphics: a small part of it
            if plausible and region.any():
                overlay = region
            moved = max(float(np.abs(m[:2, 2]).max()) for m in coarse.values()) \
                >= _FIXED_MIN_SHIFT
            if _scene_moved_under(work, reference, keep.tolist(), coarse, masked):
                coarse, filled_ref, filled_out = masked, filled, dense
                ref_textured = filled_textured
                fixed = every if plausible else dense
            elif moved and plausible:
                fixed = every
            else:
                overlay = None
        if fixed is not None:
            half_fixed = cv2.resize(fixed.astype(np.uint8), work[reference].levels[1].shape[::-1],
                                    interpolation=cv2.INTER_NEAREST) > 0
            for frame in work.values():
                frame.clear[0][fixed] = 0
                frame.clear[1][half_fixed] = 0

        def template_of(mats: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
            return _temporal_reference([work[int(i)] for i in chosen], np.stack(mats),
                                       np.arange(len(chosen)))

        template, covered = template_of([coarse[int(i)] for i in chosen])
        if fixed is not None:
            covered &= ~fixed
        points = _template_points(template, covered)

        def fit_one(frame: _Frame, init: np.ndarray, model: str, levels: tuple[int, ...],
                    pts: list[_Points], strict: bool = False) -> _Fit:
            # A coarser level only starts the finer one: where it fails (too few samples on
            # a tiny frame), the finer level starts from ``init`` and the finest decides;
            # ``strict`` fails the fit instead (the model choice: no richer model is tried
            # on frames too small for the coarse level).
            fit = _Fit(init, float("nan"), 1.0, 0.0, True)
            for k, level in enumerate(levels):
                step = _gauss_newton(pts[level], frame, level, fit.matrix, model, iterations)
                if step.ok or strict or k == len(levels) - 1:
                    fit = step
                if strict and not fit.ok:
                    break
            return fit

        def fit_kept(ids: np.ndarray, inits: dict, model: str, levels: tuple[int, ...],
                     strict: bool = False) -> list[_Fit]:
            return list(pool.map(lambda i: fit_one(work[int(i)], inits[int(i)], model, levels,
                                                   points, strict), ids))

        # The model: tried on a few frames spread over the clip.
        model = "translation"
        simple = fit_kept(trial, coarse, model, (1, 0), strict=True)
        for richer in models[1:]:
            inits = dict(coarse)
            inits.update({int(i): f.matrix for i, f in zip(trial, simple, strict=True)})
            rich = fit_kept(trial, inits, richer, (0,), strict=True)
            if not _richer_needed(simple, rich, richer, shape_s, min_motion_px * scale):
                break
            simple, model = rich, richer
        # A sharper template from the template frames' refined motion.
        refined = fit_kept(chosen, coarse, model, (1, 0))
        template, covered = template_of([f.matrix for f in refined])
        if fixed is not None:
            covered &= ~fixed
        points = _template_points(template, covered)
        expo_points = _exposure_points(template, covered)
        lo, hi = np.percentile(work[reference].levels[0], [2.0, 98.0])
        work.clear()

        # Every frame, streamed: coarse shift, two-level fit, exposure; only numbers kept.
        def one(frame: np.ndarray) -> tuple[_Fit, float | None]:
            prep = _prepare(frame, scale, fixed)
            if filled_ref is not None:
                init = _translation(*_coarse_shift(filled_ref, _fill_fixed(prep.opened,
                                                                            filled_out),
                                                   window, ref_textured))
            else:
                init = _translation(*_coarse_shift(ref_open, prep.opened, window,
                                                   ref_textured))
            fit = fit_one(prep, init, model, (1, 0), points)
            return fit, _exposure(expo_points, prep, fit.matrix)

        def streamed() -> Iterator[np.ndarray]:
            for i, frame in enumerate(source):
                if on_frame is not None:
                    on_frame(i, frame)
                yield frame

        fits: list[_Fit] = []
        exposure: list[float | None] = []
        for fit, gain in ordered_map(pool, one, streamed(), 2 * workers):
            fits.append(fit)
            exposure.append(gain)
    if len(fits) != n:
        raise InputError(f"{source.name}: {len(fits)} frames decoded, {n} expected")
    mats = np.stack([f.matrix for f in fits])
    # Anchor at the reference frame: x_i = M_i x_T and x_r = M_r x_T give x_i = M_i M_r^-1 x_r.
    anchor = np.linalg.inv(mats[reference])
    rel = mats @ anchor
    rel /= rel[:, 2:3, 2:3]
    to_s = _scale_matrix(scale)
    full = np.linalg.inv(to_s) @ rel @ to_s
    full[reference] = np.eye(3)
    # The exposure anchor: the frame of median brightness (an extreme frame would clip), among
    # those whose change is a global gain; the others keep the anchor's exposure.
    ok = np.array([f.ok for f in fits])
    residual = np.array([f.residual for f in fits])
    if ok.sum() >= 3:
        ok &= residual <= _MISFIT_RATIO * float(np.percentile(residual[ok], 25.0)) \
            + _MISFIT_LEVELS
    measured = np.array([g is not None for g in exposure]) & ok
    gains = np.array([1.0 if g is None else g for g in exposure])
    rel_gain = np.ones(n)
    anchor_frame = None
    if measured.any():
        candidates = np.flatnonzero(measured)
        anchor_frame = int(candidates[np.argsort(gains[candidates])[(len(candidates) - 1) // 2]])
        rel_gain[measured] = gains[measured] / gains[anchor_frame]
    rel_offset = np.zeros(n)
    return Motion(reference=int(reference), matrices=full, model=model, gain=rel_gain,
                  offset=rel_offset, residual=residual, ok=ok,
                  shape=(h, w), levels=(float(lo), float(hi)),
                  exposure_reference=anchor_frame, overlay=overlay)


# --------------------------------------------------------------------------------------------
# Applying a mode
# --------------------------------------------------------------------------------------------


def _expose_to_reference(image: np.ndarray, gain: float, offset: float) -> np.ndarray:
    """Map a frame's levels to the reference's exposure: ``(x - offset) / gain``."""
    if image.dtype == np.uint8:  # a float32 table: OpenCV's LUT, 13x numpy's indexing at 1080p
        return cv2.LUT(image, np.clip((np.arange(256) - offset) / gain, 0, 255).astype(np.float32))
    return np.clip((image - offset) / gain, 0, 255)



def measured_or_checked(frames: np.ndarray | FrameSource | WorkingLuma, motion: Motion | None,
                        mode: AlignMode,
                        *, reference: int | None, models: tuple[str, ...], max_side: int,
                        workers: int | None,
                        on_frame: Callable[[int, np.ndarray], None] | None = None) -> Motion:
    """``motion`` checked against the frames' count and size, or measured when it is None.

    Args:
        frames: N x H x W x 3 uint8 frames, a :class:`spanetlib.io.video.FrameSource` or a
            :class:`WorkingLuma` (what :func:`measure_motion` takes).
        motion: a motion measured earlier, or None.
        mode: the :class:`AlignMode` (its ``min_motion_px``).
        reference: passed to :func:`measure_motion`.
        models: passed to :func:`measure_motion`.
        max_side: passed to :func:`measure_motion`.
        workers: passed to :func:`measure_motion`.
        on_frame: passed to :func:`measure_motion` (never called when ``motion`` is given).

    Raises:
        ValueError: ``motion`` does not match the frames.
    """
    n = len(frames)
    h, w = frames.shape[1:3] if isinstance(frames, np.ndarray) else frames.shape
    if motion is None:
        return measure_motion(frames, reference, models=models, max_side=max_side,
                              min_motion_px=mode.min_motion_px, workers=workers,
                              on_frame=on_frame)
    if motion.matrices.shape != (n, 3, 3) or motion.shape != (h, w):
        raise ValueError(f"motion: expected {n} transforms for {h} x {w} frames, got "
                         f"{motion.matrices.shape} for {motion.shape}")
    return motion

def align_frames(frames: np.ndarray, mode: str | AlignMode = "auto", *,
                 reference: int | None = None, motion: Motion | None = None,
                 models: tuple[str, ...] = MOTION_MODELS, max_side: int = 640,
                 workers: int | None = None) -> Alignment:
    """Measure the camera motion and bring the frames into the reference's coordinates.

    Args:
        frames: N x H x W x 3 uint8 RGB frames.
        mode: an :data:`ALIGN_MODES` name (``"auto"``, ``"on"``, ``"off"``) or an
            :class:`AlignMode`.
        reference: reference frame (default ``N // 2``; ignored when ``motion`` is given).
        motion: a known :class:`Motion` to apply instead of measuring one.
        models: richest motion model allowed (see :func:`measure_motion`).
        max_side: working size of the measurement.
        workers: threads for measuring and warping.

    Returns:
        An :class:`Alignment`. Frames that are not warped are the input's own pixels; with
        nothing warped, ``frames`` is the input array itself (bit-identical).
    """
    frames = check_frames(frames)
    mode = get_align_mode(mode)
    n, h, w = frames.shape[:3]
    motion = measured_or_checked(frames, motion, mode, reference=reference, models=models,
                                 max_side=max_side, workers=workers)
    moved, warped, exposed = alignment_plan(motion, mode)
    out = frames
    if (warped | exposed).any():
        out = frames.copy()

        def one(i: int) -> None:
            out[i] = align_frame(frames[i], motion, i, mode, bool(warped[i]), bool(exposed[i]))

        with worker_threads(workers or min(4, os.cpu_count() or 1)) as pool:
            list(pool.map(one, np.flatnonzero(warped | exposed)))
    valid = valid_region(motion, warped)
    return Alignment(frames=out, motion=motion, mode=mode, warped=warped, exposed=exposed,
                     valid=valid, crop=crop_box(valid), moved=moved)


def alignment_plan(motion: Motion, mode: str | AlignMode
                   ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Which frames a mode moves and re-exposes: ``(moved, warped, exposed)``, N bool each.

    ``moved``: displaced by more than ``mode.min_motion_px``; ``warped``: resampled into the
    reference's coordinates (per ``mode.warp``); ``exposed``: mapped to the reference's
    exposure. The reference frame is never moved or warped.
    """
    mode = get_align_mode(mode)
    n = len(motion.matrices)
    moved = motion.displacement > mode.min_motion_px
    moved[motion.reference] = False
    exposed = motion.exposure_change > mode.min_exposure_levels
    if mode.warp == "never" or not mode.photometric:
        exposed[:] = False
    if mode.warp == "never":
        warped = np.zeros(n, bool)
    elif mode.warp == "always":
        warped = np.ones(n, bool)
        warped[motion.reference] = False
    else:
        warped = moved.copy()
    return moved, warped, exposed


def align_frame(image: np.ndarray, motion: Motion, index: int, mode: str | AlignMode,
                warp: bool, expose: bool) -> np.ndarray:
    """One frame in the reference's coordinates and exposure (what :func:`align_frames` does).

    Args:
        image: H x W x 3 uint8 frame ``index`` of the clip.
        motion: the clip's :class:`Motion`.
        index: the frame's index.
        mode: the :class:`AlignMode` (its warp interpolation and deringing).
        warp: resample it with ``motion.matrices[index]``.
        expose: map its exposure to the reference's.

    Returns:
        H x W x 3 uint8 (``image`` itself when neither applies).
    """
    mode = get_align_mode(mode)
    if expose:
        image = _expose_to_reference(image, motion.gain[index], motion.offset[index])
    if warp:
        image = warp_frame(image, motion.matrices[index], mode.interpolation, mode.dering)
    return round_to_uint8(image) if image.dtype != np.uint8 \
        else image


def valid_region(motion: Motion, warped: np.ndarray) -> np.ndarray:
    """Reference pixels that every warped frame covers (unwarped frames cover all).

    Args:
        motion: the clip's :class:`Motion`.
        warped: N bool, the frames (of those to be used) that are warped; pass
            ``alignment.warped & used`` for a subset.

    Returns:
        H x W bool.
    """
    mats = motion.matrices[np.flatnonzero(warped)]
    if len(mats) == 0:
        return np.ones(motion.shape, bool)
    return common_footprint(mats, motion.shape)
