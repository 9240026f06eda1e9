"""Peak memory at 10,000 in-flight requests: bytes per request in flight, the full default
chain against raw aiohttp.

The fault server (its own process) holds every answer for ``--hold-ms`` (a plan with added
latency), so that all ``--inflight`` requests, started at once, are in flight together. Each
measurement is a fresh client process (its peak RSS is its own): it imports everything, makes
a few warm-up calls, collects garbage, notes its RSS, starts all requests, and reports the peak
RSS (``ru_maxrss``) and the most requests in flight at one time (a client with a connection
pool answers in waves: after two holds the rest are cancelled, their peak behind them); a
second run of the same contender does it under ``tracemalloc`` for the Python-heap peak.
Per-request bytes = (peak - RSS before) / requests in flight. Contenders: raw aiohttp (one
``ClientSession``, no connection limit: one socket per request), the full default chain with
its default pool (256 connections; the other requests queue in the chain), and the full default
chain with no connection limit (one socket per request, like the baseline). Rounds interleaved;
medians reported.

Usage::

    .venv/bin/python benchmarks/bench_memory.py                      # 10,000 in flight, 2 rounds
    .venv/bin/python benchmarks/bench_memory.py --quick              # 500 in flight, < 10 s
"""

from __future__ import annotations

import asyncio
import gc
import json
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import (
    HEADERS,
    Counter,
    Report,
    Samples,
    Server,
    command_line,
    fmt,
    parser,
    rounds,
    table,
)

BASELINE = "aiohttp (no connection limit): baseline"
CONTENDERS = {
    "aiohttp": BASELINE,
    "chain": "full default chain (default pool: 256 connections)",
    "chain-unlimited": "full default chain, max_connections = 0 (one socket per request)",
}


def rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize()


async def measure(kind: str, base_url: str, inflight: int, hold_s: float,
                  trace: bool) -> dict[str, Any]:
    """In the child process: start ``inflight`` requests at once and watch memory."""
    import tracemalloc

    prompts = Counter()
    current = peak = 0
    call: Any
    close: Any
    if kind == "aiohttp":
        import aiohttp

        session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0))
        url = base_url + "/chat/completions"

        async def call() -> Any:
            async with session.post(url, data=prompts.body(), headers=HEADERS) as r:
                return json.loads(await r.read())["choices"][0]["message"]["content"]
        close = session.close
    else:
        from common import configure_log, full_chain_config, wait_tokenizer

        from llmchain import Chain

        configure_log("null")
        extra = {"max_connections": 0} if kind == "chain-unlimited" else {}
        chain = Chain.from_config(full_chain_config(base_url, **extra))
        wait_tokenizer(chain)

        async def call() -> Any:
            return (await chain.acomplete(prompts.next())).text
        close = chain.aclose

    async def tracked() -> None:
        nonlocal current, peak
        current += 1
        peak = max(peak, current)
        try:
            await call()
        finally:
            current -= 1

    await asyncio.gather(*(call() for _ in range(3)))  # everything imported and warm
    gc.collect()
    before = rss_bytes()
    if trace:
        tracemalloc.start()
    t0 = time.perf_counter()
    tasks = [asyncio.ensure_future(tracked()) for _ in range(inflight)]
    # every request is in flight once all have started; the peak comes then or while the first
    # answers arrive. A pooled client answers in waves (one hold per pool's worth): after two
    # holds the rest are cancelled, their peak is behind them.
    done, pending = await asyncio.wait(tasks, timeout=2 * hold_s)
    elapsed = time.perf_counter() - t0
    heap_peak = tracemalloc.get_traced_memory()[1] if trace else 0
    if trace:
        tracemalloc.stop()
    for task in pending:
        task.cancel()
    await asyncio.gather(*pending, return_exceptions=True)
    failures = [t.exception() for t in done if t.exception() is not None]
    await close()
    return {"before": before, "peak_rss": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
            "heap_peak": heap_peak, "max_inflight": peak, "elapsed_s": elapsed,
            "answered": len(done) - len(failures), "failures": len(failures),
            "first_failure": repr(failures[0]) if failures else None}


