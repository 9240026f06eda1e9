"""Time, injected: every stage reads and waits through a Clock so tests never sleep for real.

``now()`` is monotonic seconds (deadlines and durations), ``wall()`` is epoch seconds (for
Retry-After dates and cache ages), ``sleep()`` waits. Deadline helpers clip every wait to what
is left of the call.
"""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING, Protocol, runtime_checkable

if TYPE_CHECKING:
    from ._models import LLMRequest


@runtime_checkable
class Clock(Protocol):
    """A source of time and a way to wait."""

    def now(self) -> float:
        """Monotonic seconds."""
        ...

    def wall(self) -> float:
        """Seconds since the epoch."""
        ...

    async def sleep(self, seconds: float) -> None:
        """Wait ``seconds`` (0 or less returns at once, after yielding)."""
        ...


class RealClock:
    """The process's monotonic clock and asyncio's sleep."""

    __slots__ = ()

    def now(self) -> float:
        return time.monotonic()

    def wall(self) -> float:
        return time.time()

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(max(0.0, seconds))

    def __repr__(self) -> str:
        return "RealClock()"


REAL_CLOCK = RealClock()


def time_left(request: LLMRequest, clock: Clock) -> float | None:
    """Seconds left before the request's deadline (never negative), or None without one."""
    if request.deadline is None:
        return None
    return max(0.0, request.deadline - clock.now())


def clip_wait(seconds: float, request: LLMRequest, clock: Clock) -> float:
    """``seconds`` shortened to what remains of the call's deadline."""
    left = time_left(request, clock)
    return seconds if left is None else min(seconds, left)


def fits_in_deadline(seconds: float, request: LLMRequest, clock: Clock) -> bool:
    """Whether waiting ``seconds`` still leaves the call inside its deadline."""
    left = time_left(request, clock)
    return left is None or seconds < left
