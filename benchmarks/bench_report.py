"""``llmchain report`` on a 1,000,000-line log: time and peak RSS per million lines.

The log is synthetic but in the log stage's real format (the same fields as a ``llmchain demo``
log; ``tests/report/test_generator.py`` checks that): three hours of traffic over four models,
with a 429 storm, a 5xx burst, slow minutes with timeouts, cache hits, local repairs and re-asks,
about six lines per call (debug lines included) and 2% lines from other loggers.

Each measurement is a fresh process running ``llmchain report`` (``--text``, then HTML); its wall
time, CPU time and peak RSS (``ru_maxrss``) are reported. The baseline, in the same run and the
same interpreter, is the floor any Python reader pays: reading the file and ``json.loads`` on
every line, keeping nothing. A 100,000-line log is measured too: bounded memory means the
1,000,000-line peak RSS is about the same as the 100,000-line one.

Usage::

    python3 benchmarks/bench_report.py                 # 1,000,000 lines (a few minutes)
    python3 benchmarks/bench_report.py --lines 100000  # quicker
    python3 benchmarks/bench_report.py --markdown out.md
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
MODELS = (("gpt-4o-mini", 0.15, 0.6), ("gpt-4o", 2.5, 10.0), ("claude-3-5-haiku", 0.8, 4.0),
          ("claude-3-5-sonnet", 3.0, 15.0))
START = datetime(2026, 12, 5, 14, 0, tzinfo=timezone.utc).timestamp()


def _stamp(t: float) -> str:
    d = datetime.fromtimestamp(t, timezone.utc)
    return d.strftime("%Y-%m-%d %H:%M:%S") + f",{d.microsecond // 1000:03d}"


def _line(t: float, level: str, message: str, fields: dict[str, Any]) -> str:
    return json.dumps({"time": _stamp(t), "level": level, "logger": "llmchain", "message": message,
                       **fields})


def _debug(t: float, rid: str, kind: str, stage: str, **data: Any) -> str:
    return _line(t, "DEBUG", f"llm {kind} ({stage})",
                 {"event": f"llm.{kind}", "request_id": rid, "stage": stage, **data})


def call_lines(rng: random.Random, t: float, minute: int) -> Iterator[str]:
    """One call's lines (debug lines, then the summary), shaped by the minute's incident."""
    rid = f"{rng.getrandbits(128):032x}"
    model, price_in, price_out = MODELS[rng.randrange(len(MODELS))]
    served = f"openai:{model}"
    storm, burst, slow = 60 <= minute < 70, 120 <= minute < 125, 150 <= minute < 160
    key = f"{rng.getrandbits(64):016x}"
    if rng.random() < 0.2:  # a cache hit: no attempt
        yield _debug(t, rid, "cache_hit", "cache", key=key, age_s=rng.uniform(1, 3000))
        yield _line(t + 0.001, "INFO", f"llm call ok: {model} 1 ms", _summary(
            rid, model, served, "ok", latency_ms=round(rng.uniform(0.2, 2), 1), attempts=0, cache="hit",
            tokens_in=rng.randint(20, 400), tokens_out=rng.randint(5, 300), cost_usd=0.0))
        return
    yield _debug(t, rid, "cache_miss", "cache", key=key)
    now, attempts, failed = t, 0, None
    while True:
        attempts += 1
        yield _debug(now, rid, "attempt_start", "transport", attempt=attempts, served_by=served)
        duration = rng.lognormvariate(-0.5, 0.6) * (6 if slow else 1)
        status, error = None, None
        if storm and rng.random() < 0.5:
            status, error, duration = 429, "RateLimited", 0.05
        elif burst and rng.random() < 0.4:
            status, error, duration = 503, "ProviderError", 0.2
        elif slow and duration > 2.0:
            error, duration = "TimeoutExceeded", 2.0
        now += duration
        outcome = "ok" if error is None else "timeout" if error == "TimeoutExceeded" else "error"
        yield _debug(now, rid, "attempt_end", "transport", attempt=attempts, outcome=outcome,
                     duration_s=duration, status_code=status, error_type=error)
        if error is None:
            break
        if status == 429:
            yield _debug(now, rid, "rate_limit_wait", "rate_limit", key=model, pause_s=1.0,
                         reason="provider_429")
        if attempts == 3:
            failed = (error, status)
            break
        delay = 1.0 if status == 429 else rng.uniform(0.1, 0.5)
        yield _debug(now, rid, "retry_scheduled", "retry", attempt=attempts + 1, delay_s=delay,
                     error_type=error, status_code=status, server_asked=status == 429)
        now += delay
    latency = round((now - t) * 1000, 1)
    if failed is not None:
        error, status = failed
        yield _line(now, "WARNING", f"llm call error: GaveUp after {latency:.0f} ms", _summary(
            rid, None, served, "error", latency_ms=latency, attempts=attempts, error_type="GaveUp",
            error=f"gave up after 3 attempts; last error: {error}: {served}: injected",
            status_code=status, retryable=False,
            cause="TimeoutExceeded:attempt" if error == "TimeoutExceeded" else error))
        return
    if rng.random() < 0.03:
        yield _debug(now, rid, "repair", "repair", action="local", ok=True, changes=1)
    elif rng.random() < 0.01:
        yield _debug(now, rid, "repair", "repair", action="reask", reask=1, error_type="OutputInvalid")
    tokens_in, tokens_out = rng.randint(20, 2000), rng.randint(5, 800)
    cost = round((tokens_in * price_in + tokens_out * price_out) / 1e6, 10)
    yield _debug(now, rid, "cache_store", "cache", key=key, stored=True, ttl_s=86400.0)
    yield _line(now + 0.001, "INFO", f"llm call ok: {model} {latency:.0f} ms", _summary(
        rid, model, served, "ok", latency_ms=latency, attempts=attempts, cache="miss",
        tokens_in=tokens_in, tokens_out=tokens_out, cost_usd=cost))


def _summary(rid: str, model: str | None, served: str, outcome: str, **fields: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "event": "llm.call", "request_id": rid, "model": model, "transport": served, "outcome": outcome,
        "error_type": None, "error": None, "status_code": None, "latency_ms": 0.0, "attempts": 0,
        "cache": None, "cache_age_s": None, "tokens_in": None, "tokens_out": None, "cost_usd": None,
        "finish_reason": "stop" if outcome == "ok" else None}
    base.update(fields)
    return base


def generate(path: Path, lines: int, seed: int = 0) -> int:
    """Write about ``lines`` lines (3 hours of traffic) to ``path``; returns the calls written."""
    rng = random.Random(seed)
    calls_needed = max(1, lines // 6)
    step = 3 * 3600 / calls_needed
    written = calls = 0
    with path.open("w", encoding="utf-8") as out:
        t = START
        while written < lines:
            minute = int((t - START) // 60)
            for text in call_lines(rng, t, minute):
                out.write(text + "\n")
                written += 1
            calls += 1
            if rng.random() < 0.02:
                out.write(f"INFO:uvicorn.access: 127.0.0.1 - \"GET /health HTTP/1.1\" 200 ({calls})\n")
                written += 1
            t += step
    return calls


_RUNNER = """
import resource, sys, time
t0, c0 = time.perf_counter(), time.process_time()
{body}
wall, cpu = time.perf_counter() - t0, time.process_time() - c0
print("BENCH", wall, cpu, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, file=sys.stderr)
"""
_BASELINE = """
import json
with open(sys.argv[1], "rb") as f:
    for line in f:
        try:
            json.loads(line)
        except ValueError:
            pass
