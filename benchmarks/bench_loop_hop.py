"""What the sync facade costs a call: the one design now (``_loop.LOOP.run``: one shared loop,
driven by the calling thread) against the two it replaced and the alternative weighed for
issue 17, each reproduced here on a loop of its own:

* old, main thread: the main thread's own persistent loop, ``run_until_complete`` with the
  catch-up step (two ``asyncio.sleep(0)`` before each call, to see idle keep-alive closes);
* old, other threads and Jupyter: a loop running forever on a daemon thread, each call handed
  to it with ``asyncio.run_coroutine_threadsafe``;
* not chosen: that always-running loop thread for every call, handed over with a callback and a
  lock (cheaper than ``run_coroutine_threadsafe``): the expected single design of issue 17.

Two workloads in process (an empty coroutine; ``Chain([], mock)``) and two over HTTP to the fault
server in its own process (``Chain([])`` and the full default chain on the ``openai``
transport, every call a new prompt, so the cache misses). Same process, interleaved rounds,
medians; "CPU" is this process's, both threads.

Usage::

    .venv/bin/python benchmarks/bench_loop_hop.py [--rounds 5] [--calls 20000] [--http-calls 1000]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import threading
import time
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))


async def nothing() -> int:
    return 1


async def caught_up(coro: Coroutine[Any, Any, Any]) -> Any:
    """The old main-thread path's catch-up: two non-blocking loop iterations, then the call."""
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    return await coro


class LoopThread:
    """A loop running forever on a daemon thread (the old path for other threads, and the
    design not chosen for every thread)."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        ready = threading.Event()

        def run() -> None:
            asyncio.set_event_loop(self.loop)
            self.loop.call_soon(ready.set)
            self.loop.run_forever()

        threading.Thread(target=run, daemon=True).start()
        ready.wait()

    def run_coroutine_threadsafe(self, coro: Coroutine[Any, Any, Any]) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result()

    def run_with_lock(self, coro: Coroutine[Any, Any, Any]) -> Any:
        done = threading.Lock()
        done.acquire()
        tasks: list[asyncio.Task[Any]] = []

        def start() -> None:
            task = self.loop.create_task(coro)
            task.add_done_callback(lambda _: done.release())
            tasks.append(task)

        self.loop.call_soon_threadsafe(start)
        done.acquire()
        return tasks[0].result()


def measure(contenders: dict[str, Callable[[], Any]], rounds: int, calls: int, warmup: int
            ) -> dict[str, list[tuple[float, float]]]:
    results: dict[str, list[tuple[float, float]]] = {name: [] for name in contenders}
    for r in range(rounds):
        for name, fn in (list(contenders.items()) if r % 2 == 0 else list(contenders.items())[::-1]):
            for _ in range(warmup):
                fn()
            t0, c0 = time.perf_counter(), time.process_time()
            for _ in range(calls):
                fn()
            results[name].append(((time.perf_counter() - t0) / calls * 1e6,
                                  (time.process_time() - c0) / calls * 1e6))
    return results


def table(results: dict[str, list[tuple[float, float]]], baseline: str | None = None) -> None:
    print("| sync call | wall µs/call | CPU µs/call (both threads) |"
          + (" wall ratio | CPU ratio |" if baseline else ""))
    print("|---|---:|---:|" + ("---:|---:|" if baseline else ""))
    base = (statistics.median(w for w, _ in results[baseline]),
            statistics.median(c for _, c in results[baseline])) if baseline else None
    for name, runs in results.items():
        wall, cpu = statistics.median(w for w, _ in runs), statistics.median(c for _, c in runs)
        ratios = f" {wall / base[0]:.2f} | {cpu / base[1]:.2f} |" if base else ""
        print(f"| {name} | {wall:,.1f} | {cpu:,.1f} |{ratios}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--calls", type=int, default=20000)
    p.add_argument("--http-calls", type=int, default=1000, help="0: skip the HTTP part")
    args = p.parse_args()
    from llmchain import Chain
    from llmchain._loop import LOOP
    from llmchain.testing import MockTransport

    main_loop = asyncio.new_event_loop()
    loop_thread = LoopThread()

    def old_main_thread(coro: Any) -> Any:
        return main_loop.run_until_complete(caught_up(coro))

    ways: dict[str, Callable[[Any], Any]] = {
        "now: the calling thread drives the shared loop (LOOP.run)": LOOP.run,
        "old, main thread: its own loop + catch-up": old_main_thread,
        "old, other threads: loop thread, run_coroutine_threadsafe": loop_thread.run_coroutine_threadsafe,
        "not chosen: loop thread for every call, callback + lock": loop_thread.run_with_lock,
    }
    chain = Chain([], MockTransport())
    contenders: dict[str, Callable[[], Any]] = {}
    for way, run in ways.items():
        contenders[f"empty coroutine, {way}"] = lambda run=run: run(nothing())
    for way, run in ways.items():
        contenders[f"Chain([], mock), {way}"] = lambda run=run: run(chain.acomplete("hi"))
    print(f"In process: medians of {args.rounds} interleaved rounds of {args.calls:,} calls\n")
    table(measure(contenders, args.rounds, args.calls, 200))
    if args.http_calls:
        http(args, ways)


def http(args: argparse.Namespace, ways: dict[str, Callable[[Any], Any]]) -> None:
    import json

    import httpx
    from common import HEADERS, MODEL, Counter, Server, configure_log, full_chain_config, wait_tokenizer

    from llmchain import Chain

    configure_log("null")
    with Server() as server:
        prompts = Counter()
        client = httpx.Client()
        bare = Chain([], {"use": "openai", "base_url": server.base_url, "api_key_env": "", "model": MODEL})
        full = Chain.from_config(full_chain_config(server.base_url))
        wait_tokenizer(full)

        def raw_httpx() -> Any:
            r = client.post(server.url, content=prompts.body(), headers=HEADERS)
            return json.loads(r.content)["choices"][0]["message"]["content"]

        contenders: dict[str, Callable[[], Any]] = {"raw httpx.Client (baseline)": raw_httpx}
        for label, chain in (("Chain([])", bare), ("full default chain", full)):
            for way, run in ways.items():
                contenders[f"{label}, {way}"] = (
                    lambda run=run, chain=chain: run(chain.acomplete(prompts.next())))
        results = measure(contenders, args.rounds, args.http_calls, 100)
        client.close()
        bare.close()  # each pool on its own loop; an idle loop's closes run when it runs again
        full.close()
        ways["old, main thread: its own loop + catch-up"](asyncio.sleep(0.01))
    print(f"\nOver HTTP (fault server in its own process): medians of {args.rounds} interleaved "
          f"rounds of {args.http_calls:,} calls, each a new prompt\n")
    table(results, baseline="raw httpx.Client (baseline)")


if __name__ == "__main__":
    main()
