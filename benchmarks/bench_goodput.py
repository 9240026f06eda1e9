"""Rate-limiter goodput: how close the full default chain gets to a server's rate limit without
being refused (one process; several processes sharing Redis are in benchmarks/redis_goodput.py).

The fault server (its own process) enforces ``--rpm`` like a provider: a token bucket holding a
minute's worth of requests, refilled continuously, answering 429 with ``x-ratelimit-*`` headers
past it. The client offers far more than the limit: ``--concurrency`` workers call
``chain.acomplete`` back to back for ``--duration`` seconds through the full default chain
(log INFO → NullHandler, cache missing on every call, retry, rate_limit, timeout). Counted:
answers completed inside the window (goodput, against the server's limit over the same time)
and 429s (the attempts the client saw refused, and the server's own count of refusals).

Scenarios (the rate_limit stage's options; the server's limit is always ``--rpm`` per minute):

* ``provider`` — ``rpm`` = the server's limit, the default 60 s window: a minute's worth may go
  at once, as the provider allows. Measured over whole windows (``--duration`` 120 s).
* ``learned`` — no limit configured: the stage learns it from the server's ``x-ratelimit-*``
  headers (``adapt``, the default) after the first answers.
* ``smooth`` — the same rate in a 5 s window (``rpm`` = limit / 12, ``period_s`` = 5): the
  traffic is spread out (30 s). The ``--quick`` run uses only this one, for 5 s.

Usage::

    .venv/bin/python benchmarks/bench_goodput.py                     # all three, ~5 minutes
    .venv/bin/python benchmarks/bench_goodput.py --quick             # smooth only, ~6 s
"""

from __future__ import annotations

import asyncio
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import (
    Counter,
    Report,
    Server,
    command_line,
    configure_log,
    fmt,
    full_chain_config,
    parser,
    table,
    verdict,
    wait_tokenizer,
)

TARGET_GOODPUT = 0.97
TARGET_429 = 0.005


def scenario_options(name: str, rpm: int) -> tuple[dict[str, Any], float]:
    """(rate_limit stage options, window the duration should be a multiple of)."""
    if name == "provider":
        return {"rpm": rpm}, 60.0
    if name == "learned":
        return {}, 60.0
    if name == "smooth":
        return {"rpm": rpm * 5 // 60, "period_s": 5.0}, 5.0
    raise ValueError(name)


async def run(base_url: str, options: dict[str, Any], duration: float, concurrency: int,
              prompts: Counter) -> dict[str, Any]:
    from llmchain import CallError, Chain

    config = full_chain_config(base_url)
    for stage in config["stages"]:
        if stage["use"] == "rate_limit":
            stage.clear()
            stage.update(use="rate_limit", **options)
    chain = Chain.from_config(config)
    wait_tokenizer(chain)
    ok = errors = refused = sent = 0
    latencies: list[float] = []
    start = time.monotonic()
    end = start + duration

    def count(attempts: Any) -> None:
        nonlocal refused, sent
        sent += len(attempts)
        refused += sum(1 for a in attempts if a.status_code == 429)

    async def worker() -> None:
        nonlocal ok, errors
        while True:
            t0 = time.monotonic()
            try:
                response = await chain.acomplete(prompts.next())
            except CallError as exc:
                if time.monotonic() < end:
                    errors += 1
                    count(exc.attempts)
                continue
            done = time.monotonic()
            if done < end:
                ok += 1
                latencies.append(done - t0)
                count(response.attempts)

    tasks = [asyncio.create_task(worker()) for _ in range(concurrency)]
    await asyncio.sleep(duration)
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    await chain.aclose()
    latencies.sort()
    return {"ok": ok, "errors": errors, "refused": refused, "sent": sent,
            "p50_s": latencies[len(latencies) // 2] if latencies else None}


def main(argv: list[str] | None = None) -> Report:
    p = parser(__doc__)
    p.add_argument("--rpm", type=int, default=6000, help="the server's requests-per-minute limit")
    p.add_argument("--concurrency", type=int, default=200, help="workers offering load")
    p.add_argument("--duration", type=float, default=None,
                   help="seconds per scenario (a multiple of the scenario's window)")
    p.add_argument("--scenarios", nargs="+", default=None, choices=["provider", "learned", "smooth"])
    args = p.parse_args(argv)
    args.scenarios = args.scenarios or (["smooth"] if args.quick else ["provider", "learned", "smooth"])
    args.rounds = args.rounds or 1
    configure_log("null")

    results: dict[str, Any] = {}
    for name in args.scenarios:
        options, window = scenario_options(name, args.rpm)
        duration = args.duration or (5.0 if args.quick else 30.0 if window < 60 else 120.0)
        duration = max(window, round(duration / window) * window)
        for r in range(args.rounds):
            print(f"  {name}: {duration:g} s, round {r + 1}/{args.rounds}", file=sys.stderr, flush=True)
            server = Server("--rpm", str(args.rpm))  # a fresh server: a full bucket, as at a minute's start
            try:
                got = asyncio.run(run(server.base_url, options, duration, args.concurrency, Counter()))
            finally:
                summary = server.stop()
            got.update(duration_s=duration, options=options,
                       server_served=summary[0] if summary else None,
                       server_refused=summary[1] if summary else None)
            results.setdefault(name, []).append(got)

    report = Report("Rate-limiter goodput", command_line(
        "bench_goodput.py", args, ["quick", "rpm", "concurrency", "duration", "rounds"]))
    limit_per_s = args.rpm / 60.0
    rows = []
    verdicts = []
    for name, runs in results.items():
        for got in runs:
            allowed = limit_per_s * got["duration_s"]
            goodput = got["ok"] / allowed
            share = got["refused"] / got["sent"] if got["sent"] else 0.0
            shown = ", ".join(f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}"
                              for k, v in got["options"].items()) or "(none: learned)"
            server_refused = got["server_refused"]
            rows.append((name, shown, f"{got['duration_s']:g}", fmt(got["ok"]),
                         f"{got['ok'] / got['duration_s']:,.1f}", f"{goodput:.3f}", fmt(got["sent"]),
                         fmt(got["refused"]), "?" if server_refused is None else fmt(server_refused),
                         f"{share:.2%}", fmt(got["errors"]),
                         f"{got['p50_s']:.2f}" if got["p50_s"] is not None else "n/a"))
            verdicts.append(f"`{name}`: goodput {goodput:.1%} of the limit, {share:.2%} 429s — "
                            f"{verdict(goodput >= TARGET_GOODPUT and share < TARGET_429)}.")
    report.add(f"Server limit {args.rpm:,} requests/minute ({limit_per_s:,.0f}/s); {args.concurrency} "
               "workers offering load; goodput = answers completed in the window ÷ (limit x window).",
               "")
    report.add(table(["scenario", "rate_limit options", "window s", "answers", "answers/s",
                      "goodput (x limit)", "attempts sent", "429s seen", "429s (server count)",
                      "429 share", "failed calls", "median latency s"], rows))
    report.add("", f"Target: goodput ≥ {TARGET_GOODPUT:.0%} of the limit with < {TARGET_429:.1%} 429s:",
               "", *(f"* {v}" for v in verdicts))
    report.data = results
    report.finish(args)
    return report


if __name__ == "__main__":
    main()
