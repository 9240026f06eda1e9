"""The state interfaces the rate limiter and the circuit breaker keep their shared state behind.

Each operation is one atomic step on one key, so that a shared backend can implement it as one
Lua script (Redis) or one transaction, and several processes then share one budget:

* ``RateLimitStore.reserve``: book the earliest slot that keeps the sliding windows within the
  limits, or refuse when that is later than ``max_wait_s``; ``reconcile`` replaces the booked
  units with real usage; ``pause`` / ``paused_for`` hold every caller back after a 429.
* ``BreakerStore.acquire`` / ``record``: the breaker state machine of ``policies.breaker``.

Only *relative* times cross the interface (``wait_s``, ``seconds``): ``now`` is the caller's
clock reading, which a store shared across processes may replace by its own time base (Redis
``TIME``). Every method is async because a shared store does I/O; the memory stores never
suspend. Implementations must be safe to use from several threads and event loops at once.
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

from ..policies.admission import RateLimits, Reservation
from ..policies.breaker import BreakerConfig, BreakerState, Permit


@runtime_checkable
class RateLimitStore(Protocol):
    """Sliding-window rate-limit state, keyed (e.g. by model)."""

    #: Short label for logs (``"memory"``, ``"redis://host/0"``).
    name: str

    async def reserve(
        self,
        key: str,
        now: float,
        requests: int,
        tokens: int,
        limits: RateLimits,
        max_wait_s: float | None,
    ) -> Reservation:
        """Book ``requests``/``tokens`` at the earliest time the limits allow (FIFO), or refuse
        if the wait would exceed ``max_wait_s`` (None: no bound) without changing any state."""
        ...

    async def reconcile(self, key: str, ticket: object, *, requests: int, tokens: int) -> None:
        """Replace the units booked under ``ticket`` (real usage; zeros release the slot)."""
        ...

    async def pause(self, key: str, now: float, seconds: float, asked_s: float | None = None) -> None:
        """Start no reservation for ``key`` sooner than ``seconds`` from ``now``. ``asked_s``:
        the server asked for more than the stage's cap (``seconds`` is the cap); reservations
        are then refused (reason ``"server_pause"``) rather than delayed, until the pause ends."""
        ...

    async def resume(self, key: str, now: float, seconds: float) -> None:
        """End the pause of ``key`` now, unless it ends more than ``seconds`` from now (another
        caller's longer ask extended it): the provider accepted a request sent after the 429
        that started it, so its bucket was not empty."""
        ...

    async def pause_info(self, key: str, now: float) -> tuple[float, float | None]:
        """(seconds left in the pause of ``key``, what the server asked for when the pause is a
        capped over-long ask, else None)."""
        ...

    async def paused_for(self, key: str, now: float) -> float:
        """Seconds left in the current pause of ``key`` (0 when not paused)."""
        ...


@runtime_checkable
class ThrottleStore(Protocol):
    """Counters of the retry stage's adaptive throttling (``policies.budget.AdaptiveThrottle``),
    keyed (e.g. by model), so that several processes can share one view of a provider's health."""

    name: str

    async def record(self, key: str, now: float, accepted: bool, k: float, window_s: float) -> None:
        """Count one attempt and whether the backend accepted it."""
        ...

    async def totals(self, key: str, now: float, k: float, window_s: float) -> tuple[int, int]:
        """(requests, accepts) counted in the window ending at ``now``."""
        ...


@runtime_checkable
class BreakerStore(Protocol):
    """Circuit breaker state, keyed (e.g. by transport + model)."""

    name: str

    async def acquire(self, key: str, now: float, config: BreakerConfig) -> Permit:
        """May a call go now? In half-open, exactly one caller gets a probe permit."""
        ...

    async def record(
        self, key: str, now: float, permit: Permit, failed: bool | None, config: BreakerConfig
    ) -> BreakerState | None:
        """Count the outcome of a permitted call (None: says nothing about health); returns
        the new state when this outcome changed it."""
        ...

    async def state(self, key: str, now: float, config: BreakerConfig) -> BreakerState:
        """The current state (for introspection and tests)."""
        ...


def open_store(family: str, kind: str, /, *args: Any, **kwargs: Any) -> Any:
    """Open the ``family`` store named ``kind`` that the plugins of the chain being built
    registered (``register_stores``); a ConfigError lists the known ones."""
    from ..plugins import current_registry

    return current_registry().store(family, kind).factory(*args, **kwargs)


def open_rate_limit_store(kind: str = "memory", *, share: str | None = None,
                          url: str | None = None) -> RateLimitStore:
    """The rate-limit store ``kind`` names; ``share`` names state shared by every user of it."""
    store: RateLimitStore = open_store("rate_limit", kind, share=share, url=url)
    return store


def open_breaker_store(kind: str = "memory", *, share: str | None = None,
                       url: str | None = None) -> BreakerStore:
    """The breaker store ``kind`` names; ``share`` names state shared by every user of it."""
    store: BreakerStore = open_store("breaker", kind, share=share, url=url)
    return store


def open_throttle_store(kind: str = "memory", *, share: str | None = None,
                        url: str | None = None) -> ThrottleStore:
    """The retry-throttle store ``kind`` names; ``share`` names state shared by every user of it."""
    store: ThrottleStore = open_store("throttle", kind, share=share, url=url)
    return store
