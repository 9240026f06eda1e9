"""Async throughput: requests per second at 100 and 1,000 concurrent requests.

One client process, one event loop, ``--requests`` requests shared by C concurrent workers
against the fault server (its own process): raw aiohttp (the baseline; one ``ClientSession``,
no connection limit), raw ``httpx.AsyncClient``, the openai SDK's ``AsyncOpenAI`` (its
defaults), a llmchain ``Chain`` with no stages, and the full default chain (log INFO →
NullHandler, cache missing on every call, rate limiter booking every call, limits that never
bind), on the default aiohttp engine and on the httpx engine. Each contender fills its
connection pool first (C calls, not timed). Rounds are interleaved; medians reported; ratios
against aiohttp measured in the same run. "client CPU" is this process's CPU time per request
during the timed part; "server CPU" the fault server's.

Usage::

    .venv/bin/python benchmarks/bench_throughput.py                  # 3 rounds
    .venv/bin/python benchmarks/bench_throughput.py --quick          # ~10 s, no SDK at 1,000
"""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import (
    HEADERS,
    MODEL,
    Call,
    Counter,
    Report,
    Samples,
    Server,
    command_line,
    configure_log,
    fmt,
    full_chain_config,
    parser,
    rounds,
    table,
    throughput,
    verdict,
    wait_tokenizer,
)

BASELINE = "aiohttp (no connection limit): baseline"
FULL = "full default chain"
TARGET = 5000.0
RATIO_TARGET = 0.6  # the full default chain against raw aiohttp, at concurrency 100
Closer = Callable[[], Awaitable[Any]]


async def contenders(base_url: str, url: str, prompts: Counter,
                     only: set[str] | None) -> list[tuple[str, Call, Closer]]:
    import aiohttp
    import openai

    from llmchain import Chain

    out: list[tuple[str, Call, Closer]] = []
    session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0))

    async def aiohttp_call() -> Any:
        async with session.post(url, data=prompts.body(), headers=HEADERS) as r:
            return json.loads(await r.read())["choices"][0]["message"]["content"]
    out.append((BASELINE, aiohttp_call, session.close))

    import httpx

    client = httpx.AsyncClient(limits=httpx.Limits(max_connections=None, max_keepalive_connections=None))

    async def httpx_call() -> Any:
        r = await client.post(url, content=prompts.body(), headers=HEADERS)
        return json.loads(r.content)["choices"][0]["message"]["content"]
    out.append(("httpx.AsyncClient (no connection limit)", httpx_call, client.aclose))

    sdk = openai.AsyncOpenAI(base_url=base_url, api_key="sk-bench")

    async def sdk_call() -> Any:
        r = await sdk.chat.completions.create(model=MODEL, messages=[
            {"role": "user", "content": prompts.next()}])
        return r.choices[0].message.content
    out.append(("openai SDK (AsyncOpenAI, defaults)", sdk_call, sdk.close))

    bare = Chain([], {"use": "openai", "base_url": base_url, "api_key_env": "", "model": MODEL})
    out.append(("llmchain Chain.acomplete, no stages", lambda: bare.acomplete(prompts.next()), bare.aclose))
    full = Chain.from_config(full_chain_config(base_url))
    wait_tokenizer(full)
    out.append((FULL, lambda: full.acomplete(prompts.next()), full.aclose))
    on_httpx = Chain.from_config(full_chain_config(base_url, http_client="httpx"))
    wait_tokenizer(on_httpx)
    out.append((f"{FULL}, httpx engine", lambda: on_httpx.acomplete(prompts.next()), on_httpx.aclose))
    return [c for c in out if only is None or any(o in c[0] for o in only)]


def main(argv: list[str] | None = None) -> Report:
    p = parser(__doc__)
    p.add_argument("--requests", type=int, default=None, help="requests per run (per concurrency)")
    p.add_argument("--concurrency", type=int, nargs="+", default=[100, 1000])
    p.add_argument("--only", nargs="*", default=None, help="contenders whose name contains one of these")
    args = p.parse_args(argv)
    args.rounds = args.rounds or (1 if args.quick else 3)
    args.requests = args.requests or (500 if args.quick else 6000)
    configure_log("null")

    samples = Samples()
    server_cpu: dict[str, list[float]] = {}
    with Server() as server:
        prompts = Counter()

        async def one_round(r: int) -> None:
            clients = await contenders(server.base_url, server.url, prompts,
                                       set(args.only) if args.only else None)
            order = clients if r % 2 == 0 else clients[::-1]
            for name, call, close in order:
                for c in args.concurrency:
                    if args.quick and c > 100 and name.startswith("openai SDK"):
                        continue  # ~250 req/s: filling its pool alone would take seconds
                    cpu0 = server.cpu_s()
                    rps, cpu = await throughput(call, args.requests, c)
                    samples.add(f"{name} @ {c}", (rps, cpu))
                    server_cpu.setdefault(name, []).append(
                        (server.cpu_s() - cpu0) / (args.requests + c) * 1e6)
                await close()

        for r in rounds(args.rounds):
            asyncio.run(one_round(r))
    configure_log("off")

    report = Report("Async throughput",
                    command_line("bench_throughput.py", args, ["quick", "rounds", "requests"]))
    header = ["client"]
    for c in args.concurrency:
        header += [f"req/s at c={c:,}", "ratio", "client CPU µs/req"]
    rows = []
    names = [n.rsplit(" @ ", 1)[0] for n in samples.names() if n.endswith(f" @ {args.concurrency[0]}")]
    for name in names:
        row: list[str] = [name]
        for c in args.concurrency:
            key, base = f"{name} @ {c}", f"{BASELINE} @ {c}"
            if key not in samples:
                row += ["n/a", "n/a", "n/a"]
                continue
            rps = samples.median(key, 0)
            ratio = f"{rps / samples.median(base, 0):.2f}" if base in samples else "n/a"
            row += [fmt(rps), ratio, fmt(samples.median(key, 1))]
        rows.append(row)
    report.add(f"Medians of {args.rounds} interleaved round(s) of {args.requests:,} requests per "
               "concurrency level, each request a new prompt.", "")
    report.add(table(header, rows))
    verdicts = []
    for c in args.concurrency:
        key = f"{FULL} @ {c}"
        if key in samples:
            rps = samples.median(key, 0)
            if c == 100:
                verdicts.append(f"Target: ≥ {TARGET:,.0f} req/s at concurrency 100 on 2 cores: full "
                                f"default chain {rps:,.0f} req/s — {verdict(rps >= TARGET)}.")
                base = f"{BASELINE} @ {c}"
                if base in samples:
                    ratio = rps / samples.median(base, 0)
                    verdicts.append(f"Target: full default chain ≥ {RATIO_TARGET}x raw aiohttp at "
                                    f"concurrency 100: {ratio:.2f}x — {verdict(ratio >= RATIO_TARGET)}.")
    all_server = sorted(v for vs in server_cpu.values() for v in vs)
    if all_server:
        best = all_server[0]
        report.add("", f"Fault server CPU per request: best {best:.0f} µs (one server core: "
                   f"~{1e6 / best:,.0f} req/s at most).")
    report.add("", *verdicts)
    report.data = {"samples": samples.to_json(), "server_cpu_us": server_cpu}
    report.finish(args)
    return report


if __name__ == "__main__":
    main()
