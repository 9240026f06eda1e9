"""Sequential per-call overhead: the full default chain vs raw httpx and the openai SDK.

One client process sends sync calls one after another to the fault server (its own process):
raw ``httpx.Client`` (the baseline: JSON encode, POST, JSON decode), the openai SDK's sync
client, a llmchain ``Chain`` with no stages, and the full default chain (log, cache, repair,
validate, parse, retry, rate_limit, timeout over the ``openai`` transport) with the log stage at
INFO to a NullHandler, to a JSON file, and with the logger at WARNING. Every call asks a new
prompt, so the cache always misses (its lookup, key and store are all paid). Rounds are
interleaved; medians reported; ratios against httpx measured in the same run.

Usage::

    .venv/bin/python benchmarks/bench_sequential.py                  # 5 rounds x 2,000 calls
    .venv/bin/python benchmarks/bench_sequential.py --quick          # < 30 s
"""

from __future__ import annotations

import json
import sys
import tempfile
from collections.abc import Callable
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

BASELINE = "httpx.Client (sync): baseline"
FULL = "full default chain, log INFO → NullHandler"
TARGET = 1.0


def main(argv: list[str] | None = None) -> Report:
    p = parser(__doc__)
    p.add_argument("--calls", type=int, default=None, help="sequential calls per contender per round")
    args = p.parse_args(argv)
    args.rounds = args.rounds or (2 if args.quick else 5)
    args.calls = args.calls or (300 if args.quick else 2000)

    import httpx
    import openai

    from llmchain import Chain

    samples = Samples()
    log_file = Path(tempfile.mkdtemp(prefix="llmchain-bench-")) / "llmchain.log"
    with Server() as server:
        prompts = Counter()
        client = httpx.Client()
        sdk = openai.OpenAI(base_url=server.base_url, api_key="sk-bench")
        bare = Chain([], {"use": "openai", "base_url": server.base_url, "api_key_env": "",
                          "model": MODEL})
        full = Chain.from_config(full_chain_config(server.base_url))
        wait_tokenizer(full)
        on_httpx = Chain.from_config(full_chain_config(server.base_url, http_client="httpx"))
        wait_tokenizer(on_httpx)

        def raw_httpx() -> Any:
            r = client.post(server.url, content=prompts.body(), headers=HEADERS)
            return json.loads(r.content)["choices"][0]["message"]["content"]

        def sdk_call() -> Any:
            r = sdk.chat.completions.create(model=MODEL, messages=[
                {"role": "user", "content": prompts.next()}])
            return r.choices[0].message.content

        def logged(mode: str) -> Callable[[], Any]:
            def run() -> Any:
                return full.complete(prompts.next()).text
            run.log_mode = mode  # type: ignore[attr-defined]
            return run

        contenders: list[tuple[str, Callable[[], Any]]] = [
            (BASELINE, raw_httpx),
            ("openai SDK (sync)", sdk_call),
            ("llmchain Chain.complete, no stages", lambda: bare.complete(prompts.next()).text),
            (FULL, logged("null")),
            ("full default chain, log INFO → JSON file", logged("file")),
            ("full default chain, logger at WARNING", logged("off")),
            ("full default chain, httpx engine, log INFO → NullHandler", _logged(on_httpx, prompts, "null")),
        ]
        assert full.complete("check").text == "check"
        for r in rounds(args.rounds):
            order = contenders if r % 2 == 0 else contenders[::-1]  # no contender always first
            for name, fn in order:
                mode = getattr(fn, "log_mode", None)
                if mode is not None:
                    configure_log(mode, log_file)
                cpu0 = server.cpu_s()
                wall, cpu = per_call(fn, args.calls)
                samples.add(name, (wall, cpu, (server.cpu_s() - cpu0) / (args.calls + 100) * 1e6))
        configure_log("off")
        full.close()
        on_httpx.close()
        bare.close()
        sdk.close()
        client.close()

    report = Report("Sequential per-call overhead",
                    command_line("bench_sequential.py", args, ["quick", "rounds", "calls"]))
    base_wall, base_cpu = samples.median(BASELINE, 0), samples.median(BASELINE, 1)
    rows = []
    for name in samples.names():
        wall, cpu, server_cpu = (samples.median(name, i) for i in range(3))
        lo, hi = samples.spread(name, 0)
        rows.append((name, fmt(wall), f"{lo:,.0f}-{hi:,.0f}", f"{wall / base_wall:.2f}", fmt(cpu),
                     f"{cpu / base_cpu:.2f}", fmt(server_cpu)))
    report.add(f"Medians of {args.rounds} interleaved rounds of {args.calls:,} sequential calls "
               "(after 100 warm-up calls), each call a new prompt.", "")
    report.add(table(["client", "wall µs/call", "range", "ratio", "CPU µs/call", "ratio",
                      "server CPU µs/call"], rows))
    full_ratio = samples.median(FULL, 0) / base_wall
    cpu_ratio = samples.median(FULL, 1) / base_cpu
    report.add("", f"Target: full default chain ≤ {TARGET}x raw httpx per sequential call: "
               f"{full_ratio:.2f}x wall, {cpu_ratio:.2f}x client CPU — {verdict(full_ratio <= TARGET)}.")
    report.data = {"samples": samples.to_json(), "ratio_wall": full_ratio, "ratio_cpu": cpu_ratio}
    report.finish(args)
    return report


def _logged(chain: Any, prompts: Counter, mode: str) -> Callable[[], Any]:
    def run() -> Any:
        return chain.complete(prompts.next()).text
    run.log_mode = mode  # type: ignore[attr-defined]
    return run


if __name__ == "__main__":
    main()
