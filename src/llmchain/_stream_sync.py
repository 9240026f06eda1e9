"""The sync ``chain.stream()``: the same stream as ``astream()``, read on llmchain's loop.

A pump task on llmchain's loop reads the events ahead into a bounded buffer; the iterator
hands them out from it and runs the loop only when it is empty (``SyncResponseStream``).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import Iterator
from typing import Any

from ._loop import LOOP
from ._models import LLMResponse
from ._stream import Finish, StreamEvent, TextDelta
from ._streaming import ResponseStream


class SyncResponseStream:
    """``stream()``'s iterator over the same stream.

    A pump task on llmchain's loop reads the events ahead into a small buffer (at most
    ``WINDOW`` events: memory stays bounded), and the iterator hands them out from it: the loop
    is entered only when the buffer is empty, so the chunks that arrive together cost one loop
    entry between them, not one each. The stream lives on that one loop (every sync call's), so
    any thread may read it, one at a time, not only the one that started it.

    Breaking out (``close()``, leaving ``with``, dropping the iterator) before the last chunk
    cancels the stream: the connection closes (if the answer had arrived whole, it was already
    released) and the log line says ``cancelled``. The pump never ends a stream for the caller.
    """

    def __init__(self, stream: ResponseStream) -> None:
        self._stream = stream
        self._pump = _Pump(stream)

    @property
    def response(self) -> LLMResponse | None:
        return self._stream.response

    @property
    def text(self) -> str:
        """The text so far (``ResponseStream.text``: the provider's, which may be up to the
        read-ahead window ahead of the chunks taken; the final response's once it has ended)."""
        return self._stream.text

    def __iter__(self) -> Iterator[str]:
        return self

    def __next__(self) -> str:
        while True:
            event = self._pump.next()
            if type(event) is TextDelta:
                return event.text

    def events(self) -> Iterator[StreamEvent]:
        """The typed events, ending with ``StreamEnd``."""
        while True:
            try:
                event = self._pump.next()
            except StopIteration:
                return
            yield event

    def close(self) -> None:
        """Stop early (also done by ``with`` and when the iterator is dropped)."""
        if not self._pump.finished:
            LOOP.run(self._pump.stop())

    def __enter__(self) -> SyncResponseStream:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:
        pump = getattr(self, "_pump", None)
        if pump is not None and not pump.finished:
            with contextlib.suppress(Exception):  # best effort: the loop may be gone (at exit)
                _close_abandoned(pump)


#: Events a sync stream's pump reads ahead of its consumer, at most.
WINDOW = 64
_END = object()


class _Failure:
    __slots__ = ("error",)

    def __init__(self, error: BaseException) -> None:
        self.error = error


class _Pump:
    """Reads a ``ResponseStream`` ahead on the loop; the sync iterator takes from ``buffer``.
    Holds no reference to the iterator, so dropping the iterator lets it be collected."""

    def __init__(self, stream: ResponseStream) -> None:
        self.stream = stream
        self.buffer: deque[Any] = deque()
        self.task: asyncio.Task[None] | None = None
        self.loop: asyncio.AbstractEventLoop | None = None
        self.arrived: asyncio.Event | None = None
        self.space: asyncio.Event | None = None
        self.resume: asyncio.Event | None = None
        self.wants_space = False
        self.finished = False

    def next(self) -> StreamEvent:
        buffer = self.buffer
        if not buffer:
            if self.finished:
                raise StopIteration
            LOOP.run(self.fill())
        item = buffer[0]
        if item is _END:
            self.finished = True
            raise StopIteration
        buffer.popleft()
        if self.wants_space and self.loop is not None and self.space is not None:
            self.wants_space = False
            self.loop.call_soon_threadsafe(self.space.set)
        if type(item) is _Failure:
            self.finished = True
            buffer.clear()
            buffer.append(_END)
            raise item.error
        event: StreamEvent = item
        return event

    async def fill(self) -> None:
        """Wait (on the loop) until the pump has put something in the buffer."""
        if self.task is None:
            self.loop = asyncio.get_running_loop()
            self.arrived, self.space, self.resume = asyncio.Event(), asyncio.Event(), asyncio.Event()
            self.task = self.loop.create_task(self.run())
        assert self.arrived is not None and self.resume is not None and self.space is not None
        self.resume.set()  # the consumer has taken everything: the pump may finish the stream
        self.space.set()  # (and has room: a wake-up from another thread may have been missed)
        while not self.buffer:
            self.arrived.clear()
            await self.arrived.wait()

    async def run(self) -> None:
        buffer, stream = self.buffer, self.stream
        arrived, space, resume = self.arrived, self.space, self.resume
        assert arrived is not None and space is not None and resume is not None
        try:
            while True:
                if len(buffer) >= WINDOW:
                    space.clear()
                    self.wants_space = True
                    await space.wait()
                try:
                    event = await stream.next_event()
                except StopAsyncIteration:
                    buffer.append(_END)
                    return
                buffer.append(event)
                arrived.set()
                if type(event) is Finish:
                    # the provider's answer is complete; the stream ends (stages' end handlers,
                    # the log line) only when the consumer has taken every chunk: one who left
                    # the loop before that cancelled the call
                    resume.clear()
                    await resume.wait()
        except asyncio.CancelledError:
            raise
        except BaseException as exc:
            buffer.append(_Failure(exc))
        finally:
            arrived.set()

    async def stop(self) -> None:
        """Stop the pump and close the stream: every stage sees it cancelled."""
        self.finished = True
        task = self.task
        if task is not None and not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await self.stream.aclose()


#: Closes scheduled by dropped iterators, kept until done (a loop holds its tasks weakly).
_CLOSING: set[asyncio.Task[None]] = set()


def _close_abandoned(pump: _Pump) -> None:
    """Close a stream whose iterator was dropped: at once when no thread is driving llmchain's
    loop; else scheduled there, to run at its next step. Never waits for another thread: a
    finaliser runs wherever the garbage collector happens to (maybe during a call on the loop,
    or in a thread holding a lock a stage needs)."""
    loop = pump.loop
    if loop is None or loop.is_closed() or LOOP.run_if_idle(pump.stop):
        return
    loop.call_soon_threadsafe(_stop_soon, pump)


def _stop_soon(pump: _Pump) -> None:
    if pump.finished:
        return
    task = asyncio.get_running_loop().create_task(pump.stop())
    _CLOSING.add(task)
    task.add_done_callback(_CLOSING.discard)
