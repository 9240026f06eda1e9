"""Plugins: registration from a module, from an installed distribution, filtering, failures."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import llmchain.plugins
from llmchain import Chain, PluginError, hookimpl


def test_register_plugin_module_from_a_test(test_plugin: None) -> None:
    registry = llmchain.plugins.get_registry()
    assert registry.stages["record"].plugin == "tests.core.stages"
    chain = Chain(["plain"])
    assert chain.complete("hi").text == "hi"


def test_unregistering_removes_its_stages() -> None:
    class Plugin:
        @hookimpl
        def register_middleware(self, register):  # type: ignore[no-untyped-def]
            register("temp_stage", type("T", (), {"handle": None}))

    llmchain.plugins.register(Plugin(), name="temp")
    assert "temp_stage" in llmchain.plugins.get_registry().stages
    llmchain.plugins.unregister(name="temp")
    assert "temp_stage" not in llmchain.plugins.get_registry().stages


def test_duplicate_stage_name_raises_plugin_error_naming_both() -> None:
    class Clash:
        @hookimpl
        def register_transports(self, register):  # type: ignore[no-untyped-def]
            register("mock", object)

    llmchain.plugins.register(Clash(), name="clash-plugin")
    try:
        with pytest.raises(
            PluginError,
            match=r"'mock' is registered twice: by 'llmchain.transports.mock' and by 'clash-plugin'",
        ):
            llmchain.plugins.get_registry()
    finally:
        llmchain.plugins.unregister(name="clash-plugin")


def test_plugin_raising_in_hook_is_named() -> None:
    class Broken:
        @hookimpl
        def register_middleware(self, register):  # type: ignore[no-untyped-def]
            raise RuntimeError("boom")

    llmchain.plugins.register(Broken(), name="broken-plugin")
    try:
        with pytest.raises(PluginError, match="'broken-plugin' failed in register_middleware"):
            llmchain.plugins.get_registry()
    finally:
        llmchain.plugins.unregister(name="broken-plugin")


def test_observer_hook_sees_events() -> None:
    seen: list[str] = []

    class Watcher:
        @hookimpl
        def register_observers(self, register):  # type: ignore[no-untyped-def]
            register(lambda event: seen.append(event.kind))

    llmchain.plugins.register(Watcher(), name="watcher")
    try:
        Chain([]).complete("x")
    finally:
        llmchain.plugins.unregister(name="watcher")
    assert "call_start" in seen and "call_end" in seen


def _make_distribution(site: Path, dist: str, module: str, body: str) -> None:
    """An installed distribution, as pip leaves it: a module plus dist-info with entry points."""
    (site / f"{module}.py").write_text(textwrap.dedent(body))
    info = site / f"{dist}-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text(f"[llmchain]\n{dist} = {module}\n")


GOOD_PLUGIN = """
    from llmchain import hookimpl

    class Shout:
        def __init__(self, *, clock=None):
            pass
        async def handle(self, request, call_next):
            response = await call_next(request)
            return response.model_copy(update={"text": response.text.upper() + "!"})

    @hookimpl
    def register_middleware(register):
        register("shout", Shout)
"""

SCRIPT = """
from llmchain import Chain, PluginError
try:
    print(Chain.from_config({"stages": [{"use": "shout"}]}).complete("hey").text)
except Exception as exc:
    print(type(exc).__name__, exc)
"""


def _run(site: Path, **env: str) -> str:
    environment = {k: v for k, v in os.environ.items() if k != "LLMCHAIN_LOAD_PLUGINS"}
    # the site first, then this tree's own path (so the llmchain under test is the one imported)
    environment.update(PYTHONPATH=os.pathsep.join([str(site), os.environ.get("PYTHONPATH", "")]), **env)
    result = subprocess.run(
        [sys.executable, "-c", SCRIPT],
        env=environment,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return result.stdout.strip()


def test_installed_entry_point_distribution_is_loaded(tmp_path: Path) -> None:
    _make_distribution(tmp_path, "llmchain-shout", "llmchain_shout", GOOD_PLUGIN)
    assert _run(tmp_path) == "HEY!"


def test_load_plugins_env_restricts_entry_points(tmp_path: Path) -> None:
    _make_distribution(tmp_path, "llmchain-shout", "llmchain_shout", GOOD_PLUGIN)
    out = _run(tmp_path, LLMCHAIN_LOAD_PLUGINS="")
    assert out.startswith("ConfigError") and "unknown stage 'shout'" in out
    assert _run(tmp_path, LLMCHAIN_LOAD_PLUGINS="llmchain-shout") == "HEY!"


def test_plugin_failing_to_import_raises_plugin_error_naming_it(tmp_path: Path) -> None:
    _make_distribution(tmp_path, "llmchain-broken", "llmchain_broken", "import not_a_module_xyz\n")
    out = _run(tmp_path)
    assert out.startswith("PluginError")
    assert "'llmchain-broken'" in out and "failed to import" in out and "not_a_module_xyz" in out


def test_a_misspelt_hook_in_an_installed_plugin_names_its_distribution(tmp_path: Path) -> None:
    _make_distribution(tmp_path, "llmchain-typo", "llmchain_typo",
                       "from llmchain import hookimpl\n\n@hookimpl\ndef register_midleware(register):\n    pass\n")
    out = _run(tmp_path)
    assert out.startswith("PluginError"), out
    assert "distribution llmchain-typo" in out and "register_midleware" in out and "0x" not in out
