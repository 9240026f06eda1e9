"""`llmchain demo`: one full run in-process (module fixture), one through `python -m llmchain demo`.

Each default stage must visibly earn its place: the numbers below are what the scripted scenes
make each stage do, so a stage that stopped working (or was dropped from the chain) fails here.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from llmchain import demo
from llmchain._defaults import DEFAULT_STAGE_ORDER
from llmchain.cli import _demo as _cli_demo
from llmchain.demo._report import _stage_notes, render_table, render_text, summarize, to_json
from llmchain.demo._scenes import SCENES, select

# not an sk-... key: it must be masked because llmchain read it from the environment, not by pattern
SECRET = "LLMCHAIN-DEMO-SECRET-5f1c9a7e"


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> tuple[demo.DemoResult, str]:
    log = tmp_path_factory.mktemp("demo") / "demo.log"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv(demo.DEMO_KEY_ENV, SECRET)
        result = demo.run_demo(log_path=log)
        text = render_text(result) + json.dumps(to_json(result))
    return result, text


def log_lines(result: demo.DemoResult) -> list[dict[str, Any]]:
    return [json.loads(line) for line in result.log_path.read_text().splitlines()]


def test_ran_as_designed_with_a_row_per_request(run: tuple[demo.DemoResult, str]) -> None:
    result, text = run
    assert result.problems == [] and result.as_designed
    asked = [ask.prompt for scene in select(None) for step in scene.steps for ask in step.asks]
    assert [row.prompt for row in result.rows] == asked and len(asked) >= 30
    table = render_table(result)
    rows = [line for line in table if line.split()[0].isdigit()]
    assert [int(line.split()[0]) for line in rows] == list(range(1, len(asked) + 1))
    for row, line in zip(result.rows, rows, strict=True):
        assert row.request_id[:8] in line and row.outcome in line
    assert "Ran as designed" in text and "NOT as designed" not in text


def test_every_default_stage_earned_its_place(run: tuple[demo.DemoResult, str]) -> None:
    result, _ = run
    s = summarize(result)
    # cache: a sequential repeat, a repeated structured answer, 3 concurrent twins coalesced
    assert (s["cache_hits"], s["coalesced"]) == (5, 3)
    # repair/validate/parse: 2 broken JSON fixed locally, 1 wrong answer re-asked, 1 given up
    assert (s["repaired_local"], s["repaired_reask"], s["repair_gave_up"]) == (2, 1, 1)
    assert (s["not_json"], s["schema_invalid"]) == (2, 3)
    # retry: the scripted recoveries (503 503 ok, reset ok, hang ok, 429 ok) at least
    assert s["recovered_by_retry"] >= 4 and s["retries"] >= 12 and s["retry_after_honoured"] == 3
    # rate_limit: the 429s paused everyone; three callers waited the pause out; limit learned
    assert s["http_429"] == 4 and s["provider_pauses"] == 4 and s["limiter_waits"] == 3
    assert s["learned_rpm"] == 60
    # timeout: attempts cut against the hanging server (one, then one or two before the 0.5 s
    # deadline: a loaded machine fits only one), one call ended at its deadline
    assert s["attempts_timed_out"] in (2, 3) and s["deadline_errors"] == 1
    assert s["log_summary_lines"] == len(result.rows)
    notes = dict(_stage_notes(s, result))
    assert list(notes) == list(DEFAULT_STAGE_ORDER)
    assert not [name for name, text in notes.items() if text.startswith("idle")]


def test_rows_say_what_happened(run: tuple[demo.DemoResult, str]) -> None:
    result, _ = run
    by_prompt = {row.prompt: row for row in result.rows}
    retried = by_prompt["Translate 'retry'"]
    assert [demo.attempt_label(a) for a in retried.attempts] == ["503", "503", "ok"]
    assert retried.backoff_s > 0 and retried.cache == "miss"
    planet = by_prompt["Name a planet"]
    assert planet.backoff_s == pytest.approx(0.5)  # exactly what Retry-After asked
    assert by_prompt["Name a moon"].limiter_s > 0.3 and not by_prompt["Name a moon"].backoff_s
    hung = by_prompt["Anyone there?"]
    assert hung.outcome == "TimeoutExceeded" and hung.detail == "deadline"
    # its deadline was 0.5 s: the client does not wait for the 10 s hang (margin for a loaded machine)
    assert hung.latency_s < 0.5 + 2.0
    bad = by_prompt["Send a bad request"]
    assert (bad.outcome, bad.detail, len(bad.attempts)) == ("ProviderError", "400", 1)
    assert by_prompt["Third answer, JSON"].repaired == "gave up"


def test_log_file_is_json_lines_with_request_ids(run: tuple[demo.DemoResult, str]) -> None:
    result, _ = run
    lines = log_lines(result)
    assert len(lines) > 3 * len(result.rows)
    assert all(line.get("request_id") for line in lines)
    summaries = {line["request_id"]: line for line in lines if line["event"] == "llm.call"}
    assert set(summaries) == {row.request_id for row in result.rows}
    for row in result.rows:
        line = summaries[row.request_id]
        assert line["error_type"] == (None if row.outcome == "ok" else row.outcome)
        assert line["attempts"] == len(row.attempts)


def test_the_log_file_is_private(run: tuple[demo.DemoResult, str], tmp_path: Path) -> None:
    assert run[0].log_path.stat().st_mode & 0o777 == 0o600
    old = tmp_path / "old.log"
    old.write_text("from an earlier run\n")
    old.chmod(0o644)
    demo.run_demo(only="plain", log_path=old)
    assert old.stat().st_mode & 0o777 == 0o600 and "from an earlier run" not in old.read_text()


def test_the_api_key_never_shows(run: tuple[demo.DemoResult, str]) -> None:
    result, text = run
    assert SECRET not in text
    assert SECRET not in result.log_path.read_text()
    explained = "".join(row.error.explain() for row in result.rows if row.error is not None)
    assert explained and SECRET not in explained
    assert os.environ.get(demo.DEMO_KEY_ENV) != SECRET  # the environment is as it was


def test_same_seed_same_faults(tmp_path: Path) -> None:
    def labels(seed: int) -> list[list[str]]:
        result = demo.run_demo(seed=seed, only="traffic", log_path=tmp_path / f"{seed}.log")
        return [[demo.attempt_label(a) for a in row.attempts] for row in result.rows]

    assert labels(1) == labels(1)
    assert labels(1) != labels(0)


def test_a_broken_stage_means_not_as_designed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setitem(demo.STAGE_OPTIONS, "retry", {**demo.STAGE_OPTIONS["retry"], "max_attempts": 1})
    assert _cli_demo.main(["--only", "5xx", "--log", str(tmp_path / "x.log")]) == 1
    out = capsys.readouterr().out
    assert "NOT as designed" in out
    assert """#1 "Translate 'retry'": expected ok after 3 attempt(s), got ProviderError after 1""" in out


