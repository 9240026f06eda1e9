"""Goodput of N worker processes sharing one rate limit through Redis, against a server-side limit.

The fault server enforces ``--rpm`` requests per minute like a provider (a full-burst token
bucket) and answers 429 beyond it. N worker processes each run ``--concurrency`` loops calling
it through a ``rate_limit`` stage for ``--duration`` seconds; every call may wait for its slot
until the end of the run. Two set-ups, in one run:

* ``memory``: each worker has its own limiter set to the whole limit (what N processes get
  without a shared store): together they send N times the limit;
* ``redis``: the limiter's state is shared in Redis: one budget for all.

The limiter holds ``--rpm`` per minute as ``rpm * period / 60`` per ``--period`` seconds (the
same rate in smaller bursts). Reported: successful calls, goodput = successful calls ÷ what the
limit allows over the run (``rpm * duration / 60``), the 429s the server counted, and the cost
of the shared limiter per call (a micro-benchmark: calls through the stage, memory vs Redis).

    python benchmarks/redis_goodput.py                     # 4 workers, 120 rpm, 60 s each set-up
    python benchmarks/redis_goodput.py --duration 20 --write-docs

Needs a Redis server: ``REDIS_URL``, default redis://127.0.0.1:6379/0.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from llmchain import Chain, RateLimited  # noqa: E402 (after the sys.path line above)
from llmchain.testing.fault_server import FaultServer  # noqa: E402

DOCS = ROOT / "docs" / "benchmarks.md"
HEADING = "## Redis: one rate limit shared by many workers"


def limiter(args: argparse.Namespace, store: str, share: str) -> dict[str, Any]:
    return {"use": "rate_limit", "rpm": max(1, round(args.rpm * args.period / 60)), "period_s": args.period,
            "store": store, "share": share, "tokenizer": "heuristic"}


# -- a worker process ---------------------------------------------------------------------------


async def work(cfg: dict[str, Any]) -> dict[str, Any]:
    chain = Chain([cfg["limiter"]], {"use": "openai", "base_url": cfg["base_url"], "api_key_env": "",
                                     "model": "bench"})
    end = cfg["start_at"] + cfg["duration"]
    counts: Counter[str] = Counter()
    latencies: list[float] = []

    async def loop(i: int) -> None:
        n = 0
        while (left := end - time.time()) > 0.01:
            n += 1
            t0 = time.perf_counter()
            try:  # may wait for its slot until the end of the run
                await chain.acomplete(f"w{os.getpid()}-{i}-{n}", timeout_s=left)
            except RateLimited as exc:
                if exc.status_code is None:
                    counts["no slot before the end"] += 1
                    return
                counts["429"] += 1
                continue
            except Exception as exc:
                counts[type(exc).__name__] += 1
                continue
            counts["ok"] += 1
            latencies.append(time.perf_counter() - t0)

    await asyncio.sleep(max(0.0, cfg["start_at"] - time.time()))
    await asyncio.gather(*(loop(i) for i in range(cfg["concurrency"])))
    await chain.aclose()
    return {"counts": dict(counts)}


# -- the driver --------------------------------------------------------------------------------


def run_setup(args: argparse.Namespace, store: str, env: dict[str, str]) -> dict[str, Any]:
    with FaultServer(rpm_limit=args.rpm, record=False) as server:
        cfg = {"limiter": limiter(args, store, f"bench-{uuid.uuid4().hex[:8]}"), "base_url": server.base_url,
               "start_at": time.time() + 3.0, "duration": args.duration, "concurrency": args.concurrency}
        procs = [subprocess.Popen([sys.executable, __file__, "--worker", json.dumps(cfg)],
                                  stdout=subprocess.PIPE, text=True, env=env) for _ in range(args.workers)]
        results = [json.loads(p.communicate()[0]) for p in procs]
        counts: Counter[str] = Counter()
        for r in results:
            counts.update(r["counts"])
        allowed = args.rpm * args.duration / 60
        return {"store": store, "ok": counts["ok"], "goodput": counts["ok"] / allowed,
                "violations": server.violations, "sent": server.request_count, "counts": dict(counts)}


async def per_call_cost(env_url: str, calls: int = 2000) -> dict[str, float]:
    """Microseconds per call through a limiting rate_limit stage (mock transport), by store."""
    os.environ["REDIS_URL"] = env_url
    out = {}
    for store in ("memory", "redis"):
        stage = {"use": "rate_limit", "rpm": 10**9, "store": store, "share": f"cost-{uuid.uuid4().hex[:8]}"}
        chain = Chain([stage], "mock")
        await chain.acomplete("warm up")
        t0 = time.perf_counter()
        for _ in range(calls):
            await chain.acomplete("q")
        out[store] = (time.perf_counter() - t0) / calls * 1e6
        await chain.aclose()
    return out


def report(args: argparse.Namespace, rows: list[dict[str, Any]], cost: dict[str, float]) -> str:
    lines = [HEADING, "",
             f"`python benchmarks/redis_goodput.py --workers {args.workers} --rpm {args.rpm} "
             f"--duration {args.duration:g} --period {args.period:g} --concurrency {args.concurrency}` "
             f"({os.cpu_count()} cores, Redis on localhost). {args.workers} worker processes with "
             f"{args.concurrency} concurrent loops each call the fault server, which allows "
             f"{args.rpm} requests per minute (a full-burst token bucket, like providers) and answers "
             f"429 beyond; each call "
             f"may wait for its slot until the end of the {args.duration:g} s run.", "",
             "| limiter state | successful calls | goodput (÷ limit over the run) | 429s provoked |",
             "|---|---|---|---|"]
    names = {"memory": "per process (memory)", "redis": "shared (Redis)"}
    for r in rows:
        lines.append(f"| {names[r['store']]} | {r['ok']} | {r['goodput']:.2f} | {r['violations']} |")
    lines += ["", "Goodput above 1 comes from the server's bucket starting full (a minute's worth at once); "
              "the per-process limiters get there only by provoking 429s. Shared, the workers send "
              "what the limit allows and provoke none.", "",
              f"Cost per call through a `rate_limit` stage that books every call: "
              f"memory {cost['memory']:.1f} µs, Redis {cost['redis']:.0f} µs "
              "(one EVALSHA round trip per reservation, localhost).", ""]
    return "\n".join(lines)


def write_docs(section: str) -> None:
    """Replace this benchmark's own section of docs/benchmarks.md, or append it at the end."""
    text = DOCS.read_text(encoding="utf-8") if DOCS.exists() else "# Benchmarks\n"
    start = text.find(HEADING)
    if start < 0:
        text = text.rstrip("\n") + "\n\n" + section
    else:
        end = text.find("\n## ", start + len(HEADING))
        text = text[:start] + section + (text[end + 1:] if end >= 0 else "")
    DOCS.write_text(text, encoding="utf-8")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--rpm", type=int, default=120, help="the server's (and the limiter's) limit")
    parser.add_argument("--duration", type=float, default=60.0, help="seconds per set-up")
    parser.add_argument("--period", type=float, default=10.0, help="the limiter's window")
    parser.add_argument("--concurrency", type=int, default=4, help="concurrent calls per worker")
    parser.add_argument("--write-docs", action="store_true", help=f"write the results to {DOCS}")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(asyncio.run(work(json.loads(args.worker)))))
        return
    url = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
    prefix = f"llmchain-bench-{uuid.uuid4().hex[:8]}"
    sep = "&" if "?" in url else "?"
    env = {**os.environ, "REDIS_URL": f"{url}{sep}key_prefix={prefix}"}
    rows = [run_setup(args, store, env) for store in ("memory", "redis")]
    cost = asyncio.run(per_call_cost(env["REDIS_URL"]))
    for r in rows:
        print(json.dumps(r))
    section = report(args, rows, cost)
    print("\n" + section)
    if args.write_docs:
        write_docs(section)


if __name__ == "__main__":
    main()
