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
