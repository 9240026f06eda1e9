"""Before/after of the aiohttp path: the tree before issue 15 (its aiohttp engine, chosen with
``http_client = "aiohttp"``) against this tree's default engine, in one run.

Each round runs one child process per tree (same fault server, its own process), interleaved,
and each child measures raw aiohttp in the same process as its baseline: the ``openai``
transport's ``send`` (JSON encode, POST, read, JSON decode, ``LLMResponse``) for sequential calls
and at concurrency 100. The "before" tree is unpacked from git (``git archive``) into a temp dir.

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


if __name__ == "__main__":
    main()
