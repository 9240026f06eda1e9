"""llmchain's own stores, registered through ``register_stores`` exactly as a third party's.

Each factory imports its module when called, so the Redis stores need the ``redis`` extra only
in a chain that asks for them.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any

from ..hookspecs import hookimpl


def _lazy(target: str) -> Callable[..., Any]:
    """A factory that imports ``module:function`` on first use and calls it."""
    module_name, _, func_name = target.partition(":")

    def factory(*args: Any, **kwargs: Any) -> Any:
        from .._exceptions import ConfigError

        try:
            module = importlib.import_module(module_name)
        except ImportError as exc:
            raise ConfigError(f"the store in {module_name} is not available ({exc}); "
                              "is the extra that provides it installed?") from None
        return getattr(module, func_name)(*args, **kwargs)

    factory.__qualname__ = factory.__name__ = target
    return factory


def _kind(module: str, function: str, kind: str) -> Callable[..., Any]:
    """Route and spend stores open by kind: ``function(kind, share=..., url=...)``."""
    opener = _lazy(f"{module}:{function}")

    def factory(*, share: str | None = None, url: str | None = None) -> Any:
        return opener(kind, share=share, url=url)

    return factory


@hookimpl
def register_stores(register: Callable[[str, str, Any], None]) -> None:
    register("cache", "memory", _lazy("llmchain.stores.cache_memory:open_cache_store"))
    register("cache", "sqlite", _lazy("llmchain.stores.cache_sqlite:open_cache_store"))
    register("cache", "redis", _lazy("llmchain.stores.cache_redis:open_cache_store"))
    register("rate_limit", "memory", _lazy("llmchain.stores.memory:open_rate_limit_store"))
    register("rate_limit", "redis", _lazy("llmchain.stores.state_redis:open_rate_limit_store"))
    register("breaker", "memory", _lazy("llmchain.stores.memory:open_breaker_store"))
    register("breaker", "redis", _lazy("llmchain.stores.state_redis:open_breaker_store"))
    register("throttle", "memory", _lazy("llmchain.stores.memory:open_throttle_store"))
    register("throttle", "redis", _lazy("llmchain.stores.state_redis:open_throttle_store"))
    for kind in ("memory", "redis"):
        register("route", kind, _kind("llmchain.stores.route_state", "open_route_state", kind))
        register("spend", kind, _kind("llmchain.stores.spend", "open_spend_store", kind))
