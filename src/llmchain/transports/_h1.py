"""A lean HTTP/1.1 client for the transports' hot path: one connection and the reading of an
answer (the pool is in ``_h1_pool``).

Why not aiohttp here: measured against the same loopback server, an aiohttp ``ClientSession``
request costs ~170 µs of client CPU at concurrency 100, a bare ``asyncio.Protocol`` exchange
~50 µs (docs/benchmarks.md); at the product's targets that difference is the whole budget. The
transports need little of what aiohttp offers: one POST with a JSON body to one origin, and a
response framed by Content-Length, chunked encoding or the connection closing.

Scope: http and https (TLS through asyncio), keep-alive with a pool limit, connect and read
timeouts, gzip/deflate bodies, interim 1xx answers skipped. Not here: proxies, redirects,
cookies, HTTP/2; ``http_client = "aiohttp"`` (the default when ``trust_env`` is on) covers them.
A connection is reused only after a complete answer; anything else (cancel, timeout, error,
an abandoned stream) closes it.
"""

from __future__ import annotations

import asyncio
import zlib
from collections.abc import AsyncIterator

from .._exceptions import CallError, ProviderError, TimeoutExceeded, TransportError

MAX_HEAD = 64 * 1024


class Conn(asyncio.Protocol):
    """One connection: bytes in a buffer, one waiter woken by data or by the end."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.buf = bytearray()
        self.waiter: asyncio.Future[None] | None = None
        self.eof = False
        self.error: Exception | None = None
        self.idle_since = 0.0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self.buf += data
        waiter = self.waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def eof_received(self) -> bool:
        self._end(None)
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self._end(exc)

    def _end(self, exc: Exception | None) -> None:
        self.eof = True
        self.error = self.error or exc
        waiter = self.waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def more(self, timeout: float | None) -> None:
        """Wait until more bytes arrive; raise ``Ended`` at the end, ``Stalled`` on timeout."""
        if self.eof:
            raise Ended(self.error)
        loop = asyncio.get_running_loop()
        self.waiter = waiter = loop.create_future()
        timer = loop.call_later(timeout, _expire, waiter) if timeout is not None else None
        try:
            await waiter
        finally:
            self.waiter = None
            if timer is not None:
                timer.cancel()

    def close(self) -> None:
        self.eof = True
        if self.transport is not None:
            self.transport.close()


def _expire(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_exception(Stalled())


class Ended(Exception):
    """The server closed the connection (``args[0]``: the OS error, if any)."""


class Stalled(Exception):
    """No byte arrived within the read timeout."""


def h1_error(exc: Exception, where: str, read_timeout: float | None, streaming: bool = False) -> CallError:
    """The llmchain error for a connection that ended, stalled or spoke nonsense."""
    if isinstance(exc, Stalled):
        return TimeoutExceeded(f"{where}: no data from the server for {read_timeout}s "
                               f"({'mid-stream' if streaming else 'waiting for the answer'})",
                               phase="attempt")
    if isinstance(exc, Ended):
        cause = exc.args[0] if exc.args else None
        if isinstance(cause, ConnectionResetError):
            return TransportError(f"{where}: connection reset by the server")
        return TransportError(f"{where}: the server closed the connection before the "
                              "answer was complete")
    return ProviderError(f"{where}: malformed HTTP response ({exc})", retryable=False)


class Exchange:
    """An answer whose head has arrived; its body is read with ``read()`` or ``iter_chunks()``."""

    def __init__(self, conn: Conn, status: int, headers: dict[str, str], version: str, *,
                 where: str, read_timeout: float | None) -> None:
        self.conn, self.status, self.headers = conn, status, headers
        self.where, self.timeout = where, read_timeout
        self.content_type = headers.get("content-type", "").split(";", 1)[0].strip().lower()
        self.complete = False
        self.streaming = False
        length = headers.get("content-length")
        self.chunked = "chunked" in headers.get("transfer-encoding", "").lower()
        if status in (204, 304):
            length = "0"
        self.left = -1 if self.chunked or length is None else int(length)  # -1: until the end
        self.reusable = (version == "HTTP/1.1" and headers.get("connection", "").lower() != "close"
                         and (self.chunked or length is not None))
        encoding = headers.get("content-encoding", "").lower()
        self.inflate = (zlib.decompressobj(16 + zlib.MAX_WBITS) if encoding in ("gzip", "x-gzip")
                        else zlib.decompressobj() if encoding == "deflate" else None)

    async def read(self) -> bytes:
        """The whole body."""
        buf = self.conn.buf
        if not self.chunked and 0 <= self.left <= len(buf):  # the usual case: all here already
            body = bytes(buf[:self.left])
            del buf[:self.left]
            self.complete = True
        else:
            body = b"".join([part async for part in self._parts()])
        return self.inflate.decompress(body) if self.inflate is not None else body

    async def iter_chunks(self) -> AsyncIterator[bytes]:
        """Body bytes as they arrive (chunked framing removed, compression undone)."""
        inflate = self.inflate
        async for part in self._parts():
            yield inflate.decompress(part) if inflate is not None else part

    async def _parts(self) -> AsyncIterator[bytes]:
        try:
            while not self.complete:
                part = await (self._chunk() if self.chunked else self._span())
                if part:
                    yield part
        except (Ended, Stalled, ValueError) as exc:
            raise h1_error(exc, self.where, self.timeout, self.streaming) from None

    async def _span(self) -> bytes:
        """The next bytes of a body framed by Content-Length or by the connection closing."""
        conn = self.conn
        buf, timeout = conn.buf, self.timeout
        if self.left == 0:
            self.complete = True
            return b""
        while not buf:
            try:
                await conn.more(timeout)
            except Ended:
                if self.left < 0:  # framed by the connection closing: this is the end
                    self.complete = True
                    return b""
                raise
        take = len(buf) if self.left < 0 else min(self.left, len(buf))
        part = bytes(buf[:take])
        del buf[:take]
        if self.left > 0:
            self.left -= take
            self.complete = self.left == 0
        return part

    async def _chunk(self) -> bytes:
        """The next chunk of a chunked body (b"" and ``complete`` after the last one)."""
        conn = self.conn
        buf, timeout = conn.buf, self.timeout
        while (line_end := buf.find(b"\r\n")) < 0:
            await conn.more(timeout)
        size = int(bytes(buf[:line_end]).split(b";", 1)[0].strip() or b"0", 16)
        del buf[:line_end + 2]
        if size == 0:  # the last chunk, then optional trailers and a blank line
            while not buf.startswith(b"\r\n") and buf.find(b"\r\n\r\n") < 0:
                await conn.more(timeout)
            del buf[:2 if buf.startswith(b"\r\n") else buf.find(b"\r\n\r\n") + 4]
            self.complete = True
            return b""
        while len(buf) < size + 2:
            await conn.more(timeout)
        part = bytes(buf[:size])
        del buf[:size + 2]
        return part
