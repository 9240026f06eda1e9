"""What the HTTP transports share: options, API keys, sending, streaming, and turning bad
answers into llmchain errors.

The HTTP client is an engine per event loop (``_sessions``): llmchain's lean HTTP/1.1 client
(``_h1``) by default, aiohttp (``_aiohttp_engine``) for proxies. Why not httpx: measured against
the same loopback server (docs/benchmarks.md), httpx's async pool and httpx2 serve a fraction
of aiohttp's requests per second at concurrency 100, and aiohttp several times the client CPU
per request of ``_h1``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
from collections.abc import AsyncIterator, Mapping
from importlib.metadata import PackageNotFoundError, version
from typing import Any, ClassVar, Literal, Protocol

from pydantic import BaseModel, ConfigDict, Field, field_validator

from .._clock import REAL_CLOCK, Clock
from .._exceptions import ConfigError, ProviderError, TransportError
from .._models import LLMRequest, LLMResponse
from .._redact import mask, register_secret
from ._h1_pool import H1Pool
from ._http_errors import error_from_event, error_from_status, malformed
from ._sessions import Engine, SessionPool
from ._sse import SSEDecoder

try:
    USER_AGENT = f"llmchain/{version('llmchain')}"
except PackageNotFoundError:  # pragma: no cover - running from a source tree
    USER_AGENT = "llmchain"

#: Response headers copied into ``LLMResponse.headers``, besides the rate-limit ones. They are
#: kept raw (lower-case names): the rate_limit stage parses them only when it needs to.
KEEP_HEADERS = frozenset({"x-request-id", "request-id", "retry-after", "retry-after-ms",
                          "x-should-retry", "openai-processing-ms", "openai-model"})
_KEEP_PREFIXES = ("x-ratelimit-", "anthropic-ratelimit-")
_SECRET_HEADERS = frozenset({"authorization", "proxy-authorization", "x-api-key", "api-key",
                             "cookie", "openai-api-key", "anthropic-api-key"})


class HTTPOptions(BaseModel):
    """Options every HTTP transport accepts (each transport adds its own)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    base_url: str
    model: str
    api_key_env: str = Field("", description='Variable holding the API key; "" for none (local servers).')
    headers: dict[str, str] = Field(default_factory=dict, description="Extra request headers (no secrets).")
    headers_env: dict[str, str] = Field(
        default_factory=dict, description="Secret headers: header name → variable holding its value.")
    connect_timeout_s: float | None = Field(10.0, gt=0, description="Limit on opening a connection.")
    read_timeout_s: float | None = Field(
        None, gt=0, description="Longest silence while reading (None: the call's deadline bounds it).")
    max_connections: int = Field(256, ge=0, description="Connection pool size per event loop; 0 = no limit.")
    max_connections_per_host: int = Field(0, ge=0, description="0 = no per-host limit (aiohttp only).")
    keepalive_s: float = Field(30.0, gt=0, description="How long an idle pooled connection is kept.")
    trust_env: bool = Field(False, description="Use HTTP(S)_PROXY / NO_PROXY from the environment.")
    http_client: Literal["auto", "h1", "aiohttp"] = Field(
        "auto", description='"h1": llmchain\'s lean HTTP/1.1 client; "aiohttp": for proxies; '
                            '"auto": h1 unless trust_env is on.')
    idempotency_header: str = Field(
        "idempotency-key",
        description='Header carrying the request id (the same on every retry); "" for none.')

    @field_validator("headers")
    @classmethod
    def _no_secrets(cls, value: dict[str, str]) -> dict[str, str]:
        secret = sorted(h for h in value if h.lower() in _SECRET_HEADERS)
        if secret:
            raise ValueError(f"header(s) {secret} carry secrets: name the variable holding each "
                             "in headers_env (or api_key_env) instead")
        return value


def read_secret(env: str, what: str) -> str | None:
    """The value of ``env`` (registered for redaction), None when ``env`` is empty."""
    if not env:
        return None
    value = os.environ.get(env, "").strip()
    if not value:
        raise ConfigError(f"{what}: environment variable {env} is not set. Export it, or set "
                          f'api_key_env = "" for a server that needs no key (vLLM, Ollama...)')
    register_secret(value)
    return value


