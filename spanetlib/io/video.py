"""Reading and writing rain sequences: video files and folders of frames.

The background estimation of the paper (Sec. 3, Eqs. 2-4) works on N frames of a static
scene. ``read_sequence`` loads them as one N x H x W x 3 uint8 RGB array from a video file
(OpenCV) or a folder of image frames, with clear one-line ``InputError`` messages for the
problems users run into (missing paths, unreadable files, too few frames, mixed frame sizes,
frames smaller than `spanetlib.io.files.MIN_IMAGE_SIDE`). A video whose container promises more
frames than decode (a truncated or damaged file) is read as far as it decodes, with a
`PartialVideoWarning` giving both counts; `count_frames` checks the container's count the same
way.
`source_identity` names a sequence's content (path, size, frame count, a hash of decoded frames),
so a review made on one clip is never applied to another.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import warnings
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from tqdm.auto import tqdm

from spanetlib.io.checks import check_frames, check_int
from spanetlib.io.errors import InputError
from spanetlib.io.files import (
    IMAGE_SUFFIXES,
    atomic_path,
    check_image_size,
    natural_key,
    read_image,
    to_uint8,
    write_image,
)

__all__ = [
    "IDENTITY_FRAMES",
    "PartialVideoWarning",
    "SCENE_NAME_PATTERN",
    "SourceIdentity",
    "VIDEO_CODECS",
    "VIDEO_SUFFIXES",
    "VideoWriter",
    "count_frames",
    "list_frame_files",
    "list_scenes",
    "read_sequence",
    "scene_name",
    "source_identity",
    "write_frames",
    "write_video",
]

VIDEO_SUFFIXES = (".mp4", ".avi", ".mov", ".mkv", ".m4v")

# Codec written for each suffix by ``write_video``. FFV1 is lossless and round-trips exactly
# with opencv-python-headless; mp4v (MPEG-4 part 2) is lossy but plays almost everywhere.
VIDEO_CODECS: dict[str, str] = {
    ".avi": "FFV1",
    ".mkv": "FFV1",
    ".mp4": "mp4v",
    ".m4v": "mp4v",
    ".mov": "mp4v",
}


#: What a scene name may look like: it names files and folders, and pair lists (SPA-Data's
#: whitespace-separated format) hold paths made from it. `scene_name` gives such names.
SCENE_NAME_PATTERN = r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}"


class PartialVideoWarning(UserWarning):
    """A video decodes fewer frames than its container says (a truncated or damaged file)."""


def _warn_partial(path: Path, reported: int, decoded: int) -> None:
    warnings.warn(f"{path}: the container says {reported} frames but only {decoded} decode; "
                  f"using {decoded}", PartialVideoWarning, stacklevel=3)


def list_frame_files(folder: str | os.PathLike) -> list[Path]:
    """The image files directly inside ``folder``, in natural name order.

    Hidden files (names starting with ".", such as temporary files of an interrupted atomic
    write) are skipped; suffixes are matched case-insensitively against ``IMAGE_SUFFIXES``.

    Args:
        folder: an existing folder.

    Returns:
        Paths sorted naturally (``frame2.png`` before ``frame10.png``).
    """
    files = [p for p in Path(folder).iterdir()
             if p.is_file() and not p.name.startswith(".")
             and p.suffix.lower() in IMAGE_SUFFIXES]
    return sorted(files, key=lambda p: natural_key(p.name))


def _too_few(source: Path, found: int, start: int, count: int | None, min_frames: int) -> str:
    window = f" from frame {start}" if start else ""
    if count is not None:
        window += f" (count={count})"
    noun = "frame" if found == 1 else "frames"
    return (f"found {found} {noun} in {source}{window}; need at least {min_frames}")


def _read_folder(folder: Path, start: int, count: int | None, min_frames: int,
                 progress: bool) -> np.ndarray:
    files = list_frame_files(folder)
    if not files:
        raise InputError(f"no image frames ({', '.join(IMAGE_SUFFIXES)}) in folder: {folder}")
    stop = len(files) if count is None else min(len(files), start + count)
    chosen = files[start:stop]
    if len(chosen) < min_frames:
        raise InputError(_too_few(folder, len(chosen), start, count, min_frames))
    bar = tqdm(total=len(chosen), desc=f"reading {folder.name}", unit="frame",
               disable=not progress)
    with bar:
        first = read_image(chosen[0])
        frames = np.empty((len(chosen), *first.shape), np.uint8)
        frames[0] = first
        bar.update(1)
        for i, path in enumerate(chosen[1:], start=1):
            image = read_image(path)
            if image.shape != first.shape:
                h0, w0 = first.shape[:2]
                h, w = image.shape[:2]
                raise InputError(f"frame {path.name} is {w}x{h} but {chosen[0].name} is "
                                 f"{w0}x{h0}; all frames in {folder} must have the same size")
            frames[i] = image
            bar.update(1)
    return frames


def _read_video(path: Path, start: int, count: int | None, min_frames: int,
                progress: bool) -> np.ndarray:
    cap = cv2.VideoCapture(str(path))
    try:
        if not cap.isOpened():
            raise InputError(f"cannot open video: {path}")
        reported = int(cap.get(cv2.CAP_PROP_FRAME_COUNT))
        # Skip by grabbing: CAP_PROP_POS_FRAMES seeks to key frames on some codecs and lands
        # a few frames off, grabbing is exact.
        skipped = 0
        while skipped < start and cap.grab():
            skipped += 1
        total = count
        if total is None and reported > 0:
            total = max(0, reported - start)
        frames: list[np.ndarray] = []
        ended = skipped < start  # the video ended before the frames asked for
        with tqdm(total=total, desc=f"reading {path.name}", unit="frame",
                  disable=not progress) as bar:
            while not ended and (count is None or len(frames) < count):
                ok, frame = cap.read()
                if not ok or frame is None:
                    ended = True
                    break
                if frame.ndim == 2:
                    frame = cv2.cvtColor(frame, cv2.COLOR_GRAY2RGB)
                else:
                    frame = cv2.cvtColor(frame[:, :, :3], cv2.COLOR_BGR2RGB)
                frames.append(frame)
                bar.update(1)
    finally:
        cap.release()
    if ended and 0 < skipped + len(frames) < reported:
        _warn_partial(path, reported, skipped + len(frames))
    if skipped == 0 and not frames and count != 0:
        raise InputError(f"cannot read any frame from video: {path}")
    if len(frames) < min_frames:
        if skipped < start:
            raise InputError(f"found 0 frames in {path} from frame {start}: the video has only "
                             f"{skipped} frames; need at least {min_frames}")
        raise InputError(_too_few(path, len(frames), start, count, min_frames))
    return np.stack(frames)


def read_sequence(source: str | os.PathLike, start: int = 0, count: int | None = None,
                  progress: bool = False, min_frames: int = 2) -> np.ndarray:
    """Read the frames of a rain sequence.

    Args:
        source: a video file (read with OpenCV; suffixes such as ``VIDEO_SUFFIXES``) or a
            folder of image frames (``IMAGE_SUFFIXES``, natural name order, hidden files
            skipped).
        start: index of the first frame to read (>= 0).
        count: number of frames to read from ``start`` (``None``: all the rest).
        progress: show a tqdm progress bar while reading.
        min_frames: fewest frames accepted (>= 1).

    Returns:
        N x H x W x 3 uint8 RGB frames, ``min_frames <= N <= count``.

    Raises:
        InputError: the source is missing, unreadable or an image file; a frame cannot be
            read (named); fewer than ``min_frames`` frames (says how many were found); frames
            of different sizes (names the first offending file and both sizes); frames
            smaller than `spanetlib.io.files.MIN_IMAGE_SIDE`; a negative ``start`` or ``count``.

    Warns:
        PartialVideoWarning: the video stopped decoding before the frame count its container
            records (both counts in the message).
    """
    check_int("start", start, minimum=0)
    check_int("count", count, minimum=0, allow_none=True)
    check_int("min_frames", min_frames, minimum=1)
    path = Path(source)
    if not path.exists():
        raise InputError(f"sequence not found: {path}")
    if path.is_dir():
        frames = _read_folder(path, int(start), count, int(min_frames), progress)
    elif path.suffix.lower() in IMAGE_SUFFIXES:
        raise InputError(f"expected a video file or a folder of frames, got an image: {path}")
    else:
        frames = _read_video(path, int(start), count, int(min_frames), progress)
    check_image_size(frames[0], f"frame {start} of {path}")
    return frames


def _decoded_count(path: Path) -> int:
    """Frames of a video that decode, counted by grabbing them all."""
    capture = cv2.VideoCapture(str(path))
    try:
        if not capture.isOpened():
            raise InputError(f"cannot open video: {path}")
        count = 0
        while capture.grab():
            count += 1
    finally:
        capture.release()
    if count == 0:
        raise InputError(f"cannot read any frame from video: {path}")
    return count


def count_frames(source: str | os.PathLike) -> int:
    """The number of frames of a rain sequence, decoding a video only where needed.

    A frame folder counts its image files (exact, as `list_frame_files` sees them). A video
    reports the count its container records once its last frame is seen to decode (one seek);
    when it does not (a truncated or damaged file), or the container records no count, every
    frame is grabbed and the decoded count is returned, with a `PartialVideoWarning` giving
    both counts where they differ.

    Args:
        source: a video file or a folder of image frames.

    Returns:
        The number of frames (0 for a folder without images).

    Raises:
        InputError: ``source`` does not exist, or the video cannot be read.

    Example:
        >>> import tempfile
        >>> with tempfile.TemporaryDirectory() as folder:
        ...     _ = write_frames(folder, np.zeros((3, 8, 8, 3), np.uint8))
        ...     count_frames(folder)
        3
    """
    source = Path(source)
    if source.is_dir():
        return len(list_frame_files(source))
    if not source.is_file():
        raise InputError(f"scene source not found: {source}")
    capture = cv2.VideoCapture(str(source))
    try:
        reported = int(capture.get(cv2.CAP_PROP_FRAME_COUNT)) if capture.isOpened() else 0
        # Seeking may land on a key frame a little early; that still proves frames exist up
        # to there, and a file cut short fails to grab at all.
        if reported > 0 and capture.set(cv2.CAP_PROP_POS_FRAMES, reported - 1) \
                and capture.grab():
            return reported
    finally:
        capture.release()
    decoded = _decoded_count(source)
    if 0 < reported != decoded:
        _warn_partial(source, reported, decoded)
    return decoded


#: Frames decoded for a `SourceIdentity` hash (the first ones: cheap to decode).
IDENTITY_FRAMES = 3


@dataclass(frozen=True)
class SourceIdentity:
    """What a rain sequence holds, to bind a review to its content (`source_identity`).

    Attributes:
        path: the resolved path of the video file or frame folder when it was identified.
        size: bytes of the video file, or of the folder's frame files together.
        frames: the frame count (`count_frames`).
        digest: SHA-256 (hex) of the first `IDENTITY_FRAMES` decoded frames (shape and RGB
            bytes), so a re-encoded or edited copy differs even at the same size.
    """

    path: str
    size: int
    frames: int
    digest: str

    def same_content(self, other: SourceIdentity) -> bool:
        """Whether ``other`` holds the same frames: size, count and digest (not the path).

        A moved folder is the same content.
        """
        return (self.size, self.frames, self.digest) == (other.size, other.frames, other.digest)

    def describe(self) -> str:
        """One phrase for messages: ``PATH (N frames, B bytes, frames hash 0123456789ab)``."""
        return (f"{self.path} ({self.frames} frames, {self.size} bytes, frames hash "
                f"{self.digest[:12]})")

    def to_dict(self) -> dict[str, Any]:
        """The JSON form (a review file's ``identity``)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Any) -> SourceIdentity:
        """Read the JSON form back.

        Raises:
            ValueError: not an object with ``path`` (str), ``size``, ``frames`` (ints >= 0)
                and ``digest`` (64 hex digits).
        """
        ok = (isinstance(data, dict) and isinstance(data.get("path"), str)
              and all(isinstance(data.get(k), int) and not isinstance(data.get(k), bool)
                      and data[k] >= 0 for k in ("size", "frames"))
              and isinstance(data.get("digest"), str)
              and re.fullmatch(r"[0-9a-f]{64}", data["digest"]) is not None)
        if not ok:
            raise ValueError(f"source identity: expected {{path, size, frames, digest}}, got "
                             f"{data!r}")
        return cls(data["path"], data["size"], data["frames"], data["digest"])


def source_identity(source: str | os.PathLike) -> SourceIdentity:
    """The identity of a video file or frame folder: path, size, frame count, frames hash.

    Decodes only the first `IDENTITY_FRAMES` frames; the count comes from `count_frames`.

    Raises:
        InputError: the source is missing or unreadable.

    Example:
        >>> import tempfile
        >>> with tempfile.TemporaryDirectory() as tmp:
        ...     a = write_frames(Path(tmp, "a"), np.zeros((4, 8, 8, 3), np.uint8))[0].parent
        ...     b = write_frames(Path(tmp, "b"), np.ones((4, 8, 8, 3), np.uint8))[0].parent
        ...     source_identity(a).same_content(source_identity(b))
        False
    """
    path = Path(source)
    if not path.exists():
        raise InputError(f"scene source not found: {path}")
    path = path.resolve()
    if path.is_dir():
        size = sum(p.stat().st_size for p in list_frame_files(path))
    else:
        size = path.stat().st_size
    count = count_frames(path)
    frames = read_sequence(path, count=IDENTITY_FRAMES, min_frames=1)
    digest = hashlib.sha256()
    for frame in frames:
        digest.update(repr(frame.shape).encode())
        digest.update(np.ascontiguousarray(frame).tobytes())
    return SourceIdentity(str(path), int(size), int(count), digest.hexdigest())


def write_frames(folder: str | os.PathLike, frames: np.ndarray | Sequence[np.ndarray],
                 prefix: str = "frame", ext: str = ".png") -> list[Path]:
    """Write frames as numbered image files (each written atomically).

    Args:
        folder: output folder (created if missing).
        frames: N x H x W x 3 RGB, uint8 or float in [0, 1].
        prefix: file name prefix; files are ``{prefix}_{index:05d}{ext}`` (more digits when
            N > 100000), so name order is frame order.
        ext: an image suffix from ``IMAGE_SUFFIXES`` (".png" is lossless).

    Returns:
        The written paths, in frame order.
    """
    frames = check_frames(frames, floats=True)
    if ext.lower() not in IMAGE_SUFFIXES:
        raise ValueError(f"ext: expected one of {list(IMAGE_SUFFIXES)}, got {ext!r}")
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    digits = max(5, len(str(len(frames) - 1)))
    return [write_image(folder / f"{prefix}_{i:0{digits}d}{ext}", frame)
            for i, frame in enumerate(frames)]


def write_video(path: str | os.PathLike, frames: np.ndarray | Sequence[np.ndarray],
                fps: float = 25, codec: str | None = None) -> Path:
    """Write frames as a video file, atomically (temporary file, then ``os.replace``).

    Args:
        path: destination; its suffix picks the codec (``VIDEO_CODECS``: ".avi"/".mkv" use
            lossless FFV1, ".mp4"/".m4v"/".mov" use lossy mp4v).
        frames: N x H x W x 3 RGB, uint8 or float in [0, 1].
        fps: frames per second (> 0).
        codec: a four-character code overriding the suffix's default.

    Returns:
        The destination as a ``Path``.

    Raises:
        ValueError: bad frames, fps, suffix or codec.
        OSError: OpenCV cannot open a writer for this codec and container.
    """
    frames = check_frames(frames, floats=True)
    path = Path(path)
    with VideoWriter(path, frames.shape[1:3], fps, codec) as out:
        for frame in frames:
            out.write(frame)
    return path


class VideoWriter:
    """Write a video one frame at a time; the file appears (atomically) when the block ends.

    ``with VideoWriter(path, (h, w), fps) as out: out.write(frame)`` streams frames to a hidden
    temporary file beside ``path`` (`spanetlib.io.files.atomic_path`) and moves it onto
    ``path`` on a clean exit; an exception, or no frame written, leaves ``path`` untouched.

    Attributes:
        path: the destination.
        count: frames written so far.
    """

    def __init__(self, path: str | os.PathLike, size: tuple[int, int], fps: float = 25,
                 codec: str | None = None) -> None:
        """Check the options; nothing is opened before ``with``.

        Args:
            path: destination; its suffix picks the codec (``VIDEO_CODECS``).
            size: (height, width) of every frame.
            fps: frames per second (> 0).
            codec: a four-character code overriding the suffix's default.

        Raises:
            ValueError: bad suffix, codec, size or fps.
        """
        self.path = Path(path)
        suffix = self.path.suffix.lower()
        if codec is None:
            if suffix not in VIDEO_CODECS:
                raise ValueError(f"video suffix: expected one of {list(VIDEO_CODECS)}, got "
                                 f"{self.path.suffix!r}")
            codec = VIDEO_CODECS[suffix]
        if not isinstance(codec, str) or len(codec) != 4:
            raise ValueError(f"codec: expected a four-character code such as 'FFV1', got "
                             f"{codec!r}")
        if not fps > 0:
            raise ValueError(f"fps: expected > 0, got {fps!r}")
        self.size = (check_int("height", size[0], minimum=1),
                     check_int("width", size[1], minimum=1))
        self.codec, self.fps, self.count = codec, float(fps), 0
        self._stack: contextlib.ExitStack | None = None
        self._writer: cv2.VideoWriter | None = None

    def __enter__(self) -> VideoWriter:
        with contextlib.ExitStack() as stack:
            tmp = stack.enter_context(atomic_path(self.path))
            h, w = self.size
            writer = cv2.VideoWriter(str(tmp), cv2.VideoWriter_fourcc(*self.codec), self.fps,
                                     (w, h), True)
            if not writer.isOpened():
                raise OSError(f"OpenCV cannot write codec {self.codec!r} to "
                              f"{self.path.suffix!r}: {self.path}")
            stack.callback(writer.release)
            self._writer, self._stack = writer, stack.pop_all()
        return self

    def write(self, frame: np.ndarray) -> None:
        """Append one H x W x 3 RGB frame, uint8 or float in [0, 1] (`to_uint8`)."""
        if self._writer is None:
            raise RuntimeError("VideoWriter.write outside its `with` block")
        frame = np.asarray(frame)
        if frame.shape != (*self.size, 3):
            raise ValueError(f"frame {self.count}: expected shape {(*self.size, 3)}, got "
                             f"{frame.shape}")
        self._writer.write(cv2.cvtColor(to_uint8(frame, f"frame {self.count}"),
                                        cv2.COLOR_RGB2BGR))
        self.count += 1

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: Any) -> bool:
        stack, self._stack, self._writer = self._stack, None, None
        if stack is None:
            return False
        if kind is None and self.count == 0:
            with stack:  # discards the temporary file
                raise ValueError(f"no frame written to {self.path}")
        return bool(stack.__exit__(kind, exc, tb))


