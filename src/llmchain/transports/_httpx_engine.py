"""The httpx engine: requests through an ``httpx.AsyncClient``, the user's own or one built from
the transport's options.

A user's client is used as it is, as the official SDKs use one: its proxies, certificates,
event hooks, mounts and transports all apply; llmchain adds its headers and per-request
timeouts, and never closes it (the user owns it). Either way the body is read raw
(``aiter_raw``) and decoded here, under the transport's size caps, and a request that failed on
a pooled connection before any byte of the answer is re-sent once (httpcore's trace events say
whether the request opened a connection).
"""

from __future__ import annotations

import errno
import ssl
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx

from .._exceptions import LLMChainError, TransportError
from ._bounds import BodyReader, Caps, malformed_http
from ._engine_errors import (
    cannot_connect,
    closed_early,
    connect_timed_out,
    proxy_refused,
    read_timed_out,
    reset,
)
from ._tls import certificate_error, is_cert_failure


class _Trace:
    """httpcore's trace callback: whether this request opened a connection of its own."""

    __slots__ = ("connected",)

    def __init__(self) -> None:
        self.connected = False

    async def __call__(self, name: str, info: dict[str, Any]) -> None:
        if name.startswith("connection.connect_tcp"):
            self.connected = True




class HttpxExchange:
    """An httpx response whose head has arrived, seen through the engine interface."""

    def __init__(self, resp: httpx.Response, headers: dict[str, str], engine: HttpxEngine) -> None:
        self.resp, self.headers, self.engine = resp, headers, engine
        self.status = resp.status_code
        self.content_type = headers.get("content-type", "").split(";", 1)[0].strip().lower()

    async def read(self) -> bytes:
        return await self.engine.body(self.resp, self.headers)

    async def iter_chunks(self) -> AsyncIterator[bytes]:
        reader, chunks = _body_source(self.resp, self.headers, self.engine.caps)
        try:
            async for chunk in chunks:
                out = reader.feed(chunk)
                if out:
                    yield out
            tail = reader.finish()
        except httpx.HTTPError as exc:
            raise self.engine.error(exc, streaming=True) from exc
        if tail:
            yield tail


class HttpxEngine:
    """An ``httpx.AsyncClient`` for one event loop (or the user's client, on every loop)."""

    def __init__(self, url: str, headers: dict[str, str], *, where: str, caps: Caps,
                 client: httpx.AsyncClient | None, limit: int, connect_timeout: float | None,
                 read_timeout: float | None, keepalive_s: float, ssl_context: ssl.SSLContext | None,
                 proxy: str | None, trust_env: bool) -> None:
        self.url, self.where, self.caps, self.headers = url, where, caps, headers
        self.connect_timeout, self.read_timeout = connect_timeout, read_timeout
        self.owned = client is None
        if client is None:
            limits = httpx.Limits(max_connections=limit or None, max_keepalive_connections=limit or None,
                                  keepalive_expiry=keepalive_s)
            client = httpx.AsyncClient(limits=limits, verify=ssl_context if ssl_context is not None else True,
                                       proxy=proxy, trust_env=trust_env, follow_redirects=False)
        self.client = client
        self.timeout = httpx.Timeout(connect=connect_timeout, read=read_timeout, write=None, pool=None)
        self._closed = False

    @property
    def closed(self) -> bool:
        return self._closed or self.client.is_closed

    async def _send(self, payload: bytes, extra: dict[str, str] | None) -> httpx.Response:
        headers = {**self.headers, **extra} if extra else self.headers
        resent = False
        while True:
            trace = _Trace()
            request = self.client.build_request("POST", self.url, content=payload, headers=headers,
                                                timeout=self.timeout, extensions={"trace": trace})
            try:
                return await self.client.send(request, stream=True)
            except httpx.HTTPError as exc:
                if resent or trace.connected or not _stale(exc):
                    raise self.error(exc) from exc
                resent = True  # a pooled connection the server had closed: once, on another

    async def post(self, payload: bytes, extra: dict[str, str] | None) -> tuple[int, dict[str, str], bytes]:
        resp = await self._send(payload, extra)
        try:
            headers = self.caps.head_headers(resp.headers.raw)
            return resp.status_code, headers, await self.body(resp, headers)
        finally:
            await resp.aclose()

    async def body(self, resp: httpx.Response, headers: dict[str, str]) -> bytes:
        reader, chunks = _body_source(resp, headers, self.caps)
        try:
            parts = [reader.feed(chunk) async for chunk in chunks]
        except httpx.HTTPError as exc:
            raise self.error(exc) from exc
        parts.append(reader.finish())
        return b"".join(parts)

    @asynccontextmanager
    async def stream(self, payload: bytes, extra: dict[str, str] | None) -> AsyncIterator[HttpxExchange]:
        resp = await self._send(payload, extra)
        try:  # closing an answer not read to the end closes its connection
            yield HttpxExchange(resp, self.caps.head_headers(resp.headers.raw), self)
        finally:
            await resp.aclose()

    async def close(self) -> None:
        self._closed = True
        if self.owned:
            await self.client.aclose()

    def error(self, exc: BaseException, streaming: bool = False) -> LLMChainError:
        return httpx_error(exc, where=self.where, url=self.url, caps=self.caps,
                           connect_timeout=self.connect_timeout, read_timeout=self.read_timeout,
                           streaming=streaming)


