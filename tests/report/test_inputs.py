"""Inputs as they come: several files, rotated and gzip-compressed, other loggers' lines, a crash
mid-write, files that are not llmchain logs; and the CLI's answer to each (exit 2, no traceback)."""

from __future__ import annotations

import gzip
import json
import os
import re
import sys
from pathlib import Path
from typing import Any

import pytest

from llmchain.cli import main
from llmchain.report import Filters, LogInputError, read_logs, render_text
from llmchain.report._read import parse_time, parse_time_option


def call(rid: str, t: str, *, model: str = "gpt-4o-mini", outcome: str = "ok", latency: float = 100.0,
         **extra: Any) -> str:
    line = {"time": t, "level": "INFO", "logger": "llmchain", "message": "llm call", "event": "llm.call",
            "request_id": rid, "model": model, "transport": f"openai:{model}", "outcome": outcome,
            "error_type": None if outcome == "ok" else "GaveUp", "latency_ms": latency, "attempts": 1,
            "cache": "miss" if outcome == "ok" else None, "tokens_in": 10, "tokens_out": 5, "cost_usd": 0.001}
    line.update(extra)
    return json.dumps(line)


def debug(rid: str, t: str, event: str, **data: Any) -> str:
    return json.dumps({"time": t, "level": "DEBUG", "logger": "llmchain", "message": event,
                       "event": f"llm.{event}", "request_id": rid, "stage": "x", **data})


def write(path: Path, lines: list[str], *, gz: bool = False, end: str = "\n") -> str:
    body = ("\n".join(lines) + end).encode()
    path.write_bytes(gzip.compress(body) if gz else body)
    return str(path)


def test_rotated_and_gzip_files_are_read_oldest_first_whatever_the_argument_order(tmp_path: Path) -> None:
    # a call whose debug lines are in the older file and whose summary is in the newer one
    old = write(tmp_path / "app.log.1.gz", [
        call("a1", "2026-12-05 14:00:00,000"),
        debug("b2", "2026-12-05 14:00:59,000", "attempt_end", attempt=1, outcome="error", status_code=429),
        debug("b2", "2026-12-05 14:00:59,100", "retry_scheduled", attempt=2, delay_s=1.0),
    ], gz=True)
    new = write(tmp_path / "app.log", [call("b2", "2026-12-05 14:01:01,000", attempts=2)])
    data = read_logs([new, old])
    assert data.stats.files == [old, new]
    totals = dict(zip(("calls", "retries", "http_429"), (data.totals()[i] for i in (0, 7, 8)), strict=True))
    assert totals == {"calls": 2, "retries": 1, "http_429": 1}
    assert data.unfinished == 0 and data.calls_without_debug == 1  # a1 had no debug lines


def test_foreign_lines_are_skipped_and_counted_and_a_truncated_last_line_tolerated(tmp_path: Path) -> None:
    path = write(tmp_path / "mixed.log", [
        "INFO:uvicorn: started", call("a", "2026-12-05 14:00:00,000"), "",
        json.dumps({"time": "2026-12-05 14:00:00,500", "logger": "httpx", "message": "GET /"}),
        "Traceback (most recent call last):", call("b", "2026-12-05 14:00:01,000"),
        call("c", "2026-12-05 14:00:02,000")[:57],  # the process died mid-write
    ], end="")
    data = read_logs([path])
    assert (data.calls, data.stats.foreign_lines, data.stats.truncated_lines) == (2, 4, 1)
    text = render_text(data)
    assert "4 foreign lines skipped, 1 truncated" in text


def test_a_damaged_llmchain_line_mid_file_is_counted_not_fatal(tmp_path: Path) -> None:
    path = write(tmp_path / "x.log", [call("a", "2026-12-05 14:00:00,000")[:40] + '"event": "llm.call"',
                                      call("b", "2026-12-05 14:00:01,000")])
    data = read_logs([path])
    assert (data.calls, data.stats.damaged_lines) == (1, 1)


def test_a_gzip_log_cut_short_keeps_what_was_written(tmp_path: Path) -> None:
    lines = [call(f"r{i}", f"2026-12-05 14:00:{i:02d},000") for i in range(50)]
    whole = gzip.compress(("\n".join(lines) + "\n").encode())
    path = tmp_path / "cut.log.gz"
    path.write_bytes(whole[: len(whole) - 20])
    data = read_logs([str(path)])
    assert 0 < data.calls <= 50 and data.stats.truncated_lines == 1


