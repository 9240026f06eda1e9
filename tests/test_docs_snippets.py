"""The documentation's code works: Python snippets run, TOML snippets build a chain. Offline.

* Python: every ```python block of the pages in ``RUN_ALL`` (unless the line before it is
  ``<!-- no-test: why -->``), and every block elsewhere in docs/ preceded by ``<!-- test -->``,
  runs in order, one namespace per page, in a temporary directory whose ``llmchain.toml`` points
  at a local ``FaultServer`` (OpenAI format, no key).
* TOML: every ```toml block in docs/ (and the README) parses, and unless it is a pyproject
  fragment, ``Chain.from_config`` accepts it, with the environment variables it names faked.
  A block that shows several alternative ``[transport]`` tables is checked one table at a time.
  Building a chain opens no connection.
"""

from __future__ import annotations

import os
import re
import sys
import types
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel

import llmchain.plugins
from llmchain import Chain
from llmchain._tokens import TokenEstimator, _estimators
from llmchain.testing import FaultServer

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
#: Pages whose every Python block must run (others opt in block by block with <!-- test -->).
RUN_ALL = ("quickstart.md", "concepts.md")
PYPROJECT_TABLES = {"project", "build-system", "tool"}

_FENCE = re.compile(r"^```(\w*)\s*$")


def blocks(path: Path, language: str) -> Iterator[tuple[int, str, str]]:
    """(line number, code, marker on the line before) of each fenced block in ``language``."""
    lines = path.read_text(encoding="utf-8").splitlines()
    i = 0
    while i < len(lines):
        match = _FENCE.match(lines[i])
        if not match:
            i += 1
            continue
        start, lang = i, match.group(1)
        i += 1
        body = []
        while i < len(lines) and lines[i].strip() != "```":
            body.append(lines[i])
            i += 1
        i += 1
        if lang == language:
            before = next((lines[j].strip() for j in range(start - 1, -1, -1) if lines[j].strip()), "")
            yield start + 1, "\n".join(body) + "\n", before


def runnable_python(path: Path) -> list[tuple[int, str]]:
    out = []
    for line, code, before in blocks(path, "python"):
        if before.startswith("<!-- no-test"):
            continue
        if path.name in RUN_ALL or before == "<!-- test -->":
            out.append((line, code))
    return out


def doc_pages() -> list[Path]:
    return sorted(DOCS.rglob("*.md"))


PYTHON_PAGES = [p for p in doc_pages() if runnable_python(p)]


