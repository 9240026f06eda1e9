"""In-process rate-limit and breaker stores: one lock, a dict of per-key policy objects.

Each operation holds the lock only for the policy's few arithmetic steps and never across an
await, so one store can serve several threads and event loops at once (the sync facade's loop,
driven by the calling threads, and users' own loops). ``open_rate_limit_store(share=name)`` /
``open_breaker_store(share=name)`` return one process-wide store per name, so several chains
can share one budget.
"""

from __future__ import annotations

import math
import threading

from ..policies.admission import AdmissionLog, RateLimits, Reservation, Ticket
from ..policies.breaker import BreakerConfig, BreakerPolicy, BreakerState, Permit
from ..policies.budget import AdaptiveThrottle


class MemoryRateLimitStore:
    """``RateLimitStore`` in this process's memory."""

    name = "memory"

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._logs: dict[str, AdmissionLog] = {}

    def _log(self, key: str) -> AdmissionLog:
        log = self._logs.get(key)
        if log is None:
            log = self._logs.setdefault(key, AdmissionLog())
        return log

    def reserve_now(
        self, key: str, now: float, requests: int, tokens: int, limits: RateLimits,
        max_wait_s: float | None,
    ) -> Reservation:
        """``reserve`` without the coroutine (the stage's fast path uses it when it can)."""
        with self._lock:
            log = self._logs.get(key) or self._log(key)
            return log.reserve(now, requests, tokens, limits, max_wait_s)

    async def reserve(
        self, key: str, now: float, requests: int, tokens: int, limits: RateLimits,
        max_wait_s: float | None,
    ) -> Reservation:
        with self._lock:
            return self._log(key).reserve(now, requests, tokens, limits, max_wait_s)

    def reconcile_now(self, key: str, ticket: object, *, requests: int, tokens: int) -> None:
        if type(ticket) is not Ticket:
            return
        with self._lock:
            log = self._logs.get(key)
            if log is not None:
                log.reconcile(ticket, requests, tokens)

    async def reconcile(self, key: str, ticket: object, *, requests: int, tokens: int) -> None:
        self.reconcile_now(key, ticket, requests=requests, tokens=tokens)

    async def pause(self, key: str, now: float, seconds: float, asked_s: float | None = None) -> None:
        with self._lock:
            self._log(key).pause(now + seconds, asked_s)

    async def resume(self, key: str, now: float, seconds: float) -> None:
        with self._lock:
            log = self._logs.get(key)
            if log is not None:
                log.resume(now, seconds)

    async def pause_info(self, key: str, now: float) -> tuple[float, float | None]:
        with self._lock:
            log = self._logs.get(key)
            if log is None:
                return 0.0, None
            asked = log.asked_s if log.refuse_until > now else None
            return max(0.0, log.paused_until - now), asked

    def paused_until(self, key: str) -> float:
        """When the current pause of ``key`` ends (-inf: never paused); a lock-free read."""
        log = self._logs.get(key)
        return log.paused_until if log is not None else -math.inf

    async def paused_for(self, key: str, now: float) -> float:
        with self._lock:
            log = self._logs.get(key)
            return max(0.0, log.paused_until - now) if log is not None else 0.0

    def __repr__(self) -> str:
        return f"MemoryRateLimitStore(keys={sorted(self._logs)})"


class MemoryBreakerStore:
    """``BreakerStore`` in this process's memory."""

    name = "memory"

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._breakers: dict[str, BreakerPolicy] = {}

    def _breaker(self, key: str, config: BreakerConfig) -> BreakerPolicy:
        breaker = self._breakers.get(key)
        if breaker is None:
            breaker = self._breakers.setdefault(key, BreakerPolicy(config))
        return breaker

    def acquire_now(self, key: str, now: float, config: BreakerConfig) -> Permit:
        with self._lock:
            return self._breaker(key, config).acquire(now)

    async def acquire(self, key: str, now: float, config: BreakerConfig) -> Permit:
        return self.acquire_now(key, now, config)

    def record_now(
        self, key: str, now: float, permit: Permit, failed: bool | None, config: BreakerConfig
    ) -> BreakerState | None:
        with self._lock:
            return self._breaker(key, config).record(now, permit, failed)

    async def record(
        self, key: str, now: float, permit: Permit, failed: bool | None, config: BreakerConfig
    ) -> BreakerState | None:
        return self.record_now(key, now, permit, failed, config)

    async def state(self, key: str, now: float, config: BreakerConfig) -> BreakerState:
        with self._lock:
            return self._breaker(key, config).state

    def __repr__(self) -> str:
        return f"MemoryBreakerStore(keys={sorted(self._breakers)})"


class MemoryThrottleStore:
    """``ThrottleStore`` in this process's memory (one ``AdaptiveThrottle`` per key)."""

    name = "memory"

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._throttles: dict[str, AdaptiveThrottle] = {}

    def throttle(self, key: str, k: float, window_s: float) -> AdaptiveThrottle:
        """The counters of ``key`` (the retry stage's fast path uses them directly)."""
        throttle = self._throttles.get(key)
        if throttle is None:
            with self._lock:
                throttle = self._throttles.setdefault(key, AdaptiveThrottle(k, window_s))
        return throttle

    async def record(self, key: str, now: float, accepted: bool, k: float, window_s: float) -> None:
        self.throttle(key, k, window_s).record(now, accepted)

    async def totals(self, key: str, now: float, k: float, window_s: float) -> tuple[int, int]:
        return self.throttle(key, k, window_s).totals(now)

    def __repr__(self) -> str:
        return f"MemoryThrottleStore(keys={sorted(self._throttles)})"


_shared_lock = threading.Lock()
_shared_limiters: dict[str, MemoryRateLimitStore] = {}
_shared_breakers: dict[str, MemoryBreakerStore] = {}
_shared_throttles: dict[str, MemoryThrottleStore] = {}


def open_rate_limit_store(*, share: str | None = None, url: str | None = None) -> MemoryRateLimitStore:
    """A private store, or (with ``share``) the process-wide one of that name."""
    if share is None:
        return MemoryRateLimitStore()
    with _shared_lock:
        return _shared_limiters.setdefault(share, MemoryRateLimitStore())


def open_breaker_store(*, share: str | None = None, url: str | None = None) -> MemoryBreakerStore:
    """A private store, or (with ``share``) the process-wide one of that name."""
    if share is None:
        return MemoryBreakerStore()
    with _shared_lock:
        return _shared_breakers.setdefault(share, MemoryBreakerStore())


def open_throttle_store(*, share: str | None = None, url: str | None = None) -> MemoryThrottleStore:
    """A private store, or (with ``share``) the process-wide one of that name."""
    if share is None:
        return MemoryThrottleStore()
    with _shared_lock:
        return _shared_throttles.setdefault(share, MemoryThrottleStore())
