"""``llmchain batch INPUT.jsonl OUTPUT.jsonl``: the command-line face of ``llmchain.batch``.

Exit codes: 0 every record in the output succeeded, 1 some are error records, 2 usage or config
error, 130/143 stopped by SIGINT/SIGTERM (rerun the same command to resume). A second signal
exits at once; the output is still consistent, as after ``kill -9``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import sys
from collections.abc import Sequence
from typing import Any

EXIT_SOME_FAILED = 1
EXIT_USAGE = 2

DESCRIPTION = """\
Send every record of a JSON Lines file through the chain, with bounded concurrency, and append
one result line per record to OUTPUT as calls complete (not in input order). Input records:
{"id": ..., "prompt": "..."} or {"id": ..., "messages": [{"role": ..., "content": ...}]},
optionally with model, temperature, max_tokens, system, stop, seed, top_p, timeout_s, metadata,
schema. Rerunning the same command resumes: ids already in OUTPUT are skipped, also after a
crash or kill -9. See docs/batch.md."""


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("input", metavar="INPUT.jsonl", help="records to send, one JSON object per line")
    parser.add_argument("output", metavar="OUTPUT.jsonl", help="results, appended; reused to resume")
    parser.add_argument(
        "--config",
        help="TOML config (default: $LLMCHAIN_CONFIG, ./llmchain.toml, else the built-in offline chain)",
    )
    parser.add_argument(
        "--concurrency", type=_positive_int, default=16, metavar="N", help="calls in flight (default 16)"
    )
    parser.add_argument(
        "--retry-failed",
        action="store_true",
        help="drop earlier error records from OUTPUT first, so those records are sent again",
    )
    parser.add_argument("--quiet", "-q", action="store_true", help="no progress line or summary")


def register(subparsers: Any) -> None:
    """Add the ``batch`` subcommand to the ``llmchain`` parser (called by ``llmchain.cli``)."""
    parser = subparsers.add_parser(
        "batch",
        help="run a JSONL file of prompts through the chain (resumable)",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_arguments(parser)
    parser.set_defaults(func=run_command)


def run_command(args: argparse.Namespace) -> int:
    """Run the batch described by parsed ``args``; returns the exit code."""
    from .._chain import Chain
    from .._defaults import find_config

    chain = Chain.from_config(find_config(args.config))  # ConfigError: the caller maps it to 2
    try:
        return asyncio.run(_run(args, chain))
    except KeyboardInterrupt:  # only where loop signal handlers are unavailable (Windows)
        return 128 + signal.SIGINT


async def _run(args: argparse.Namespace, chain: Any) -> int:
    from ..batch import run_batch

    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    received: list[int] = []

    def on_signal(signum: int) -> None:
        if received:  # second signal: leave now; the output is as consistent as after kill -9
            os._exit(128 + signum)
        received.append(signum)
        stop.set()

    handled = []
    for signum in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):  # Windows: no loop handlers
            loop.add_signal_handler(signum, on_signal, signum)
            handled.append(signum)
    try:
        summary = await run_batch(
            args.input,
            args.output,
            chain,
            concurrency=args.concurrency,
            progress=None if args.quiet else sys.stderr,
            retry_failed=args.retry_failed,
            stop=stop,
        )
    finally:
        for signum in handled:
            loop.remove_signal_handler(signum)
        await chain.aclose()
    if received:
        name = signal.Signals(received[0]).name
        print(
            f"llmchain batch: stopped by {name}: {summary.describe()}; {summary.cancelled} call(s) in "
            f"flight were cancelled and not written. Rerun the same command to resume: records "
            f"already in {summary.output} are skipped.",
            file=sys.stderr,
        )
        return 128 + received[0]
    if not args.quiet:
        print(f"llmchain batch: {summary.describe()} → {summary.output}", file=sys.stderr)
    return 0 if summary.all_ok else EXIT_SOME_FAILED


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m llmchain.cli._batch INPUT OUTPUT [...]``: the subcommand on its own."""
    from .._exceptions import ConfigError, PluginError

    parser = argparse.ArgumentParser(
        prog="llmchain batch", description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    add_arguments(parser)
    args = parser.parse_args(argv)
    try:
        return run_command(args)
    except (ConfigError, PluginError) as exc:
        print(f"{type(exc).__name__}: {exc}", file=sys.stderr)
        return EXIT_USAGE


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
