"""The lean HTTP/1.1 engine's connection pool: keep-alive connections to one origin, on one
event loop, up to a limit, with callers queued FIFO beyond it.

A connection goes back to the pool only after a complete answer that allows reuse; one the
server closed while idle, or idle longer than ``keepalive_s``, is dropped when met. There is no
automatic resend of a request: a POST that may have reached the server is the retry stage's
decision (and the request id travels as the idempotency key).

With other requests in progress on the pool, a request is written at the end of the event
loop's current iteration, together with the others started in it, rather than at once: a
server that is woken by the first of them then finds the rest already there. Against a fast
server on the same machine that halves the server's wake-ups and the kernel work each costs
both sides (docs/benchmarks.md); a lone request is written at once.
"""

from __future__ import annotations

import asyncio
import ssl
import time
import zlib
from collections import deque
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from urllib.parse import urlsplit

from .._exceptions import TimeoutExceeded, TransportError
from ._h1 import MAX_HEAD, Conn, Ended, Exchange, Stalled, h1_error


class H1Pool:
    """Keep-alive connections to the origin of ``url``, for one event loop."""

    def __init__(self, url: str, headers: dict[str, str], *, where: str, limit: int,
                 connect_timeout: float | None, read_timeout: float | None, keepalive_s: float) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"unsupported URL {url!r}: expected http:// or https://")
        self.host, self.where, self.url = parts.hostname, where, url
        self.port = parts.port or (443 if parts.scheme == "https" else 80)
        self.ssl = ssl.create_default_context() if parts.scheme == "https" else None
        target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        host = parts.netloc.rsplit("@", 1)[-1]
        lines = [f"POST {target} HTTP/1.1", f"host: {host}", *(f"{k}: {v}" for k, v in headers.items())]
        self._head = ("\r\n".join(lines) + "\r\n").encode("latin-1")
        self.limit, self.keepalive_s = limit, keepalive_s
        self.connect_timeout, self.read_timeout = connect_timeout, read_timeout
        self._idle: list[Conn] = []
        self._open = 0
        self._busy = 0  # requests in progress
        self._writes: list[tuple[Conn, bytes]] = []  # to write at the end of this loop iteration
        self._waiters: deque[asyncio.Future[Conn | None]] = deque()
        self.closed = False

    def _request(self, payload: bytes, extra: dict[str, str] | None) -> bytes:
        more = "".join(f"{k}: {v}\r\n" for k, v in extra.items()) if extra else ""
        return self._head + f"{more}content-length: {len(payload)}\r\n\r\n".encode("latin-1") + payload

    async def post(self, payload: bytes, extra: dict[str, str] | None) -> tuple[int, dict[str, str], bytes]:
        """Send one request; the status, lower-case headers and whole body of the answer."""
        conn = await self._acquire()
        answer: Exchange | None = None
        self._busy += 1
        try:
            self._write(conn, self._request(payload, extra))
            answer = await self._read_head(conn)
            return answer.status, answer.headers, await answer.read()
        except (Ended, Stalled, ValueError, zlib.error) as exc:
            raise h1_error(exc, self.where, self.read_timeout) from None
        finally:
            self._busy -= 1
            self._release(conn, answer is not None and answer.complete and answer.reusable)

    @asynccontextmanager
    async def stream(self, payload: bytes, extra: dict[str, str] | None) -> AsyncIterator[Exchange]:
        """Send one request; the answer with its head read, its body still to come."""
        conn = await self._acquire()
        answer: Exchange | None = None
        self._busy += 1
        try:
            self._write(conn, self._request(payload, extra))
            try:
                answer = await self._read_head(conn)
            except (Ended, Stalled, ValueError) as exc:
                raise h1_error(exc, self.where, self.read_timeout) from None
            answer.streaming = True
            yield answer
        finally:
            self._busy -= 1
            self._release(conn, answer is not None and answer.complete and answer.reusable)

    def _write(self, conn: Conn, data: bytes) -> None:
        """Write a request: now if it is the only one in progress, else with the others of this
        loop iteration (see the module docstring)."""
        if self._busy <= 1 and not self._writes:
            conn.transport.write(data)  # type: ignore[union-attr]
            return
        self._writes.append((conn, data))
        if len(self._writes) == 1:
            asyncio.get_running_loop().call_soon(self._flush)

    def _flush(self) -> None:
        writes, self._writes = self._writes, []
        for conn, data in writes:
            transport = conn.transport
            if not conn.eof and transport is not None and not transport.is_closing():
                transport.write(data)  # a request cancelled meanwhile closed its connection

    async def _read_head(self, conn: Conn) -> Exchange:
        buf = conn.buf
        while True:
            while (end := buf.find(b"\r\n\r\n")) < 0:
                if len(buf) > MAX_HEAD:
                    raise ValueError(f"response head larger than {MAX_HEAD} bytes")
                await conn.more(self.read_timeout)
            lines = bytes(buf[:end]).decode("latin-1").split("\r\n")
            del buf[:end + 4]
            version, _, rest = lines[0].partition(" ")
            if not version.startswith("HTTP/"):
                raise ValueError(f"not an HTTP response: {lines[0][:80]!r}")
            status = int(rest[:3])
            if 100 <= status < 200:
                continue  # an interim answer (100 Continue...): the real one follows
            headers = {}
            for line in lines[1:]:
                name, _, value = line.partition(":")
                headers[name.strip().lower()] = value.strip()
            return Exchange(conn, status, headers, version, where=self.where,
                            read_timeout=self.read_timeout)

    # -- the pool -----------------------------------------------------------------------------

    async def _acquire(self) -> Conn:
        now = time.monotonic()
        while self._idle:
            conn = self._idle.pop()
            if not conn.eof and now - conn.idle_since < self.keepalive_s:
                return conn
            self._forget(conn)
        if self.closed:
            raise TransportError(f"{self.where}: the transport was closed")
        if self.limit and self._open >= self.limit:
            waiter: asyncio.Future[Conn | None] = asyncio.get_running_loop().create_future()
            self._waiters.append(waiter)
            try:
                handed = await waiter
            except asyncio.CancelledError:
                if waiter.done() and not waiter.cancelled():  # handed over as we were cancelled
                    given = waiter.result()
                    self._release(given, True) if given is not None else self._wake_one(None)
                raise
            if handed is not None:
                return handed
        self._open += 1  # a slot is ours: connect
        try:
            return await self._connect()
        except BaseException:
            self._open -= 1
            self._wake_one(None)
            raise

    async def _connect(self) -> Conn:
        loop = asyncio.get_running_loop()
        opening = loop.create_connection(Conn, self.host, self.port, ssl=self.ssl,
                                         server_hostname=self.host if self.ssl else None)
        try:
            _, conn = await asyncio.wait_for(opening, self.connect_timeout)
        except (asyncio.TimeoutError, TimeoutError):
            raise TimeoutExceeded(f"{self.where}: connecting to {self.url} took over "
                                  f"{self.connect_timeout}s", phase="attempt",
                                  hint="is the server at base_url reachable?") from None
        except OSError as exc:  # ssl.SSLError included
            raise TransportError(f"{self.where}: cannot connect to {self.url}: {exc}",
                                 hint="is the server at base_url running and reachable?") from exc
        return conn

    def _release(self, conn: Conn, reuse: bool) -> None:
        if not reuse or conn.eof or conn.buf or self.closed:
            conn.close()
            self._forget(conn)
            self._wake_one(None)
            return
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(conn)
                return
        conn.idle_since = time.monotonic()
        self._idle.append(conn)

    def _forget(self, conn: Conn) -> None:
        conn.close()
        self._open -= 1

    def _wake_one(self, conn: Conn | None) -> None:
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(conn)
                return

    async def close(self) -> None:
        self.closed = True
        idle, self._idle = self._idle, []
        for conn in idle:
            self._forget(conn)
        await asyncio.sleep(0)  # let the transports finish closing
