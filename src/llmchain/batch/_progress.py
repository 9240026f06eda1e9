"""The batch progress line on stderr: a few lines of code, no tqdm/rich.

On a terminal the line is redrawn in place (carriage return) ten times a second; otherwise a
plain line is printed every few seconds, so CI logs stay short.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
from typing import TYPE_CHECKING, TextIO

from .._clock import Clock

if TYPE_CHECKING:
    from ._summary import BatchSummary

TTY_INTERVAL_S = 0.1
PLAIN_INTERVAL_S = 5.0


def format_progress(s: BatchSummary, now: float) -> str:
    """``412/1000 41% · 83.1/s · ETA 7s · ok 400 · failed 12 · retries 30 · 429s 5 · …``."""
    elapsed = now - s.started_at
    rate = s.written / elapsed if elapsed > 0 else 0.0
    done = s.lines_done
    if s.total_lines:
        head = f"{done}/{s.total_lines} {100 * done / s.total_lines:3.0f}%"
        left = max(s.total_lines - done, 0)
        eta = _duration(left / rate) if rate > 0 else "?"
    else:
        head, eta = f"{done}/?", "?"
    parts = [
        head,
        f"{rate:.1f}/s",
        f"ETA {eta}",
        f"ok {s.ok}",
        f"failed {s.failed}",
        f"retries {s.retries}",
        f"429s {s.rate_limited}",
        f"cache hits {s.cache_hits}",
        f"in flight {s.in_flight}",
    ]
    if s.skipped:
        parts.append(f"skipped {s.skipped}")
    return " · ".join(parts)


def _duration(seconds: float) -> str:
    seconds = int(seconds + 0.5)
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"


class ProgressDisplay:
    """Redraws ``format_progress`` on ``stream`` until ``close()``."""

    def __init__(self, stream: TextIO, summary: BatchSummary, clock: Clock, *, tty: bool | None = None):
        self.stream, self.summary, self.clock = stream, summary, clock
        self.tty = stream.isatty() if tty is None else tty
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def _run(self) -> None:
        interval = TTY_INTERVAL_S if self.tty else PLAIN_INTERVAL_S
        while True:
            await self.clock.sleep(interval)
            self.draw()

    def draw(self, final: bool = False) -> None:
        line = format_progress(self.summary, self.clock.now())
        with contextlib.suppress(OSError, ValueError):  # a closed or broken stderr must not stop the run
            if self.tty:
                width = shutil.get_terminal_size().columns - 1
                self.stream.write(f"\r{line[:width]}\x1b[K" + ("\n" if final else ""))
            else:
                self.stream.write(f"batch: {line}\n")
            self.stream.flush()

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self.tty:  # the plain mode leaves the final word to the summary line
            self.draw(final=True)
