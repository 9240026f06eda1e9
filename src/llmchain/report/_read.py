"""Reading llmchain JSON logs as a stream: plain, rotated, gzip-compressed, mixed with other loggers.

A line is an llmchain line when it is a JSON object whose ``event`` starts with ``llm.`` (the log
stage's summary ``llm.call`` and its debug lines ``llm.<kind>``). Anything else is counted as
foreign and skipped; a final line cut short by a crash mid-write is counted as truncated. Files
are read line by line (never whole), so memory does not grow with the log.
"""

from __future__ import annotations

import calendar
import gzip
import json
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import IO, Any

from .._exceptions import LLMChainError

_GZIP_MAGIC = b"\x1f\x8b"
_SNIFF_BYTES = 4096
MAX_LINE = 1 << 20  # a longer "line" is not one the log stage wrote (it trims every field)


class LogInputError(LLMChainError):
    """A report input cannot be used: missing, unreadable, binary, or not an llmchain log."""


@dataclass
class Filters:
    """What to keep while reading (the CLI's ``--since/--until/--model/--request-id``)."""

    since: float | None = None  # log-time seconds (see ``parse_time``)
    until: float | None = None
    model: str | None = None
    request_id: str | None = None  # a prefix is enough, as in ``grep 3a0f1d7d``

    def keeps_time(self, t: float | None) -> bool:
        if t is None:
            return self.since is None and self.until is None
        return (self.since is None or t >= self.since) and (self.until is None or t < self.until)


@dataclass
class ReadStats:
    """What the reader saw, per file and in all."""

    files: list[str] = field(default_factory=list)
    lines: int = 0
    llmchain_lines: int = 0
    foreign_lines: int = 0
    truncated_lines: int = 0  # a last line cut short (crash mid-write)
    damaged_lines: int = 0  # llmchain-looking lines that are not valid JSON, mid-file
    filtered_out: int = 0  # llmchain lines dropped by --since/--until/--request-id


_TIME_CACHE: dict[str, float] = {}
_DECODE = json.JSONDecoder().decode
_YEAR_10000 = 253_402_300_800.0


def parse_time(value: Any) -> float | None:
    """Seconds since the epoch of a log ``time`` field, reading the wall-clock time as written.

    python-json-logger's default ``"2026-12-05 23:52:03,555"`` has no zone: it is read as is
    (shown back unchanged). ISO 8601 with an offset is converted to UTC; numbers are epoch seconds.
    """
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value) if 0 <= value < _YEAR_10000 else None  # also rejects NaN
    if not isinstance(value, str) or len(value) < 19:
        return None
    head = value[:19]
    base = _TIME_CACHE.get(head)
    if base is None:
        try:  # by hand: strptime costs more than the rest of the line's parsing
            if head[4] != "-" or head[7] != "-" or head[10] not in " T" or head[13] != ":":
                return None
            base = float(calendar.timegm((int(head[:4]), int(head[5:7]), int(head[8:10]),
                                          int(head[11:13]), int(head[14:16]), int(head[17:19]))))
        except ValueError:
            return None
        if not 0 <= base < _YEAR_10000:  # before 1970: not a time this library wrote
            return None
        if len(_TIME_CACHE) > 100_000:  # one entry per second of log: keep it bounded
            _TIME_CACHE.clear()
        _TIME_CACHE[head] = base
    rest = value[19:]
    if not rest:
        return base
    if rest[0] in ",." and rest[1:4].isdigit() and len(rest) == 4:  # the common case, fast
        return base + int(rest[1:4]) / 1000
    try:
        parsed = datetime.fromisoformat(value.replace(",", "."))
    except ValueError:
        return base
    if parsed.tzinfo is not None:
        try:
            parsed = parsed.astimezone(timezone.utc)
        except OverflowError:
            return None
    t = calendar.timegm(parsed.timetuple()) + parsed.microsecond / 1e6
    return t if 0 <= t < _YEAR_10000 else None


def format_time(t: float, *, with_ms: bool = False) -> str:
    """A log-time value back as the log wrote it (``2026-12-05 23:52:03``)."""
    stamp = datetime.fromtimestamp(t, timezone.utc)
    text = stamp.strftime("%Y-%m-%d %H:%M:%S")
    return f"{text}.{stamp.microsecond // 1000:03d}" if with_ms else text


def parse_time_option(text: str) -> float:
    """``--since/--until``: a date-time as the log writes it, or ISO 8601 (``2026-12-05T14:02``)."""
    cleaned = text.strip().replace("T", " ")
    for pattern in ("%Y-%m-%d %H:%M:%S", "%Y-%m-%d %H:%M", "%Y-%m-%d"):
        try:
            return float(calendar.timegm(datetime.strptime(cleaned, pattern).timetuple()))
        except ValueError:
            continue
    parsed = parse_time(cleaned)
    if parsed is None:
        raise LogInputError(f"cannot read the time {text!r}: write it like the log does, "
                            "e.g. '2026-12-05 14:02' or '2026-12-05T14:02:30'")
    return parsed


