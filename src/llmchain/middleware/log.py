"""The log stage: one structured summary line per call, debug lines for what happened inside.

Place it outermost, so its line covers retries, repairs and cache hits. Per call it writes one
record on the ``llmchain`` logger (INFO on success, WARNING on failure) whose extra fields are
the schema in docs/stages/log.md: request id, model, transport, outcome, error type, latency,
attempts, cache status, tokens in/out, estimated cost. With DEBUG enabled it also writes one
line per event of the call (attempt start/end, retry scheduled, rate-limit wait, repair, cache,
breaker…): for the duration of the call it adds itself to the call's observers (the per-call
trace), so only chains that have a log stage produce these lines and its options apply.

Records are plain ``logging`` records with fields in ``extra``: any JSON formatter renders them;
``setup_json_logging()`` installs python-json-logger's with a redacting filter. Every text field
is redacted before it is logged; bodies (prompt, answer) only with ``include_bodies``, trimmed.
When the logger would drop the line nothing is formatted. A streamed call gets its one line when
the stream ends, fails or is cancelled (``outcome = "cancelled"`` when the caller stopped
early), with ``stream``, ``ttft_ms`` (time to first token), ``duration_ms`` and
``tokens_per_s``. The stage also fills
``Usage.cost_usd`` from a price table (``prices`` overrides it); a cache hit costs 0.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sys
from collections.abc import Callable
from typing import IO, Any, Literal

from pydantic import Field

from .._clock import REAL_CLOCK, Clock
from .._content import describe_message
from .._events import CallTrace, Event, current_call
from .._exceptions import CallError, GaveUp, OutputError, TimeoutExceeded
from .._models import LLMRequest, LLMResponse, copy_with
from .._prices import PriceTable
from .._redact import (
    LOG_RECORD_ATTRS,
    PRE_REDACTED,
    RedactingFilter,
    redact,
    redact_value,
    register_pattern,
    register_secret,
    trim,
)
from .._stage import StageOptions
from .._stream import at_end, on_final
from .._types import Next
from ..hookspecs import hookimpl

Level = Literal["DEBUG", "INFO", "WARNING", "ERROR"]
_QUIET_EVENTS = frozenset({"call_start", "call_end"})  # the summary line covers these


def json_formatter() -> logging.Formatter:
    """python-json-logger's formatter with llmchain's field names (time, level, logger, message)."""
    from pythonjsonlogger.json import JsonFormatter

    formatter: logging.Formatter = JsonFormatter(
        ["asctime", "levelname", "name", "message"],
        rename_fields={"asctime": "time", "levelname": "level", "name": "logger"},
    )
    return formatter


def setup_json_logging(
    level: str | int = "INFO", stream: IO[str] | None = None, logger_name: str = "llmchain"
) -> logging.Handler:
    """Write ``logger_name``'s records to ``stream`` (stderr) as redacted JSON lines."""
    handler = logging.StreamHandler(stream if stream is not None else sys.stderr)
    handler.setFormatter(json_formatter())
    handler.addFilter(RedactingFilter())
    handler.llmchain_json = True  # type: ignore[attr-defined]
    logger = logging.getLogger(logger_name)
    logger.addHandler(handler)
    logger.setLevel(level)
    return handler


def _wants_handler(mode: str, logger: logging.Logger) -> bool:
    if mode == "none" or any(getattr(h, "llmchain_json", False) for h in logger.handlers):
        return False
    # "auto": only when nothing would show INFO lines otherwise (no handler here or at the root)
    return mode == "stderr" or (not logger.handlers and not logging.getLogger().handlers)


