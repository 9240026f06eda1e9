"""What a failed exchange means, the same words on every engine: each engine maps its own
exceptions onto these few outcomes.

| outcome | error | retryable |
|---|---|---|
| cannot connect / reset / closed before the answer was complete | ``TransportError`` | yes |
| no byte within connect_timeout_s / read_timeout_s | ``TimeoutExceeded("attempt")`` | yes |
| TLS certificate not trusted | ``CertificateError`` | no |
| head over ``max_head_bytes`` | ``ResponseTooLarge`` | no |
| an answer that breaks HTTP/1.1 (conflicting Content-Length, bad chunk size...) | ``ProviderError`` | no |
| the proxy refused the request | ``TransportError`` | no |
"""

from __future__ import annotations

import asyncio
import errno

import aiohttp

from .._exceptions import CallError, LLMChainError, TimeoutExceeded, TransportError
from ._bounds import Caps, malformed_http
from ._tls import certificate_error, is_cert_failure

_RESET = (errno.ECONNRESET, errno.EPIPE)


def connect_timed_out(where: str, url: str, seconds: float | None) -> TimeoutExceeded:
    return TimeoutExceeded(f"{where}: connecting to {url} took over {seconds}s", phase="attempt",
                           hint="is the server at base_url reachable?")


def read_timed_out(where: str, seconds: float | None, streaming: bool) -> TimeoutExceeded:
    return TimeoutExceeded(f"{where}: no data from the server for {seconds}s "
                           f"({'mid-stream' if streaming else 'waiting for the answer'})", phase="attempt")


def cannot_connect(where: str, url: str, detail: object) -> TransportError:
    return TransportError(f"{where}: cannot connect to {url}: {detail}",
                          hint="is the server at base_url running and reachable (and the proxy, if any)?")


def closed_early(where: str, detail: str = "") -> TransportError:
    more = f" ({detail})" if detail else ""
    return TransportError(f"{where}: the server closed the connection before the answer was complete{more}")


def reset(where: str) -> TransportError:
    return TransportError(f"{where}: connection reset by the server")


def proxy_refused(where: str, detail: object) -> TransportError:
    return TransportError(f"{where}: the proxy refused the request ({detail})", retryable=False,
                          hint="check the proxy settings (proxy, HTTP(S)_PROXY, NO_PROXY) and its "
                               "credentials")


def _chain(exc: BaseException) -> list[BaseException]:
    out: list[BaseException] = []
    cur: BaseException | None = exc
    while cur is not None and len(out) < 8:
        out.append(cur)
        cur = cur.__cause__ or cur.__context__
    return out


def is_stale_aiohttp(exc: BaseException) -> bool:
    """A request that died on a pooled connection before any byte of the answer."""
    if isinstance(exc, aiohttp.ServerDisconnectedError):
        return True
    return isinstance(exc, aiohttp.ClientOSError) and exc.errno in _RESET


def aiohttp_error(exc: BaseException, *, where: str, url: str, caps: Caps, connect_timeout: float | None,
                  read_timeout: float | None, streaming: bool = False) -> LLMChainError:
    """The llmchain error for an aiohttp (or OS) failure."""
    if isinstance(exc, LLMChainError):
        return exc
    if isinstance(exc, asyncio.TimeoutError):
        if isinstance(exc, aiohttp.ConnectionTimeoutError):
            return connect_timed_out(where, url, connect_timeout)
        return read_timed_out(where, read_timeout, streaming)
    if isinstance(exc, aiohttp.ClientConnectorCertificateError) or is_cert_failure(exc):
        return certificate_error(where, url, getattr(exc, "certificate_error", exc))
    if isinstance(exc, aiohttp.ClientHttpProxyError):
        return proxy_refused(where, f"HTTP {exc.status} {exc.message}")
    if isinstance(exc, aiohttp.ClientProxyConnectionError):
        return cannot_connect(where, f"the proxy for {url}", exc.os_error)
    if isinstance(exc, aiohttp.ClientConnectorError):
        return cannot_connect(where, url, exc.os_error)
    if isinstance(exc, aiohttp.ServerDisconnectedError):
        return closed_early(where)
    if isinstance(exc, aiohttp.ClientResponseError):  # the head did not parse
        return _bad_head(exc, where, caps)
    if isinstance(exc, aiohttp.ClientPayloadError):
        text = str(exc)
        if "Invalid" in text or "invalid" in text or "Unexpected" in text:
            return malformed_http(where, f"bad body framing: {_cause_text(exc)}")
        return closed_early(where, text)
    if isinstance(exc, OSError) and (exc.errno in _RESET or "reset by peer" in str(exc)):
        return reset(where)
    if isinstance(exc, OSError):
        return TransportError(f"{where}: connection error ({exc})")
    return TransportError(f"{where}: HTTP client error ({type(exc).__name__}: {exc})")


def _cause_text(exc: BaseException) -> str:
    return "; ".join(str(e) for e in _chain(exc)[1:] if str(e)) or str(exc)


def _bad_head(exc: aiohttp.ClientResponseError, where: str, caps: Caps) -> CallError:
    from aiohttp.http_exceptions import LineTooLong

    causes = _chain(exc)
    text = " ".join(str(getattr(e, "message", "") or e) for e in causes)
    if any(isinstance(e, LineTooLong) for e in causes) or "Too many headers" in text:
        return caps.too_large("max_head_bytes", caps.head, "the response head")
    return malformed_http(where, exc.message or text)
