"""The protocols a stage and a transport implement."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, Protocol, runtime_checkable

from ._models import LLMRequest, LLMResponse

Next = Callable[[LLMRequest], Awaitable[LLMResponse]]
"""What a stage calls to pass the request inward."""


@runtime_checkable
class Middleware(Protocol):
    """A stage: may call ``call_next`` zero times (cache hit), once (log) or many (retry)."""

    async def handle(self, request: LLMRequest, call_next: Next) -> LLMResponse: ...


@runtime_checkable
class Transport(Protocol):
    """The innermost step: turns a request into a provider call."""

    #: Short label used in attempts, logs and ``served_by`` (e.g. ``"openai:gpt-4o-mini"``).
    name: str

    def identity(self) -> dict[str, Any]:
        """What identifies the backend for cache keys (kind, base_url); never secrets."""
        ...

    async def send(self, request: LLMRequest) -> LLMResponse: ...

    async def aclose(self) -> None: ...


@runtime_checkable
class StreamingStage(Protocol):
    """The stage contract, streams included (docs/architecture.md, "Streams through the chain").

    * ``roles``: what the stage does, as data (``frozenset({"retry"})``). Order hints and any
      stream semantics go by roles, never by a stage's name: a replacement retry declaring
      ``"retry"`` gets the built-in one's warnings.
    * ``handles_streams = True``: ``handle`` knows that ``request.stream`` may be set, and then
      gets from ``call_next`` (and returns) a response whose ``stream`` (an ``LLMStream``) holds
      the events; it may ``pipe`` them through a wrapper of its own. Without it, the chain
      applies the default: the chunks pass the stage untouched and its ``handle`` gets the
      *final* response when the stream ends.
    * ``handle``: as for ``Middleware``. Whatever fails before the first chunk is raised by
      ``call_next`` as for any call; after it, ``StreamInterrupted``.
    """

    roles: frozenset[str]
    handles_streams: bool

    async def handle(self, request: LLMRequest, call_next: Next) -> LLMResponse: ...
