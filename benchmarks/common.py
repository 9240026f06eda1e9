"""What every benchmark script shares: the fault server in its own process, timing loops,
interleaved rounds and medians, the chains and clients under test, and markdown output.

The method (docs/benchmarks.md, "HTTP client choice"): the llmchain fault server runs in a
separate process (``python -m llmchain.cli._serve``); every measurement is repeated in
interleaved rounds and the median reported, so a burst of load from elsewhere on the shared
machine hits every contender alike; results are ratios against a baseline measured in the
same run; CPU time of this process is reported next to wall time because it is steadier.

Each ``bench_*.py`` script prints a human-readable report and, with ``--markdown PATH``, writes
the block that ``run_all.py`` puts between its markers in docs/benchmarks.md. Never run as a test.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import platform
import re
import shlex
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Awaitable, Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
MODEL = "gpt-4o-mini"
BODY = json.dumps({"model": MODEL, "messages": [{"role": "user", "content": "Say hi"}]}).encode()
HEADERS = {"content-type": "application/json", "authorization": "Bearer sk-bench"}
Call = Callable[[], Awaitable[Any]]


# -- the server -------------------------------------------------------------------------------


class Server:
    """The llmchain fault server in its own process; ``args`` are ``serve-mock`` options."""

    def __init__(self, *args: str) -> None:
        self.args = list(args)
        self._log = tempfile.TemporaryFile("w+")  # noqa: SIM115 - its stderr, read at stop()
        # SIGINT stops it with a summary; a shell's background job would pass it on ignored
        self.proc = subprocess.Popen([sys.executable, "-m", "llmchain.cli._serve", *self.args],
                                     stdout=subprocess.PIPE, stderr=self._log, text=True,
                                     preexec_fn=_default_sigint)
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line:
            self.proc.wait()
            raise RuntimeError(f"the fault server did not start (exit code {self.proc.returncode})")
        self.base_url = line.split()[-1]  # the OpenAI-style base URL
        self.url = self.base_url + "/chat/completions"

    @property
    def pid(self) -> int:
        return self.proc.pid

    def cpu_s(self) -> float:
        """CPU seconds the server has used so far."""
        return server_cpu_s(self.proc.pid)

    def stop(self) -> tuple[int, int] | None:
        """Stop the server (SIGINT, so it prints its summary): (requests served, refused by its
        rate limits), or None if it did not say."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.seek(0)
        found = re.search(r"served (\d+) request\(s\), (\d+) over the rate limits", self._log.read())
        return (int(found[1]), int(found[2])) if found else None

    def __enter__(self) -> Server:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _default_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def start_server(*args: str) -> tuple[subprocess.Popen[str], str]:
    """(process, OpenAI-style base URL) of a fault server started with ``args``."""
    server = Server(*args)
    return server.proc, server.base_url


def server_cpu_s(pid: int) -> float:
    """CPU seconds a process has used so far (Linux /proc)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


# -- timing loops -----------------------------------------------------------------------------


def per_call(fn: Callable[[], Any], n: int, warmup: int = 100) -> tuple[float, float]:
    """(wall µs, CPU µs) per call of a sync function, after a warm-up."""
    for _ in range(min(warmup, n)):
        fn()
    t0, c0 = time.perf_counter(), time.process_time()
    for _ in range(n):
        fn()
    return (time.perf_counter() - t0) / n * 1e6, (time.process_time() - c0) / n * 1e6


async def aper_call(fn: Call, n: int, warmup: int = 100) -> tuple[float, float]:
    """(wall µs, CPU µs) per awaited call, after a warm-up."""
    for _ in range(min(warmup, n)):
        await fn()
    t0, c0 = time.perf_counter(), time.process_time()
    for _ in range(n):
        await fn()
    return (time.perf_counter() - t0) / n * 1e6, (time.process_time() - c0) / n * 1e6


async def throughput(fn: Call, total: int, concurrency: int) -> tuple[float, float]:
    """(req/s, client CPU µs per request) with ``concurrency`` workers sharing ``total`` requests."""
    await asyncio.gather(*(fn() for _ in range(concurrency)))  # fill the pool first
    left = total

    async def worker() -> None:
        nonlocal left
        while left > 0:
            left -= 1
            await fn()

    t0, c0 = time.perf_counter(), time.process_time()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return total / (time.perf_counter() - t0), (time.process_time() - c0) / total * 1e6


class Counter:
    """Distinct prompts: every call asks something new (so a cache never hits by accident)."""

    def __init__(self, prefix: str = "Say hi") -> None:
        self.prefix, self.n = prefix, 0

    def next(self) -> str:
        self.n += 1
        return f"{self.prefix} {self.n}"

    def body(self) -> bytes:
        return json.dumps({"model": MODEL, "messages": [{"role": "user", "content": self.next()}]}).encode()


# -- rounds and medians -----------------------------------------------------------------------


class Samples:
    """name → one value (or tuple of values) per round, in insertion order of the names."""

    def __init__(self) -> None:
        self.data: dict[str, list[Any]] = defaultdict(list)

    def add(self, name: str, value: Any) -> None:
        self.data[name].append(value)

    def names(self) -> list[str]:
        return list(self.data)

    def median(self, name: str, index: int | None = None) -> float:
        values = self.data[name]
        if index is not None:
            values = [v[index] for v in values]
        return float(statistics.median(values))

    def spread(self, name: str, index: int | None = None) -> tuple[float, float]:
        values = self.data[name]
        if index is not None:
            values = [v[index] for v in values]
        return float(min(values)), float(max(values))

    def __contains__(self, name: str) -> bool:
        return name in self.data

    def to_json(self) -> dict[str, list[Any]]:
        return dict(self.data)


def rounds(n: int) -> Iterator[int]:
    """Round numbers, printed as they start (a long run shows it is alive)."""
    for i in range(n):
        print(f"  round {i + 1}/{n}", file=sys.stderr, flush=True)
        yield i


# -- what is measured -------------------------------------------------------------------------


def full_chain_config(base_url: str, **transport: Any) -> dict[str, Any]:
    """The full default chain (every default stage, default order) over the openai transport.

    The rate limiter's limits are set high enough never to bind (but the limiter books every
    call: rpm and tpm are both checked, tokens estimated); the log stage logs at INFO to
    whatever ``configure_log`` set up.
    """
    from llmchain._defaults import DEFAULT_STAGE_ORDER

    stages: list[dict[str, Any]] = []
    for name in DEFAULT_STAGE_ORDER:
        stage: dict[str, Any] = {"use": name}
        if name == "rate_limit":
            stage.update(rpm=1_000_000_000, tpm=1_000_000_000_000)
        if name == "log":
            stage.update(handler="none")  # the handler is the benchmark's choice (configure_log)
        stages.append(stage)
    return {"transport": {"use": "openai", "base_url": base_url, "api_key_env": "", "model": MODEL,
                          **transport},
            "stages": stages}


def wait_tokenizer(chain: Any) -> None:
    """Let the rate limiter's tokenizer (tiktoken, loaded on a thread) finish loading first."""
    for _, stage in chain.stages:
        estimator = getattr(stage, "_estimator", None)
        if estimator is not None:
            estimator.wait_ready(30)


