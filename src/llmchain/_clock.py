"""Time, injected: every stage reads and waits through a Clock so tests never sleep for real.

``now()`` is monotonic seconds (deadlines and durations), ``wall()`` is epoch seconds (for
Retry-After dates and cache ages), ``sleep()`` waits. Deadline helpers clip every wait to what
is left of the call.
"""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import Awaitable
from typing import TYPE_CHECKING, Protocol, TypeVar, runtime_checkable

if TYPE_CHECKING:
    from ._models import LLMRequest

T = TypeVar("T")


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

    async def wait_for(self, awaitable: Awaitable[T], timeout: float | None) -> T:
        """Await ``awaitable`` for at most ``timeout`` seconds of this clock's time.

        On expiry the inner work is cancelled and the builtin ``TimeoutError`` is raised;
        ``None`` waits without limit. Used by the timeout stage, so that a fake clock can
        fire timeouts without real waiting.
        """
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

    async def wait_for(self, awaitable: Awaitable[T], timeout: float | None) -> T:
        if timeout is None:
            return await awaitable
        if sys.version_info >= (3, 11):
            # asyncio.timeout cancels in place: no extra task, the call's context stays put
            async with asyncio.timeout(max(0.0, timeout)):
                return await awaitable
        try:  # pragma: no cover - Python 3.10
            return await asyncio.wait_for(awaitable, max(0.0, timeout))
        except asyncio.TimeoutError:  # pragma: no cover - a distinct class before 3.11
            raise TimeoutError from None

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
