"""The sync facade's engine: one event loop for every sync call, driven by the threads that call.

Every sync call (``complete``, ``complete_json``, ``embed``, ``close``, a sync stream's steps),
from any thread, the main one and one whose own loop is already running (Jupyter) included,
runs on this one loop. The calling thread drives it (``run_until_complete``) unless another
thread is driving it already; then the call is handed to that thread's run of the loop and the
caller waits, and whoever finishes first hands the loop to a caller whose call is still running.
Hence:

* one connection pool per transport for all sync calls (transports keep one per loop), and
  loop-bound objects (pools, events, a stream's pump) never meet a second loop: a sync stream
  started in one thread can be read in another;
* a lone caller (a script, one thread at a time) pays no thread hand-over: the loop runs in its
  own thread. An always-running loop thread was measured and not chosen: the hand-over to it
  and back cost 75 to 100 µs more CPU per HTTP call on the 2-core machine, which took the
  sequential call from 0.98x to 1.24x raw httpx's CPU (docs/benchmarks.md, "The sync facade");
* the loop runs only during calls, so what happened on its sockets in between (a server closing
  an idle keep-alive connection: uvicorn does after 5 s) is still unseen when the next call
  starts, and the pool would hand out the dead connection. So a thread that starts driving the
  loop first lets it process its pending events (``_caught_up``: two non-blocking iterations, a
  few µs), which drops such connections; a close that races the request itself is covered by
  the engines' one re-send (docs/transports.md).

In a thread whose own loop is running (Jupyter), that loop is set aside while this one runs
(the call blocks the thread either way). Ctrl-C in a calling thread cancels its call and waits
for its stages to unwind. A sync call made while the thread is driving the loop (an async stage
calling ``chain.complete``) would wait for itself: it is a ``RuntimeError``. After ``fork()``
the child starts a loop of its own.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import threading
from collections.abc import Callable, Coroutine
from typing import Any, Generic, TypeVar

T = TypeVar("T")


class SharedLoop:
    """One event loop, created on first use, driven in turn by the threads that call."""

    def __init__(self) -> None:
        self._mutex = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._driver: int | None = None  # ident of the thread driving the loop now
        self._waiting: list[_Call[Any]] = []  # other threads' calls, not yet done

    def loop(self) -> asyncio.AbstractEventLoop:
        loop = self._loop
        if loop is None:
            with self._mutex:
                if self._loop is None:
                    self._loop = asyncio.new_event_loop()
                loop = self._loop
        return loop

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run ``coro`` to completion on the loop, blocking this thread."""
        call = _Call(self, coro, self._loop or self.loop())
        with self._mutex:  # never held while the loop runs: its callbacks take it (``_done``)
            nested = self._driver == call.thread
            drive = self._driver is None
            if drive:
                self._driver = call.thread
            elif not nested:
                call.will_wait()
                self._waiting.append(call)
        if nested:
            coro.close()
            raise RuntimeError(
                "a sync llmchain call was made from inside an async llmchain stage; "
                "use `await chain.acomplete(...)` there"
            )
        if drive:
            try:
                call.start(catch_up=True)
            except BaseException:
                self._hand_over()
                raise
            self._drive(call)
        else:
            self._wait(call)
        return call.result()

    def run_if_idle(self, make: Callable[[], Coroutine[Any, Any, None]]) -> bool:
        """Run ``make()`` now if no thread is driving the loop; else return False at once.
        Never blocks: for finalisers, which run wherever the garbage collector happens to."""
        loop = self._loop or self.loop()
        if not self._mutex.acquire(blocking=False):
            return False
        try:
            idle = self._driver is None
            if idle:
                self._driver = threading.get_ident()
        finally:
            self._mutex.release()
        if not idle:
            return False
        try:
            call = _Call(self, make(), loop)
            call.start(catch_up=False)
        except BaseException:
            self._hand_over()
            raise
        self._drive(call)
        return True

    def _wait(self, call: _Call[Any]) -> None:
        """Hand ``call`` to the thread driving the loop; wait until it is done, or until that
        thread hands the loop over to this one while the call still runs."""
        loop, wake = call.loop, call.wake
        assert wake is not None
        interrupted: BaseException | None = None
        try:
            loop.call_soon_threadsafe(call.start)  # in a copy of this thread's context
            wake.acquire()
        except BaseException as exc:  # KeyboardInterrupt: stop the call, let its stages unwind
            interrupted = exc
            try:
                loop.call_soon_threadsafe(call.cancel)  # after start, if it was scheduled: in order
                wake.acquire()
            except BaseException:  # a second Ctrl-C: stop waiting at once
                self._abandon(call)
                raise
        if call.drives:
            self._drive(call)
        if interrupted is not None:
            raise interrupted

    def _drive(self, call: _Call[Any]) -> None:
        """Run the loop in this thread until ``call`` is done, then hand the loop on."""
        loop = call.loop
        until: asyncio.Future[Any] = call.finished or call.task  # type: ignore[assignment]
        outer = asyncio._get_running_loop()  # Jupyter's, set aside while this loop runs
        if outer is not None:
            asyncio._set_running_loop(None)
        try:
            try:
                loop.run_until_complete(until)
            except BaseException:  # KeyboardInterrupt: cancel the call, let its stages unwind
                call.cancel()
                if not until.done():  # (a second Ctrl-C leaves at once)
                    with contextlib.suppress(Exception, asyncio.CancelledError):
                        loop.run_until_complete(until)
                raise
        finally:
            self._hand_over()
            if outer is not None:
                asyncio._set_running_loop(outer)

    def _hand_over(self) -> None:
        """The loop is free: give it to a waiting thread whose call still runs, if any."""
        with self._mutex:
            if self._waiting:
                successor = self._waiting.pop(0)
                self._driver = successor.thread
                successor.drives = True
                assert successor.wake is not None
                successor.wake.release()
            else:
                self._driver = None

    def _abandon(self, call: _Call[Any]) -> None:
        """This thread stops waiting for ``call``: it must not be handed the loop, and if it
        just was, the loop goes on to the next waiting thread."""
        with self._mutex:
            if call in self._waiting:
                self._waiting.remove(call)
                return
        if call.drives:
            self._hand_over()

    def _done(self, call: _Call[Any]) -> None:
        """On the loop: a waiting thread's call is done; wake that thread."""
        with self._mutex:
            if call in self._waiting:
                self._waiting.remove(call)
                assert call.wake is not None
                call.wake.release()

    def _forget(self) -> None:
        """In a forked child: the parent's threads (and whichever drove the loop) are gone."""
        self._mutex = threading.Lock()
        self._loop = self._driver = None
        self._waiting = []


