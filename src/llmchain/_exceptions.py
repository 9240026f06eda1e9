"""The one error tree every llmchain failure belongs to.

::

    LLMChainError                     retryable=False
    ├── ConfigError                   build time: bad config file or options
    ├── PluginError                   build time: a plugin failed to load or register
    └── CallError                     run time: .request_id, .attempts, .explain()
        ├── TransportError            retryable: connect failures, resets
        │   └── TimeoutExceeded       .phase = "attempt" | "deadline"
        ├── ProviderError             .status_code, .body (trimmed); 5xx retryable
        │   └── RateLimited           429 or local limiter; .retry_after
        ├── CircuitOpen               the breaker is failing fast
        ├── CacheMiss                 only-if-cached was asked and nothing is cached
        ├── StoreUnavailable          a shared store (Redis) is down and on_unavailable="fail"
        ├── OutputError               the model answered but the answer is unusable
        │   ├── ParseError            .raw_text, .position
        │   └── OutputInvalid         .errors (from pydantic / JSON Schema)
        └── GaveUp                    retries / repair / budget exhausted; .errors, __cause__

Stages decide what to do by attributes (``retryable``, ``retry_after``), never by which stage
raised. Foreign errors (httpx, aiohttp, pydantic, redis) are wrapped where first met; the
chain's outer normaliser wraps anything that slipped through, so callers only ever see these.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from ._models import Attempt
from ._redact import redact, trim

if TYPE_CHECKING:
    from .policies.headers import RateLimitHints


class LLMChainError(Exception):
    """Base of every error llmchain raises."""

    retryable: bool = False


class ConfigError(LLMChainError):
    """The configuration (file, dict or code) is wrong; the message says where and how to fix."""


class PluginError(LLMChainError):
    """A plugin failed to import or register; the message names it."""


class CallError(LLMChainError):
    """A call failed at run time.

    Carries the request id, every attempt made, and a hint; ``explain()`` renders them for a
    person reading an incident.
    """

    retryable = False

    def __init__(
        self,
        message: str,
        *,
        request_id: str | None = None,
        attempts: Sequence[Attempt] = (),
        retryable: bool | None = None,
        retry_after: float | None = None,
        hint: str | None = None,
        request_summary: str | None = None,
    ) -> None:
        message = redact(message)
        super().__init__(message)
        self.message = message
        self.request_id = request_id
        self.attempts: tuple[Attempt, ...] = tuple(attempts)
        if retryable is not None:
            self.retryable = retryable
        self.retry_after = retry_after
        self.hint = hint
        self.request_summary = request_summary

    @property
    def status_code(self) -> int | None:
        return None

    def details(self) -> list[str]:
        """Extra lines for ``explain()``; subclasses add what they know."""
        return []

    def explain(self) -> str:
        """A short multi-line account: what was sent, each attempt, the cause, a hint."""
        lines = [f"{type(self).__name__}: {self.message}"]
        if self.request_id:
            lines.append(f"  request id: {self.request_id}")
        if self.request_summary:
            lines.append(f"  sent: {self.request_summary}")
        if self.attempts:
            lines.append(f"  attempts ({len(self.attempts)}):")
            lines.extend(f"    {_describe_attempt(a)}" for a in self.attempts)
        lines.extend(f"  {line}" for line in self.details())
        cause = self.__cause__
        if cause is not None and not isinstance(cause, CallError):
            lines.append(f"  cause: {type(cause).__name__}: {trim(redact(str(cause)), 200)}")
        if self.hint:
            lines.append(f"  hint: {self.hint}")
        return "\n".join(lines)

    def with_context(
        self, *, request_id: str | None, attempts: Sequence[Attempt], summary: str | None
    ) -> CallError:
        """Fill in what the raiser did not know (the chain calls this on the way out)."""
        if self.request_id is None:
            self.request_id = request_id
        if not self.attempts:
            self.attempts = tuple(attempts)
        if self.request_summary is None:
            self.request_summary = summary
        return self


def _describe_attempt(a: Attempt) -> str:
    parts = [f"#{a.number}", a.outcome, f"{a.duration_s * 1000:.0f} ms"]
    if a.status_code is not None:
        parts.append(f"HTTP {a.status_code}")
    if a.error_type:
        parts.append(f"{a.error_type}: {a.error or ''}".rstrip(": "))
    if a.retry_after_s is not None:
        parts.append(f"retry-after {a.retry_after_s:g}s")
    if a.served_by:
        parts.append(f"via {a.served_by}")
    return " · ".join(parts)


class TransportError(CallError):
    """The request did not get an HTTP answer: connect failure, reset, broken stream."""

    retryable = True


class TimeoutExceeded(TransportError):
    """A time limit ran out: one attempt's (``phase="attempt"``) or the whole call's."""

    def __init__(self, message: str, *, phase: str = "attempt", **kw: Any) -> None:
        kw.setdefault("retryable", phase == "attempt")
        super().__init__(message, **kw)
        self.phase = phase

    def details(self) -> list[str]:
        return [f"phase: {self.phase}"]


class ProviderError(CallError):
    """The provider answered with an error status (or a malformed body).

    ``headers`` keeps the provider's useful response headers (request id, retry and
    rate-limit headers); ``rate_limit`` is those rate-limit headers parsed, when there were any.
    """

    def __init__(
        self,
        message: str,
        *,
        status_code: int | None = None,
        body: str | None = None,
        headers: Mapping[str, str] | None = None,
        rate_limit: RateLimitHints | None = None,
        **kw: Any,
    ) -> None:
        if "retryable" not in kw or kw["retryable"] is None:
            kw["retryable"] = status_code is not None and (
                status_code >= 500 or status_code in (408, 409, 429)
            )
        super().__init__(message, **kw)
        self._status_code = status_code
        self.body = trim(redact(body), 500) if body else None
        self.headers: dict[str, str] = dict(headers) if headers else {}
        self.rate_limit = rate_limit

    @property
    def status_code(self) -> int | None:
        return self._status_code

    def details(self) -> list[str]:
        out = []
        if self._status_code is not None:
            out.append(f"status: {self._status_code}")
        if self.body:
            out.append(f"body: {self.body}")
        return out


class RateLimited(ProviderError):
    """Too many requests or tokens: a 429 from the provider or the local limiter refusing."""

    #: When the local limiter refused because the server asked for a pause longer than its
    #: cap (``max_pause_s``): the seconds the server asked for. None otherwise.
    server_asked_s: float | None = None

    def __init__(self, message: str, *, status_code: int | None = 429,
                 server_asked_s: float | None = None, **kw: Any) -> None:
        kw.setdefault("retryable", True)
        super().__init__(message, status_code=status_code, **kw)
        self.server_asked_s = server_asked_s

    def details(self) -> list[str]:
        out = super().details()
        if self.retry_after is not None:
            out.append(f"retry after: {self.retry_after:g}s")
        return out


class CircuitOpen(CallError):
    """The circuit breaker is open: calls fail fast until a probe succeeds."""


class CacheMiss(CallError):
    """``metadata={"cache": "only-if-cached"}`` was asked and the answer is not in the cache."""


class StoreUnavailable(CallError):
    """A shared store (Redis) could not be used and its policy is ``on_unavailable = "fail"``.

    Retryable: an outage may be a blip; ``retry_after`` is the store's cool-down. It says nothing
    about the provider's health (the circuit breaker ignores it).
    """

    retryable = True


class OutputError(CallError):
    """The model answered, but the answer cannot be used as asked."""

    def __init__(self, message: str, *, raw_text: str | None = None, **kw: Any) -> None:
        super().__init__(message, **kw)
        self.raw_text = raw_text

    def details(self) -> list[str]:
        return [f"answer: {trim(redact(self.raw_text), 200)!r}"] if self.raw_text is not None else []


class ParseError(OutputError):
    """The answer is not valid JSON (or no JSON could be found in it)."""

    def __init__(self, message: str, *, position: int | None = None, **kw: Any) -> None:
        super().__init__(message, **kw)
        self.position = position

    def details(self) -> list[str]:
        out = super().details()
        if self.position is not None:
            out.append(f"at position: {self.position}")
        return out


class OutputInvalid(OutputError):
    """The answer parsed but does not satisfy the schema; ``errors`` lists each violation."""

    def __init__(self, message: str, *, errors: Sequence[str] = (), **kw: Any) -> None:
        super().__init__(message, **kw)
        self.errors = list(errors)

    def details(self) -> list[str]:
        return super().details() + [f"invalid: {e}" for e in self.errors[:10]]


class GaveUp(CallError):
    """A stage exhausted its budget (attempts, repairs, time, money); ``errors`` says why each try failed."""

    def __init__(self, message: str, *, errors: Sequence[CallError] = (), **kw: Any) -> None:
        super().__init__(message, **kw)
        self.errors = list(errors)

    def details(self) -> list[str]:
        return [f"try {i}: {type(e).__name__}: {trim(e.message, 200)}" for i, e in enumerate(self.errors, 1)]
