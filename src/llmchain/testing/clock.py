"""A fake clock: time moves only when someone sleeps on it (or a test advances it)."""

from __future__ import annotations

import asyncio
import threading


class FakeClock:
    """Implements ``llmchain.Clock``; ``sleep(s)`` advances time by ``s`` at once and yields.

    ``sleeps`` records every requested wait, so tests can assert on backoff schedules
    without waiting for them.
    """

    def __init__(self, start: float = 1000.0, wall_start: float = 1_700_000_000.0) -> None:
        self._lock = threading.Lock()
        self._now = start
        self._wall_offset = wall_start - start
        self.sleeps: list[float] = []

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
        with self._lock:
            self.sleeps.append(seconds)
            self._now += seconds
        await asyncio.sleep(0)

    @property
    def slept(self) -> float:
        """Total time spent sleeping on this clock."""
        return sum(self.sleeps)

    def __repr__(self) -> str:
        return f"FakeClock(now={self._now:.3f}, sleeps={len(self.sleeps)})"
