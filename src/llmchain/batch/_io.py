"""Batch records: input lines parsed into requests or problems, results rendered as lines.

A record's key is its id (``json.dumps(id)``, so ``5`` and ``"5"`` differ), or ``line:N`` for
an output record without id (an unparsable line, a duplicate id). ``_log`` keeps the
output file exactly-once by these keys.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from .._exceptions import CallError, ConfigError
from .._models import LLMRequest, Message
from .._redact import redact, trim

RecordId = str | int
INVALID_INPUT = "InvalidInput"
DUPLICATE_ID = "DuplicateId"
_READ_CHUNK = 1 << 20
_SPLITTERS = re.compile("[\x85\u2028\u2029]")  # line breaks for str.splitlines that JSON leaves raw


class BatchError(ConfigError):
    """The batch cannot start: unreadable input, damaged or busy output, bad arguments."""


class _Fields(BaseModel):
    """What an input record may hold besides ``id``; unknown keys are rejected (typos)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    prompt: str | None = None
    messages: list[Message] | None = Field(None, min_length=1)
    system: str | None = None
    model: str | None = None
    temperature: float | None = None
    max_tokens: int | None = None
    top_p: float | None = None
    stop: list[str] | None = None
    seed: int | None = None
    timeout_s: float | None = None
    metadata: dict[str, Any] | None = None
    output_schema: dict[str, Any] | None = Field(None, alias="schema")


ALLOWED_FIELDS = ("id", *sorted(f.alias or n for n, f in _Fields.model_fields.items()))


@dataclass(frozen=True, slots=True)
class Job:
    """A valid input record, ready to send."""

    request: LLMRequest
    schema: dict[str, Any] | None


@dataclass(frozen=True, slots=True)
class Problem:
    """An input line that cannot be sent; it becomes an error record."""

    type: str
    message: str


@dataclass(frozen=True, slots=True)
class Parsed:
    """One non-blank input line: its id (None when none is usable) and what to do with it."""

    line: int
    id: RecordId | None
    item: Job | Problem


def key_of(record_id: RecordId | None, line: int) -> str:
    return json.dumps(record_id) if record_id is not None else f"line:{line}"


def parse_line(raw: bytes, line: int, build: Callable[..., LLMRequest]) -> Parsed | None:
    """Turn one input line into a Job or a Problem; None for a blank line."""
    text = raw.strip()
    if not text:
        return None
    try:
        obj = json.loads(text)
    except ValueError as exc:  # JSONDecodeError and UnicodeDecodeError
        snippet = redact(trim(text.decode("utf-8", "replace"), 80))
        return Parsed(line, None, Problem(INVALID_INPUT, f"line {line}: not valid JSON ({exc}): {snippet}"))
    if not isinstance(obj, dict):
        kind = type(obj).__name__
        return Parsed(line, None, Problem(INVALID_INPUT, f"line {line}: expected a JSON object, got {kind}"))
    record_id = obj.pop("id", None)
    if record_id is None:
        record_id = line  # documented: resuming id-less records needs an unchanged input file
    elif isinstance(record_id, bool) or not isinstance(record_id, str | int) or record_id == "":
        shown = json.dumps(record_id, ensure_ascii=False)
        message = f"line {line}: id must be a non-empty string or an integer, got {shown}"
        return Parsed(line, None, Problem(INVALID_INPUT, trim(message, 200)))
    return Parsed(line, record_id, _to_job(obj, line, build))


def _to_job(obj: dict[str, Any], line: int, build: Callable[..., LLMRequest]) -> Job | Problem:
    try:
        fields = _Fields.model_validate(obj)
    except ValidationError as exc:
        errors = "; ".join(f"{'.'.join(map(str, e['loc'])) or '<record>'}: {e['msg']}" for e in exc.errors())
        hint = f" (allowed fields: {', '.join(ALLOWED_FIELDS)})" if "Extra inputs" in errors else ""
        return Problem(INVALID_INPUT, f"line {line}: {errors}{hint}")
    if (fields.prompt is None) == (fields.messages is None):
        return Problem(INVALID_INPUT, f"line {line}: give exactly one of 'prompt' (a string) or 'messages'")
    params = fields.model_dump(exclude_none=True, exclude={"prompt", "messages"}, by_alias=False)
    if "stop" in params:
        params["stop"] = tuple(params["stop"])
    try:
        request = build(fields.prompt if fields.prompt is not None else fields.messages, **params)
    except ConfigError as exc:
        return Problem(INVALID_INPUT, f"line {line}: {redact(trim(' '.join(str(exc).split()), 500))}")
    return Job(request, fields.output_schema)


def count_lines(path: Path) -> int:
    """Lines in ``path`` (a last line without newline counts), at memory speed."""
    count, last = 0, b"\n"
    with path.open("rb") as f:
        while chunk := f.read(_READ_CHUNK):
            count += chunk.count(b"\n")
            last = chunk[-1:]
    return count + (last != b"\n")


def dumps(record: dict[str, Any]) -> bytes:
    """One output line. NEL, U+2028/9 are escaped too, so ``str.splitlines`` cannot split it."""
    text = json.dumps(record, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    if _SPLITTERS.search(text):
        text = _SPLITTERS.sub(lambda m: f"\\u{ord(m.group()):04x}", text)
    # lone surrogates can only sit inside JSON strings, where a \udXXX escape is valid JSON
    return (text + "\n").encode("utf-8", "backslashreplace")


def error_fields(exc: BaseException) -> dict[str, Any]:
    """The ``error`` object of an output record: redacted message, explanation, retryability."""
    if isinstance(exc, CallError):
        return {
            "type": type(exc).__name__,
            "message": exc.message,
            "explain": exc.explain(),
            "retryable": exc.retryable,
            "status_code": exc.status_code,
        }
    message = redact(trim(str(exc), 500))
    return {
        "type": type(exc).__name__,
        "message": message,
        "explain": f"{type(exc).__name__}: {message}\n  (unexpected error while handling this record)",
        "retryable": False,
        "status_code": None,
    }


def problem_record(parsed: Parsed, problem: Problem) -> dict[str, Any]:
    hint = (
        "fix the record; rerun with --retry-failed to send it again"
        if problem.type == INVALID_INPUT
        else "give every record a distinct id"
    )
    return {
        "id": parsed.id,
        "line": parsed.line,
        "ok": False,
        "error": {
            "type": problem.type,
            "message": problem.message,
            "explain": f"{problem.type}: {problem.message}\n  hint: {hint}",
            "retryable": False,
            "status_code": None,
        },
        "attempts": 0,
    }
