"""How ``llmchain demo`` shows a run: the per-request table, the summary, what each stage did,
the failures' ``.explain()``, and where the JSON log is (``render_text``; ``to_json`` for
``--json``)."""

from __future__ import annotations

import contextlib
import json
import math
from collections import Counter
from pathlib import Path
from typing import Any

from . import SETTINGS, STAGE_OPTIONS, DemoResult, Row, attempt_label

#: (name, width); "backoff" (retry waits) and "limiter" (rate-limit waits) are the waits, in seconds
COLUMNS = (("#", 3), ("id", 8), ("prompt", 18), ("outcome", 26), ("attempts", 18), ("backoff", 7),
           ("limiter", 7), ("cache", 9), ("repaired", 8), ("latency", 7))


RIGHT = frozenset({"#", "backoff", "limiter", "latency"})


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:.0f} ms"


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q * len(ordered)) - 1)] if ordered else 0.0


def _log_lines(result: DemoResult) -> list[dict[str, Any]]:
    try:
        text = result.log_path.read_text(encoding="utf-8")
    except OSError:
        return []
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def _output_errors(row: Row) -> list[str]:
    """The types of the answers parse/validate rejected for this request."""
    errors = getattr(row.error, "errors", None) if row.repaired == "gave up" else None
    if errors is not None:
        return [type(e).__name__ for e in errors]
    found = []
    for e in row.events:
        action = e.data.get("action") if e.kind == "repair" else None
        if action == "local":
            found.append("ParseError")  # only unparsable answers go to local repair
        elif action == "reask" and e.data.get("error_type") == "OutputInvalid":
            found.append("OutputInvalid")
    return found


def summarize(result: DemoResult) -> dict[str, Any]:
    """The run's numbers, for the text summary and ``--json``."""
    rows = result.rows
    attempts = [a for r in rows for a in r.attempts]
    kinds = Counter(e.kind for e in result.events)
    lines = _log_lines(result)
    rejected = Counter(t for r in rows for t in _output_errors(r))
    latencies = [r.latency_s for r in rows]
    return {
        "requests": len(rows),
        "outcomes": dict(Counter(r.outcome for r in rows)),
        "server_requests": result.server_requests,
        "attempts": len(attempts),
        "retries": kinds["retry_scheduled"],
        "recovered_by_retry": sum(1 for r in rows if r.outcome == "ok" and r.backoff_s > 0),
        "retry_after_honoured": sum(1 for e in result.events
                                    if e.kind == "retry_scheduled" and e.data.get("server_asked")),
        "backoff_s": round(sum(r.backoff_s for r in rows), 3),
        "http_429": sum(1 for a in attempts if a.status_code == 429),
        "http_5xx": sum(1 for a in attempts if (a.status_code or 0) >= 500),
        "resets": sum(1 for a in attempts if attempt_label(a) == "reset"),
        "attempts_timed_out": sum(1 for a in attempts if a.outcome == "timeout"),
        "deadline_errors": sum(1 for r in rows if r.outcome == "TimeoutExceeded"),
        "cache_hits": sum(1 for r in rows if r.cache in ("hit", "coalesced")),
        "coalesced": sum(1 for r in rows if r.cache == "coalesced"),
        "structured": sum(1 for r in rows if r.structured),
        "answers_checked": sum(1 for r in rows if r.structured for a in r.attempts if a.outcome == "ok"),
        "not_json": rejected["ParseError"],
        "schema_invalid": rejected["OutputInvalid"],
        "repaired_local": sum(1 for r in rows if r.repaired == "local"),
        "repaired_reask": sum(1 for r in rows if r.repaired == "reask"),
        "repair_gave_up": sum(1 for r in rows if r.repaired == "gave up"),
        "reasks": sum(1 for e in result.events if e.kind == "repair" and e.data.get("action") == "reask"),
        "provider_pauses": sum(1 for e in result.events
                               if e.kind == "rate_limit_wait" and "pause_s" in e.data),
        "limiter_waits": sum(1 for r in rows if r.limiter_s > 0),
        "limiter_wait_s": round(sum(r.limiter_s for r in rows), 3),
        "learned_rpm": result.learned_rpm,
        "breaker_opened": sum(1 for e in result.events
                              if e.kind == "breaker_state" and e.data.get("state") == "open"),
        "failed_fast": sum(1 for r in rows if r.outcome == "CircuitOpen" and not r.attempts),
        "latency_ms": {"p50": round(_percentile(latencies, 0.5) * 1000, 1),
                       "p95": round(_percentile(latencies, 0.95) * 1000, 1),
                       "max": round(max(latencies, default=0.0) * 1000, 1)},
        "log_lines": len(lines),
        "log_summary_lines": sum(1 for line in lines if line.get("event") == "llm.call"),
        "log_lines_with_id": sum(1 for line in lines if line.get("request_id")),
        "elapsed_s": round(result.elapsed_s, 2),
    }


