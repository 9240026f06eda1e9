"""What the sync facade costs a call: the one design now (every sync call handed to llmchain's
always-running loop thread, ``_loop.LOOP.run``) against the two it replaced, reproduced here:
the main thread's own persistent loop driven by ``run_until_complete`` with the catch-up step
that let it see idle keep-alive closes (two ``asyncio.sleep(0)`` before each call), and the old
hand-over to the loop thread through ``asyncio.run_coroutine_threadsafe`` (other threads and
Jupyter). The main-thread loop without the catch-up (before issue 15; it missed idle closes)
is the floor. Same process, interleaved rounds, medians; "CPU" counts both threads.

Usage::

    .venv/bin/python benchmarks/bench_loop_hop.py [--rounds 5] [--calls 20000]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))


async def nothing() -> int:
    return 1


async def caught_up(coro: Coroutine[Any, Any, Any]) -> Any:
    """The removed ``_loop._caught_up``: two non-blocking loop iterations, then the call."""
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    return await coro


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

    def main_thread_loop(coro: Any) -> Any:
        return main_loop.run_until_complete(coro)

    def main_thread_loop_caught_up(coro: Any) -> Any:
        return main_loop.run_until_complete(caught_up(coro))

    def run_coroutine_threadsafe(coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, LOOP.loop()).result()

    ways: dict[str, Callable[[Any], Any]] = {
        "main-thread loop, no catch-up (before issue 15; missed idle closes)": main_thread_loop,
        "main-thread loop + catch-up (old design, main thread)": main_thread_loop_caught_up,
        "loop thread via run_coroutine_threadsafe (old design, other threads)": run_coroutine_threadsafe,
        "loop thread via LOOP.run (now, every thread)": LOOP.run,
    }
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
