"""Files on disk: atomic writes, image reading and writing.

Every file the package writes goes through a temporary file in the same folder followed by
``os.replace``, so an interrupted run leaves either the old file or the new one, never half.
The writer behaves like ``open(path, "w")`` where that matters to a user: a new file gets the
permissions the umask gives (``0o666 & ~umask``), a replaced file keeps its permission bits, a
symbolic link is written through (its target is replaced, the link stays), and anything that
is not a regular file (a device such as ``/dev/null``, a folder, a FIFO, a socket) is refused
rather than replaced. Commands check their outputs up front with `check_output_path` and
`check_output_folder`, before any heavy work.

Images: `read_image` gives H x W x 3 uint8 RGB whatever the file held (the frames and pairs of
the data pipeline); `read_image_with_format` also says what the file held (`ImageFormat`:
grayscale, 16-bit, alpha) so that `restore_format` can give an output of the same kind.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
import stat
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from spanetlib.io.errors import InputError

__all__ = [
    "ALPHA_SUFFIXES",
    "IMAGE_SUFFIXES",
    "MIN_IMAGE_SIDE",
    "SIXTEEN_BIT_SUFFIXES",
    "UNIT_RANGE_TOLERANCE",
    "ImageFormat",
    "atomic_path",
    "atomic_write",
    "atomic_write_bytes",
    "atomic_write_json",
    "atomic_write_text",
    "check_image_size",
    "check_image_values",
    "check_output_folder",
    "check_output_path",
    "ensure_dirs",
    "natural_key",
    "read_image",
    "read_image_with_format",
    "restore_format",
    "round_to_uint8",
    "to_uint8",
    "to_unit_float",
    "write_image",
]

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")
#: Suffixes whose OpenCV encoder keeps 16 bits per channel (the others silently write 8).
SIXTEEN_BIT_SUFFIXES = (".png", ".tif", ".tiff")
#: Suffixes whose OpenCV encoder keeps an alpha channel (JPEG silently drops it).
ALPHA_SUFFIXES = (".png", ".tif", ".tiff", ".webp", ".bmp")
#: Smallest image side accepted where images come in: below it rain removal and background
#: estimation mean nothing (rain streaks are longer) and some OpenCV steps fail.
MIN_IMAGE_SIDE = 8
#: How far outside [0, 1] a float image may stray (rounding, interpolation) before it is
#: refused; values within it are clipped. 0.01 is 2.55 levels of 255.
UNIT_RANGE_TOLERANCE = 0.01




# --------------------------------------------------------------------------------------------
# Atomic writes
# --------------------------------------------------------------------------------------------
def _destination(path: Path) -> tuple[Path, os.stat_result | None]:
    """The file a write to ``path`` replaces (symlinks followed) and its stat, if it exists.

    Raises:
        InputError: the destination exists and is not a regular file.
    """
    target = Path(os.path.realpath(path)) if path.is_symlink() else path
    try:
        info = os.stat(target)
    except (FileNotFoundError, NotADirectoryError):
        return target, None
    if not stat.S_ISREG(info.st_mode):
        via = f" (the target of the link {path})" if target != path else ""
        raise InputError(f"{target}{via} is not a regular file (a device, folder, FIFO or "
                         "socket); refusing to replace it: choose another output path")
    return target, info


def _create_temp(folder: Path, name: str, suffix: str) -> Path:
    """Create an empty hidden temporary file in ``folder`` with the umask's permissions.

    ``os.open`` with mode 0o666 lets the kernel apply the umask (and a folder's default ACL),
    as ``open()`` does; ``tempfile.mkstemp`` would give 0o600 whatever the umask.
    """
    for _ in range(100):
        tmp = folder / f".{name}.{secrets.token_hex(4)}.tmp{suffix}"
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0),
                         0o666)
        except FileExistsError:
            continue
        os.close(fd)
        return tmp
    raise FileExistsError(f"cannot create a temporary file in {folder}")


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """A hidden temporary path beside ``path`` to write; moved onto ``path`` when the block ends.

    ``with atomic_path(p) as tmp: ...`` writes ``tmp`` (same folder and suffix, so writers that
    pick a format by suffix work); a clean exit replaces ``path`` atomically, an exception
    deletes ``tmp`` and leaves ``path`` as it was. Like ``open(path, "w")``: a new file gets
    ``0o666 & ~umask``, a replaced file keeps its permission bits, and a symbolic link is
    written through (its target is replaced, the link stays).

    Args:
        path: final destination; its parent folders are created.

    Yields:
        The temporary path.

    Raises:
        InputError: the destination (or a link's target) is a device, folder, FIFO or socket
            (before the block runs).
    """
    target, existing = _destination(Path(path))
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = _create_temp(target.parent, target.name, target.suffix)
    try:
        yield tmp
        if existing is not None:
            os.chmod(tmp, stat.S_IMODE(existing.st_mode) & 0o777)
        os.replace(tmp, target)
    except BaseException:
        if os.path.lexists(tmp):
            os.unlink(tmp)
        raise


def atomic_write(path: str | os.PathLike, write: Callable[[str], None]) -> Path:
    """Call ``write(tmp_path)`` and move the result onto ``path`` atomically (`atomic_path`).

    Args:
        path: final destination; its parent folders are created.
        write: a function that writes the complete file to the temporary path it is given.

    Returns:
        The destination as a ``Path`` (``path`` itself, also when it is a link).

    Raises:
        InputError: the destination (or a link's target) is a device, folder, FIFO or socket.
    """
    with atomic_path(path) as tmp:
        write(str(tmp))
    return Path(path)


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically."""
    return atomic_write(path, lambda tmp: Path(tmp).write_bytes(data))


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    """Write UTF-8 ``text`` to ``path`` atomically."""
    return atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | os.PathLike, obj: Any) -> Path:
    """Write ``obj`` as indented JSON to ``path`` atomically."""
    return atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=False) + "\n")




