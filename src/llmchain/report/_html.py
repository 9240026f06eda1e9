"""The HTML report: one self-contained file, plotly.js inlined once, the aggregates embedded as JSON.

The page draws its charts in the browser from the embedded aggregates (``_page.js``), so its
filters (time window, model, request id) recompute every chart without a server; nothing is
fetched from the network. Its size does not grow with the log: buckets, tables and samples are
bounded by the aggregator.
"""

from __future__ import annotations

import json
import os
import re
from importlib import resources
from typing import Any

from ._data import COUNTERS, WIDTHS_MS, ReportData
from ._read import format_time
from ._sketch import GAMMA
from ._text import SECRETS_NOTE, bucket_label

_MARKER = re.compile(r"\{\{[A-Z_]+\}\}")
CHART_IDS = ("timeline", "latency", "attempts", "cache", "repairs", "cost_time", "tokens_time", "per_model",
             "errors")


def payload(data: ReportData) -> dict[str, Any]:
    """The aggregates as plain JSON for the page."""
    models = data.models
    model_index = {m: i for i, m in enumerate(models)}
    kinds = [k for k, _ in sorted(data.kinds.items(), key=lambda kv: -kv[1])]
    kind_index = {k: i for i, k in enumerate(kinds)}
    buckets = []
    for key in sorted(data.buckets):
        for model, b in data.buckets[key].items():
            if model not in model_index:  # debug lines of unfinished calls of no known model
                model_index[model] = len(models)
                models.append(model)
            buckets.append([key, model_index[model], [round(c, 10) for c in b.counts],
                            sorted(b.hist.items()), [[kind_index[k], n] for k, n in b.kinds.items()]])

    def rows(tables: dict[str, Any]) -> list[dict[str, Any]]:
        out = [dict(r, time=None if r["time"] is None else round(r["time"] * 1000))
               for t in tables.values() for r in t.items()]
        return out

    st = data.stats
    return {
        "meta": {
            "files": st.files, "lines": st.lines, "calls": data.calls, "debug_lines": data.debug_lines,
            "foreign": st.foreign_lines, "truncated": st.truncated_lines, "damaged": st.damaged_lines,
            "filtered_out": st.filtered_out, "unfinished": data.unfinished,
            "calls_without_debug": data.calls_without_debug,
            "first": format_time(data.first_t) if data.first_t is not None else None,
            "last": format_time(data.last_t) if data.last_t is not None else None,
            "bucket_ms": data.bucket_ms, "bucket_label": bucket_label(data.bucket_ms),
            "cli_filters": {k: v for k, v in vars(data.filters).items() if v is not None},
            "secrets_note": SECRETS_NOTE,
        },
        "counters": list(COUNTERS), "widths": list(WIDTHS_MS), "gamma": GAMMA,
        "models": models, "kinds": kinds,
        "buckets": buckets, "slowest": rows(data.slowest), "costliest": rows(data.costliest),
        "requested": [{"request_id": s.request_id, "model": s.model, "story": "\n".join(s.story),
                       "time": None if s.time is None else round(s.time * 1000)} for s in data.requested],
        "samples": {str(kind_index[k]): [{"request_id": s.request_id, "model": s.model,
                                          "time": None if s.time is None else round(s.time * 1000),
                                          "story": "\n".join(s.story)} for s in samples]
                    for k, samples in data.samples.items()},
    }


def _script_json(value: Any) -> str:
    """JSON safe inside a <script> element (no "</script>" or "<!--" can end it early)."""
    return json.dumps(value, ensure_ascii=False, separators=(",", ":")).replace("<", "\\u003c")


def render_page(data: ReportData, plotly_js: str) -> str:
    package = resources.files(__package__ or "llmchain.report")
    template = (package / "_page.html").read_text(encoding="utf-8")
    page_js = (package / "_page.js").read_text(encoding="utf-8")
    title = f"llmchain report: {', '.join(os.path.basename(f) for f in data.stats.files)}"
    parts = {
        "{{TITLE}}": _escape(title),
        "{{SECRETS_NOTE}}": _escape(SECRETS_NOTE),
        "{{EXPECTED}}": str(len(CHART_IDS)),
        "{{DATA}}": _script_json(payload(data)),
        "{{PAGE_JS}}": page_js,
        "{{PLOTLY_JS}}": plotly_js.replace("</script", "<\\/script"),
    }
    # one pass over the template: text from the log is never scanned for markers
    return _MARKER.sub(lambda m: parts[m.group(0)], template)


def _escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace('"', "&quot;")


def write_html(data: ReportData, path: str) -> None:
    """Render and write the report (0600: it may hold request ids and error texts)."""
    from plotly.offline import get_plotlyjs

    page = render_page(data, get_plotlyjs())
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        out.write(page)
