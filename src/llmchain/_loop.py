"""The sync facade's engine: one event loop, always running on a daemon thread.

Every sync call (``complete``, ``complete_json``, ``embed``, ``close``, a sync stream's steps),
from any thread, the main one and one whose own loop is already running (Jupyter) included, is
handed to this one loop and the calling thread blocks until it is done. Hence:

* one connection pool per transport for all sync calls (transports keep one per loop), and
  loop-bound objects (pools, events, a stream's pump) never meet a second loop: a sync stream
  started in one thread can be read in another;
* the loop runs between calls, so a server closing an idle keep-alive connection is seen when
  it happens and the pool drops it before a call could pick it;
* a call costs one hand-over to the loop thread and back (docs/benchmarks.md, "The sync
  facade"); the hand-over is a callback and a lock, not ``run_coroutine_threadsafe``'s
  future machinery, which costs about a third more.

Ctrl-C in the waiting thread cancels the call and waits for its stages to unwind. A sync call
made on the loop thread itself (an async stage calling ``chain.complete``) would wait for
itself: it is a ``RuntimeError``. After ``fork()`` the child starts a loop of its own on first use.
"""

from __future__ import annotations

import asyncio
import os
import threading
from collections.abc import Coroutine
from typing import Any, Generic, TypeVar

T = TypeVar("T")


class LoopThread:
    """A lazily started event loop running forever on a daemon thread."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._ident: int | None = None

    def loop(self) -> asyncio.AbstractEventLoop:
        """The loop, started on first use (and again in a forked child)."""
        loop = self._loop
        if loop is not None:
            return loop
        with self._lock:
            if self._loop is None:
                ready = threading.Event()
                new_loop = asyncio.new_event_loop()

                def run() -> None:
                    asyncio.set_event_loop(new_loop)
                    new_loop.call_soon(ready.set)
                    new_loop.run_forever()

                thread = threading.Thread(target=run, name="llmchain-loop", daemon=True)
                thread.start()
                ready.wait()
                self._ident = thread.ident
                self._loop = new_loop
            return self._loop

    def in_loop_thread(self) -> bool:
        return self._ident is not None and threading.get_ident() == self._ident

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run ``coro`` on the loop thread to completion, blocking this thread."""
        loop = self._loop or self.loop()
        if threading.get_ident() == self._ident:
            coro.close()
            raise RuntimeError(
                "a sync llmchain call was made from inside an async llmchain stage; "
                "use `await chain.acomplete(...)` there"
            )
        call = _Call(coro)
        try:
            loop.call_soon_threadsafe(call.start)  # runs in a copy of this thread's context
            call.done.acquire()
        except BaseException:  # KeyboardInterrupt: stop the call, let its stages unwind
            loop.call_soon_threadsafe(call.cancel)  # after start, if it was scheduled: in order
            call.done.acquire()
            raise
        task = call.task
        if task is None:
            raise RuntimeError("llmchain's loop could not start the call")
        return task.result()

    def _forget(self) -> None:
        """In a forked child: the parent's loop thread does not exist here."""
        self._lock = threading.Lock()
        self._loop = self._ident = None


class _Call(Generic[T]):
    """One sync call: its task on the loop, and a lock the waiting thread blocks on (released
    when the task is done; cheaper than a ``concurrent.futures.Future``'s condition)."""

    __slots__ = ("coro", "done", "task")

    def __init__(self, coro: Coroutine[Any, Any, T]) -> None:
        self.coro = coro
        self.task: asyncio.Task[T] | None = None
        self.done = threading.Lock()
        self.done.acquire()

    def start(self) -> None:
        try:
            self.task = asyncio.get_running_loop().create_task(self.coro)
        except BaseException:
            self.coro.close()
            self.done.release()  # the waiting thread must not hang: it finds no task
            raise
        self.task.add_done_callback(self._finished)

    def _finished(self, _: object) -> None:
        self.done.release()

    def cancel(self) -> None:
        if self.task is not None:
            self.task.cancel()
        elif self.done.locked():  # interrupted before ``start`` was scheduled: it never will be
            self.coro.close()
            self.done.release()


LOOP = LoopThread()
if hasattr(os, "register_at_fork"):  # POSIX
    os.register_at_fork(after_in_child=LOOP._forget)