def ensure_dirs(*folders: str | os.PathLike) -> tuple[Path, ...]:
    """Create folders (with their parents) when missing; return them as Paths, in order.

    Example:
        >>> import tempfile
        >>> root = Path(tempfile.mkdtemp())
        >>> results, figures = ensure_dirs(root / "results", root / "results" / "figures")
        >>> figures.is_dir(), figures.relative_to(root).as_posix()
        (True, 'results/figures')
    """
    paths = tuple(Path(folder) for folder in folders)
    for path in paths:
        path.mkdir(parents=True, exist_ok=True)
    return paths


# --------------------------------------------------------------------------------------------
# Output paths, checked before any heavy work
# --------------------------------------------------------------------------------------------
def check_output_folder(folder: str | os.PathLike) -> Path:
    """Check that ``folder`` is, or can be created as, a folder this process can write to.

    Nothing is created. Call it before heavy work, so that a bad output path fails at once.

    Args:
        folder: the output folder (it may not exist yet).

    Returns:
        ``folder`` as a ``Path``.

    Raises:
        InputError: ``folder``, or the nearest existing folder above it, is not a folder or is
            not writable.
    """
    folder = Path(folder)
    probe = folder
    while not os.path.exists(probe):  # the nearest existing ancestor would hold the new ones
        if probe.parent == probe:
            break
        probe = probe.parent
    if not probe.is_dir():
        raise InputError(f"cannot create {folder}: {probe} is not a folder")
    if not os.access(probe, os.W_OK | os.X_OK):
        raise InputError(f"cannot write to {probe}: permission denied")
    return folder


def _image_suffix_problem(path: Path) -> str | None:
    suffix = path.suffix.lower()
    if not suffix:
        return f"{path} has no suffix: name the image format, e.g. {path.name}.png"
    if suffix not in IMAGE_SUFFIXES or not cv2.haveImageWriter(f"x{suffix}"):
        return (f"cannot write an image as {path.suffix!r} ({path}); use one of "
                f"{', '.join(IMAGE_SUFFIXES)}")
    return None


def check_output_path(path: str | os.PathLike, overwrite: bool = False, image: bool = False
                      ) -> Path:
    """Check an output file before any heavy work: the one check of every writing command.

    Checks that an image suffix can be encoded (``image=True``), that an existing ``path`` is
    a regular file (after following a symlink) and is replaced only with ``overwrite``, and
    that its folder exists or can be created and is writable (`check_output_folder`).
    Nothing is written or created.

    Args:
        path: the file a command will write.
        overwrite: whether an existing file may be replaced (the ``--overwrite`` option).
        image: whether ``path`` is an image (its suffix must be one OpenCV can write).

    Returns:
        ``path`` as a ``Path``.

    Raises:
        InputError: one line saying what is wrong and what to do.

    Example:
        >>> check_output_path("out.txt", image=True)
        Traceback (most recent call last):
        ...
        spanetlib.io.errors.InputError: cannot write an image as '.txt' (out.txt); use one of \
.png, .jpg, .jpeg, .bmp, .tif, .tiff, .webp
    """
    path = Path(path)
    if image:
        problem = _image_suffix_problem(path)
        if problem:
            raise InputError(problem)
    _, existing = _destination(path)
    if existing is not None and not overwrite:
        raise InputError(f"{path} exists; pass --overwrite (overwrite=True) to replace it")
    check_output_folder(Path(os.path.realpath(path)).parent if path.is_symlink()
                        else path.parent)
    return path