def _open(path: str) -> IO[bytes]:
    if path == "-":
        return sys.stdin.buffer
    try:
        raw = open(path, "rb")  # noqa: SIM115 - closed by the caller
    except FileNotFoundError:
        raise LogInputError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise LogInputError(f"{path}: is a directory; pass the log files ({path}/llmchain.log*)") from None
    except OSError as exc:
        raise LogInputError(f"{path}: cannot be read ({exc.strerror})") from None
    head = raw.peek(_SNIFF_BYTES)[:_SNIFF_BYTES] if hasattr(raw, "peek") else b""
    if head.startswith(_GZIP_MAGIC):
        return gzip.GzipFile(fileobj=raw)  # type: ignore[return-value]
    if b"\x00" in head and b'"llm.' not in head:  # NULs alone may be a crash's padding in a log
        raw.close()
        raise LogInputError(f"{path}: a binary file, not an llmchain log (expected JSON lines, "
                            "plain or gzip-compressed)")
    return raw


def _raw_lines(stream: IO[bytes], path: str, stats: ReadStats) -> Iterator[tuple[bytes, bool]]:
    """(line, complete) pairs; a gzip stream cut short ends like a truncated last line."""
    count = 0
    try:
        while line := stream.readline(MAX_LINE):
            count += 1
            if len(line) == MAX_LINE and not line.endswith(b"\n"):  # not a log line: skip it whole
                while (more := stream.readline(MAX_LINE)) and not more.endswith(b"\n"):
                    pass
                yield b"", True  # counted as foreign, without holding it in memory
                continue
            yield line, line.endswith(b"\n")
    except (EOFError, gzip.BadGzipFile) as exc:  # the compressed file ends mid-stream
        if isinstance(exc, gzip.BadGzipFile) and count == 0:
            raise LogInputError(f"{path}: a damaged gzip file ({exc})") from None
        stats.truncated_lines += 1


def read_records(paths: Sequence[str], stats: ReadStats, filters: Filters | None = None,
                 ) -> Iterator[tuple[float | None, dict[str, Any]]]:
    """Yield (time, line) for every llmchain line of ``paths``, oldest file first."""
    filters = filters or Filters()
    prefix = filters.request_id
    for path in order_by_first_time(paths):
        stats.files.append(path)
        found_before = stats.llmchain_lines
        lines_before = stats.lines
        stream = _open(path)
        try:
            for raw, complete in _raw_lines(stream, path, stats):
                stats.lines += 1
                line = _decode(raw, complete, stats)
                if line is None:
                    continue
                stats.llmchain_lines += 1
                t = parse_time(line.get("time"))
                rid = line.get("request_id")
                if (prefix is not None and not (isinstance(rid, str) and rid.startswith(prefix))) \
                        or not filters.keeps_time(t):
                    stats.filtered_out += 1
                    continue
                yield t, line
        finally:
            if stream is not sys.stdin.buffer:
                stream.close()
        if stats.llmchain_lines == found_before:
            seen = stats.lines - lines_before
            raise LogInputError(
                f"{path}: not an llmchain log: none of its {seen} line(s) is a JSON line with an "
                '"event" starting with "llm." (the log stage\'s output; see docs/stages/log.md). '
                "Pass the file the llmchain logger writes to, e.g. llmchain-demo.log after "
                "`llmchain demo`.")


def _decode(raw: bytes, complete: bool, stats: ReadStats) -> dict[str, Any] | None:
    stripped = raw.strip()
    if not stripped.startswith(b"{"):
        stats.foreign_lines += 1
        return None
    try:
        line = _DECODE(stripped.decode("utf-8", "replace"))
    except ValueError:
        if not complete:
            stats.truncated_lines += 1  # a crash mid-write: the last line stops short
        elif b'"llm.' in stripped:
            stats.damaged_lines += 1
        else:
            stats.foreign_lines += 1
        return None
    event = line.get("event") if isinstance(line, dict) else None
    if not isinstance(event, str) or not event.startswith("llm."):
        stats.foreign_lines += 1
        return None
    record: dict[str, Any] = line
    return record


def order_by_first_time(paths: Sequence[str]) -> list[str]:
    """Oldest file first, by the first timestamp inside (rotation suffixes vary by handler)."""
    if len(paths) < 2 or "-" in paths:
        return list(paths)
    keyed = [(_first_time(p), i, p) for i, p in enumerate(paths)]
    keyed.sort(key=lambda k: (k[0] is None, k[0] or 0.0, k[1]))
    return [p for _, _, p in keyed]


def _first_time(path: str) -> float | None:
    try:
        stream = _open(path)
    except LogInputError:
        return None  # reported properly when the file is read
    try:
        for n, raw in enumerate(stream):
            if n > 1000:
                break
            line = _decode(raw, True, ReadStats())
            t = parse_time(line.get("time")) if line is not None else None
            if t is not None:
                return t
    except (OSError, EOFError):
        return None
    finally:
        stream.close()
    return None


def expand(paths: Sequence[str]) -> list[str]:
    """The CLI's paths, checked to exist (a shell glob that matched nothing stays literal)."""
    out = []
    for p in paths:
        if p != "-" and not Path(p).exists():
            raise LogInputError(f"{p}: no such file")
        out.append(p)
    return out
