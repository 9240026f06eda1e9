"""The ``circuit_breaker`` stage: stop calling a backend that keeps failing, probe it, resume.

Per key (the model by default; each stage instance belongs to one transport, so that is per
transport + model) the breaker counts the outcomes of recent calls. When at least
``min_calls`` of the last ``window_calls`` calls within ``window_s`` are known and
``failure_rate`` of them failed, it opens: calls fail fast with ``CircuitOpen`` (``retry_after``
= time until the next probe) for ``open_s``. Then one probe goes through (half-open); its
success closes the breaker, its failure opens it again.

Failures are what says the backend is unhealthy: connect errors, resets, timeouts, 5xx and
unreadable answers. A 429 (our quota, not their health), a cancelled call or a ``CircuitOpen``
from further in count as nothing; other 4xx and output errors mean the backend answered, so
they count as successes. A streamed call is recorded when its stream ends: completed is a
success, an error mid-stream (``StreamInterrupted``) a failure, a stream the caller closed
early nothing.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any, Literal

from pydantic import Field, model_validator

from .._clock import REAL_CLOCK, Clock
from .._events import emit
from .._exceptions import (
    CallError,
    CircuitOpen,
    GaveUp,
    ProviderError,
    RateLimited,
    StoreUnavailable,
    StreamInterrupted,
    TransportError,
)
from .._models import LLMRequest, LLMResponse
from .._stream import at_end
from .._types import Next
from ..hookspecs import hookimpl
from ..policies.breaker import BreakerConfig, Permit
from ..stores._shared import SharedStateOptions, store_deadline
from ..stores.base import BreakerStore, open_breaker_store
from ..stores.memory import MemoryBreakerStore


def counts_as_failure(error: CallError) -> bool | None:
    """True: the backend looks unhealthy; False: it answered; None: says nothing."""
    if isinstance(error, StreamInterrupted):
        return True  # it broke mid-answer: whatever the cause, the backend did not deliver
    if isinstance(error, GaveUp) and error.errors:
        error = error.errors[-1]
    if isinstance(error, (RateLimited, CircuitOpen, StoreUnavailable)):
        return None
    if isinstance(error, TransportError):
        return True
    if isinstance(error, ProviderError):
        status = error.status_code
        return status is None or status >= 500
    if type(error) is CallError:  # an unexpected error of unknown origin
        return None
    return False


class CircuitBreakerMiddleware:
    """Fail fast while the backend behind this stage keeps failing."""

    name = kind = "circuit_breaker"
    #: What this stage does, as data: order hints and other stages go by roles, never by names.
    roles = frozenset({"circuit_breaker"})
    #: Streamed calls pass through ``handle`` like any other (see docs/stages/circuit_breaker.md, "Streams").
    handles_streams = True

    class Options(SharedStateOptions):

        failure_rate: float = Field(0.5, gt=0, le=1, description="Share of failed calls in the window that opens the breaker.")  # noqa: E501
        min_calls: int = Field(10, ge=1, description="Calls the window must hold before the rate is judged.")
        window_calls: int = Field(50, ge=1, description="The window holds at most this many of the latest calls...")  # noqa: E501
        window_s: float = Field(60.0, gt=0, description="...none older than this many seconds.")
        open_s: float = Field(30.0, gt=0, description="How long an open breaker fails fast before letting a probe through.")  # noqa: E501
        key: Literal["model", "global"] = Field("model", description="One breaker per model, or one for all calls through this stage.")  # noqa: E501

        @model_validator(mode="after")
        def _window_fits(self) -> CircuitBreakerMiddleware.Options:
            if self.min_calls > self.window_calls:
                raise ValueError(f"min_calls ({self.min_calls}) cannot exceed window_calls "
                                 f"({self.window_calls}): the breaker could never open")
            return self

    def __init__(
        self,
        options: Options | None = None,
        *,
        clock: Clock = REAL_CLOCK,
        store: BreakerStore | None = None,
    ) -> None:
        self.options = o = options or self.Options()
        self._clock = clock
        self.store = store or open_breaker_store(o.store, share=o.share, url=o.store_address())
        #: a shared store's I/O is bounded by the call's deadline (memory answers at once)
        self._shared = not isinstance(self.store, MemoryBreakerStore)
        self.config = BreakerConfig(o.failure_rate, o.min_calls, o.window_calls, o.window_s, o.open_s)
        self._per_model = o.key == "model"

    async def handle(self, request: LLMRequest, call_next: Next) -> LLMResponse:
        if self._shared:  # a shared store's I/O must end within the call's deadline
            with store_deadline(request, self._clock):
                return await self._handle(request, call_next)
        return await self._handle(request, call_next)

    async def _handle(self, request: LLMRequest, call_next: Next) -> LLMResponse:
        key = (request.model or "default") if self._per_model else "*"
        config = self.config
        permit = await self.store.acquire(key, self._clock.now(), config)
        if permit.changed:
            emit("breaker_state", "circuit_breaker", key=key, state=permit.state)
        if not permit.allowed:
            raise _open_error(key, permit, config)
        try:
            response = await call_next(request)
        except CallError as exc:
            await self._record(key, permit, counts_as_failure(exc))
            raise
        except (asyncio.CancelledError, Exception):
            await self._record(key, permit, None)
            raise
        if response.stream is not None:  # the outcome is known when the stream ends
            return self._at_stream_end(key, permit, response)
        await self._record(key, permit, False)
        return response

    def _at_stream_end(self, key: str, permit: Permit, response: LLMResponse) -> LLMResponse:
        async def ended(final: LLMResponse) -> LLMResponse:
            await self._record(key, permit, False)
            return final

        async def failed(error: BaseException | None) -> None:
            verdict = counts_as_failure(error) if isinstance(error, CallError) else None
            await self._record(key, permit, verdict)

        response.stream.pipe(lambda events: at_end(events, ended, failed))
        return response

    async def _record(self, key: str, permit: Permit, failed: bool | None) -> None:
        try:
            changed = await self.store.record(key, self._clock.now(), permit, failed, self.config)
        except Exception:  # a store failure must not replace the call's own outcome
            emit("store_unavailable", "circuit_breaker", key=key, operation="record")
            return
        if changed is not None:
            emit("breaker_state", "circuit_breaker", key=key, state=changed)


def _open_error(key: str, permit: Permit, config: BreakerConfig) -> CircuitOpen:
    if permit.state == "open":
        why = f"the circuit for {key!r} is open (too many failures); next probe in {permit.retry_after or 0:.3g}s"  # noqa: E501
    else:
        why = f"the circuit for {key!r} is half-open and its one probe is still in flight"
    return CircuitOpen(
        f"{why}; failing fast", retry_after=permit.retry_after,
        hint=f"the backend failed at least {config.failure_rate:.0%} of its recent calls; "
             "a fallback stage outside this one can route to an alternative")


@hookimpl
def register_middleware(register: Callable[[str, Any], None]) -> None:
    register("circuit_breaker", CircuitBreakerMiddleware)