# --------------------------------------------------------------------------------------------
# Image values and sizes
# --------------------------------------------------------------------------------------------
def check_image_values(image: np.ndarray, name: str = "image") -> np.ndarray:
    """Check an image's type and value range at a public entry point.

    Accepted: uint8 (0-255), or float in [0, 1] give or take `UNIT_RANGE_TOLERANCE`. A float
    image in 0-255 is the usual mistake; it is refused, never clipped to white.

    Args:
        image: an array of any shape.
        name: what the image is, for the message (``"clean image"``).

    Returns:
        ``image`` as an ndarray (unchanged).

    Raises:
        TypeError: neither uint8 nor float.
        ValueError: NaN or infinite values, or floats outside [0, 1] beyond the tolerance.
    """
    image = np.asarray(image)
    expected = "expected uint8, or float in [0, 1]"
    if image.dtype == np.uint8:
        return image
    if not np.issubdtype(image.dtype, np.floating):
        raise TypeError(f"{name}: {expected}; got dtype {image.dtype}")
    if image.size == 0:
        return image
    if not np.isfinite(image).all():
        raise ValueError(f"{name}: {expected}; it contains NaN or infinite values")
    lo, hi = float(image.min()), float(image.max())
    if lo < -UNIT_RANGE_TOLERANCE or hi > 1.0 + UNIT_RANGE_TOLERANCE:
        hint = (" (a 0-255 float image? divide it by 255)"
                if lo >= -UNIT_RANGE_TOLERANCE and hi <= 255.0 + UNIT_RANGE_TOLERANCE else "")
        raise ValueError(f"{name}: {expected}; got {image.dtype} with values in "
                         f"[{lo:.4g}, {hi:.4g}]{hint}")
    return image


def check_image_size(image: np.ndarray, name: str = "image",
                     min_side: int = MIN_IMAGE_SIDE) -> None:
    """Refuse an H x W (x C) image smaller than ``min_side`` along either side.

    Raises:
        InputError: ``"{name} is H x W pixels; images must be at least 8 x 8"``.
    """
    h, w = np.shape(image)[:2]
    if h < min_side or w < min_side:
        raise InputError(f"{name} is {h} x {w} pixels; images must be at least "
                         f"{min_side} x {min_side}")


def to_unit_float(image: np.ndarray) -> np.ndarray:
    """Float32 in [0, 1]: uint8 divided by 255, 16-bit by 65535, floats clipped to [0, 1]."""
    image = np.asarray(image)
    if image.dtype == np.uint8:
        return image.astype(np.float32) / np.float32(255.0)
    if image.dtype == np.uint16:
        return image.astype(np.float32) / np.float32(65535.0)
    if not np.issubdtype(image.dtype, np.floating):
        raise TypeError(f"expected a uint8, uint16 or float image, got dtype {image.dtype}")
    return np.clip(image.astype(np.float32, copy=False), 0.0, 1.0)


