"""Property tests for reading and aggregating: however the llmchain lines are mixed with other
loggers' lines, cut short at the end or gzip-compressed, the aggregates equal a straight count
of the llmchain lines that were written."""

from __future__ import annotations

import gzip
import json
import math
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from llmchain.report import read_logs
from llmchain.report._aggregate import error_kind
from llmchain.report._data import COUNTERS

T0 = 1_796_514_000.0  # 2026-12-05 23:40:00 (log time)
MODELS = ("gpt-4o-mini", "gpt-4o", "claude-3-5-haiku")


def stamp(t: float) -> str:
    from llmchain.report._read import format_time

    return format_time(t, with_ms=True).replace(".", ",")


@st.composite
def calls(draw: st.DrawFn) -> list[dict[str, Any]]:
    """One call: its debug lines then its summary line (dicts, as the log stage writes them)."""
    rid = "set-by-the-test"
    t = T0 + draw(st.integers(0, 3_600_000)) / 1000
    model = draw(st.sampled_from(MODELS))
    statuses = draw(st.lists(st.sampled_from([None, 429, 503, 500]), min_size=0, max_size=3))
    outcome = draw(st.sampled_from(["ok", "ok", "error", "cancelled"]))
    cache = draw(st.sampled_from(["hit", "miss"])) if outcome == "ok" else None
    base = {"time": stamp(t), "level": "DEBUG", "logger": "llmchain", "request_id": rid}
    lines: list[dict[str, Any]] = [dict(base, event="llm.cache_hit" if cache == "hit" else "llm.cache_miss",
                                        stage="cache", key="k")]
    for n, status in enumerate(statuses, 1):
        lines.append(dict(base, event="llm.attempt_start", stage="transport", attempt=n,
                          served_by=f"openai:{model}"))
        lines.append(dict(base, event="llm.attempt_end", stage="transport", attempt=n,
                          outcome="timeout" if status == 500 else "error" if status else "ok",
                          duration_s=0.1, status_code=status, error_type=None))
        if n < len(statuses):
            lines.append(dict(base, event="llm.retry_scheduled", stage="retry", attempt=n + 1, delay_s=0.2))
    if draw(st.booleans()):
        lines.append(dict(base, event="llm.rate_limit_wait", stage="rate_limit", key=model,
                          **({"pause_s": 1.5, "reason": "provider_429"} if draw(st.booleans())
                             else {"wait_s": 0.25, "tokens": 0})))
    if draw(st.booleans()):
        lines.append(dict(base, event="llm.repair", stage="repair", action=draw(st.sampled_from(["local", "reask"])),
                          ok=True))
    error_type = None if outcome == "ok" else draw(st.sampled_from(["GaveUp", "RateLimited", "TimeoutExceeded"]))
    lines.append(dict(base, level="INFO" if outcome == "ok" else "WARNING", message="llm call",
                      event="llm.call", model=model, transport=f"openai:{model}", outcome=outcome,
                      error_type=error_type, error=error_type and "it failed", cause=None,
                      status_code=draw(st.sampled_from([None, 429, 503])) if error_type else None,
                      latency_ms=draw(st.floats(0, 60_000, allow_nan=False)), attempts=len(statuses),
                      cache=cache, tokens_in=draw(st.integers(0, 5000)), tokens_out=draw(st.integers(0, 5000)),
                      cost_usd=draw(st.integers(0, 10_000)) / 1e6, extra_future_field={"x": 1}))
    return lines


FOREIGN = st.one_of(
    st.text(st.characters(blacklist_categories=["Cs"], blacklist_characters="\n\r\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029"),
            max_size=60).filter(lambda s: not s.strip().startswith("{")),
    st.builds(lambda n: json.dumps({"time": "2026-12-05 23:50:00,000", "logger": "uvicorn", "event": f"http {n}"}),
              st.integers()),
    st.just('{"not": "closed"'),
    st.just("[1, 2, 3]"),
    st.just(""),
)