class LogMiddleware:
    """Log one JSON-ready summary line per call (and DEBUG lines per event); fill the cost."""

    kind = "log"
    #: What this stage does, as data: order hints and other stages go by roles, never by names.
    roles = frozenset({"log"})
    #: Streamed calls pass through ``handle`` like any other (see docs/stages/log.md, "Streams").
    handles_streams = True

    class Options(StageOptions):
        logger: str = Field("llmchain", description="Logger name.")
        level: Level = Field("INFO", description="Level of the summary line of a successful call.")
        error_level: Level = Field("WARNING", description="Level of the summary line of a failed call.")
        include_bodies: bool = Field(False, description="Add prompt and answer (redacted, trimmed).")
        body_max_chars: int = Field(500, ge=0, description="Trim each body to this many characters.")
        debug_events: bool = Field(True, description="At DEBUG, one line per event of the call.")
        prices: dict[str, tuple[float, float]] = Field(
            default_factory=dict, description="Model → (input, output) USD per 1M tokens; extends the table.")
        redact_patterns: list[str] = Field(
            default_factory=list, description="Extra regexes whose matches are masked everywhere.")
        redact_env: list[str] = Field(
            default_factory=list, description="Environment variables whose values are masked everywhere.")
        handler: Literal["auto", "stderr", "none"] = Field(
            "auto", description='"auto": add a JSON stderr handler only if logging is unconfigured.')

    def __init__(self, options: Options | None = None, *, clock: Clock = REAL_CLOCK) -> None:
        self.options = options = options or self.Options()
        self._clock = clock
        self._logger = logging.getLogger(options.logger)
        self._ok_level = logging.getLevelName(options.level)
        self._error_level = logging.getLevelName(options.error_level)
        self._min_level = min(self._ok_level, self._error_level)
        self.prices = PriceTable(options.prices)
        for pattern in options.redact_patterns:
            register_pattern(pattern)
        for name in options.redact_env:
            register_secret(os.environ.get(name))
        if _wants_handler(options.handler, self._logger):
            setup_json_logging(self._logger.level or self._min_level, logger_name=options.logger)

    async def handle(self, request: LLMRequest, call_next: Next) -> LLMResponse:
        log = self._logger
        if not log.isEnabledFor(self._min_level):
            return on_final(await call_next(request), self._with_cost)
        t0 = self._clock.now()
        trace = current_call.get()
        saved = None
        if trace is not None and self.options.debug_events and log.isEnabledFor(logging.DEBUG):
            saved = trace.observers
            trace.observers = (*saved, self._on_event)
        try:
            response = await call_next(request)
        except BaseException as exc:
            if trace is not None and saved is not None:
                trace.observers = saved  # this call's events no longer reach the stage
            self._summary(request, None, exc, t0, trace)
            raise
        if response.stream is not None:  # one line when the stream ends, fails or is cancelled
            return self._at_stream_end(request, response, t0, trace, saved)
        if trace is not None and saved is not None:
            trace.observers = saved
        response = self._with_cost(response)
        self._summary(request, response, None, t0, trace)
        return response

    def _at_stream_end(self, request: LLMRequest, response: LLMResponse, t0: float,
                       trace: CallTrace | None, saved: tuple[Any, ...] | None) -> LLMResponse:
        stream = response.stream

        def timing() -> dict[str, Any]:
            now = self._clock.now()
            return {"stream": True, "ttft_ms": round((stream.first_at - t0) * 1000, 1),
                    "duration_ms": round((now - t0) * 1000, 1), "_t_first": stream.first_at, "_now": now}

        def restore() -> None:
            if trace is not None and saved is not None:
                trace.observers = saved

        async def ended(final: LLMResponse) -> LLMResponse:
            restore()
            final = self._with_cost(final)
            self._summary(request, final, None, t0, trace, timing())
            return final

        async def failed(error: BaseException | None) -> None:
            restore()
            self._summary(request, None, error or asyncio.CancelledError(), t0, trace, timing())

        stream.pipe(lambda events: at_end(events, ended, failed))
        return response

    def _with_cost(self, response: LLMResponse) -> LLMResponse:
        usage = response.usage
        if response.cache is not None and response.cache.status == "hit":
            cost: float | None = 0.0  # answered from the cache: this call cost nothing
        elif usage.cost_usd is not None:
            return response
        else:
            cost = self.prices.cost(response.model, usage.input_tokens, usage.output_tokens)
            if cost is None:
                return response
        if usage.cost_usd == cost:
            return response
        return copy_with(response, {"usage": copy_with(usage, {"cost_usd": cost})})

    def _summary(self, request: LLMRequest, response: LLMResponse | None, error: BaseException | None,
                 t0: float, trace: CallTrace | None, streamed: dict[str, Any] | None = None) -> None:
        level = self._ok_level if error is None else self._error_level
        log = self._logger
        if not log.isEnabledFor(level):
            return
        attempts = trace.attempts if trace is not None else []
        latency_ms = round((self._clock.now() - t0) * 1000, 1)
        fields: dict[str, Any]
        if response is not None:
            usage, cache = response.usage, response.cache
            model = response.model or request.model
            fields = {  # one literal: this runs on every call
                "event": "llm.call", "request_id": request.request_id, PRE_REDACTED: True,
                "model": model,
                "transport": response.served_by or (attempts[-1].served_by if attempts else None),
                "outcome": "ok", "error_type": None, "error": None, "status_code": None,
                "latency_ms": latency_ms, "attempts": len(attempts),
                "cache": cache.status if cache is not None else None,
                "cache_age_s": round(cache.age_s, 3) if cache is not None and cache.age_s is not None
                else None,
                "tokens_in": usage.input_tokens, "tokens_out": usage.output_tokens,
                "cost_usd": round(usage.cost_usd, 10) if usage.cost_usd is not None else None,
                "finish_reason": response.finish_reason,
            }
            if response.notes:
                notes = response.notes
                if not self.options.include_bodies and not _BODY_NOTES.isdisjoint(notes):
                    notes = {k: v for k, v in notes.items() if k not in _BODY_NOTES}
                fields["notes"] = redact_value(dict(notes))
            message = f"llm call ok: {model} {latency_ms:.0f} ms"
        else:
            fields = {"event": "llm.call", "request_id": request.request_id, PRE_REDACTED: True}
            outcome = "cancelled" if isinstance(error, asyncio.CancelledError) else "error"
            last = attempts[-1] if attempts else None
            fields.update(
                model=request.model, transport=last.served_by if last is not None else None,
                outcome=outcome, error_type=type(error).__name__,
                error=self._error_text(error) if outcome == "error" and error is not None else None,
                status_code=error.status_code if isinstance(error, CallError) else None,
                latency_ms=latency_ms, attempts=len(attempts), cache=None, cache_age_s=None,
                tokens_in=None, tokens_out=None, cost_usd=None, finish_reason=None,
            )
            if isinstance(error, CallError):
                _error_details(error, fields)
            message = f"llm call {outcome}: {fields['error_type']} after {latency_ms:.0f} ms"
        if streamed is not None:
            _stream_fields(fields, streamed, response)
            message = message.replace("llm call", "llm stream", 1)
        if self.options.include_bodies:
            limit = self.options.body_max_chars
            prompt = "\n".join(f"{m.role}: {m.content}" if type(m.content) is str and not m.tool_calls
                               else describe_message(m) for m in request.messages)
            fields["prompt"] = trim(redact(prompt), limit)
            if response is not None:
                answer = response.text
                if response.tool_calls or response.parts:  # arguments redacted like the text
                    answer = describe_message(response.message).partition(": ")[2]
                fields["answer"] = trim(redact(answer), limit)
        # what log.log(level, message, extra=fields) does, without its slow steps: finding the
        # caller (this line: always the same, so its file and line are looked up once) and
        # checking each extra key against the record's attributes (these keys are fixed, none is)
        filename, lineno, function = _CALL_SITE or _call_site(sys._getframe())
        record = log.makeRecord(log.name, level, filename, lineno, message, (), None, function)
        record.__dict__.update(fields)
        log.handle(record)

    def _error_text(self, error: BaseException) -> str:
        """The error's message; an output error's quotes the answer, so without
        ``include_bodies`` only what kind of rejection it was is logged."""
        if not self.options.include_bodies and _quotes_output(error):
            return (f"{type(error).__name__}: the answer was rejected (the message quotes it: "
                    "logged only with include_bodies)")
        return trim(redact(str(error)), 300)

    def _on_event(self, event: Event) -> None:
        if event.kind in _QUIET_EVENTS:
            return
        fields: dict[str, Any] = {"event": f"llm.{event.kind}", "request_id": event.request_id,
                                  "stage": event.stage}
        for key, value in event.data.items():
            fields[f"data_{key}" if key in LOG_RECORD_ATTRS or key in fields else key] = value
        fields = redact_value(fields)
        fields[PRE_REDACTED] = True
        self._logger.debug("llm %s (%s)", event.kind, event.stage or "chain", extra=fields)