"""
_REPORT = """
from llmchain.cli import main
code = main(["report", sys.argv[1], *sys.argv[2:]])
assert code == 0, code
"""


def measure(body: str, *args: str) -> tuple[float, float, float]:
    """(wall s, CPU s, peak RSS MB) of a fresh process running ``body``."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        [str(ROOT / "src"), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.run([sys.executable, "-c", _RUNNER.format(body=body), *args], env=env,
                          capture_output=True, text=True, check=True)
    line = next(x for x in proc.stderr.splitlines() if x.startswith("BENCH"))
    _, wall, cpu, rss_kb = line.split()
    return float(wall), float(cpu), int(rss_kb) / 1024


def _median_of(runs: list[tuple[float, float, float]]) -> tuple[float, float, float]:
    """Median wall and CPU time; the largest peak RSS."""
    return (statistics.median(r[0] for r in runs), statistics.median(r[1] for r in runs),
            max(r[2] for r in runs))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--lines", type=int, default=1_000_000)
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds; medians reported")
    parser.add_argument("--markdown", help="write the results block to this file")
    args = parser.parse_args()
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        for lines in sorted({min(100_000, args.lines), args.lines}):
            log = Path(tmp) / f"{lines}.log"
            calls = generate(log, lines)
            html = str(Path(tmp) / "report.html")
            runs: dict[str, list[tuple[float, float, float]]] = {"base": [], "text": [], "html": []}
            for _ in range(args.rounds):  # interleaved: a burst of load elsewhere hits all three
                runs["base"].append(measure(_BASELINE, str(log)))
                runs["text"].append(measure(_REPORT, str(log), "--text"))
                runs["html"].append(measure(_REPORT, str(log), "-o", html))
            base, text, page = (_median_of(runs[k]) for k in ("base", "text", "html"))
            results.append((lines, calls, log.stat().st_size / 1e6, base, text, page,
                            os.path.getsize(html) / 1e6))
            print(f"{lines:,} lines ({calls:,} calls): baseline {base[0]:.1f} s, --text {text[0]:.1f} s "
                  f"/ {text[2]:.0f} MB, html {page[0]:.1f} s / {page[2]:.0f} MB", flush=True)
    rows = ["| log | calls | json.loads baseline | `--text` | HTML | CPU per 1M lines: `--text` / HTML | "
            "peak RSS `--text` / HTML | HTML file |", "|---|---|---|---|---|---|---|---|"]
    for lines, calls, size, base, text, page, html_mb in results:
        per_m = 1_000_000 / lines
        rows.append(
            f"| {lines:,} lines ({size:.0f} MB) | {calls:,} | {base[0]:.1f} s (CPU {base[1]:.1f} s) | "
            f"{text[0]:.1f} s (CPU {text[1]:.1f} s, {text[1] / base[1]:.1f}x baseline) | {page[0]:.1f} s "
            f"(CPU {page[1]:.1f} s) | {text[1] * per_m:.1f} s / {page[1] * per_m:.1f} s | "
            f"{text[2]:.0f} MB / {page[2]:.0f} MB | {html_mb:.1f} MB |")
    block = "\n".join([f"Measured {time.strftime('%Y-%m-%d')}, Python {sys.version.split()[0]}, "
                       f"{os.cpu_count()} cores (shared machine); medians of {args.rounds} interleaved "
                       "rounds, each a fresh process (imports included).", "", *rows])
    print(block)
    if args.markdown:
        Path(args.markdown).write_text(block + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
