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
def register_observers(register: Callable[[Callable[[Any], None]], None]) -> None:
    """Register observers: ``register(callback)``; ``callback(event)`` receives every
    ``llmchain.Event`` that any stage of any chain emits (attempts, retries, rate-limit waits,
    cache hits, repairs, breaker changes...).

    Callbacks run inline on the call's path: keep them fast and non-blocking. An exception in
    one is logged and never breaks the call.
    """
