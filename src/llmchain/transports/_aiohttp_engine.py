"""The aiohttp engine: the same two calls as the lean ``_h1`` engine, through an
``aiohttp.ClientSession``, for what ``_h1`` does not do (HTTP(S) proxies from the environment).

Chosen with ``http_client = "aiohttp"``, and by default when ``trust_env`` is on. aiohttp's
exceptions are turned into llmchain's errors here, where they are met.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import aiohttp

from .._exceptions import CallError, TimeoutExceeded, TransportError

_CLIENT_ERRORS = (aiohttp.ClientError, OSError, asyncio.TimeoutError)


class AiohttpExchange:
    """An aiohttp response seen through the engine interface."""

    def __init__(self, resp: aiohttp.ClientResponse, engine: AiohttpEngine) -> None:
        self.resp, self.engine = resp, engine
        self.status = resp.status
        self.headers = {k.lower(): v for k, v in resp.headers.items()}
        self.content_type = resp.content_type

    async def read(self) -> bytes:
        try:
            return await self.resp.read()
        except _CLIENT_ERRORS as exc:
            raise self.engine.error(exc) from exc

    async def iter_chunks(self) -> AsyncIterator[bytes]:
        try:
            async for chunk in self.resp.content.iter_any():
                yield chunk
        except _CLIENT_ERRORS as exc:
            raise self.engine.error(exc, streaming=True) from exc


class AiohttpEngine:
    """One pooled ``aiohttp.ClientSession`` for one event loop."""

    def __init__(self, url: str, headers: dict[str, str], *, where: str, limit: int, limit_per_host: int,
                 connect_timeout: float | None, read_timeout: float | None, keepalive_s: float,
                 trust_env: bool) -> None:
        self.url, self.where = url, where
        self.connect_timeout, self.read_timeout = connect_timeout, read_timeout
        connector = aiohttp.TCPConnector(limit=limit, limit_per_host=limit_per_host,
                                         keepalive_timeout=keepalive_s, ttl_dns_cache=300)
        timeout = aiohttp.ClientTimeout(total=None, sock_connect=connect_timeout, sock_read=read_timeout)
        self.session = aiohttp.ClientSession(connector=connector, timeout=timeout, headers=headers,
                                             trust_env=trust_env, raise_for_status=False)

    @property
    def closed(self) -> bool:
        return self.session.closed

    async def post(self, payload: bytes, extra: dict[str, str] | None) -> tuple[int, dict[str, str], bytes]:
        try:
            async with self.session.post(self.url, data=payload, headers=extra) as resp:
                raw = await resp.read()
                return resp.status, {k.lower(): v for k, v in resp.headers.items()}, raw
        except _CLIENT_ERRORS as exc:
            raise self.error(exc) from exc

    @asynccontextmanager
    async def stream(self, payload: bytes, extra: dict[str, str] | None) -> AsyncIterator[AiohttpExchange]:
        try:
            resp = await self.session.post(self.url, data=payload, headers=extra)
        except _CLIENT_ERRORS as exc:
            raise self.error(exc) from exc
        try:
            yield AiohttpExchange(resp, self)
        finally:
            resp.release()

    async def close(self) -> None:
        await self.session.close()

    def error(self, exc: BaseException, streaming: bool = False) -> CallError:
        where = self.where
        if isinstance(exc, asyncio.TimeoutError):
            if isinstance(exc, aiohttp.ConnectionTimeoutError):
                return TimeoutExceeded(
                    f"{where}: connecting to {self.url} took over {self.connect_timeout}s",
                    phase="attempt", hint="is the server at base_url reachable?")
            return TimeoutExceeded(f"{where}: no data from the server for {self.read_timeout}s "
                                   f"({'mid-stream' if streaming else 'waiting for the answer'})",
                                   phase="attempt")
        if isinstance(exc, aiohttp.ClientConnectorError):
            return TransportError(f"{where}: cannot connect to {self.url}: {exc.os_error}",
                                  hint="is the server at base_url running and reachable?")
        if isinstance(exc, aiohttp.ServerDisconnectedError):
            return TransportError(f"{where}: the server closed the connection before the answer "
                                  "was complete")
        if isinstance(exc, aiohttp.ClientPayloadError):
            return TransportError(f"{where}: the server closed the connection before the answer "
                                  f"was complete ({exc})")
        if isinstance(exc, ConnectionResetError) or "reset by peer" in str(exc):
            return TransportError(f"{where}: connection reset by the server")
        if isinstance(exc, OSError):
            return TransportError(f"{where}: connection error ({exc})")
        return TransportError(f"{where}: HTTP client error ({type(exc).__name__}: {exc})")
