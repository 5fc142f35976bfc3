"""What this machine lends a job: memory available now and CPU cores, without torch.

`host_memory_available` is the memory a CPU computation can use now: the host's available
memory, or what is left under the process's cgroup limits (a container's) when that is less.
`cpus_available` counts the cores this process may run on.
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["cpus_available", "host_memory_available"]

_MEMINFO = Path("/proc/meminfo")
_PROC_CGROUP = Path("/proc/self/cgroup")
_CGROUP_ROOT = Path("/sys/fs/cgroup")
_NO_LIMIT = 1 << 60  # cgroup v1 writes "no limit" as a number near 2**63


def _read_int(path: Path) -> int | None:
    """The integer a (cgroup) file holds; None for ``max``, a missing or unreadable file."""
    try:
        text = path.read_text().strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None


def _stat_field(path: Path, names: tuple[str, ...]) -> int:
    """The first of ``names`` found in a cgroup ``memory.stat`` file (0 if none)."""
    try:
        lines = path.read_text().splitlines()
    except OSError:
        return 0
    fields = dict(line.split(maxsplit=1) for line in lines if " " in line)
    return next((int(fields[name]) for name in names if name in fields), 0)


def _cgroup_paths() -> dict[str, str]:
    """This process's cgroup per hierarchy: ``""`` for v2, ``"memory"`` for v1's controller."""
    paths: dict[str, str] = {}
    try:
        lines = _PROC_CGROUP.read_text().splitlines()
    except OSError:
        return paths
    for line in lines:
        parts = line.split(":", 2)
        if len(parts) == 3 and (parts[1] == "" or "memory" in parts[1].split(",")):
            paths["memory" if parts[1] else ""] = parts[2]
    return paths


def _cgroup_available() -> int | None:
    """Memory left under this process's cgroup limits (v2 or v1), the tightest; None: no limit.

    Each folder from the process's cgroup up to the root may set a limit; what is left under
    it is the limit minus the usage, plus the page cache that can be dropped (inactive files).
    """
    paths = _cgroup_paths()
    layouts = (("", "memory.max", "memory.current", ("inactive_file",)),
               ("memory", "memory.limit_in_bytes", "memory.usage_in_bytes",
                ("total_inactive_file", "inactive_file")))
    best: int | None = None
    for sub, limit_name, usage_name, cache_names in layouts:
        root = _CGROUP_ROOT / sub if sub else _CGROUP_ROOT
        folder = root / paths.get(sub, "/").lstrip("/")
        if not folder.is_dir():  # inside a container the process's cgroup is the root
            folder = root
        while True:
            limit = _read_int(folder / limit_name)
            if limit is not None and limit < _NO_LIMIT:
                used = (_read_int(folder / usage_name) or 0) - _stat_field(
                    folder / "memory.stat", cache_names)
                left = max(limit - max(used, 0), 0)
                best = left if best is None else min(best, left)
            if folder == root or root not in folder.parents:
                break
            folder = folder.parent
    return best


def _host_available() -> int | None:
    """Memory the host can give without swapping: psutil, /proc/meminfo or sysconf."""
    try:
        import psutil
    except ImportError:
        psutil = None
    if psutil is not None:
        return int(psutil.virtual_memory().available)
    try:
        for line in _MEMINFO.read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (AttributeError, ValueError, OSError):
        return None


def host_memory_available() -> int | None:
    """Bytes of memory a CPU computation can use now (None if it cannot be read).

    The host's available memory (``psutil`` when installed, else ``MemAvailable`` of
    /proc/meminfo, else ``os.sysconf``), or what is left under the process's cgroup memory
    limits (v2 ``memory.max``, v1 ``memory.limit_in_bytes``: a container's limit) when that is
    less.
    """
    known = [m for m in (_host_available(), _cgroup_available()) if m is not None]
    return min(known) if known else None


def cpus_available() -> int:
    """The CPU cores this process may run on (its affinity mask where the OS has one), >= 1."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)
