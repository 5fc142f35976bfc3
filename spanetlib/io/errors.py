"""The one exception for bad input from a user; the CLI prints it as one line and exits 2."""

from __future__ import annotations

__all__ = ["InputError"]


class InputError(ValueError):
    """Bad input from the user (a missing file, an unreadable image, inconsistent frames).

    The CLI prints its message as one line and exits with status 2.
    """
