"""The ``timeout`` stage: bound everything inside it by the call's deadline and an attempt limit.

Each pass through the stage (one attempt, when the stage sits inside ``retry``) may take at
most ``attempt_s`` and never more than what is left of the call's deadline; ``total_s``
tightens that deadline for everything inside the stage (place the stage outermost to make it
the whole call's). The tighter deadline is handed inward, so every wait inside clips itself to
it, and the stage cancels whatever is still running when it passes: the transport closes its
connection and ``TimeoutExceeded`` is raised, ``phase="attempt"`` (retryable) when the attempt
limit ran out, ``phase="deadline"`` (not retryable) when the call's time is up.

Streams: ``first_token_s`` (else ``attempt_s``) bounds each attempt's wait for its first chunk
(``phase="attempt"``, retryable: nothing reached the caller yet); ``idle_s`` bounds every gap
between two chunks and ``total_s`` / the call's deadline the whole stream; a limit running out
after the first chunk ends the stream with ``StreamInterrupted`` (its ``error`` is the
``TimeoutExceeded``).

The stage's own timer runs on the chain's clock (``Clock.wait_for``), so a ``FakeClock`` fires
it without real waiting. When only the pinned transport call is inside (the stage is
innermost, as recommended) and the clock is real, that call already cancels the send at the
deadline it is handed, and the stage adds no second timer.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from pydantic import Field

from .._clock import REAL_CLOCK, Clock, RealClock
from .._compose import TransportCall
from .._exceptions import TimeoutExceeded
from .._models import LLMRequest, LLMResponse, copy_with
from .._stage import StageOptions
from .._stream import STREAM_IDLE_KEY
from .._types import Next
from ..hookspecs import hookimpl

_HINTS = {
    "attempt": "the server was slow to answer; retry (outside this stage) tries again if time "
               "is left, or raise attempt_s",
    "deadline": "raise timeout_s (per call or in the config) or check why the server is slow",
}


class TimeoutMiddleware:
    """Cancel whatever runs inside this stage when its time is up."""

    name = kind = "timeout"
    #: What this stage does, as data: order hints and other stages go by roles, never by names.
    roles = frozenset({"timeout"})
    #: Streamed calls pass through ``handle`` like any other (see docs/stages/timeout.md, "Streams").
    handles_streams = True

    class Options(StageOptions):
        attempt_s: float | None = Field(
            None, gt=0,
            description="Longest time one pass through this stage may take (each attempt, when "
                        "inside retry); None: only the deadline bounds it.",
        )
        total_s: float | None = Field(
            None, gt=0,
            description="Tighten the call's deadline to this many seconds from when the call "
                        "enters this stage; None keeps the chain's timeout_s.",
        )

        first_token_s: float | None = Field(
            None, gt=0,
            description="Streams: longest wait for the first chunk of each attempt (retryable, "
                        "like attempt_s); None: attempt_s, else only the deadline, bounds it.",
        )
        idle_s: float | None = Field(
            None, gt=0,
            description="Streams: longest gap allowed between two chunks; None: only the "
                        "deadline bounds a stalled stream.",
        )

    def __init__(self, options: Options | None = None, *, clock: Clock = REAL_CLOCK) -> None:
        self.options = options or self.Options()
        self._clock = clock
        # a clock without wait_for (older custom clocks) times out on the event loop's time
        self._wait_for: Any = getattr(clock, "wait_for", None) or REAL_CLOCK.wait_for
        self._attempt_s = self.options.attempt_s
        self._total_s = self.options.total_s
        self._real = isinstance(clock, RealClock)

    async def handle(self, request: LLMRequest, call_next: Next) -> LLMResponse:
        if request.stream:
            return await self._stream(request, call_next)
        now = self._clock.now()
        deadline = request.deadline
        phase = "deadline"
        if self._total_s is not None and (deadline is None or now + self._total_s < deadline):
            deadline = now + self._total_s
        if self._attempt_s is not None and (deadline is None or now + self._attempt_s < deadline):
            deadline, phase = now + self._attempt_s, "attempt"
        if deadline is None:
            return await call_next(request)
        left = deadline - now
        if left <= 0:
            raise TimeoutExceeded("the call's deadline passed before it reached the timeout stage",
                                  phase="deadline", hint=_HINTS["deadline"])
        if deadline != request.deadline:  # inner stages clip their waits to the tighter deadline
            request = copy_with(request, {"deadline": deadline})
        try:
            if type(call_next) is TransportCall:
                # only the pinned transport call is inside, and it cancels the send at the
                # request's deadline itself: a second timer here would be pure overhead
                return await call_next(request)
            response: LLMResponse = await self._wait_for(call_next(request), left)
            return response
        except TimeoutError:
            raise _expired(phase, left) from None
        except TimeoutExceeded as exc:
            # something inside hit the tighter deadline this stage set: say which limit it was
            if phase == "attempt" and exc.phase == "deadline" and self._clock.now() >= deadline - 1e-3:
                raise _expired(phase, left) from None
            raise


    async def _stream(self, request: LLMRequest, call_next: Next) -> LLMResponse:
        """A streamed call: ``first_token_s`` (else ``attempt_s``) bounds the wait for the first
        chunk, ``idle_s`` each gap between chunks, ``total_s`` / the deadline the whole stream.
        The gap and the deadline are enforced where the chunks are read (on the real clock one
        watchdog timer per stream, not one per chunk)."""
        now = self._clock.now()
        deadline = request.deadline
        if self._total_s is not None and (deadline is None or now + self._total_s < deadline):
            deadline = now + self._total_s
        update: dict[str, Any] = {}
        if deadline != request.deadline:
            update["deadline"] = deadline
        idle = self.options.idle_s
        if idle is not None:
            update["metadata"] = {**request.metadata, STREAM_IDLE_KEY: idle}
        if update:
            request = copy_with(request, update)
        first = self.options.first_token_s or self._attempt_s
        left = None if deadline is None else deadline - now
        if left is not None and left <= 0:
            raise TimeoutExceeded("the call's deadline passed before it reached the timeout stage",
                                  phase="deadline", hint=_HINTS["deadline"])
        limit, phase = left, "deadline"
        if first is not None and (limit is None or first < limit):
            limit, phase = first, "first_token"
        if limit is None:
            return await call_next(request)
        try:
            response: LLMResponse = await self._wait_for(call_next(request), limit)
            return response
        except TimeoutError:
            raise _expired(phase, limit) from None


def _expired(phase: str, limit: float) -> TimeoutExceeded:
    if phase == "first_token":
        return TimeoutExceeded(f"no first chunk within {limit:g}s (first_token_s / attempt_s); the "
                               "attempt was cancelled", phase="attempt", hint=_HINTS["attempt"])
    if phase == "attempt":
        message = f"the attempt took longer than attempt_s={limit:g}s and was cancelled"
    else:
        message = (f"the call's deadline ran out ({limit:.3g}s were left when it entered the "
                   "timeout stage); the work in flight was cancelled")
    return TimeoutExceeded(message, phase=phase, hint=_HINTS[phase])


@hookimpl
def register_middleware(register: Callable[[str, Any], None]) -> None:
    register("timeout", TimeoutMiddleware)
