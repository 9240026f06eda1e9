"""One HTTP engine (connection pool) per event loop, for each transport.

A connection pool belongs to the loop that created it. The sync facade runs calls on
llmchain's one loop while async callers call from theirs, so a transport keeps a
small map loop → engine, filled lazily; readers take no lock (copy-on-write), and engines of
loops that have closed are dropped. ``aclose()`` closes the current loop's engine directly and
the others on their own loops.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager
from typing import Any, Generic, Protocol, TypeVar


class Answer(Protocol):
    """An HTTP answer whose head has arrived (header names in lower case)."""

    status: int
    headers: dict[str, str]
    content_type: str

    async def read(self) -> bytes: ...

    def iter_chunks(self) -> AsyncIterator[bytes]: ...


class Engine(Protocol):
    """What a transport needs from an HTTP client; errors come out as llmchain errors."""

    @property
    def closed(self) -> bool: ...

    async def post(
        self, payload: bytes, extra: dict[str, str] | None
    ) -> tuple[int, dict[str, str], bytes]: ...

    def stream(self, payload: bytes, extra: dict[str, str] | None) -> AbstractAsyncContextManager[Answer]: ...

    async def close(self) -> None: ...


E = TypeVar("E", bound=Engine)


class SessionPool(Generic[E]):
    """One engine per event loop, created on first use; thread-safe."""

    __slots__ = ("_factory", "_lock", "_sessions")

    def __init__(self, factory: Callable[[], E]) -> None:
        self._factory = factory
        self._lock = threading.Lock()
        self._sessions: dict[asyncio.AbstractEventLoop, E] = {}

    def get(self) -> E:
        session = self._sessions.get(asyncio.get_running_loop())
        if session is None or session.closed:
            return self._create()
        return session

    def _create(self) -> E:
        loop = asyncio.get_running_loop()
        with self._lock:
            session = self._sessions.get(loop)
            if session is None or session.closed:
                session = self._factory()
                live = {lp: s for lp, s in self._sessions.items() if not lp.is_closed()}
                self._sessions = {**live, loop: session}  # copy-on-write: readers take no lock
            return session

    def items(self) -> list[tuple[asyncio.AbstractEventLoop, E]]:
        return list(self._sessions.items())

    def __len__(self) -> int:
        return len(self._sessions)

    async def aclose(self) -> None:
        """Close every session: this loop's directly, live other loops' on their own loop."""
        with self._lock:
            sessions, self._sessions = self._sessions, {}
        current = asyncio.get_running_loop()
        waits: list[Any] = []
        for loop, session in sessions.items():
            if session.closed or loop.is_closed():
                continue
            if loop is current:
                waits.append(session.close())
            elif loop.is_running():
                future = asyncio.run_coroutine_threadsafe(session.close(), loop)
                waits.append(asyncio.wait_for(asyncio.wrap_future(future), 5.0))
            else:  # an idle loop (a finished run_until_complete): close when it runs again
                loop.call_soon_threadsafe(_close_later, session)
        await asyncio.gather(*waits, return_exceptions=True)


_closing: set[asyncio.Future[None]] = set()


def _close_later(session: Engine) -> None:
    task = asyncio.ensure_future(session.close())
    _closing.add(task)  # hold a reference until it is done
    task.add_done_callback(_closing.discard)
