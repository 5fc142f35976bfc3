"""Argument checks shared by every layer: integers, numbers in a range, stacks of frames.

Each check raises `spanetlib.io.errors.InputError` (a ``ValueError``) with one message shape,
``"{name}: expected ..., got {value!r}"``, so the CLI prints it as one line.
"""

from __future__ import annotations

import numbers
from typing import Any

import numpy as np

from spanetlib.io.errors import InputError

__all__ = ["check_frames", "check_int", "check_number", "check_positive"]


def _expected(kind: str, low: str | None, high: str | None) -> str:
    """The "expected ..." phrase of a check's message: ``an int >= 1 and <= 9`` and the like."""
    bounds = " and ".join(b for b in (low, high) if b)
    return f"{kind} {bounds}" if bounds else kind


def check_int(name: str, value: Any, minimum: int | None = None, maximum: int | None = None,
              allow_none: bool = False) -> int | None:
    """An integer (bools refused) in ``[minimum, maximum]`` (either bound may be open).

    Args:
        name: the argument's name, for the message.
        value: the value to check (Python or numpy integer).
        minimum: smallest accepted value, or None for no bound.
        maximum: largest accepted value, or None for no bound.
        allow_none: accept None (returned as is).

    Returns:
        ``value`` as a Python int (or None).

    Raises:
        InputError: ``"{name}: expected an int >= {minimum}, got {value!r}"`` and the like.
    """
    if value is None and allow_none:
        return None
    if minimum is not None and maximum is not None:
        expected = _expected("an int", f"in [{minimum}, {maximum}]", None)
    else:
        expected = _expected("an int", None if minimum is None else f">= {minimum}",
                             None if maximum is None else f"<= {maximum}")
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral):
        raise InputError(f"{name}: expected {expected}, got {value!r}")
    if (minimum is not None and value < minimum) or (maximum is not None and value > maximum):
        raise InputError(f"{name}: expected {expected}, got {value!r}")
    return int(value)


def check_positive(name: str, value: Any, allow_none: bool = False) -> int | None:
    """An integer >= 1 (or None when ``allow_none``); see `check_int`."""
    return check_int(name, value, minimum=1, allow_none=allow_none)


def check_number(name: str, value: Any, minimum: float | None = None,
                 maximum: float | None = None, above: bool = False) -> float:
    """A finite real number (bools refused) in ``[minimum, maximum]``.

    Args:
        name: the argument's name, for the message.
        value: the value to check.
        minimum: smallest accepted value, or None for no bound.
        maximum: largest accepted value, or None for no bound.
        above: make the lower bound strict (``value > minimum``).

    Returns:
        ``value`` as a Python float.

    Raises:
        InputError: ``"{name}: expected a number > 0, got {value!r}"`` and the like.
    """
    expected = _expected("a number",
                         None if minimum is None else f"{'>' if above else '>='} {minimum:g}",
                         None if maximum is None else f"<= {maximum:g}")
    if minimum is None and maximum is None:
        expected = "a finite number"
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real) \
            or not np.isfinite(value):
        raise InputError(f"{name}: expected {expected}, got {value!r}")
    too_low = minimum is not None and (value <= minimum if above else value < minimum)
    if too_low or (maximum is not None and value > maximum):
        raise InputError(f"{name}: expected {expected}, got {value!r}")
    return float(value)


def check_frames(frames: Any, minimum: int = 1, name: str = "frames",
                 floats: bool = False) -> np.ndarray:
    """A stack of N >= ``minimum`` RGB frames: N x H x W x 3 uint8 (or float with ``floats``).

    Args:
        frames: an array, or a sequence of H x W x 3 arrays of one size.
        minimum: fewest frames accepted.
        name: what the frames are, for the message.
        floats: accept floating-point frames as well as uint8 (their range is not checked).

    Returns:
        The frames as an ndarray (no copy when ``frames`` is one).

    Raises:
        InputError: ``"{name}: expected N x H x W x 3 uint8 RGB with N >= {minimum}, got shape
            (...) dtype ..."``.
    """
    try:
        arr = np.asarray(frames)
    except ValueError as exc:  # ragged sequence
        raise InputError(f"{name}: frames of different sizes ({exc})") from None
    kinds = "uint8 or float" if floats else "uint8"
    dtype_ok = arr.dtype == np.uint8 or (floats and arr.dtype.kind == "f")
    if not dtype_ok or arr.ndim != 4 or arr.shape[-1] != 3 or arr.shape[0] < minimum:
        raise InputError(f"{name}: expected N x H x W x 3 {kinds} RGB with N >= {minimum}, got "
                         f"shape {arr.shape} dtype {arr.dtype}")
    return arr
