"""Composition: stages + transport → one async callable, plus the two pinned ends.

The innermost end (``TransportCall``) turns each transport call into an Attempt record and
enforces what is left of the call's deadline, so a call can never outlive it even without a
timeout stage. The outermost end (in ``Chain``) normalises errors.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncGenerator, AsyncIterator, Sequence
from functools import partial
from typing import Any

from ._attempt import Attempt, Outcome
from ._clock import Clock, RealClock
from ._events import CallTrace, current_call, emit
from ._exceptions import CallError, StreamInterrupted, TimeoutExceeded
from ._models import LLMRequest, LLMResponse, copy_with
from ._redact import redact, trim
from ._stage import stage_traits
from ._stream import (
    STREAM_IDLE_KEY,
    Finish,
    LLMStream,
    StreamEnd,
    StreamEvent,
    StreamUsage,
    TextDelta,
    replay,
    stream_default,
    stream_response,
)
from ._stream_deadline import Watchdog, deadline_passed, idle_passed
from ._text_buffer import TextBuffer
from ._types import Middleware, Next, Transport
from ._wrap import wrap_foreign

#: What a successful attempt records besides its number, times and backend (all passed, as the
#: validated construction below passes them, so the set of fields set is the same).
_OK_ATTEMPT = Attempt(number=1, started_at=0.0, duration_s=0.0, outcome="ok", status_code=None,
                      error_type=None, error=None, retry_after_s=None, served_by=None)


class TransportCall:
    """The innermost step: one call = one recorded attempt, bounded by the deadline."""

    __slots__ = ("clock", "kind", "transport")

    def __init__(self, transport: Transport, clock: Clock) -> None:
        self.transport = transport
        self.clock = clock
        self.kind = transport.name.split(":", 1)[0]

    async def __call__(self, request: LLMRequest) -> LLMResponse:
        clock = self.clock
        trace = current_call.get()
        number = len(trace.attempts) + 1 if trace is not None else request.attempt
        started_wall, t0 = clock.wall(), clock.now()
        if trace is not None and trace.observers:
            emit("attempt_start", "transport", attempt=number, served_by=self._served_by(request))
        if request.stream and getattr(self.transport, "stream", None) is not None:
            return await self._open_stream(request, trace, number, started_wall, t0)
        try:
            response = await self._send(request, t0)
        except asyncio.CancelledError:
            self.record_attempt(trace, request, number, started_wall, t0, "cancelled", None)
            raise
        except CallError as exc:
            self.record_attempt(trace, request, number, started_wall, t0, _outcome(exc), exc)
            raise
        except Exception as exc:
            wrapped = wrap_foreign(exc, self.transport.name)
            self.record_attempt(trace, request, number, started_wall, t0, _outcome(wrapped), wrapped)
            raise wrapped from exc
        self.record_attempt(trace, request, number, started_wall, t0, "ok", None)
        _bill(trace, request, response)
        if request.stream:  # a transport that cannot stream: its whole answer, replayed
            return replay(response, clock.now(), chunk_chars=max(1, len(response.text)))
        return response

    # -- streams --------------------------------------------------------------------------------

    async def _open_stream(self, request: LLMRequest, trace: CallTrace | None, number: int,
                           started_wall: float, t0: float) -> LLMResponse:
        """Open the provider's stream and wait for its first event: every failure until then
        is this attempt's plain error (retry and fallback act on it); later ones interrupt."""
        text = TextBuffer()  # the text so far, held once: by the transport if it fills it
        fills = getattr(self.transport, "fills_stream_text", False)
        opened = self.transport.stream(request, text=text) if fills else self.transport.stream(request)  # type: ignore[attr-defined]
        source: AsyncIterator[Any] = opened.__aiter__()
        idle = request.metadata.get(STREAM_IDLE_KEY) if request.metadata else None
        try:
            first = await self._pull(source, request, idle, first=True)
        except StopAsyncIteration:
            first = None
        except BaseException as exc:
            await _close_quietly(source)
            error = self._failed(exc, trace, request, number, started_wall, t0)
            if error is None:
                raise
            raise error from (exc if error is not exc else exc.__cause__)
        stream = LLMStream(self._events(source, first, request, idle, trace, number, started_wall, t0,
                                        text, not fills),
                           opened_at=t0, first_at=self.clock.now(), buffer=text)
        return stream_response(stream)

    async def _events(self, source: AsyncIterator[Any], item: Any, request: LLMRequest,
                      idle: float | None, trace: CallTrace | None, number: int, started_wall: float,
                      t0: float, text: TextBuffer, collect: bool) -> AsyncGenerator[StreamEvent, None]:
        """The stream's events; text deltas are added to ``text`` here if ``collect`` (else the
        transport fills it itself)."""
        watchdog = None
        if type(self.clock) is RealClock and (request.deadline is not None or idle is not None):
            watchdog = Watchdog(self.clock, request.deadline, idle)  # one timer, not one per chunk
        try:
            while True:
                if type(item) is str:
                    if item:
                        if collect:
                            text.append(item)
                        yield TextDelta(item)
                elif item is None or isinstance(item, LLMResponse):  # the end (None: no final)
                    final = item if item is not None else LLMResponse(text=text.take())
                    self.record_attempt(trace, request, number, started_wall, t0, "ok", None)
                    _bill(trace, request, final)
                    number = 0  # recorded: a close from here on is no cancellation
                    yield StreamUsage(final.usage)
                    yield Finish(final.finish_reason)
                    yield StreamEnd(final)
                    return
                else:  # a typed event from a transport that makes its own (tool-call deltas)
                    yield item
                try:
                    if watchdog is not None:
                        item = await watchdog.pull(source)
                    else:
                        item = await self._pull(source, request, idle, first=False)
                except StopAsyncIteration:
                    item = None
        except (GeneratorExit, asyncio.CancelledError):
            if number:
                self.record_attempt(trace, request, number, started_wall, t0, "cancelled", None)
            raise
        except Exception as exc:
            error = self._failed(exc, trace, request, number, started_wall, t0)
            assert error is not None
            raise StreamInterrupted(
                f"the stream failed after {text.chunks} chunk(s) had arrived: {error.message}",
                partial_text=text.value(), error=error, hint=error.hint) from error
        finally:
            if watchdog is not None:
                watchdog.close()
            await _close_quietly(source)

    async def _pull(self, source: AsyncIterator[Any], request: LLMRequest, idle: float | None,
                    first: bool) -> Any:
        """The next item, within the call's deadline and the idle gap allowed between chunks."""
        deadline = request.deadline
        if deadline is None and (idle is None or first):
            return await source.__anext__()
        left = float("inf") if deadline is None else deadline - self.clock.now()
        if left <= 0:
            raise TimeoutExceeded("the call's deadline passed while streaming", phase="deadline")
        limit = left if idle is None or first else min(left, idle)
        try:
            return await self.clock.wait_for(source.__anext__(), limit)
        except TimeoutError:
            raise (idle_passed(limit) if limit < left else deadline_passed()) from None

    def _failed(self, exc: BaseException, trace: CallTrace | None, request: LLMRequest, number: int,
                started_wall: float, t0: float) -> CallError | None:
        """Record the attempt that ``exc`` ended; the typed error to raise (None: re-raise)."""
        if isinstance(exc, asyncio.CancelledError):
            self.record_attempt(trace, request, number, started_wall, t0, "cancelled", None)
            return None
        error = exc if isinstance(exc, CallError) else wrap_foreign(exc, self.transport.name)
        self.record_attempt(trace, request, number, started_wall, t0, _outcome(error), error)
        return error

    async def _send(self, request: LLMRequest, t0: float) -> LLMResponse:
        if request.deadline is None:
            return await self.transport.send(request)
        left = request.deadline - t0
        if left <= 0:
            raise TimeoutExceeded("the call's deadline passed before this attempt", phase="deadline")
        try:
            return await self.clock.wait_for(self.transport.send(request), left)
        except TimeoutError:
            raise TimeoutExceeded(
                f"time ran out during this attempt ({left:.3g}s were left of the call's or attempt's limit)",
                phase="deadline",
            ) from None

    def _served_by(self, request: LLMRequest) -> str:
        """Which backend was asked: the transport, with the request's model when it names one."""
        return self.transport.name if request.model is None else f"{self.kind}:{request.model}"

    def record_attempt(
        self,
        trace: CallTrace | None,
        request: LLMRequest,
        number: int,
        started: float,
        t0: float,
        outcome: Outcome,
        exc: CallError | None,
    ) -> None:
        if trace is None:
            return
        duration = max(0.0, self.clock.now() - t0)
        if exc is None and type(started) is float and type(duration) is float and type(number) is int:
            # a successful attempt: every value is already what validation would make it
            attempt = copy_with(_OK_ATTEMPT, {"number": number, "started_at": started, "duration_s": duration,
                                              "outcome": outcome, "served_by": self._served_by(request)})
        else:
            attempt = Attempt(
                number=number,
                started_at=started,
                duration_s=duration,
                outcome=outcome,
                status_code=exc.status_code if exc is not None else None,
                error_type=type(exc).__name__ if exc is not None else None,
                error=trim(redact(exc.message), 200) if exc is not None else None,
                retry_after_s=exc.retry_after if exc is not None else None,
                served_by=self._served_by(request),
            )
        trace.attempts.append(attempt)
        if trace.observers:
            emit(
                "attempt_end",
                "transport",
                attempt=number,
                outcome=outcome,
                duration_s=attempt.duration_s,
                status_code=attempt.status_code,
                error_type=attempt.error_type,
            )


