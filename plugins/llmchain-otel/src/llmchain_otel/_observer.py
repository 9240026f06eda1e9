"""Turn llmchain events into OpenTelemetry spans and metrics (GenAI semantic conventions).

One call → one CLIENT span ``chat {model}`` with ``gen_ai.*`` attributes; each transport attempt
→ a child span ``llmchain.attempt``; retries, rate-limit waits, cache lookups, repairs… → span
events on the call span. Metrics: ``gen_ai.client.operation.duration`` (s) per call and
``gen_ai.client.token.usage`` ({token}, by ``gen_ai.token.type``) per call that spent tokens.

While a call (and an attempt) is open, its span is the *current* span in the call's context, so
spans from HTTP instrumentation (httpx, aiohttp) nest under the attempt that made them.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Mapping
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import metrics, trace
from opentelemetry.trace import ProxyTracerProvider, Span, SpanKind, Status, StatusCode

from llmchain import Event

VERSION = "0.1.0"
OPERATION = "chat"

#: GenAI semantic-convention attribute names (kept here: the semconv package moves them around).
OPERATION_NAME = "gen_ai.operation.name"
PROVIDER_NAME = "gen_ai.provider.name"
SYSTEM = "gen_ai.system"  # the older name of gen_ai.provider.name, still read by many backends
REQUEST_MODEL = "gen_ai.request.model"
RESPONSE_MODEL = "gen_ai.response.model"
FINISH_REASONS = "gen_ai.response.finish_reasons"
INPUT_TOKENS = "gen_ai.usage.input_tokens"
OUTPUT_TOKENS = "gen_ai.usage.output_tokens"
TOKEN_TYPE = "gen_ai.token.type"
ERROR_TYPE = "error.type"
REQUEST_PARAMS = {
    "temperature": "gen_ai.request.temperature",
    "max_tokens": "gen_ai.request.max_tokens",
    "top_p": "gen_ai.request.top_p",
    "seed": "gen_ai.request.seed",
}
DURATION_BUCKETS = [0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56, 5.12, 10.24, 20.48, 40.96, 81.92]
TOKEN_BUCKETS = [1, 4, 16, 64, 256, 1024, 4096, 16384, 65536, 262144, 1048576, 4194304, 16777216, 67108864]


class _Call:
    __slots__ = ("attempts", "cache", "metric_attrs", "span", "token")

    def __init__(self, span: Span, token: object | None, metric_attrs: dict[str, Any]) -> None:
        self.span = span
        self.token = token
        self.metric_attrs = metric_attrs
        self.attempts: dict[int, tuple[Span, object | None]] = {}
        self.cache: str | None = None


def _ns(seconds: float) -> int:
    return int(seconds * 1e9)


def _attribute(value: Any) -> Any:
    """An OpenTelemetry attribute value (primitives or sequences of them), or None to drop."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, (list, tuple)) and all(isinstance(v, (bool, int, float, str)) for v in value):
        return list(value)
    return str(value)


def _clean(data: Mapping[str, Any], prefix: str = "llmchain.") -> dict[str, Any]:
    out = {}
    for key, value in data.items():
        converted = _attribute(value)
        if converted is not None:
            out[f"{prefix}{key}"] = converted
    return out


def provider_of(transport: str | None) -> str | None:
    """``"openai:gpt-4o"`` → ``"openai"``: the transport name's kind."""
    return transport.split(":", 1)[0] if transport else None


