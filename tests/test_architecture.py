"""The layers of docs/architecture.md, held by a test: no import cycles (lazy imports
count too), and each layer imports only from the layers it may."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "studio"

# layer -> the layers it may import (besides itself)
BASE = "base"
ALLOWED = {
    BASE: set(),
    "profiles": {BASE},
    "planning": {BASE, "profiles"},
    "runs": {BASE, "profiles", "planning"},
    "anatomy": {BASE, "profiles", "planning"},
    "trainer": {BASE, "profiles", "planning", "runs", "anatomy"},  # the anatomy's rules: which class, which targets
    "generate": {BASE, "profiles", "planning", "runs", "anatomy", "trainer"},  # it reads data as the trainer did
    "display": {BASE, "profiles", "planning", "runs"},
    "ui": {BASE, "profiles", "planning", "runs", "display"},
    "cli": {BASE, "profiles", "planning", "runs", "display", "ui"},
}


def layer_of(module: str) -> str:
    parts = module.split(".")
    if len(parts) == 1 or parts[1] == "__main__":
        return "cli"  # `studio` and `python -m studio` are the command line's entry points
    return parts[1] if parts[1] in ALLOWED else BASE


def module_name(path: Path) -> str:
    rel = path.relative_to(PACKAGE.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imports(path: Path) -> set[str]:
    """Every studio module this file imports, at the top or inside a function."""
    found: set[str] = set()
    package = module_name(path) if path.name == "__init__.py" else module_name(path).rsplit(".", 1)[0]
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.split(".")[0] == "studio")
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1] + ([base] if base else []))
            if base.split(".")[0] != "studio":
                continue
            for alias in node.names:  # `from studio.runs import events` imports a module
                candidate = f"{base}.{alias.name}"
                found.add(candidate if candidate in MODULES else base)
    return {m for m in found if m in MODULES}


MODULES = {module_name(p): p for p in PACKAGE.rglob("*.py")}
GRAPH = {name: imports(path) - {name} for name, path in MODULES.items()}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                out.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def test_the_checker_sees_a_cycle() -> None:
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_the_checker_sees_lazy_and_relative_imports(tmp_path: Path) -> None:
    assert "studio.runs.events" in GRAPH["studio.runs.folder"]
    assert "studio.trainer.main" in GRAPH["studio.trainer.__main__"]  # imported inside main()


def test_no_import_cycles() -> None:
    assert cycles(GRAPH) == []


@pytest.mark.parametrize("module", sorted(MODULES))
def test_each_module_imports_only_the_layers_below(module: str) -> None:
    mine = layer_of(module)
    bad = sorted(m for m in GRAPH[module] if layer_of(m) != mine and layer_of(m) not in ALLOWED[mine])
    assert not bad, f"{module} ({mine}) may not import {bad}: see docs/architecture.md"
