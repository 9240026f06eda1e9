"""The hooks a plugin implements. Each docstring is the contract.

All hooks run when a chain is *built*, never per request. Built-in stages and transports are
registered through these same hooks.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pluggy

hookspec = pluggy.HookspecMarker("llmchain")
hookimpl = pluggy.HookimplMarker("llmchain")


@hookspec
def register_middleware(register: Callable[[str, Any], None]) -> None:
    """Register stage factories: ``register(name, factory)``.

    ``factory`` is a class (or callable) with an ``Options`` attribute: a pydantic model of the
    stage's options (unknown keys are rejected). It is called as
    ``factory(options, clock=clock)`` and returns an object with
    ``async def handle(self, request, call_next) -> LLMResponse``. ``name`` is what configs put
    in ``use = "..."``; it must be unique across plugins.
    """


@hookspec
def register_transports(register: Callable[[str, Any], None]) -> None:
    """Register transports: ``register(name, factory)``.

    Same factory shape as stages; the object returned implements ``llmchain.Transport``
    (``name``, ``identity()``, ``async send(request)``, ``async aclose()``).
    """


@hookspec
def register_stores(register: Callable[[str, str, Any], None]) -> None:
    """Register state stores: ``register(family, name, factory)``.

    ``family`` says which stages can use the store and how ``factory`` is called; ``name`` is
    what their ``store = "..."`` option says. Built-in memory, SQLite and Redis stores register
    through this hook too.

    * ``"cache"``: ``factory(settings, clock)`` → ``llmchain.stores.cache_base.CacheStore``;
      ``settings`` is a ``StoreSettings`` (kind, path, url, max_entries, max_bytes, default_ttl_s).
    * ``"rate_limit"``: ``factory(share=..., url=...)`` → ``llmchain.stores.base.RateLimitStore``.
    * ``"breaker"``: ``factory(share=..., url=...)`` → ``llmchain.stores.base.BreakerStore``.
    * ``"throttle"``: ``factory(share=..., url=...)`` → ``llmchain.stores.base.ThrottleStore``
      (retry's adaptive throttling counters).
    * ``"route"``: ``factory(share=..., url=...)`` → ``llmchain.stores.route_state.RouteStateStore``.
    * ``"spend"``: ``factory(share=..., url=...)`` → ``llmchain.stores.spend.SpendStore``.

    ``share`` names state every user of the same name shares (None: private to one stage);
    ``url`` is the address from the stage's ``store_url``/``store_url_env`` options. A factory
    should import optional dependencies when called, so a missing extra fails only for the
    chain that asks for that store.
    """


@hookspec
def register_observers(register: Callable[[Callable[[Any], None]], None]) -> None:
    """Register observers: ``register(callback)``; ``callback(event)`` receives every
    ``llmchain.Event`` that any stage of any chain emits (attempts, retries, rate-limit waits,
    cache hits, repairs, breaker changes...).

    Callbacks run inline on the call's path: keep them fast and non-blocking. An exception in
    one is logged and never breaks the call.
    """