async def _finish_if_arrived(chunks: AsyncIterator[bytes]) -> None:
    """Read the rest of a body only as far as it has already arrived; never wait for more."""
    timeout = getattr(asyncio, "timeout", None)  # Python 3.11+; before: the connection closes
    if timeout is None:
        return
    with contextlib.suppress(Exception):  # TimeoutError: more was due; any error: not reusable
        async with timeout(0):  # fires at the next loop turn: only what needs no waiting runs
            async for _ in chunks:
                pass


def _keep(headers: Mapping[str, str]) -> dict[str, str]:
    """The response headers worth keeping (engines give names in lower case)."""
    return {name: value for name, value in headers.items()
            if name in KEEP_HEADERS or name.startswith(_KEEP_PREFIXES)}


class StreamState(Protocol):
    """Per-stream parser a transport supplies: events in, text deltas out."""

    done: bool

    def feed(self, event: str | None, data: str) -> str | None: ...

    def finished(self) -> bool: ...

    def tail(self) -> str | None: ...

    def response(self, headers: dict[str, str]) -> LLMResponse: ...


class HTTPTransport:
    """Base of the HTTP transports; subclasses provide the wire format."""

    kind: ClassVar[str] = "http"
    Options: ClassVar[type[HTTPOptions]] = HTTPOptions
    path: ClassVar[str] = ""

    def __init__(self, options: HTTPOptions | None = None, *, clock: Clock = REAL_CLOCK) -> None:
        self.options = options if options is not None else self.Options()  # type: ignore[call-arg]
        self._clock = clock
        o = self.options
        self._api_key = read_secret(o.api_key_env, f"[transport] {self.kind}")
        secret = {h: read_secret(env, f"[transport] {self.kind} header {h}") or ""
                  for h, env in o.headers_env.items()}
        self._headers = {"user-agent": USER_AGENT, "content-type": "application/json",
                         "accept": "application/json", **o.headers, **self.auth_headers(), **secret}
        self.name = f"{self.kind}:{o.model}"
        self.url = o.base_url.rstrip("/") + self.path
        self._pool: SessionPool[Engine] = SessionPool(self._new_engine)

    # -- what subclasses provide ---------------------------------------------------------------

    def auth_headers(self) -> dict[str, str]:
        raise NotImplementedError

    def encode(self, request: LLMRequest, stream: bool) -> dict[str, Any]:
        raise NotImplementedError

    def decode(self, data: Any, request: LLMRequest, headers: dict[str, str]) -> LLMResponse:
        raise NotImplementedError

    def stream_state(self, request: LLMRequest) -> StreamState:
        raise NotImplementedError

    # -- the Transport protocol ---------------------------------------------------------------

    def identity(self) -> dict[str, Any]:
        return {"kind": self.kind, "base_url": self.options.base_url, "model": self.options.model}

    async def send(self, request: LLMRequest) -> LLMResponse:
        payload = json.dumps(self.encode(request, False)).encode()
        status, all_headers, raw = await self._pool.get().post(payload, self._ids(request))
        headers = _keep(all_headers)
        if status >= 300:
            raise self._status_error(status, raw, headers)
        try:
            data = json.loads(raw)
        except ValueError as exc:
            raise malformed(self.name, status, raw, f"the body is not JSON ({exc})") from None
        try:
            return self.decode(data, request, headers)
        except (KeyError, IndexError, TypeError, AttributeError, ValueError) as exc:
            raise malformed(self.name, status, raw,
                            f"JSON of the wrong shape ({type(exc).__name__}: {exc})") from None

    async def stream(self, request: LLMRequest) -> AsyncIterator[str | LLMResponse]:
        """Text deltas as they arrive (and typed events: ``ToolCallDelta``), then the complete
        ``LLMResponse`` as the last item."""
        payload = json.dumps(self.encode(request, True)).encode()
        state = self.stream_state(request)
        async with self._pool.get().stream(payload, self._ids(request)) as answer:
            headers = _keep(answer.headers)
            if answer.status >= 300:
                raise self._status_error(answer.status, await answer.read(), headers)
            if answer.content_type != "text/event-stream":
                raise self._not_a_stream(answer.status, answer.content_type, await answer.read())
            decoder = SSEDecoder()
            chunks = answer.iter_chunks()
            async for chunk in chunks:
                for event, data in decoder.feed(chunk):
                    text = self._feed(state, event, data)
                    if text:
                        yield text
                    pending = getattr(state, "events", None)  # typed events (tool-call deltas)
                    if pending:
                        for item in pending:
                            yield item
                        pending.clear()
                    if state.done:
                        break
                if state.done:
                    # the provider's end marker ([DONE], message_stop): the answer is complete.
                    # Stop reading now (a server may keep the connection open after it): the
                    # body's end is taken only if it has already arrived, so the connection is
                    # reused; else leaving the block closes it.
                    await _finish_if_arrived(chunks)
                    break
        if not state.finished():
            raise TransportError(f"{self.name}: the stream ended before the answer was complete",
                                 hint="the connection was cut; a retry usually succeeds")
        tail = self._tail(state)
        if tail:
            yield tail
        yield state.response(headers)

    async def aclose(self) -> None:
        await self._pool.aclose()

    # -- internals ----------------------------------------------------------------------------

    def _ids(self, request: LLMRequest) -> dict[str, str] | None:
        # the request id is kept across retries, so a provider can drop a duplicate
        header = self.options.idempotency_header
        return {header: request.request_id} if header else None

    def _new_engine(self, url: str | None = None) -> Engine:
        """An engine for ``url`` (default: the transport's endpoint)."""
        url = url or self.url
        o = self.options
        common: dict[str, Any] = dict(where=self.name, limit=o.max_connections, keepalive_s=o.keepalive_s,
                                      connect_timeout=o.connect_timeout_s, read_timeout=o.read_timeout_s)
        if o.http_client == "aiohttp" or (o.http_client == "auto" and o.trust_env):
            from ._aiohttp_engine import AiohttpEngine  # aiohttp is imported by those who use it

            return AiohttpEngine(url, self._headers, limit_per_host=o.max_connections_per_host,
                                 trust_env=o.trust_env, **common)
        return H1Pool(url, self._headers, **common)

    def _feed(self, state: StreamState, event: str | None, data: str) -> str | None:
        try:
            return state.feed(event, data)
        except (KeyError, IndexError, TypeError, AttributeError, ValueError) as exc:
            raise malformed(self.name, 200, data.encode(),
                            f"a stream event of the wrong shape ({type(exc).__name__}: {exc})") from None

    def _tail(self, state: StreamState) -> str | None:
        try:
            return state.tail()
        except ValueError as exc:
            raise malformed(self.name, 200, b"", f"the streamed answer does not decode ({exc})") from None

    def _status_error(self, status: int, raw: bytes, headers: dict[str, str]) -> ProviderError:
        o = self.options
        return error_from_status(status, raw, headers, where=self.name, key_env=o.api_key_env,
                                 base_url=o.base_url, model=o.model, now_wall=self._clock.wall())

    def _not_a_stream(self, status: int, content_type: str, raw: bytes) -> ProviderError:
        try:
            data = json.loads(raw)
        except ValueError:
            data = None
        if isinstance(data, dict) and "error" in data:
            return error_from_event(data, raw.decode("utf-8", "replace"), where=self.name)
        got = content_type or "no content type"
        return malformed(self.name, status, raw, f"expected an event stream, got {got}")

    def __repr__(self) -> str:
        o = self.options
        key = mask(self._api_key) if o.api_key_env else "<none>"
        return (f"{type(self).__name__}(base_url={o.base_url!r}, model={o.model!r}, "
                f"api_key_env={o.api_key_env!r}, api_key={key}, sessions={len(self._pool)})")
