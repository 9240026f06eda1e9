"""``llmchain report --text``: the key figures in the terminal, in the style of the demo's summary.

Needs nothing beyond the standard library (no plotly): for people on a server.
"""

from __future__ import annotations

from typing import Any

from ._data import COUNTERS, ReportData
from ._read import format_time

SECRETS_NOTE = ("This report shows only what the log holds; the log stage redacts secrets before "
                "writing, and prompts/answers appear only if include_bodies was on.")


def _fmt_ms(value: float | None) -> str:
    return "-" if value is None else f"{value:,.0f} ms" if value >= 10 else f"{value:.1f} ms"


def _span(data: ReportData) -> str:
    if data.first_t is None or data.last_t is None:
        return "no timestamps"
    seconds = data.last_t - data.first_t
    return f"{format_time(data.first_t)} → {format_time(data.last_t)[11:]} ({seconds:,.1f} s)"


def bucket_label(ms: int) -> str:
    if ms < 1000:
        return f"{ms} ms"
    if ms < 60_000:
        return f"{ms / 1000:g} s"
    return f"{ms / 60_000:g} min" if ms < 3_600_000 else f"{ms / 3_600_000:g} h"


def figures(data: ReportData) -> dict[str, Any]:
    """The headline numbers of the whole selection (the page computes the same in the browser)."""
    t = dict(zip(COUNTERS, data.totals(), strict=True))
    lookups = t["cache_hits"] + t["cache_misses"]
    return {
        **{k: (round(v, 10) if k == "cost_usd" else round(v, 3) if k.endswith("_s") else int(v))
           for k, v in t.items()},
        "cache_hit_rate": t["cache_hits"] / lookups if lookups else None,
        "p50_ms": data.overall.quantile(0.5), "p95_ms": data.overall.quantile(0.95),
        "p99_ms": data.overall.quantile(0.99), "max_ms": data.overall.max if data.overall.count else None,
    }


def _peak(data: ReportData, counter: str) -> tuple[float, int] | None:
    """(minute start, count) of the minute (or bucket, if wider) with most of ``counter``."""
    index = COUNTERS.index(counter)
    width = max(data.bucket_ms, 60_000)
    per: dict[int, float] = {}
    for key, per_model in data.buckets.items():
        minute = key // width * width
        per[minute] = per.get(minute, 0) + sum(b.counts[index] for b in per_model.values())
    if not per or max(per.values()) == 0:
        return None
    minute = max(per, key=lambda k: per[k])
    return minute / 1000, int(per[minute])


