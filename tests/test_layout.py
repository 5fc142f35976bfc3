"""The package's layering: no import cycle, no upward import, no private name across modules."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import spanetlib

ROOT = Path(spanetlib.__file__).parent

#: Layer of each sub-package, lowest first: a module may import its own layer and lower ones.
LAYERS = {"io": 0, "pipeline": 1, "synthesis": 2, "models": 3, "derain": 4, "evaluation": 5,
          "training": 6, "paper": 7, "cli": 8, "__init__": 8}
#: Layers that must run without torch (the §3 commands start fast and need no model).
NO_TORCH = ("io", "pipeline", "synthesis")


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def _imports(path: Path) -> list[tuple[str, list[str], int]]:
    """(absolute module, imported names, line) for every import in the file, at any depth."""
    name = _module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found += [(a.name, [], node.lineno) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            module = node.module or ""
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                module = ".".join(base + ([module] if module else []))
            found.append((module, [a.name for a in node.names], node.lineno))
    return found


def _graph() -> dict[str, list[tuple[str, list[str], int]]]:
    modules = {_module_name(p): p for p in ROOT.rglob("*.py")}
    graph = {}
    for name, path in modules.items():
        edges = []
        for module, names, line in _imports(path):
            if not module.startswith("spanetlib"):
                edges.append((module, names, line))
                continue
            # "from spanetlib.pipeline import review" names a module, not an attribute
            targets = [f"{module}.{n}" for n in names if f"{module}.{n}" in modules]
            edges += [(t, [], line) for t in targets]
            rest = [n for n in names if f"{module}.{n}" not in modules]
            if rest or not names:
                edges.append((module, rest, line))
        graph[name] = edges
    return graph


def _layer(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def test_every_module_belongs_to_a_layer():
    assert sorted({_layer(m) for m in _graph()}) == sorted(LAYERS)


def test_no_upward_import():
    upward = [f"{m} imports {t} (line {line})"
              for m, edges in _graph().items() for t, _, line in edges
              if t.startswith("spanetlib.") and LAYERS[_layer(t)] > LAYERS[_layer(m)]]
    assert upward == []


def test_no_private_name_across_modules():
    private = [f"{m} imports {t}.{n} (line {line})"
               for m, edges in _graph().items() for t, names, line in edges
               if t.startswith("spanetlib") and t != m
               for n in names if n.startswith("_") and not n.startswith("__")]
    assert private == []


def test_no_import_cycle():
    graph = {m: sorted({t for t, _, _ in edges if t in _graph_modules()})
             for m, edges in _graph().items()}
    state: dict[str, int] = {}
    cycles = []

    def visit(node: str, stack: list[str]) -> None:
        state[node] = 1
        for nxt in graph[node]:
            if state.get(nxt) == 1:
                cycles.append(" -> ".join(stack[stack.index(nxt):] + [node, nxt]))
            elif nxt not in state:
                visit(nxt, stack + [node])
        state[node] = 2

    for module in sorted(graph):
        if module not in state:
            visit(module, [])
    assert cycles == []


def _graph_modules() -> set[str]:
    return {_module_name(p) for p in ROOT.rglob("*.py")}


@pytest.mark.parametrize("layer", NO_TORCH)
def test_section3_layers_need_no_torch(layer):
    users = [f"{m} imports {t} (line {line})" for m, edges in _graph().items()
             if _layer(m) == layer for t, _, line in edges if t.split(".")[0] == "torch"]
    assert users == []


def test_the_checker_sees_a_planted_cycle_and_upward_import(tmp_path, monkeypatch):
    """The walk above must be able to fail: plant a module that breaks both rules."""
    planted = ROOT / "io" / "_planted_for_test.py"
    planted.write_text("from spanetlib.paper import runs\nfrom spanetlib.io.files import _decode\n")
    try:
        graph = _graph()
        edges = graph["spanetlib.io._planted_for_test"]
        assert ("spanetlib.paper.runs", [], 1) in edges
        assert any("_decode" in names for _, names, _ in edges)
    finally:
        planted.unlink()
