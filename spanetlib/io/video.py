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

Every command reads the same videos: any file FFmpeg (through OpenCV) decodes. `VIDEO_SUFFIXES`
lists the usual containers; `scan_scenes` takes a file of another suffix as a scene too when
`is_video` finds that it decodes, and names every entry of a folder it skips, with the reason.
A folder that holds one video and no frames is read as that video (`sequence_path`): datasets
often come as a folder per scene with its clip inside.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import warnings
from collections.abc import Iterator, Sequence
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
    "FrameSource",
    "IDENTITY_FRAMES",
    "PartialVideoWarning",
    "SCENE_NAME_PATTERN",
    "SceneListing",
    "SourceIdentity",
    "VIDEO_CODECS",
    "VIDEO_SUFFIXES",
    "VideoWriter",
    "count_frames",
    "frame_shape",
    "is_video",
    "iter_frames",
    "list_frame_files",
    "list_scenes",
    "no_frames_message",
    "read_sequence",
    "scan_scenes",
    "scene_name",
    "sequence_path",
    "source_identity",
    "write_frames",
    "write_video",
]

#: The video containers every command takes as scenes without looking inside (any case): the
#: usual ones FFmpeg reads, from phones (.mp4, .mov, .3gp), cameras and camcorders (.mts,
#: .m2ts), the web (.webm, .gif, .flv, .ogv) and older tools (.avi, .mpg, .wmv, ...). A file of
#: another suffix is a scene when it decodes (`is_video`).
VIDEO_SUFFIXES = (".mp4", ".m4v", ".mov", ".qt", ".3gp", ".3g2", ".avi", ".mkv", ".webm",
                  ".gif", ".mts", ".m2ts", ".ts", ".mpg", ".mpeg", ".m2v", ".vob", ".wmv",
                  ".asf", ".flv", ".f4v", ".ogv", ".ogg", ".mxf", ".dv", ".divx", ".y4m",
                  ".h264", ".264", ".hevc", ".h265")

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


#: Most files of other suffixes `_videos_in` opens to see whether they decode.
_PROBED_FILES = 4


def _videos_in(folder: Path) -> list[Path]:
    """The video files directly inside ``folder`` (not hidden), in natural name order.

    Those with a `VIDEO_SUFFIXES` suffix; where there are none, the files of other suffixes
    (not images) that decode (`is_video`), when there are at most :data:`_PROBED_FILES`.
    """
    files = sorted((p for p in folder.iterdir() if p.is_file() and not p.name.startswith(".")),
                   key=lambda p: natural_key(p.name))
    known = [p for p in files if p.suffix.lower() in VIDEO_SUFFIXES]
    if known:
        return known
    others = [p for p in files if p.suffix.lower() not in IMAGE_SUFFIXES]
    return [p for p in others if is_video(p)] if len(others) <= _PROBED_FILES else []


def sequence_path(source: str | os.PathLike) -> Path:
    """The path a sequence is read from: a folder holding one video and no frames gives the video.

    Video datasets often come as one folder per scene with the clip inside; such a folder is
    that clip. Any other path is returned as it is (the readers report what is wrong with it).

    Args:
        source: a video file or a folder (of frames, or holding a single video file).

    Returns:
        The video inside a folder that holds exactly one (and no image frames), else ``source``.

    Example:
        >>> import tempfile
        >>> with tempfile.TemporaryDirectory() as tmp:
        ...     _ = Path(tmp, "clip.mp4").write_bytes(b"")
        ...     sequence_path(tmp).name
        'clip.mp4'
    """
    path = Path(source)
    if path.is_dir() and not list_frame_files(path):
        videos = _videos_in(path)
        if len(videos) == 1:
            return videos[0]
    return path


