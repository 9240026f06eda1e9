"""The registry belongs to a build: per-chain plugins, loud misspellings, stores through a hook."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

import llmchain.plugins
from llmchain import Chain, ConfigError, LLMRequest, LLMResponse, Next, PluginError, hookimpl


class Upper:
    async def handle(self, request: LLMRequest, call_next: Next) -> LLMResponse:
        response = await call_next(request)
        return response.model_copy(update={"text": response.text.upper()})


class UpperPlugin:
    @hookimpl
    def register_middleware(self, register: Callable[[str, Any], None]) -> None:
        register("upper", lambda *, clock=None: Upper())


class ReversePlugin:
    @hookimpl
    def register_middleware(self, register: Callable[[str, Any], None]) -> None:
        register("upper", lambda *, clock=None: Upper())  # the same name: no clash across chains
        register("reverse", lambda *, clock=None: Upper())


def test_plugins_given_to_one_chain_stay_with_that_chain() -> None:
    first = Chain(["upper"], plugins=[UpperPlugin()])
    assert first.complete("hi").text == "HI"
    with pytest.raises(ConfigError, match="unknown stage 'upper'"):
        Chain(["upper"])
    second = Chain(["reverse", "upper"], plugins=[ReversePlugin()])
    assert [name for name, _ in second.stages] == ["reverse", "upper"]
    with pytest.raises(ConfigError, match="unknown stage 'reverse'"):
        Chain(["reverse"], plugins=[UpperPlugin()])
    assert "upper" not in llmchain.plugins.get_registry().stages


def test_a_fallback_builds_its_stages_from_its_own_chains_plugins() -> None:
    alternatives = [{"transport": {"use": "mock", "default": "b"}, "stages": [{"use": "upper"}]}]
    chain = Chain([{"use": "fallback", "alternatives": alternatives}], plugins=[UpperPlugin()])
    assert chain.complete("hi").text  # built: 'upper' was found in this chain's registry
    with pytest.raises(ConfigError, match=r"fallback alternatives\[0\]: stages\[0\] \(upper\): unknown stage"):
        Chain([{"use": "fallback", "alternatives": alternatives}])


class Misspelt:
    @hookimpl
    def register_midleware(self, register: Callable[[str, Any], None]) -> None:
        register("never", object)


def test_a_misspelt_hook_is_a_plugin_error_naming_the_plugin() -> None:
    with pytest.raises(PluginError) as caught:
        Chain([], plugins=[Misspelt()])
    message = str(caught.value)
    assert "tests.core.test_plugin_registry.Misspelt" in message
    assert "register_midleware" in message and "register_middleware" in message
    assert "0x" not in message and str(id(Misspelt)) not in message


def test_a_misspelt_hook_in_a_module_names_the_module(tmp_path: Any, monkeypatch: Any) -> None:
    (tmp_path / "misspelt_plugin_mod.py").write_text(
        "from llmchain import hookimpl\n\n@hookimpl\ndef register_transport(register):\n    pass\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    import misspelt_plugin_mod  # type: ignore[import-not-found]

    with pytest.raises(PluginError, match="'misspelt_plugin_mod' implements a hook llmchain does not have"):
        Chain([], plugins=[misspelt_plugin_mod])


def test_builtin_stores_register_through_the_hook() -> None:
    registry = llmchain.plugins.get_registry()
    assert {n: r.plugin for n, r in registry.stores["cache"].items()} == {
        "memory": "llmchain.stores.builtin", "sqlite": "llmchain.stores.builtin",
        "redis": "llmchain.stores.builtin"}
    assert set(registry.stores["rate_limit"]) == set(registry.stores["breaker"]) == {"memory", "redis"}
    with pytest.raises(ConfigError, match=r"unknown cache store 'nope'; available: memory \(from llmchain"):
        Chain([{"use": "cache", "store": "nope"}])


def test_a_store_for_an_unknown_family_is_a_plugin_error() -> None:
    class Odd:
        @hookimpl
        def register_stores(self, register: Callable[[str, str, Any], None]) -> None:
            register("caches", "x", object)

    with pytest.raises(PluginError, match="unknown family 'caches'"):
        Chain([], plugins=[Odd()])


class CountingStores:
    """A cache store family entry that counts what it was asked to open."""

    opened: list[str] = []

    @hookimpl
    def register_stores(self, register: Callable[[str, str, Any], None]) -> None:
        from llmchain.stores.cache_memory import MemoryCacheStore

        def factory(settings: Any, clock: Any) -> Any:
            self.opened.append(settings.kind)
            return MemoryCacheStore(clock=clock)

        register("cache", "counted", factory)


def test_a_store_given_to_one_chain_serves_that_chain() -> None:
    chain = Chain([{"use": "cache", "store": "counted"}], plugins=[CountingStores()])
    assert CountingStores.opened == ["counted"]
    assert chain.complete("x").cache is not None and chain.complete("x").cache.status == "hit"  # type: ignore[union-attr]
    with pytest.raises(ConfigError, match="unknown cache store 'counted'"):
        Chain([{"use": "cache", "store": "counted"}])