@pytest.mark.parametrize(("content", "message"), [
    (b"hello\nworld\n", "not an llmchain log: none of its 2 line(s)"),
    (json.dumps({"event": "request", "logger": "uvicorn"}).encode() + b"\n", "not an llmchain log"),
    (b"\x89PNG\r\n\x1a\n\x00\x00\x00", "a binary file, not an llmchain log"),
    (b"", "not an llmchain log: none of its 0 line(s)"),
])
def test_a_file_that_is_not_an_llmchain_log_is_a_clear_error(tmp_path: Path, content: bytes, message: str) -> None:
    path = tmp_path / "other.log"
    path.write_bytes(content)
    with pytest.raises(LogInputError, match=re.escape(message)):
        read_logs([str(path)])


def test_cli_bad_input_exits_2_with_one_clear_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "notes.txt").write_text("meeting notes\n")
    good = write(tmp_path / "ok.log", [call("a", "2026-12-05 14:00:00,000")])
    cases = [
        ([str(tmp_path / "missing.log")], "missing.log: no such file"),
        ([str(tmp_path / "notes.txt")], "notes.txt: not an llmchain log"),
        ([good, str(tmp_path / "notes.txt"), "--text"], "notes.txt: not an llmchain log"),
        ([str(tmp_path)], "is a directory"),
        ([good, "--since", "yesterday", "--text"], "cannot read the time 'yesterday'"),
        ([good, "--bucket", "0", "--text"], "--bucket 0"),
    ]
    for argv, message in cases:
        assert main(["report", *argv]) == 2, argv
        err = capsys.readouterr().err
        assert message in err and "Traceback" not in err, (argv, err)
        assert err.startswith("llmchain report: ") and err.count("\n") == 1


def test_text_works_without_plotly_and_html_says_what_to_install(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "plotly", None)  # as if the extra were not installed
    monkeypatch.setitem(sys.modules, "plotly.offline", None)
    log = write(tmp_path / "ok.log", [call("a", "2026-12-05 14:00:00,000")])
    assert main(["report", log, "--text"]) == 0
    assert "Summary: 1 calls: 1 ok" in capsys.readouterr().out
    out = tmp_path / "r.html"
    assert main(["report", log, "-o", str(out)]) == 2
    assert "pip install 'llmchain[report]'" in capsys.readouterr().err
    assert not out.exists()


def test_filters_apply_while_reading(tmp_path: Path) -> None:
    log = write(tmp_path / "f.log", [
        call("aaaa1", "2026-12-05 14:00:00,000", model="gpt-4o"),
        debug("bbbb2", "2026-12-05 14:05:00,000", "retry_scheduled", attempt=2, delay_s=0.1),
        call("bbbb2", "2026-12-05 14:05:01,000", model="gpt-4o-mini", outcome="error"),
        call("cccc3", "2026-12-05 14:10:00,000", model="gpt-4o"),
    ])
    assert read_logs([log], Filters(model="gpt-4o")).calls == 2
    only_b = read_logs([log], Filters(request_id="bbbb"))
    assert only_b.calls == 1 and only_b.totals()[7] == 1 and only_b.stats.filtered_out == 2
    window = read_logs([log], Filters(since=parse_time_option("2026-12-05 14:01"),
                                      until=parse_time_option("2026-12-05T14:10")))
    assert window.calls == 1 and list(window.kinds) == ["GaveUp"]


def test_times_are_read_as_the_log_wrote_them() -> None:
    assert parse_time("2026-12-05 14:00:00,250") == parse_time_option("2026-12-05 14:00") + 0.25
    assert parse_time("2026-12-05T15:00:00+01:00") == parse_time_option("2026-12-05 14:00")
    assert parse_time(1_700_000_000) == 1_700_000_000.0
    assert parse_time("not a time at all") is None and parse_time(None) is None


def test_unknown_fields_ignored_and_missing_fields_tolerated(tmp_path: Path) -> None:
    log = write(tmp_path / "odd.log", [
        json.dumps({"event": "llm.call", "request_id": "x", "new_field": [1, 2], "outcome": "error"}),
        json.dumps({"event": "llm.attempt_end", "status_code": "429?", "attempt": None}),
        json.dumps({"event": "llm.future_event", "request_id": "y", "time": 12}),
    ])
    data = read_logs([log])
    assert data.calls == 1 and data.unfinished == 1 and data.first_t == data.last_t == 12.0
    assert "1 failed" in render_text(data)


