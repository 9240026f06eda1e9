"""Bounding each chunk of a stream by the call's deadline and the idle gap, cheaply.

A timer per chunk (``asyncio.timeout``) costs several µs, more than everything else a chunk
does in the chain. On the real clock a stream instead gets one ``Watchdog``: one timer handle,
armed for the earliest moment a limit could run out, which cancels the task reading the stream
only if it is still waiting for that chunk then (else it re-arms for the next limit). Each chunk
costs two stores and a clock read. Other clocks (``FakeClock``) use their own ``wait_for`` per
chunk, which is what fires on fake time.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

from ._clock import Clock
from ._exceptions import TimeoutExceeded


def deadline_passed() -> TimeoutExceeded:
    return TimeoutExceeded("the call's deadline ran out while streaming", phase="deadline")


def idle_passed(idle: float) -> TimeoutExceeded:
    return TimeoutExceeded(f"no chunk arrived for {idle:g}s (the stream's idle_s)", phase="attempt")


class Watchdog:
    """Cancels the task reading a stream when the deadline or the idle gap passes mid-read."""

    __slots__ = ("_handle", "_loop", "clock", "deadline", "fired", "idle", "started", "task")

    def __init__(self, clock: Clock, deadline: float | None, idle: float | None) -> None:
        self.clock, self.deadline, self.idle = clock, deadline, idle
        self._loop = asyncio.get_running_loop()
        self._handle: asyncio.TimerHandle | None = None
        self.task: asyncio.Task[Any] | None = None
        self.started = 0.0
        self.fired: TimeoutExceeded | None = None

    async def pull(self, source: AsyncIterator[Any]) -> Any:
        """``source``'s next item, cancelled (``TimeoutExceeded``) when a limit runs out."""
        now = self.clock.now()
        if self.deadline is not None and now >= self.deadline:
            raise deadline_passed()
        self.started = now
        task = self.task = asyncio.current_task()
        if self._handle is None:
            self._arm(now)
        try:
            return await source.__anext__()
        except asyncio.CancelledError:
            fired, self.fired = self.fired, None
            if fired is None or task is None:
                raise
            uncancel = getattr(task, "uncancel", None)  # 3.11+: this cancellation was ours
            if uncancel is not None:
                uncancel()
            raise fired from None
        finally:
            self.task = None

    def _arm(self, now: float) -> None:
        when = self.deadline
        if self.idle is not None and (when is None or self.started + self.idle < when):
            when = self.started + self.idle
        if when is not None:
            self._handle = self._loop.call_later(max(0.0, when - now), self._fire)

    def _fire(self) -> None:
        self._handle = None
        task = self.task
        if task is None:
            return  # not reading now: the next pull re-arms
        now = self.clock.now()
        if self.deadline is not None and now >= self.deadline:
            self.fired = deadline_passed()
        elif self.idle is not None and now - self.started >= self.idle:
            self.fired = idle_passed(self.idle)
        else:  # the chunk being waited for was asked later than the one the timer was set for
            self._arm(now)
            return
        task.cancel()

    def close(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None