def _stage_notes(s: dict[str, Any], result: DemoResult) -> list[tuple[str, str]]:
    """(stage, what it did) for each stage of the chain; idle stages say so."""
    attempt_s = STAGE_OPTIONS["timeout"]["attempt_s"]
    rate = (f"; learned the provider's limit from its headers: {s['learned_rpm']} requests/min"
            if s["learned_rpm"] else "")
    repairs = s["repaired_local"] + s["repaired_reask"] + s["repair_gave_up"]
    notes = {
        "log": (True, f"{s['log_summary_lines']} call summaries + {s['log_lines'] - s['log_summary_lines']} "
                      f"event lines; {s['log_lines_with_id']} of {s['log_lines']} carry a request_id"),
        "cache": (s["cache_hits"] > 0, f"{s['cache_hits']} answers from the cache ({s['coalesced']} "
                  "coalesced with an identical call in flight): calls the server never saw"),
        "repair": (repairs > 0, f"{s['repaired_local']} fixed locally (no call), {s['repaired_reask']} fixed "
                   f"by re-asking, {s['repair_gave_up']} gave up with every answer explained "
                   f"({s['reasks']} re-asks sent)"),
        "validate": (s["answers_checked"] > 0, f"{s['answers_checked']} answers to structured requests "
                     f"checked against their schema; {s['schema_invalid']} had wrong fields"),
        "parse": (s["answers_checked"] > 0, f"{s['answers_checked']} structured answers read as JSON; "
                  f"{s['not_json']} were not JSON"),
        "retry": (s["retries"] > 0, f"{s['retries']} retries, {s['recovered_by_retry']} requests recovered; "
                  f"waited {s['backoff_s']:.2f} s in all ({s['retry_after_honoured']} times as Retry-After "
                  "asked)"),
        "circuit_breaker": (s["breaker_opened"] > 0, f"opened {s['breaker_opened']} time(s); "
                            f"{s['failed_fast']} calls failed fast, sending nothing"),
        "rate_limit": (s["provider_pauses"] + s["limiter_waits"] > 0, f"{s['provider_pauses']} provider "
                       f"429(s) paused every caller; {s['limiter_waits']} requests waited "
                       f"{s['limiter_wait_s']:.2f} s instead of sending into it{rate}"),
        "timeout": (s["attempts_timed_out"] > 0, f"{s['attempts_timed_out']} attempts cut (attempt_s="
                    f"{attempt_s} s or the deadline); {s['deadline_errors']} call(s) ended at their "
                    "deadline: nothing hangs"),
    }
    return [(name, text if active else "idle: nothing for it to do in this run")
            for name in result.stages for active, text in [notes.get(name, (False, ""))]]


def _cells(row: Row) -> list[str]:
    outcome = row.outcome if not row.detail else f"{row.outcome} ({row.detail})"
    labels = " ".join(attempt_label(a) for a in row.attempts)  # one word per attempt
    return [str(row.index), row.request_id[:8], row.prompt, outcome, labels or "0",
            f"{row.backoff_s:.2f}s" if row.backoff_s else "-",
            f"{row.limiter_s:.2f}s" if row.limiter_s else "-",
            row.cache or "-", row.repaired or "-", _ms(row.latency_s)]


