"""Plugin discovery: pluggy finds stages, transports, stores and observers once per build.

Built-in modules register through the same hooks as third-party ones. Third-party plugins are
found through the ``llmchain`` entry-point group; ``LLMCHAIN_LOAD_PLUGINS`` (comma-separated
entry-point names, empty for none) restricts which are loaded.

The registry belongs to a build: ``Chain(plugins=[p])`` builds its own plugin manager (the
process-wide plugins plus ``p``), so ``p`` is never seen by another chain. Every hook is called
through pluggy and ``check_pending()`` runs, so a misspelt hook fails loudly. Nothing here runs
per request: a chain looks its parts up once, when it is built.
"""

from __future__ import annotations

import importlib
import os
import threading
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from types import ModuleType
from typing import Any

import pluggy
from pydantic import BaseModel

from . import hookspecs
from ._exceptions import ConfigError, PluginError

#: Modules that make up llmchain's own plugin; listed in the order they register.
BUILTIN_PLUGINS: tuple[str, ...] = (
    "llmchain.stores.builtin",
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

#: The store families a plugin can fill with ``register_stores`` (see ``hookspecs``).
STORE_FAMILIES = ("breaker", "cache", "rate_limit", "route", "spend", "throttle")


@dataclass(frozen=True)
class Registered:
    """A stage, transport or store factory and the plugin that provided it."""

    name: str
    factory: Any
    plugin: str

    @property
    def options_model(self) -> type[BaseModel] | None:
        options = getattr(self.factory, "Options", None)
        return options if isinstance(options, type) and issubclass(options, BaseModel) else None


@dataclass(frozen=True)
class Registry:
    """Everything the plugins of one build registered, looked up when a chain is built."""

    stages: dict[str, Registered]
    transports: dict[str, Registered]
    observers: tuple[Callable[[Any], None], ...]
    stores: dict[str, dict[str, Registered]] = field(default_factory=dict)

    def describe_available(self, kind: str) -> str:
        table = self.stages if kind == "stage" else self.transports
        return ", ".join(f"{n} (from {r.plugin})" for n, r in sorted(table.items())) or "none"

    def store(self, family: str, kind: str) -> Registered:
        """The ``family`` store named ``kind`` (``("cache", "sqlite")``), or a ConfigError
        listing the ones this build knows."""
        table = self.stores.get(family, {})
        found = table.get(kind)
        if found is None:
            known = ", ".join(f"{n} (from {r.plugin})" for n, r in sorted(table.items())) or "none"
            raise ConfigError(f"unknown {family.replace('_', '-')} store {kind!r}; available: {known}. "
                              "Install the plugin that provides it or fix the name.")
        return found


_lock = threading.RLock()
_pm: pluggy.PluginManager | None = None
_registry: Registry | None = None
#: How errors name an entry-point plugin: its entry point and distribution (name → label).
_labels: dict[str, str] = {}
#: The registry of the chain being built right now (stages that build inner parts use it).
_building: ContextVar[Registry | None] = ContextVar("llmchain_building_registry", default=None)


def plugin_label(plugin: Any) -> str:
    """How errors name a plugin object: its module, or its class's module and name."""
    if isinstance(plugin, ModuleType):
        return plugin.__name__
    if isinstance(plugin, type):
        return f"{plugin.__module__}.{plugin.__qualname__}"
    return f"{type(plugin).__module__}.{type(plugin).__qualname__}"


def _new_manager() -> pluggy.PluginManager:
    pm = pluggy.PluginManager("llmchain")
    pm.add_hookspecs(hookspecs)
    return pm


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
        _labels[ep.name] = f"{ep.name} (distribution {dist}, {ep.value})"
        _register_plugin(pm, plugin, ep.name, repr(_labels[ep.name]))


def _register_plugin(pm: pluggy.PluginManager, plugin: Any, name: str, label: str | None = None) -> None:
    try:
        pm.register(plugin, name=name)
    except Exception as exc:
        raise PluginError(f"plugin {label or repr(name)} could not be registered: {exc}") from exc


def _check_pending(pm: pluggy.PluginManager) -> None:
    """A hook implementation no spec matches is a misspelling: say which plugin has it."""
    try:
        pm.check_pending()
    except pluggy.PluginValidationError as exc:
        name = pm.get_name(exc.plugin) or plugin_label(exc.plugin)
        name = _labels.get(name, name)
        known = sorted(n for n in vars(hookspecs) if n.startswith("register_"))
        unknown = sorted(
            n for n, caller in vars(pm.hook).items()
            if isinstance(caller, pluggy.HookCaller) and not caller.has_spec()
            and any(impl.plugin is exc.plugin for impl in caller.get_hookimpls())
        )
        raise PluginError(
            f"plugin {name!r} implements a hook llmchain does not have: {', '.join(unknown)}. "
            f"The hooks are: {', '.join(known)}; check the spelling."
        ) from None


def get_plugin_manager() -> pluggy.PluginManager:
    """The process-wide plugin manager, with built-ins and entry points loaded."""
    global _pm
    with _lock:
        if _pm is None:
            pm = _new_manager()
            for module_name in BUILTIN_PLUGINS:
                _register_plugin(pm, importlib.import_module(module_name), module_name)
            _load_entry_points(pm)
            _pm = pm
        return _pm


def register(plugin: Any, name: str | None = None) -> None:
    """Register a plugin for every chain in this process (e.g. from a test's conftest).

    To give a plugin to one chain only, pass it as ``Chain(plugins=[plugin])``.
    """
    global _registry
    with _lock:
        pm = get_plugin_manager()
        if name is not None and pm.has_plugin(name):
            return
        if pm.is_registered(plugin):
            return
        _register_plugin(pm, plugin, name or plugin_label(plugin))
        _registry = None


def unregister(plugin: Any = None, name: str | None = None) -> None:
    """Remove a plugin registered with ``register``."""
    global _registry
    with _lock:
        get_plugin_manager().unregister(plugin, name=name)
        _registry = None


def _call(pm: pluggy.PluginManager, hook_name: str, make_register: Callable[[str], Any]) -> None:
    """Call ``hook_name`` through pluggy, one plugin at a time, so that whatever a plugin
    registers (or raises) is attributed to it by name.

    Each plugin gets a throwaway manager of its own for the call (pluggy's ``subset_hook_caller``
    needs hashable plugins, and a ``SimpleNamespace`` is a fine plugin): build time only.
    """
    for impl in getattr(pm.hook, hook_name).get_hookimpls():
        alone = _new_manager()
        alone.register(impl.plugin, name=impl.plugin_name)
        try:
            getattr(alone.hook, hook_name)(register=make_register(impl.plugin_name))
        except PluginError:
            raise
        except Exception as exc:
            raise PluginError(
                f"plugin {impl.plugin_name!r} failed in {hook_name}: {type(exc).__name__}: {exc}"
            ) from exc


def _collect(pm: pluggy.PluginManager, hook_name: str, kind: str) -> dict[str, Registered]:
    table: dict[str, Registered] = {}

    def make_register(plugin: str) -> Callable[[str, Any], None]:
        def add(name: str, factory: Any) -> None:
            _add(table, kind, plugin, name, factory)
        return add

    _call(pm, hook_name, make_register)
    return table


def _add(table: dict[str, Registered], kind: str, plugin: str, name: str, factory: Any) -> None:
    if not isinstance(name, str) or not name:
        raise PluginError(f"plugin {plugin!r} registered a {kind} with an invalid name {name!r}")
    if name in table:
        raise PluginError(
            f"{kind} {name!r} is registered twice: by {table[name].plugin!r} and by "
            f"{plugin!r}. Rename one of them."
        )
    if not callable(factory):
        raise PluginError(f"plugin {plugin!r} registered {kind} {name!r} with {factory!r}, "
                          "which is not callable")
    table[name] = Registered(name, factory, plugin)


def _collect_stores(pm: pluggy.PluginManager) -> dict[str, dict[str, Registered]]:
    stores: dict[str, dict[str, Registered]] = {family: {} for family in STORE_FAMILIES}

    def make_register(plugin: str) -> Callable[[str, str, Any], None]:
        def add(family: str, name: str, factory: Any) -> None:
            if family not in stores:
                raise PluginError(f"plugin {plugin!r} registered a store for unknown family "
                                  f"{family!r}; the families are {', '.join(STORE_FAMILIES)}")
            _add(stores[family], f"{family} store", plugin, name, factory)
        return add

    _call(pm, "register_stores", make_register)
    return stores


def _build_registry(pm: pluggy.PluginManager) -> Registry:
    _check_pending(pm)
    observers: list[Callable[[Any], None]] = []
    _call(pm, "register_observers", lambda plugin: observers.append)
    return Registry(
        stages=_collect(pm, "register_middleware", "stage"),
        transports=_collect(pm, "register_transports", "transport"),
        observers=tuple(observers),
        stores=_collect_stores(pm),
    )


def get_registry(extra_plugins: Iterable[Any] = ()) -> Registry:
    """What the process-wide plugins registered (cached), plus ``extra_plugins`` for one build.

    With extra plugins a fresh plugin manager is built for this call only: they join no other
    build's registry.
    """
    global _registry
    extras = list(extra_plugins)
    with _lock:
        base = get_plugin_manager()
        if not extras:
            if _registry is None:
                _registry = _build_registry(base)
            return _registry
        pm = _new_manager()
        for name, plugin in base.list_name_plugin():
            if plugin is not None:
                pm.register(plugin, name=name)
        for plugin in extras:
            if not pm.is_registered(plugin):
                _register_plugin(pm, plugin, plugin_label(plugin) if not pm.has_plugin(plugin_label(plugin))
                                 else f"{plugin_label(plugin)}#{len(pm.get_plugins())}")
        return _build_registry(pm)


@contextmanager
def building(registry: Registry) -> Iterator[Registry]:
    """Make ``registry`` the one that parts built inside (fallback's, route's) look up."""
    token = _building.set(registry)
    try:
        yield registry
    finally:
        _building.reset(token)


def current_registry() -> Registry:
    """The registry of the chain being built, or the process-wide one outside a build."""
    registry = _building.get()
    return registry if registry is not None else get_registry()