class OtelObserver:
    """An llmchain observer (``callback(event)``) that records spans and metrics.

    With no providers given it uses the global ones; until an SDK tracer provider is installed
    globally it records nothing (one check per call).
    """

    def __init__(
        self,
        tracer_provider: trace.TracerProvider | None = None,
        meter_provider: metrics.MeterProvider | None = None,
        *,
        set_current: bool = True,
        max_open_calls: int = 10_000,
    ) -> None:
        self._explicit = tracer_provider is not None
        self._tracer = trace.get_tracer("llmchain_otel", VERSION, tracer_provider=tracer_provider)
        meter = metrics.get_meter("llmchain_otel", VERSION, meter_provider=meter_provider)
        self._duration = meter.create_histogram(
            "gen_ai.client.operation.duration", unit="s", description="GenAI operation duration",
            explicit_bucket_boundaries_advisory=DURATION_BUCKETS)
        self._tokens = meter.create_histogram(
            "gen_ai.client.token.usage", unit="{token}",
            description="Measures number of input and output tokens used",
            explicit_bucket_boundaries_advisory=TOKEN_BUCKETS)
        self._set_current = set_current
        self._max_open = max_open_calls
        self._lock = threading.Lock()
        self._calls: OrderedDict[str, _Call] = OrderedDict()

    def __call__(self, event: Event) -> None:
        if event.request_id is None:
            return
        if event.kind == "call_start":
            self._start(event)
            return
        with self._lock:
            call = self._calls.get(event.request_id)
            if call is not None and event.kind == "call_end":
                del self._calls[event.request_id]
        if call is None:
            return
        if event.kind == "call_end":
            self._end(call, event)
        elif event.kind == "attempt_start":
            self._attempt_start(call, event)
        elif event.kind == "attempt_end":
            self._attempt_end(call, event)
        else:
            if event.kind.startswith("cache_") and event.kind != "cache_store":
                call.cache = event.kind[len("cache_"):]
                call.span.set_attribute("llmchain.cache.status", call.cache)
            call.span.add_event(f"llmchain.{event.kind}", _clean(event.data), _ns(event.time))

    def open_calls(self) -> int:
        with self._lock:
            return len(self._calls)

    # -- spans ------------------------------------------------------------------------------------

    def _start(self, event: Event) -> None:
        if not self._explicit and isinstance(trace.get_tracer_provider(), ProxyTracerProvider):
            return  # no SDK configured: record nothing
        data = event.data
        model, provider = data.get("model"), provider_of(data.get("transport"))
        attrs: dict[str, Any] = {OPERATION_NAME: OPERATION}
        if provider:
            attrs[PROVIDER_NAME] = attrs[SYSTEM] = provider
        if model:
            attrs[REQUEST_MODEL] = model
        metric_attrs = dict(attrs)
        for key, name in REQUEST_PARAMS.items():
            if data.get(key) is not None:
                attrs[name] = data[key]
        attrs["llmchain.request_id"] = event.request_id
        span = self._tracer.start_span(f"{OPERATION} {model}" if model else OPERATION, kind=SpanKind.CLIENT,
                                       attributes=attrs, start_time=_ns(event.time))
        token = otel_context.attach(trace.set_span_in_context(span)) if self._set_current else None
        with self._lock:
            self._calls[event.request_id] = _Call(span, token, metric_attrs)  # type: ignore[index]
            while len(self._calls) > self._max_open:  # calls that never ended (cancelled)
                _, stale = self._calls.popitem(last=False)
                stale.span.set_status(Status(StatusCode.ERROR, "abandoned: no call_end event"))
                stale.span.end()

    def _end(self, call: _Call, event: Event) -> None:
        data, span, attrs = event.data, call.span, call.metric_attrs
        for number in list(call.attempts):  # an attempt cut short without its end event
            self._close_attempt(call, number, event.time, "cancelled")
        error_type = data.get("error_type")
        if error_type:
            span.set_attribute(ERROR_TYPE, error_type)
            span.set_status(Status(StatusCode.ERROR, error_type))
            attrs = {**attrs, ERROR_TYPE: error_type}
        if data.get("attempts") is not None:
            span.set_attribute("llmchain.attempts", data["attempts"])
        if data.get("response_model"):
            span.set_attribute(RESPONSE_MODEL, data["response_model"])
            attrs = {**attrs, RESPONSE_MODEL: data["response_model"]}
        if data.get("finish_reason"):
            span.set_attribute(FINISH_REASONS, [data["finish_reason"]])
        for kind, name in (("input", INPUT_TOKENS), ("output", OUTPUT_TOKENS)):
            count = data.get(f"{kind}_tokens")
            billed = data.get(f"billed_{kind}_tokens")  # every attempt and re-ask that cost tokens
            if count is not None:
                span.set_attribute(name, count)
            if billed is not None:
                span.set_attribute(f"llmchain.usage.billed_{kind}_tokens", billed)
                if billed:  # a failed call may have been billed too; a cache hit was not
                    self._tokens.record(billed, {**attrs, TOKEN_TYPE: kind})
            elif count is not None and call.cache != "hit" and not error_type:
                self._tokens.record(count, {**attrs, TOKEN_TYPE: kind})
        for key in ("cost_usd", "billed_cost_usd"):
            if data.get(key) is not None:
                span.set_attribute(f"llmchain.usage.{key}", data[key])
        if data.get("latency_s") is not None:
            self._duration.record(data["latency_s"], attrs)
        span.end(_ns(event.time))
        self._detach(call.token)

    def _attempt_start(self, call: _Call, event: Event) -> None:
        number = int(event.data.get("attempt", len(call.attempts) + 1))
        attrs: dict[str, Any] = {"llmchain.attempt.number": number}
        if event.data.get("served_by"):
            attrs["llmchain.served_by"] = str(event.data["served_by"])
        span = self._tracer.start_span("llmchain.attempt", context=trace.set_span_in_context(call.span),
                                       kind=SpanKind.INTERNAL, attributes=attrs, start_time=_ns(event.time))
        token = otel_context.attach(trace.set_span_in_context(span)) if self._set_current else None
        call.attempts[number] = (span, token)

    def _attempt_end(self, call: _Call, event: Event) -> None:
        data = event.data
        number = int(data.get("attempt", 0))
        if number not in call.attempts:
            return
        span = call.attempts[number][0]
        if data.get("status_code") is not None:
            span.set_attribute("http.response.status_code", data["status_code"])
        if data.get("error_type"):
            span.set_attribute(ERROR_TYPE, data["error_type"])
        self._close_attempt(call, number, event.time, str(data.get("outcome", "ok")))

    def _close_attempt(self, call: _Call, number: int, when: float, outcome: str) -> None:
        span, token = call.attempts.pop(number)
        span.set_attribute("llmchain.attempt.outcome", outcome)
        if outcome != "ok":
            span.set_status(Status(StatusCode.ERROR, outcome))
        span.end(_ns(when))
        self._detach(token)

    @staticmethod
    def _detach(token: object | None) -> None:
        if token is not None:
            otel_context.detach(token)  # type: ignore[arg-type]
