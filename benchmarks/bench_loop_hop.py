"""What seeing idle keep-alive closes costs a sync call, for the two designs weighed in issue 15:
the main thread's own persistent loop (no thread hop) as before, with the catch-up step it now
takes (``_loop._caught_up``: two non-blocking loop iterations before each call), and the
alternative of handing every sync call to the always-running loop thread. Same process,
interleaved rounds, medians.

Usage::

    .venv/bin/python benchmarks/bench_loop_hop.py [--rounds 5] [--calls 20000]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))


async def nothing() -> int:
    return 1


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--calls", type=int, default=20000)
    args = p.parse_args()
    from llmchain import Chain
    from llmchain._loop import LOOP
    from llmchain.testing import MockTransport

    main_loop = asyncio.new_event_loop()
    chain = Chain([], MockTransport())

    from llmchain._loop import _caught_up

    def before(coro: Any) -> Any:
        return main_loop.run_until_complete(coro)

    def caught_up(coro: Any) -> Any:
        return main_loop.run_until_complete(_caught_up(coro))

    ways = {"main-thread loop, as before issue 15": before,
            "main-thread loop + catch-up (now)": caught_up,
            "loop thread (the alternative)": LOOP.run_in_thread}
    contenders: dict[str, Callable[[], Any]] = {}
    for way, run in ways.items():
        contenders[f"empty coroutine, {way}"] = lambda run=run: run(nothing())
    for way, run in ways.items():
        contenders[f"Chain([], mock), {way}"] = lambda run=run: run(chain.acomplete("hi"))
    results: dict[str, list[tuple[float, float]]] = {name: [] for name in contenders}
    for r in range(args.rounds):
        for name, fn in (list(contenders.items()) if r % 2 == 0 else list(contenders.items())[::-1]):
            for _ in range(200):
                fn()
            t0, c0 = time.perf_counter(), time.process_time()
            for _ in range(args.calls):
                fn()
            results[name].append(((time.perf_counter() - t0) / args.calls * 1e6,
                                  (time.process_time() - c0) / args.calls * 1e6))
    print(f"medians of {args.rounds} interleaved rounds of {args.calls:,} calls\n")
    print("| sync call | wall µs/call | CPU µs/call (both threads) |")
    print("|---|---:|---:|")
    for name, runs in results.items():
        print(f"| {name} | {statistics.median(w for w, _ in runs):.1f} | "
              f"{statistics.median(c for _, c in runs):.1f} |")


if __name__ == "__main__":
    main()
