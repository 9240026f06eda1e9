"""The batch command as a real process: SIGKILL at random moments, SIGINT/SIGTERM, then resume.

After every kill and a rerun, each input id must appear exactly once and every line must parse.
"""

from __future__ import annotations

import json
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.batch._util import assert_each_id_once, read_results, write_jsonl

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")

RECORDS = 1000  # at concurrency 4 and 10 ms per call a run needs >= 2.5 s: every kill lands mid-run


def start(inp: Path, out: Path, cfg: Path, concurrency: int = 4) -> subprocess.Popen[bytes]:
    command = [
        sys.executable,
        "-m",
        "llmchain.cli._batch",
        str(inp),
        str(out),
        "--config",
        str(cfg),
        "--concurrency",
        str(concurrency),
    ]
    return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def wait_for_growth(proc: subprocess.Popen[bytes], out: Path, beyond: int, timeout: float = 10.0) -> None:
    """Return once ``out`` grew past ``beyond`` bytes (results are being written)."""
    deadline = time.monotonic() + timeout
    while (out.stat().st_size if out.exists() else 0) <= beyond:
        assert proc.poll() is None, f"batch ended early: {proc.communicate()}"
        assert time.monotonic() < deadline, "no output appeared"
        time.sleep(0.002)


@pytest.fixture
def job(tmp_path: Path) -> tuple[Path, Path, Path]:
    inp = write_jsonl(
        tmp_path / "in.jsonl", [{"id": f"rec-{i}", "prompt": f"question {i}"} for i in range(RECORDS)]
    )
    cfg = tmp_path / "batch.toml"
    cfg.write_text("[transport]\nuse = 'mock'\nlatency_s = 0.01\n")
    return inp, tmp_path / "out.jsonl", cfg


def test_sigkill_at_random_moments_then_rerun_each_id_exactly_once(job: tuple[Path, Path, Path]) -> None:
    inp, out, cfg = job
    seed = random.randrange(1 << 30)
    rng = random.Random(seed)
    for cycle in range(3):
        before = out.stat().st_size if out.exists() else 0
        proc = start(inp, out, cfg)
        wait_for_growth(proc, out, before)
        time.sleep(rng.uniform(0.0, 0.25))
        proc.send_signal(signal.SIGKILL)
        proc.communicate()
        assert proc.returncode == -signal.SIGKILL, f"seed {seed}, cycle {cycle}: ended before the kill"
        # between runs: complete lines parse, no id twice (a torn tail is the next run's to drop)
        ids = [json.loads(line)["id"] for line in out.read_bytes().split(b"\n")[:-1]]
        assert len(ids) == len(set(ids)) < RECORDS, f"seed {seed}, cycle {cycle}"
    proc = start(inp, out, cfg, concurrency=64)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err.decode()
    assert_each_id_once(out, [f"rec-{i}" for i in range(RECORDS)])
    assert b"skipped (already in" in err


@pytest.mark.parametrize(("signum", "code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_sigint_and_sigterm_stop_cleanly_and_resume(
    job: tuple[Path, Path, Path], signum: int, code: int
) -> None:
    inp, out, cfg = job
    proc = start(inp, out, cfg)
    wait_for_growth(proc, out, 0)
    proc.send_signal(signum)
    _, err = proc.communicate(timeout=20)
    assert proc.returncode == code, err.decode()
    stopped = read_results(out)  # complete lines only, nothing torn
    assert 0 < len(stopped) < RECORDS
    message = err.decode()
    assert (
        f"stopped by {signal.Signals(signum).name}" in message
        and "Rerun the same command to resume" in message
    )
    proc = start(inp, out, cfg, concurrency=64)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err.decode()
    assert_each_id_once(out, [f"rec-{i}" for i in range(RECORDS)])
    assert f"{len(stopped)} skipped".encode() in err
