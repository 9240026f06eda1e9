"""The ``retry`` stage: try transient failures again, within the deadline and a retry budget.

An error is retried only if it says so (``retryable``: connect failures, resets, attempt
timeouts, 408/409/429/5xx) and is neither a client error (400/401/403/404/413/422) nor an
output error (those belong to ``repair``). Between attempts the stage waits what the server
asked (``Retry-After``, already parsed by the transport into ``error.retry_after``) or an
exponential backoff with full jitter; an ask longer than ``max_retry_after_s`` is not honoured
(the backoff is used instead, as openai-python does) and the final error says so. It gives up
at once, with a ``GaveUp`` naming the reason, when the wait would end past the call's
deadline, or when adaptive throttling refuses the retry: retries are refused
locally with probability ``max(0, (requests - k * accepts) / (requests + 1))`` over the recent
attempts (Google SRE book, "Handling Overload"; ``k = 2``), which stays 0 until most attempts
fail and tends to 1 in a full outage. Its counters live in a store (``store = "redis"`` shares
them between workers, like the breaker's). The older fixed-share budget (``budget_ratio``) is
still available but off by default: it refused retries at moderate error rates. Every
attempt keeps the request id (the transport sends it as the idempotency key) and is recorded
in the call's attempt history.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Any, Literal

from pydantic import Field

from .._clock import REAL_CLOCK, Clock, time_left
from .._events import current_attempts, emit
from .._exceptions import CallError, GaveUp, OutputError, RateLimited
from .._models import LLMRequest, LLMResponse, copy_with
from .._types import Next
from ..hookspecs import hookimpl
from ..policies.backoff import Backoff
from ..policies.budget import RetryBudget, throttle_probability
from ..stores._shared import SharedStateOptions, store_deadline
from ..stores.base import ThrottleStore, open_throttle_store
from ..stores.memory import MemoryThrottleStore

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

    class Options(SharedStateOptions):
        max_attempts: int = Field(
            4, ge=1, description="Attempts in all, the first included (4: one more than the SDKs' "
                                 "2 retries; adaptive throttling keeps an outage's load low).")
        base_s: float = Field(0.5, ge=0, description="Backoff ceiling before the first retry.")
        cap_s: float = Field(8.0, ge=0, description="Largest backoff ceiling.")
        jitter: Literal["full", "equal", "none"] = Field(
            "full", description="full: uniform in [0, ceiling]; equal: [ceiling/2, ceiling].")
        max_retry_after_s: float = Field(
            60.0, ge=0,
            description="Longest server-requested wait (Retry-After) honoured; a longer ask is "
                        "not honoured: the retry waits its own backoff instead (as openai-python).",
        )
        throttle_k: float | None = Field(
            2.0, ge=1,
            description="Adaptive throttling: a retry is refused with probability "
                        "max(0, (attempts - k * accepted) / (attempts + 1)) over the last "
                        "throttle_window_s; None disables it.",
        )
        throttle_min_attempts: int = Field(
            10, ge=0, description="Adaptive throttling stays off until the window holds this "
                                  "many attempts (one early failure says little).")
        throttle_window_s: float = Field(
            60.0, gt=0, le=600, description="How far back adaptive throttling counts attempts.")
        budget_ratio: float | None = Field(
            None, ge=0,
            description="Legacy fixed budget: retries allowed as a share of recent calls (plus "
                        "the floor); None (the default) disables it.",
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
        self._k = o.throttle_k
        self.throttle_store: ThrottleStore | None = None
        #: a shared store's I/O is bounded by the call's deadline (memory answers at once)
        self._shared = False
        if o.throttle_k is not None:
            self.throttle_store = open_throttle_store(o.store, share=o.share, url=o.store_address())
            self._shared = not isinstance(self.throttle_store, MemoryThrottleStore)

    @property
    def budget(self) -> RetryBudget | None:
        return self._budget

    async def handle(self, request: LLMRequest, call_next: Next) -> LLMResponse:
        if self._shared:
            with store_deadline(request, self._clock):
                return await self._handle(request, call_next)
        return await self._handle(request, call_next)

    async def _handle(self, request: LLMRequest, call_next: Next) -> LLMResponse:
        if self._budget is not None:
            self._budget.deposit(self._clock.now())
        try:
            response = await call_next(request)
        except CallError as exc:
            retryable = is_retryable(exc)
            await self._record(request, not retryable)
            if self._max_attempts <= 1 or not retryable:
                raise
            error = exc
        else:
            await self._record(request, True)
            return response
        return await self._retry(request, call_next, error)

    async def _record(self, request: LLMRequest, accepted: bool) -> None:
        """Count one attempt for adaptive throttling (a retryable failure is a refusal)."""
        if self._k is None:
            return
        key = request.model or "default"
        assert self.throttle_store is not None
        try:
            await self.throttle_store.record(key, self._clock.now(), accepted, self._k,
                                             self.options.throttle_window_s)
        except CallError:  # on_unavailable = "fail": counting must not hide the call's outcome
            emit("store_unavailable", "retry", key=key, operation="record")

    async def _throttled(self, request: LLMRequest) -> str | None:
        """Why adaptive throttling refuses this retry, or None to let it go."""
        if self._k is None:
            return None
        assert self.throttle_store is not None
        key = request.model or "default"
        window = self.options.throttle_window_s
        requests, accepts = await self.throttle_store.totals(key, self._clock.now(), self._k, window)
        if requests < self.options.throttle_min_attempts:
            return None
        chance = throttle_probability(requests, accepts, self._k)
        if chance <= 0 or self._random() >= chance:
            return None
        return (f"adaptive retry throttling: only {accepts} of the last {requests} attempts for "
                f"{key!r} in {window:g}s were accepted, so retries are refused with probability "
                f"{chance:.2f}; not retrying so an outage does not become a retry storm")

    async def _retry(self, request: LLMRequest, call_next: Next, error: CallError) -> LLMResponse:
        clock = self._clock
        errors = [error]
        attempt = 1
        refused_ask: float | None = None  # a server ask longer than max_retry_after_s
        while True:
            server_wait = error.retry_after
            if server_wait is not None and server_wait > self.options.max_retry_after_s:
                refused_ask, server_wait = server_wait, None  # not honoured, as openai-python
                if isinstance(error, RateLimited) and error.server_asked_s is None:
                    error.server_asked_s = refused_ask
            if attempt >= self._max_attempts:
                reason = f"gave up after {attempt} attempts"
                if refused_ask is not None:
                    reason += (f" (the server asked to wait {refused_ask:g}s (Retry-After), more "
                               f"than max_retry_after_s={self.options.max_retry_after_s:g}: "
                               "llmchain refused to wait that long and retried with its own backoff)")
                raise self._give_up(reason, errors)
            if server_wait is not None and server_wait >= 0:
                delay = server_wait
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
            throttled = await self._throttled(request)
            if throttled is not None:
                raise self._give_up(throttled, errors)
            emit("retry_scheduled", "retry", attempt=attempt + 1, delay_s=delay,
                 error_type=type(error).__name__, status_code=error.status_code,
                 server_asked=server_wait is not None)
            if delay > 0:
                await clock.sleep(delay)
            attempt += 1
            request = copy_with(request, {"attempt": attempt})
            try:
                response = await call_next(request)
            except CallError as exc:
                retryable = is_retryable(exc)
                await self._record(request, not retryable)
                if not retryable:
                    raise
                error = exc
                errors.append(exc)
            else:
                await self._record(request, True)
                return response

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
