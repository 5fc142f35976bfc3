"""Pair lists (SPA-Data format): one ``rain_path clean_path`` pair per line.

The format of SPA-Data's ``training/real_world.txt`` and ``testing/real_test_1000.txt``. The
lists this package writes are relative to the list's folder with POSIX separators; reading also
accepts SPA-Data's own lists, whose paths (often with a leading ``/``) are relative to the data
root, the list folder's parent.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

from spanetlib.io.errors import InputError
from spanetlib.io.files import atomic_write_text

__all__ = ["PAIR_LIST_CANDIDATES", "find_pair_list", "read_pair_list", "write_pair_list"]


#: Where `find_pair_list` looks, in order, for each split (our export layout first).
PAIR_LIST_CANDIDATES: dict[str, tuple[str, ...]] = {
    "train": ("train.txt", "training/real_world.txt", "Training/real_world.txt",
              "training/real_world/real_world.txt", "real_world.txt"),
    "test": ("test.txt", "testing/real_test_1000.txt", "Testing/real_test_1000.txt",
             "real_test_1000.txt"),
}


# --------------------------------------------------------------------------------------------
# Pair lists
# --------------------------------------------------------------------------------------------
def _parse_pair_lines(path: Path) -> list[tuple[int, str, str]]:
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as err:
        raise InputError(f"{path}: not a text pair list ({err.reason})") from None
    rows = []
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        parts = line.split()
        if len(parts) != 2:
            raise InputError(f"{path}, line {number}: expected 'rain_path clean_path' (two "
                             f"paths separated by whitespace), got {len(parts)} field(s): "
                             f"{line[:80]!r}")
        rows.append((number, parts[0], parts[1]))
    return rows


def _choose_base(rows: list[tuple[int, str, str]], list_dir: Path) -> Path | None:
    """The folder the list's relative paths are relative to (None: they are absolute)."""
    bases = (list_dir, list_dir.parent)
    for _, rain, _ in rows[:5]:
        if os.path.isabs(rain) and Path(rain).is_file():
            return None
        rel = rain.lstrip("/")
        for base in bases:
            if (base / rel).is_file():
                return base
    return list_dir


def read_pair_list(path: str | os.PathLike) -> list[tuple[Path, Path]]:
    """Read a pair list: one ``rain_path clean_path`` per line (SPA-Data's format).

    Blank lines and lines starting with ``#`` are skipped; paths may not contain whitespace.
    Relative paths are resolved against the list's folder (the layout `write_pair_list`
    writes) or, for SPA-Data's own lists such as ``training/real_world.txt``, against the data
    root (the list folder's parent); a leading ``/`` on such paths is taken as relative, as the
    authors' code does. The base is chosen once per list, by which candidate holds the first
    lines' rain images; when none does (images not there yet) the list folder is used.

    Args:
        path: the list file.

    Returns:
        ``(rain, clean)`` absolute paths, in file order.

    Raises:
        InputError: the file is missing, not text, or a line does not hold exactly two paths
            (the message names the line number).
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(f"pair list not found: {path}")
    rows = _parse_pair_lines(path)
    list_dir = path.resolve().parent
    base = _choose_base(rows, list_dir)
    pairs = []
    for _, rain, clean in rows:
        if base is None:
            pairs.append((Path(rain), Path(clean)))
        else:
            pairs.append((Path(os.path.normpath(base / rain.lstrip("/"))),
                          Path(os.path.normpath(base / clean.lstrip("/")))))
    return pairs


def write_pair_list(path: str | os.PathLike,
                    pairs: Iterable[tuple[str | os.PathLike, str | os.PathLike]]) -> Path:
    """Write a pair list atomically, paths relative to the list's folder with ``/`` separators.

    Args:
        path: the list file to write (its folders are created).
        pairs: ``(rain, clean)`` paths, absolute or relative to the current directory.

    Returns:
        The list's path.

    Raises:
        ValueError: a path contains whitespace (the format cannot hold it).

    Example:
        >>> import tempfile
        >>> with tempfile.TemporaryDirectory() as tmp:
        ...     root = Path(tmp)
        ...     path = write_pair_list(root / "train.txt", [(root / "rain/1.png",
        ...                                                   root / "clean/1.png")])
        ...     print(path.read_text(), end="")
        ...     read_pair_list(path) == [((root / "rain/1.png").resolve(),
        ...                               (root / "clean/1.png").resolve())]
        rain/1.png clean/1.png
        True
    """
    path = Path(path)
    list_dir = path.absolute().parent
    lines = []
    for pair in pairs:
        if len(pair) != 2:
            raise ValueError(f"expected (rain, clean) pairs, got {pair!r}")
        rel = []
        for p in pair:
            r = Path(os.path.relpath(Path(p).absolute(), list_dir)).as_posix()
            if any(ch.isspace() for ch in r):
                raise ValueError(f"pair list paths cannot contain whitespace, got {r!r}")
            rel.append(r)
        lines.append(f"{rel[0]} {rel[1]}\n")
    return atomic_write_text(path, "".join(lines))


def find_pair_list(data_root: str | os.PathLike, split: str) -> Path:
    """The pair list of ``split`` in a dataset folder (our export layout or SPA-Data's).

    Looks, in order, for ``train.txt`` / ``test.txt`` (written by `export_dataset`), then
    SPA-Data's ``training/real_world.txt`` / ``testing/real_test_1000.txt``, then
    ``real_world.txt`` / ``real_test_1000.txt`` at the root. A path to a list file is returned
    unchanged.

    Args:
        data_root: a dataset folder, or a list file.
        split: ``"train"`` or ``"test"``.

    Returns:
        The list file.

    Raises:
        ValueError: ``split`` is not ``"train"`` or ``"test"``.
        InputError: ``data_root`` is missing or holds none of the candidate lists.

    Example:
        >>> import tempfile
        >>> with tempfile.TemporaryDirectory() as tmp:
        ...     _ = write_pair_list(Path(tmp, "testing", "real_test_1000.txt"), [])
        ...     find_pair_list(tmp, "test").relative_to(tmp).as_posix()
        'testing/real_test_1000.txt'
    """
    if split not in PAIR_LIST_CANDIDATES:
        raise ValueError(f"split must be one of {tuple(PAIR_LIST_CANDIDATES)}, got {split!r}")
    root = Path(data_root)
    if root.is_file():
        return root
    if not root.is_dir():
        raise InputError(f"dataset folder not found: {root}")
    for name in PAIR_LIST_CANDIDATES[split]:
        if (root / name).is_file():
            return root / name
    raise InputError(f"no {split} pair list in {root}: looked for "
                     + ", ".join(PAIR_LIST_CANDIDATES[split]))