def test_register_adds_the_demo_subcommand(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    parser = argparse.ArgumentParser(prog="llmchain")
    _cli_demo.register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["demo", "--only", "circuit-open", "--json", "--log", str(tmp_path / "c.log")])
    assert args.func(args) == 0
    data = json.loads(capsys.readouterr().out)
    assert [r["outcome"] for r in data["requests"]] == ["GaveUp", "CircuitOpen", "CircuitOpen", "CircuitOpen"]
    assert data["summary"]["failed_fast"] == 2 and data["summary"]["breaker_opened"] == 1
    assert {s.name for s in SCENES} >= {"timeout", "invalid-json", "429", "5xx", "reset", "circuit-open"}


def test_python_m_llmchain_demo(tmp_path: Path) -> None:
    """The README's main command, exactly: offline, no API key, no config, log in ./."""
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(tmp_path),
           "PYTHONPATH": os.environ.get("PYTHONPATH", ""), demo.DEMO_KEY_ENV: SECRET}
    done = subprocess.run([sys.executable, "-m", "llmchain", "demo"],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
    out = done.stdout
    rows = [line for line in out.splitlines() if re.match(r"\s*\d+\s+[0-9a-f]{8}\s", line)]
    assert len(rows) == sum(len(step.asks) for scene in select(None) for step in scene.steps)
    assert "Ran as designed" in out and "Summary:" in out and "What each stage did:" in out
    log = tmp_path / "llmchain-demo.log"
    assert f"JSON log: {log}" in out
    assert all(json.loads(line)["request_id"] for line in log.read_text().splitlines())
    assert SECRET not in out + done.stderr + log.read_text()
