"""Reading what providers say about waiting: Retry-After and rate-limit headers.

* ``retry-after-ms`` (milliseconds; OpenAI, Anthropic and Azure send it) wins over
  ``retry-after``, which is seconds or an HTTP date (RFC 9110 §10.2.3).
* OpenAI: ``x-ratelimit-{limit,remaining,reset}-{requests,tokens}``, resets as Go durations
  (``20ms``, ``1s``, ``6m0s``).
* Anthropic: ``anthropic-ratelimit-{requests,tokens}-{limit,remaining,reset}``, resets as
  RFC 3339 instants.

Header names are expected in lower case (transports store them so); values that do not parse
are ignored rather than trusted.
"""

from __future__ import annotations

import email.utils
import math
import re
from collections.abc import Mapping
from datetime import datetime

# The type is the core's (ProviderError carries it); parsing it from headers is this module's.
from .._attempt import RateLimitHints

__all__ = ["RateLimitHints", "parse_duration", "parse_retry_after", "rate_limit_hints"]

_GO_PART = re.compile(r"(\d+(?:\.\d+)?)(h|ms|us|µs|ns|m|s)")
_GO_SCALE = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 1e-3, "us": 1e-6, "µs": 1e-6, "ns": 1e-9}


def _number(text: str) -> float | None:
    try:
        value = float(text)
    except ValueError:
        return None
    return value if math.isfinite(value) and value >= 0 else None


def parse_duration(text: str, wall: float | None = None) -> float | None:
    """Seconds from a plain number, a Go duration (``1m30s``), or (given ``wall``, the epoch
    time now) an RFC 3339 instant or HTTP date; None if it is none of these."""
    text = text.strip()
    if not text:
        return None
    plain = _number(text)
    if plain is not None:
        return plain
    parts = _GO_PART.findall(text)
    if parts and "".join(n + u for n, u in parts) == text:
        return sum(float(n) * _GO_SCALE[u] for n, u in parts)
    if wall is None:
        return None
    try:
        at = datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()
    except ValueError:
        parsed = email.utils.parsedate_tz(text)
        if parsed is None:
            return None
        at = float(email.utils.mktime_tz(parsed))
    return max(0.0, at - wall)


def parse_retry_after(headers: Mapping[str, str], wall: float) -> float | None:
    """Seconds the server asks us to wait, from ``retry-after-ms`` or ``retry-after``."""
    ms = headers.get("retry-after-ms")
    if ms is not None:
        value = _number(ms.strip())
        if value is not None:
            return value / 1000.0
    text = headers.get("retry-after")
    if text is None:
        return None
    value = _number(text.strip())
    if value is not None:
        return value
    parsed = email.utils.parsedate_tz(text.strip())
    if parsed is None:
        return None
    return max(0.0, email.utils.mktime_tz(parsed) - wall)


def _int(headers: Mapping[str, str], name: str) -> int | None:
    value = headers.get(name)
    if value is None:
        return None
    number = _number(value.strip())
    return int(number) if number is not None else None


def _reset(headers: Mapping[str, str], name: str, wall: float) -> float | None:
    value = headers.get(name)
    return parse_duration(value, wall) if value is not None else None


def rate_limit_hints(headers: Mapping[str, str], wall: float) -> RateLimitHints:
    """The rate-limit state a response's headers report (OpenAI or Anthropic style)."""
    if "x-ratelimit-remaining-requests" in headers or "x-ratelimit-remaining-tokens" in headers:
        return RateLimitHints(
            _int(headers, "x-ratelimit-limit-requests"),
            _int(headers, "x-ratelimit-limit-tokens"),
            _int(headers, "x-ratelimit-remaining-requests"),
            _int(headers, "x-ratelimit-remaining-tokens"),
            _reset(headers, "x-ratelimit-reset-requests", wall),
            _reset(headers, "x-ratelimit-reset-tokens", wall),
        )
    prefix = "anthropic-ratelimit-"
    if prefix + "requests-remaining" in headers or prefix + "tokens-remaining" in headers:
        return RateLimitHints(
            _int(headers, prefix + "requests-limit"),
            _int(headers, prefix + "tokens-limit"),
            _int(headers, prefix + "requests-remaining"),
            _int(headers, prefix + "tokens-remaining"),
            _reset(headers, prefix + "requests-reset", wall),
            _reset(headers, prefix + "tokens-reset", wall),
        )
    return RateLimitHints()
