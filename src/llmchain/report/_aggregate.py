"""Aggregating log lines on the fly: time buckets per model, latency sketches, top-N, error samples.

Memory is bounded whatever the log's length: at most ``MAX_BUCKETS`` time buckets (they double
in width when a log spans more), a fixed number of models and error kinds, N calls per table,
a few sample stories per error kind, and the debug lines of calls still in flight (a call's
debug lines come before its summary line; they wait in ``pending`` until it arrives, capped).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from ._data import (
    MAX_BUCKETS,
    MAX_KINDS,
    MAX_MODELS,
    OTHER,
    REQUESTED_STORIES,
    UNKNOWN_MODEL,
    WIDTHS_MS,
    Bucket,
    C,
    ReportData,
    Sample,
)
from ._read import Filters, ReadStats
from ._sketch import LogHistogram, TopN, bin_of
from ._story import build_story


@dataclass
class Aggregator:
    """Feed it ``(time, line)`` pairs (``add``), then ``finish()``."""

    stats: ReadStats
    filters: Filters = field(default_factory=Filters)
    bucket_ms: int | None = None  # None: start fine, widen as the log spans more
    top_n: int = 20
    samples_per_kind: int = 3
    max_pending_events: int = 200_000

    def __post_init__(self) -> None:
        self._auto = self.bucket_ms is None
        self._width = self.bucket_ms or WIDTHS_MS[0]
        self._buckets: dict[int, dict[str, Bucket]] = {}
        self._pending: dict[str, list[tuple[float | None, dict[str, Any]]]] = {}
        self._pending_events = 0
        self._model_hist: dict[str, LogHistogram] = {}
        self._overall = LogHistogram()
        self._slowest: dict[str, TopN] = {}
        self._costliest: dict[str, TopN] = {}
        self._kinds: dict[str, int] = {}
        self._samples: dict[str, list[Sample]] = {}
        self._requested: list[Sample] = []  # with --request-id: the story of each matching call
        self._first: float | None = None
        self._last: float | None = None
        self._calls = self._no_debug = self._unfinished = self._debug = 0

    # -- feeding -------------------------------------------------------------------------------
    def add_all(self, records: Iterable[tuple[float | None, dict[str, Any]]]) -> ReportData:
        for t, line in records:
            self.add(t, line)
        return self.finish()

    def add(self, t: float | None, line: dict[str, Any]) -> None:
        if t is not None:
            if self._first is None or t < self._first:
                self._first = t
            if self._last is None or t > self._last:
                self._last = t
        if line.get("event") == "llm.call":
            self._call(t, line)
            return
        self._debug += 1
        rid = line.get("request_id")
        if not isinstance(rid, str):
            self._apply_event(t, line, UNKNOWN_MODEL, None)
            return
        events = self._pending.get(rid)
        if events is None:
            events = self._pending[rid] = []
        events.append((t, line))
        self._pending_events += 1
        while self._pending_events > self.max_pending_events:  # oldest in-flight call gives way
            self._flush_unfinished(next(iter(self._pending)))

    def _flush_unfinished(self, rid: str) -> None:
        events = self._pending.pop(rid)
        self._pending_events -= len(events)
        self._unfinished += 1
        if self.filters.model is None:
            for te, line in events:
                self._apply_event(te, line, UNKNOWN_MODEL, None)

    def _bucket(self, t: float | None, model: str) -> Bucket:
        if t is None:  # a line without a readable time: count it with the line before
            t = self._last if self._last is not None else 0.0
        key = int(t * 1000) // self._width * self._width
        per_model = self._buckets.get(key)
        if per_model is None:
            per_model = self._buckets[key] = {}
            # a --bucket the user chose is kept unless it would hold memory without bound
            if len(self._buckets) > (MAX_BUCKETS if self._auto else MAX_BUCKETS * 50):
                self._widen(MAX_BUCKETS if self._auto else MAX_BUCKETS * 50)
                return self._bucket(t, model)
        bucket = per_model.get(model)
        if bucket is None:
            bucket = per_model[model] = Bucket()
        return bucket

    def _widen(self, limit: int) -> None:
        while len(self._buckets) > limit and self._width < WIDTHS_MS[-1]:
            self._width = next(w for w in WIDTHS_MS if w > self._width)
            merged: dict[int, dict[str, Bucket]] = {}
            for key, per_model in self._buckets.items():
                target = merged.setdefault(key // self._width * self._width, {})
                for model, bucket in per_model.items():
                    if model in target:
                        target[model].merge(bucket)
                    else:
                        target[model] = bucket
            self._buckets = merged

    # -- one call ------------------------------------------------------------------------------
    def _model_of(self, line: dict[str, Any], events: list[tuple[float | None, dict[str, Any]]]) -> str:
        model = line.get("model")
        if not isinstance(model, str) or not model:
            transport = line.get("transport")
            if not isinstance(transport, str):
                transport = next((e.get("served_by") for _, e in events
                                  if isinstance(e.get("served_by"), str)), None)
            model = transport.split(":", 1)[-1] if isinstance(transport, str) and transport else UNKNOWN_MODEL
        if model not in self._model_hist and len(self._model_hist) >= MAX_MODELS:
            return OTHER
        return model

    def _call(self, t: float | None, line: dict[str, Any]) -> None:
        rid = line.get("request_id")
        events = self._pending.pop(rid, []) if isinstance(rid, str) else []
        self._pending_events -= len(events)
        model = self._model_of(line, events)
        if self.filters.model is not None and model != self.filters.model:
            return
        self._calls += 1
        b = self._bucket(t, model).counts
        outcome = line.get("outcome")
        attempts = _int(line.get("attempts"))
        cache = line.get("cache")
        b[C["calls"]] += 1
        b[C["attempts"]] += attempts
        if outcome == "ok":
            b[C["ok"]] += 1
            if cache == "hit":
                b[C["from_cache"]] += 1
            elif attempts > 1:
                b[C["ok_retried"]] += 1
        elif outcome == "cancelled":
            b[C["cancelled"]] += 1
        else:
            b[C["errors"]] += 1
        b[C["tokens_in"]] += _int(line.get("tokens_in"))
        b[C["tokens_out"]] += _int(line.get("tokens_out"))
        cost = _num(line.get("cost_usd"))
        b[C["cost_usd"]] += cost
        if events:
            for te, event in events:
                self._apply_event(te, event, model, t)
        else:  # INFO-only logs: what the summary line alone can say
            self._no_debug += 1
            b[C["retries"]] += max(attempts - 1, 0)
            status = _int(line.get("status_code"))
            b[C["http_429"]] += status == 429
            b[C["http_5xx"]] += status >= 500
            b[C["timeouts"]] += str(line.get("cause") or line.get("error_type") or "").startswith(
                "TimeoutExceeded")
            b[C["cache_hits"]] += cache == "hit"
            b[C["cache_misses"]] += cache == "miss"
        latency = _num(line.get("latency_ms"))
        self._overall.add(latency)
        hist = self._model_hist.get(model)
        if hist is None:
            hist = self._model_hist[model] = LogHistogram()
        hist.add(latency)
        bucket = self._bucket(t, model)
        index = bin_of(latency)
        bucket.hist[index] = bucket.hist.get(index, 0) + 1
        self._tables(t, line, model, latency, cost, attempts)
        if self.filters.request_id is not None and len(self._requested) < REQUESTED_STORIES:
            self._requested.append(Sample(str(rid), t, model, build_story(line, t, events)))
        if outcome != "ok":
            kind = error_kind(line)
            if kind not in self._kinds and len(self._kinds) >= MAX_KINDS:
                kind = OTHER
            self._kinds[kind] = self._kinds.get(kind, 0) + 1
            bucket.kinds[kind] = bucket.kinds.get(kind, 0) + 1
            samples = self._samples.setdefault(kind, [])
            if len(samples) < self.samples_per_kind:
                samples.append(Sample(str(rid), t, model, build_story(line, t, events)))

    def _tables(self, t: float | None, line: dict[str, Any], model: str, latency: float, cost: float,
                attempts: int) -> None:
        slow = self._slowest.get(model)
        if slow is None:
            slow = self._slowest[model] = TopN(self.top_n)
            self._costliest[model] = TopN(self.top_n)
        costly = self._costliest[model]
        if slow.would_keep(latency) or (cost > 0 and costly.would_keep(cost)):
            cache = line.get("cache")
            row = {"time": t, "request_id": str(line.get("request_id")), "model": model,
                   "outcome": str(line.get("error_type") or line.get("outcome")), "latency_ms": latency,
                   "attempts": attempts, "cache": cache if isinstance(cache, str) else None,
                   "tokens_in": _int(line.get("tokens_in"), None),
                   "tokens_out": _int(line.get("tokens_out"), None),
                   "cost_usd": _num(line.get("cost_usd"), None)}
            slow.offer(latency, row)
            if cost > 0:
                costly.offer(cost, row)

    def _apply_event(self, t: float | None, line: dict[str, Any], model: str, call_t: float | None) -> None:
        kind = line.get("event")
        b = self._bucket(t if t is not None else call_t, model).counts
        if kind == "llm.attempt_end":
            status = _int(line.get("status_code"))
            b[C["http_429"]] += status == 429
            b[C["http_5xx"]] += status >= 500
            b[C["timeouts"]] += line.get("outcome") == "timeout"
        elif kind == "llm.retry_scheduled":
            b[C["retries"]] += 1
        elif kind == "llm.rate_limit_wait":
            if "pause_s" in line:
                b[C["pauses"]] += 1
                b[C["pause_s"]] += _num(line.get("pause_s"))
            else:
                b[C["limiter_waits"]] += 1
                b[C["limiter_wait_s"]] += _num(line.get("wait_s"))
        elif kind == "llm.cache_hit":
            b[C["cache_hits"]] += 1
        elif kind == "llm.cache_miss":
            b[C["cache_misses"]] += 1
        elif kind == "llm.singleflight_wait":
            b[C["coalesced"]] += 1
        elif kind == "llm.repair":
            action = line.get("action")
            if action == "local" and line.get("ok"):
                b[C["repairs_local"]] += 1
            elif action == "reask":
                b[C["repairs_reask"]] += 1
            elif action == "gave_up":
                b[C["repairs_gave_up"]] += 1
        elif kind == "llm.breaker_state":
            b[C["breaker_opened"]] += line.get("state") == "open"
        elif kind == "llm.fallback":
            b[C["fallbacks"]] += 1

    def finish(self) -> ReportData:
        for rid in list(self._pending):
            self._flush_unfinished(rid)
        return ReportData(
            stats=self.stats, filters=self.filters, bucket_ms=self._width, buckets=self._buckets,
            model_hist=self._model_hist, overall=self._overall, slowest=self._slowest,
            costliest=self._costliest, kinds=self._kinds, samples=self._samples, requested=self._requested,
            first_t=self._first, last_t=self._last, calls=self._calls,
            calls_without_debug=self._no_debug, unfinished=self._unfinished, debug_lines=self._debug)


def error_kind(line: dict[str, Any]) -> str:
    """``GaveUp ← ProviderError · HTTP 503``: the type, what was behind it, the status."""
    kind = str(line.get("error_type") or line.get("outcome") or "error")
    cause = line.get("cause")
    if cause and cause != kind:
        kind += f" ← {cause}"
    status = line.get("status_code")
    if isinstance(status, int):
        kind += f" · HTTP {status}"
    return kind


_EXACT = 2**53  # larger ints are not token counts; they would not even fit a float


def _int(value: Any, default: Any = 0) -> Any:
    """An int field as logged, or ``default`` (missing, null, or not an int)."""
    ok = isinstance(value, int) and not isinstance(value, bool) and -_EXACT < value < _EXACT
    return value if ok else default


def _num(value: Any, default: Any = 0.0) -> Any:
    """A finite number field as logged, or ``default`` (NaN and infinity included)."""
    if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
        return float(value)
    return default
