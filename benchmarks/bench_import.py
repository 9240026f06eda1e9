"""Import time: ``import llmchain`` in a fresh process, against ``import httpx`` and ``import
openai`` (and the libraries llmchain itself imports) measured in the same run.

Every sample is a fresh interpreter that times only its import statement (``time.perf_counter``
and ``time.process_time`` around it; the interpreter's own start-up is excluded), so disk caches
are warm and ``.pyc`` files compiled. The contenders run interleaved, N rounds, medians
reported. Also measured: ``import llmchain`` plus building the full default chain (what a
script pays before its first call: plugin discovery imports every built-in stage and
transport), and which heavy modules ``import llmchain`` pulls in (none of httpx, aiohttp,
openai, jsonschema, hypothesis, tiktoken, sqlite3 should be), with ``python -X importtime``'s
largest contributors.

Usage::

    .venv/bin/python benchmarks/bench_import.py                      # 15 rounds
    .venv/bin/python benchmarks/bench_import.py --quick              # < 30 s
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import Report, Samples, command_line, parser, rounds, table, verdict

TARGET_S = 0.2
NEVER = ("httpx", "aiohttp", "openai", "anthropic", "jsonschema", "hypothesis", "tiktoken",
         "sqlite3", "cachetools", "pythonjsonlogger", "json_repair", "redis", "opentelemetry")
BUILD = ("import llmchain\n"
         "from llmchain import Chain\n"
         "Chain.from_config({'transport': {'use': 'openai', 'base_url': 'http://127.0.0.1:9/v1', "
         "'api_key_env': '', 'model': 'm'}, 'stages': ['log', 'cache', 'repair', 'validate', 'parse', "
         "'retry', 'rate_limit', 'timeout']})")
CONTENDERS = {
    "import llmchain": "import llmchain",
    "import httpx": "import httpx",
    "import openai": "import openai",
    "import aiohttp": "import aiohttp",
    "import pydantic; BaseModel (llmchain's largest dependency)": "from pydantic import BaseModel",
    "import asyncio (stdlib)": "import asyncio",
    "import llmchain + build the full default chain": BUILD,
}
TIMER = """
import time, sys, json
t0, c0 = time.perf_counter(), time.process_time()
exec(compile({code!r}, "<bench>", "exec"))
t1, c1 = time.perf_counter(), time.process_time()
print(json.dumps([t1 - t0, c1 - c0, sorted({{m.split(".")[0] for m in sys.modules}})]))
"""


def sample(code: str) -> tuple[float, float, list[str]]:
    out = subprocess.run([sys.executable, "-c", TIMER.format(code=code)], capture_output=True,
                         text=True, check=True)
    wall, cpu, modules = json.loads(out.stdout)
    return wall, cpu, modules


def importtime_top(n: int = 8) -> list[tuple[str, int, int]]:
    """(module, self µs, cumulative µs) of the largest contributors to ``import llmchain``."""
    out = subprocess.run([sys.executable, "-X", "importtime", "-c", "import llmchain"],
                         capture_output=True, text=True, check=True)
    rows = []
    for line in out.stderr.splitlines():
        if not line.startswith("import time:") or "self [us]" in line:
            continue
        self_us, cumulative, name = (part.strip() for part in line[len("import time:"):].split("|"))
        rows.append((name.strip(), int(self_us), int(cumulative)))
    rows.sort(key=lambda r: r[1], reverse=True)
    return rows[:n]


def main(argv: list[str] | None = None) -> Report:
    p = parser(__doc__)
    args = p.parse_args(argv)
    args.rounds = args.rounds or (2 if args.quick else 15)
    contenders = dict(CONTENDERS)
    if args.quick:
        contenders.pop("import aiohttp")

    samples = Samples()
    loaded: list[str] = []
    for r in rounds(args.rounds):
        order = list(contenders.items())
        for name, code in order if r % 2 == 0 else order[::-1]:
            wall, cpu, modules = sample(code)
            samples.add(name, (wall, cpu))
            if name == "import llmchain":
                loaded = modules
    top = importtime_top()

    report = Report("Import time", command_line("bench_import.py", args, ["quick", "rounds"]))
    base = "import llmchain"
    base_wall, base_cpu = samples.median(base, 0), samples.median(base, 1)
    rows = []
    for name in samples.names():
        wall, cpu = samples.median(name, 0), samples.median(name, 1)
        rows.append((name, f"{wall * 1000:,.0f}", f"{cpu * 1000:,.0f}", f"{wall / base_wall:.2f}",
                     f"{cpu / base_cpu:.2f}"))
    report.add(f"Medians of {args.rounds} interleaved rounds, each a fresh interpreter timing only "
               "the import statement.", "")
    report.add(table(["import", "wall ms", "CPU ms", "ratio to llmchain (wall)", "ratio (CPU)"], rows))
    heavy = sorted(set(NEVER) & set(loaded))
    report.add("", "Heavy modules `import llmchain` loads: "
               + (", ".join(heavy) if heavy else f"none of {', '.join(NEVER)}") + ".")
    report.add("", "Largest self times in `python -X importtime -c 'import llmchain'` (one run):", "")
    report.add(table(["module", "self ms", "cumulative ms"],
                     [(f"`{m}`", f"{s / 1000:.1f}", f"{c / 1000:.1f}") for m, s, c in top]))
    ok = base_wall <= TARGET_S
    httpx = samples.median("import httpx", 0)
    report.add("", f"Target: `import llmchain` ≤ {TARGET_S} s: {base_wall:.3f} s wall "
               f"({base_cpu:.3f} s CPU; `import httpx` {httpx:.3f} s in the same run) — {verdict(ok)}.")
    report.data = {"samples": samples.to_json(), "modules": loaded, "importtime_top": top}
    report.finish(args)
    return report


if __name__ == "__main__":
    main()