def _outcome(exc: CallError) -> Outcome:
    return "timeout" if isinstance(exc, TimeoutExceeded) else "error"


async def _close_quietly(source: AsyncIterator[Any]) -> None:
    closer = getattr(source, "aclose", None)
    if closer is not None:
        with contextlib.suppress(Exception):  # the stream's own outcome is what gets reported
            await closer()


def compose(stages: Sequence[Middleware], innermost: Next) -> Next:
    """Nest stages around ``innermost``: ``stages[0]`` is outermost.

    A stage that does not declare ``handles_streams = True`` gets the default on streamed calls
    (``stream_default``): the chunks pass it, and it sees the final response at the end.
    """
    call = innermost
    for stage in reversed(stages):
        if stage_traits(stage).handles_streams:
            call = _Bound(stage.handle, call)
        else:
            call = partial(_stream_default_positional, stage.handle, call)
    return call


def _bill(trace: CallTrace | None, request: LLMRequest, response: LLMResponse) -> None:
    """Note what the provider billed for this answer, whatever a stage above makes of it."""
    if trace is not None:
        usage = response.usage
        trace.billed.append((response.model or request.model, usage.input_tokens, usage.output_tokens))


class _Bound:
    """``handle`` with its ``call_next`` bound, passed positionally (the stage contract): the
    parameter's name is the stage's business. Returns the coroutine itself: no extra frame."""

    __slots__ = ("call_next", "handle")

    def __init__(self, handle: Any, call_next: Next) -> None:
        self.handle, self.call_next = handle, call_next

    def __call__(self, request: LLMRequest) -> Any:
        return self.handle(request, self.call_next)


def _stream_default_positional(handle: Any, call_next: Next, request: LLMRequest) -> Any:
    return stream_default(handle, request, call_next)
