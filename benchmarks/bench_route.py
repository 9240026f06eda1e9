"""Routing and budgets against several fault servers with different limits and fault rates.

Three fault servers (each its own process) stand in for three deployments: A allows 600
requests per minute, B 300 with 1 % 503s, C 150 with 2 % 503s (``--rpm`` scales them). Workers
offer far more than the summed limits for ``--duration`` seconds (a multiple of the servers'
one-minute window), each call through ``retry`` and:

* ``route`` — the route stage over A, B and C (strategy ``most_headroom``), each deployment with
  its rpm;
* ``best single`` — A alone, behind ``rate_limit`` at its rpm;
* ``round-robin (limited)`` — call i goes to deployment i mod 3, each behind ``rate_limit`` at
  its rpm (it waits for its deployment even when another has room);
* ``round-robin (unlimited)`` — the same without limiters (what a plain shuffle of keys does).

Goodput = answers completed in the window ÷ (summed limits x window); 429s per success counts
the servers' own refusals. Then:

* **tail latency when one deployment turns slow** — no limits, C answers after 300 ms while A
  and B answer at once; 16 workers for ``--tail-duration`` seconds: ``route``
  (``lowest_latency``) vs round-robin;
* **budget overspend under 100 concurrent callers** — a token budget on the Redis ledger (when
  ``REDIS_URL`` or 127.0.0.1:6379 answers; else memory), 100 callers calling until refused
  against a server whose answers run longer than ``max_tokens`` (real usage ≈ 1.5 x the
  estimate): final spend over the limit, against one estimate per caller.

Usage::

    .venv/bin/python benchmarks/bench_route.py            # ~5 minutes
    .venv/bin/python benchmarks/bench_route.py --quick    # shorter windows, ~2 minutes
"""

from __future__ import annotations

import asyncio
import os
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import Counter, Report, Server, command_line, configure_log, fmt, parser, table, verdict

TARGET_GOODPUT = 0.95
TARGET_429_PER_SUCCESS = 0.05
DEPLOYMENTS = (("A", 1.0, 0.0), ("B", 0.5, 0.01), ("C", 0.25, 0.02))  # name, share of --rpm, 503 rate


def _servers(rpm: int, latency_c_ms: float = 0.0, limited: bool = True) -> dict[str, Server]:
    servers = {}
    for i, (name, share, fault) in enumerate(DEPLOYMENTS):
        args = ["--seed", str(i + 1)]
        if limited:
            args += ["--rpm", str(int(rpm * share))]
        if fault:
            args += ["--fault", f"503={fault}"]
        if name == "C" and latency_c_ms:
            args += ["--latency-ms", str(latency_c_ms)]
        servers[name] = Server(*args)
    return servers


def _transport(server: Server) -> dict[str, Any]:
    return {"use": "openai", "base_url": server.base_url, "api_key_env": "", "model": "gpt-4o-mini"}


RETRY = {"use": "retry", "max_attempts": 3, "base_s": 0.05}


def _route_chain(servers: dict[str, Server], rpm: int | None, strategy: str) -> Any:
    from llmchain import Chain

    deployments = [{"name": name, "transport": _transport(servers[name]), "breaker": False,
                    **({"rpm": int(rpm * share)} if rpm else {})} for name, share, _ in DEPLOYMENTS]
    return Chain([RETRY, {"use": "route", "strategy": strategy, "tokenizer": "heuristic", "seed": 1,
                          "cooldown_s": 1.0, "deployments": deployments}], "mock")


def _single_chain(server: Server, rpm: int | None) -> Any:
    from llmchain import Chain

    stages: list[Any] = [RETRY]
    if rpm:
        stages.append({"use": "rate_limit", "rpm": rpm, "tokenizer": "heuristic"})
    return Chain(stages, _transport(server))


async def _offer(chains: list[Any], duration: float, concurrency: int) -> dict[str, Any]:
    from llmchain import CallError

    prompts = Counter()
    ok = errors = 0
    latencies: list[float] = []
    turn = 0
    end = time.monotonic() + duration

    async def worker() -> None:
        nonlocal ok, errors, turn
        while True:
            chain = chains[turn % len(chains)]
            turn += 1
            t0 = time.monotonic()
            try:
                await chain.acomplete(prompts.next(), max_tokens=16)
            except CallError:
                if time.monotonic() < end:
                    errors += 1
                continue
            done = time.monotonic()
            if done < end:
                ok += 1
                latencies.append(done - t0)

    tasks = [asyncio.create_task(worker()) for _ in range(concurrency)]
    await asyncio.sleep(duration)
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    for chain in {id(c): c for c in chains}.values():
        await chain.aclose()
    latencies.sort()

    def pct(q: float) -> float | None:
        return latencies[min(len(latencies) - 1, int(q * len(latencies)))] if latencies else None

    return {"ok": ok, "errors": errors, "p50_s": pct(0.5), "p99_s": pct(0.99)}


