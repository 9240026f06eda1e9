"""Several worker processes share one Redis rate limiter against one server-side limit.

Three real processes (``mp_worker.py``), each with its own chain and ``rate_limit`` stage on
``store = "redis"``, call the fault server, which enforces a requests-per-minute limit the way
providers do (a full-burst token bucket) and counts every request it refuses with 429.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from llmchain.stores._shared import with_query
from llmchain.testing.fault_server import FaultServer

pytestmark = pytest.mark.redis
WORKER = str(Path(__file__).with_name("mp_worker.py"))
ROOT = Path(__file__).resolve().parents[2]


class Workers:
    """N worker processes, started once, given the same command at the same moment."""

    def __init__(self, n: int, env: dict[str, str]) -> None:
        self.procs = [subprocess.Popen([sys.executable, WORKER], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                       text=True, env=env, cwd=ROOT) for _ in range(n)]
        for proc in self.procs:
            assert proc.stdout is not None
            assert json.loads(proc.stdout.readline()) == {"ready": True}

    def run(self, command: dict[str, Any]) -> list[dict[str, Any]]:
        line = json.dumps(command) + "\n"
        for proc in self.procs:  # all are ready and blocked on stdin: they start together
            assert proc.stdin is not None
            proc.stdin.write(line)
            proc.stdin.flush()
        results = []
        for proc in self.procs:
            assert proc.stdout is not None
            out = proc.stdout.readline()
            assert out, f"worker {proc.pid} died"
            results.append(json.loads(out))
        return results

    def close(self) -> None:
        for proc in self.procs:
            if proc.stdin is not None:
                proc.stdin.write("\n")
                proc.stdin.close()
        for proc in self.procs:
            proc.wait(10)


def worker_env(redis_url: str, prefix: str) -> dict[str, str]:
    """The environment of worker processes (the ``workers`` fixture in conftest.py)."""
    return {**os.environ, "REDIS_URL": with_query(redis_url, key_prefix=prefix),
            # this checkout and its plugins first, then the test process's own path, so the
            # workers load the same code as the test, not another installed copy's plugins
            "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), str(ROOT),
                                           *(str(p) for p in sorted((ROOT / "plugins").glob("*/src"))),
                                           *filter(None, os.environ.get("PYTHONPATH", "").split(os.pathsep))])}


def _command(server: FaultServer, limiter: dict[str, Any], calls: int, timeout_s: float) -> dict[str, Any]:
    # window semantics as configured (no pacing, no learning): these test the shared store
    limiter = {"burst_s": None, "limits": "configured", **limiter}
    return {"stages": [{"use": "rate_limit", "tokenizer": "heuristic", **limiter}],
            "transport": {"use": "openai", "base_url": server.base_url, "api_key_env": "", "model": "gpt-test"},
            "calls": calls, "timeout_s": timeout_s}


def _outcomes(results: list[dict[str, Any]]) -> list[str]:
    return [o for r in results for o in r["outcomes"]]


def test_workers_sharing_a_redis_limiter_provoke_no_429_and_use_the_whole_limit(workers: Workers) -> None:
    with FaultServer(rpm_limit=30) as server:
        # the control: a limiter per process lets each one send the whole limit
        results = workers.run(_command(server, {"rpm": 30, "store": "memory"}, 15, 2.0))
        assert server.violations > 0 and _outcomes(results).count("RateLimited:429") == server.violations
    with FaultServer(rpm_limit=30) as server:
        # 30 an hour: the next slot is two minutes away, however long a loaded machine takes to
        # send the first 30 (with 30 a minute, a slow run earned a 31st slot and failed)
        limiter = {"rpm": 30, "period_s": 3600.0, "store": "redis", "share": "team"}
        results = workers.run(_command(server, limiter, 15, 2.0))
        outcomes = _outcomes(results)
        assert server.violations == 0
        # the whole limit between them (more than any one worker sent), not a third each
        assert server.request_count == 30 == outcomes.count("ok")
        assert outcomes.count("local_refusal") == 15  # the next slot is past every call's deadline


def test_workers_wait_their_turn_across_processes_and_no_window_holds_more_than_the_limit(
        workers: Workers) -> None:
    limit, period = 6, 1.0
    with FaultServer(rpm_limit=60) as server:
        results = workers.run(_command(server, {"rpm": limit, "period_s": period, "store": "redis",
                                                "share": "fifo"}, 8, 10.0))
        assert server.violations == 0
    assert _outcomes(results) == ["ok"] * 24  # 24 calls at 6 per 1 s: everyone waits, nobody fails
    sent = sorted(t for r in results for t in r["sent_at"])
    assert sent[-1] - sent[0] >= 3 * period - 0.05  # the limit really held them back
    # no half-period window holds more than the limit: a send is stamped after its grant, and a
    # loaded machine can delay a stamp by a good part of a period (an unlimited run would put
    # all 24 in one window)
    assert max(sum(1 for t in sent if start <= t < start + period / 2) for start in sent) <= limit
