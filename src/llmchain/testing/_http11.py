"""A small, fast HTTP/1.1 server protocol for the fault server (asyncio.Protocol, keep-alive).

Hand-written rather than aiohttp.web because the fault server is the benchmark target: the
common answer is parsed, built and written synchronously inside ``data_received`` with no task
or stream objects, and slow faults (hangs, trickles, latency) become a task per request that
holds the connection the way a misbehaving provider would.
"""

from __future__ import annotations

import asyncio
import socket
import struct
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass

from ._wire import REASONS

MAX_HEAD = 64 * 1024
MAX_BODY = 32 * 1024 * 1024
LAST_CHUNK = b"0\r\n\r\n"


@dataclass(slots=True)
class HttpRequest:
    """One parsed request; header names are lower-case."""

    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    keep_alive: bool


Reply = bytes | Awaitable[None]
Handler = Callable[[HttpRequest, "Connection"], Reply]


class BadRequest(Exception):
    pass


def response_head(status: int, headers: Iterable[tuple[str, str]], *, length: int | None,
                  keep_alive: bool = True) -> bytes:
    """Status line and headers; ``length=None`` means a chunked body."""
    lines = [f"HTTP/1.1 {status} {REASONS.get(status, 'Status')}", "server: llmchain-fault-server"]
    lines.extend(f"{k}: {v}" for k, v in headers)
    lines.append(f"content-length: {length}" if length is not None else "transfer-encoding: chunked")
    if not keep_alive:
        lines.append("connection: close")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def response(status: int, body: bytes, headers: Iterable[tuple[str, str]] = (),
             content_type: str = "application/json", keep_alive: bool = True) -> bytes:
    """A whole response with a Content-Length body."""
    head = response_head(status, [("content-type", content_type), *headers], length=len(body),
                         keep_alive=keep_alive)
    return head + body


def chunk(data: bytes) -> bytes:
    """One chunk of a chunked body."""
    return b"%x\r\n%b\r\n" % (len(data), data)


class Connection(asyncio.Protocol):
    """One client connection: parses requests in order, one at a time."""

    def __init__(self, handler: Handler, registry: set[Connection]) -> None:
        self._handler = handler
        self._registry = registry
        self._buf = bytearray()
        self._transport: asyncio.Transport | None = None
        self._task: asyncio.Task[None] | None = None
        self.closed = False
        self.served = 0  # requests read on this connection (the one being answered included)

    # -- asyncio.Protocol ---------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self._transport = transport
        self._registry.add(self)
        sock = transport.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self._registry.discard(self)
        if self._task is not None:
            self._task.cancel()

    def data_received(self, data: bytes) -> None:
        self._buf += data
        if self._task is None:
            self._serve()

    # -- what handlers use --------------------------------------------------------------------

    def write(self, data: bytes) -> None:
        if not self.closed and self._transport is not None:
            self._transport.write(data)

    def close(self) -> None:
        if not self.closed and self._transport is not None:
            self.closed = True
            self._transport.close()

    @property
    def idle(self) -> bool:
        """Open, with no request being read or answered."""
        return not self.closed and self._task is None and not self._buf

    def reset(self) -> None:
        """Abort with a TCP RST (SO_LINGER 0), as a crashed or overloaded peer does."""
        if self.closed or self._transport is None:
            return
        sock = self._transport.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.closed = True
        self._transport.abort()

    # -- internals ----------------------------------------------------------------------------

    def _serve(self) -> None:
        while not self.closed:
            try:
                request = self._parse()
            except BadRequest as exc:
                self.write(response(400, str(exc).encode(), content_type="text/plain",
                                    keep_alive=False))
                self.close()
                return
            if request is None:
                return
            self.served += 1
            reply = self._handler(request, self)
            if isinstance(reply, bytes):
                self.write(reply)
                if not request.keep_alive:
                    self.close()
                continue
            self._task = asyncio.get_running_loop().create_task(self._finish(reply, request))
            return

    async def _finish(self, reply: Awaitable[None], request: HttpRequest) -> None:
        try:
            await reply
        except asyncio.CancelledError:
            self.close()
            raise
        finally:
            self._task = None
        if not request.keep_alive:
            self.close()
        elif self._buf and not self.closed:
            self._serve()

    def _parse(self) -> HttpRequest | None:
        buf = self._buf
        end = buf.find(b"\r\n\r\n")
        if end < 0:
            if len(buf) > MAX_HEAD:
                raise BadRequest("request head too large")
            return None
        lines = bytes(buf[:end]).decode("latin-1").split("\r\n")
        try:
            method, target, version = lines[0].split(" ", 2)
        except ValueError:
            raise BadRequest(f"malformed request line {lines[0][:80]!r}") from None
        headers: dict[str, str] = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        start = end + 4
        if "chunked" in headers.get("transfer-encoding", "").lower():
            parsed = _dechunk(buf, start)
            if parsed is None:
                return None
            body, consumed = parsed
        else:
            try:
                length = int(headers.get("content-length", "0"))
            except ValueError:
                raise BadRequest("bad content-length") from None
            if length > MAX_BODY:
                raise BadRequest("request body too large")
            if len(buf) < start + length:
                return None
            body, consumed = bytes(buf[start:start + length]), start + length
        del buf[:consumed]
        connection = headers.get("connection", "").lower()
        keep_alive = connection != "close" if version == "HTTP/1.1" else connection == "keep-alive"
        return HttpRequest(method, target, headers, body, keep_alive)


def _dechunk(buf: bytearray, pos: int) -> tuple[bytes, int] | None:
    """Decode a chunked body starting at ``pos``; None until all of it has arrived."""
    body = bytearray()
    while True:
        line_end = buf.find(b"\r\n", pos)
        if line_end < 0:
            return None
        try:
            size = int(bytes(buf[pos:line_end]).split(b";")[0], 16)
        except ValueError:
            raise BadRequest("bad chunk size") from None
        pos = line_end + 2
        if size == 0:
            trailer_end = buf.find(b"\r\n\r\n", pos - 2)
            return (bytes(body), trailer_end + 4) if trailer_end >= 0 else None
        if len(buf) < pos + size + 2:
            return None
        body += buf[pos:pos + size]
        if len(body) > MAX_BODY:
            raise BadRequest("request body too large")
        pos += size + 2
