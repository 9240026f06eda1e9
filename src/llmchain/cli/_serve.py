"""``llmchain serve-mock``: run the loopback fault server in the foreground.

Used to point a real application (or a benchmark in another process) at a misbehaving but
protocol-correct LLM server::

    llmchain serve-mock --port 8011 --fault 503=0.05 --fault latency:0.2=0.1 --seed 7
    llmchain serve-mock --script 429,reset,ok --rpm 600
    llmchain serve-mock --tool-calls '[{"name": "get_weather", "arguments": {"city": "Paris"}}]'
    llmchain serve-mock --default gzip_bomb          # a hostile server (docs/transports.md)

``python -m llmchain.cli._serve`` works too (same options).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import sys
from typing import Any

from ..testing._fault_plan import FaultPlan
from ..testing.fault_server import FaultServer

DESCRIPTION = (
    "Run a real HTTP/1.1 LLM server on this machine that speaks the OpenAI Chat Completions and "
    "Anthropic Messages formats (streaming included) and injects faults from a seeded plan. "
    "Prints the two base URLs, then serves until interrupted."
)


def register(subparsers: Any) -> argparse.ArgumentParser:
    """Add the ``serve-mock`` subcommand to the CLI's subparsers."""
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "serve-mock",
        help="run the loopback fault-injecting LLM server (OpenAI and Anthropic formats)",
        description=DESCRIPTION,
    )
    add_arguments(parser)
    parser.set_defaults(func=run)
    return parser


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=0, help="port (default: a random free port)")
    parser.add_argument("--seed", type=int, default=0, help="seed for fault rates (default 0)")
    parser.add_argument("--fault", action="append", default=[], metavar="FAULT=RATE",
                        help="random fault at a rate, e.g. 503=0.05, reset=0.01, latency:0.2=0.1 "
                             "(repeatable)")
    parser.add_argument("--script", default="", metavar="F1,F2,...",
                        help="faults for the first requests in order, e.g. 429,reset,ok; hostile "
                             "ones too: conflicting_length, bad_length, bad_chunk, huge_head, "
                             "gzip_bomb, unasked_encoding, stale_close, stream_hold_open")
    parser.add_argument("--default", default="ok", help="fault once the script runs out (default ok)")
    parser.add_argument("--latency-ms", type=float, default=0.0, help="latency added to every answer")
    parser.add_argument("--rpm", type=int, default=None, help="server-side requests-per-minute limit")
    parser.add_argument("--tpm", type=int, default=None, help="server-side tokens-per-minute limit")
    parser.add_argument("--content", default="echo",
                        help='answer text; "echo" repeats the last user message (default)')
    parser.add_argument("--json-content", default=None, metavar="JSON",
                        help="answer for structured-output requests (default: built from the schema)")
    parser.add_argument("--tool-calls", default=None, metavar="JSON",
                        help='answer requests that offer tools with these calls, e.g. '
                             '\'[{"name": "get_weather", "arguments": {"city": "Paris"}}]\'; '
                             "a turn that sends tool results back gets the echo of those results")


def build_server(args: argparse.Namespace) -> FaultServer:
    """The FaultServer the parsed arguments describe."""
    rates: list[tuple[str, float]] = []
    for item in args.fault:
        fault, sep, rate = item.rpartition("=")
        if not sep:
            raise SystemExit(f"--fault {item!r}: expected FAULT=RATE, e.g. 503=0.05")
        rates.append((fault, float(rate)))
    script = [s for s in args.script.split(",") if s.strip()]
    try:
        plan = FaultPlan(script, rates=rates, default=args.default, seed=args.seed,
                         latency_s=args.latency_ms / 1000.0)
    except ValueError as exc:
        raise SystemExit(f"serve-mock: {exc}") from None
    json_content = json.loads(args.json_content) if args.json_content else None
    tool_calls = _tool_calls(args.tool_calls) if args.tool_calls else ()
    # no request records: nothing could read them, and a long run would only grow them
    return FaultServer(plan, seed=args.seed, rpm_limit=args.rpm, tpm_limit=args.tpm,
                       content=args.content, json_content=json_content, tool_calls=tool_calls,
                       record=False, host=args.host, port=args.port)


def _tool_calls(text: str) -> list[dict[str, Any]]:
    try:
        calls = json.loads(text)
    except ValueError as exc:
        raise SystemExit(f"serve-mock: --tool-calls is not JSON: {exc}") from None
    if not isinstance(calls, list) or not all(isinstance(c, dict) and isinstance(c.get("name"), str)
                                              for c in calls):
        raise SystemExit('serve-mock: --tool-calls must be a JSON list of {"name": ..., "arguments": {...}}')
    return calls


def run(args: argparse.Namespace) -> int:
    """Serve until interrupted; prints the two base URLs first (one line each, flushed)."""
    server = build_server(args)

    def ready(s: FaultServer) -> None:
        print(f"OpenAI-compatible:  {s.base_url}", flush=True)
        print(f"Anthropic:          {s.anthropic_base_url}", flush=True)
        print(f"plan: {s.plan!r}", file=sys.stderr, flush=True)

    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(server.serve(ready))
    print(f"served {server.request_count} request(s), {server.violations} over the rate limits",
          file=sys.stderr)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="llmchain serve-mock", description=DESCRIPTION)
    add_arguments(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    raise SystemExit(main())