def list_scenes(src: str | os.PathLike) -> list[Path]:
    """The rain scenes directly inside ``src``: video files and folders of frames.

    Args:
        src: a folder.

    Returns:
        Video files (suffix in ``VIDEO_SUFFIXES``, any case) and sub-folders holding at least
        one image frame, in natural name order; hidden entries are skipped.

    Raises:
        InputError: ``src`` is missing or not a folder.
    """
    src = Path(src)
    if not src.exists():
        raise InputError(f"scene folder not found: {src}")
    if not src.is_dir():
        raise InputError(f"expected a folder of videos / frame folders, got a file: {src}")
    scenes = []
    for entry in src.iterdir():
        if entry.name.startswith("."):
            continue
        if entry.is_file() and entry.suffix.lower() in VIDEO_SUFFIXES:
            scenes.append(entry)
        elif entry.is_dir() and list_frame_files(entry):
            scenes.append(entry)
    return sorted(scenes, key=lambda p: natural_key(p.name))


def scene_name(source: str | os.PathLike) -> str:
    """The scene name of a video file (its stem) or a frame folder (its name), made safe.

    A name matching `SCENE_NAME_PATTERN` is kept. Any other (whitespace, accents, a leading
    dot or underscore) has each run of other characters replaced by ``_`` and gets ``-`` and
    8 hex digits of the original's SHA-1 appended: deterministic, and never equal to a kept
    name or to another original's (an export records the original in its manifest).

    Example:
        >>> import tempfile
        >>> with tempfile.TemporaryDirectory() as tmp:
        ...     video = Path(tmp, "street_01.mp4")
        ...     _ = video.write_bytes(b"")
        ...     scene_name(video), scene_name(Path(tmp, "roof"))  # a file: its stem
        ('street_01', 'roof')
        >>> scene_name("rain/my street")
        'my_street-3abb2a40'
    """
    source = Path(source)
    name = source.stem if source.is_file() else source.name
    if re.fullmatch(SCENE_NAME_PATTERN, name):
        return name
    safe = re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("._-")[:100] or "scene"
    digest = hashlib.sha1(name.encode("utf-8", "surrogateescape")).hexdigest()[:8]
    return f"{safe}-{digest}"