#: Notes that carry model output (the raw answer before a local repair): bodies, logged only
#: with ``include_bodies``.
_BODY_NOTES = frozenset({"original_text"})

_CALL_SITE: tuple[str, int, str] | None = None


def _call_site(frame: Any) -> tuple[str, int, str]:
    """Where the summary line is logged from, as the record's pathname, lineno and funcName."""
    global _CALL_SITE
    _CALL_SITE = (frame.f_code.co_filename, frame.f_lineno, frame.f_code.co_name)
    return _CALL_SITE


def _stream_fields(fields: dict[str, Any], timing: dict[str, Any], response: LLMResponse | None) -> None:
    """A streamed call's line: time to first token, duration, and output tokens per second
    after the first token (the generation speed the caller saw)."""
    fields["stream"] = True
    fields["ttft_ms"] = timing["ttft_ms"]
    fields["duration_ms"] = timing["duration_ms"]
    generating = timing["_now"] - timing["_t_first"]
    tokens = response.usage.output_tokens if response is not None else 0
    replayed = response is not None and response.cache is not None and response.cache.status == "hit"
    fields["tokens_per_s"] = (round(tokens / generating, 1) if tokens and generating > 0 and not replayed
                              else None)  # a replayed cache hit says nothing of the model's speed


def _quotes_output(error: BaseException) -> bool:
    """Whether the error's message may quote model output (an output error, or one behind it)."""
    if isinstance(error, OutputError):
        return True
    return isinstance(error, GaveUp) and any(isinstance(e, OutputError) for e in error.errors or ())


def _error_details(error: CallError, fields: dict[str, Any]) -> None:
    """What an incident reader needs beyond the type: the underlying cause, when to retry."""
    fields["retryable"] = error.retryable
    if error.retry_after is not None:
        fields["retry_after_s"] = error.retry_after
    cause: CallError = error
    if isinstance(error, GaveUp) and error.errors:  # the last real failure behind "gave up"
        cause = error.errors[-1]
        fields["cause"] = type(cause).__name__
        if fields["status_code"] is None:
            fields["status_code"] = cause.status_code
    if isinstance(cause, TimeoutExceeded):  # which limit ran out: one attempt's or the call's
        fields["cause"] = f"TimeoutExceeded:{cause.phase}"
    leader = getattr(error, "singleflight_leader", None)
    if leader is not None:
        fields["coalesced_with"] = leader


@hookimpl
def register_middleware(register: Callable[[str, Any], None]) -> None:
    register("log", LogMiddleware)
