"""Plugin discovery: pluggy finds stage factories, transports and observers once per build.

Built-in modules register through the same hooks as third-party ones. Third-party plugins are
found through the ``llmchain`` entry-point group; ``LLMCHAIN_LOAD_PLUGINS`` (comma-separated
entry-point names, empty for none) restricts which are loaded.
"""

from __future__ import annotations

import importlib
import os
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from importlib.metadata import entry_points
from typing import Any

import pluggy
from pydantic import BaseModel

from . import hookspecs
from ._exceptions import PluginError

#: Modules that make up llmchain's own plugin; listed in the order they register.
BUILTIN_PLUGINS: tuple[str, ...] = (
    "llmchain.transports.mock",
    "llmchain.transports.openai",
    "llmchain.transports.anthropic",
    "llmchain.middleware.timeout",
    "llmchain.middleware.retry",
    "llmchain.middleware.rate_limit",
    "llmchain.middleware.circuit_breaker",
    "llmchain.middleware.fallback",
    "llmchain.middleware.repair",
    "llmchain.middleware.validate",
    "llmchain.middleware.parse",
    "llmchain.middleware.cache",
    "llmchain.middleware.log",
    "llmchain.middleware.budget",
    "llmchain.middleware.route",
)

ENTRY_POINT_GROUP = "llmchain"


@dataclass(frozen=True)
class Registered:
    """A stage or transport factory and the plugin that provided it."""

    name: str
    factory: Any
    plugin: str

    @property
    def options_model(self) -> type[BaseModel] | None:
        options = getattr(self.factory, "Options", None)
        return options if isinstance(options, type) and issubclass(options, BaseModel) else None


@dataclass(frozen=True)
class Registry:
    """Everything the plugins registered, looked up when a chain is built."""

    stages: dict[str, Registered]
    transports: dict[str, Registered]
    observers: tuple[Callable[[Any], None], ...]

    def describe_available(self, kind: str) -> str:
        table = self.stages if kind == "stage" else self.transports
        return ", ".join(f"{n} (from {r.plugin})" for n, r in sorted(table.items())) or "none"


_lock = threading.RLock()
_pm: pluggy.PluginManager | None = None
_registry: Registry | None = None


def _load_entry_points(pm: pluggy.PluginManager) -> None:
    allowed_env = os.environ.get("LLMCHAIN_LOAD_PLUGINS")
    allowed = None if allowed_env is None else {n.strip() for n in allowed_env.split(",") if n.strip()}
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        if allowed is not None and ep.name not in allowed:
            continue
        if pm.has_plugin(ep.name):
            continue
        dist = getattr(getattr(ep, "dist", None), "name", "?")
        try:
            plugin = ep.load()
        except Exception as exc:
            raise PluginError(
                f"plugin {ep.name!r} (distribution {dist!r}, {ep.value}) failed to import: "
                f"{type(exc).__name__}: {exc}. Fix or uninstall it, or leave it out with "
                "LLMCHAIN_LOAD_PLUGINS."
            ) from exc
        _register_plugin(pm, plugin, ep.name)


def _register_plugin(pm: pluggy.PluginManager, plugin: Any, name: str | None) -> None:
    try:
        pm.register(plugin, name=name)
    except Exception as exc:
        raise PluginError(f"plugin {name or plugin!r} could not be registered: {exc}") from exc


def get_plugin_manager() -> pluggy.PluginManager:
    """The process-wide plugin manager, with built-ins and entry points loaded."""
    global _pm
    with _lock:
        if _pm is None:
            pm = pluggy.PluginManager("llmchain")
            pm.add_hookspecs(hookspecs)
            for module_name in BUILTIN_PLUGINS:
                _register_plugin(pm, importlib.import_module(module_name), module_name)
            _load_entry_points(pm)
            _pm = pm
        return _pm


def register(plugin: Any, name: str | None = None) -> None:
    """Register a plugin object or module in code (e.g. from a test module)."""
    global _registry
    with _lock:
        pm = get_plugin_manager()
        if name is not None and pm.has_plugin(name):
            return
        if pm.is_registered(plugin):
            return
        _register_plugin(pm, plugin, name)
        _registry = None


def unregister(plugin: Any = None, name: str | None = None) -> None:
    """Remove a plugin registered with ``register``."""
    global _registry
    with _lock:
        get_plugin_manager().unregister(plugin, name=name)
        _registry = None


def _collect(pm: pluggy.PluginManager, hook_name: str, kind: str) -> dict[str, Registered]:
    table: dict[str, Registered] = {}
    for impl in getattr(pm.hook, hook_name).get_hookimpls():
        plugin_name = impl.plugin_name

        def add(name: str, factory: Any, _plugin: str = plugin_name) -> None:
            if not isinstance(name, str) or not name:
                raise PluginError(f"plugin {_plugin!r} registered a {kind} with an invalid name {name!r}")
            if name in table:
                raise PluginError(
                    f"{kind} {name!r} is registered twice: by {table[name].plugin!r} and by "
                    f"{_plugin!r}. Rename one of them."
                )
            table[name] = Registered(name, factory, _plugin)

        try:
            impl.function(register=add)
        except PluginError:
            raise
        except Exception as exc:
            raise PluginError(
                f"plugin {plugin_name!r} failed in {hook_name}: {type(exc).__name__}: {exc}"
            ) from exc
    return table


def get_registry(extra_plugins: Iterable[Any] = ()) -> Registry:
    """What all plugins registered; cached, rebuilt when plugins change."""
    global _registry
    with _lock:
        for plugin in extra_plugins:
            register(plugin)
        if _registry is None:
            pm = get_plugin_manager()
            observers: list[Callable[[Any], None]] = []
            for impl in pm.hook.register_observers.get_hookimpls():
                try:
                    impl.function(register=observers.append)
                except Exception as exc:
                    raise PluginError(
                        f"plugin {impl.plugin_name!r} failed in register_observers: {exc}"
                    ) from exc
            _registry = Registry(
                stages=_collect(pm, "register_middleware", "stage"),
                transports=_collect(pm, "register_transports", "transport"),
                observers=tuple(observers),
            )
        return _registry
