"""Imports point one way: apps → stages → core, and no module imports itself back through others.

Every module under ``src/llmchain`` is parsed (``ast``, nothing is imported) and each
``import``/``from … import`` is resolved to a module of the package, wherever it sits: module
level, inside a function (lazy) or under ``TYPE_CHECKING``. A lazy import is still a
dependency, so it counts.

Layers (``docs/architecture.md``, "Where things go"):

- core: the modules at the package root (chain, compose, models, errors, config, events, clock,
  hookspecs, plugins and their small helpers) and the subpackages in ``CORE``:
  ``messages`` (message dicts in OpenAI/Anthropic/llmchain shape → neutral ``Message``s, what
  ``Chain.complete(messages)`` accepts) and ``structured`` (JSON extraction and repair, schemas,
  partial JSON, tool-call checks, the structured-output glue);
- stages: ``middleware``, ``policies``, ``stores``, ``transports``, ``testing``;
- apps: ``cli``, ``batch``, ``demo``, ``report``.

``structured`` is core, not a stage: it holds no stage and no hook, only pure functions over
the core's data (it imports ``_exceptions``, ``_models`` and ``_tools`` and nothing else of
llmchain), and the chain itself needs it (``Chain.complete(output=...)``, ``complete_json``)
as much as the parse, validate and repair stages do. Being core, it may not import a stage or an
app, which this test checks like for any core module.

A module may import its own layer or a lower one, never a higher one; the module graph has no
cycle; and every subpackage is placed in one layer, so a new one is a decision, not a default.
There are no exceptions.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[2] / "src"
PACKAGE = "llmchain"
CORE = ("messages", "structured")
STAGES = ("middleware", "policies", "stores", "transports", "testing")
APPS = ("cli", "batch", "demo", "report")
LAYER_NAMES = ("core", "stages", "apps")


def module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def all_modules() -> dict[str, Path]:
    return {module_name(p): p for p in sorted((SRC / PACKAGE).rglob("*.py"))}


def layer(module: str) -> int:
    parts = module.split(".")
    if len(parts) > 1 and (parts[1] in APPS or parts[1] == "__main__"):  # python -m llmchain runs the CLI
        return 2
    if len(parts) > 1 and parts[1] in STAGES:
        return 1
    if len(parts) == 1 or parts[1] in CORE or (SRC / PACKAGE / f"{parts[1]}.py").exists():
        return 0
    raise AssertionError(f"{module}: subpackage {parts[1]!r} is in no layer (CORE, STAGES or APPS)")


def imports_of(module: str, path: Path, known: set[str]) -> list[tuple[str, int]]:
    """(imported module, line) for every import of a package module in ``path``."""
    is_package = path.name == "__init__.py"
    found: list[tuple[str, int]] = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        targets: list[str] = []
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = module.split(".")
                base = base if is_package else base[:-1]
                base = base[: len(base) - (node.level - 1)]
                stem = ".".join([*base, node.module] if node.module else base)
            else:
                stem = node.module or ""
            # ``from pkg import sub`` depends on the submodule; on ``pkg`` itself only for names
            # that are not submodules (its own or re-exported ones)
            subs = [f"{stem}.{alias.name}" for alias in node.names if f"{stem}.{alias.name}" in known]
            targets = subs if len(subs) == len(node.names) else [stem, *subs]
        for target in targets:
            # ``import llmchain.a.b`` depends on llmchain.a.b; keep the longest known prefix
            parts = target.split(".")
            while parts and ".".join(parts) not in known:
                parts.pop()
            if parts and ".".join(parts) != module:
                found.append((".".join(parts), node.lineno))
    return found


def graph() -> tuple[dict[str, list[tuple[str, int]]], dict[str, Path]]:
    modules = all_modules()
    known = set(modules)
    return {m: imports_of(m, p, known) for m, p in modules.items()}, modules


def cycles(edges: dict[str, list[tuple[str, int]]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan, iterative enough here)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w, _ in edges[v]:
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
                found.append(sorted(component))

    for v in edges:
        if v not in index:
            visit(v)
    return found


def test_the_parser_sees_imports() -> None:
    """Guard against a test that passes because it found nothing."""
    edges, modules = graph()
    assert len(modules) > 50
    assert any(target == "llmchain._exceptions" for target, _ in edges["llmchain.batch._io"])
    assert any(target == "llmchain.structured._output" for target, _ in edges["llmchain.middleware.validate"])


def test_every_subpackage_is_in_one_layer() -> None:
    subpackages = {p.parent.name for p in (SRC / PACKAGE).glob("*/__init__.py")}
    placed = [*CORE, *STAGES, *APPS]
    assert len(placed) == len(set(placed)), "a subpackage is in two layers"
    assert subpackages == set(placed), (
        f"in no layer: {sorted(subpackages - set(placed))}; gone: {sorted(set(placed) - subpackages)}")


def test_no_import_cycles() -> None:
    edges, modules = graph()
    found = cycles(edges)
    lines = []
    for component in found:
        members = set(component)
        for m in component:
            for target, line in edges[m]:
                if target in members:
                    lines.append(f"  {modules[m].relative_to(SRC)}:{line} imports {target}")
    assert not found, "import cycles:\n" + "\n".join(lines)


def upward(edges: dict[str, list[tuple[str, int]]]) -> list[tuple[str, str, int]]:
    """(module, imported module, line) for every import of a higher layer."""
    return [(m, target, line) for m, targets in edges.items() for target, line in targets
            if layer(target) > layer(m)]


def test_imports_point_from_apps_to_stages_to_core() -> None:
    edges, modules = graph()
    lines = [
        f"{modules[m].relative_to(SRC)}:{line}: {LAYER_NAMES[layer(m)]} module {m} imports "
        f"{LAYER_NAMES[layer(target)]} module {target}"
        for m, target, line in upward(edges)
    ]
    assert not lines, "imports against the direction apps → stages → core:\n" + "\n".join(lines)


def test_an_upward_import_is_found() -> None:
    """Guard against a direction check that passes because every module landed in one layer."""
    edges = {
        "llmchain._exceptions": [("llmchain.policies.headers", 3)],  # core → stage
        "llmchain.structured._output": [("llmchain.middleware.parse", 4)],  # core subpackage → stage
        "llmchain.transports._http": [("llmchain.cli._demo", 5), ("llmchain._models", 6)],
        "llmchain.__main__": [("llmchain.cli", 7)],  # apps → apps
    }
    assert upward(edges) == [
        ("llmchain._exceptions", "llmchain.policies.headers", 3),
        ("llmchain.structured._output", "llmchain.middleware.parse", 4),
        ("llmchain.transports._http", "llmchain.cli._demo", 5),
    ]


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("from .b import c\n", ["llmchain.pkg.b"]),
        ("from . import b\n", ["llmchain.pkg.b"]),
        ("from . import b, name\n", ["llmchain.pkg", "llmchain.pkg.b"]),
        ("from .. import core\n", ["llmchain.core"]),
        ("def f():\n    import llmchain.pkg.b.x\n", ["llmchain.pkg.b"]),
    ],
)
def test_imports_are_resolved_relative_to_the_module(tmp_path: Path, source: str, expected: list[str]) -> None:
    path = tmp_path / "a.py"
    path.write_text(source)
    known = {"llmchain", "llmchain.core", "llmchain.pkg", "llmchain.pkg.a", "llmchain.pkg.b"}
    assert sorted(t for t, _ in imports_of("llmchain.pkg.a", path, known)) == expected


def test_a_cycle_is_found() -> None:
    edges = {"a": [("b", 1)], "b": [("c", 1)], "c": [("a", 1)], "d": [("a", 1)]}
    assert cycles(edges) == [["a", "b", "c"]]
