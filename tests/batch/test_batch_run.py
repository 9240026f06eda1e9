"""run_batch in-process: results and errors written, resume, duplicates, bounds, counters, stop."""

from __future__ import annotations

import asyncio
import errno
import io
import json
import os
from pathlib import Path
from typing import Any

import pytest

from llmchain import Chain, LLMRequest, LLMResponse, Next, ProviderError
from llmchain.batch import BatchError, BatchSummary, run_batch
from llmchain.batch._progress import ProgressDisplay, format_progress
from llmchain.testing import FakeClock, MockReply, MockTransport
from tests.batch._util import (
    FakeCache,
    InFlightGauge,
    TinyRetry,
    assert_each_id_once,
    read_results,
    write_jsonl,
)


def prompts(n: int, start: int = 0) -> list[dict[str, Any]]:
    return [{"id": f"r{i}", "prompt": f"prompt {i}"} for i in range(start, start + n)]


def run(inp: Path, out: Path, chain: Chain | None = None, **kw: Any) -> BatchSummary:
    return asyncio.run(run_batch(inp, out, chain or Chain(), **kw))


def test_every_record_gets_one_result_line(tmp_path: Path) -> None:
    inp = write_jsonl(tmp_path / "in.jsonl", [*prompts(30), "", {"prompt": "no id"}])
    summary = run(inp, tmp_path / "out.jsonl", concurrency=4)
    records = assert_each_id_once(tmp_path / "out.jsonl", [f"r{i}" for i in range(30)] + [32])
    by_id = {r["id"]: r for r in records}
    assert by_id["r7"]["text"] == "prompt 7" and by_id[32]["text"] == "no id"
    r = by_id["r7"]
    assert r["ok"] is True and r["line"] == 8 and r["attempts"] == 1 and r["model"] == "mock-1"
    assert r["usage"]["input_tokens"] >= 1 and len(r["request_id"]) == 32 and r["cache"] is None
    assert (summary.written, summary.ok, summary.failed, summary.blank) == (31, 31, 0, 1)
    assert summary.all_ok and not summary.stopped and summary.total_lines == 32


def test_rerun_after_a_partial_run_sends_only_the_rest(tmp_path: Path) -> None:
    out = tmp_path / "out.jsonl"
    run(write_jsonl(tmp_path / "part.jsonl", prompts(40)), out)
    transport = MockTransport()
    summary = run(write_jsonl(tmp_path / "all.jsonl", prompts(100)), out, Chain(transport=transport))
    assert (summary.skipped, summary.written) == (40, 60)
    assert sorted(r.messages[0].content for r in transport.calls) == sorted(
        f"prompt {i}" for i in range(40, 100)
    )
    assert_each_id_once(out, [f"r{i}" for i in range(100)])
    again = run(tmp_path / "all.jsonl", out)
    assert (again.skipped, again.written) == (100, 0)


def test_torn_last_line_is_repaired_and_that_record_redone(tmp_path: Path) -> None:
    inp, out = write_jsonl(tmp_path / "in.jsonl", prompts(10)), tmp_path / "out.jsonl"
    run(inp, out)
    data = out.read_bytes()
    last_start = data.rstrip(b"\n").rfind(b"\n") + 1
    out.write_bytes(data[: last_start + 15])  # as if killed inside the last write
    lost_id = json.loads(data[last_start:])["id"]
    summary = run(inp, out)
    assert summary.torn_bytes == 15 and summary.written == 1 and summary.skipped == 9
    records = assert_each_id_once(out, [f"r{i}" for i in range(10)])
    assert records[-1]["id"] == lost_id


def test_malformed_lines_become_error_records_and_the_run_continues(tmp_path: Path) -> None:
    inp = write_jsonl(
        tmp_path / "in.jsonl",
        [{"id": "a", "prompt": "x"}, "{oops", {"id": "b", "max_tokens": 3}, {"id": "c", "prompt": "y"}],
    )
    summary = run(inp, tmp_path / "out.jsonl")
    by_line = {r["line"]: r for r in read_results(tmp_path / "out.jsonl")}
    assert by_line[1]["ok"] and by_line[4]["ok"]
    bad_json, bad_record = by_line[2], by_line[3]
    assert bad_json["id"] is None and bad_json["error"]["type"] == "InvalidInput"
    assert (
        bad_json["error"]["message"].startswith("line 2: not valid JSON")
        and "{oops" in bad_json["error"]["message"]
    )
    assert (
        bad_record["id"] == "b" and "line 3: give exactly one of 'prompt'" in bad_record["error"]["message"]
    )
    assert "hint:" in bad_record["error"]["explain"]
    assert (summary.failed, summary.input_errors, summary.ok) == (2, 2, 2) and not summary.all_ok
    rerun = run(inp, tmp_path / "out.jsonl")  # input errors are results too: not repeated
    assert (rerun.written, rerun.skipped, rerun.previously_failed) == (0, 4, 2)


