"""Whether a video file carries a sound track, read from its container's headers.

OpenCV decodes and writes the picture only, so a derained video has no sound; the commands
say so when the input had some. OpenCV's pip wheels report no audio streams, hence this small
reader of the two container families phones and cameras write:

* ISO base media (``.mp4``, ``.mov``, ``.m4v``, ``.3gp``; ISO/IEC 14496-12): boxes of a 32-bit
  size (1: a 64-bit size follows; 0: to the end of the file) and a 4-character type; a track
  (``moov/trak``) is sound when its media handler (``mdia/hdlr``) is ``soun``.
* RIFF AVI: chunks of a 32-bit little-endian size, lists (``LIST``) of a 4-character kind;
  a stream (``hdrl/strl``) is sound when its header (``strh``) says ``auds``.

Other containers (Matroska, MPEG-TS, ...) are not read: the answer is None (unknown).
"""

from __future__ import annotations

import os
import struct
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

__all__ = ["has_sound_track"]

_ISO_CONTAINERS = {b"moov", b"trak", b"mdia"}  # boxes whose children lead to a handler
#: Largest box read whole (a ``moov`` of a long clip holds its sample tables: MBs).
_MAX_HEADER_BYTES = 64 << 20


def _iso_boxes(data: bytes, start: int, end: int) -> Iterator[tuple[bytes, int, int]]:
    """``(type, payload start, payload end)`` of the boxes in ``data[start:end]``."""
    pos = start
    while pos + 8 <= end:
        size, kind = struct.unpack_from(">I4s", data, pos)
        head = 8
        if size == 1:
            if pos + 16 > end:
                return
            size = struct.unpack_from(">Q", data, pos + 8)[0]
            head = 16
        elif size == 0:
            size = end - pos
        if size < head or pos + size > end:
            return
        yield kind, pos + head, pos + size
        pos += size


def _iso_top_level(f: BinaryIO, file_size: int) -> bytes | None:
    """The ``moov`` box of an ISO base media file (its payload), or None where there is none."""
    pos = 0
    while pos + 8 <= file_size:
        f.seek(pos)
        head = f.read(16)
        if len(head) < 8:
            return None
        size, kind = struct.unpack_from(">I4s", head)
        offset = 8
        if size == 1:
            if len(head) < 16:
                return None
            size, offset = struct.unpack_from(">Q", head, 8)[0], 16
        elif size == 0:
            size = file_size - pos
        if size < offset:
            return None
        if kind == b"moov":
            if size > _MAX_HEADER_BYTES:
                return None
            f.seek(pos + offset)
            return f.read(size - offset)
        pos += size
    return None


def _iso_has_sound(moov: bytes) -> bool:
    def handlers(start: int, end: int) -> Iterator[bytes]:
        for kind, lo, hi in _iso_boxes(moov, start, end):
            if kind == b"hdlr" and hi - lo >= 12:
                yield moov[lo + 8:lo + 12]  # version and flags, pre_defined, handler_type
            elif kind in _ISO_CONTAINERS:
                yield from handlers(lo, hi)

    return b"soun" in set(handlers(0, len(moov)))


def _avi_has_sound(f: BinaryIO, file_size: int) -> bool:
    f.seek(12)
    # The header list (hdrl) comes first; its stream lists (strl) hold each stream's header.
    head = f.read(12)
    if len(head) < 12 or head[:4] != b"LIST" or head[8:12] != b"hdrl":
        return False
    size = min(struct.unpack_from("<I", head, 4)[0] - 4, _MAX_HEADER_BYTES, file_size)
    data = f.read(size)

    def chunks(start: int, end: int) -> Iterator[tuple[bytes, int, int]]:
        pos = start
        while pos + 8 <= end:
            kind, length = struct.unpack_from("<4sI", data, pos)
            if pos + 8 + length > end:
                return
            yield kind, pos + 8, pos + 8 + length
            pos += 8 + length + (length & 1)  # chunks are padded to even sizes

    for kind, lo, hi in chunks(0, len(data)):
        if kind == b"LIST" and data[lo:lo + 4] == b"strl":
            for inner, ilo, _ in chunks(lo + 4, hi):
                if inner == b"strh" and data[ilo:ilo + 4] == b"auds":
                    return True
    return False


def has_sound_track(path: str | os.PathLike) -> bool | None:
    """Whether a video file holds a sound track.

    Args:
        path: a video file.

    Returns:
        True or False for ISO base media (MP4, MOV, 3GP) and AVI files; None for any other
        container, or a file that cannot be read or parsed.

    Example:
        >>> import tempfile
        >>> with tempfile.TemporaryDirectory() as tmp:
        ...     clip = Path(tmp, "clip.mkv")
        ...     _ = clip.write_bytes(bytes([0x1A, 0x45, 0xDF, 0xA3]))  # Matroska: not read
        ...     has_sound_track(clip) is None
        True
    """
    path = Path(path)
    try:
        file_size = path.stat().st_size
        with path.open("rb") as f:
            head = f.read(12)
            if len(head) >= 12 and head[:4] == b"RIFF" and head[8:12] == b"AVI ":
                return _avi_has_sound(f, file_size)
            if len(head) >= 8 and head[4:8] in (b"ftyp", b"moov", b"mdat", b"wide", b"free",
                                                 b"skip"):
                moov = _iso_top_level(f, file_size)
                return None if moov is None else _iso_has_sound(moov)
    except (OSError, struct.error):
        return None
    return None
