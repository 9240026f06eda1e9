"""The sync facade's engine: one persistent event loop on a daemon thread per process.

``Chain.complete()`` submits the async call to this loop and waits. This works from a plain
script, from many threads at once, and inside a running loop (Jupyter), without creating a
loop or thread per call. The loop is restarted after ``fork()``.
"""

from __future__ import annotations

import asyncio
import os
import threading
from collections.abc import Coroutine
from typing import Any, TypeVar

T = TypeVar("T")


class LoopThread:
    """A lazily started event loop running forever on a daemon thread."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._pid = 0

    def loop(self) -> asyncio.AbstractEventLoop:
        loop = self._loop
        if loop is not None and self._pid == os.getpid():
            return loop
        with self._lock:
            if self._loop is None or self._pid != os.getpid():
                ready = threading.Event()
                new_loop = asyncio.new_event_loop()

                def run() -> None:
                    asyncio.set_event_loop(new_loop)
                    new_loop.call_soon(ready.set)
                    new_loop.run_forever()

                thread = threading.Thread(target=run, name="llmchain-loop", daemon=True)
                thread.start()
                ready.wait()
                self._loop, self._thread, self._pid = new_loop, thread, os.getpid()
            return self._loop

    def in_loop_thread(self) -> bool:
        return self._thread is not None and threading.current_thread() is self._thread

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run ``coro`` on the loop thread and block this thread until it finishes."""
        if self.in_loop_thread():
            coro.close()
            raise RuntimeError(
                "a sync llmchain call was made from inside an async llmchain stage; "
                "use `await chain.acomplete(...)` there"
            )
        future = asyncio.run_coroutine_threadsafe(coro, self.loop())
        try:
            return future.result()
        except BaseException:
            future.cancel()  # KeyboardInterrupt in the waiting thread: stop the call too
            raise


LOOP = LoopThread()
