"""Every hook is documented (headed by its exact signature, with a working example) and tested.

The "tested" check is genuine: the tests named in HOOK_TESTS are run in a fresh pytest process
with a profiler that records which hook implementations were called during each test. Only
implementations the test brought itself count — not the built-in or installed plugins' ones,
which any chain build calls.
"""

from __future__ import annotations

import ast
import json
import os
import re
import subprocess
import sys
import textwrap
import types
from pathlib import Path

import pytest

import llmchain.plugins
from llmchain import Chain, hookspecs

ROOT = Path(__file__).resolve().parent.parent
HOOKSPECS = Path(hookspecs.__file__)
DOC = ROOT / "docs" / "plugin_hooks.md"

#: hook name -> tests that exercise it (node ids from the repository root).
HOOK_TESTS: dict[str, list[str]] = {
    "register_middleware": [
        "tests/core/test_plugins.py::test_register_plugin_module_from_a_test",
        "tests/contract/test_contract_catches.py::TestGoodStageContract::test_options",
    ],
    "register_transports": [
        "tests/core/test_plugins.py::test_duplicate_stage_name_raises_plugin_error_naming_both",
    ],
    "register_observers": [
        "tests/core/test_plugins.py::test_observer_hook_sees_events",
    ],
    "register_stores": [
        "tests/core/test_plugin_registry.py::test_a_store_for_an_unknown_family_is_a_plugin_error",
        "tests/core/test_plugin_registry.py::test_a_store_given_to_one_chain_serves_that_chain",
    ],
}


def spec_signatures() -> dict[str, str]:
    """Hook name -> signature exactly as written in hookspecs.py."""
    out = {}
    for node in ast.parse(HOOKSPECS.read_text()).body:
        if isinstance(node, ast.FunctionDef) and any(
            isinstance(d, ast.Name) and d.id == "hookspec" for d in node.decorator_list
        ):
            returns = f" -> {ast.unparse(node.returns)}" if node.returns else ""
            out[node.name] = f"{node.name}({ast.unparse(node.args)}){returns}"
    return out


def doc_sections() -> dict[str, str]:
    """``## `signature` `` heading -> the section's text."""
    sections: dict[str, str] = {}
    for block in re.split(r"^## ", DOC.read_text(), flags=re.MULTILINE)[1:]:
        heading, _, body = block.partition("\n")
        match = re.fullmatch(r"`(.+)`", heading.strip())
        if match:
            sections[match.group(1)] = body
    return sections


SIGNATURES = spec_signatures()


def test_ast_finds_the_same_hooks_pluggy_registers() -> None:
    pluggy_specs = {n for n in dir(hookspecs) if hasattr(getattr(hookspecs, n), "llmchain_spec")}
    assert set(SIGNATURES) == pluggy_specs and SIGNATURES


@pytest.mark.parametrize("hook", sorted(SIGNATURES))
def test_hook_has_a_section_headed_by_its_exact_signature(hook: str) -> None:
    assert SIGNATURES[hook] in doc_sections(), (
        f"docs/plugin_hooks.md needs a section headed: ## `{SIGNATURES[hook]}`"
    )


def test_no_section_documents_a_hook_that_does_not_exist() -> None:
    assert set(doc_sections()) <= set(SIGNATURES.values())


def _example(hook: str) -> str:
    body = doc_sections()[SIGNATURES[hook]]
    blocks = re.findall(r"```python\n(.*?)```", body, flags=re.DOTALL)
    assert blocks, f"the section for {hook} has no ```python example"
    return blocks[0]


@pytest.mark.parametrize("hook", sorted(SIGNATURES))
def test_section_names_every_argument_and_has_an_example(hook: str) -> None:
    body = doc_sections()[SIGNATURES[hook]]
    spec = getattr(hookspecs, hook)
    for argument in spec.__code__.co_varnames[: spec.__code__.co_argcount]:
        assert f"`{argument}`" in body, f"{hook}: argument {argument!r} is not described"
    assert "**Arguments**" in body and "**Example**" in body
    assert "@hookimpl" in _example(hook) and f"def {hook}(" in _example(hook)


