"""From HTTP answers to llmchain errors: status mapping, the provider's message, a hint.

408/409/429/5xx (529 included) are retryable, other statuses not; ``x-should-retry`` overrides
the status either way. The wait the server asks for (``retry-after-ms``, ``Retry-After`` as
seconds or an HTTP date) and its rate-limit headers (``x-ratelimit-*``,
``anthropic-ratelimit-*``) are parsed by ``llmchain.policies.headers``, the one parser the
rate_limit stage uses too. A body that is not JSON, or JSON of the wrong shape, is an error
carrying a redacted, trimmed excerpt.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from .._exceptions import ProviderError, RateLimited
from .._redact import redact, trim
from ..policies.headers import parse_retry_after, rate_limit_hints

RETRYABLE_STATUS = frozenset({408, 409, 429})
_REASONS = {400: "Bad Request", 401: "Unauthorized", 403: "Forbidden", 404: "Not Found",
            408: "Request Timeout", 409: "Conflict", 413: "Payload Too Large",
            422: "Unprocessable Entity", 429: "Too Many Requests", 500: "Internal Server Error",
            502: "Bad Gateway", 503: "Service Unavailable", 504: "Gateway Timeout",
            529: "Overloaded"}


def excerpt(raw: bytes, limit: int = 300) -> str:
    """A redacted, trimmed text excerpt of a body, for error messages."""
    return trim(redact(raw[: limit * 4].decode("utf-8", "replace").strip()), limit)


def provider_message(data: Any) -> tuple[str | None, str | None]:
    """(message, error type) from either provider's error body, or (None, None)."""
    if not isinstance(data, dict):
        return None, None
    error = data.get("error", data)
    if isinstance(error, str):
        return error, None
    if not isinstance(error, dict):
        return None, None
    message = error.get("message") or error.get("detail")
    kind = error.get("type") or error.get("code")
    return (str(message) if message else None), (str(kind) if kind else None)


def hint_for(status: int, *, key_env: str, base_url: str, model: str) -> str | None:
    if status == 401:
        if key_env:
            return (f"check {key_env}: the API key it holds may be mistyped, revoked or "
                    "for another provider")
        return "the server wants an API key: set api_key_env to the variable that holds it"
    if status == 403:
        return (f"the key may not use model {model!r} or this endpoint "
                "(check the project/organisation and the key's permissions)")
    if status == 404:
        return f"check base_url ({base_url}) and the model name ({model!r})"
    if status in (400, 413, 422):
        return "the provider rejected the request as sent: see its message (parameters, model limits, schema)"
    if status == 429:
        return ("the provider is rate limiting: lower concurrency or add a rate_limit stage; "
                "the retry stage waits what retry-after asks")
    if status >= 500 or status in (408, 409):
        return ("a transient provider failure: usually passes; if it persists, the provider is "
                "degraded (check its status page) or add a fallback stage")
    return None


def error_from_status(
    status: int, raw: bytes, headers: Mapping[str, str], *, where: str, key_env: str,
    base_url: str, model: str, now_wall: float,
) -> ProviderError:
    """The typed error for an error status, with the provider's own message when it gave one."""
    try:
        message, kind = provider_message(json.loads(raw)) if raw else (None, None)
    except ValueError:
        message, kind = None, None
    text = message or excerpt(raw, 200) or "(empty body)"
    label = f" ({kind})" if kind else ""
    retryable = status in RETRYABLE_STATUS or status >= 500
    should = headers.get("x-should-retry")
    if should in ("true", "false"):
        retryable = should == "true"
    cls = RateLimited if status == 429 else ProviderError
    return cls(
        f"{where}: HTTP {status} {_REASONS.get(status, '')}{label}: {text}".replace("  ", " "),
        status_code=status, body=excerpt(raw, 500) if raw else None, retryable=retryable,
        retry_after=parse_retry_after(headers, now_wall),
        headers=headers, rate_limit=rate_limit_hints(headers, now_wall) or None,
        hint=hint_for(status, key_env=key_env, base_url=base_url, model=model),
    )


#: Error types that arrive in a body (a 200 stream's error event) → the status they stand for.
ERROR_TYPE_STATUS = {
    "invalid_request_error": 400, "authentication_error": 401, "permission_error": 403,
    "not_found_error": 404, "request_too_large": 413, "rate_limit_error": 429,
    "rate_limit_exceeded": 429, "api_error": 500, "server_error": 500, "timeout_error": 504,
    "overloaded_error": 529,
}


def error_from_event(data: Any, raw: str, *, where: str, default_status: int = 500) -> ProviderError:
    """The typed error for an error object met inside a 200 body or stream (e.g. overloaded)."""
    message, kind = provider_message(data)
    status = ERROR_TYPE_STATUS.get(kind or "", default_status)
    cls = RateLimited if status == 429 else ProviderError
    return cls(
        f"{where}: error event in the response ({kind or 'unknown'}): {message or trim(raw, 200)}",
        status_code=status, body=trim(redact(raw), 500),
        retryable=status in RETRYABLE_STATUS or status >= 500,
        hint=hint_for(status, key_env="", base_url="", model="") if status >= 500 else None,
    )


def malformed(where: str, status: int, raw: bytes, problem: str, *, hint: str | None = None) -> ProviderError:
    """A 2xx answer that cannot be read: not JSON, or JSON of the wrong shape."""
    return ProviderError(
        f"{where}: unreadable response (HTTP {status}): {problem}",
        status_code=status, body=excerpt(raw, 500) or "<empty body>", retryable=False,
        hint=hint or "check that base_url points at an API of this transport's kind",
    )
