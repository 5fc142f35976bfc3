"""Every module of the package: its public names (``__all__``) are sorted, unique and defined."""

from __future__ import annotations

import importlib
import pkgutil
import re

import pytest

import spanetlib

_FOUND = [(info.name, info.ispkg) for info in pkgutil.walk_packages(
    spanetlib.__path__, prefix="spanetlib.") if not info.name.endswith("__main__")]
#: Every module of spanetlib, found by walking the installed package, and the packages that
#: export names (the layers' ``__init__`` files only describe their layer).
MODULES = sorted(["spanetlib"] + [name for name, is_package in _FOUND
                                  if not is_package or name == "spanetlib.models"])


def _isort_key(name: str) -> tuple[int, list[object]]:
    """ruff's RUF022 order: CONSTANTS, CamelCase, then the rest; numbers compared as numbers."""
    group = 0 if name.isupper() else 1 if name[:1].isupper() else 2
    return group, [int(p) if p.isdigit() else p for p in re.split(r"(\d+)", name)]


def test_isort_key_orders_as_ruff_does() -> None:
    names = ["table10", "SPANet", "TABLE2_RUNS", "table2", "OURS", "DerainSummary", "auto_tile"]
    assert sorted(names, key=_isort_key) == ["OURS", "TABLE2_RUNS", "DerainSummary", "SPANet",
                                              "auto_tile", "table2", "table10"]


def test_the_walk_finds_every_layer() -> None:
    """The list below is not empty by accident: each sub-package and a few leaves are in it."""
    for name in ("spanetlib.io.files", "spanetlib.pipeline.background", "spanetlib.models.spanet",
                 "spanetlib.training.train", "spanetlib.paper.readme", "spanetlib.cli"):
        assert name in MODULES


@pytest.mark.parametrize("name", MODULES)
def test_public_names_are_sorted_unique_and_defined(name: str) -> None:
    module = importlib.import_module(name)
    public = getattr(module, "__all__", None)
    assert public is not None, f"{name} has no __all__"
    # The package uses two orders (plain ``sorted`` and ruff's RUF022); either one is sorted.
    assert list(public) in (sorted(public), sorted(public, key=_isort_key)), (
        f"{name}.__all__ is not sorted")
    assert len(set(public)) == len(public), f"{name}.__all__ repeats a name"
    missing = [n for n in public if not hasattr(module, n)]
    assert not missing, f"{name}.__all__ names what the module lacks: {missing}"
