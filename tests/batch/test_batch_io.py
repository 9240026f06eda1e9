"""Batch files: parsing input lines, and the exactly-once output log (resume, torn line, lock)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from llmchain import Chain
from llmchain.batch._io import (
    INVALID_INPUT,
    BatchError,
    Job,
    Problem,
    count_lines,
    dumps,
    key_of,
    parse_line,
)
from llmchain.batch._log import OutputLog

BUILD = Chain().build_request


def parse(text: str, line: int = 7) -> tuple[object, Job | Problem]:
    parsed = parse_line(text.encode() + b"\n", line, BUILD)
    assert parsed is not None
    assert parsed.line == line
    return parsed.id, parsed.item


def test_prompt_record_becomes_a_request_with_its_params() -> None:
    record_id, job = parse(
        '{"id": "a", "prompt": "hi", "system": "be brief", "model": "m", "temperature": 0.2, '
        '"max_tokens": 5, "stop": ["x"], "metadata": {"cache": "bypass"}}'
    )
    assert record_id == "a" and isinstance(job, Job)
    assert [(m.role, m.content) for m in job.request.messages] == [("system", "be brief"), ("user", "hi")]
    r = job.request
    assert (r.model, r.temperature, r.max_tokens, r.stop, r.metadata) == (
        "m",
        0.2,
        5,
        ("x",),
        {"cache": "bypass"},
    )
    assert job.schema is None


def test_messages_and_schema_records() -> None:
    schema = {"type": "object", "required": ["n"]}
    record_id, job = parse(
        json.dumps({"id": 3, "messages": [{"role": "user", "content": "q"}], "schema": schema})
    )
    assert record_id == 3 and isinstance(job, Job)
    assert job.request.messages[0].content == "q"
    assert job.schema == schema and job.request.output_schema == schema


def test_blank_line_is_not_a_record() -> None:
    assert parse_line(b"   \n", 1, BUILD) is None


def test_missing_or_null_id_is_the_line_number() -> None:
    assert parse('{"prompt": "p"}', line=12)[0] == 12
    assert parse('{"id": null, "prompt": "p"}', line=13)[0] == 13


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("{not json", "line 7: not valid JSON"),
        ('["a list"]', "line 7: expected a JSON object, got list"),
        ('{"id": true, "prompt": "p"}', "line 7: id must be a non-empty string or an integer, got true"),
        ('{"id": 1.5, "prompt": "p"}', "got 1.5"),
        ('{"id": "", "prompt": "p"}', 'got ""'),
    ],
)
def test_unusable_lines_have_no_id_and_name_the_line(text: str, expected: str) -> None:
    record_id, problem = parse(text)
    assert record_id is None
    assert isinstance(problem, Problem) and problem.type == INVALID_INPUT
    assert expected in problem.message


def test_invalid_utf8_is_reported_not_raised() -> None:
    parsed = parse_line(b'{"id": "a", "prompt": "\xff\xfe"}\n', 4, BUILD)
    assert parsed is not None and isinstance(parsed.item, Problem)
    assert parsed.item.message.startswith("line 4: not valid JSON")


@pytest.mark.parametrize(
    ("record", "expected"),
    [
        ({"prompt": "p", "temprature": 1}, "temprature: Extra inputs are not permitted (allowed fields: id,"),
        (
            {"prompt": "p", "messages": [{"role": "user", "content": "q"}]},
            "exactly one of 'prompt' (a string) or 'messages'",
        ),
        ({"model": "m"}, "exactly one of 'prompt'"),
        ({"messages": []}, "messages: List should have at least 1 item"),
        ({"prompt": 5}, "prompt: Input should be a valid string"),
        ({"prompt": "p", "max_tokens": 0}, "max_tokens"),
        ({"messages": [{"role": "robot", "content": "x"}]}, "messages.0.role"),
    ],
)
def test_invalid_records_keep_their_id_and_say_what_is_wrong(
    record: dict[str, object], expected: str
) -> None:
    record_id, problem = parse(json.dumps({"id": "r", **record}))
    assert record_id == "r"
    assert isinstance(problem, Problem) and problem.type == INVALID_INPUT
    assert problem.message.startswith("line 7: ") and expected in problem.message
    assert "\n" not in problem.message


def test_keys_distinguish_int_and_string_ids_and_idless_lines() -> None:
    assert len({key_of(5, 1), key_of("5", 1), key_of(None, 5), key_of("line:5", 1)}) == 4


def test_count_lines_with_and_without_final_newline(tmp_path: Path) -> None:
    path = tmp_path / "f"
    path.write_bytes(b"a\nb\n\nc")
    assert count_lines(path) == 4
    path.write_bytes(b"a\n")
    assert count_lines(path) == 1
    path.write_bytes(b"")
    assert count_lines(path) == 0


def test_dumps_one_line_valid_json_even_for_odd_text() -> None:
    record = {"id": "x", "text": "para\u2028graph\u2029 \x85 \ud800 naïve\n"}
    line = dumps(record)
    assert line.endswith(b"\n") and line.count(b"\n") == 1
    assert len(line.decode("utf-8").splitlines()) == 1
    assert json.loads(line)["text"] == record["text"]
    with pytest.raises(ValueError):
        dumps({"parsed": float("nan")})


def result(record_id: object, ok: bool = True, line: int = 1) -> bytes:
    return dumps({"id": record_id, "line": line, "ok": ok})


def test_resume_collects_done_keys_and_counts_earlier_failures(tmp_path: Path) -> None:
    out = tmp_path / "out.jsonl"
    out.write_bytes(result("a") + result(2, ok=False) + result(None, ok=False, line=9) + b"\n")
    log = OutputLog(out)
    try:
        assert log.done == {'"a"', "2", "line:9"}
        assert (log.failed_before, log.torn_bytes) == (2, 0)
    finally:
        log.close()


def test_torn_last_line_is_truncated_and_its_record_not_done(tmp_path: Path) -> None:
    out = tmp_path / "out.jsonl"
    complete = result("a") + result("b")
    out.write_bytes(complete + b'{"id":"c","line":3,"o')
    log = OutputLog(out)
    try:
        assert log.torn_bytes == len(b'{"id":"c","line":3,"o')
        assert log.done == {'"a"', '"b"'}
        assert out.read_bytes() == complete
        log.write('"c"', {"id": "c", "line": 3, "ok": True})
    finally:
        log.close()
    assert [json.loads(x)["id"] for x in out.read_bytes().splitlines()] == ["a", "b", "c"]


def test_a_key_is_never_written_twice(tmp_path: Path) -> None:
    out = tmp_path / "out.jsonl"
    out.write_bytes(result("a"))
    log = OutputLog(out)
    try:
        with pytest.raises(RuntimeError, match="written twice"):
            log.write('"a"', {"id": "a", "line": 1, "ok": True})
    finally:
        log.close()
    assert out.read_bytes() == result("a")


def test_damaged_middle_line_stops_the_run_with_its_line_number(tmp_path: Path) -> None:
    out = tmp_path / "out.jsonl"
    out.write_bytes(result("a") + b"\x00\x00garbage\n" + result("b"))
    with pytest.raises(BatchError, match=r"out.jsonl: line 2 is not a result record"):
        OutputLog(out)
    out.write_bytes(b'{"some": "other file"}\n')
    with pytest.raises(BatchError, match="line 1"):
        OutputLog(out)


def test_second_writer_on_the_same_file_is_refused(tmp_path: Path) -> None:
    out = tmp_path / "out.jsonl"
    first = OutputLog(out)
    try:
        with pytest.raises(BatchError, match="another `llmchain batch` is writing"):
            OutputLog(out)
    finally:
        first.close()
    OutputLog(out).close()  # the lock goes with the writer


def test_retry_failed_drops_error_records_crash_safely(tmp_path: Path) -> None:
    out = tmp_path / "out.jsonl"
    out.write_bytes(
        result("a") + result("b", ok=False) + result(None, ok=False, line=4) + result("c") + b'{"to'
    )
    log = OutputLog(out, retry_failed=True)
    try:
        assert (log.dropped_failed, log.failed_before) == (2, 0)
        assert log.done == {'"a"', '"c"'}
        log.write('"b"', {"id": "b", "line": 2, "ok": True})
    finally:
        log.close()
    assert out.read_bytes() == result("a") + result("c") + dumps({"id": "b", "line": 2, "ok": True})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.jsonl"]