def test_duplicate_ids_first_wins_rest_reported_once(tmp_path: Path) -> None:
    records: list[dict[str, Any] | str] = [
        {"id": "x", "prompt": "first"},
        {"id": 1, "prompt": "int one"},
        {"id": "x", "prompt": "second"},
        {"id": "1", "prompt": "str one"},
        {"prompt": "line 5 -> id 5"},
        {"id": 5, "prompt": "clashes with line 5"},
    ]
    inp, out = write_jsonl(tmp_path / "in.jsonl", records), tmp_path / "out.jsonl"
    transport = MockTransport()
    run(inp, out, Chain(transport=transport))
    results = read_results(out)
    assert sorted(r.messages[0].content for r in transport.calls) == [
        "first",
        "int one",
        "line 5 -> id 5",
        "str one",
    ]
    dups = sorted((r for r in results if not r["ok"]), key=lambda r: r["line"])
    assert [(d["id"], d["line"], d["error"]["type"]) for d in dups] == [
        (None, 3, "DuplicateId"),
        (None, 6, "DuplicateId"),
    ]
    assert 'duplicate id "x" (first used on line 1)' in dups[0]["error"]["message"]
    assert "duplicate id 5 (first used on line 5)" in dups[1]["error"]["message"]
    rerun = run(inp, out)
    assert rerun.written == 0 and len(read_results(out)) == 6


def test_duplicate_after_a_kill_before_its_line_is_still_reported_once(tmp_path: Path) -> None:
    out = tmp_path / "out.jsonl"
    run(write_jsonl(tmp_path / "head.jsonl", [{"id": "x", "prompt": "a"}]), out)
    inp = write_jsonl(tmp_path / "in.jsonl", [{"id": "x", "prompt": "a"}, {"id": "x", "prompt": "b"}])
    assert run(inp, out).written == 1
    assert run(inp, out).written == 0
    assert [(r["id"], r["ok"]) for r in read_results(out)] == [("x", True), (None, False)]


def test_call_errors_are_explained_redacted_and_counted(tmp_path: Path) -> None:
    leaky = ProviderError(
        "upstream said: bad key sk-abcdefghijklmnop1234", status_code=401, hint="check the API key"
    )
    chain = Chain(transport=MockTransport.scripted("fine", leaky))
    inp = write_jsonl(tmp_path / "in.jsonl", prompts(2))
    summary = run(inp, tmp_path / "out.jsonl", chain, concurrency=1)
    text = (tmp_path / "out.jsonl").read_text()
    assert "sk-abcdefghijklmnop1234" not in text
    failed = next(r for r in read_results(tmp_path / "out.jsonl") if not r["ok"])
    error = failed["error"]
    assert (failed["id"], error["type"], error["status_code"], error["retryable"]) == (
        "r1",
        "ProviderError",
        401,
        False,
    )
    assert "attempts (1)" in error["explain"] and "hint: check the API key" in error["explain"]
    assert failed["attempts"] == 1 and len(failed["request_id"]) == 32
    assert (summary.ok, summary.failed, summary.input_errors) == (1, 1, 0)


def test_schema_records_are_validated_into_parsed(tmp_path: Path) -> None:
    schema = {"type": "object", "properties": {"n": {"type": "integer"}}, "required": ["n"]}
    chain = Chain(transport=MockTransport.scripted('{"n": 3}', '{"n": "three"}', "NaN"))
    records = [{"id": i, "prompt": "count", "schema": schema} for i in range(2)]
    records.append({"id": 2, "prompt": "a number", "schema": {"type": "number"}})
    run(write_jsonl(tmp_path / "in.jsonl", records), tmp_path / "out.jsonl", chain, concurrency=1)
    by_id = {r["id"]: r for r in read_results(tmp_path / "out.jsonl")}
    assert by_id[0]["parsed"] == {"n": 3}
    assert (
        by_id[1]["error"]["type"] == "OutputInvalid"
        and "n: 'three' is not of type" in by_id[1]["error"]["explain"]
    )
    # NaN parses in Python and is a JSON Schema number, but a JSON file cannot hold it
    assert by_id[2]["ok"] is False and "NaN or Infinity" in by_id[2]["error"]["message"]


def test_concurrency_bound_is_reached_and_never_exceeded(tmp_path: Path) -> None:
    gauge = InFlightGauge(limit=7)
    inp = write_jsonl(tmp_path / "in.jsonl", prompts(150))
    summary = run(inp, tmp_path / "out.jsonl", Chain([gauge]), concurrency=7)
    assert gauge.max_seen == 7 and summary.ok == 150


