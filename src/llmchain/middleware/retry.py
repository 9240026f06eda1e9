"""The ``retry`` stage: try transient failures again, within the deadline and a retry budget.

An error is retried only if it says so (``retryable``: connect failures, resets, attempt
timeouts, 408/409/429/5xx) and is neither a client error (400/401/403/404/413/422) nor an
output error (those belong to ``repair``). Between attempts the stage waits what the server
asked (``Retry-After``, already parsed by the transport into ``error.retry_after``) or an
exponential backoff with full jitter. It gives up at once, with a ``GaveUp`` naming the
reason, when the wait would end past the call's deadline, when the server asks for more than
``max_retry_after_s``, or when the retry budget (a share of recent calls) is spent. Every
attempt keeps the request id (the transport sends it as the idempotency key) and is recorded
in the call's attempt history.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from .._clock import REAL_CLOCK, Clock, time_left
from .._events import current_attempts, emit
from .._exceptions import CallError, GaveUp, OutputError
from .._models import LLMRequest, LLMResponse, copy_with
from .._types import Next
from ..hookspecs import hookimpl
from ..policies.backoff import Backoff
from ..policies.budget import RetryBudget

#: Statuses never retried, whatever the error says: the same request cannot succeed.
NEVER_RETRY_STATUS = frozenset({400, 401, 403, 404, 413, 422})


def is_retryable(error: CallError) -> bool:
    """Whether retrying the same request could succeed (decided by the error's attributes)."""
    if isinstance(error, OutputError) or error.status_code in NEVER_RETRY_STATUS:
        return False
    return error.retryable


class RetryMiddleware:
    """Retry transient failures of everything inside this stage."""

    name = kind = "retry"
    #: What this stage does, as data: order hints and other stages go by roles, never by names.
    roles = frozenset({"retry"})
    #: Streamed calls pass through ``handle`` like any other (see docs/stages/retry.md, "Streams").
    handles_streams = True

    class Options(BaseModel):
        model_config = ConfigDict(frozen=True, extra="forbid")

        max_attempts: int = Field(
            3, ge=1, description="Attempts in all, the first included (3 = the SDKs' 2 retries).")
        base_s: float = Field(0.5, ge=0, description="Backoff ceiling before the first retry.")
        cap_s: float = Field(8.0, ge=0, description="Largest backoff ceiling.")
        jitter: Literal["full", "equal", "none"] = Field(
            "full", description="full: uniform in [0, ceiling]; equal: [ceiling/2, ceiling].")
        max_retry_after_s: float = Field(
            60.0, ge=0,
            description="Longest server-requested wait (Retry-After) honoured; a longer ask "
                        "gives up at once.",
        )
        budget_ratio: float | None = Field(
            0.2, ge=0,
            description="Retries allowed as a share of recent calls (plus the floor); "
                        "None disables the budget.",
        )
        budget_min_per_s: float = Field(
            1.0, ge=0, description="Retries per second always allowed (the budget's floor).")
        budget_window_s: float = Field(
            10.0, gt=0, le=600, description="How far back the budget counts calls and retries.")

    def __init__(
        self,
        options: Options | None = None,
        *,
        clock: Clock = REAL_CLOCK,
        rng: Callable[[], float] | None = None,
    ) -> None:
        self.options = o = options or self.Options()
        self._clock = clock
        self._max_attempts = o.max_attempts
        self._backoff = Backoff(o.base_s, o.cap_s, o.jitter)
        self._budget = (
            RetryBudget(o.budget_ratio, o.budget_min_per_s, o.budget_window_s)
            if o.budget_ratio is not None else None
        )
        self._random = rng or random.random

    @property
    def budget(self) -> RetryBudget | None:
        return self._budget

    async def handle(self, request: LLMRequest, call_next: Next) -> LLMResponse:
        if self._budget is not None:
            self._budget.deposit(self._clock.now())
        try:
            return await call_next(request)
        except CallError as exc:
            if self._max_attempts <= 1 or not is_retryable(exc):
                raise
            error = exc
        return await self._retry(request, call_next, error)

    async def _retry(self, request: LLMRequest, call_next: Next, error: CallError) -> LLMResponse:
        clock = self._clock
        errors = [error]
        attempt = 1
        while True:
            if attempt >= self._max_attempts:
                raise self._give_up(f"gave up after {attempt} attempts", errors)
            server_wait = error.retry_after
            if server_wait is not None and server_wait >= 0:
                delay = server_wait
                if delay > self.options.max_retry_after_s:
                    raise self._give_up(
                        f"the server asked to wait {delay:g}s (Retry-After), more than "
                        f"max_retry_after_s={self.options.max_retry_after_s:g}", errors)
            else:
                delay = self._backoff.delay(attempt - 1, self._random())
            left = time_left(request, clock)
            if left is not None and delay >= left:
                what = (f"the server asked to wait {delay:.3g}s (Retry-After)"
                        if server_wait is not None else f"the next backoff is {delay:.3g}s")
                raise self._give_up(
                    f"{what} but only {left:.3g}s remain before the deadline; giving up now", errors)
            budget = self._budget
            if budget is not None and not budget.try_withdraw(clock.now()):
                calls, retries = budget.totals(clock.now())
                raise self._give_up(
                    f"retry budget exhausted ({retries} retries for {calls} calls in the last "
                    f"{budget.window_s:g}s); not retrying so an outage does not become a retry storm",
                    errors)
            emit("retry_scheduled", "retry", attempt=attempt + 1, delay_s=delay,
                 error_type=type(error).__name__, status_code=error.status_code,
                 server_asked=server_wait is not None)
            if delay > 0:
                await clock.sleep(delay)
            attempt += 1
            request = copy_with(request, {"attempt": attempt})
            try:
                return await call_next(request)
            except CallError as exc:
                if not is_retryable(exc):
                    raise
                error = exc
                errors.append(exc)

    @staticmethod
    def _give_up(reason: str, errors: list[CallError]) -> GaveUp:
        last = errors[-1]
        gave_up = GaveUp(
            f"{reason}; last error: {type(last).__name__}: {last.message}",
            errors=errors,
            attempts=current_attempts(),
            retry_after=last.retry_after,
            hint=f"retries are exhausted; see each try's error above. {last.hint or ''}".strip(),
        )
        gave_up.__cause__ = last
        return gave_up


@hookimpl
def register_middleware(register: Callable[[str, Any], None]) -> None:
    register("retry", RetryMiddleware)
