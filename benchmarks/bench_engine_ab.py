"""Before/after of the aiohttp path: the tree before issue 15 (its aiohttp engine, chosen with
``http_client = "aiohttp"``) against this tree's default engine, in one run.

Each round runs one child process per tree (same fault server, its own process), interleaved,
and each child measures raw aiohttp in the same process as its baseline: the ``openai``
transport's ``send`` (JSON encode, POST, read, JSON decode, ``LLMResponse``) for sequential calls
and at concurrency 100. Then the two engines alone (``post``: no JSON, no transport), both
loaded into one process (the old engine module from the old tree by path), alternated: the
steadiest comparison on a shared machine, since both meet the same load at the same moments.
The "before" tree is unpacked from git (``git archive``) into a temp dir.

Usage::

    .venv/bin/python benchmarks/bench_engine_ab.py --before 2d6c3b4 [--rounds 5]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import ROOT, Server

CHILD = r"""
import asyncio, json, sys
sys.path.insert(0, sys.argv[1])
sys.path.insert(0, sys.argv[2])
from common import BODY, HEADERS, aper_call, throughput
import aiohttp
from llmchain import LLMRequest, Message
from llmchain.transports.openai import OpenAITransport

base_url, engine, n, total = sys.argv[3], sys.argv[4], int(sys.argv[5]), int(sys.argv[6])
url = base_url + "/chat/completions"

async def main():
    options = dict(base_url=base_url, api_key_env="", model="bench")
    if engine:
        options["http_client"] = engine
    t = OpenAITransport(OpenAITransport.Options(**options))
    request = LLMRequest(messages=(Message(role="user", content="Say hi"),))
    session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0))
    async def raw():
        async with session.post(url, data=BODY, headers=HEADERS) as r:
            return json.loads(await r.read())
    out = {}
    for name, fn in (("raw", raw), ("send", lambda: t.send(request))):
        out[name + " seq"] = await aper_call(fn, n)
        out[name + " c100"] = await throughput(fn, total, 100)
    await t.aclose()
    await session.close()
    print(json.dumps(out))

asyncio.run(main())
"""


ENGINES = r"""
import asyncio, importlib.util, json, statistics, sys
sys.path.insert(0, sys.argv[1])
from common import BODY, aper_call, throughput
import llmchain.transports
from llmchain.transports._aiohttp_engine import AiohttpEngine
from llmchain.transports._bounds import Caps

spec = importlib.util.spec_from_file_location("llmchain.transports._before_aiohttp_engine", sys.argv[2])
old = importlib.util.module_from_spec(spec)
spec.loader.exec_module(old)
url, rounds, n, total = sys.argv[3], int(sys.argv[4]), int(sys.argv[5]), int(sys.argv[6])
headers = {"user-agent": "bench", "content-type": "application/json", "accept": "application/json"}

async def main():
    before = old.AiohttpEngine(url, headers, where="bench", limit=256, limit_per_host=0,
                               connect_timeout=10, read_timeout=None, keepalive_s=30, trust_env=False)
    after = AiohttpEngine(url, {**headers, "accept-encoding": "gzip, deflate"}, where="bench",
                          caps=Caps("bench", 65536, 1 << 26, 1 << 26), limit=256, limit_per_host=0,
                          connect_timeout=10, read_timeout=None, keepalive_s=30, ssl_context=None,
                          proxy=None, proxy_auth=None)
    extra = {"idempotency-key": "0123456789abcdef0123456789abcdef"}
    out = {"before": [], "after": []}
    for r in range(rounds):
        pairs = [("before", before), ("after", after)]
        for name, engine in (pairs if r % 2 == 0 else pairs[::-1]):
            call = lambda engine=engine: engine.post(BODY, extra)
            out[name].append([*await aper_call(call, n), *await throughput(call, total, 100)])
    await before.close()
    await after.close()
    print(json.dumps({k: [statistics.median(run[i] for run in v) for i in range(4)] for k, v in out.items()}))

asyncio.run(main())
"""


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--before", default="2d6c3b4", help="the commit before issue 15")
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--calls", type=int, default=1000)
    p.add_argument("--requests", type=int, default=5000)
    args = p.parse_args()
    before = Path(tempfile.mkdtemp(prefix="llmchain-before-"))
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", args.before, "src"],
                             check=True, capture_output=True).stdout
    subprocess.run(["tar", "-x", "-C", str(before)], input=archive, check=True)
    trees = {f"before ({args.before}, http_client=aiohttp)": (before / "src", "aiohttp"),
             "after (default engine)": (ROOT / "src", "")}
    results: dict[str, list[dict[str, list[float]]]] = {name: [] for name in trees}
    with Server() as server:
        for r in range(args.rounds):
            order = list(trees.items()) if r % 2 == 0 else list(trees.items())[::-1]
            for name, (src, engine) in order:
                out = subprocess.run([sys.executable, "-c", CHILD, str(src), str(ROOT / "benchmarks"),
                                      server.base_url, engine, str(args.calls), str(args.requests)],
                                     check=True, capture_output=True, text=True).stdout
                results[name].append(json.loads(out))
    print(f"medians of {args.rounds} interleaved rounds; {args.calls} sequential calls, "
          f"{args.requests} requests at c=100\n")
    print("| tree | send: wall µs/call | CPU µs/call | CPU vs raw aiohttp | req/s at c=100 | vs raw aiohttp "
          "| CPU µs/req at c=100 |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for name, runs in results.items():
        def med(key: str, i: int, runs: list[dict[str, list[float]]] = runs) -> float:
            return statistics.median(run[key][i] for run in runs)
        print(f"| {name} | {med('send seq', 0):.0f} | {med('send seq', 1):.0f} | "
              f"{med('send seq', 1) / med('raw seq', 1):.2f} | {med('send c100', 0):,.0f} | "
              f"{med('send c100', 0) / med('raw c100', 0):.2f} | {med('send c100', 1):.0f} |")
    with Server() as server:
        out = subprocess.run([sys.executable, "-c", ENGINES, str(ROOT / "benchmarks"),
                              str(before / "src/llmchain/transports/_aiohttp_engine.py"), server.url,
                              str(args.rounds * 2), str(args.calls), str(args.requests)],
                             check=True, capture_output=True, text=True).stdout
    engines = json.loads(out)
    print(f"\nthe engines alone (post), in one process, alternated over {args.rounds * 2} rounds:\n")
    print("| engine | wall µs/call | CPU µs/call | req/s at c=100 | CPU µs/req at c=100 |")
    print("|---|---:|---:|---:|---:|")
    for name, (wall, cpu, rps, cpu100) in engines.items():
        print(f"| {name} | {wall:.0f} | {cpu:.0f} | {rps:,.0f} | {cpu100:.0f} |")


if __name__ == "__main__":
    main()