def goodput(args: Any) -> tuple[list[tuple[Any, ...]], list[str], dict[str, Any]]:
    rpm, duration = args.rpm, args.duration
    summed = sum(int(rpm * share) for _, share, _ in DEPLOYMENTS)
    contenders = ["route", "best single", "round-robin (limited)", "round-robin (unlimited)"]
    rows, verdicts, data = [], [], {}
    for name in contenders:
        print(f"  goodput: {name}, {duration:g} s", file=sys.stderr, flush=True)
        servers = _servers(rpm)  # fresh servers: full buckets, as at a minute's start
        try:
            if name == "route":
                chains = [_route_chain(servers, rpm, "most_headroom")]
            elif name == "best single":
                chains = [_single_chain(servers["A"], rpm)]
            else:
                limited = name.endswith("(limited)")
                chains = [_single_chain(servers[n], int(rpm * share) if limited else None)
                          for n, share, _ in DEPLOYMENTS]
            got = asyncio.run(_offer(chains, duration, args.concurrency))
        finally:
            summaries = {n: s.stop() for n, s in servers.items()}
        refused = sum(s[1] for s in summaries.values() if s)
        allowed = summed * duration / 60.0
        got.update(refused_429=refused, goodput=got["ok"] / allowed)
        data[name] = got
        per_success = refused / got["ok"] if got["ok"] else float("inf")
        rows.append((name, fmt(got["ok"]), f"{got['goodput']:.3f}", fmt(refused), f"{per_success:.3f}",
                     fmt(got["errors"]), f"{got['p50_s']:.2f}" if got["p50_s"] is not None else "n/a"))
        if name == "route":
            verdicts.append(f"`route`: goodput {got['goodput']:.1%} of the summed limits, {per_success:.3f} "
                            f"429s per success — {verdict(got['goodput'] >= TARGET_GOODPUT and per_success <= TARGET_429_PER_SUCCESS)}.")  # noqa: E501
    return rows, verdicts, data


def tail(args: Any) -> tuple[list[tuple[Any, ...]], dict[str, Any]]:
    rows, data = [], {}
    for name, strategy in (("route (lowest_latency)", "lowest_latency"), ("round-robin", None)):
        print(f"  tail latency: {name}, {args.tail_duration:g} s", file=sys.stderr, flush=True)
        servers = _servers(args.rpm, latency_c_ms=300.0, limited=False)
        try:
            chains = ([_route_chain(servers, None, strategy)] if strategy else
                      [_single_chain(servers[n], None) for n, _, _ in DEPLOYMENTS])
            got = asyncio.run(_offer(chains, args.tail_duration, 16))
        finally:
            for server in servers.values():
                server.stop()
        data[name] = got
        rows.append((name, fmt(got["ok"]), f"{got['p50_s'] * 1000:.1f}", f"{got['p99_s'] * 1000:.1f}"))
    return rows, data


async def _budget_run(limit: int, callers: int, store: str, server: Server) -> dict[str, Any]:
    from llmchain import BudgetExceeded, CallError, Chain
    from llmchain.middleware.budget import BudgetMiddleware

    share = f"bench-{os.getpid()}-{time.time_ns()}"
    stage = BudgetMiddleware(BudgetMiddleware.Options(
        limits=[{"tokens": limit, "window": "day", "name": "bench"}], tokenizer="heuristic",  # type: ignore[list-item]
        store=store, share=share))
    chain = Chain([stage], _transport(server))
    estimate = 0
    answers = 0

    async def caller(i: int) -> None:
        nonlocal estimate, answers
        n = 0
        while True:
            n += 1
            try:
                response = await chain.acomplete(f"caller {i} call {n}", max_tokens=100)
            except BudgetExceeded:
                return
            except CallError:
                continue
            answers += 1
            estimate = max(estimate, response.notes["budget"]["estimated_tokens"])

    await asyncio.gather(*(caller(i) for i in range(callers)))
    key = stage._limits[0].key({}, time.time())
    assert key is not None
    spent = await stage.store.spent(key, time.time())
    await chain.aclose()
    return {"spent": spent, "limit": limit, "estimate": estimate, "answers": answers, "store": store}


