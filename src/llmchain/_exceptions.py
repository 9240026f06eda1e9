"""The one error tree every llmchain failure belongs to.

The tree is drawn in docs/errors.md, generated from these classes (``python -m scripts.docgen``;
a test fails when the page and the code differ).

Stages decide what to do by attributes (``retryable``, ``retry_after``), never by which stage
raised. Foreign errors (httpx, aiohttp, pydantic, redis) are wrapped where first met; the
chain's outer normaliser wraps anything that slipped through, so callers only ever see these.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from ._attempt import Attempt, RateLimitHints
from ._redact import redact, redact_headers, trim


class LLMChainError(Exception):
    """Base of every error llmchain raises."""

    retryable: bool = False


class ConfigError(LLMChainError):
    """The configuration (file, dict or code) is wrong; the message says where and how to fix."""


class UnsupportedContent(ConfigError):
    """A message, part or tool cannot be sent by this transport, or an input dict cannot be
    represented. ``part`` names it (e.g. ``"messages[2].content[1] (document by URL)"``),
    ``transport`` names the transport (None for input conversion)."""

    def __init__(self, message: str, *, part: str, transport: str | None = None) -> None:
        super().__init__(message)
        self.part = part
        self.transport = transport


class InputTypeError(ConfigError, TypeError):
    """A call argument has the wrong type (a prompt of ``None``, ``schema=int``...); the message
    says what was expected. A ``TypeError`` too, as Python callers expect."""


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


class CertificateError(TransportError):
    """The server's TLS certificate could not be verified. Not retryable: a retry meets the same
    certificate; the hint says how to trust it (``ca_bundle``)."""

    retryable = False


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
        # kept redacted: errors end up in logs, reports and incident files
        self.headers: dict[str, str] = redact_headers(headers) if headers else {}
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


class ResponseTooLarge(ProviderError):
    """An answer went over one of the transport's size caps (``cap`` names it:
    ``max_head_bytes``, ``max_body_bytes`` or ``max_decompressed_bytes``). Not retryable: the
    same request gets the same answer."""

    def __init__(self, message: str, *, cap: str, limit: int, **kw: Any) -> None:
        kw.setdefault("retryable", False)
        kw.setdefault("hint", f"raise the transport's {cap} if answers this large are expected")
        super().__init__(message, **kw)
        self.cap = cap
        self.limit = limit

    def details(self) -> list[str]:
        return [*super().details(), f"cap: {self.cap} = {self.limit} bytes"]


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


class BudgetExceeded(CallError):
    """A spend limit (USD or tokens per hour/day/month, maybe per user/team/feature) is used up.

    Raised *before* sending: ``budget`` names the limit, ``spent`` is what was already spent
    (or reserved by calls in flight) in the current window, ``needed`` this call's estimate,
    ``resets_at`` the wall-clock time (epoch seconds, UTC) the window ends.
    """

    def __init__(self, message: str, *, budget: str, spent: float, limit: float, needed: float,
                 unit: str, resets_at: float, **kw: Any) -> None:
        kw.setdefault("retryable", False)
        super().__init__(message, **kw)
        self.budget, self.spent, self.limit, self.needed = budget, spent, limit, needed
        self.unit, self.resets_at = unit, resets_at

    def details(self) -> list[str]:
        from datetime import datetime, timezone

        when = datetime.fromtimestamp(self.resets_at, timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")
        fmt = _fmt_usd if self.unit == "usd" else _fmt_tokens
        return [f"budget: {self.budget}", f"spent: {fmt(self.spent)} of {fmt(self.limit)}",
                f"this call needs: ~{fmt(self.needed)}", f"resets at: {when}"]


def _fmt_usd(value: float) -> str:
    return f"${value:.4f}"


def _fmt_tokens(value: float) -> str:
    return f"{value:.0f} tokens"


class EmbeddingFailed(CallError):
    """Some batches of an ``embed`` call failed; the others succeeded.

    ``failures`` lists ``(start, stop, error)`` per failed batch (indices into the input texts,
    each ``error`` a typed ``CallError``); ``vectors`` holds every vector obtained, ``None``
    where a batch failed, so a caller may keep the successes and retry only the failures.
    """

    def __init__(self, message: str, *, failures: Sequence[tuple[int, int, CallError]],
                 vectors: Sequence[tuple[float, ...] | None], **kw: Any) -> None:
        kw.setdefault("retryable", any(e.retryable for _, _, e in failures))
        super().__init__(message, **kw)
        self.failures = list(failures)
        self.vectors = list(vectors)

    def details(self) -> list[str]:
        return [f"texts {a}..{b - 1}: {type(e).__name__}: {trim(e.message, 200)}"
                for a, b, e in self.failures[:10]]


class StreamInterrupted(CallError):
    """A streamed answer failed after part of it had reached the caller.

    Never retried by llmchain (the caller has already shown part of an answer); ``partial_text``
    is what arrived, ``error`` the failure that cut it (also ``__cause__``), ``attempts`` every
    attempt made. Its ``status_code`` and ``retryable`` are the cause's, so the caller can
    decide to ask again.
    """

    def __init__(self, message: str, *, partial_text: str = "", error: CallError | None = None,
                 **kw: Any) -> None:
        super().__init__(message, **kw)
        self.partial_text = partial_text
        self.error = error
        if error is not None and "retryable" not in kw:
            self.retryable = error.retryable
            self.retry_after = error.retry_after

    @property
    def status_code(self) -> int | None:
        return self.error.status_code if self.error is not None else None

    def details(self) -> list[str]:
        out = [f"received before the failure: {len(self.partial_text)} chars"]
        if self.error is not None:
            out.append(f"cause: {type(self.error).__name__}: {trim(self.error.message, 200)}")
        return out