def no_frames_message(folder: Path) -> str:
    """Why a folder that `sequence_path` keeps as a folder holds no sequence."""
    videos = _videos_in(folder)
    if videos:
        shown = ", ".join(p.name for p in videos[:3]) + (", ..." if len(videos) > 3 else "")
        return (f"no image frames ({', '.join(IMAGE_SUFFIXES)}) in folder {folder}, and "
                f"{len(videos)} videos ({shown}): name one of them")
    return f"no image frames ({', '.join(IMAGE_SUFFIXES)}) in folder: {folder}"


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
        raise InputError(no_frames_message(folder))
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
    path = sequence_path(source)
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
    source = sequence_path(source)
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
    path = sequence_path(source)
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


def is_video(path: str | os.PathLike) -> bool:
    """Whether OpenCV (FFmpeg) opens ``path`` as a video and decodes a frame of it.

    Image files are never videos here (OpenCV would open one as a one-frame sequence).

    Args:
        path: any path.

    Returns:
        True if a frame decodes.
    """
    path = Path(path)
    if not path.is_file() or path.suffix.lower() in IMAGE_SUFFIXES:
        return False
    capture = cv2.VideoCapture(str(path))
    try:
        return bool(capture.isOpened() and capture.grab())
    finally:
        capture.release()


@dataclass
class SceneListing:
    """The entries of a folder of scenes: those that are scenes, and why the others are not.

    Attributes:
        scenes: video files and frame folders, in natural name order.
        skipped: ``(entry, reason)`` for every other entry, in natural name order.
    """

    scenes: list[Path]
    skipped: list[tuple[Path, str]]


def _skip_reason(entry: Path) -> str | None:
    """Why ``entry`` is not a scene, or None when it is one."""
    if entry.name.startswith("."):
        return "hidden (its name starts with '.')"
    if entry.is_dir():
        if list_frame_files(entry) or sequence_path(entry) != entry:
            return None
        videos = len(_videos_in(entry))
        if videos:
            return (f"a folder of {videos} videos and no image frames (a scene folder holds "
                    "frames or one video; give this folder as SRC to make each video a scene)")
        return (f"a folder without image frames ({', '.join(IMAGE_SUFFIXES)}) or a video "
                "directly inside it")
    if not entry.is_file():
        return "neither a file nor a folder"
    suffix = entry.suffix.lower()
    if suffix in VIDEO_SUFFIXES:
        return None
    if suffix in IMAGE_SUFFIXES:
        return "a single image, not a scene (put a scene's frames in a folder of their own)"
    if is_video(entry):
        return None
    return "not a video FFmpeg can decode, nor a folder of frames"


def scan_scenes(src: str | os.PathLike) -> SceneListing:
    """The rain scenes directly inside ``src``, and every other entry with why it is skipped.

    A scene is a file with a suffix in ``VIDEO_SUFFIXES`` (any case; its content is read by
    the export, which names a file that does not decode), a file of another suffix that
    decodes as a video (`is_video`), a sub-folder holding at least one image frame, or a
    sub-folder holding one video file and no frames (read as that video; the scene keeps the
    folder's name). Hidden entries, single images, folders without frames or with several
    videos, and files FFmpeg cannot decode are skipped, each with a reason.

    Args:
        src: a folder.

    Returns:
        A `SceneListing`.

    Raises:
        InputError: ``src`` is missing or not a folder.
    """
    src = Path(src)
    if not src.exists():
        raise InputError(f"scene folder not found: {src}")
    if not src.is_dir():
        raise InputError(f"expected a folder of videos / frame folders, got a file: {src}")
    listing = SceneListing([], [])
    for entry in sorted(src.iterdir(), key=lambda p: natural_key(p.name)):
        reason = _skip_reason(entry)
        if reason is None:
            listing.scenes.append(entry)
        else:
            listing.skipped.append((entry, reason))
    return listing


def list_scenes(src: str | os.PathLike) -> list[Path]:
    """The rain scenes directly inside ``src``: video files and folders of frames.

    The scenes of `scan_scenes` (which also says why each other entry is skipped).

    Args:
        src: a folder.

    Returns:
        Video files and sub-folders holding at least one image frame, in natural name order.

    Raises:
        InputError: ``src`` is missing or not a folder.
    """
    return scan_scenes(src).scenes


