"""``llmchain report``: an incident report from llmchain's JSON log lines.

::

    from llmchain.report import read_logs, render_text, render_html
    data = read_logs(["llmchain.log", "llmchain.log.1.gz"])   # streams; bounded memory
    print(render_text(data))                                  # standard library only
    render_html(data, "report.html")                          # needs llmchain[report] (plotly)

The report shows only what the log holds, and the log stage redacts secrets before writing.
Modules: ``_read`` (files, gzip, foreign and truncated lines), ``_sketch`` (quantile histogram,
top-N), ``_aggregate`` + ``_data`` (time buckets per model), ``_story`` (a call's story), ``_text``
and ``_html`` (the two renderings), ``_cli`` (the subcommand).
"""

from __future__ import annotations

from collections.abc import Sequence

from ._aggregate import Aggregator
from ._data import ReportData
from ._read import Filters, LogInputError, ReadStats, read_records
from ._text import figures, render_text

__all__ = ["Filters", "LogInputError", "ReportData", "figures", "read_logs", "render_html", "render_text"]


def read_logs(paths: Sequence[str], filters: Filters | None = None, *,
              bucket_ms: int | None = None) -> ReportData:
    """Stream the log files (plain or gzip, oldest first) into a bounded summary."""
    filters = filters or Filters()
    stats = ReadStats()
    aggregator = Aggregator(stats, filters, bucket_ms=bucket_ms)
    return aggregator.add_all(read_records(paths, stats, filters))


def render_html(data: ReportData, path: str) -> None:
    """Write the self-contained HTML report to ``path`` (needs plotly: ``llmchain[report]``)."""
    from ._html import write_html

    write_html(data, path)
