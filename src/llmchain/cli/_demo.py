"""``llmchain demo``: the default chain against a local fault-injecting server, offline.

Exit codes: 0 the demo ran as designed (its failing requests failed on purpose, as expected),
1 something did not go as designed (listed at the end), 2 usage error.
``python -m llmchain.cli._demo`` works too (same options).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from typing import Any

from ..demo._scenes import SCENE_NAMES, SCENES

EXIT_NOT_AS_DESIGNED = 1

DESCRIPTION = """\
Start a local LLM server that misbehaves on purpose (503s, resets, a 429 with Retry-After, a
hang, broken JSON, wrong fields), send a few dozen requests through the default chain
(log, cache, repair, validate, parse, retry, rate_limit, timeout) over the real openai
transport, and show per request what happened and which stage did it. No network, no API key;
timeouts and backoffs are demo-sized, so it takes a few seconds. The JSON log lines go to a
file (--log). Scenes, for --only:
""" + "\n".join(f"  {s.name:<14}{s.title}" for s in SCENES)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--only", choices=SCENE_NAMES, metavar="SCENE",
                        help="run one scene and show every failure's .explain() and every log "
                             "summary line (circuit-open adds a circuit_breaker stage)")
    parser.add_argument("--seed", type=int, default=0,
                        help="seed for the background traffic's faults and the retry jitter (default 0)")
    parser.add_argument("--log", default="llmchain-demo.log", metavar="FILE",
                        help="where the JSON log lines go, overwritten (default ./llmchain-demo.log)")
    parser.add_argument("--json", action="store_true", help="print the run as one JSON document")


def register(subparsers: Any) -> None:
    """Add the ``demo`` subcommand to the ``llmchain`` parser (called by ``llmchain.cli``)."""
    parser = subparsers.add_parser(
        "demo",
        help="offline tour: the default chain against a fault-injecting local server",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_arguments(parser)
    parser.set_defaults(func=run_command)


def run_command(args: argparse.Namespace) -> int:
    """Run the demo the parsed ``args`` describe; returns the exit code."""
    from ..demo import run_demo
    from ..demo._report import render_text, to_json

    result = run_demo(seed=args.seed, only=args.only, log_path=args.log)
    if args.json:
        print(json.dumps(to_json(result), indent=2, ensure_ascii=False))
    else:
        print(render_text(result, explain_all=args.only is not None))
    return 0 if result.as_designed else EXIT_NOT_AS_DESIGNED


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m llmchain.cli._demo [...]``: the subcommand on its own."""
    parser = argparse.ArgumentParser(prog="llmchain demo", description=DESCRIPTION,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    add_arguments(parser)
    return run_command(parser.parse_args(argv))


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
