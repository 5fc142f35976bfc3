"""What ``pip install -e ".[dev]"`` pulls in, and what CI installs besides (issue 12, item 16)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

tomllib = pytest.importorskip("tomllib")  # Python >= 3.11

ROOT = Path(__file__).resolve().parents[1]


def _extras() -> dict[str, list[str]]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    return project["optional-dependencies"]


def _names(requirements: list[str]) -> set[str]:
    return {re.match(r"[A-Za-z0-9_.-]+", r).group(0).lower() for r in requirements}


def test_triton_is_in_the_gpu_extra_not_in_dev():
    extras = _extras()
    assert "triton" not in _names(extras["dev"])  # about 1 GB on CPU-only machines
    assert "triton" in _names(extras["gpu"])


def test_ci_installs_the_gpu_extra_then_runs_the_readme_command():
    lines = [x.strip() for x in (ROOT / ".ci" / "run").read_text().splitlines()
             if x.strip() and not x.lstrip().startswith("#")]
    assert lines[-1] == 'pip install -e ".[dev]" && pytest'
    gpu = [i for i, x in enumerate(lines) if re.search(r'pip install .*"\.\[gpu\]"', x)]
    assert gpu and gpu[0] < len(lines) - 1  # the Triton interpreter tests keep running in CI


def test_dask_distributed_is_in_the_cluster_extra_and_in_dev():
    extras = _extras()  # build-dataset --scheduler; CI tests it on a LocalCluster via [dev]
    for extra in ("cluster", "dev"):
        assert any(r.replace(" ", "").lower().startswith("dask[distributed]")
                   for r in extras[extra]), extra