def render_text(data: ReportData, *, stories: int = 3) -> str:
    s, st = figures(data), data.stats
    files = ", ".join(st.files)
    out = [f"llmchain report: {files}",
           f"  {st.lines:,} lines: {data.calls:,} calls (llm.call), {data.debug_lines:,} debug lines; "
           f"{st.foreign_lines:,} foreign lines skipped, {st.truncated_lines} truncated, "
           f"{st.damaged_lines} damaged" + (f", {st.filtered_out:,} filtered out" if st.filtered_out else ""),
           f"  {_span(data)}; time buckets of {bucket_label(data.bucket_ms)}",
           f"  {SECRETS_NOTE}", ""]
    if data.calls == 0:
        return "\n".join([*out, "No llm.call summary lines match: nothing to summarise."])
    outcomes = [f"{s['ok']:,} ok ({s['from_cache']:,} from the cache, {s['ok_retried']:,} after retries)",
                f"{s['errors']:,} failed"] + ([f"{s['cancelled']:,} cancelled"] if s["cancelled"] else [])
    rate = s["cache_hit_rate"]
    out += [f"Summary: {data.calls:,} calls: {', '.join(outcomes)}",
            f"  {s['attempts']:,} attempts ({s['retries']:,} retries): {s['http_5xx']:,} 5xx, "
            f"{s['http_429']:,} 429, {s['timeouts']:,} timed out",
            f"  rate limit: {s['pauses']:,} provider pauses ({s['pause_s']:.1f} s), {s['limiter_waits']:,} "
            f"calls waited for the limiter ({s['limiter_wait_s']:.1f} s)",
            f"  cache hits {s['cache_hits']:,} of {s['cache_hits'] + s['cache_misses']:,} lookups "
            f"({'-' if rate is None else f'{rate:.0%}'}; {s['coalesced']:,} coalesced), repairs "
            f"{s['repairs_local']:,} local, {s['repairs_reask']:,} re-ask, {s['repairs_gave_up']:,} gave up",
            f"  latency p50 {_fmt_ms(s['p50_ms'])}, p95 {_fmt_ms(s['p95_ms'])}, p99 {_fmt_ms(s['p99_ms'])}, "
            f"max {_fmt_ms(s['max_ms'])}",
            f"  tokens {s['tokens_in']:,} in / {s['tokens_out']:,} out, cost ${s['cost_usd']:.4f}"]
    if data.calls_without_debug:
        out.append(f"  {data.calls_without_debug:,} call(s) had no DEBUG lines: their retries/429s/"
                   "timeouts are estimated from the summary line")
    if data.unfinished:
        out.append(f"  {data.unfinished:,} request(s) have debug lines but no summary line (still "
                   "running when the log ends, or cut off)")
    peaks = [(label, _peak(data, name)) for label, name in
             (("429s", "http_429"), ("errors", "errors"), ("retries", "retries"))]
    shown = [f"{label} {n:,} at {format_time(t)[11:16]}" for label, p in peaks if p for t, n in [p]]
    if shown:
        out.append("  worst minute: " + ", ".join(shown))
    out += ["", "Per model:", f"  {'model':<24}{'calls':>9}{'failed':>8}{'p50':>10}{'p95':>10}"
            f"{'tokens in':>12}{'out':>10}{'cost $':>11}"]
    for model in data.models:
        m = dict(zip(COUNTERS, data.totals(model), strict=True))
        hist = data.model_hist[model]
        out.append(f"  {model[:23]:<24}{int(m['calls']):>9,}{int(m['errors']):>8,}"
                   f"{_fmt_ms(hist.quantile(0.5)):>10}{_fmt_ms(hist.quantile(0.95)):>10}"
                   f"{int(m['tokens_in']):>12,}{int(m['tokens_out']):>10,}{m['cost_usd']:>11.4f}")
    kinds = sorted(data.kinds.items(), key=lambda kv: -kv[1])
    if kinds:
        out += ["", "Top error kinds:"]
        for kind, n in kinds[:10]:
            found = data.samples.get(kind)
            out.append(f"  {n:>7,}x {kind}   e.g. {found[0].request_id[:8] if found else '-'}")
    out += ["", "Slowest calls:", *_table(data, "slowest"),
            "", "Costliest calls:", *_table(data, "costliest")]
    for sample in data.requested:
        out += ["", f"Story of {sample.request_id} (--request-id), rebuilt from the log:",
                *("  " + line for line in sample.story)]
    for kind, _ in kinds[:stories]:
        for sample in data.samples.get(kind, [])[:1]:
            out += ["", f"Story of {sample.request_id[:8]} ({kind}), rebuilt from the log:",
                    *("  " + line for line in sample.story)]
    return "\n".join(out)


def top_rows(data: ReportData, which: str, n: int = 10) -> list[dict[str, Any]]:
    """The n slowest (or costliest) calls over every model."""
    tables = data.slowest if which == "slowest" else data.costliest
    key = "latency_ms" if which == "slowest" else "cost_usd"
    rows = [row for table in tables.values() for row in table.items()]
    return sorted(rows, key=lambda r: -(r.get(key) or 0))[:n]


def _table(data: ReportData, which: str) -> list[str]:
    rows = top_rows(data, which, 5)
    if not rows:
        return ["  (none)"]
    out = []
    for r in rows:
        when = format_time(r["time"], with_ms=True)[11:] if r["time"] is not None else "?"
        cost = r.get("cost_usd")
        out.append(f"  {when}  {str(r['request_id'])[:8]:<9}{r['model'][:20]:<21}{str(r['outcome'])[:22]:<23}"
                   f"{_fmt_ms(r['latency_ms']):>10}  {r['attempts']} att  "
                   f"{'-' if cost is None else f'${cost:.6f}'}")
    return out