def straight_count(records: list[dict[str, Any]]) -> dict[str, Any]:
    """What the aggregates must be, counted the obvious way."""
    summaries = [r for r in records if r["event"] == "llm.call"]
    debug = [r for r in records if r["event"] != "llm.call"]
    count: dict[str, Any] = dict.fromkeys(COUNTERS, 0)
    count["calls"] = len(summaries)
    count["ok"] = sum(r["outcome"] == "ok" for r in summaries)
    count["from_cache"] = sum(r["outcome"] == "ok" and r["cache"] == "hit" for r in summaries)
    count["errors"] = sum(r["outcome"] == "error" for r in summaries)
    count["cancelled"] = sum(r["outcome"] == "cancelled" for r in summaries)
    count["attempts"] = sum(r["attempts"] for r in summaries)
    count["retries"] = sum(r["event"] == "llm.retry_scheduled" for r in debug)
    count["http_429"] = sum(r["event"] == "llm.attempt_end" and r["status_code"] == 429 for r in debug)
    count["timeouts"] = sum(r["event"] == "llm.attempt_end" and r["outcome"] == "timeout" for r in debug)
    count["pauses"] = sum(r["event"] == "llm.rate_limit_wait" and "pause_s" in r for r in debug)
    count["limiter_waits"] = sum(r["event"] == "llm.rate_limit_wait" and "wait_s" in r for r in debug)
    count["cache_hits"] = sum(r["event"] == "llm.cache_hit" for r in debug)
    count["repairs_local"] = sum(r["event"] == "llm.repair" and r["action"] == "local" for r in debug)
    count["repairs_reask"] = sum(r["event"] == "llm.repair" and r["action"] == "reask" for r in debug)
    count["tokens_in"] = sum(r["tokens_in"] for r in summaries)
    count["cost_usd"] = sum(r["cost_usd"] for r in summaries)
    kinds: dict[str, int] = {}
    for r in summaries:
        if r["outcome"] != "ok":
            kinds[error_kind(r)] = kinds.get(error_kind(r), 0) + 1
    count["kinds"] = kinds
    count["latencies"] = sorted(r["latency_ms"] for r in summaries)
    return count


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    call_list=st.lists(calls(), min_size=1, max_size=25),
    foreign=st.lists(FOREIGN, max_size=30),
    positions=st.lists(st.integers(0, 10_000), max_size=30),
    truncate_at=st.one_of(st.none(), st.integers(1, 200)),
    compress=st.booleans(),
    interleave_calls=st.booleans(),
)
def test_aggregates_equal_a_straight_count(tmp_path_factory: Any, call_list: list[list[dict[str, Any]]],
                                           foreign: list[str], positions: list[int], truncate_at: int | None,
                                           compress: bool, interleave_calls: bool) -> None:
    for i, call in enumerate(call_list):  # request ids are unique
        for line in call:
            line["request_id"] = f"{i:032x}"
    records: list[dict[str, Any]] = []
    if interleave_calls:  # concurrent calls: every call's debug lines first, then the summaries
        records = [r for c in call_list for r in c[:-1]] + [c[-1] for c in call_list]
    else:
        records = [r for c in call_list for r in c]
    lines = [json.dumps(r) for r in records]
    for text, pos in zip(foreign, positions, strict=False):  # other loggers' lines, anywhere
        lines.insert(pos % (len(lines) + 1), text)
    body = "".join(line + "\n" for line in lines)
    expected_truncated = 0
    if truncate_at is not None:  # a crash mid-write: the next llmchain line stops short
        partial = json.dumps(call_list[0][-1])
        body += partial[: min(truncate_at, len(partial) - 1)]
        expected_truncated = 1
    data_bytes = body.encode()
    path = Path(tmp_path_factory.mktemp("prop")) / ("app.log.gz" if compress else "app.log")
    path.write_bytes(gzip.compress(data_bytes) if compress else data_bytes)

    data = read_logs([str(path)])
    want = straight_count(records)
    got = dict(zip(COUNTERS, data.totals(), strict=True))
    for name in ("calls", "ok", "from_cache", "errors", "cancelled", "attempts", "retries", "http_429",
                 "timeouts", "pauses", "limiter_waits", "cache_hits", "repairs_local", "repairs_reask",
                 "tokens_in"):
        assert got[name] == want[name], name
    assert math.isclose(got["cost_usd"], want["cost_usd"], rel_tol=1e-9, abs_tol=1e-12)
    assert data.kinds == want["kinds"]
    assert data.stats.llmchain_lines == len(records)
    assert data.stats.truncated_lines == expected_truncated
    assert data.stats.foreign_lines == min(len(foreign), len(positions))
    assert data.unfinished == 0
    # quantiles: within the sketch's 2% of the exact nearest-rank value (tiny values share a bin)
    latencies = want["latencies"]
    for q in (0.5, 0.95, 0.99):
        exact = latencies[max(0, math.ceil(q * len(latencies)) - 1)]
        sketched = data.overall.quantile(q)
        assert sketched is not None
        assert abs(sketched - exact) <= max(0.021 * exact, 0.011), (q, exact, sketched)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(times=st.lists(st.integers(0, 40 * 24 * 3600 * 1000), min_size=1, max_size=300))
