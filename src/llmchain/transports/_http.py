"""What the HTTP transports share: options, API keys, sending, streaming, and turning bad
answers into llmchain errors.

The HTTP client is an engine per event loop (``_sessions``): aiohttp (``_aiohttp_engine``) by
default, or httpx (``_httpx_engine``), either chosen with ``http_client = "httpx"`` or given as
the user's own ``httpx.AsyncClient`` (``OpenAITransport(options, http_client=client)``). Both
engines answer through the same interface, with the same size caps (``_bounds``), TLS and proxy
settings (``_tls``) and error outcomes (``_engine_errors``).
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import json
import os
import re
from collections.abc import AsyncIterator, Mapping
from importlib.metadata import PackageNotFoundError, version
from typing import TYPE_CHECKING, Any, ClassVar, Protocol

from .._call_checks import check_request_id
from .._clock import REAL_CLOCK, Clock
from .._exceptions import ConfigError, ProviderError, TransportError
from .._models import LLMRequest, LLMResponse
from .._redact import mask, register_secret
from .._text_buffer import TextBuffer
from ._bounds import ACCEPT_ENCODING, Caps
from ._http_errors import error_from_event, error_from_status, malformed
from ._http_options import HTTPOptions, check_header_name, check_header_value
from ._sessions import Engine, SessionPool
from ._sse import SSEDecoder
from ._tls import ssl_context

if TYPE_CHECKING:
    import httpx

__all__ = ["HTTPOptions", "HTTPTransport", "StreamState", "read_secret"]

try:
    USER_AGENT = f"llmchain/{version('llmchain')}"
except PackageNotFoundError:  # pragma: no cover - running from a source tree
    USER_AGENT = "llmchain"

#: Response headers copied into ``LLMResponse.headers``, besides the rate-limit ones. They are
#: kept raw (lower-case names): the rate_limit stage parses them only when it needs to.
KEEP_HEADERS = frozenset({"x-request-id", "request-id", "retry-after", "retry-after-ms",
                          "x-should-retry", "openai-processing-ms", "openai-model"})
_KEEP_PREFIXES = ("x-ratelimit-", "anthropic-ratelimit-")


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


#: How long the rest of a body may take after the stream's end marker. aiohttp has already
#: buffered what arrived; httpx reads the socket only when awaited, a loop turn or two later.
#: A server holding the connection open after the marker costs at most this, then it is closed.
_TAIL_GRACE_S = 0.01


async def _finish_if_arrived(chunks: AsyncIterator[bytes]) -> None:
    """Read the rest of a body only as far as it has (almost) arrived; never wait for more."""
    timeout = getattr(asyncio, "timeout", None)  # Python 3.11+; before: the connection closes
    if timeout is None:
        return
    with contextlib.suppress(Exception):  # TimeoutError: more was due; any error: not reusable
        async with timeout(_TAIL_GRACE_S):
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
    #: ``stream()`` adds its text deltas to the buffer the chain passes (held once, not twice).
    fills_stream_text: ClassVar[bool] = True
    Options: ClassVar[type[HTTPOptions]] = HTTPOptions
    path: ClassVar[str] = ""

    def __init__(self, options: HTTPOptions | None = None, *, clock: Clock = REAL_CLOCK,
                 http_client: httpx.AsyncClient | None = None) -> None:
        self.options = options if options is not None else self.Options()  # type: ignore[call-arg]
        self._clock = clock
        o = self.options
        self._api_key = read_secret(o.api_key_env, f"[transport] {self.kind}")
        secret = {h: read_secret(env, f"[transport] {self.kind} header {h}") or ""
                  for h, env in o.headers_env.items()}
        self._headers = {"user-agent": USER_AGENT, "content-type": "application/json",
                         "accept": "application/json", "accept-encoding": ACCEPT_ENCODING,
                         **o.headers, **self.auth_headers(), **secret}
        for name, value in self._headers.items():  # auth_header, version, secrets from the environment...
            check_header_name(name, f"[transport] {self.kind} header")
            check_header_value(value, f"[transport] {self.kind} header {name!r}")
        self.name = f"{self.kind}:{o.model}"
        self.url = o.base_url.rstrip("/") + self.path
        self._caps = Caps(self.name, o.max_head_bytes, o.max_body_bytes, o.max_decompressed_bytes)
        self._client = http_client
        if http_client is not None:
            _check_user_client(http_client, o, self.kind)
        self._ssl = ssl_context(o, f"[transport] {self.kind}")
        proxy: tuple[str | None, Any] = (None, None) if http_client is not None else _proxy_for(
            self.url, o, f"[transport] {self.kind}")  # a user's client brings its own
        self._proxy, self._proxy_auth = proxy
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

    async def stream(self, request: LLMRequest, text: TextBuffer | None = None,
                     ) -> AsyncIterator[str | LLMResponse]:
        """Text deltas as they arrive (and typed events: ``ToolCallDelta``), then the complete
        ``LLMResponse`` as the last item.

        The deltas are added to ``text`` (the chain passes its buffer: ``fills_stream_text``),
        and a state with a ``streamed`` attribute builds its answer from it rather than from a
        copy of its own, so the text is held once."""
        payload = json.dumps(self.encode(request, True)).encode()
        state = self.stream_state(request)
        buffer = text if text is not None else TextBuffer()
        if hasattr(state, "streamed"):
            state.streamed = buffer
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
                    delta = self._feed(state, event, data)
                    if delta:
                        buffer.append(delta)
                        yield delta
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
        if not header:
            return None
        request_id = request.request_id
        if not _SAFE_ID(request_id):  # checked at call entry too; here for requests built elsewhere
            check_request_id(request_id)
        return {header: request_id}

    def _new_engine(self, url: str | None = None) -> Engine:
        """An engine for ``url`` (default: the transport's endpoint)."""
        url = url or self.url
        o = self.options
        common: dict[str, Any] = dict(where=self.name, caps=self._caps, limit=o.max_connections,
                                      keepalive_s=o.keepalive_s, connect_timeout=o.connect_timeout_s,
                                      read_timeout=o.read_timeout_s, ssl_context=self._ssl)
        if self._client is not None:
            self._one_loop_only()
        if self._client is not None or o.http_client == "httpx":
            from ._httpx_engine import HttpxEngine  # httpx is imported by those who use it

            return HttpxEngine(url, self._headers, client=self._client, proxy=o.proxy,
                               trust_env=o.trust_env, **common)
        from ._aiohttp_engine import AiohttpEngine

        return AiohttpEngine(url, self._headers, limit_per_host=o.max_connections_per_host,
                             proxy=self._proxy, proxy_auth=self._proxy_auth, **common)

    def _one_loop_only(self) -> None:
        """A user's httpx client holds connections of the loop it was first used on."""
        current = asyncio.get_running_loop()
        if any(loop is not current and not loop.is_closed() and not engine.closed
               for loop, engine in self._pool.items()):
            raise ConfigError(
                f"{self.name}: the httpx.AsyncClient given as http_client is in use on another event "
                "loop; an httpx client works on one event loop only. Make all calls from one loop "
                "(every sync call runs on llmchain's one loop, whatever the thread), or give each "
                "loop its own transport")

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


_SAFE_ID = re.compile(r"^[\x21-\x7e]{1,200}$").match


def _check_user_client(client: Any, o: HTTPOptions, kind: str) -> None:
    """A user's httpx client carries its own network settings; options that would be ignored
    are refused rather than silently dropped."""
    import httpx

    if not isinstance(client, httpx.AsyncClient):
        raise ConfigError(f"[transport] {kind}: http_client must be an httpx.AsyncClient, got "
                          f"{type(client).__name__} (a sync httpx.Client cannot be used)")
    ignored = [name for name in ("proxy", "ca_bundle", "client_cert", "client_key")
               if getattr(o, name) is not None] + (["verify"] if not o.verify else [])
    if ignored:
        raise ConfigError(f"[transport] {kind}: options {ignored} do not apply with your own "
                          "httpx.AsyncClient: set them on the client (httpx.AsyncClient(proxy=..., "
                          "verify=ssl_context, ...)) instead")


def _proxy_for(url: str, o: HTTPOptions, where: str) -> tuple[str | None, Any]:
    """The aiohttp engine's proxy (and its credentials), resolved once: the explicit ``proxy``,
    else, with ``trust_env``, HTTP(S)_PROXY / ALL_PROXY / NO_PROXY as httpx and requests read
    them. A proxy from the environment that the engine cannot use fails the build."""
    if o.proxy is not None:
        return (o.proxy, None) if o.http_client == "aiohttp" else (None, None)
    if not o.trust_env:
        return None, None
    from aiohttp.helpers import get_env_proxy_for_url
    from yarl import URL

    try:
        proxy, auth = get_env_proxy_for_url(URL(url))
    except LookupError:
        return None, None
    scheme = proxy.scheme
    if o.http_client == "httpx":
        if scheme.startswith("socks") and importlib.util.find_spec("socksio") is None:
            raise ConfigError(f"{where}: the proxy from the environment uses {scheme}://, which httpx "
                              "can use only with socksio installed (pip install 'httpx[socks]'), "
                              "or set trust_env = false")
        return None, None  # httpx reads the environment itself (trust_env)
    if scheme not in ("http", "https"):
        raise ConfigError(f"{where}: the proxy from the environment ({proxy.with_password(None)}) "
                          f"uses {scheme}://, which the aiohttp engine cannot use; use an http:// proxy, "
                          'http_client = "httpx" (with socksio installed), or trust_env = false')
    return str(proxy), auth