def _fit(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


def render_table(result: DemoResult) -> list[str]:
    def line(cells: list[str]) -> str:
        out = [_fit(c, w).rjust(w) if name in RIGHT else _fit(c, w).ljust(w)
               for c, (name, w) in zip(cells, COLUMNS, strict=True)]
        return "  ".join(out).rstrip()

    out = [line([name for name, _ in COLUMNS])]
    for scene in result.scenes:
        out.append(f"── {scene.name}: {scene.title}")
        out.extend(line(_cells(r)) for r in result.rows if r.scene == scene.name)
    return out


def render_text(result: DemoResult, *, explain_all: bool = False) -> str:
    s = summarize(result)
    rows = result.rows
    failed = [r for r in rows if r.error is not None]
    out = [f"llmchain demo: {len(rows)} requests through the default chain to a local fault-injecting "
           "server (offline, fake API key)",
           "  " + " → ".join(result.stages) + " → openai transport → 127.0.0.1 (random port)",
           f"  demo-sized limits so it ends in seconds: {SETTINGS}; seed {result.seed}", ""]
    out += render_table(result)
    outcomes = ", ".join(f"{n} {k}" for k, n in sorted(s["outcomes"].items(), key=lambda kv: -kv[1]))
    lat = s["latency_ms"]
    out += ["", f"Summary: {s['requests']} requests in {s['elapsed_s']:.1f} s: {outcomes}",
            f"  {s['attempts']} attempts reached the server ({s['retries']} retries): {s['http_5xx']} 5xx, "
            f"{s['http_429']} 429, {s['resets']} resets, {s['attempts_timed_out']} timed out",
            f"  cache hits {s['cache_hits']}, repairs {s['repaired_local'] + s['repaired_reask']}, "
            f"latency p50 {lat['p50']:.0f} ms, p95 {lat['p95']:.0f} ms, max {lat['max']:.0f} ms",
            "", "What each stage did:"]
    out += [f"  {name:<16}{text}" for name, text in _stage_notes(s, result)]
    if failed:
        out += ["", f"{len(failed)} request(s) failed on purpose; each raised one typed error that "
                    "explains itself:"]
        out += [f"  #{r.index} {_fit(r.error.explain().splitlines()[0], 110)}" for r in failed if r.error]
        shown = failed if explain_all else failed[:1]
        for r in shown:
            assert r.error is not None
            out += ["", f"#{r.index} {r.prompt!r}: .explain() gives the caller"]
            out += ["  " + line for line in r.error.explain().splitlines()]
    out += ["", *_log_section(result, s, every=explain_all)]
    if result.problems:
        out += ["", "NOT as designed:", *("  " + p for p in result.problems)]
    else:
        out += ["", "Ran as designed: the requests that failed, failed on purpose, and said why."]
    out += ["", *report_hint(result)]
    return "\n".join(out)


def report_hint(result: DemoResult) -> list[str]:
    """How to see this run's log as an incident report (``llmchain report``)."""
    log = result.log_path
    with contextlib.suppress(ValueError):
        log = log.relative_to(Path.cwd())
    html = log.with_name(log.stem + "-report.html")
    return [f"See this run as charts: llmchain report {log} -o {html}",
            f"  then open {html} in a browser (works offline; needs pip install 'llmchain[report]')",
            f"  or, in the terminal: llmchain report {log} --text"]


_NOT_STORY = frozenset({"time", "level", "logger", "message", "event", "request_id", "stage"})


def _story_line(line: dict[str, Any]) -> str:
    """A log line's event and fields, without the ones every line has; long values shortened."""
    fields = []
    for key, value in line.items():
        if key in _NOT_STORY or value is None or isinstance(value, dict):
            continue
        if isinstance(value, float):  # 4 decimals, but tiny costs keep their digits
            text = f"{value:.2g}" if 0 < abs(value) < 1e-3 else str(round(value, 4))
        else:
            text = json.dumps(value, ensure_ascii=False)
        fields.append(f"{key}={_fit(text.strip(chr(34)), 18)}")
    return f"{line.get('event', '?'):<20} {' '.join(fields)}"


def _log_section(result: DemoResult, s: dict[str, Any], *, every: bool) -> list[str]:
    all_lines = _log_lines(result)
    calls = {line.get("request_id"): line for line in all_lines if line.get("event") == "llm.call"}
    out = [f"JSON log: {result.log_path} ({s['log_lines']} lines: one \"llm.call\" summary per request, "
           "and DEBUG lines for every attempt, retry, wait, cache and repair)"]
    rows = [r for r in result.rows if r.request_id in calls]
    # the telling example: a request retried then answered, else the first failure
    story = next((r for r in rows if r.outcome == "ok" and len(r.attempts) > 1),
                 next((r for r in rows if r.error is not None), rows[0] if rows else None))
    if story is not None:
        where = f"grep {story.request_id[:8]} {result.log_path.name}"
        out += [f"  #{story.index}'s story, line by line ({where}):"]
        out += ["    " + _story_line(line) for line in all_lines
                if line.get("request_id") == story.request_id]
    for r in rows if every else [story] if story is not None else []:
        out += [f"  #{r.index}'s summary line:", "  " + json.dumps(calls[r.request_id], ensure_ascii=False)]
    return out


def to_json(result: DemoResult) -> dict[str, Any]:
    """The run as plain data (``llmchain demo --json``)."""
    return {
        "seed": result.seed,
        "scenes": [scene.name for scene in result.scenes],
        "as_designed": result.as_designed,
        "problems": result.problems,
        "log_file": str(result.log_path),
        "summary": summarize(result),
        "requests": [{
            "index": r.index, "scene": r.scene, "prompt": r.prompt, "request_id": r.request_id,
            "outcome": r.outcome, "detail": r.detail, "attempts": [attempt_label(a) for a in r.attempts],
            "backoff_s": round(r.backoff_s, 3), "limiter_wait_s": round(r.limiter_s, 3),
            "cache": r.cache, "repaired": r.repaired, "latency_ms": round(r.latency_s * 1000, 1),
            "error": r.error.explain() if r.error is not None else None,
        } for r in result.rows],
    }