LOG_MODES = ("null", "file", "off")


def configure_log(mode: str, path: Path | None = None) -> logging.Handler | None:
    """The ``llmchain`` logger for a run: ``null`` = INFO to a NullHandler (records are built,
    nothing is written), ``file`` = INFO as JSON lines to ``path`` (llmchain's redacting JSON
    formatter), ``off`` = WARNING (the summary line is skipped before anything is built)."""
    from llmchain._redact import RedactingFilter
    from llmchain.middleware.log import json_formatter

    logger = logging.getLogger("llmchain")
    for handler in list(logger.handlers):
        logger.removeHandler(handler)
        handler.close()
    logger.propagate = False
    added: logging.Handler
    if mode == "file":
        assert path is not None
        added = logging.FileHandler(path, mode="w", encoding="utf-8")
        added.setFormatter(json_formatter())
        added.addFilter(RedactingFilter())
    else:
        added = logging.NullHandler()
    logger.addHandler(added)
    logger.setLevel(logging.WARNING if mode == "off" else logging.INFO)
    return added


# -- arguments and output ---------------------------------------------------------------------


def parser(doc: str | None) -> argparse.ArgumentParser:
    """The options every script takes; scripts add their own."""
    text = (doc or "").strip()
    p = argparse.ArgumentParser(description=text.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="a short run (< 30 s): fewer calls and rounds")
    p.add_argument("--rounds", type=int, default=None, help="interleaved repetitions (median)")
    p.add_argument("--markdown", type=Path, default=None,
                   help="write the generated docs/benchmarks.md block to this file")
    p.add_argument("--json", type=Path, default=None, help="write the raw samples to this file")
    return p


def command_line(script: str, args: argparse.Namespace, keys: Sequence[str]) -> str:
    """The exact command that reproduces this run (with its effective options)."""
    parts = [".venv/bin/python", f"benchmarks/{script}"]
    for key in keys:
        value = getattr(args, key)
        flag = "--" + key.replace("_", "-")
        if isinstance(value, bool):
            if value:
                parts.append(flag)
        elif value is not None:
            parts += [flag, str(value)]
    return shlex.join(parts)


def _version(name: str) -> str | None:
    try:
        return version(name)
    except PackageNotFoundError:
        return None


def environment(packages: Iterable[str] = ("pydantic", "httpx", "aiohttp", "openai")) -> str:
    """One line: Python, package versions, cores and the load average now."""
    versions = ", ".join(f"{p} {v}" for p in packages if (v := _version(p)))
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    return (f"Python {platform.python_version()}, {versions}; {os.cpu_count()} cores; "
            f"load average {load} at the end of the run")


def table(header: Sequence[str], rows: Iterable[Sequence[Any]], align: str | None = None) -> str:
    """A markdown table; ``align`` is one character per column (l or r), default first left."""
    align = align or "l" + "r" * (len(header) - 1)
    lines = ["| " + " | ".join(header) + " |",
             "|" + "|".join("---" if a == "l" else "---:" for a in align) + "|"]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def verdict(ok: bool) -> str:
    return "**met**" if ok else "**missed**"


@dataclass
class Report:
    """What a script found: the generated markdown block (and the raw numbers)."""

    title: str
    command: str
    lines: list[str] = field(default_factory=list)
    data: dict[str, Any] = field(default_factory=dict)

    def add(self, *text: str) -> None:
        self.lines.extend(text)

    def markdown(self) -> str:
        head = [f"Command: `{self.command}`", "", environment() + ".", ""]
        return "\n".join(head + self.lines).rstrip() + "\n"

    def finish(self, args: argparse.Namespace) -> None:
        text = self.markdown()
        print(f"\n## {self.title}\n\n{text}")
        if args.markdown is not None:
            args.markdown.write_text(text, encoding="utf-8")
        if args.json is not None:
            args.json.write_text(json.dumps(self.data, indent=1, default=str), encoding="utf-8")


def fmt(value: float, digits: int = 0) -> str:
    """A number with thousands separators."""
    return f"{value:,.{digits}f}"