class _Call(Generic[T]):
    """One sync call: its coroutine and its task on the loop; for a call whose thread waits
    while another drives the loop, also the lock that thread waits on and a future set when the
    call is done (what that thread runs the loop until, should the loop be handed to it)."""

    __slots__ = ("coro", "drives", "finished", "loop", "owner", "task", "thread", "wake")

    def __init__(self, owner: SharedLoop, coro: Coroutine[Any, Any, T],
                 loop: asyncio.AbstractEventLoop) -> None:
        self.owner = owner
        self.coro = coro
        self.loop = loop
        self.thread = threading.get_ident()
        self.task: asyncio.Task[T] | None = None
        self.finished: asyncio.Future[None] | None = None
        self.wake: threading.Lock | None = None
        self.drives = False  # set when the loop is handed to this call's thread

    def will_wait(self) -> None:
        self.finished = self.loop.create_future()
        self.wake = threading.Lock()
        self.wake.acquire()

    def start(self, catch_up: bool = False) -> None:
        coro: Coroutine[Any, Any, T] = _caught_up(self.coro) if catch_up else self.coro
        try:
            self.task = self.loop.create_task(coro)
        except BaseException as exc:
            coro.close()
            self._end(exc)
            raise
        if self.finished is not None:
            self.task.add_done_callback(self._task_done)

    def _task_done(self, _: object) -> None:
        self._end(None)

    def _end(self, error: BaseException | None) -> None:
        finished = self.finished
        if finished is not None and not finished.done():
            if error is None:
                finished.set_result(None)
            else:
                finished.set_exception(error)
            self.owner._done(self)

    def cancel(self) -> None:
        if self.task is not None:
            self.task.cancel()
        else:  # interrupted before ``start`` was scheduled
            self.coro.close()
            self._end(KeyboardInterrupt())

    def result(self) -> T:
        if self.task is None:
            if self.finished is not None:
                self.finished.result()  # what kept the task from starting
            raise RuntimeError("llmchain's loop did not start the call")
        return self.task.result()


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


LOOP = SharedLoop()
if hasattr(os, "register_at_fork"):  # POSIX
    os.register_at_fork(after_in_child=LOOP._forget)
