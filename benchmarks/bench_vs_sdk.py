"""Defaults vs the official SDK: llmchain's default stages against the openai SDK's defaults,
same loopback fault server, same run, scenario by scenario.

Contenders (each with its defaults, nothing tuned):

* ``openai`` — ``openai.AsyncOpenAI`` (``max_retries = 2``: 3 attempts, 0.5 s → 8 s backoff,
  ``Retry-After`` honoured up to 60 s, longer asks ignored in favour of its own backoff).
* ``llmchain`` — ``log, retry, rate_limit, timeout``, every option at its default (retry: 4
  attempts, adaptive throttling; rate_limit: no limit configured, learned from headers, paced,
  only asks up to 60 s pause other callers), over the ``openai`` transport. The log stage logs at INFO into a
  NullHandler (records are built, nothing is written).

Scenarios (the fault server runs in this process, on its own thread; both contenders share it
alike). Each sends ``calls`` requests, ``concurrency`` at a time:

* ``503 30 %`` — 30 % of answers are 503, at random: seed 7 (the issue's run), and seeds 1-4
  summed (1,200 calls), so that one unlucky seed does not decide the row.
* ``429 storm + Retry-After`` — 40 % of answers are 429 with ``Retry-After: 0.2`` (and
  ``x-ratelimit-*`` headers saying the bucket is empty for 0.2 s).
* ``429 storm, no Retry-After`` — 40 % of answers are a bare 429 (no headers at all; the body
  says "try again in 1s", which neither client reads).
* ``1 s windows`` — the server allows 50 requests per second (a token bucket of 50 refilling in
  1 s), answering ``x-ratelimit-limit-requests: 50`` and resets in 1 s.
* ``60 s windows (scaled)`` — OpenAI's per-minute semantics with time scaled x10 to keep the run
  short: 120 requests per 6 s window (a bucket of 120 refilling in 6 s = 20 requests/s); the
  headers say so exactly as a per-minute limit would (limit 120, resets up to 6 s).
* ``per-minute enforced per second`` — Azure's behaviour: 1200 requests per minute, enforced
  over every second (at most 20 in any second); headers describe the minute.
* ``full outage`` — every answer is 503: the column that matters is the load, attempts sent
  per call (1.00 = retries added nothing).
* ``Retry-After: 86400`` — the first answer is a 429 asking for a day, then every answer is ok
  (both clients ignore an ask over 60 s and retry with their own backoff).

Columns: calls that succeeded; goodput (successful calls per second of wall time; for the
rate-limited scenarios the steady rate, over the last two thirds of the run, against the
server's limit: a provider's bucket starts full, and a client may spend it at once or pace
it); the server's 429s per success; attempts per call (server requests / calls); wall time.

Usage::

    .venv/bin/python benchmarks/bench_vs_sdk.py                # every scenario, ~3 minutes
    .venv/bin/python benchmarks/bench_vs_sdk.py --quick        # fewer calls, ~1 minute
"""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import MODEL, Report, command_line, configure_log, parser, table

from llmchain.testing import FaultServer
from llmchain.testing._fault_plan import Fault, FaultPlan


@dataclass
class Scenario:
    name: str
    server: Callable[[int], FaultServer]  # run number → a fresh server (a seed per run)
    calls: int  # per run
    concurrency: int
    limit_per_s: float | None = None  # the server's rate limit, for goodput
    runs: int = 1  # runs summed into one row (several seeds: one unlucky seed does not decide)


@dataclass
class Result:
    ok: int
    steady_per_s: float  # successes per second over the last two thirds of the run
    calls: int
    server_requests: int
    server_429: int
    wall_s: float
    errors: dict[str, int]