def test_time_buckets_stay_bounded_and_count_every_call(tmp_path_factory: Any, times: list[int]) -> None:
    """Over any span the buckets widen instead of growing; each call is in the bucket of its time."""
    from llmchain.report._aggregate import Aggregator
    from llmchain.report._read import ReadStats

    aggregator = Aggregator(ReadStats())
    for i, ms in enumerate(times):
        aggregator.add(T0 + ms / 1000, {"event": "llm.call", "request_id": str(i), "model": "m",
                                         "outcome": "ok", "latency_ms": 1.0, "attempts": 1})
    data = aggregator.finish()
    assert len(data.buckets) <= 1440
    width = data.bucket_ms
    per_bucket: dict[int, int] = {}
    for ms in times:
        key = int((T0 + ms / 1000) * 1000) // width * width
        per_bucket[key] = per_bucket.get(key, 0) + 1
    assert {k: int(v["m"].counts[0]) for k, v in data.buckets.items()} == per_bucket


@settings(deadline=None)  # the shared machine's load must not fail a correctness test
@given(values=st.lists(st.floats(0, 1e6, allow_nan=False), max_size=200), n=st.integers(1, 30))
def test_top_n_keeps_the_n_largest(values: list[float], n: int) -> None:
    from llmchain.report._sketch import TopN

    top = TopN(n)
    for i, value in enumerate(values):
        top.offer(value, (value, i))
    assert [v for v, _ in top.items()] == sorted(values, reverse=True)[:n]


FIELD_VALUES = st.one_of(st.none(), st.booleans(), st.integers(-(2**70), 2**70), st.text(max_size=8),
                         st.floats(allow_nan=True, allow_infinity=True), st.lists(st.integers(), max_size=2),
                         st.dictionaries(st.text(max_size=3), st.integers(), max_size=2))
FIELDS = ("time", "request_id", "model", "transport", "outcome", "error_type", "error", "cause", "status_code",
          "latency_ms", "attempts", "cache", "tokens_in", "tokens_out", "cost_usd", "retry_after_s", "retryable",
          "attempt", "served_by", "duration_s", "delay_s", "wait_s", "pause_s", "action", "ok", "state", "leader")
EVENTS = ("llm.call", "llm.attempt_start", "llm.attempt_end", "llm.retry_scheduled", "llm.rate_limit_wait",
          "llm.cache_hit", "llm.cache_miss", "llm.singleflight_wait", "llm.repair", "llm.breaker_state",
          "llm.fallback", "llm.something_new")


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(lines=st.lists(st.tuples(st.sampled_from(EVENTS),
                                st.dictionaries(st.sampled_from(FIELDS), FIELD_VALUES, max_size=12)),
                      min_size=1, max_size=20),
       shared_id=st.booleans())
def test_garbage_field_values_never_crash_the_report(tmp_path_factory: Any, lines: list[tuple[str, dict[str, Any]]],
                                                     shared_id: bool) -> None:
    """A hostile or buggy writer: any value in any field. The report reads, renders, and says what it saw."""
    from llmchain.report import render_text
    from llmchain.report._html import payload

    records = [{**fields, "event": event, **({"request_id": "same"} if shared_id else {})}
               for event, fields in lines]
    path = Path(tmp_path_factory.mktemp("fuzz")) / "x.log"
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    data = read_logs([str(path)])
    assert data.stats.llmchain_lines == len(records)
    assert data.calls == sum(r["event"] == "llm.call" for r in records)
    render_text(data)
    json.dumps(payload(data), allow_nan=False)  # the page's JSON.parse would reject NaN/Infinity
