"""The protocols a stage and a transport implement."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, Protocol, runtime_checkable

from ._models import LLMRequest, LLMResponse

Next = Callable[[LLMRequest], Awaitable[LLMResponse]]
"""What a stage calls to pass the request inward."""


@runtime_checkable
class Stage(Protocol):
    """A stage: ``handle`` may call ``call_next`` zero times (cache hit), once (log) or many
    (retry). The core passes ``call_next`` positionally. What else a stage may declare (``name``,
    ``roles``, ``handles_streams``, ``needs_transport_identity``, ``aclose``) is optional and
    listed with its default on ``llmchain.StageBase`` (docs/writing_plugins.md).

    Streams: with ``handles_streams = True``, ``handle`` knows that ``request.stream`` may be
    set, and then gets from ``call_next`` (and returns) a response whose ``stream`` holds the
    events; without it, the chain runs ``handle`` on the *final* response when the stream ends.
    Whatever fails before the first chunk is raised by ``call_next`` as for any call; after it,
    ``StreamInterrupted``.
    """

    async def handle(self, request: LLMRequest, call_next: Next, /) -> LLMResponse: ...


#: The former name of ``Stage`` (kept: stage code written against it keeps working).
Middleware = Stage
#: The former name of the stream-aware contract, now part of ``Stage`` (one protocol, not two).
StreamingStage = Stage


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