def scenarios(quick: bool) -> list[Scenario]:
    n = 100 if quick else 300
    storm = Fault("rate_limited", status=429, retry_after=0.2)
    bare = Fault("status", status=429, retry_after=None)  # no Retry-After, no rate-limit headers
    only = ONLY
    return [s for s in [
        Scenario("503 30 %, seed 7", lambda _: FaultServer({"503": 0.3}, seed=7), n, 10),
        Scenario(f"503 30 %, seeds 1-{SEEDS} ({SEEDS} x {n} calls)",
                 lambda run: FaultServer({"503": 0.3}, seed=run + 1), n, 10, runs=SEEDS),
        Scenario("429 storm + Retry-After",
                 lambda _: FaultServer(FaultPlan(rates=[(storm, 0.4)], seed=7)), n, 10),
        Scenario("429 storm, no Retry-After",
                 lambda _: FaultServer(FaultPlan(rates=[(bare, 0.4)], seed=7)), n, 10),
        Scenario("1 s windows (50/s)", lambda _: FaultServer(rpm_limit=50, limit_window_s=1.0),
                 n, 20, 50.0),
        Scenario("60 s windows, scaled x10 (120 per 6 s)",
                 lambda _: FaultServer(rpm_limit=120, limit_window_s=6.0), 2 * n, 20, 20.0),
        Scenario("per-minute enforced per second (1200/min)",
                 lambda _: FaultServer(rpm_limit=1200, limit_per_second=True), n, 20, 20.0),
        Scenario("full outage (all 503)", lambda _: FaultServer({"503": 1.0}, seed=7), n, 10),
        Scenario("one 429 with Retry-After: 86400",
                 lambda _: FaultServer([Fault("rate_limited", status=429, retry_after=86400)]),
                 n // 2, 5),
    ] if not only or any(o in s.name for o in only)]


ONLY: list[str] = []
SEEDS = 4


Outcome = tuple[list[float], dict[str, int]]


async def drive(call: Callable[[int], Awaitable[Any]], calls: int, concurrency: int) -> Outcome:
    """(the time each success ended, failures by type)."""
    done: list[float] = []
    errors: dict[str, int] = {}
    queue = iter(range(calls))

    async def worker() -> None:
        for i in queue:
            try:
                await call(i)
                done.append(time.monotonic())
            except Exception as exc:
                name = type(exc).__name__
                errors[name] = errors.get(name, 0) + 1

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return done, errors


async def run_openai(server: FaultServer, scenario: Scenario) -> Outcome:
    import openai

    client = openai.AsyncOpenAI(base_url=server.base_url, api_key="sk-bench")

    async def call(i: int) -> Any:
        return await client.chat.completions.create(
            model=MODEL, messages=[{"role": "user", "content": f"question {i}"}])

    try:
        return await drive(call, scenario.calls, scenario.concurrency)
    finally:
        await client.close()


async def run_llmchain(server: FaultServer, scenario: Scenario) -> Outcome:
    from llmchain import Chain

    chain = Chain([{"use": "log", "handler": "none"}, "retry", "rate_limit", "timeout"],
                  {"use": "openai", "base_url": server.base_url, "api_key_env": "", "model": MODEL})

    async def call(i: int) -> Any:
        return await chain.acomplete(f"question {i}")

    try:
        return await drive(call, scenario.calls, scenario.concurrency)
    finally:
        await chain.aclose()


CONTENDERS: dict[str, Callable[[FaultServer, Scenario], Awaitable[Outcome]]] = {
    "openai": run_openai, "llmchain": run_llmchain}


def measure(scenario: Scenario, contender: str) -> Result:
    total = Result(0, 0.0, 0, 0, 0, 0.0, {})
    for run in range(scenario.runs):
        r = measure_once(scenario, contender, run)
        total.ok += r.ok
        total.steady_per_s += r.steady_per_s / scenario.runs
        total.calls += r.calls
        total.server_requests += r.server_requests
        total.server_429 += r.server_429
        total.wall_s += r.wall_s
        for name, count in r.errors.items():
            total.errors[name] = total.errors.get(name, 0) + count
    return total


def measure_once(scenario: Scenario, contender: str, run: int) -> Result:
    with scenario.server(run) as server:
        start = time.monotonic()
        done, errors = asyncio.run(CONTENDERS[contender](server, scenario))
        wall = time.monotonic() - start
        records = server.requests
        served_429 = sum(1 for r in records if r.status == 429)
        # steady state: after the first third of the run (a provider's bucket starts full, and
        # a client may spend it at once or pace it: both reach the limit afterwards)
        third = start + wall / 3
        late = [t for t in done if t >= third]
        steady = len(late) / (start + wall - third) if late and wall > 0 else 0.0
        return Result(len(done), steady, scenario.calls, len(records), served_429, wall, errors)


def row(scenario: Scenario, contender: str, r: Result) -> list[str]:
    goodput = r.ok / r.wall_s if r.wall_s > 0 else 0.0
    good = f"{goodput:,.1f}/s"
    if scenario.limit_per_s:
        good = f"{r.steady_per_s:,.1f}/s ({r.steady_per_s / scenario.limit_per_s:.0%} of limit)"
    per_success = f"{r.server_429 / r.ok:.3f}" if r.ok else ("—" if not r.server_429 else "∞")
    errors = ", ".join(f"{k} x{v}" for k, v in sorted(r.errors.items())) or "—"
    return [scenario.name, contender, f"{r.ok / r.calls:.1%}", good, per_success,
            f"{r.server_requests / r.calls:.2f}", f"{r.wall_s:.1f} s", errors]


def main() -> None:
    p = parser(__doc__)
    p.add_argument("--only", action="append", default=[], help="scenarios whose name contains this")
    args = p.parse_args()
    ONLY.extend(args.only)
    configure_log("null")
    report = Report("Defaults vs the official SDK", command_line("bench_vs_sdk.py", args, ["quick"]))
    rows: list[list[str]] = []
    data: dict[str, Any] = {}
    for scenario in scenarios(args.quick):
        for contender in CONTENDERS:
            print(f"  {scenario.name}: {contender} …", file=sys.stderr, flush=True)
            result = measure(scenario, contender)
            rows.append(row(scenario, contender, result))
            data[f"{scenario.name} / {contender}"] = result.__dict__
    report.add(table(["scenario", "client", "success", "goodput", "429s / success",
                      "attempts / call", "wall time", "failures"], rows, "llrrrrrl"))
    report.data = data
    report.finish(args)


if __name__ == "__main__":
    main()
