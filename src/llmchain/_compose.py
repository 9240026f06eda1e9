"""Composition: stages + transport → one async callable, plus the two pinned ends.

The innermost end (``TransportCall``) turns each transport call into an Attempt record and
enforces what is left of the call's deadline, so a call can never outlive it even without a
timeout stage. The outermost end (in ``Chain``) normalises errors.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from functools import partial

from ._clock import Clock
from ._events import CallTrace, current_call, emit
from ._exceptions import CallError, TimeoutExceeded
from ._models import Attempt, LLMRequest, LLMResponse, Outcome, copy_with
from ._redact import redact, trim
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
        if trace is not None:  # billed, whatever a stage above makes of the answer
            usage = response.usage
            trace.billed.append((response.model or request.model, usage.input_tokens,
                                 usage.output_tokens))
        return response

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


def compose(stages: Sequence[Middleware], innermost: Next) -> Next:
    """Nest stages around ``innermost``: ``stages[0]`` is outermost."""
    call = innermost
    for stage in reversed(stages):
        call = partial(stage.handle, call_next=call)
    return call
