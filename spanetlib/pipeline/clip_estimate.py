"""Clean backgrounds from real (phone) rain clips, with no wrong pair: :func:`estimate_clip`.

The paper's estimate (§3, Eqs. 2-4,
:func:`spanetlib.pipeline.background.estimate_background`) assumes a static camera over a
static scene. Phone clips break both: the camera shakes or pans, the exposure drifts, cars
park, leave or pass, lights switch. :func:`estimate_clip` makes the
estimate where it holds and says where it does not:

1. **Alignment** (:func:`spanetlib.pipeline.alignment.align_frames`): camera motion and exposure
   are measured for every frame and applied only where they matter (``align="auto"``), so a
   static clip keeps its exact pixels.
2. **Stable periods.** Each aligned frame is summarised by a grid of block signatures (the
   30th percentile of each block's luminance after a horizontal opening removes the rain
   streaks, less the frame's median deviation from the clip, so a global exposure wobble is
   no change), smoothed over time by a running median of 5 frames. Binary segmentation
   splits the clip where a set of blocks (at least ``_MIN_BLOCKS``, and 1 % of them) changes
   its median level by more than ``tau`` (five times the block's temporal noise, at least
   ``_MIN_STEP`` levels) and holds the new level (most frames on each side lie within
   ``tau`` of their side's median, and each side has at least 4 frames and a tenth of the
   clip: a passing car is no change). Frames off their period's level on the changed blocks,
   or within 2 frames of a change far off it (``2 tau``) on any blocks (the car driving
   off, the light ramping), are transitions and belong to no period.
3. **One estimate per period** (Eqs. 2-4 over its frames), with its reliability map
   (:func:`spanetlib.pipeline.background.reliability_map`) and valid region.
4. **Pair check** (:func:`pair_check`), in the reference's coordinates and exposure, where
   each aligned frame met its period's estimate: rain only brightens, in thin streaks, so a
   pixel clearly darker than the clean image (beyond ``3.5 sigma + 2`` levels of noise and
   what a fraction of a pixel of misalignment explains at edges), or inside a bright region
   wider than rain, is inconsistent, and so is the object around it. A frame with more than
   ``max_inconsistent`` of its valid pixels inconsistent, or darker than its clean image
   overall (RMS of the darker part above ``2 sigma + 1`` levels: a shifted or mis-exposed
   clean image), or whose edges and texture over its usable pixels do not follow the clean
   image's (:func:`structure_agreement`: a failed registration, or people moving over most
   of the frame, which a smeared, darker estimate lets pass), belongs to no period; the
   others keep a per-pixel usable mask (valid and consistent), mapped back to the frame's own
   pixels, for the export. A period whose frames
   moved against each other without being warped (align "off" on a moving clip) pairs no
   frame at all.

5. **Quality evidence** (``quality=True``, the default): what the no-reference quality score
   (:func:`spanetlib.pipeline.quality.scene_quality`) needs from a period's aligned frames,
   which the result does not keep, measured once per period into a :class:`SegmentEvidence`: the
   estimates of the period's even and odd frames (interleaved halves: the same time span,
   independent rain), detail against the frames, what one warp loses, how far unwarped frames
   sit from each other, each frame's contrast and position against the estimate (a veil, a
   registration gone wrong), the rain fraction.

Everything the export and the review need to never pair a rain frame with the wrong clean
image comes back in one :class:`ClipEstimate`: ``membership[i]`` (the period of frame ``i``,
-1 for none), :meth:`ClipEstimate.clean_for_frame` and :meth:`ClipEstimate.usable_mask`.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import os
import zlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import cv2
import numpy as np

from spanetlib.io.checks import check_frames
from spanetlib.io.errors import InputError
from spanetlib.io.files import round_to_uint8
from spanetlib.io.pools import ordered_map, worker_threads
from spanetlib.io.video import FrameSource
from spanetlib.pipeline.alignment import (
    MOTION_MODELS,
    Alignment,
    AlignMode,
    Motion,
    WorkingLuma,
    align_frame,
    align_frames,
    alignment_plan,
    crop_box,
    get_align_mode,
    measured_or_checked,
    motion_displacement,
    valid_region,
    working_luma,
    working_scale,
    working_shape,
)
from spanetlib.pipeline.background import (
    BackgroundEstimate,
    Reliability,
    estimate_background,
    noise_sigma,
    reliability_map,
)
from spanetlib.pipeline.lazy_jit import lazy_njit
from spanetlib.pipeline.resample import warp_frame
from spanetlib.pipeline.selection import FRAME_COUNTS, rain_fraction

__all__ = [
    "ClipEstimate",
    "ClipSegment",
    "EDGE_TOLERANCE_PX",
    "MAX_KEPT_FRAMES",
    "PAIR_WIDEN_PX",
    "SegmentEvidence",
    "estimate_clip",
    "frame_valid_region",
    "pair_check",
    "pair_check_terms",
    "streak_square_side",
]

_BLOCK = 8  # block side (pixels at the signature scale)
_SIGNATURE_SIDE = 320  # longer side of the signature scale
_BLOCK_PERCENTILE = 30.0  # block signature: this percentile of the opened luminance
_MIN_STEP = 4.0  # smallest block change (levels) that counts as a scene change
_STEP_NOISE = 5.0  # ... in units of the block's temporal noise
_MIN_BLOCKS = 3  # fewest changed blocks for a scene change (and at least 1 % of them)
_SMOOTH = 5  # frames of the running median over the signatures
_MIN_PERIOD = 4  # fewest frames on each side of a scene change (and 10 % of the clip)
_HOLD = 0.6  # share of each side's frames that must sit at its level on the changed blocks
_WANDER = 3.0  # a changed block's step exceeds this many times its spread about each side's level
_MIN_REGION = 0.03  # a scene change covers a connected region of this share of the blocks
_CANDIDATES = 8  # best-scoring split times checked before a stretch is left whole
_DARK_RMS = 2.0  # a pair whose darker-than-clean RMS exceeds this many sigma (+ 1) is wrong
# A pair whose band-pass structure correlates less than this with its clean image's over the
# usable pixels is no rain/clean pair (structure_agreement): measured on every paired frame,
# 0.59 at worst under very dense generated rain (240 x 320), 0.95 and above on real clips
# that register, 0.15-0.49 where the registration fails (a camera in a moving bus) or people
# move over most of the frame; the pair check passes such frames when the smeared estimate
# is darker than they are.
_MIN_STRUCTURE = 0.5
_STRUCTURE_SIDE = 240  # least shorter side (pixels) of the structure test's working size
_STRUCTURE_MIN_PIXELS = 256  # fewer usable pixels at that size: no evidence either way
#: Misalignment tolerated at image edges by `pair_check`, in pixels: warped / unwarped frames.
EDGE_TOLERANCE_PX = {True: 0.25, False: 0.1}
#: Side, in streak squares, of a bright region `pair_check` calls content whatever its
#: horizontal extent: a light narrower than the horizontal line (w/18) that moves.
BLOB_SQUARES = 3
#: Pixels by which `pair_check` widens what it flags, on every side.
PAIR_WIDEN_PX = 2
#: Most frames `estimate_clip` keeps in memory by default: the largest N of the paper's rules.
MAX_KEPT_FRAMES = max(FRAME_COUNTS.values())
#: A streamed clip's working lumas (every frame at the registration's size) are kept for the
#: motion, saving a decoding pass, while they take at most this share of the kept frames.
_WORKING_SHARE = 0.25


@dataclass(frozen=True)
class SegmentEvidence:
    """Measurements of one period's aligned frames for the no-reference quality score.

    :func:`estimate_clip` fills one per period (``quality=True``);
    :func:`spanetlib.pipeline.quality.scene_quality` turns them into cues and a score. Luminance is
    BT.601 in levels (0..255); "over the valid region" means the period's ``valid`` pixels.

    Attributes:
        half_difference: H x W float32, luminance of the estimate (Eqs. 2-4) of the period's
            even frames less that of its odd frames. Rain falls anew every frame, so what one
            half's estimate keeps of it (and its noise) the other's does not; a static scene
            and anything that stays for the whole period cancel. All NaN when a half has
            fewer than 2 frames.
        sharpness: gradient energy of the estimate over the median of the frames' (up to 10
            frames), both with thin bright structures (streaks) removed by a horizontal
            opening and at half resolution (less noise), over the valid region. Smearing from
            frames that moved against each other lowers it; a percentile of noisy frames sits
            a little below 1.
        gradient_rms: RMS luminance gradient (levels per pixel) of the estimate over the valid
            region (what a displacement turns into an error).
        warp_loss: RMS luminance change (levels) of the estimate shifted by half a pixel in x
            and y with the mode's warp and back, halved, over the valid region less a
            4-pixel border: the fine texture (near the sampling limit) a warp takes away.
        frame_warp_loss: the same of the clip's reference frame (never warped, in the
            estimate's coordinates) with the pixels rain brightens, or that differ from the
            estimate by more than noise and blur explain, taken from the estimate, less what
            its noise explains. Warped frames lose fine texture, so an estimate made of them
            keeps less of it than the frame: ``frame_warp_loss - warp_loss`` measures that
            loss.
        warped_share: share of the used frames that were warped.
        misregistration_px: RMS displacement (largest over the frame corners, pixels) between
            pairs of used frames that were not warped; 0 when fewer than two.
        frame_fit: F x 3 float64, per frame ``i`` of up to 25 used frames ``(a_i, b_i,
            m_i)`` of ``Y_i ~ a_i Y(x + d_i(x)) + b_i`` with ``d_i`` an affine displacement
            field, linearized around the estimate ``Y`` (``a_i Y + b_i + a_i d_i . grad Y``)
            and fitted on up to 20000 pixels spread over the valid region (clipped levels
            left out), leaving out the pixels far above the fit (rain: ``2.5 sigma + 1``
            levels) or far below it (objects: ``4 sigma + 4``); ``m_i`` is the RMS of
            ``|d_i|`` over those pixels: how far the aligned frame still sits from the
            estimate. Frames registered wrongly (or moving and not warped) scatter around
            it. A veil of rain that varies from frame to frame shows as gains ``a_i`` around
            1 with offsets ``b_i = A (1 - a_i)`` for a bright level ``A`` (the airlight); an
            exposure change as gains with no offset.
        rain_fraction: :func:`spanetlib.pipeline.selection.rain_fraction` of the frames against the
            estimate (share of pixels per frame that rain brightens by more than 12 levels).
        streak_energy: mean white top-hat (the horizontal opening's residue: thin bright
            structures) of the estimate's luminance over the median of the frames', over the
            valid region (rain left in the estimate raises it; so does scene texture).
    """

    half_difference: np.ndarray
    sharpness: float
    gradient_rms: float
    warp_loss: float
    frame_warp_loss: float
    warped_share: float
    misregistration_px: float
    frame_fit: np.ndarray
    rain_fraction: float
    streak_energy: float


@dataclass(frozen=True)
class ClipSegment:
    """One stable period of a clip and its background estimate (reference coordinates).

    Attributes:
        start: first frame of the period.
        stop: one past its last frame.
        frames: indices of the frames the estimate used (the period's frames less
            transitions and frames whose registration failed).
        estimate: the :class:`BackgroundEstimate` (Eqs. 2-4) of those frames, aligned.
        reliability: its :class:`Reliability` map.
        valid: H x W bool, pixels every used frame covers.
        crop: ``(y0, y1, x0, x1)``, a large box inside ``valid`` (half-open).
        noise_sigma: luminance noise (levels) of the used frames around their mode
            (:func:`spanetlib.pipeline.background.noise_sigma`); the pair checks' tolerances.
        aligned: False when frames that were not warped moved against each other by more
            than twice the mode's ``min_motion_px`` (align mode "off" on a moving clip): the
            estimate is a smear and no frame is paired with it.
        evidence: the :class:`SegmentEvidence` of the quality score (None when
            :func:`estimate_clip` ran with ``quality=False``).
    """

    start: int
    stop: int
    frames: np.ndarray
    estimate: BackgroundEstimate
    reliability: Reliability
    valid: np.ndarray
    crop: tuple[int, int, int, int]
    noise_sigma: float
    aligned: bool = True
    evidence: SegmentEvidence | None = None

    @property
    def image(self) -> np.ndarray:
        """The H x W x 3 float32 estimate (the input's 0..255 scale)."""
        return self.estimate.image

    @property
    def percentile(self) -> float:
        """The percentile ``p`` of Eq. 4."""
        return self.estimate.percentile


@dataclass
class ClipEstimate:
    """The result of :func:`estimate_clip`.

    Attributes:
        segments: the stable periods, in time order, each with its estimate.
        motion: measured camera motion and exposure of every frame (:class:`Motion`).
        mode: the :class:`AlignMode` applied.
        warped: N bool, frames resampled into the reference's coordinates.
        exposed: N bool, frames whose exposure was mapped to the reference's.
        period: N int64, the period each frame falls in by the block signatures (-1: a
            transition, or a frame whose registration failed).
        membership: N int64, the segment whose clean image frame ``i`` may be paired with,
            -1 for none (transition, failed registration, a period whose frames moved against
            each other unwarped, more than ``max_inconsistent`` of its valid pixels not
            explained by rain, darker than its clean image overall, or with a structure
            unlike its clean image's).
        inconsistent_share: N float32, share of the frame's valid pixels the pair check
            flags (NaN where not checked).
        dark_rms: N float32, RMS (levels) of how much darker than the clean image the rain
            frame is over its usable pixels (noise alone gives about 0.6 sigma; a frame
            above ``2 sigma + 1`` is not paired: shifted or mis-exposed); NaN where not
            checked.
        structure: N float32, :func:`structure_agreement` of the frame with its clean image
            over its usable pixels (a pair under ``_MIN_STRUCTURE`` is not paired: the
            registration failed or the scene moved throughout); NaN where not checked or
            without evidence.
        usable_share: N float32, share of the frame's pixels usable in a pair (valid and
            consistent; 0 for non-members).
        max_inconsistent: the limit applied.
        shape: ``(H, W)``.
    """

    segments: tuple[ClipSegment, ...]
    motion: Motion
    mode: AlignMode
    warped: np.ndarray
    exposed: np.ndarray
    period: np.ndarray
    membership: np.ndarray
    inconsistent_share: np.ndarray
    dark_rms: np.ndarray
    structure: np.ndarray
    usable_share: np.ndarray
    max_inconsistent: float
    shape: tuple[int, int]
    _usable_bits: list[bytes | None]

    @property
    def n_frames(self) -> int:
        """Number of frames N."""
        return len(self.membership)

    def pairs(self) -> list[tuple[int, int]]:
        """``(frame, segment)`` for every frame that may be paired, in frame order."""
        return [(int(i), int(s)) for i, s in enumerate(self.membership) if s >= 0]

    def only_segments(self, keep: Sequence[int]) -> ClipEstimate:
        """This estimate with only the segments ``keep`` (indices, any order, no repeats).

        The other segments' frames belong to no segment (``membership`` -1, nothing usable);
        the kept segments are renumbered in time order. The block periods (``period``) stay.

        Raises:
            ValueError: an index out of range or repeated.
        """
        chosen = sorted(int(k) for k in keep)
        if len(set(chosen)) != len(chosen) or any(not 0 <= k < len(self.segments)
                                                  for k in chosen):
            raise ValueError(f"keep: expected distinct segment indices in [0, "
                             f"{len(self.segments)}), got {list(keep)}")
        renumber = np.full(len(self.segments) + 1, -1, np.int64)  # [-1] maps -1 to -1
        renumber[chosen] = np.arange(len(chosen))
        membership = renumber[self.membership]
        dropped = (membership < 0) & (self.membership >= 0)
        return dataclasses.replace(
            self, segments=tuple(self.segments[k] for k in chosen), membership=membership,
            usable_share=np.where(dropped, np.float32(0.0), self.usable_share),
            _usable_bits=[None if d else bits
                          for d, bits in zip(dropped, self._usable_bits, strict=True)])

    def clean_for_frame(self, index: int, segment: int | None = None) -> np.ndarray:
        """The clean image to pair with rain frame ``index``, in that frame's pixels.

        Its segment's estimate, warped back into the frame's coordinates (when the frame was
        warped) and given the frame's exposure (when it was corrected). For a frame that was
        neither, this is the estimate itself, exactly.

        Args:
            index: the frame.
            segment: render this segment's estimate instead (for comparisons and reviews;
                any frame, member or not).

        Returns:
            H x W x 3 uint8.

        Raises:
            ValueError: ``segment`` is None and the frame belongs to no segment
                (``membership[index] == -1``), or a bad index.
        """
        index, segment = self._frame_and_segment(index, segment)
        return _clean_for(self.segments[segment].image, self.motion, index,
                          bool(self.warped[index]), bool(self.exposed[index]), self.mode)

    def valid_for_frame(self, index: int, segment: int | None = None) -> np.ndarray:
        """H x W bool: pixels of frame ``index`` inside its segment's valid region.

        Args:
            index: the frame.
            segment: map this segment's valid region instead (any frame, member or not).

        Raises:
            ValueError: as :meth:`clean_for_frame`.
        """
        index, segment = self._frame_and_segment(index, segment)
        return frame_valid_region(self.segments[segment].valid, self.motion, index,
                          bool(self.warped[index]))

    def usable_mask(self, index: int) -> np.ndarray:
        """H x W bool: pixels of frame ``index`` that a pair may use (valid, consistent).

        All False for a frame that belongs to no segment.
        """
        index = self._check_index(index)
        h, w = self.shape
        bits = self._usable_bits[index]
        if bits is None:
            return np.zeros((h, w), bool)
        packed = np.frombuffer(zlib.decompress(bits), np.uint8)
        return np.unpackbits(packed, count=h * w).reshape(h, w).astype(bool)

    def describe(self) -> str:
        """A few lines for reports: motion, periods, frames kept, reliability."""
        n = self.n_frames
        kept = int((self.membership >= 0).sum())
        lines = [
            f"{n} frames; motion model {self.motion.model}, largest displacement "
            f"{float(self.motion.displacement.max()):.2f} px, median residual "
            f"{float(np.nanmedian(self.motion.residual)):.2f} levels; align mode "
            f"{self.mode.name}: {int(self.warped.sum())} warped, {int(self.exposed.sum())} "
            f"exposure-corrected",
            f"{len(self.segments)} stable period(s); {kept}/{n} frames paired, "
            f"{int((self.period < 0).sum())} in transitions or unregistered",
        ]
        for k, seg in enumerate(self.segments):
            lines.append(
                f"  period {k}: frames {seg.start}-{seg.stop - 1}, {len(seg.frames)} used, "
                f"p = {seg.percentile:.1f} %, reliable {100 * seg.reliability.reliable_share:.1f}"
                f" %, valid {100 * float(seg.valid.mean()):.1f} %"
                + ("" if seg.aligned else "; NOT ALIGNED (the camera moved and the frames were "
                   "not warped): no pairs"))
        return "\n".join(lines)

    def _check_index(self, index: int) -> int:
        n = self.n_frames
        if isinstance(index, bool) or not isinstance(index, (int, np.integer)) \
                or not 0 <= index < n:
            raise ValueError(f"frame index: expected an int in [0, {n}), got {index!r}")
        return int(index)

    def _frame_and_segment(self, index: int, segment: int | None) -> tuple[int, int]:
        """The checked frame index and its segment (``segment``, or the frame's own)."""
        if segment is None:
            return self._check_index(index), self._segment_of(index)
        if isinstance(segment, bool) or not isinstance(segment, (int, np.integer)) \
                or not 0 <= segment < len(self.segments):
            raise ValueError(f"segment: expected an int in [0, {len(self.segments)}), got "
                             f"{segment!r}")
        return self._check_index(index), int(segment)

    def _segment_of(self, index: int) -> int:
        index = self._check_index(index)
        seg = int(self.membership[index])
        if seg < 0:
            raise ValueError(f"frame {index} belongs to no stable period (transition, failed "
                             "registration or content not explained by rain): no clean image "
                             "to pair it with")
        return seg


# --------------------------------------------------------------------------------------------
# Per-frame clean image and pair check
# --------------------------------------------------------------------------------------------


def _clean_for(image: np.ndarray, motion: Motion, index: int, warped: bool, exposed: bool,
               mode: AlignMode) -> np.ndarray:
    clean = image
    if warped:
        clean = warp_frame(image, np.linalg.inv(motion.matrices[index]), mode.interpolation,
                           mode.dering)
    if exposed:
        clean = clean * np.float32(motion.gain[index]) + np.float32(motion.offset[index])
    return round_to_uint8(clean)


def frame_valid_region(valid: np.ndarray, motion: Motion, index: int, warped: bool) -> np.ndarray:
    """The part of a period's valid region that frame ``index`` covers (all of it unwarped)."""
    if not warped:
        return valid.copy()
    h, w = valid.shape
    back = cv2.warpPerspective(valid.astype(np.uint8), np.linalg.inv(motion.matrices[index]),
                               (w, h), flags=cv2.INTER_NEAREST | cv2.WARP_INVERSE_MAP,
                               borderMode=cv2.BORDER_CONSTANT, borderValue=0)
    return back > 0


def _luma(image: np.ndarray) -> np.ndarray:
    return cv2.cvtColor(image, cv2.COLOR_RGB2GRAY).astype(np.float32)


def streak_square_side(shape: tuple[int, int]) -> int:
    """Side (pixels, odd) of the smallest square wider than a rain streak in an H x W frame.

    Streaks are thin (1-3 px across at 120-720 px frames): :func:`pair_check` calls a bright
    region content only where this square fits in it, and a flagged region an object (taken
    by its widened bounding box) from two such squares of area.
    """
    return max(5, int(round(min(shape) / 144.0)) | 1)


def _blob_elements(shape: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """A square wider than a rain streak, and a horizontal line longer than streak clusters.

    Streaks fall near vertically; where several overlap they make narrow clusters. An object
    is wide in every direction.
    """
    side = streak_square_side(shape)
    line = max(9, int(round(shape[1] / 18.0)) | 1)
    return np.ones((side, side), np.uint8), np.ones((1, line), np.uint8)


@lazy_njit(nogil=True, cache=True, fastmath=True)
def _pair_levels_row(frame, clean, cy, allow, dy, dark, bright):
    """:func:`_pair_levels` of one row, ``frame`` and ``clean`` flat RGB.

    Branch-free, so the loop vectorizes.
    """
    for x in range(cy.size):
        r = np.int32(frame[3 * x])
        g = np.int32(frame[3 * x + 1])
        b = np.int32(frame[3 * x + 2])
        d = np.float32((9798 * r + 19235 * g + 3735 * b + 16384) >> 15) - cy[x]
        dy[x] = d
        a = allow[x]
        drop = max(max(np.int32(clean[3 * x]) - r, np.int32(clean[3 * x + 1]) - g),
                   np.int32(clean[3 * x + 2]) - b)
        dark[x] = np.uint8((d < -a) | (np.float32(drop) > np.float32(1.5) * a))
        bright[x] = np.uint8(d > np.float32(1.5) * a)


@lazy_njit(nogil=True, cache=True)
def _pair_levels(frame, clean, cy, allow, dy, dark, bright):
    """One pass of :func:`pair_check`'s level tests: ``dy``, and the dark and bright masks.

    The frame's luminance is OpenCV's ``COLOR_RGB2GRAY`` of uint8 (15-bit fixed point), so
    ``dy`` equals ``cvtColor(frame) - cy`` exactly.
    """
    h, w = cy.shape
    rows = frame.reshape(h, w * 3)
    clean_rows = clean.reshape(h, w * 3)
    for y in range(h):
        _pair_levels_row(rows[y], clean_rows[y], cy[y], allow[y], dy[y], dark[y], bright[y])


@lazy_njit(nogil=True, cache=True)
def _dark_rms(dy, usable):
    """RMS of ``min(dy, 0)`` over the ``usable`` pixels (inf when none is)."""
    total = 0.0
    count = 0
    h, w = dy.shape
    for y in range(h):
        for x in range(w):
            if usable[y, x]:
                d = min(dy[y, x], np.float32(0.0))
                total += d * d
                count += 1
    return math.sqrt(total / count) if count else math.inf


def _opening(mask: np.ndarray, element: np.ndarray) -> np.ndarray:
    """Morphological opening of a 0/1 mask; a one-row element opens only the rows long enough.

    A row with fewer set pixels than the element is wide holds no run the opening keeps, so
    skipping it changes nothing (and a long line's opening is the dearest step at 1080p).
    """
    if element.shape[0] != 1:
        return cv2.morphologyEx(mask, cv2.MORPH_OPEN, element)
    counts = cv2.reduce(mask, 1, cv2.REDUCE_SUM, dtype=cv2.CV_32S)[:, 0]
    rows = np.flatnonzero(counts >= element.shape[1])
    out = np.zeros_like(mask)
    if rows.size:
        out[rows] = cv2.morphologyEx(mask[rows], cv2.MORPH_OPEN, element)
    return out


def pair_check_terms(clean: np.ndarray, sigma: float, edge_px: float = 0.1
                     ) -> tuple[np.ndarray, np.ndarray]:
    """What :func:`pair_check` needs of the clean image alone: ``(luminance, allowance)``.

    Args:
        clean: H x W x 3 uint8 clean image.
        sigma: luminance noise (levels).
        edge_px: misalignment (pixels) tolerated at edges.

    Returns:
        Two H x W float32 arrays: the clean image's luminance and how far (levels) a rain
        frame may fall below it (``3.5 sigma + 2`` plus ``edge_px`` times its gradient).
    """
    tol = 3.5 * float(sigma) + 2.0
    cy = _luma(clean)
    gx = cv2.Sobel(cy, cv2.CV_32F, 1, 0, ksize=3, scale=0.125)
    gy = cv2.Sobel(cy, cv2.CV_32F, 0, 1, ksize=3, scale=0.125)
    return cy, tol + edge_px * np.sqrt(gx * gx + gy * gy)


def pair_check(frame: np.ndarray, clean: np.ndarray, sigma: float, edge_px: float = 0.1, *,
               clean_terms: tuple[np.ndarray, np.ndarray] | None = None
               ) -> tuple[np.ndarray, np.ndarray]:
    """Pixels of a rain/clean pair that rain does not explain.

    Rain only brightens, in thin streaks. A pixel is inconsistent when the rain frame is
    clearly darker than the clean image (luminance more than ``3.5 sigma + 2`` levels below,
    or a channel more than 1.5 times that, plus ``edge_px`` times the clean image's gradient
    for misalignment at edges; isolated pixels are ignored), or when it lies in a bright
    region wider than rain (luminance 1.5 times the tolerance brighter over a square wider
    than a streak and a horizontal run longer than a cluster of near-vertical streaks, or
    over a square :data:`BLOB_SQUARES` streak squares wide). Gaps
    between flagged parts narrower than two streak squares are closed (an object's darker
    and brighter parts); a flagged region of at least two streak squares is an object, and
    its bounding box, widened by a quarter of its size on every side, is flagged whole (parts
    of an object can look like rain); the result is widened by :data:`PAIR_WIDEN_PX` pixels.
    The shape tests see the image mirrored at its border, so an object entering the frame is
    as wide as its mirror image makes it.

    Args:
        frame: H x W x 3 uint8 rain frame.
        clean: H x W x 3 uint8 clean image in the same pixels.
        sigma: luminance noise (levels), e.g. :func:`spanetlib.pipeline.background.noise_sigma`.
        edge_px: misalignment (pixels) tolerated at edges.
        clean_terms: :func:`pair_check_terms` of ``(clean, sigma, edge_px)``, for checking
            many frames against one clean image (computed here when None).

    Returns:
        H x W bool, True where the pair is inconsistent, and the H x W float32 luminance
        difference ``frame - clean`` (levels).
    """
    if frame.shape != clean.shape or frame.ndim != 3 or frame.shape[2] != 3:
        raise InputError(f"pair_check: expected two H x W x 3 images of one shape, got "
                         f"{frame.shape} and {clean.shape}")
    cy, allow = pair_check_terms(clean, sigma, edge_px) if clean_terms is None else clean_terms
    dy = np.empty(cy.shape, np.float32)
    dark = np.empty(cy.shape, np.uint8)
    bright = np.empty(cy.shape, np.uint8)
    _pair_levels(np.ascontiguousarray(frame), np.ascontiguousarray(clean), cy, allow, dy, dark,
                 bright)
    # Shape tests on a mirrored border: an object entering the frame is as thin as a streak
    # at the edge, its mirror image makes it wide again (warped frames bring their mirror
    # along: the warp reflects at the frame's edge).
    square, line = _blob_elements(frame.shape[:2])
    pad = len(square)
    h, w = dy.shape

    def shaped(mask: np.ndarray, *elements: np.ndarray) -> np.ndarray:
        # An opening of nothing is nothing: most pixels of a good pair pass.
        out = cv2.copyMakeBorder(mask, pad, pad, pad, pad, cv2.BORDER_REFLECT)
        for element in elements:
            if not cv2.countNonZero(out):
                break
            out = _opening(out, element)
        return out[pad:pad + h, pad:pad + w]

    dark = shaped(dark, np.ones((3, 3), np.uint8))
    # Bright and wide in every direction (a lamp, headlights; a blob of three streak squares)
    # is content too, however short: no streak, nor overlapping streaks, is that wide.
    blob = np.ones((BLOB_SQUARES * len(square),) * 2, np.uint8)
    bright = shaped(bright, square, line) | shaped(bright, blob)
    bad = dark | bright
    if not cv2.countNonZero(bad):
        return bad > 0, dy
    # Objects show dark and bright parts side by side (stripes, highlights): close the gaps
    # between flagged parts so the whole object is covered, then widen the result.
    bad = cv2.morphologyEx(bad, cv2.MORPH_CLOSE, np.ones((2 * len(square) + 1,) * 2, np.uint8))
    # A flagged region larger than rain can make is an object; parts of it may look like rain
    # (pale stripes, highlights), so its bounding box, widened by a quarter of its size on
    # every side, is flagged whole.
    _, _, stats, _ = cv2.connectedComponentsWithStatsWithAlgorithm(bad, 8, cv2.CV_32S,
                                                                   cv2.CCL_GRANA)
    for x, y, bw, bh, _ in stats[1:][stats[1:, cv2.CC_STAT_AREA] >= 2 * square.size]:
        mx, my = (bw + 3) // 4, (bh + 3) // 4
        bad[max(0, y - my):min(h, y + bh + my), max(0, x - mx):min(w, x + bw + mx)] = 1
    bad = cv2.dilate(bad, np.ones((2 * PAIR_WIDEN_PX + 1,) * 2, np.uint8)) > 0
    return bad, dy


def _shrunk(image: np.ndarray, factor: int) -> np.ndarray:
    """``image`` (H x W, uint8) averaged over ``factor`` x ``factor`` blocks.

    A partial last row or column of blocks is left out (OpenCV's fast integer path).
    """
    if factor == 1:
        return image
    h, w = image.shape[0] // factor * factor, image.shape[1] // factor * factor
    return cv2.resize(image[:h, :w], (w // factor, h // factor), interpolation=cv2.INTER_AREA)


def _structure_factor(shape: tuple[int, int]) -> int:
    """The whole shrink factor of an H x W image for the structure test.

    Its shorter side comes nearest :data:`_STRUCTURE_SIDE` from above (1: never enlarged).
    """
    return max(1, min(shape) // _STRUCTURE_SIDE)


def structure_band(image: np.ndarray) -> np.ndarray:
    """Band-pass luminance of an H x W x 3 uint8 image at the structure test's working size.

    Shrunk by a whole factor so its shorter side is :data:`_STRUCTURE_SIDE` or a little more
    (never enlarged), then a difference of Gaussians (sigma 1.5 and 8 working pixels): edges
    and texture, without the pixel-scale detail rain streaks add or the slow shading an
    exposure change moves.

    Returns:
        h x w float32 at the working size.
    """
    y = _shrunk(cv2.cvtColor(image, cv2.COLOR_RGB2GRAY), _structure_factor(image.shape[:2]))
    y = y.astype(np.float32)
    return cv2.GaussianBlur(y, (0, 0), 1.5) - cv2.GaussianBlur(y, (0, 0), 8.0)


def structure_agreement(frame_band: np.ndarray, clean_band: np.ndarray,
                        usable: np.ndarray) -> float:
    """Pearson correlation of two :func:`structure_band` images over ``usable`` (H x W bool).

    ``usable`` is at full size; a working pixel counts where at least half its block is
    usable. NaN where fewer than :data:`_STRUCTURE_MIN_PIXELS` working pixels count or either
    side is flat (no evidence either way).
    """
    inside = _shrunk(np.ascontiguousarray(usable).view(np.uint8),
                     _structure_factor(usable.shape)) > 0
    if inside.shape != frame_band.shape:
        raise ValueError(f"structure_agreement: a {usable.shape} mask does not shrink to the "
                         f"bands' {frame_band.shape}")
    if int(inside.sum()) < _STRUCTURE_MIN_PIXELS:
        return float("nan")
    a = frame_band[inside].astype(np.float64)
    b = clean_band[inside].astype(np.float64)
    a -= a.mean()
    b -= b.mean()
    norm = math.sqrt(float(a @ a) * float(b @ b))
    return float(a @ b) / norm if norm > 1e-9 else float("nan")


# --------------------------------------------------------------------------------------------
# Quality evidence
# --------------------------------------------------------------------------------------------

_EVIDENCE_FRAMES = 25  # most frames the frame fit (veil, residual motion) looks at
_DETAIL_FRAMES = 10  # most frames the detail and streak references are the median of
_EVIDENCE_POINTS = 20000  # most pixels per frame fit


def _streak_opening(y: np.ndarray) -> np.ndarray:
    """Luminance with thin bright structures removed (a horizontal opening wider than rain)."""
    side = max(5, int(round(5.0 * y.shape[1] / 320.0)) | 1)
    return cv2.morphologyEx(y, cv2.MORPH_OPEN, np.ones((1, side), np.uint8))


def _detail(y: np.ndarray, inside: np.ndarray) -> float:
    """Mean squared gradient of the opened luminance at half resolution over ``inside``."""
    h, w = y.shape
    small = cv2.resize(_streak_opening(y), (max(4, w // 2), max(4, h // 2)),
                       interpolation=cv2.INTER_AREA)
    keep = cv2.resize(inside.astype(np.uint8), small.shape[::-1],
                      interpolation=cv2.INTER_NEAREST)
    keep = cv2.erode(keep, np.ones((3, 3), np.uint8)) > 0
    gx = cv2.Sobel(small, cv2.CV_32F, 1, 0, ksize=3, scale=0.125)
    gy = cv2.Sobel(small, cv2.CV_32F, 0, 1, ksize=3, scale=0.125)
    energy = gx * gx + gy * gy
    return float(energy[keep].mean()) if keep.any() else 0.0


def _frame_fit(y: np.ndarray, design: np.ndarray, xn: np.ndarray, yn: np.ndarray,
               sigma: float) -> tuple[float, float, float]:
    """``(a, b, m)`` of one frame's samples ``y`` (see ``SegmentEvidence.frame_fit``).

    ``design``'s columns: the estimate, 1, then ``gx, gy, xn gx, yn gx, xn gy, yn gy`` with
    the estimate's gradients and the samples' coordinates ``xn, yn`` (centred, over the width).
    """
    # Start from the identity (the frames are aligned and exposure-corrected): in dense rain
    # a first fit over every pixel would follow the rain.
    coef = np.zeros(design.shape[1])
    coef[0] = 1.0
    r = y - design[:, 0]
    keep = (r < 2.5 * sigma + 1.0) & (r > -4.0 * sigma - 4.0)
    # Least squares through the 8 x 8 normal equations of unit-norm columns (an SVD solve,
    # so a flat image's zero gradient columns get zero weight as in a direct lstsq): a
    # direct lstsq of the 20,000 x 8 system cost most of the evidence's time.
    norms = np.linalg.norm(design, axis=0)
    norms[norms == 0] = 1.0
    unit = design / norms
    for _ in range(4):
        if keep.sum() < 16:
            break
        sub = unit[keep]
        coef = np.linalg.lstsq(sub.T @ sub, sub.T @ y[keep], rcond=None)[0] / norms
        r = y - design @ coef
        keep = (r < 2.5 * sigma + 1.0) & (r > -4.0 * sigma - 4.0)
    p = coef[2:] / (coef[0] if abs(coef[0]) > 1e-3 else 1.0)
    dx = p[0] + p[2] * xn + p[3] * yn
    dy = p[1] + p[4] * xn + p[5] * yn
    return float(coef[0]), float(coef[1]), float(np.sqrt(np.mean(dx * dx + dy * dy)))


_HALF_PIXEL = np.array([[1.0, 0.0, 0.5], [0.0, 1.0, 0.5], [0.0, 0.0, 1.0]])


def _warp_loss(y: np.ndarray, inside: np.ndarray, mode: AlignMode) -> float:
    """Half the RMS change of ``y`` warped by half a pixel and back, over ``inside`` less 4 px."""
    there = warp_frame(y, _HALF_PIXEL, mode.interpolation, mode.dering)
    back = warp_frame(there, np.linalg.inv(_HALF_PIXEL), mode.interpolation, mode.dering)
    core = cv2.erode(inside.astype(np.uint8), np.ones((9, 9), np.uint8)) > 0
    core = core if core.any() else inside
    return 0.5 * float(np.sqrt(np.mean((back - y)[core] ** 2)))


@functools.cache
def _noise_warp_loss(interpolation: int, dering: bool) -> float:
    """:func:`_warp_loss` of white Gaussian noise of unit sigma (a constant of the warp)."""
    noise = np.random.default_rng(0).standard_normal((256, 256)).astype(np.float32)
    return _warp_loss(noise, np.ones(noise.shape, bool),
                      AlignMode("noise", warp="always", interpolation=interpolation,
                                dering=dering))


def _segment_evidence(stack: np.ndarray, estimate: BackgroundEstimate, valid: np.ndarray,
                      motion: Motion, used: np.ndarray, warped: np.ndarray, mode: AlignMode,
                      sigma: float, reference_frame: np.ndarray) -> SegmentEvidence:
    """The :class:`SegmentEvidence` of one period (``stack``: its aligned frames)."""
    n = len(stack)
    inside = valid if valid.any() else np.ones_like(valid)
    est_y = _luma(round_to_uint8(estimate.image))
    halves = [stack[0::2], stack[1::2]]
    if all(len(half) >= 2 for half in halves):
        half_y = [_luma(round_to_uint8(estimate_background(half).image)) for half in halves]
        half_difference = half_y[0] - half_y[1]
    else:
        half_difference = np.full(est_y.shape, np.nan, np.float32)

    picks = np.unique(np.linspace(0, n - 1, min(n, _DETAIL_FRAMES)).round().astype(np.int64))
    details, tophats = [], []
    for k in picks:  # one luminance image at a time (a 4K one is 33 MB)
        y = _luma(stack[k])
        details.append(_detail(y, inside))
        tophats.append((y - _streak_opening(y))[inside].mean())
    frame_detail = float(np.median(details))
    sharpness = _detail(est_y, inside) / max(frame_detail, 1e-6)
    tophat = float(np.median(tophats))
    streak_energy = float((est_y - _streak_opening(est_y))[inside].mean()) / max(tophat, 1e-6)
    gx = cv2.Sobel(est_y, cv2.CV_32F, 1, 0, ksize=3, scale=0.125)
    gy = cv2.Sobel(est_y, cv2.CV_32F, 0, 1, ksize=3, scale=0.125)
    gradient_rms = float(np.sqrt((gx * gx + gy * gy)[inside].mean()))

    warp_loss = _warp_loss(est_y, inside, mode)
    # The reference frame where rain, objects or another scene state do not show: its pixels
    # within noise (and what blur explains at edges) of the estimate; the estimate elsewhere.
    ref_y = _luma(reference_frame)
    allow = 3.5 * sigma + 2.0 + 0.5 * np.abs(cv2.Laplacian(est_y, cv2.CV_32F))
    composite = np.where(np.abs(ref_y - est_y) <= allow, ref_y, est_y)
    frame_loss = _warp_loss(composite, inside, mode)
    frame_loss = math.sqrt(max(0.0, frame_loss ** 2 - (
        _noise_warp_loss(mode.interpolation, mode.dering) * sigma) ** 2))

    still = used[~warped[used]]
    misregistration = 0.0
    if len(still) >= 2:
        mats = motion.matrices[still]
        rel = np.linalg.inv(mats)[:, None] @ mats[None, :]
        d = motion_displacement(rel.reshape(-1, 3, 3), motion.shape)
        misregistration = float(np.sqrt(np.sum(d ** 2) / (len(still) * (len(still) - 1))))

    ys, xs = np.nonzero(inside & (est_y > 3) & (est_y < 252))
    if ys.size > _EVIDENCE_POINTS:
        keep = np.linspace(0, ys.size - 1, _EVIDENCE_POINTS).astype(np.int64)
        ys, xs = ys[keep], xs[keep]
    h, w = est_y.shape
    xn, yn = (xs - (w - 1) / 2.0) / w, (ys - (h - 1) / 2.0) / w
    tgx, tgy = gx[ys, xs].astype(np.float64), gy[ys, xs].astype(np.float64)
    design = np.stack([est_y[ys, xs].astype(np.float64), np.ones(ys.size), tgx, tgy,
                       xn * tgx, yn * tgx, xn * tgy, yn * tgy], axis=1)
    fit_frames = np.unique(np.linspace(0, n - 1, min(n, _EVIDENCE_FRAMES)).round()
                           .astype(np.int64))
    frame_fit = np.array([_frame_fit(_luma(stack[k])[ys, xs].astype(np.float64), design, xn,
                                     yn, sigma) for k in fit_frames],
                         np.float64).reshape(-1, 3)
    return SegmentEvidence(
        half_difference=half_difference.astype(np.float32), sharpness=float(sharpness),
        gradient_rms=gradient_rms, warp_loss=warp_loss, frame_warp_loss=frame_loss,
        warped_share=float(warped[used].mean()) if len(used) else 0.0,
        misregistration_px=misregistration, frame_fit=frame_fit,
        rain_fraction=rain_fraction(stack, estimate.image), streak_energy=streak_energy)


# --------------------------------------------------------------------------------------------
# Stable periods
# --------------------------------------------------------------------------------------------


def _signatures(frames: np.ndarray, valid: np.ndarray, workers: int
                ) -> tuple[np.ndarray, np.ndarray]:
    """N x B block signatures of the aligned frames, and their block grid.

    The grid is bool, rows x columns of blocks: True for the B blocks inside ``valid``, in
    the signatures' order.
    """
    n, h, w = frames.shape[:3]
    scale = min(1.0, _SIGNATURE_SIDE / max(h, w))
    sh, sw = max(_BLOCK, round(h * scale)), max(_BLOCK, round(w * scale))
    gh, gw = max(1, sh // _BLOCK), max(1, sw // _BLOCK)
    element = np.ones((1, 5), np.uint8)
    rank = int(_BLOCK_PERCENTILE / 100.0 * (_BLOCK * _BLOCK - 1))

    def one(frame: np.ndarray) -> np.ndarray:
        y = cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY)
        if (sh, sw) != (h, w):
            y = cv2.resize(y, (sw, sh), interpolation=cv2.INTER_AREA)
        y = cv2.morphologyEx(y, cv2.MORPH_OPEN, element)[:gh * _BLOCK, :gw * _BLOCK]
        blocks = y.reshape(gh, _BLOCK, gw, _BLOCK).transpose(0, 2, 1, 3).reshape(gh * gw, -1)
        return np.partition(blocks, rank, axis=1)[:, rank].astype(np.float32)

    with worker_threads(workers) as pool:
        sig = np.stack(list(pool.map(one, frames)))
    inside = cv2.resize(valid.astype(np.float32), (sw, sh), interpolation=cv2.INTER_AREA)
    inside = cv2.resize(inside[:gh * _BLOCK, :gw * _BLOCK], (gw, gh),
                        interpolation=cv2.INTER_AREA).reshape(gh, gw) > 0.95
    sig = sig[:, inside.ravel()]
    if sig.shape[1]:
        # A global wobble (exposure below the correction threshold) is no scene change.
        sig -= np.median(sig - np.median(sig, axis=0), axis=1, keepdims=True)
    return sig, inside


def _block_tau(sig: np.ndarray) -> np.ndarray:
    if len(sig) < 3:
        return np.full(sig.shape[1], _MIN_STEP * 2)
    diff = np.diff(sig, axis=0)
    noise = 1.4826 * np.median(np.abs(diff - np.median(diff, axis=0)), axis=0) / math.sqrt(2.0)
    return np.maximum(_MIN_STEP, _STEP_NOISE * noise)


def _coherent(changed: np.ndarray, grid: np.ndarray | None, min_region: int) -> np.ndarray:
    """The changed blocks that lie in a connected region (8-neighbours) of ``min_region``.

    A scene change (an object parked or gone, a light, the camera turned away) covers a
    region; a few scattered blocks, or a small moving thing, do not make one (the pair check
    and the reliability map deal with them). Without the grid, all changed blocks count.
    """
    if grid is None or min_region <= 1:
        return changed
    image = np.zeros(grid.shape, np.uint8)
    image[grid] = changed
    count, labels, stats, _ = cv2.connectedComponentsWithStats(image, connectivity=8)
    big = np.zeros(count, bool)
    big[1:] = stats[1:, cv2.CC_STAT_AREA] >= min_region
    return big[labels][grid]


def _best_split(sig: np.ndarray, tau: np.ndarray, lo: int, hi: int, min_len: int,
                min_blocks: int, grid: np.ndarray | None = None, min_region: int = 1
                ) -> tuple[int, np.ndarray] | None:
    """The split of frames [lo, hi) with the largest real change, or None.

    Candidates are ranked by their step over ``tau`` on the blocks that change; the best of
    them (up to ``_CANDIDATES``) whose change is real splits the stretch. Real: on at least
    ``min_blocks`` blocks, forming connected regions of ``min_region`` blocks (``grid``), the
    step exceeds ``_WANDER`` times the block's own spread about each side's level (a block
    that wanders, as swaying foliage or rippling water does, needs a larger step), and each
    side holds its level (``_HOLD`` of its frames within ``tau``).
    """
    scored = []
    for t in range(lo + min_len, hi - min_len + 1):
        left = np.median(sig[lo:t], axis=0)
        right = np.median(sig[t:hi], axis=0)
        step = np.abs(left - right)
        changed = step > tau
        if changed.sum() < min_blocks:
            continue
        scored.append((float(np.minimum(step[changed] / tau[changed], 4.0).sum()), t))
    scored.sort(key=lambda c: (-c[0], c[1]))
    for _, t in scored[:_CANDIDATES]:
        left = np.median(sig[lo:t], axis=0)
        right = np.median(sig[t:hi], axis=0)
        step = np.abs(left - right)
        cols = np.flatnonzero(step > tau)
        a, b = sig[lo:t][:, cols] - left[cols], sig[t:hi][:, cols] - right[cols]
        # Held: most frames of each side sit at their side's level on the changed blocks.
        held = ((np.abs(a) <= tau[cols]).mean(axis=0) >= _HOLD) \
            & ((np.abs(b) <= tau[cols]).mean(axis=0) >= _HOLD)
        # Steady: the step stands out of how much the block wanders on either side.
        spread = 1.4826 * np.maximum(np.median(np.abs(a), axis=0), np.median(np.abs(b), axis=0))
        held &= step[cols] > _WANDER * spread
        changed = np.zeros(sig.shape[1], bool)
        changed[cols[held]] = True
        changed = _coherent(changed, grid, min_region)
        if changed.sum() >= min_blocks:
            return t, changed
    return None


def _periods(sig: np.ndarray, usable: np.ndarray, grid: np.ndarray | None = None
             ) -> np.ndarray:
    """N int64 period label per frame (-1: transition or unusable), by binary segmentation.

    ``grid``: the block grid of :func:`_signatures` (a change must cover a connected region
    of ``_MIN_REGION`` of the blocks); None treats the blocks as unconnected.
    """
    n = len(sig)
    labels = np.full(n, -1, np.int64)
    idx = np.flatnonzero(usable)
    if idx.size == 0:
        return labels
    s = sig[idx]
    if s.shape[1] == 0:
        labels[idx] = 0
        return labels
    tau = _block_tau(s)
    raw = s
    if len(s) >= 2 * _SMOOTH:
        # A running median over time removes what stays only a frame or two (rain left by
        # the opening, fast passers-by).
        from scipy import ndimage  # here: scipy takes a second to import (startup)

        s = ndimage.median_filter(s, size=(_SMOOTH, 1), mode="nearest")
    min_blocks = max(_MIN_BLOCKS, int(math.ceil(0.01 * s.shape[1])))
    min_len = max(_MIN_PERIOD, int(math.ceil(0.1 * len(s))))
    min_region = max(min_blocks, int(math.ceil(_MIN_REGION * s.shape[1]))) \
        if grid is not None else 1
    cuts: list[tuple[int, np.ndarray]] = []
    stack = [(0, len(s))]
    while stack:
        lo, hi = stack.pop()
        if hi - lo < 2 * min_len:
            continue
        split = _best_split(s, tau, lo, hi, min_len, min_blocks, grid, min_region)
        if split is None:
            continue
        cuts.append(split)
        stack += [(lo, split[0]), (split[0], hi)]
    cuts.sort(key=lambda c: c[0])
    bounds = [0, *(c[0] for c in cuts), len(s)]
    local = np.empty(len(s), np.int64)
    for k in range(len(bounds) - 1):
        local[bounds[k]:bounds[k + 1]] = k
    # Transitions: frames off their period's level on the blocks that change at its ends, and
    # near a change, frames off it on any blocks (the scene on its way between states).
    for k in range(len(bounds) - 1):
        lo, hi = bounds[k], bounds[k + 1]
        cols = np.zeros(s.shape[1], bool)
        for t, changed in cuts:
            if t in (lo, hi):
                cols |= changed
        if not cols.any():
            continue
        level = np.median(raw[lo:hi], axis=0)
        off = np.abs(raw[lo:hi] - level) > tau
        local[lo:hi][off[:, cols].mean(axis=1) > 0.2] = -1
        near = np.zeros(hi - lo, bool)
        for t, _ in cuts:
            if t in (lo, hi):
                near |= np.abs(np.arange(lo, hi) - t + 0.5) < _SMOOTH / 2
        far_off = np.abs(raw[lo:hi] - level) > 2.0 * tau
        local[lo:hi][near & (far_off.sum(axis=1) >= min_blocks)] = -1
    labels[idx] = local
    return labels


def _mutually_registered(motion: Motion, frames: np.ndarray, min_motion_px: float) -> bool:
    """Whether the given (unwarped) frames sit within ``2 min_motion_px`` of each other.

    An estimate over frames that moved against each other is a smear (align mode "off" on
    a moving clip): no pair may use it.
    """
    if len(frames) < 2:
        return True
    mats = motion.matrices[frames]
    rel = np.linalg.inv(mats)[:, None] @ mats[None, :]
    spread = motion_displacement(rel.reshape(-1, 3, 3), motion.shape).max()
    return bool(spread <= 2.0 * min_motion_px)


# --------------------------------------------------------------------------------------------
# Entry point
# --------------------------------------------------------------------------------------------


def estimate_clip(frames: np.ndarray | str | os.PathLike | FrameSource,
                  align: str | AlignMode = "auto", *,
                  reference: int | None = None, segments: bool = True,
                  max_inconsistent: float = 0.5, min_frames: int = 5,
                  motion: Motion | None = None, models: tuple[str, ...] = MOTION_MODELS,
                  max_side: int = 640, workers: int | None = None,
                  quality: bool = True, max_kept: int = MAX_KEPT_FRAMES) -> ClipEstimate:
    """Background estimates of a rain clip, per stable period, with per-frame pair checks.

    See the module docstring for the steps. A static clip with no scene change gives one
    segment whose estimate equals ``estimate_background(frames)`` exactly.

    Memory: an array of at most ``max_kept`` frames is processed in memory as it is. A longer
    clip, or a video file / frame folder (``frames`` a path or a
    :class:`spanetlib.io.video.FrameSource`), is streamed: at most ``max_kept`` frames
    spread evenly over the clip (and the reference) are kept, aligned and used for the
    stable periods and the estimates, and a last pass checks every other frame against its
    period's estimate. The motion (:func:`spanetlib.pipeline.alignment.measure_motion`)
    comes from the kept frames when they are the whole clip, else from every frame's
    working luma kept in the first pass when those take at most a quarter of the kept
    frames' memory (a 1080p clip up to about 1,300 frames: two decoding passes in all), else
    from a pass over the template's frames and one that measures as the frames stream past.
    Peak memory is then the kept frames plus a fixed amount, whatever the clip's length.

    Args:
        frames: N x H x W x 3 uint8 RGB frames (N >= 2), a video file or frame folder, or a
            :class:`spanetlib.io.video.FrameSource`.
        align: ``"auto"`` (default), ``"on"``, ``"off"`` or an :class:`AlignMode`.
        reference: the frame whose coordinates and exposure the estimates take (default
            ``N // 2``).
        segments: detect scene changes (False: one period over all frames).
        max_inconsistent: most share of a frame's valid pixels the pair check may flag for
            the frame to be paired, in [0, 1].
        min_frames: fewest frames a period needs for an estimate (>= 2; fewer frames leave
            rain in it).
        motion: a known :class:`Motion` (e.g. a synthetic clip's truth) instead of measuring.
        models: richest motion model allowed (see
            :func:`spanetlib.pipeline.alignment.measure_motion`).
        max_side: working size of the motion measurement.
        workers: threads (default: the CPU count, at most 4).
        quality: measure each period's :class:`SegmentEvidence` for
            :func:`spanetlib.pipeline.quality.scene_quality` (two more estimates over half the
            frames each, and a few cheap statistics).
        max_kept: most frames kept in memory for the periods and estimates (default the
            largest frame count the paper's N rules ask for,
            ``max(spanetlib.pipeline.selection.FRAME_COUNTS.values())``).

    Returns:
        A :class:`ClipEstimate`. When streamed, ``ClipSegment.frames`` lists the kept frames
        the estimate used; ``period`` and ``membership`` cover every frame.

    Raises:
        InputError: frames that are not N x H x W x 3 uint8 with N >= 2, an unreadable source.
        ValueError: bad options.
    """
    if not 0 <= max_inconsistent <= 1:
        raise ValueError(f"max_inconsistent: expected a share in [0, 1], got "
                         f"{max_inconsistent!r}")
    if isinstance(min_frames, bool) or not isinstance(min_frames, int) or min_frames < 2:
        raise ValueError(f"min_frames: expected an int >= 2, got {min_frames!r}")
    if isinstance(max_kept, bool) or not isinstance(max_kept, int) or max_kept < 2:
        raise ValueError(f"max_kept: expected an int >= 2, got {max_kept!r}")
    mode = get_align_mode(align)
    workers = workers or min(4, os.cpu_count() or 1)
    if isinstance(frames, (str, os.PathLike)):
        frames = FrameSource(frames)
    if not isinstance(frames, FrameSource):
        arr = check_frames(frames, minimum=2)
        if len(arr) <= max_kept:
            aligned = align_frames(arr, mode, reference=reference, motion=motion,
                                   models=models, max_side=max_side, workers=workers)
            found, seg_of_period, period = _estimate_periods(aligned, mode, segments,
                                                             min_frames, workers, quality)
            membership = np.array([seg_of_period.get(int(k), -1) for k in period], np.int64)
            frame_of = {int(i): aligned.frames[i] for i in np.flatnonzero(membership >= 0)}
            return _checked(found, aligned.motion, mode, aligned.warped, aligned.exposed,
                            period, membership, max_inconsistent, workers,
                            ((i, frame_of[i]) for i in sorted(frame_of)))
        frames = FrameSource(arr)
    return _estimate_streamed(frames, mode, reference, segments, max_inconsistent, min_frames,
                              motion, models, max_side, workers, quality, max_kept)


def _estimate_periods(aligned: Alignment, mode: AlignMode, segments: bool, min_frames: int,
                      workers: int, quality: bool
                      ) -> tuple[list[ClipSegment], dict[int, int], np.ndarray]:
    """Stable periods of aligned frames and one estimate each.

    Returns the segments, the segment of each period (periods whose frames moved against
    each other unwarped have none) and the period of each frame.
    """
    motion = aligned.motion
    n = len(aligned.frames)
    ok = motion.ok.copy()
    if segments:
        sig, grid = _signatures(aligned.frames, aligned.valid, workers)
        period = _periods(sig, ok, grid)
    else:
        period = np.where(ok, 0, -1).astype(np.int64)
    warped = aligned.warped
    found: list[ClipSegment] = []
    seg_of_period: dict[int, int] = {}
    for k in np.unique(period[period >= 0]):
        used = np.flatnonzero(period == k)
        if used.size < min_frames:
            continue
        stack = aligned.frames if used.size == n else aligned.frames[used]
        estimate = estimate_background(stack)
        # The noise around the mode of the period's registered frames: what a correct pair
        # shows (a period whose frames moved unwarped is refused below anyway).
        sigma = noise_sigma(stack, estimate.mode)
        reliability = reliability_map(stack, estimate)
        valid = valid_region(motion, warped & (period == k))
        aligned_ok = _mutually_registered(motion, used[~warped[used]], mode.min_motion_px)
        if aligned_ok:
            seg_of_period[int(k)] = len(found)
        evidence = _segment_evidence(stack, estimate, valid, motion, used, warped, mode,
                                     sigma, aligned.frames[motion.reference]) \
            if quality else None
        found.append(ClipSegment(start=int(used[0]), stop=int(used[-1]) + 1, frames=used,
                                 estimate=estimate, reliability=reliability, valid=valid,
                                 crop=crop_box(valid), noise_sigma=sigma,
                                 aligned=aligned_ok, evidence=evidence))
        del stack
    return found, seg_of_period, period


def _checked(found: list[ClipSegment], motion: Motion, mode: AlignMode, warped: np.ndarray,
             exposed: np.ndarray, period: np.ndarray, membership: np.ndarray,
             max_inconsistent: float, workers: int,
             members: Iterator[tuple[int, np.ndarray]],
             align: Callable[[tuple[int, np.ndarray]], np.ndarray] | None = None
             ) -> ClipEstimate:
    """Pair-check the member frames, streamed as ``(index, frame)`` pairs.

    ``align`` brings a frame into the reference's coordinates on the workers (None: the
    frames come aligned).
    """
    n = len(membership)
    h, w = motion.shape
    inconsistent = np.full(n, np.nan, np.float32)
    usable_share = np.zeros(n, np.float32)
    dark = np.full(n, np.nan, np.float32)
    structure = np.full(n, np.nan, np.float32)
    bits: list[bytes | None] = [None] * n
    cleans = [round_to_uint8(seg.image) for seg in found]
    bands = [structure_band(clean) for clean in cleans]
    terms = {(k, moved): pair_check_terms(cleans[k], seg.noise_sigma, EDGE_TOLERANCE_PX[moved])
             for k, seg in enumerate(found) for moved in (False, True)
             if ((membership == k) & (warped == moved)).any()}

    def check(item: tuple[int, np.ndarray]) -> None:
        # In the reference's coordinates and exposure, where the frame met the estimate; the
        # usable mask then goes back to the frame's own pixels.
        i, frame = item
        if align is not None:
            frame = align(item)
        seg = found[membership[i]]
        bad, dy = pair_check(frame, cleans[membership[i]], seg.noise_sigma,
                             EDGE_TOLERANCE_PX[bool(warped[i])],
                             clean_terms=terms[(int(membership[i]), bool(warped[i]))])
        bad &= seg.valid
        share = float(bad.sum()) / max(1, int(seg.valid.sum()))
        usable = seg.valid & ~bad
        # Over the usable pixels the rain frame may only be brighter: what is darker is noise
        # (RMS about 0.6 sigma); more means a shifted or mis-exposed clean image.
        dark_rms = float(_dark_rms(dy, usable))
        inconsistent[i] = share
        dark[i] = dark_rms
        agree = structure_agreement(structure_band(frame), bands[membership[i]], usable)
        structure[i] = agree
        if share <= max_inconsistent and dark_rms <= _DARK_RMS * seg.noise_sigma + 1.0 \
                and not agree < _MIN_STRUCTURE:  # NaN: no evidence either way
            usable = frame_valid_region(usable, motion, i, bool(warped[i]))
            usable_share[i] = float(usable.mean())
            # Compressed: masks are mostly one run, and a long clip keeps one per frame.
            bits[i] = zlib.compress(np.packbits(usable.ravel()).tobytes(), 1)

    with worker_threads(workers) as pool:
        for _ in ordered_map(pool, check, members, 2 * workers):
            pass
    membership = membership.copy()
    membership[(membership >= 0) & (usable_share == 0)] = -1
    return ClipEstimate(segments=tuple(found), motion=motion, mode=mode,
                        warped=warped, exposed=exposed, period=period,
                        membership=membership, inconsistent_share=inconsistent,
                        dark_rms=dark, structure=structure,
                        usable_share=usable_share,
                        max_inconsistent=float(max_inconsistent), shape=(h, w),
                        _usable_bits=bits)


def _estimate_streamed(source: FrameSource, mode: AlignMode, reference: int | None,
                       segments: bool, max_inconsistent: float, min_frames: int,
                       motion: Motion | None, models: tuple[str, ...], max_side: int,
                       workers: int, quality: bool, max_kept: int) -> ClipEstimate:
    """:func:`estimate_clip` over a source read in passes, keeping at most ~``max_kept`` frames."""
    n = len(source)
    h, w = source.shape
    if n < 2:
        raise InputError(f"frames: expected N >= 2 frames, got {n} in {source.name}")
    ref = motion.reference if motion is not None else (n // 2 if reference is None else reference)
    kept = np.unique(np.concatenate([
        np.linspace(0, n - 1, min(n, max_kept)).round().astype(np.int64), [ref]]))
    position = {int(i): k for k, i in enumerate(kept)}
    frames_k = np.empty((len(kept), h, w, 3), np.uint8)
    decoded = np.zeros(len(kept), bool)

    def keep(i: int, frame: np.ndarray) -> None:
        # The kept frames are taken from the first pass: they are not decoded again.
        k = position.get(i)
        if k is not None:
            frames_k[k] = frame
            decoded[k] = True

    scale = working_scale((h, w), max_side)
    luma_shape = working_shape((h, w), scale)
    whole = len(kept) == n
    if motion is None and (whole or n * luma_shape[0] * luma_shape[1]
                           <= _WORKING_SHARE * frames_k.nbytes):
        # One decoding pass keeps the kept frames and, unless every frame is kept, every
        # frame's working luma; the motion is measured from memory (no pass for the
        # template, none for the fits).
        lumas = None if whole else np.empty((n, *luma_shape), np.uint8)
        count = 0

        def take(item: tuple[int, np.ndarray]) -> None:  # on the workers: copies too
            keep(*item)
            if lumas is not None:
                lumas[item[0]] = working_luma(item[1], scale)

        def decoded_frames() -> Iterator[tuple[int, np.ndarray]]:
            nonlocal count
            for i, frame in enumerate(source):
                count += 1
                yield i, frame

        with worker_threads(workers) as pool:
            for _ in ordered_map(pool, take, decoded_frames(), 2 * workers):
                pass
        if count < n:
            raise InputError(f"{source.name}: {count} frames decoded, {n} expected")
        measured = frames_k if lumas is None \
            else WorkingLuma(lumas, (h, w), max_side, source.name)
        motion = measured_or_checked(measured, None, mode, reference=reference, models=models,
                                     max_side=max_side, workers=workers)
        del measured, lumas
    else:
        motion = measured_or_checked(source, motion, mode, reference=reference, models=models,
                                     max_side=max_side, workers=workers, on_frame=keep)
    moved, warped, exposed = alignment_plan(motion, mode)
    expo_ref = motion.exposure_reference
    sub = Motion(reference=position[motion.reference], matrices=motion.matrices[kept],
                 model=motion.model, gain=motion.gain[kept], offset=motion.offset[kept],
                 residual=motion.residual[kept], ok=motion.ok[kept], shape=motion.shape,
                 levels=motion.levels,
                 exposure_reference=position.get(expo_ref) if expo_ref is not None else None,
                 overlay=motion.overlay)

    def aligned_of(item: tuple[int, np.ndarray]) -> np.ndarray:
        i, frame = item
        return align_frame(frame, motion, i, mode, bool(warped[i]), bool(exposed[i]))

    def align_kept(item: tuple[int, np.ndarray]) -> None:
        frames_k[position[item[0]]] = aligned_of(item)

    # Align the kept frames in place (decoded now if the motion was given).
    wanted = ((int(i), frames_k[position[int(i)]]) for i in kept) if decoded.all() \
        else source.iter_at(kept)
    with worker_threads(workers) as pool:
        for _ in ordered_map(pool, align_kept, wanted, 2 * workers):
            pass
    valid_k = valid_region(sub, warped[kept])
    alignment = Alignment(frames=frames_k, motion=sub, mode=mode, warped=warped[kept],
                          exposed=exposed[kept], valid=valid_k, crop=crop_box(valid_k),
                          moved=moved[kept])
    found_k, seg_of_period, period_k = _estimate_periods(alignment, mode, segments, min_frames,
                                                         workers, quality)
    # Every frame takes the period of the kept frames around it when both agree.
    after = np.searchsorted(kept, np.arange(n))
    before = np.clip(after - 1, 0, len(kept) - 1)
    after = np.clip(after, 0, len(kept) - 1)
    period = np.where(period_k[before] == period_k[after], period_k[after], -1)
    period[kept] = period_k
    period[~motion.ok] = -1
    found = []
    for seg in found_k:
        k = int(period_k[seg.frames[0]])
        used = kept[seg.frames]
        valid = valid_region(motion, warped & (period == k))
        found.append(dataclasses.replace(seg, start=int(np.flatnonzero(period == k)[0]),
                                         stop=int(np.flatnonzero(period == k)[-1]) + 1,
                                         frames=used, valid=valid, crop=crop_box(valid)))
    membership = np.array([seg_of_period.get(int(k), -1) for k in period], np.int64)

    def members() -> Iterator[tuple[int, np.ndarray]]:
        # In the clip's order: the kept frames from memory (aligned), the others as they
        # stream past (aligned on the workers). Reaching a fresh frame decodes the kept ones
        # before it too, so interleaving keeps the decoder busy while the workers check kept
        # frames (all kept ones first would leave it idle, then the workers waiting for it).
        paired = np.flatnonzero(membership >= 0)
        fresh = paired[~np.isin(paired, kept)]
        decoded = source.iter_at(fresh) if fresh.size else iter(())
        for i in paired:
            if int(i) in position:
                yield int(i), frames_k[position[int(i)]]
            else:
                item = next(decoded, None)
                if item is None or item[0] != i:
                    raise InputError(f"{source.name}: frame {int(i)} could not be decoded "
                                     f"again")
                yield item

    def align_fresh(item: tuple[int, np.ndarray]) -> np.ndarray:
        return item[1] if item[0] in position else aligned_of(item)

    return _checked(found, motion, mode, warped, exposed, period, membership,
                    max_inconsistent, workers, members(), align_fresh)