def test_the_html_report_is_private_to_its_owner(tmp_path: Path) -> None:
    pytest.importorskip("plotly", reason="the dev extra installs plotly (llmchain[report])")
    log = write(tmp_path / "a.log", [call("a", "2026-12-05 14:00:00,000")])
    out = tmp_path / "r.html"
    assert main(["report", log, "-o", str(out)]) == 0
    assert os.stat(out).st_mode & 0o777 == 0o600


def test_request_id_tells_the_story_of_an_ok_call_too(tmp_path: Path) -> None:
    log = write(tmp_path / "s.log", [
        debug("feed1", "2026-12-05 14:00:00,000", "attempt_start", attempt=1, served_by="openai:m"),
        debug("feed1", "2026-12-05 14:00:00,200", "attempt_end", attempt=1, outcome="error", status_code=503,
              error_type="ProviderError", duration_s=0.2),
        debug("feed1", "2026-12-05 14:00:00,200", "retry_scheduled", attempt=2, delay_s=0.3),
        call("feed1", "2026-12-05 14:00:00,900", attempts=2),
        call("other", "2026-12-05 14:00:01,000"),
    ])
    data = read_logs([log], Filters(request_id="feed"))
    [story] = [s.story for s in data.requested]
    assert story[0].startswith("ok: answered after 2 attempt(s)")
    assert "      +200 ms  attempt #1 · error · 200 ms · HTTP 503 · ProviderError" in story
    assert "      +200 ms  retry #2 in 300 ms (backoff)" in story
    assert "Story of feed1 (--request-id)" in render_text(data)


def test_debug_lines_of_calls_that_never_end_stay_bounded() -> None:
    from llmchain.report._aggregate import Aggregator
    from llmchain.report._read import ReadStats

    aggregator = Aggregator(ReadStats(), max_pending_events=100)
    for i in range(1000):  # summaries never arrive (an INFO-filtered handler, a crash...)
        aggregator.add(1000.0 + i, {"event": "llm.attempt_end", "request_id": f"r{i // 3}", "status_code": 429})
        assert aggregator._pending_events <= 100
    data = aggregator.finish()
    assert data.unfinished == 334 and data.totals()[8] == 1000  # every 429 still counted


def test_a_chosen_bucket_width_is_kept(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    log = write(tmp_path / "b.log", [call("a", "2026-12-05 14:00:10,000"), call("b", "2026-12-05 14:00:50,000"),
                                     call("c", "2026-12-05 14:01:10,000")])
    data = read_logs([log], bucket_ms=60_000)
    assert data.bucket_ms == 60_000
    assert {k: int(v["gpt-4o-mini"].counts[0]) for k, v in data.buckets.items()} == {
        int(parse_time_option("2026-12-05 14:00") * 1000): 2, int(parse_time_option("2026-12-05 14:01") * 1000): 1}
    assert main(["report", log, "--text", "--bucket", "60"]) == 0
    assert "time buckets of 1 min" in capsys.readouterr().out


def test_log_text_cannot_break_out_of_the_page(tmp_path: Path) -> None:
    pytest.importorskip("plotly", reason="the dev extra installs plotly (llmchain[report])")
    hostile = '</script><img src=x onerror="alert(1)">{{PLOTLY_JS}}'
    log = write(tmp_path / "h.log", [call("a", "2026-12-05 14:00:00,000", outcome="error", error=hostile,
                                          error_type=hostile, model=hostile)])
    out = tmp_path / "r.html"
    assert main(["report", log, "-o", str(out)]) == 0
    html = out.read_text()
    assert "<img" not in html.split('<script id="report-data"')[1].split("</script>")[0]
    assert html.count("plotly.js v") == 1 and '<img src=x' not in html
    assert html.count("</script>") == html.count("<script")


def test_an_endless_line_is_skipped_without_holding_it(tmp_path: Path) -> None:
    from llmchain.report._read import MAX_LINE

    path = tmp_path / "long.log"
    with path.open("wb") as out:
        out.write((call("a", "2026-12-05 14:00:00,000") + "\n").encode())
        out.write(b"x" * (3 * MAX_LINE + 5) + b"\n")  # e.g. a dumped blob from another logger
        out.write((call("b", "2026-12-05 14:00:01,000") + "\n").encode())
    data = read_logs([str(path)])
    assert (data.calls, data.stats.foreign_lines, data.stats.lines) == (2, 1, 3)
