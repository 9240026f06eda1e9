"""A fake clock: time moves only when someone sleeps on it (or a test advances it)."""

from __future__ import annotations

import asyncio
import contextvars
import itertools
import threading
from collections.abc import Awaitable
from typing import TypeVar

T = TypeVar("T")
_ids = itertools.count()


class _Scope:
    """One pending ``wait_for`` on the fake clock: its deadline and whether it fired."""

    __slots__ = ("deadline", "fired")

    def __init__(self, deadline: float) -> None:
        self.deadline = deadline
        self.fired = False


class FakeClock:
    """Implements ``llmchain.Clock``; ``sleep(s)`` advances time by ``s`` at once and yields.

    ``sleeps`` records every requested wait, so tests can assert on backoff schedules
    without waiting for them.

    ``wait_for(aw, timeout)`` fires on fake time: a ``sleep`` inside ``aw`` that would run past
    the timeout advances the clock only to the timeout, cancels the sleeper (it sees
    ``CancelledError``, as with a real timeout) and ``wait_for`` raises ``TimeoutError``. Work
    that never sleeps on this clock cannot be timed out by it.
    """

    def __init__(self, start: float = 1000.0, wall_start: float = 1_700_000_000.0) -> None:
        self._lock = threading.Lock()
        self._now = start
        self._wall_offset = wall_start - start
        self.sleeps: list[float] = []
        self._scopes: contextvars.ContextVar[tuple[_Scope, ...]] = contextvars.ContextVar(
            f"fake_clock_scopes_{next(_ids)}", default=()
        )

    def now(self) -> float:
        return self._now

    def wall(self) -> float:
        return self._now + self._wall_offset

    def advance(self, seconds: float) -> None:
        """Move time forward without sleeping."""
        with self._lock:
            self._now += max(0.0, seconds)

    async def sleep(self, seconds: float) -> None:
        seconds = max(0.0, seconds)
        scopes = self._scopes.get()
        fired: _Scope | None = None
        with self._lock:
            if scopes:
                first = min(scopes, key=lambda s: s.deadline)
                if self._now + seconds >= first.deadline:
                    fired = first
                    seconds = max(0.0, first.deadline - self._now)
            self.sleeps.append(seconds)
            self._now += seconds
        await asyncio.sleep(0)
        if fired is not None:
            fired.fired = True
            raise asyncio.CancelledError

    async def wait_for(self, awaitable: Awaitable[T], timeout: float | None) -> T:
        if timeout is None:
            return await awaitable
        scope = _Scope(self._now + max(0.0, timeout))
        token = self._scopes.set((*self._scopes.get(), scope))
        try:
            return await awaitable
        except asyncio.CancelledError:
            if scope.fired:
                raise TimeoutError from None
            raise
        finally:
            self._scopes.reset(token)

    @property
    def slept(self) -> float:
        """Total time spent sleeping on this clock."""
        return sum(self.sleeps)

    def __repr__(self) -> str:
        return f"FakeClock(now={self._now:.3f}, sleeps={len(self.sleeps)})"
