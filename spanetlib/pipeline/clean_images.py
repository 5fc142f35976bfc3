"""The clean image(s) of one rain clip: ``spanet estimate-background``.

One image per stable period of the scene (Eqs. 2-4 over aligned frames, through
`spanetlib.pipeline.review.review_estimate`), cropped to the pixels every frame covers, with
optional valid-region masks and reliability maps; the frames are streamed (bounded memory).
"""

from __future__ import annotations

import os
import re
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from spanetlib.io.checks import check_int
from spanetlib.io.errors import InputError
from spanetlib.io.files import check_output_path, round_to_uint8, write_image
from spanetlib.io.video import FrameSource
from spanetlib.pipeline.alignment import get_align_mode
from spanetlib.pipeline.clip_estimate import ClipEstimate
from spanetlib.pipeline.review import review_estimate

__all__ = ["CleanImages", "export_clean_images"]


# --------------------------------------------------------------------------------------------
# One clip's clean image(s): spanet estimate-background
# --------------------------------------------------------------------------------------------
@dataclass
class CleanImages:
    """What `export_clean_images` wrote, and the estimate it came from.

    Attributes:
        result: the clip estimate of the frames.
        images: one path per stable period, in time order.
        masks: the valid-region masks written (``keep_size``), one per period, or empty.
        reliability: the reliability maps written, one per period, or empty.
        crops: per period the ``(y0, y1, x0, x1)`` box written (the whole frame with
            ``keep_size``).
        keep_size: whether the images keep the frames' size (else cropped to the valid box).
    """

    result: ClipEstimate
    images: list[Path]
    masks: list[Path]
    reliability: list[Path]
    crops: list[tuple[int, int, int, int]]
    keep_size: bool

    def describe(self) -> str:
        """The lines ``spanet estimate-background`` prints: motion, valid region, periods."""
        result = self.result
        motion = result.motion
        n = result.n_frames
        h, w = result.shape
        lines = [f"{n} frames; motion: {motion.model}, largest displacement "
                 f"{float(motion.displacement.max()):.2f} px, {int(result.warped.sum())}/{n} "
                 f"frames warped, {int(result.exposed.sum())} exposure-corrected "
                 f"(--align {result.mode.name})"]
        # (a streamed clip's seg.frames lists only the frames kept for the estimate)
        left_out = n - sum(int((result.period[seg.start:seg.stop]
                                == result.period[seg.start]).sum())
                           for seg in result.segments)
        if len(result.segments) > 1:
            lines.append(f"the scene changed: {len(result.segments)} stable periods, one clean "
                         f"image each ({left_out} frames in transitions or too short periods "
                         "left out)")
        for k, (seg, path, box) in enumerate(zip(result.segments, self.images, self.crops,
                                                 strict=True)):
            y0, y1, x0, x1 = box
            region = "whole frame" if seg.valid.all() else (
                f"valid region {int(seg.valid.sum())} of {h * w} pixels" + (
                    f", cropped to {x1 - x0} x {y1 - y0} at x {x0}, y {y0} (--keep-size keeps "
                    f"{w} x {h})" if not self.keep_size else
                    f", marked in {self.masks[k].name}"))
            head = f"period {k + 1}: frames {seg.start}-{seg.stop - 1}, " if \
                len(result.segments) > 1 else ""
            reliable = 100 * seg.reliability.reliable_share
            lines.append(f"{head}{len(seg.frames)} frames used, percentile p = "
                         f"{seg.percentile:.1f}, reliable {reliable:.1f} %, {region} -> {path}")
        return "\n".join(lines)


def _period_paths(output: Path, count: int, extra: str = "") -> list[Path]:
    if count == 1:
        return [output.with_name(f"{output.stem}{extra}{output.suffix}")]
    return [output.with_name(f"{output.stem}_period{k}{extra}{output.suffix}")
            for k in range(1, count + 1)]


def _check_period_outputs(output: Path, overwrite: bool) -> None:
    """Refuse up front when an image of an earlier multi-period run would be replaced."""
    pattern = re.compile(rf"{re.escape(output.stem)}_period\d+(?:_valid|_reliability)?"
                         rf"{re.escape(output.suffix)}")
    if overwrite or not output.parent.is_dir():
        return
    for path in output.parent.iterdir():
        if pattern.fullmatch(path.name):
            raise InputError(f"{path} exists (a clean image of a stable period); pass "
                             "--overwrite (overwrite=True) to replace it")


