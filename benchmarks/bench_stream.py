"""Streaming: a 200-delta answer through the full default chain vs parsing SSE by hand over httpx.

The fault server (its own process) streams a fixed 3,200-character answer as 200 deltas of 16
characters (OpenAI chunks, then ``[DONE]``). Contenders, one stream after another, each a new
prompt (the cache always misses): raw ``httpx`` (``client.stream`` + ``iter_lines``, parsing
each ``data:`` line with ``json.loads``: the baseline), sync and async; ``chain.stream()`` and
``chain.astream()`` through the full default chain (log at INFO to a NullHandler); the same
with no stages. Rounds interleaved, medians reported.

Also measured: the cost per chunk of one pass-through stage (in-process, no I/O: 200 chunks
through 10 stages vs none), time to first token through the default chain vs the transport's
own ``stream()``, and the client's peak traced memory while a 10 MB answer streams.

Usage::

    .venv/bin/python benchmarks/bench_stream.py            # 5 rounds x 300 streams
    .venv/bin/python benchmarks/bench_stream.py --quick    # < 30 s
"""

from __future__ import annotations

import asyncio
import gc
import json
import statistics
import subprocess
import sys
import time
import tracemalloc
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import (
    HEADERS,
    MODEL,
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

DELTAS, PIECE = 200, 16
ANSWER = ("streamed answer " * (DELTAS * PIECE // 16))[: DELTAS * PIECE]
BASELINE = "httpx (sync), SSE parsed by hand: baseline"
TARGET_RATIO, TARGET_STAGE_US, TARGET_TTFT_MS = 1.5, 2.0, 0.2


def stream_body(prompt: str) -> bytes:
    return json.dumps({"model": MODEL, "stream": True,
                       "messages": [{"role": "user", "content": prompt}]}).encode()


def sse_texts(lines: Any) -> int:
    """The baseline's parsing: each ``data:`` line decoded, its delta taken; stop at [DONE]."""
    n = 0
    for line in lines:
        if not line.startswith("data: "):
            continue
        data = line[6:]
        if data == "[DONE]":
            break
        choices = json.loads(data)["choices"]
        if choices and choices[0]["delta"].get("content"):
            n += 1
    return n


async def asse_texts(lines: AsyncIterator[str]) -> int:
    n = 0
    async for line in lines:
        if not line.startswith("data: "):
            continue
        data = line[6:]
        if data == "[DONE]":
            break
        choices = json.loads(data)["choices"]
        if choices and choices[0]["delta"].get("content"):
            n += 1
    return n


def main(argv: list[str] | None = None) -> Report:
    p = parser(__doc__)
    p.add_argument("--streams", type=int, default=None, help="sequential streams per contender per round")
    args = p.parse_args(argv)
    args.rounds = args.rounds or (2 if args.quick else 5)
    args.streams = args.streams or (60 if args.quick else 300)

    import httpx

    from llmchain import Chain

    configure_log("null")
    samples = Samples()
    with Server("--content", ANSWER) as server:
        prompts = Counter("Stream")
        client = httpx.Client()
        full = Chain.from_config(full_chain_config(server.base_url))
        bare = Chain([], full_chain_config(server.base_url)["transport"])
        wait_tokenizer(full)

        def raw_httpx() -> int:
            with client.stream("POST", server.url, content=stream_body(prompts.next()), headers=HEADERS) as r:
                return sse_texts(r.iter_lines())

        def through(chain: Chain) -> Callable[[], int]:
            def go() -> int:
                return sum(1 for _ in chain.stream(prompts.next()))
            return go

        contenders: dict[str, Callable[[], Any]] = {
            BASELINE: raw_httpx,
            "chain.stream(), full default chain": through(full),
            "chain.stream(), no stages": through(bare),
        }
        assert raw_httpx() == DELTAS and through(full)() == DELTAS, "the answer is not 200 deltas"

        async def async_round(n: int) -> dict[str, tuple[float, float]]:
            aclient = httpx.AsyncClient()
            afull = Chain.from_config(full_chain_config(server.base_url))
            wait_tokenizer(afull)

            async def raw_async() -> int:
                async with aclient.stream("POST", server.url, content=stream_body(prompts.next()),
                                          headers=HEADERS) as r:
                    return await asse_texts(r.aiter_lines())

            async def chain_async() -> int:
                return sum([1 async for _ in afull.astream(prompts.next())])

            out = {"httpx.AsyncClient, SSE parsed by hand": await aper_call(raw_async, n, warmup=20),
                   "chain.astream(), full default chain": await aper_call(chain_async, n, warmup=20)}
            await aclient.aclose()
            await afull.aclose()
            return out

        for _ in rounds(args.rounds):
            for name, fn in contenders.items():
                samples.add(name, per_call(fn, args.streams, warmup=20))
            for name, value in asyncio.run(async_round(args.streams)).items():
                samples.add(name, value)
        ttft = measure_ttft(server.base_url, args.streams)
        full.close()
        bare.close()
    stage_us = measure_stage_overhead(args.rounds)
    memory = measure_memory(10 * 1024 * 1024)
    return report(args, samples, ttft, stage_us, memory)


def measure_ttft(base_url: str, n: int) -> dict[str, float]:
    """Median ms from asking to the first text delta: the transport's own stream() vs the chain."""
    from llmchain import Chain, TextDelta
    from llmchain.transports.openai import OpenAITransport

    async def go() -> dict[str, float]:
        transport = OpenAITransport(OpenAITransport.Options(base_url=base_url, api_key_env="", model=MODEL))
        chain = Chain.from_config(full_chain_config(base_url))
        wait_tokenizer(chain)
        prompts = Counter("TTFT")
        raw, chained = [], []
        for i in range(n + 20):
            t0 = time.perf_counter()
            gen = transport.stream(streamed_request(prompts.next()))
            await gen.__anext__()
            raw_ms = (time.perf_counter() - t0) * 1000
            await gen.aclose()
            t0 = time.perf_counter()
            stream = chain.astream(prompts.next())
            while not isinstance(await stream.next_event(), TextDelta):
                pass
            chain_ms = (time.perf_counter() - t0) * 1000
            await stream.aclose()
            if i >= 20:
                raw.append(raw_ms)
                chained.append(chain_ms)
        await transport.aclose()
        await chain.aclose()
        return {"transport": statistics.median(raw), "chain": statistics.median(chained)}

    return asyncio.run(go())


def streamed_request(prompt: str) -> Any:
    """A streamed request, as the chain builds it."""
    from llmchain import LLMRequest, Message

    return LLMRequest(messages=(Message(role="user", content=prompt),), stream=True)


class _Chunks:
    """An in-process streaming transport: ``DELTAS`` chunks, no I/O (isolates stage costs)."""

    name = "chunks:m"

    def identity(self) -> dict[str, Any]:
        return {"kind": "chunks"}

    async def send(self, request: Any) -> Any:
        raise NotImplementedError

    async def stream(self, request: Any) -> AsyncIterator[Any]:
        from llmchain import LLMResponse

        for _ in range(DELTAS):
            yield "sixteen chars.. "
        yield LLMResponse(text="")

    async def aclose(self) -> None:
        pass


def measure_stage_overhead(n_rounds: int) -> dict[str, float]:
    """µs per chunk per stage: 200 chunks through 10 stages of a kind vs through none."""
    from llmchain import Chain, LLMRequest, LLMResponse, Next, at_end

    class Watches:  # pass-through that watches the stream (what log, breaker, rate_limit do)
        roles = frozenset({"bench"})
        handles_streams = True

        async def handle(self, request: LLMRequest, call_next: Next) -> LLMResponse:
            response = await call_next(request)
            if response.stream is not None:
                async def ended(final: LLMResponse) -> LLMResponse:
                    return final
                response.stream.pipe(lambda events: at_end(events, ended))
            return response

    class Unaware:  # knows nothing of streams: the default (chunks pass, final at the end)
        async def handle(self, request: LLMRequest, call_next: Next) -> LLMResponse:
            return await call_next(request)

    class Ignores:  # declares handles_streams and leaves the stream alone
        handles_streams = True

        async def handle(self, request: LLMRequest, call_next: Next) -> LLMResponse:
            return await call_next(request)

    async def per_stream(chain: Chain, n: int) -> float:
        async def one() -> None:
            async for _ in chain.astream("q", timeout_s=None):
                pass
        wall, _ = await aper_call(one, n, warmup=20)
        return wall

    async def go() -> dict[str, list[float]]:
        out: dict[str, list[float]] = {"watches": [], "unaware": [], "ignores": []}
        base_chain = Chain([], _Chunks(), timeout_s=None)
        chains = {kind: Chain([cls() for _ in range(10)], _Chunks(), timeout_s=None)
                  for kind, cls in (("watches", Watches), ("unaware", Unaware), ("ignores", Ignores))}
        for _ in range(n_rounds):
            base = await per_stream(base_chain, 300)
            for kind, chain in chains.items():
                out[kind].append((await per_stream(chain, 300) - base) / (10 * DELTAS))
        return out

    data = asyncio.run(go())
    return {kind: statistics.median(values) for kind, values in data.items()}


_MEMORY_SERVER = """
import sys, time
from llmchain.testing.fault_server import FaultServer
with FaultServer(content="x" * {size}, piece_chars=4096) as s:
    print(s.base_url, flush=True)
    sys.stdin.read()
"""


def measure_memory(size: int) -> dict[str, float]:
    """Peak traced client memory (MB) while a ``size``-byte answer streams, chunks dropped.

    The final response carries the whole text (``.response``), so ~1x the answer is the floor
    for the chain; the first row is that size, for reference. Each path streams once before it
    is measured (first-use caches, ~4 MB for httpx's first client, are not the stream's)."""
    import httpx

    from llmchain import Chain

    proc = subprocess.Popen([sys.executable, "-c", _MEMORY_SERVER.format(size=size)],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    base_url = proc.stdout.readline().split()[-1]
    out: dict[str, float] = {}
    try:
        def peak(fn: Callable[[], Any]) -> float:
            gc.collect()
            tracemalloc.start()
            fn()
            _, top = tracemalloc.get_traced_memory()
            tracemalloc.stop()
            return top / 1e6

        def raw() -> None:
            with httpx.Client(timeout=60) as client, client.stream(
                    "POST", base_url + "/chat/completions", content=stream_body("m"), headers=HEADERS) as r:
                sse_texts(r.iter_lines())

        chain = Chain.from_config(full_chain_config(base_url))
        bare = Chain([], full_chain_config(base_url)["transport"])
        wait_tokenizer(chain)

        def through(chain: Chain, prompt: str) -> Callable[[], None]:
            def go() -> None:
                for _ in chain.stream(prompt, timeout_s=120.0):
                    pass
            return go

        for warm_up in (raw, through(bare, "w"), through(chain, "w")):
            warm_up()
        out["the answer's text itself (what the final response holds)"] = size / 1e6
        out["httpx, SSE parsed by hand"] = peak(raw)
        out["chain.stream(), no stages"] = peak(through(bare, "m"))
        out["chain.stream(), full default chain (the cache stores the answer)"] = peak(through(chain, "m2"))
        chain.close()
        bare.close()
    finally:
        assert proc.stdin is not None
        proc.stdin.close()
        proc.wait(10)
    return out


def report(args: Any, samples: Samples, ttft: dict[str, float], stage_us: dict[str, float],
           memory: dict[str, float]) -> Report:
    command = command_line("bench_stream.py", args, ["rounds", "streams"])
    report = Report("Streaming through the chain", command)
    base = samples.median(BASELINE, 0)
    abase = samples.median("httpx.AsyncClient, SSE parsed by hand", 0)
    rows = []
    for name in samples.names():
        wall, cpu = samples.median(name, 0), samples.median(name, 1)
        lo, hi = samples.spread(name, 0)
        is_async = "async" in name.lower() or "astream" in name
        ref = abase if is_async else base
        cpu_ref = samples.median("httpx.AsyncClient, SSE parsed by hand" if is_async else BASELINE, 1)
        rows.append([name, fmt(wall), f"{fmt(lo)}-{fmt(hi)}", f"{wall / ref:.2f}", fmt(wall / DELTAS, 1),
                     fmt(cpu), f"{cpu / cpu_ref:.2f}"])
    sync_ratio = samples.median("chain.stream(), full default chain", 0) / base
    async_ratio = samples.median("chain.astream(), full default chain", 0) / abase
    sync_cpu = samples.median("chain.stream(), full default chain", 1) / samples.median(BASELINE, 1)
    async_cpu = (samples.median("chain.astream(), full default chain", 1)
                 / samples.median("httpx.AsyncClient, SSE parsed by hand", 1))
    report.add(f"Medians of {args.rounds} interleaved rounds of {args.streams} sequential streams of a "
               f"{DELTAS}-delta answer (ratios: sync against sync httpx, async against async httpx).", "",
               table(["client", "wall µs/stream", "range", "ratio", "µs/delta", "CPU µs/stream", "CPU ratio"],
                     rows), "",
               f"Target: a whole stream through the default chain ≤ {TARGET_RATIO}x raw httpx: sync "
               f"{sync_ratio:.2f}x wall / {sync_cpu:.2f}x client CPU, async {async_ratio:.2f}x wall / "
               f"{async_cpu:.2f}x client CPU — "
               f"{verdict(max(sync_ratio, async_ratio, sync_cpu, async_cpu) <= TARGET_RATIO)}.",
               "",
               table(["stage kind (10 of them, 200 chunks, in-process)", "µs per chunk per stage"],
                     [["declares handles_streams, leaves the stream alone", f"{stage_us['ignores']:.2f}"],
                      ["watches the stream with `at_end` (log, breaker, rate_limit, cache)",
                       f"{stage_us['watches']:.2f}"],
                      ["knows nothing of streams (the default)", f"{stage_us['unaware']:.2f}"]]), "",
               f"Target: ≤ {TARGET_STAGE_US} µs per chunk per pass-through stage: "
               f"{stage_us['watches']:.2f} µs for a watching stage — "
               f"{verdict(stage_us['watches'] <= TARGET_STAGE_US)}.", "",
               f"Time to first token (median of {args.streams}): the transport's own `stream()` "
               f"{ttft['transport']:.3f} ms, through the full default chain {ttft['chain']:.3f} ms: "
               f"+{ttft['chain'] - ttft['transport']:.3f} ms — "
               f"{verdict(ttft['chain'] - ttft['transport'] <= TARGET_TTFT_MS)} "
               f"(goal ≤ +{TARGET_TTFT_MS} ms).",
               "",
               table(["10 MB answer, chunks dropped as they come", "peak traced client memory, MB"],
                     [[k, f"{v:.1f}"] for k, v in memory.items()]))
    report.data = {"samples": samples.to_json(), "ttft_ms": ttft, "stage_us": stage_us, "memory_mb": memory}
    report.finish(args)
    return report


if __name__ == "__main__":
    main()