def child(kind: str, base_url: str, inflight: int, hold_s: float, trace: bool) -> dict[str, Any]:
    out = subprocess.run([sys.executable, __file__, "--child", kind, base_url, str(inflight),
                          str(hold_s), "1" if trace else "0"], capture_output=True, text=True,
                         timeout=600)
    if out.returncode != 0:
        raise RuntimeError(f"{kind} child failed:\n{out.stderr[-3000:]}")
    result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def main(argv: list[str] | None = None) -> Report:
    p = parser(__doc__)
    p.add_argument("--inflight", type=int, default=None, help="requests in flight at once")
    p.add_argument("--hold-ms", type=int, default=None, help="latency the server adds to each answer")
    args = p.parse_args(argv)
    args.rounds = args.rounds or (1 if args.quick else 2)
    args.inflight = args.inflight or (500 if args.quick else 10_000)
    args.hold_ms = args.hold_ms or (1000 if args.quick else 5000)

    samples = Samples()
    with Server("--latency-ms", str(args.hold_ms)) as server:
        for r in rounds(args.rounds):
            kinds = [k for k in CONTENDERS if not (args.quick and k == "chain")]
            for kind in kinds if r % 2 == 0 else kinds[::-1]:
                rss = child(kind, server.base_url, args.inflight, args.hold_ms / 1000, False)
                heap = rss if args.quick else child(kind, server.base_url, args.inflight,
                                                    args.hold_ms / 1000, True)
                if rss["failures"] or heap["failures"]:
                    print(f"  {kind}: {rss['failures']} + {heap['failures']} failed calls, e.g. "
                          f"{rss['first_failure'] or heap['first_failure']}", file=sys.stderr)
                samples.add(CONTENDERS[kind], (
                    (rss["peak_rss"] - rss["before"]) / rss["max_inflight"],
                    heap["heap_peak"] / heap["max_inflight"] if heap is not rss else float("nan"),
                    rss["max_inflight"], rss["peak_rss"], rss["answered"],
                    rss["failures"] + heap["failures"]))

    report = Report(f"Peak memory at {args.inflight:,} in-flight requests", command_line(
        "bench_memory.py", args, ["quick", "rounds", "inflight", "hold_ms"]))
    base_rss, base_heap = samples.median(BASELINE, 0), samples.median(BASELINE, 1)
    if args.quick:
        report.add("Quick run: no tracemalloc runs (n/a), and no default-pool row.", "")
    rows = []
    for name in samples.names():
        per_rss, per_heap = samples.median(name, 0), samples.median(name, 1)
        rows.append((name, fmt(samples.median(name, 2)), f"{samples.median(name, 3) / 2**20:,.0f}",
                     fmt(per_rss), f"{per_rss / base_rss:.2f}",
                     "n/a" if per_heap != per_heap else fmt(per_heap),
                     "n/a" if per_heap != per_heap else f"{per_heap / base_heap:.2f}",
                     fmt(samples.median(name, 4)), fmt(samples.median(name, 5))))
    report.add(f"Medians of {args.rounds} interleaved round(s); the server holds every answer "
               f"{args.hold_ms:,} ms.", "")
    report.add(table(["client", "most in flight", "peak RSS MiB", "RSS bytes/request", "ratio",
                      "Python heap bytes/request (tracemalloc)", "ratio", "answered in 2 holds",
                      "failed calls"], rows))
    report.data = {"samples": samples.to_json()}
    report.finish(args)
    return report


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        _, _, kind, base_url, inflight, hold_s, trace = sys.argv
        print(json.dumps(asyncio.run(measure(kind, base_url, int(inflight), float(hold_s),
                                             trace == "1"))))
    else:
        main()