def budget(args: Any) -> tuple[list[tuple[Any, ...]], list[str], dict[str, Any]]:
    import redis

    store = "memory"
    url = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
    try:
        if redis.Redis.from_url(url, socket_timeout=0.5).ping():
            os.environ["REDIS_URL"] = url
            store = "redis"
    except (redis.RedisError, OSError):
        pass
    print(f"  budget: 100 callers, {store} ledger", file=sys.stderr, flush=True)
    server = Server("--content", "x" * 600)  # 150 output tokens for max_tokens=100: over the estimate
    try:
        got = asyncio.run(_budget_run(args.budget_tokens, 100, store, server))
    finally:
        server.stop()
    over = max(0, got["spent"] - got["limit"])
    per_caller = over / 100
    rows = [(got["store"], fmt(got["limit"]), fmt(got["answers"]), fmt(got["spent"]), fmt(over),
             f"{per_caller:.1f}", fmt(got["estimate"]))]
    verdicts = [f"overspend {per_caller:.1f} tokens per caller against an estimate of {got['estimate']} — "
                f"{verdict(per_caller <= got['estimate'])}."]
    return rows, verdicts, got


def main(argv: list[str] | None = None) -> Report:
    p = parser(__doc__)
    p.add_argument("--rpm", type=int, default=1200,
                   help="deployment A's requests per minute (B half, C a quarter)")
    p.add_argument("--concurrency", type=int, default=64, help="workers offering load")
    p.add_argument("--duration", type=float, default=None,
                   help="seconds per goodput contender (multiple of 60)")
    p.add_argument("--tail-duration", type=float, default=None, help="seconds per tail-latency contender")
    p.add_argument("--budget-tokens", type=int, default=50_000, help="the token budget 100 callers share")
    args = p.parse_args(argv)
    args.duration = args.duration or 60.0
    args.tail_duration = args.tail_duration or (5.0 if args.quick else 15.0)
    configure_log("null")
    report = Report("Routing and budgets", command_line(
        "bench_route.py", args,
        ["quick", "rpm", "concurrency", "duration", "tail_duration", "budget_tokens"]))
    g_rows, g_verdicts, g_data = goodput(args)
    t_rows, t_data = tail(args)
    b_rows, b_verdicts, b_data = budget(args)
    summed = sum(int(args.rpm * share) for _, share, _ in DEPLOYMENTS)
    report.add(f"Three fault servers: A {int(args.rpm):,} rpm, B {int(args.rpm * 0.5):,} rpm with 1 % 503s, "
               f"C {int(args.rpm * 0.25):,} rpm with 2 % 503s (summed {summed:,}/min); {args.concurrency} "
               f"workers for {args.duration:g} s each, every call through `retry` (3 attempts). Goodput = "
               "answers completed in the window ÷ (summed limits x window).", "")
    report.add(table(["contender", "answers", "goodput (x summed limits)", "429s (servers' count)",
                      "429s per success", "failed calls", "median latency s"], g_rows))
    report.add("", f"Target: goodput ≥ {TARGET_GOODPUT:.0%} of the summed limits, ≤ {TARGET_429_PER_SUCCESS} "
               "429s per success:", "", *(f"* {v}" for v in g_verdicts), "")
    report.add(f"**One deployment turns slow**: no limits, C answers after 300 ms, A and B at once; 16 "
               f"workers for {args.tail_duration:g} s each.", "")
    report.add(table(["contender", "answers", "p50 ms", "p99 ms"], t_rows), "")
    report.add("**Budget overspend under 100 concurrent callers**: a token budget, 100 callers calling "
               "until refused; the server answers 150 tokens to max_tokens=100, so each answer costs more "
               "than its estimate.", "")
    report.add(table(["ledger", "limit (tokens)", "answers", "spent", "over the limit",
                      "over per caller", "one estimate"], b_rows), "")
    report.add("Target: overspend ≤ one estimate per caller:", "", *(f"* {v}" for v in b_verdicts))
    report.data = {"goodput": g_data, "tail": t_data, "budget": b_data}
    report.finish(args)
    return report


if __name__ == "__main__":
    main()
