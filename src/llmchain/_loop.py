"""The sync facade's engine: persistent event loops, never one per call.

* The main thread, when no loop runs in it (a plain script), gets one persistent loop of its
  own and drives it with ``run_until_complete``: no thread hop, the cheapest sync path.
* Any other thread, and a thread whose loop is already running (Jupyter), submits the call to
  one shared loop on a daemon thread and waits for it.

The main thread's loop runs only during calls, so what happened on its sockets in between (a
server closing an idle keep-alive connection: uvicorn does after 5 s) is still unseen when the
next call starts, and the pool would hand out the dead connection. So each call first lets the
loop process its pending events (``_caught_up``: two non-blocking iterations, a few µs), which
drops such connections; a close that races the request itself is covered by the engines'
one re-send (docs/transports.md). The per-call cost of both paths is in docs/benchmarks.md.

Both loops are recreated after ``fork()``.
"""

from __future__ import annotations

import asyncio
import contextlib
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
        self._main_loop: asyncio.AbstractEventLoop | None = None
        self._main_pid = 0

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
        """Run ``coro`` to completion on a persistent loop, blocking this thread."""
        if threading.current_thread() is threading.main_thread() and not _loop_running():
            return self._run_on_main_loop(coro)
        return self.run_in_thread(coro)

    def _run_on_main_loop(self, coro: Coroutine[Any, Any, T]) -> T:
        loop = self._main_loop
        if loop is None or loop.is_closed() or self._main_pid != os.getpid():
            loop = self._main_loop = asyncio.new_event_loop()
            self._main_pid = os.getpid()
        task = loop.create_task(_caught_up(coro))
        try:
            return loop.run_until_complete(task)
        except BaseException:
            if not task.done():  # KeyboardInterrupt: cancel the call, leave the loop reusable
                task.cancel()
                with contextlib.suppress(BaseException):
                    loop.run_until_complete(task)
            raise

    def run_in_thread(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run ``coro`` on the shared loop thread and block this thread until it finishes."""
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


async def _caught_up(coro: Coroutine[Any, Any, T]) -> T:
    """``coro``, after two non-blocking loop iterations: I/O that arrived while the loop was
    stopped (a peer's FIN) is read in the first; by the second the connection is closing, and a
    pool no longer hands it out."""
    try:
        await asyncio.sleep(0)
        await asyncio.sleep(0)
    except BaseException:
        coro.close()  # cancelled before it started
        raise
    return await coro


def _loop_running() -> bool:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


LOOP = LoopThread()
