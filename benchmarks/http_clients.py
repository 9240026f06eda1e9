"""HTTP client choice: which client can drive a fast loopback LLM server without capping it?

Starts the llmchain fault server in its own process (``python -m llmchain.cli._serve``), then
measures, in this one run and against that one server:

* sequential cost per call: wall µs and CPU µs of this process (CPU time is steadier when the
  machine is shared), with raw ``httpx.Client`` (sync) as the baseline;
* throughput (req/s) at a given concurrency for each async client;
* the same numbers for llmchain: the ``openai`` transport alone (on its default aiohttp engine,
  on its httpx engine, and on a user's own ``httpx.AsyncClient``), and a ``Chain`` with no
  stages around it (``complete()`` sync and ``acomplete()`` async).

Every measurement runs ``--rounds`` times, interleaved with the others, and the median is
reported, so that a burst of load from elsewhere on the machine hits every client alike.

Usage::

    .venv/bin/python benchmarks/http_clients.py                         # defaults below
    .venv/bin/python benchmarks/http_clients.py --sequential 3000 --requests 20000 --rounds 5

Clients that are not installed (httpx2, httpx-aiohttp) are skipped. Never run as a test.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
from collections import defaultdict
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import BODY, HEADERS, Call, aper_call, per_call, server_cpu_s, start_server
from common import throughput as _throughput


async def throughput(fn: Call, total: int, concurrency: int) -> float:
    """req/s with ``concurrency`` workers sharing ``total`` requests."""
    return (await _throughput(fn, total, concurrency))[0]


async def async_clients(base_url: str) -> dict[str, tuple[Call, Callable[[], Awaitable[Any]]]]:
    """name → (one call, close) for each installed async client, llmchain's included."""
    import aiohttp
    import httpx

    from llmchain import Chain, LLMRequest, Message
    from llmchain.transports.openai import OpenAITransport

    url = base_url + "/chat/completions"
    out: dict[str, tuple[Call, Callable[[], Awaitable[Any]]]] = {}
    session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0))

    async def aiohttp_call() -> Any:
        async with session.post(url, data=BODY, headers=HEADERS) as r:
            return json.loads(await r.read())
    out["aiohttp"] = (aiohttp_call, session.close)

    def httpx_like(client: Any) -> tuple[Call, Callable[[], Awaitable[Any]]]:
        async def call() -> Any:
            return json.loads((await client.post(url, content=BODY, headers=HEADERS)).content)
        return call, client.aclose

    limits = httpx.Limits(max_connections=200, max_keepalive_connections=200)
    out["httpx (async)"] = httpx_like(httpx.AsyncClient(limits=limits))
    try:
        import httpx2
        out["httpx2 (async)"] = httpx_like(httpx2.AsyncClient(
            limits=httpx2.Limits(max_connections=200, max_keepalive_connections=200)))
    except ImportError:
        pass
    try:
        from httpx_aiohttp import AiohttpTransport
        transport = AiohttpTransport(client=lambda: aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=0)))
        out["httpx + AiohttpTransport"] = httpx_like(httpx.AsyncClient(transport=transport))
    except ImportError:
        pass
    openai = OpenAITransport(OpenAITransport.Options(base_url=base_url, api_key_env="", model="bench"))
    chain = Chain([], openai)
    request = LLMRequest(messages=(Message(role="user", content="Say hi"),))
    out["llmchain OpenAITransport.send (aiohttp engine, default)"] = (
        lambda: openai.send(request), openai.aclose)
    via_httpx = OpenAITransport(OpenAITransport.Options(
        base_url=base_url, api_key_env="", model="bench", http_client="httpx"))
    out["llmchain OpenAITransport.send, httpx engine"] = (lambda: via_httpx.send(request), via_httpx.aclose)
    users = httpx.AsyncClient(limits=limits)
    via_users = OpenAITransport(OpenAITransport.Options(base_url=base_url, api_key_env="", model="bench"),
                                http_client=users)

    async def close_users() -> None:
        await via_users.aclose()
        await users.aclose()
    out["llmchain OpenAITransport.send, user's httpx.AsyncClient"] = (
        lambda: via_users.send(request), close_users)
    out["llmchain Chain.acomplete (no stages)"] = (lambda: chain.acomplete("Say hi"), chain.aclose)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sequential", type=int, default=1000, help="calls per sequential run")
    parser.add_argument("--requests", type=int, default=5000, help="requests per throughput run")
    parser.add_argument("--concurrency", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=3, help="interleaved repetitions (median)")
    args = parser.parse_args()
    import httpx

    from llmchain import Chain

    proc, base_url = start_server()
    seq: dict[str, list[tuple[float, float]]] = defaultdict(list)
    rps: dict[str, list[float]] = defaultdict(list)
    server_cpu: list[float] = []
    try:
        sync_client = httpx.Client()
        chain = Chain([], {"use": "openai", "base_url": base_url, "api_key_env": "", "model": "bench"})
        url = base_url + "/chat/completions"

        def httpx_sync() -> Any:
            return json.loads(sync_client.post(url, content=BODY, headers=HEADERS).content)

        async def one_round() -> None:
            clients = await async_clients(base_url)
            for name, (call, close) in clients.items():
                seq[name].append(await aper_call(call, args.sequential))
                cpu0 = server_cpu_s(proc.pid)
                rps[name].append(await throughput(call, args.requests, args.concurrency))
                server_cpu.append((server_cpu_s(proc.pid) - cpu0) / args.requests * 1e6)
                await close()

        for _ in range(args.rounds):
            seq["httpx.Client (sync): baseline"].append(per_call(httpx_sync, args.sequential))
            seq["llmchain Chain.complete (sync, no stages)"].append(
                per_call(lambda: chain.complete("Say hi"), args.sequential))
            asyncio.run(one_round())
        chain.close()
        sync_client.close()
    finally:
        proc.terminate()
        proc.wait()
    report(seq, rps, args)
    print(f"\nfault server CPU per request under load: median {statistics.median(server_cpu):.0f} µs, "
          f"best {min(server_cpu):.0f} µs (so one server core serves ~{1e6 / min(server_cpu):,.0f} req/s)")


def report(seq: dict[str, list[tuple[float, float]]], rps: dict[str, list[float]],
           args: argparse.Namespace) -> None:
    base_wall, base_cpu = (statistics.median(x) for x in zip(*seq["httpx.Client (sync): baseline"],
                                                            strict=True))
    print(f"\nserver: llmchain fault server in its own process; medians of {args.rounds} interleaved "
          f"rounds; {args.sequential} sequential calls and {args.requests} requests at "
          f"concurrency {args.concurrency} per round\n")
    print(f"| client | wall µs/call | ratio | CPU µs/call | ratio | req/s at c={args.concurrency} |")
    print("|---|---:|---:|---:|---:|---:|")
    for name, runs in seq.items():
        wall, cpu = (statistics.median(x) for x in zip(*runs, strict=True))
        through = f"{statistics.median(rps[name]):,.0f}" if rps.get(name) else "n/a"
        print(f"| {name} | {wall:.0f} | {wall / base_wall:.2f} | {cpu:.0f} | {cpu / base_cpu:.2f} "
              f"| {through} |")


if __name__ == "__main__":
    main()