def export_clean_images(source: str | os.PathLike, output: str | os.PathLike, *,
                        frames: int | None = None, start: int = 0, align: str = "auto",
                        keep_size: bool = False, reliability: bool = False,
                        overwrite: bool = False, progress: bool = False) -> CleanImages:
    """The clean image of a rain clip, one per stable period: ``spanet estimate-background``.

    The frames go through `spanetlib.pipeline.review.review_estimate` (camera motion measured and
    undone where it matters, stable periods of the scene, Eqs. 2-4 per period). Written:

    - one stable period: ``output``; several (the scene changed: a car left, a light
      switched): ``<stem>_period1<suffix>``, ``<stem>_period2<suffix>``, ... and no
      ``output``, so no single image silently stands for two scene states;
    - each image cropped to the largest box inside its valid region (the pixels every used
      frame covers), or with ``keep_size`` at the frames' size plus ``<stem>_valid.png``
      marking the valid pixels (255) where some are not;
    - with ``reliability``, ``<stem>_reliability.png`` (per period likewise): the reliability
      score, 255 reliable to 0 (`spanetlib.pipeline.background.reliability_map`), cropped alike.

    Outputs are checked before any frame is read (suffix, folder, existing files without
    ``overwrite``, including the period images of an earlier run).

    Args:
        source: a video file or a folder of frames.
        output: the image to write (its suffix names the format).
        frames: use this many frames (default: all from ``start``).
        start: first frame.
        align: ``"auto"`` (default), ``"on"`` or ``"off"``.
        keep_size: keep the frames' size and write a valid-region mask instead of cropping.
        reliability: also write the reliability map(s).
        overwrite: replace existing outputs.
        progress: show a progress bar while reading.

    Returns:
        A `CleanImages` (``describe()`` gives the lines the command prints).

    Raises:
        InputError: bad source or output, or no stable period of enough frames.
    """
    output = check_output_path(output, overwrite=overwrite, image=True)
    _check_period_outputs(output, overwrite)
    mode = get_align_mode(align).name
    check_int("start", start, minimum=0)
    check_int("frames", frames, minimum=0, allow_none=True)
    # Streamed: the frames are read in passes, never held whole (bounded memory).
    clip = FrameSource(source, start=start, count=frames, progress=progress)
    result = review_estimate(clip, mode, quality=False)  # no quality is judged here
    if not result.segments:
        raise InputError(f"{source}: no stable period of enough frames among {len(clip)} "
                         f"({int((result.period < 0).sum())} in transitions or unregistered); "
                         "use more frames")
    count = len(result.segments)
    images, masks, maps = (_period_paths(output, count), _period_paths(output, count, "_valid"),
                           _period_paths(output, count, "_reliability"))
    for path in images + (masks if keep_size else []) + (maps if reliability else []):
        check_output_path(path, overwrite=overwrite, image=True)
    for k, seg in enumerate(result.segments, start=1):
        if not seg.aligned:
            warnings.warn(f"{source}: the camera moved (up to "
                          f"{float(result.motion.displacement.max()):.1f} px) and --align "
                          f"{mode} warps no frame: the clean image of period {k} is smeared; "
                          "use --align auto", UserWarning, stacklevel=2)
    written = CleanImages(result, images, [], [], [], keep_size)
    h, w = result.shape
    for seg, image_path, mask_path, map_path in zip(result.segments, images, masks, maps,
                                                    strict=True):
        box = (0, h, 0, w) if keep_size else seg.crop
        y0, y1, x0, x1 = box
        write_image(image_path, round_to_uint8(seg.image)[y0:y1, x0:x1])
        if keep_size and not seg.valid.all():
            write_image(mask_path, seg.valid.astype(np.uint8) * np.uint8(255))
            written.masks.append(mask_path)
        if reliability:
            score = np.where(seg.valid, seg.reliability.score, 0.0).astype(np.float32)
            write_image(map_path, score[y0:y1, x0:x1])
            written.reliability.append(map_path)
        written.crops.append(box)
    return written