def frame_shape(source: str | os.PathLike) -> tuple[int, int]:
    """The ``(height, width)`` of a sequence's frames, without decoding the whole sequence.

    A video: the size its container records (the first frame decoded where it records none);
    a frame folder: its first frame's size.

    Args:
        source: a video file or a folder of image frames.

    Returns:
        ``(height, width)`` in pixels.

    Raises:
        InputError: the source is missing or cannot be read.
    """
    path = sequence_path(source)
    if path.is_file():
        capture = cv2.VideoCapture(str(path))
        try:
            if not capture.isOpened():
                raise InputError(f"cannot open video: {path}")
            h = int(capture.get(cv2.CAP_PROP_FRAME_HEIGHT))
            w = int(capture.get(cv2.CAP_PROP_FRAME_WIDTH))
        finally:
            capture.release()
        if h > 0 and w > 0:
            return h, w
    frame = read_sequence(path, count=1, min_frames=1)[0]
    return int(frame.shape[0]), int(frame.shape[1])


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


def iter_frames(source: str | os.PathLike, start: int = 0, count: int | None = None
                ) -> Iterator[np.ndarray]:
    """Yield a rain sequence's frames one at a time, holding only the current one.

    The streaming counterpart of :func:`read_sequence` (same sources, frame order and RGB
    conversion), for clips too long to hold in memory.

    Args:
        source: a video file or a folder of image frames.
        start: index of the first frame (>= 0).
        count: most frames to yield (``None``: all the rest).

    Yields:
        H x W x 3 uint8 RGB frames.

    Raises:
        InputError: a missing or unreadable source, an image file, frames of different sizes.
    """
    check_int("start", start, minimum=0)
    check_int("count", count, minimum=0, allow_none=True)
    path = sequence_path(source)
    if not path.exists():
        raise InputError(f"sequence not found: {path}")
    if path.is_dir():
        files = list_frame_files(path)
        if not files:
            raise InputError(no_frames_message(path))
        stop = len(files) if count is None else min(len(files), start + count)
        first_shape = None
        for file in files[start:stop]:
            image = read_image(file)
            if first_shape is None:
                first_shape = image.shape
            elif image.shape != first_shape:
                raise InputError(f"frame {file.name} is {image.shape[1]}x{image.shape[0]} but "
                                 f"the first is {first_shape[1]}x{first_shape[0]}; all frames "
                                 f"in {path} must have the same size")
            yield image
        return
    if path.suffix.lower() in IMAGE_SUFFIXES:
        raise InputError(f"expected a video file or a folder of frames, got an image: {path}")
    cap = cv2.VideoCapture(str(path))
    try:
        if not cap.isOpened():
            raise InputError(f"cannot open video: {path}")
        skipped = 0
        while skipped < start and cap.grab():
            skipped += 1
        done = 0
        while count is None or done < count:
            ok, frame = cap.read()
            if not ok or frame is None:
                break
            if frame.ndim == 2:
                frame = cv2.cvtColor(frame, cv2.COLOR_GRAY2RGB)
            else:
                frame = cv2.cvtColor(frame[:, :, :3], cv2.COLOR_BGR2RGB)
            done += 1
            yield frame
        if skipped == 0 and done == 0 and count != 0:
            raise InputError(f"cannot read any frame from video: {path}")
    finally:
        cap.release()


