"""A failed call's story rebuilt from its log lines, in the style of ``CallError.explain()``.

The caller's ``.explain()`` is built from the live error; the log holds the same facts spread over
the call's debug lines (each attempt, retry, wait, cache lookup, repair) and its summary line. This
puts them back together, one line per event, with times relative to the first line.
"""

from __future__ import annotations

from typing import Any

from ._read import format_time

#: What to try next, by the error's type (the caller's error carries a hint; the log does not).
HINTS = {
    "RateLimited": "the provider's rate limit: send fewer calls at once, lower rpm/tpm to the real "
                   "limit, or ask the provider for more",
    "TimeoutExceeded": "the provider was slow: check its status page, raise attempt_s / timeout_s, "
                       "or add a fallback",
    "ProviderError": "a provider failure: 5xx usually passes (retry), 4xx is a request problem",
    "TransportError": "no HTTP answer (connect failure, reset): network or provider trouble",
    "CircuitOpen": "the breaker failed fast; the failures before it opened are the root cause",
    "RepairGaveUp": "no usable structured answer: clarify the prompt or schema, or raise max_reasks",
    "OutputInvalid": "the answer did not fit the schema: clarify the prompt or schema",
    "ParseError": "the answer was not JSON: check finish_reason (cut off?) and the prompt",
}


def _number(value: Any) -> float | None:
    """A numeric field as logged, or None (missing, text, or too large for a float)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    try:
        return float(value)
    except OverflowError:
        return None


def _ms(seconds: Any) -> str:
    value = _number(seconds)
    return "? ms" if value is None else f"{value * 1000:.0f} ms"


def describe_event(line: dict[str, Any]) -> str | None:
    """One debug line as a short phrase (None for lines that add nothing to the story)."""
    event = str(line.get("event", ""))[4:]
    if event == "attempt_start":
        return f"attempt #{line.get('attempt', '?')} sent via {line.get('served_by') or '?'}"
    if event == "attempt_end":
        parts = [f"attempt #{line.get('attempt', '?')}", str(line.get("outcome", "?")),
                 _ms(line.get("duration_s"))]
        if line.get("status_code") is not None:
            parts.append(f"HTTP {line['status_code']}")
        if line.get("error_type"):
            parts.append(str(line["error_type"]))
        return " · ".join(parts)
    if event == "retry_scheduled":
        delay = line.get("delay_s", line.get("wait_s"))
        why = "as the server asked (Retry-After)" if line.get("server_asked") else "backoff"
        return f"retry #{line.get('attempt', '?')} in {_ms(delay)} ({why})"
    if event == "rate_limit_wait":
        if "pause_s" in line:
            return (f"provider said slow down ({line.get('reason', '?')}): every caller of "
                    f"{line.get('key', '?')!r} paused {_ms(line.get('pause_s'))}")
        return f"waited {_ms(line.get('wait_s'))} for the rate limiter ({line.get('key', '?')!r})"
    if event == "cache_hit":
        return "answered from the cache"
    if event == "cache_miss":
        return "cache miss"
    if event == "cache_store":
        return "answer cached" if line.get("stored") else f"answer not cached ({line.get('reason', '?')})"
    if event == "singleflight_wait":
        return f"waited for an identical call in flight ({str(line.get('leader', '?'))[:8]})"
    if event == "repair":
        action = line.get("action")
        if action == "local":
            return "repaired locally" if line.get("ok") else "local repair failed"
        if action == "reask":
            return f"re-asked the model (re-ask #{line.get('reask', '?')}, {line.get('error_type', '?')})"
        return f"repair gave up: {line.get('reason', '?')}"
    if event == "breaker_state":
        return f"circuit breaker {line.get('state', '?')} ({line.get('key', '?')!r})"
    if event == "fallback":
        return f"fell back to {line.get('to', '?')}"
    if event == "store_unavailable":
        return f"store unavailable ({line.get('store') or line.get('operation') or '?'})"
    return event or None


def build_story(summary: dict[str, Any], t: float | None,
                events: list[tuple[float | None, dict[str, Any]]]) -> list[str]:
    """The ``.explain()``-style lines of one call from its summary line and debug lines."""
    error_type = summary.get("error_type") or summary.get("outcome") or "error"
    if summary.get("outcome") == "ok":
        first = (f"ok: answered after {summary.get('attempts', '?')} attempt(s), cache "
                 f"{summary.get('cache') or '-'}, tokens {summary.get('tokens_in')} in / "
                 f"{summary.get('tokens_out')} out")
    else:
        first = f"{error_type}: {summary.get('error') or '(no message in the log)'}"
    lines = [first, f"  request id: {summary.get('request_id')}"]
    where = [format_time(t, with_ms=True)] if t is not None else []
    if summary.get("model"):
        where.append(f"model {summary['model']}")
    if summary.get("transport"):
        where.append(f"via {summary['transport']}")
    latency = _number(summary.get("latency_ms"))
    where.append(f"{latency:.0f} ms in all" if latency is not None else "latency not logged")
    lines.append("  ended: " + " · ".join(where))
    if events:
        start = next((te for te, _ in events if te is not None), t)
        lines.append(f"  what happened ({len(events)} debug line(s), then the summary):")
        for te, line in events[:40]:
            text = describe_event(line)
            if text:
                offset = f"+{(te - start) * 1000:.0f} ms" if te is not None and start is not None else ""
                lines.append(f"    {offset:>9}  {text}")
        if len(events) > 40:
            lines.append(f"    … {len(events) - 40} more line(s)")
    else:
        lines.append(f"  attempts: {summary.get('attempts', '?')} (no DEBUG lines for this call in the "
                     "log: set the llmchain logger to DEBUG to see each attempt)")
    facts = []
    if summary.get("cause"):
        facts.append(f"cause: {summary['cause']}")
    if summary.get("status_code") is not None:
        facts.append(f"status: {summary['status_code']}")
    if summary.get("retry_after_s") is not None:
        facts.append(f"retry after: {summary['retry_after_s']}s")
    if "retryable" in summary:
        facts.append(f"retryable: {'yes' if summary['retryable'] else 'no'}")
    if summary.get("coalesced_with"):
        facts.append(f"coalesced with: {summary['coalesced_with']}")
    if facts:
        lines.append("  " + " · ".join(facts))
    cause = str(summary.get("cause") or "").split(":", 1)[0]
    hint = HINTS.get(cause) or HINTS.get(str(error_type))
    if hint:
        lines.append(f"  hint: {hint}")
    return lines