def _body_source(resp: httpx.Response, headers: dict[str, str],
                 caps: Caps) -> tuple[BodyReader, AsyncIterator[bytes]]:
    """The body's raw bytes and their reader; a body a user's transport already read (an
    ``httpx.MockTransport``, say) is only available decoded, and is counted as it is."""
    if resp.is_stream_consumed:
        return BodyReader(caps, ""), _once(resp.content)
    return BodyReader(caps, headers.get("content-encoding", "")), resp.aiter_raw()


async def _once(data: bytes) -> AsyncIterator[bytes]:
    yield data


def _stale(exc: BaseException) -> bool:
    if isinstance(exc, httpx.RemoteProtocolError):
        return "without sending a response" in str(exc)
    return isinstance(exc, (httpx.ReadError, httpx.WriteError)) and _is_reset(exc)


def _is_reset(exc: BaseException) -> bool:
    cur: BaseException | None = exc
    for _ in range(8):
        if cur is None:
            return False
        if isinstance(cur, OSError) and cur.errno in (errno.ECONNRESET, errno.EPIPE):
            return True
        if "reset by peer" in str(cur) or "Broken pipe" in str(cur):
            return True
        cur = cur.__cause__ or cur.__context__
    return False


def httpx_error(exc: BaseException, *, where: str, url: str, caps: Caps, connect_timeout: float | None,
                read_timeout: float | None, streaming: bool = False) -> LLMChainError:
    """The llmchain error for an httpx failure (the same outcomes as the aiohttp engine's)."""
    if isinstance(exc, LLMChainError):
        return exc
    if isinstance(exc, httpx.ConnectTimeout):
        return connect_timed_out(where, url, connect_timeout)
    if isinstance(exc, httpx.TimeoutException):
        return read_timed_out(where, read_timeout, streaming)
    if is_cert_failure(exc):
        return certificate_error(where, url, exc)
    if isinstance(exc, httpx.ProxyError):
        return proxy_refused(where, exc)
    if isinstance(exc, httpx.ConnectError):
        return cannot_connect(where, url, exc)
    if isinstance(exc, httpx.RemoteProtocolError):
        text = str(exc)
        if "without sending" in text or "peer closed" in text:
            return closed_early(where, "" if "without sending" in text else text)
        if "too long" in text.lower() or "too large" in text.lower() or "too big" in text.lower():
            return caps.too_large("max_head_bytes", caps.head, "the response head")
        return malformed_http(where, text)
    if isinstance(exc, (httpx.ReadError, httpx.WriteError)):
        return reset(where) if _is_reset(exc) else closed_early(where, str(exc))
    if isinstance(exc, (httpx.UnsupportedProtocol, httpx.InvalidURL)):
        return TransportError(f"{where}: {exc}", retryable=False, hint="check base_url")
    return TransportError(f"{where}: HTTP client error ({type(exc).__name__}: {exc})")
