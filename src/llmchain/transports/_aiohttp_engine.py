"""The default HTTP engine: an ``aiohttp.ClientSession`` per event loop (aiohttp parses with
llhttp, which refuses conflicting Content-Length headers, bad chunk sizes and the like).

Kept lean for the per-request path: headers pre-built on the session, the proxy resolved once
(not per request from the environment), no trace hooks, the body read in one call when its
length is known. What aiohttp does not do for a client at a trust boundary is done here: the
answer's size caps and our own decoding of the compressions we asked for (``_bounds``), and one
re-send of a request whose pooled connection turned out to be closed before any byte of the
answer came back (safe: the request carries its idempotency key). aiohttp's exceptions become
llmchain's errors where they are met (``_engine_errors``).
"""

from __future__ import annotations

import asyncio
import ssl
import weakref
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from contextvars import ContextVar
from typing import Any

import aiohttp
from yarl import URL

from .._exceptions import LLMChainError
from ._bounds import BodyReader, Caps
from ._engine_errors import aiohttp_error, is_stale_aiohttp

_CLIENT_ERRORS = (aiohttp.ClientError, OSError, asyncio.TimeoutError)
#: Whether the current request's connection came from the pool (set by ``_Connector``).
_REUSED: ContextVar[bool] = ContextVar("llmchain_reused_connection", default=False)


class _Connector(aiohttp.TCPConnector):
    """Notes, for the request being connected, whether its connection was already used."""

    def __init__(self, **kw: Any) -> None:
        super().__init__(**kw)
        self._seen: weakref.WeakSet[Any] = weakref.WeakSet()

    async def connect(self, req: Any, traces: Any, timeout: Any) -> Any:
        conn = await super().connect(req, traces, timeout)
        protocol = conn.protocol
        seen = self._seen
        _REUSED.set(protocol in seen)
        seen.add(protocol)
        return conn




class AiohttpExchange:
    """An aiohttp response whose head has arrived, seen through the engine interface."""

    def __init__(self, resp: aiohttp.ClientResponse, headers: dict[str, str], engine: AiohttpEngine) -> None:
        self.resp, self.engine, self.headers = resp, engine, headers
        self.status = resp.status
        self.content_type = headers.get("content-type", "").split(";", 1)[0].strip().lower()

    async def read(self) -> bytes:
        return await self.engine.body(self.resp, self.headers)

    async def iter_chunks(self) -> AsyncIterator[bytes]:
        reader = BodyReader(self.engine.caps, self.headers.get("content-encoding", ""))
        try:
            async for chunk in self.resp.content.iter_any():
                out = reader.feed(chunk)
                if out:
                    yield out
            tail = reader.finish()
        except _CLIENT_ERRORS as exc:
            raise self.engine.error(exc, streaming=True) from exc
        if tail:
            yield tail


class AiohttpEngine:
    """One pooled ``aiohttp.ClientSession`` for one event loop."""

    def __init__(self, url: str, headers: dict[str, str], *, where: str, caps: Caps, limit: int,
                 limit_per_host: int, connect_timeout: float | None, read_timeout: float | None,
                 keepalive_s: float, ssl_context: ssl.SSLContext | None, proxy: str | None,
                 proxy_auth: aiohttp.BasicAuth | None) -> None:
        self.url, self.where, self.caps = url, where, caps
        self._url = URL(url)  # parsed once, not by aiohttp on every request
        self.connect_timeout, self.read_timeout = connect_timeout, read_timeout
        self.proxy, self.proxy_auth = proxy, proxy_auth
        connector = _Connector(limit=limit, limit_per_host=limit_per_host, keepalive_timeout=keepalive_s,
                               ttl_dns_cache=300, ssl=ssl_context if ssl_context is not None else True)
        timeout = aiohttp.ClientTimeout(total=None, sock_connect=connect_timeout, sock_read=read_timeout)
        # the proxy is resolved by the transport (once), so the session does not read the environment
        self.session = aiohttp.ClientSession(
            connector=connector, timeout=timeout, headers=headers, trust_env=False,
            raise_for_status=False, auto_decompress=False, max_line_size=caps.head,
            max_field_size=caps.head, max_headers=256)

    @property
    def closed(self) -> bool:
        return self.session.closed

    async def _send(self, payload: bytes, extra: dict[str, str] | None) -> aiohttp.ClientResponse:
        resent = False
        while True:  # (_REUSED is set by every connect: no reset needed before one)
            try:
                return await self.session.post(self._url, data=payload, headers=extra, proxy=self.proxy,
                                               proxy_auth=self.proxy_auth)
            except _CLIENT_ERRORS as exc:
                if resent or not (_REUSED.get() and is_stale_aiohttp(exc)):
                    raise self.error(exc) from exc
                resent = True  # a pooled connection the server had closed: once, on another

    async def post(self, payload: bytes, extra: dict[str, str] | None) -> tuple[int, dict[str, str], bytes]:
        resp = await self._send(payload, extra)
        try:
            headers = self.caps.head_headers(resp.raw_headers)
            return resp.status, headers, await self.body(resp, headers)
        finally:
            resp.release()

    async def body(self, resp: aiohttp.ClientResponse, headers: dict[str, str]) -> bytes:
        encoding = headers.get("content-encoding", "")
        try:
            if not encoding and "content-length" in headers:  # the usual answer: one read
                return await resp.read()
            reader = BodyReader(self.caps, encoding)
            parts = [reader.feed(chunk) async for chunk in resp.content.iter_any()]
            parts.append(reader.finish())
            return b"".join(parts)
        except _CLIENT_ERRORS as exc:
            raise self.error(exc) from exc

    @asynccontextmanager
    async def stream(self, payload: bytes, extra: dict[str, str] | None) -> AsyncIterator[AiohttpExchange]:
        resp = await self._send(payload, extra)
        try:  # release() closes a connection whose answer was not read to the end
            yield AiohttpExchange(resp, self.caps.head_headers(resp.raw_headers), self)
        finally:
            resp.release()

    async def close(self) -> None:
        await self.session.close()

    def error(self, exc: BaseException, streaming: bool = False) -> LLMChainError:
        return aiohttp_error(exc, where=self.where, url=self.url, caps=self.caps,
                             connect_timeout=self.connect_timeout, read_timeout=self.read_timeout,
                             streaming=streaming)
