"""``llmchain report LOGFILE... [-o report.html] [--text]``: the subcommand.

Exit codes: 0 written, 2 bad input (missing file, not an llmchain log, bad option, plotly missing
for the HTML report). Errors are one clear line on stderr, never a traceback.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

EXIT_BAD_INPUT = 2
INSTALL_HINT = "pip install 'llmchain[report]'"


def register(subparsers: Any) -> None:
    """Add the ``report`` subcommand to the ``llmchain`` parser."""
    parser = subparsers.add_parser(
        "report", help="turn JSON log files into an incident report (HTML with charts, or --text)",
        description="Read llmchain's JSON log lines (several files, rotated, .gz; other loggers' "
                    "lines are skipped) and write one self-contained HTML report that opens offline, "
                    "or print the key figures (--text, no plotly needed). It shows only what the "
                    "(already redacted) log holds.")
    parser.add_argument("logfiles", nargs="+", metavar="LOGFILE", help="log files ('-' for stdin)")
    parser.add_argument("-o", "--output", default="llmchain-report.html", metavar="FILE",
                        help="where the HTML report goes (default ./llmchain-report.html)")
    parser.add_argument("--text", action="store_true", help="print a terminal summary instead of HTML")
    parser.add_argument("--since", metavar="TIME", help="keep lines at or after TIME (e.g. 2026-12-05T14:00)")
    parser.add_argument("--until", metavar="TIME", help="keep lines before TIME")
    parser.add_argument("--model", help="keep calls of this model only")
    parser.add_argument("--request-id", metavar="ID", help="keep one request (a prefix is enough)")
    parser.add_argument("--bucket", type=float, metavar="SECONDS",
                        help="time bucket width (default: chosen from the log's span)")
    parser.set_defaults(func=run_command)


def run_command(args: argparse.Namespace) -> int:
    from . import Filters, LogInputError, read_logs, render_text
    from ._read import expand, parse_time_option

    try:
        if args.bucket is not None and not 0.001 <= args.bucket <= 86400 * 7:
            raise LogInputError(f"--bucket {args.bucket:g}: give seconds between 0.001 and 604800")
        if not args.text:
            _require_plotly()
        filters = Filters(
            since=parse_time_option(args.since) if args.since else None,
            until=parse_time_option(args.until) if args.until else None,
            model=args.model, request_id=args.request_id)
        bucket_ms = max(1, round(args.bucket * 1000)) if args.bucket is not None else None
        data = read_logs(expand(args.logfiles), filters, bucket_ms=bucket_ms)
        if args.text:
            print(render_text(data))
            return 0
        from ._html import write_html

        write_html(data, args.output)
    except LogInputError as exc:
        print(f"llmchain report: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except BrokenPipeError:  # `llmchain report LOG --text | head`: the reader had enough
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except OSError as exc:
        print(f"llmchain report: {exc.filename or ''}: {exc.strerror}", file=sys.stderr)
        return EXIT_BAD_INPUT
    out = Path(args.output)
    print(f"wrote {out} ({out.stat().st_size / 1e6:.1f} MB, {data.calls:,} calls): open it in a browser, "
          f"e.g. xdg-open {out}  (works offline; --text prints the key figures here)")
    return 0


def _require_plotly() -> None:
    from . import LogInputError

    try:
        import plotly  # noqa: F401
    except ImportError:
        raise LogInputError(f"the HTML report needs plotly: {INSTALL_HINT} (or use --text, which "
                            "needs nothing more)") from None
