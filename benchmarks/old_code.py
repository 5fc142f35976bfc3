"""The package as it was at an earlier commit, for benchmarks that run old and new side by side."""

from __future__ import annotations

import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def extract_package(commit: str, folder: Path) -> Path | None:
    """``spanetlib/`` at ``commit``, extracted under ``folder`` (None without git or the commit)."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        archive = subprocess.run(["git", "-C", str(ROOT), "archive", commit, "spanetlib"],
                                 capture_output=True, check=True).stdout
        subprocess.run(["tar", "-x", "-C", str(folder)], input=archive, check=True)
    except (OSError, subprocess.CalledProcessError):
        return None
    return folder
