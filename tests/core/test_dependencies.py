"""The dependencies pyproject.toml declares are the ones src/ imports, no more and no fewer.

Every runtime dependency is imported somewhere in ``src/llmchain`` (else it is dead weight on
every install); every extra's packages are imported too (else the extra promises nothing); and
every third-party module ``src/`` imports comes from a runtime dependency or an extra.
"""

from __future__ import annotations

import ast
import re
import sys
from importlib.metadata import packages_distributions
from pathlib import Path

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

ROOT = Path(__file__).resolve().parents[2]
SRC = ROOT / "src" / "llmchain"
#: Extras that only gather other extras or development tools, not imported by src/.
NOT_IMPORTED_EXTRAS = {"all", "dev"}
#: Modules src/ imports that a declared dependency requires and pins itself; declaring them
#: again would only add a second version range to keep in step.
PROVIDED_BY = {"pydantic-core": "pydantic", "yarl": "aiohttp"}


def project() -> dict[str, object]:
    data = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    return dict(data["project"])


def distribution(requirement: str) -> str:
    """``"redis>=5; python_version < '3.11'"`` → ``"redis"`` (normalised)."""
    name = re.match(r"[A-Za-z0-9][A-Za-z0-9._-]*", requirement.strip())
    assert name, requirement
    return re.sub(r"[-_.]+", "-", name.group(0)).lower()


def imported_top_level_modules() -> set[str]:
    found: set[str] = set()
    for path in SRC.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                found.update(alias.name.split(".")[0] for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and not node.level and node.module:
                found.add(node.module.split(".")[0])
    return found


def imported_distributions() -> dict[str, str]:
    """Distribution → one module of it that src/ imports (third-party modules only)."""
    owners = packages_distributions()
    out: dict[str, str] = {}
    for module in imported_top_level_modules() - set(sys.stdlib_module_names) - {"llmchain"}:
        for dist in owners.get(module, [module]):
            out[re.sub(r"[-_.]+", "-", dist).lower()] = module
    return out


def test_every_runtime_dependency_is_imported_by_src() -> None:
    declared = {distribution(r) for r in project()["dependencies"]}  # type: ignore[attr-defined]
    assert {"pydantic", "pluggy"} <= declared  # the parser read the list
    unused = declared - set(imported_distributions())
    assert not unused, f"declared in [project] dependencies but never imported by src/: {sorted(unused)}"


def test_every_extra_is_imported_by_src() -> None:
    extras: dict[str, list[str]] = project()["optional-dependencies"]  # type: ignore[assignment]
    imported = set(imported_distributions())
    unused = {
        f"{extra}: {distribution(r)}"
        for extra, requirements in extras.items()
        if extra not in NOT_IMPORTED_EXTRAS
        for r in requirements
        if distribution(r) not in imported
    }
    assert not unused, f"extras whose package src/ never imports: {sorted(unused)}"


def test_hypothesis_is_in_the_testing_extra_which_dev_includes() -> None:
    extras: dict[str, list[str]] = project()["optional-dependencies"]  # type: ignore[assignment]
    assert "hypothesis" in {distribution(r) for r in extras["testing"]}
    assert any("testing" in r for r in extras["dev"] if r.startswith("llmchain["))
    assert "hypothesis" not in {distribution(r) for r in project()["dependencies"]}  # type: ignore[attr-defined]


def test_every_third_party_import_is_declared() -> None:
    extras: dict[str, list[str]] = project()["optional-dependencies"]  # type: ignore[assignment]
    declared = {distribution(r) for r in project()["dependencies"]}  # type: ignore[attr-defined]
    declared |= {distribution(r) for requirements in extras.values() for r in requirements
                 if not r.startswith("llmchain[")}
    undeclared = {f"{module} ({dist})" for dist, module in imported_distributions().items()
                  if PROVIDED_BY.get(dist, dist) not in declared}
    assert not undeclared, f"src/ imports modules no dependency or extra provides: {sorted(undeclared)}"
