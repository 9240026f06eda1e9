"""Waiting for a condition another thread or process makes true, instead of sleeping a guess.

The fault server and subprocesses run outside the test's event loop, so there is no event to
await: ``until`` checks the condition on every turn of the loop and fails with a clear message
only after a limit generous enough for a loaded 2-core machine.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

LIMIT_S = 10.0


async def until(condition: Callable[[], bool], what: str, limit_s: float = LIMIT_S) -> None:
    deadline = time.monotonic() + limit_s
    while not condition():
        assert time.monotonic() < deadline, f"not reached within {limit_s} s: {what}"
        await asyncio.sleep(0.001)