def to_uint8(image: np.ndarray, name: str = "image") -> np.ndarray:
    """Convert an image to uint8: floats are taken as [0, 1] (`check_image_values`), rounded.

    Raises:
        TypeError, ValueError: see `check_image_values`.
    """
    image = check_image_values(image, name)
    if image.dtype == np.uint8:
        return image
    return (np.clip(image, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)


def round_to_uint8(levels: np.ndarray) -> np.ndarray:
    """Round float levels (0-255 scale, any shape) to uint8 with `to_uint8`'s rule: half up.

    Values outside [0, 255] are clipped. ``x + 0.5`` then floor, so 2.5 gives 3 (``np.rint``
    would give 2): one rule for every estimate, export and display.
    """
    levels = np.asarray(levels)
    if levels.dtype.kind != "f":
        levels = levels.astype(np.float32)
    # + 0.5, clip to [0, 255], truncate: floor(x + 0.5) for the values that remain
    shifted = levels + levels.dtype.type(0.5)
    return np.clip(shifted, 0.0, 255.0, out=shifted).astype(np.uint8)


def natural_key(name: str) -> tuple:
    """Sort key for names with numbers in natural order: ``frame2`` before ``frame10``.

    Letters compare case-insensitively; names equal under that rule fall back to the exact
    name, so the order never depends on the order found on disk.
    """
    parts = re.split(r"(\d+)", name)
    return tuple(int(p) if p.isdigit() else p.lower() for p in parts), name


def _to_uint16(image: np.ndarray, name: str = "image") -> np.ndarray:
    """uint16 stays; uint8 and [0, 1] floats are scaled to 0-65535 and rounded."""
    if image.dtype == np.uint16:
        return image
    image = check_image_values(image, name)
    if image.dtype == np.uint8:
        return image.astype(np.uint16) * 257
    return (np.clip(image, 0.0, 1.0) * 65535.0 + 0.5).astype(np.uint16)


# --------------------------------------------------------------------------------------------
# Reading and writing images
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ImageFormat:
    """What an image file held, so an output can be written the same way (`restore_format`).

    Attributes:
        gray: the file's colour channels are one gray channel (a single-channel file, or
            gray with alpha, which OpenCV decodes as equal colour channels).
        bit_depth: bits per channel, 8 or 16.
        alpha: the H x W alpha plane as stored (uint8 or uint16), or None.
    """

    gray: bool
    bit_depth: int
    alpha: np.ndarray | None = field(default=None, compare=False, repr=False)

    @property
    def has_alpha(self) -> bool:
        """Whether the file had an alpha channel."""
        return self.alpha is not None

    def describe(self) -> str:
        """E.g. ``"16-bit grayscale"`` or ``"8-bit RGB with alpha"``."""
        kind = "grayscale" if self.gray else "RGB"
        return f"{self.bit_depth}-bit {kind}" + (" with alpha" if self.has_alpha else "")


def _decode(path: Path, flags: int) -> np.ndarray:
    if not path.is_file():
        raise InputError(f"image not found: {path}")
    data = np.fromfile(str(path), dtype=np.uint8)
    image = cv2.imdecode(data, flags) if data.size else None
    if image is None:
        raise InputError(f"cannot read image: {path}")
    return image


def read_image(path: str | os.PathLike) -> np.ndarray:
    """Read an image file as H x W x 3 uint8 **RGB**.

    Grayscale files are expanded to three channels, 16-bit files reduced to 8 bits and an
    alpha channel is dropped: the form the data pipeline works on. To keep what the file held,
    use `read_image_with_format`.

    Raises:
        InputError: the file is missing or cannot be decoded as an image.
    """
    return cv2.cvtColor(_decode(Path(path), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)


def read_image_with_format(path: str | os.PathLike, min_side: int = MIN_IMAGE_SIDE
                           ) -> tuple[np.ndarray, ImageFormat]:
    """Read an image for processing and say what the file held, to write the result alike.

    Args:
        path: an image file.
        min_side: smallest height and width accepted.

    Returns:
        ``(image, fmt)``: ``image`` is H x W x 3 RGB, uint8 for 8-bit files and float32 in
        [0, 1] for 16-bit files (``value / 65535``: the precision is kept); a gray file's
        channel is repeated three times; the alpha plane is moved to ``fmt.alpha``. ``fmt``
        is the file's `ImageFormat`; ``restore_format(result, fmt)`` turns a processed
        ``image`` back into the file's kind.

    Raises:
        InputError: the file is missing or unreadable, smaller than ``min_side``, or holds
            samples other than 8 or 16-bit integers (such as 32-bit float TIFF).
    """
    path = Path(path)
    raw = _decode(path, cv2.IMREAD_UNCHANGED)
    if raw.dtype not in (np.uint8, np.uint16):
        kind = {"f": "float", "i": "signed integer"}.get(raw.dtype.kind, raw.dtype.name)
        raise InputError(f"{path} holds {raw.dtype.itemsize * 8}-bit {kind} samples; only 8 "
                         "or 16-bit integer images are supported: convert it first")
    check_image_size(raw, str(path), min_side)
    if raw.ndim == 3 and raw.shape[2] == 1:
        raw = raw[..., 0]
    if raw.ndim == 2:
        rgb, alpha = np.repeat(raw[..., None], 3, axis=2), None
    elif raw.shape[2] in (3, 4):
        rgb = cv2.cvtColor(np.ascontiguousarray(raw[..., :3]), cv2.COLOR_BGR2RGB)
        alpha = raw[..., 3].copy() if raw.shape[2] == 4 else None
    else:
        raise InputError(f"{path} has {raw.shape[2]} channels; expected 1, 3 or 4")
    gray = raw.ndim == 2 or (alpha is not None and bool(
        (raw[..., 0] == raw[..., 1]).all() and (raw[..., 1] == raw[..., 2]).all()))
    depth = 16 if raw.dtype == np.uint16 else 8
    if depth == 16:
        rgb = rgb.astype(np.float32) / np.float32(65535.0)
    return rgb, ImageFormat(gray=gray, bit_depth=depth, alpha=alpha)


def restore_format(image: np.ndarray, fmt: ImageFormat) -> np.ndarray:
    """Turn a processed H x W x 3 RGB image back into the kind of file ``fmt`` describes.

    Gray: the mean of the three channels (a gray input gives a gray output, never three
    unequal channels). Depth: uint8 or uint16 (rounded). Alpha: ``fmt.alpha`` appended
    unchanged. Pass the result to `write_image` with a suffix that can hold it (16 bits:
    `SIXTEEN_BIT_SUFFIXES`; alpha: `ALPHA_SUFFIXES`; PNG holds everything).

    Args:
        image: H x W x 3 RGB, uint8 or float in [0, 1].
        fmt: the input file's format (`read_image_with_format`).

    Returns:
        H x W (gray), H x W x 3 (RGB) or H x W x 4 (RGBA; gray with alpha as equal colour
        channels, the form OpenCV writes), uint8 or uint16.

    Raises:
        ValueError: bad shape or values (`check_image_values`), or an alpha plane of another
            size.

    Example:
        >>> out = restore_format(np.full((2, 2, 3), 0.5), ImageFormat(gray=True, bit_depth=16))
        >>> out.shape, out.dtype.name, int(out[0, 0])
        ((2, 2), 'uint16', 32768)
    """
    image = check_image_values(image, "processed image")
    if image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"expected an H x W x 3 RGB image, got shape {image.shape}")
    if fmt.gray:
        unit = image.astype(np.float32) / (255.0 if image.dtype == np.uint8 else 1.0)
        image = unit.mean(axis=2)
    out = _to_uint16(image) if fmt.bit_depth == 16 else to_uint8(image)
    if fmt.alpha is not None:
        if fmt.alpha.shape != out.shape[:2]:
            raise ValueError(f"alpha is {fmt.alpha.shape[0]} x {fmt.alpha.shape[1]} but the "
                             f"image is {out.shape[0]} x {out.shape[1]}")
        colour = np.repeat(out[..., None], 3, axis=2) if out.ndim == 2 else out
        alpha = fmt.alpha
        if alpha.dtype != out.dtype:  # an ImageFormat made by hand with another depth
            alpha = _to_uint16(alpha) if out.dtype == np.uint16 else to_uint8(alpha / 65535.0)
        out = np.concatenate([colour, alpha[..., None]], axis=2)
    return out


def write_image(path: str | os.PathLike, image: np.ndarray) -> Path:
    """Write an image atomically; the format follows the suffix (default ``.png``).

    Args:
        path: destination.
        image: H x W (gray), H x W x 3 (RGB) or H x W x 4 (RGBA); uint8, float in [0, 1]
            (rounded to uint8) or uint16 (written as 16-bit).

    Raises:
        InputError: the suffix cannot hold the image (16 bits, alpha) or cannot be encoded;
            the destination is not a regular file.
        ValueError, TypeError: a bad shape, dtype or value range (`check_image_values`).
    """
    path = Path(path)
    image = np.asarray(image)
    suffix = path.suffix.lower() or ".png"
    if image.ndim not in (2, 3) or (image.ndim == 3 and image.shape[2] not in (3, 4)):
        raise ValueError(f"expected H x W x 3, H x W x 4 or H x W, got shape {image.shape}")
    if image.dtype == np.uint16:
        if suffix not in SIXTEEN_BIT_SUFFIXES:
            raise InputError(f"{path}: {suffix!r} cannot hold 16-bit images; write "
                             f"{' or '.join(SIXTEEN_BIT_SUFFIXES)}")
    else:
        image = to_uint8(image)
    if image.ndim == 3 and image.shape[2] == 4:
        if suffix not in ALPHA_SUFFIXES:
            raise InputError(f"{path}: {suffix!r} cannot hold an alpha channel; write "
                             f"{' or '.join(ALPHA_SUFFIXES)}")
        image = cv2.cvtColor(image, cv2.COLOR_RGBA2BGRA)
    elif image.ndim == 3:
        image = cv2.cvtColor(image, cv2.COLOR_RGB2BGR)
    ok, encoded = cv2.imencode(suffix, image)
    if not ok:
        raise InputError(f"cannot encode an image as {suffix!r}: {path}")
    return atomic_write_bytes(path, encoded.tobytes())