@pytest.mark.parametrize("hook", sorted(SIGNATURES))
def test_example_registers_something_that_works(hook: str) -> None:
    module = types.ModuleType(f"docs_example_{hook}")
    exec(compile(_example(hook), f"<docs/plugin_hooks.md: {hook}>", "exec"), module.__dict__)
    before = llmchain.plugins.get_registry()
    llmchain.plugins.register(module, name=module.__name__)
    try:
        after = llmchain.plugins.get_registry()
        if hook == "register_middleware":
            new = set(after.stages) - set(before.stages)
            assert new, "the example registered no stage"
            for name in new:
                assert Chain([name]).complete("hello").text
        elif hook == "register_transports":
            new = set(after.transports) - set(before.transports)
            assert new, "the example registered no transport"
            for name in new:
                assert Chain([], name).complete("hello").text
        elif hook == "register_observers":
            counts = module.__dict__["EVENT_COUNTS"]
            Chain([]).complete("hello")
            assert counts["call_start"] == counts["call_end"] == 1, "the observer example saw no events"
        elif hook == "register_stores":
            new = {f"{family}:{name}" for family, table in after.stores.items() for name in table} - {
                f"{family}:{name}" for family, table in before.stores.items() for name in table}
            assert new == {"cache:dict"}, new
            chain = Chain([{"use": "cache", "store": "dict"}])
            first, second = chain.complete("hello"), chain.complete("hello")
            assert first.cache is not None and first.cache.status == "miss"
            assert second.cache is not None and second.cache.status == "hit"
        else:
            pytest.fail(f"no check for the example of the new hook {hook}: extend this test")
    finally:
        llmchain.plugins.unregister(name=module.__name__)


def test_every_hook_has_tests_listed() -> None:
    assert set(HOOK_TESTS) == set(SIGNATURES), "add the hook's tests to HOOK_TESTS"
    assert all(HOOK_TESTS.values())


TRACER = '''
import json, os, sys, threading
import pytest

HOOKS = set(os.environ["LLMCHAIN_TRACE_HOOKS"].split(","))
SEEN = {}
PRELOADED = set()  # implementations installed before any test ran: built-ins, entry points
_current = [None]


def pytest_sessionstart(session):
    import llmchain.plugins

    pm = llmchain.plugins.get_plugin_manager()
    for name in HOOKS:
        PRELOADED.update(impl.function.__code__ for impl in getattr(pm.hook, name).get_hookimpls())


def _profile(frame, event, arg):
    code = frame.f_code
    if event == "call" and code.co_name in HOOKS and _current[0] and code not in PRELOADED:
        SEEN.setdefault(_current[0], set()).add(code.co_name)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_protocol(item, nextitem):
    _current[0] = item.nodeid
    sys.setprofile(_profile)
    threading.setprofile(_profile)
    try:
        return (yield)
    finally:
        sys.setprofile(None)
        threading.setprofile(None)
        _current[0] = None


def pytest_sessionfinish(session):
    with open(os.environ["LLMCHAIN_TRACE_OUT"], "w") as f:
        json.dump({k: sorted(v) for k, v in SEEN.items()}, f)
'''


def test_listed_tests_exist_pass_and_really_call_their_hook(tmp_path: Path) -> None:
    (tmp_path / "llmchain_hook_tracer.py").write_text(textwrap.dedent(TRACER))
    out = tmp_path / "trace.json"
    node_ids = sorted({n for ids in HOOK_TESTS.values() for n in ids})
    env = {
        **{k: v for k, v in os.environ.items() if k != "LLMCHAIN_LOAD_PLUGINS"},
        "PYTHONPATH": os.pathsep.join([str(tmp_path), str(ROOT), os.environ.get("PYTHONPATH", "")]),
        "LLMCHAIN_TRACE_HOOKS": ",".join(SIGNATURES),
        "LLMCHAIN_TRACE_OUT": str(out),
    }
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "llmchain_hook_tracer", "-q", "-p", "no:cacheprovider", *node_ids],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, f"listed tests missing or failing:\n{result.stdout[-3000:]}{result.stderr[-2000:]}"
    called = json.loads(out.read_text())
    for hook, tests in HOOK_TESTS.items():
        for node_id in tests:
            assert hook in called.get(node_id, []), f"{node_id} never called a {hook} implementation"