@pytest.fixture
def offline(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """A temporary working directory, fake API keys, and no tiktoken download."""
    monkeypatch.chdir(tmp_path)
    for name in ("OPENAI_API_KEY", "ANTHROPIC_API_KEY"):
        monkeypatch.setenv(name, "test-key-not-real")
    # shared stores read their address from REDIS_URL by default; nothing listens on port 9
    monkeypatch.setenv("REDIS_URL", "redis://127.0.0.1:9/0")
    monkeypatch.delenv("LLMCHAIN_CONFIG", raising=False)
    # rate_limit loads tiktoken's encoding on a background thread, which may download it
    monkeypatch.setitem(_estimators, "auto", _estimators.get("auto") or TokenEstimator("heuristic"))
    return tmp_path


def _config_for(server: FaultServer) -> str:
    stages = ["log", "cache", "repair", "validate", "parse", "retry", "rate_limit"]
    return (
        'timeout_s = 30\n\n[transport]\nuse = "openai"\n'
        f'base_url = "{server.base_url}"\napi_key_env = ""\nmodel = "gpt-4o-mini"\n\n'
        + "".join(f'[[stages]]\nuse = "{s}"\n' for s in stages)
        + '[[stages]]\nuse = "timeout"\nattempt_s = 10\n'
    )


@pytest.mark.parametrize("page", PYTHON_PAGES, ids=lambda p: str(p.relative_to(DOCS)))
def test_python_snippets_run(page: Path, offline: Path) -> None:
    assert (page.name not in RUN_ALL) or runnable_python(page), f"{page.name} has no Python to run"
    namespace: dict[str, Any] = {"__name__": f"docs_{page.stem}"}
    with FaultServer() as server:
        (offline / "llmchain.toml").write_text(_config_for(server), encoding="utf-8")
        for line, code in runnable_python(page):
            where = f"{page.relative_to(ROOT)}:{line}"
            try:
                exec(compile(code, where, "exec", dont_inherit=True), namespace)
            except Exception as exc:
                raise AssertionError(f"the snippet at {where} failed: {type(exc).__name__}: {exc}") from exc


def test_the_run_all_pages_exist() -> None:
    for name in RUN_ALL:
        assert (DOCS / name).is_file(), name


# -- TOML ---------------------------------------------------------------------------------------


def toml_snippets() -> list[tuple[str, str]]:
    """(where, text) for every distinct ```toml block, alternatives split apart."""
    seen: set[str] = set()
    out = []
    for page in [*doc_pages(), ROOT / "README.md"]:
        for line, code, _ in blocks(page, "toml"):
            for i, part in enumerate(_split_alternatives(code)):
                if part not in seen:
                    seen.add(part)
                    suffix = f" [transport #{i + 1}]" if i or part != code else ""
                    out.append((f"{page.relative_to(ROOT)}:{line}{suffix}", part))
    return out


def _split_alternatives(code: str) -> list[str]:
    """A block listing several ``[transport]`` tables shows alternatives: one config each."""
    parts = re.split(r"(?m)^(?=\[transport\])", code)
    if sum(p.startswith("[transport]") for p in parts) < 2:
        return [code]
    head = "" if parts[0].startswith("[transport]") else parts.pop(0)
    return [head + p for p in parts]


def _env_names(value: Any, key: str = "") -> Iterator[str]:
    """Environment variable names the config refers to (``*_env`` options)."""
    if isinstance(value, dict):
        for k, v in value.items():
            yield from _env_names(v, k)
    elif isinstance(value, list):
        for v in value:
            yield from _env_names(v, key)
    elif isinstance(value, str) and key.endswith("_env") and value:
        yield value
    if key.endswith("_env") and isinstance(value, dict):
        yield from (v for v in value.values() if isinstance(v, str))


def _stage_tables(data: dict[str, Any]) -> Iterator[dict[str, Any]]:
    for stage in data.get("stages", []):
        if isinstance(stage, dict):
            yield stage
            for alternative in stage.get("alternatives", []):
                if isinstance(alternative, dict):
                    yield from (s for s in alternative.get("stages", []) if isinstance(s, dict))


def _fake_import_path(monkeypatch: pytest.MonkeyPatch, path: str) -> None:
    """Make ``pkg.module:Name`` importable with a small pydantic model, if it is not."""
    module_name, _, attr = path.partition(":")
    try:
        __import__(module_name)
        return
    except ImportError:
        pass
    parts = module_name.split(".")
    for i in range(1, len(parts) + 1):
        name = ".".join(parts[:i])
        if name not in sys.modules:
            module = types.ModuleType(name)
            module.__path__ = []
            monkeypatch.setitem(sys.modules, name, module)
    model = type(attr, (BaseModel,), {"__annotations__": {"value": str}})
    monkeypatch.setattr(sys.modules[module_name], attr, model, raising=False)


def _plugins_defined_in(page: Path, names: set[str]) -> list[types.ModuleType]:
    """The page's own example plugins that register the stage ``names`` it configures."""
    modules = []
    for line, code, _ in blocks(page, "python"):
        if "@hookimpl" in code and any(f'register("{n}"' in code or f'"{n}", ' in code for n in names):
            module = types.ModuleType(f"docs_plugin_{page.stem}_{line}")
            exec(
                compile(code, f"{page.relative_to(ROOT)}:{line}", "exec", dont_inherit=True), module.__dict__
            )
            modules.append(module)
    return modules


SNIPPETS = toml_snippets()


def test_every_doc_page_with_toml_was_found() -> None:
    assert len(SNIPPETS) > 10


@pytest.mark.parametrize(("where", "text"), SNIPPETS, ids=[w for w, _ in SNIPPETS])
def test_toml_snippet_parses_and_builds_a_chain(
    where: str, text: str, offline: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise AssertionError(f"{where}: not valid TOML: {exc}") from exc
    if PYPROJECT_TABLES & set(data):
        return  # a pyproject.toml fragment (plugin packaging): parsing is the check
    for name in set(_env_names(data)):
        fake = "redis://127.0.0.1:9/0" if "URL" in name.upper() else "test-value-not-real"
        monkeypatch.setenv(name, fake)
    for stage in _stage_tables(data):
        if stage.get("use") == "validate" and isinstance(stage.get("model"), str):
            _fake_import_path(monkeypatch, stage["model"])
    registry = llmchain.plugins.get_registry()
    unknown = {s["use"] for s in _stage_tables(data) if s.get("use") not in registry.stages}
    known_stores = {name for table in registry.stores.values() for name in table}
    unknown |= {s["store"] for s in _stage_tables(data) if isinstance(s.get("store"), str)
                and s["store"] not in known_stores}
    page = ROOT / where.split(":", 1)[0]
    plugins = _plugins_defined_in(page, unknown) if unknown else []
    try:
        chain = Chain.from_config(data, plugins=plugins)
        chain.close()
    except Exception as exc:
        raise AssertionError(f"{where}: Chain.from_config rejected the snippet: {exc}") from exc
    assert os.getcwd() == str(offline)


# -- the index ----------------------------------------------------------------------------------


def test_the_docs_index_lists_every_page() -> None:
    index = (DOCS / "README.md").read_text(encoding="utf-8")
    linked = set(re.findall(r"\]\(([^)#]+)", index))
    pages = {p.name for p in DOCS.glob("*.md") if p.name != "README.md"}
    assert not pages - linked, f"add these pages to docs/README.md: {sorted(pages - linked)}"


def test_configuration_md_names_every_transport_option() -> None:
    text = (DOCS / "configuration.md").read_text(encoding="utf-8")
    missing = [
        f"{name}.{field}"
        for name, registered in sorted(llmchain.plugins.get_registry().transports.items())
        if registered.plugin in llmchain.plugins.BUILTIN_PLUGINS and registered.options_model
        for field in registered.options_model.model_fields
        if f"`{field}`" not in text
    ]
    assert not missing, f"docs/configuration.md does not mention these transport options: {missing}"
