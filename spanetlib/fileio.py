"""Files on disk: atomic writes, image reading and writing, and the user-facing input error.

Every file the package writes goes through a temporary file in the same folder followed by
``os.replace``, so an interrupted run leaves either the old file or the new one, never half.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import cv2
import numpy as np

__all__ = [
    "IMAGE_SUFFIXES",
    "InputError",
    "atomic_torch_save",
    "atomic_write",
    "atomic_write_bytes",
    "atomic_write_json",
    "atomic_write_text",
    "ensure_dirs",
    "read_image",
    "to_uint8",
    "write_image",
]

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")


class InputError(ValueError):
    """Bad input from the user (a missing file, an unreadable image, inconsistent frames).

    The CLI prints its message as one line and exits with status 2.
    """


def atomic_write(path: str | os.PathLike, write: Callable[[str], None]) -> Path:
    """Call ``write(tmp_path)`` and move the result onto ``path`` atomically.

    Args:
        path: final destination; its parent folders are created.
        write: a function that writes the complete file to the temporary path it is given.

    Returns:
        The destination as a ``Path``.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp" + path.suffix,
                               dir=path.parent)
    os.close(fd)
    try:
        write(tmp)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically."""
    return atomic_write(path, lambda tmp: Path(tmp).write_bytes(data))


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    """Write UTF-8 ``text`` to ``path`` atomically."""
    return atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | os.PathLike, obj: Any) -> Path:
    """Write ``obj`` as indented JSON to ``path`` atomically."""
    return atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=False) + "\n")


def atomic_torch_save(obj: Any, path: str | os.PathLike) -> Path:
    """``torch.save`` to ``path`` atomically (a checkpoint is never left half written)."""
    import torch

    return atomic_write(path, lambda tmp: torch.save(obj, tmp))


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


def to_uint8(image: np.ndarray) -> np.ndarray:
    """Convert an image to uint8: floats are taken as [0, 1], clipped and rounded."""
    if image.dtype == np.uint8:
        return image
    if np.issubdtype(image.dtype, np.floating):
        return (np.clip(image, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
    raise TypeError(f"expected a uint8 or float image, got dtype {image.dtype}")


def read_image(path: str | os.PathLike) -> np.ndarray:
    """Read an image file as H x W x 3 uint8 **RGB**.

    Grayscale files are expanded to three channels, an alpha channel is dropped.

    Raises:
        InputError: the file is missing or cannot be decoded as an image.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(f"image not found: {path}")
    data = np.fromfile(str(path), dtype=np.uint8)
    image = cv2.imdecode(data, cv2.IMREAD_COLOR) if data.size else None
    if image is None:
        raise InputError(f"cannot read image: {path}")
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def write_image(path: str | os.PathLike, image: np.ndarray) -> Path:
    """Write an RGB image (H x W x 3, or H x W grayscale) atomically.

    Float images are taken as [0, 1] and rounded to uint8. The format follows the suffix.
    """
    path = Path(path)
    image = to_uint8(np.asarray(image))
    if image.ndim == 3:
        if image.shape[2] != 3:
            raise ValueError(f"expected H x W x 3, got shape {image.shape}")
        image = cv2.cvtColor(image, cv2.COLOR_RGB2BGR)
    elif image.ndim != 2:
        raise ValueError(f"expected H x W x 3 or H x W, got shape {image.shape}")
    suffix = path.suffix.lower() or ".png"
    ok, encoded = cv2.imencode(suffix, image)
    if not ok:
        raise InputError(f"cannot encode an image as {suffix!r}: {path}")
    return atomic_write_bytes(path, encoded.tobytes())