def test_counters_come_from_attempts_and_cache_info(tmp_path: Path) -> None:
    # concurrency 1 walks the script in order: r0 429→ok, r1 503→429→ok, r2 cached, r3 auth error, r4 429 x3
    script: list[MockReply | str] = [
        MockReply(error="rate_limited"),
        "a",
        MockReply(error="server_error"),
        MockReply(error="rate_limited"),
        "b",
        MockReply(error="auth"),
        *[MockReply(error="rate_limited")] * 3,
    ]
    chain = Chain([FakeCache(), TinyRetry(3)], MockTransport.scripted(*script))
    inp = write_jsonl(
        tmp_path / "in.jsonl", [*prompts(2), {"id": "r2", "prompt": "cached one"}, *prompts(2, start=3)]
    )
    summary = run(inp, tmp_path / "out.jsonl", chain, concurrency=1)
    assert (summary.retries, summary.rate_limited, summary.cache_hits) == (1 + 2 + 0 + 0 + 2, 1 + 1 + 3, 1)
    assert (summary.ok, summary.failed) == (3, 2)
    by_id = {r["id"]: r for r in read_results(tmp_path / "out.jsonl")}
    assert by_id["r2"]["cache"] == "hit" and by_id["r2"]["attempts"] == 0
    assert by_id["r4"]["attempts"] == 3 and by_id["r4"]["error"]["type"] == "RateLimited"
    line = format_progress(summary, summary.started_at + summary.elapsed_s)
    for part in ("5/5 100%", "ok 3", "failed 2", "retries 5", "429s 5", "cache hits 1", "ETA 0s"):
        assert part in line


def test_progress_line_rate_and_eta() -> None:
    s = BatchSummary(
        "in", "out", total_lines=1000, started_at=100.0, written=200, ok=190, failed=10, skipped=300
    )
    line = format_progress(s, now=110.0)
    assert line.startswith("500/1000  50% · 20.0/s · ETA 25s · ok 190 · failed 10")
    assert line.endswith("skipped 300")
    assert format_progress(BatchSummary("in", "out", total_lines=None, started_at=0.0), 1.0).startswith(
        "0/? · 0.0/s · ETA ?"
    )


def test_progress_display_tty_redraws_in_place_plain_prints_lines() -> None:
    async def show(tty: bool) -> str:
        stream, clock = io.StringIO(), FakeClock()
        s = BatchSummary("in", "out", total_lines=4, started_at=clock.now(), written=2, ok=2)
        display = ProgressDisplay(stream, s, clock, tty=tty)
        display.draw()
        await display.close()
        return stream.getvalue()

    tty = asyncio.run(show(True))
    assert tty.startswith("\r2/4  50%") and tty.endswith("\x1b[K\n") and tty.count("\r") == 2
    assert (
        asyncio.run(show(False))
        == "batch: 2/4  50% · 0.0/s · ETA ? · ok 2 · failed 0 · retries 0 · 429s 0 · cache hits 0 · in flight 0\n"
    )


class StopAfter:
    """Sets ``stop`` once ``n`` calls have completed, then holds every later call until cancelled."""

    def __init__(self, n: int, stop: asyncio.Event) -> None:
        self.n, self.stop, self.completed = n, stop, 0

    async def handle(self, request: LLMRequest, call_next: Next) -> LLMResponse:
        if self.completed >= self.n:
            self.stop.set()
            await asyncio.Event().wait()  # in flight until the stop cancels it
        self.completed += 1
        return await call_next(request)


def test_stop_cancels_in_flight_writes_nothing_partial_and_resumes(tmp_path: Path) -> None:
    inp, out = write_jsonl(tmp_path / "in.jsonl", prompts(50)), tmp_path / "out.jsonl"

    async def stopped_run() -> BatchSummary:
        stop = asyncio.Event()
        return await run_batch(inp, out, Chain([StopAfter(12, stop)]), concurrency=4, stop=stop)

    summary = asyncio.run(stopped_run())
    assert summary.stopped and summary.written == 12 and summary.cancelled == 4
    assert len(read_results(out)) == 12
    rest = run(inp, out)
    assert (rest.skipped, rest.written) == (12, 38)
    assert_each_id_once(out, [f"r{i}" for i in range(50)])


def test_unusable_arguments_raise_batch_error(tmp_path: Path) -> None:
    inp = write_jsonl(tmp_path / "in.jsonl", prompts(1))
    with pytest.raises(BatchError, match="cannot read the input file"):
        run(tmp_path / "missing.jsonl", tmp_path / "out.jsonl")
    with pytest.raises(BatchError, match="must not be the input file"):
        run(inp, inp)
    with pytest.raises(BatchError, match="concurrency must be at least 1"):
        run(inp, tmp_path / "out.jsonl", concurrency=0)
    with pytest.raises(BatchError, match="cannot open the output file"):
        run(inp, tmp_path / "no-such-dir" / "out.jsonl")
    with pytest.raises(BatchError, match="must be a regular file"):
        run(inp, Path(os.devnull))


def test_write_failure_midway_stops_with_a_clear_error_and_keeps_results(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_write, writes = os.write, list[object]()

    def write(fd: int, data: bytes | memoryview) -> int:
        writes.append(data)
        if len(writes) == 6:  # half a line lands, then the disk is full
            real_write(fd, data[:10])
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real_write(fd, data)

    monkeypatch.setattr(os, "write", write)
    inp, out = write_jsonl(tmp_path / "in.jsonl", prompts(20)), tmp_path / "out.jsonl"
    with pytest.raises(BatchError, match="No space left on device; the results written so far are kept"):
        run(inp, out, concurrency=3)
    monkeypatch.undo()
    assert len(writes) == 6  # nothing written after the failed write
    assert out.read_bytes().count(b"\n") == 5
    assert run(inp, out).torn_bytes == 10
    assert_each_id_once(out, [f"r{i}" for i in range(20)])
