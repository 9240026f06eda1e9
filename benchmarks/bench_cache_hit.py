"""Cache-hit latency: what a repeated request costs when the full default chain answers it from
its memory cache.

The full default chain (over the ``openai`` transport, against the fault server in its own
process) is asked the same prompt once (a miss that fills the cache), then again and again: every
later call is a hit that never leaves the process. Measured per call, wall and CPU, medians of
interleaved rounds: ``await chain.acomplete`` (log INFO → NullHandler, and logger at WARNING),
sync ``chain.complete``, and the cache stage alone (``CacheMiddleware.handle`` on a ready
request: the stage's own share). Baselines from the same run: a cache miss through the same
chain (a new prompt each call) and a raw ``httpx.Client`` call to the server.

Usage::

    .venv/bin/python benchmarks/bench_cache_hit.py                   # 5 rounds
    .venv/bin/python benchmarks/bench_cache_hit.py --quick           # < 30 s
"""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import (
    HEADERS,
    Counter,
    Report,
    Samples,
    Server,
    aper_call,
    command_line,
    configure_log,
    fmt,
    full_chain_config,
    parser,
    per_call,
    rounds,
    table,
    verdict,
    wait_tokenizer,
)

HIT = "hit: await chain.acomplete, log INFO → NullHandler"
MISS = "miss: await chain.acomplete (new prompt each call)"
HTTPX = "raw httpx.Client call (no cache)"
TARGET_US = 20.0


def main(argv: list[str] | None = None) -> Report:
    p = parser(__doc__)
    p.add_argument("--calls", type=int, default=None, help="calls per contender per round")
    args = p.parse_args(argv)
    args.rounds = args.rounds or (2 if args.quick else 5)
    args.calls = args.calls or (2000 if args.quick else 20000)
    misses = max(200, args.calls // 20)

    import httpx

    from llmchain import Chain
    from llmchain.middleware.cache import CacheMiddleware

    samples = Samples()
    with Server() as server:
        prompts = Counter()
        client = httpx.Client()
        chain = Chain.from_config(full_chain_config(server.base_url))
        wait_tokenizer(chain)
        cache = next(stage for _, stage in chain.stages if isinstance(stage, CacheMiddleware))
        request = chain.build_request("Say hi")
        request = request.model_copy(update={"metadata": {**request.metadata, **(chain._identity or {})}})

        async def never(_: Any) -> Any:
            raise AssertionError("the cache should have answered")

        def raw_httpx() -> Any:
            return json.loads(client.post(server.url, content=prompts.body(), headers=HEADERS).content)

        async def one_round() -> None:
            configure_log("null")
            first = await chain.acomplete("Say hi")
            assert first.cache is not None and first.cache.status in ("hit", "miss")
            hit = await chain.acomplete("Say hi")
            assert hit.cache is not None and hit.cache.status == "hit", hit.cache
            samples.add(HIT, await aper_call(lambda: chain.acomplete("Say hi"), args.calls))
            configure_log("off")
            samples.add("hit: await chain.acomplete, logger at WARNING",
                        await aper_call(lambda: chain.acomplete("Say hi"), args.calls))
            samples.add("hit: cache stage alone (CacheMiddleware.handle)",
                        await aper_call(lambda: cache.handle(request, never), args.calls))
            configure_log("null")
            samples.add(MISS, await aper_call(lambda: chain.acomplete(prompts.next()), misses, 50))

        for _ in rounds(args.rounds):
            asyncio.run(one_round())
            configure_log("null")
            samples.add("hit: chain.complete (sync)", per_call(lambda: chain.complete("Say hi"), args.calls))
            samples.add(HTTPX, per_call(raw_httpx, misses, 50))
        configure_log("off")
        chain.close()
        client.close()

    report = Report("Cache-hit latency",
                    command_line("bench_cache_hit.py", args, ["quick", "rounds", "calls"]))
    miss_wall, httpx_wall = samples.median(MISS, 0), samples.median(HTTPX, 0)
    rows = []
    for name in samples.names():
        wall, cpu = samples.median(name, 0), samples.median(name, 1)
        rows.append((name, f"{wall:,.1f}", f"{cpu:,.1f}", f"{wall / miss_wall:.3f}",
                     f"{wall / httpx_wall:.3f}"))
    report.add(f"Medians of {args.rounds} interleaved rounds of {args.calls:,} hits "
               f"({misses:,} misses / raw calls).", "")
    report.add(table(["call", "wall µs/call", "CPU µs/call", "ratio to a miss", "ratio to raw httpx"],
                     rows))
    hit = samples.median(HIT, 0)
    report.add("", f"Target: a cache hit ≤ {TARGET_US:.0f} µs: {hit:,.1f} µs through the full default "
               f"chain ({fmt(miss_wall)} µs for a miss) — {verdict(hit <= TARGET_US)}.")
    report.data = {"samples": samples.to_json()}
    report.finish(args)
    return report


if __name__ == "__main__":
    main()