class FrameSource:
    """A rain sequence read on demand, in passes, never held whole in memory.

    Each pass (:meth:`__iter__`, :meth:`take`) decodes the source again from ``start``, so
    the memory a consumer needs is what it keeps, not the clip. Arrays work too (a pass is
    then a loop over the array), so one code path serves both.

    Args:
        source: a video file, a folder of frames, or an N x H x W x 3 uint8 array.
        start: first frame (files only).
        count: most frames (files only; ``None``: all the rest).
        progress: show a tqdm bar for each full pass (:meth:`__iter__`).

    Raises:
        InputError: as :func:`iter_frames`, or a source with fewer than 1 frame.
    """

    def __init__(self, source: str | os.PathLike | np.ndarray, start: int = 0,
                 count: int | None = None, *, progress: bool = False) -> None:
        self.array = source if isinstance(source, np.ndarray) else None
        self.source = source if self.array is not None else sequence_path(source)
        #: What messages call the source: its path, or the array's frame count.
        self.name = str(source) if self.array is None else f"an array of {len(source)} frames"
        self.start, self.count = int(start), count
        self.progress = progress
        if self.array is not None:
            self.n = len(self.array)
            self.shape = tuple(self.array.shape[1:3])
            return
        first = next(iter_frames(source, start, 1), None)
        if first is None:
            raise InputError(f"found 0 frames in {source} from frame {start}")
        check_image_size(first, f"frame {start} of {source}")
        self.shape = first.shape[:2]
        total = max(0, count_frames(source) - self.start)  # one seek, no decoding pass
        self.n = total if count is None else min(total, int(count))

    def __len__(self) -> int:
        return self.n

    def iter_at(self, indices: Sequence[int] | np.ndarray) -> Iterator[tuple[int, np.ndarray]]:
        """One pass yielding ``(index, frame)`` for the frames at ``indices`` only, in order.

        A video grabs the other frames without converting them; a folder does not read them.
        """
        want = {int(i) for i in indices}
        if self.array is not None:
            for i in sorted(want):
                yield i, self.array[i]
            return
        last = max(want, default=-1)
        path = Path(self.source)
        if path.is_dir():
            files = list_frame_files(path)[self.start:self.start + self.n]
            for i in sorted(want):
                image = read_image(files[i])
                if image.shape[:2] != self.shape:
                    raise InputError(f"frame {files[i].name} of {path} is {image.shape[1]}x"
                                     f"{image.shape[0]}, the first {self.shape[1]}x"
                                     f"{self.shape[0]}")
                yield i, image
            return
        cap = cv2.VideoCapture(str(path))
        try:
            for _ in range(self.start):
                if not cap.grab():
                    return
            for i in range(min(self.n, last + 1)):
                if not cap.grab():
                    return
                if i not in want:
                    continue
                ok, frame = cap.retrieve()
                if not ok or frame is None:
                    return
                yield i, (cv2.cvtColor(frame, cv2.COLOR_GRAY2RGB) if frame.ndim == 2
                          else cv2.cvtColor(frame[:, :, :3], cv2.COLOR_BGR2RGB))
        finally:
            cap.release()

    def __iter__(self) -> Iterator[np.ndarray]:
        """One pass over every frame (H x W x 3 uint8 RGB), in order."""
        if self.array is not None:
            yield from self.array
            return
        with tqdm(iter_frames(self.source, self.start, self.count), total=self.n,
                  desc=f"reading {Path(self.source).name}", unit="frame",
                  disable=not self.progress, leave=False) as frames:
            for k, frame in enumerate(frames):
                if k >= self.n:
                    return
                if frame.shape[:2] != self.shape:
                    raise InputError(f"frame {self.start + k} of {self.name} is "
                                     f"{frame.shape[1]}x{frame.shape[0]}, the first "
                                     f"{self.shape[1]}x{self.shape[0]}")
                yield frame

    def take(self, indices: Sequence[int] | np.ndarray) -> np.ndarray:
        """The frames at ``indices`` (sorted, unique) as a K x H x W x 3 array, in one pass."""
        idx = np.asarray(indices, np.int64)
        if self.array is not None:
            return self.array[idx]
        out = np.empty((len(idx), *self.shape, 3), np.uint8)
        want = {int(i): k for k, i in enumerate(idx)}
        found = 0
        for i, frame in self.iter_at(idx):
            out[want[i]] = frame
            found += 1
        if found < len(idx):
            raise InputError(f"{self.name}: only {found} of the {len(idx)} frames asked for "
                             "decoded")
        return out
