"""Answer text → JSON value, at three strictness levels; never alters the JSON it finds.

Pure functions shared by the ``parse``, ``validate`` and ``repair`` stages and by
``Chain.complete_json``, so all of them accept and reject exactly the same answers.
``extract_json(text, mode=...)``: ``"strict"`` takes the whole answer, ``"fenced"`` also looks
inside Markdown code fences, ``"lenient"`` also takes the first complete *top-level* object or
array embedded in prose (never one nested inside a broken one). Failure is a ``ParseError``
with the position in the answer and a short excerpt around it.

``balanced_end`` is a forgiving bracket matcher (strings, single quotes, comments) used to
step over broken candidates here and to cut out the region to repair in ``_json_fix``.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any, Literal

from .._exceptions import ParseError

Mode = Literal["strict", "fenced", "lenient"]
Expect = Literal["object", "array", "string", "number", "integer", "boolean", "null"]

#: How many ``{``/``[`` positions the lenient search tries before giving up; bounds the work
#: on long prose full of braces (each try is one linear ``raw_decode``).
MAX_CANDIDATES = 64

_decoder = json.JSONDecoder()
FENCE = re.compile(r"```[ \t]*[A-Za-z0-9_+.-]*[ \t]*\r?\n?(.*?)(?:```|\Z)", re.DOTALL)
OPENERS = {"object": "{", "array": "["}


@dataclass
class _Failure:
    message: str
    position: int
    progress: int  # how far decoding got: the most JSON-like candidate explains best


def excerpt(text: str, position: int, radius: int = 30) -> str:
    """A short window of ``text`` around ``position``, the spot marked with ``>>>``."""
    start, end = max(0, position - radius), min(len(text), position + radius)
    before = ("…" if start > 0 else "") + text[start:position]
    after = text[position:end] + ("…" if end < len(text) else "")
    return f"{before}>>>{after}"


def _decode_whole(text: str, offset: int) -> Any | _Failure:
    """Decode ``text`` as exactly one JSON value (whitespace around it allowed)."""
    stripped = text.lstrip()
    lead = len(text) - len(stripped)
    try:
        value, end = _decoder.raw_decode(stripped)
    except json.JSONDecodeError as exc:
        return _Failure(exc.msg, offset + lead + exc.pos, exc.pos)
    except RecursionError:
        return _Failure("nested too deeply", offset + lead, 0)
    if stripped[end:].strip():
        return _Failure("extra data after the JSON value", offset + lead + end, end)
    return value


def _decode_prefix(text: str, start: int) -> Any | _Failure:
    """Decode the one JSON value that begins at ``start``; anything after it is ignored."""
    try:
        value, _ = _decoder.raw_decode(text, start)
    except json.JSONDecodeError as exc:
        return _Failure(exc.msg, exc.pos, exc.pos - start)
    except RecursionError:
        return _Failure("nested too deeply", start, 0)
    return value


def closes_single_quote(text: str, i: int) -> bool:
    """A ``'`` ends a single-quoted string only if a delimiter follows (so "it's" stays one)."""
    rest = text[i + 1 : i + 64].lstrip()
    return not rest or rest[0] in ",:}]"


def skip_comment(text: str, i: int) -> int:
    if text.startswith("//", i) or text[i] == "#":
        end = text.find("\n", i)
        return len(text) if end < 0 else end
    end = text.find("*/", i + 2)
    return len(text) if end < 0 else end + 2


def balanced_end(text: str, start: int) -> int:
    """Index just past the closer matching the opener at ``start``, or ``len(text)``.

    Reads like a forgiving JSON reader: skips double- and single-quoted strings (an apostrophe
    only opens a string where a value or key may start) and ``//``, ``/* */``, ``#`` comments,
    so braces inside them do not count.
    """
    depth, quote, prev, i, n = 0, "", "{", start, len(text)
    while i < n:
        ch = text[i]
        if quote:
            if ch == "\\":
                i += 2
                continue
            if ch == quote and (quote == '"' or closes_single_quote(text, i)):
                quote, prev = "", ch
            i += 1
            continue
        if ch == '"' or (ch == "'" and prev in "{[,:"):
            quote = ch
        elif ch == "#" or (ch == "/" and text.startswith(("//", "/*"), i)):
            i = skip_comment(text, i)
            continue
        elif ch in "{[":
            depth += 1
        elif ch in "}]":
            depth -= 1
            if depth == 0:
                return i + 1
        if not ch.isspace():
            prev = ch
        i += 1
    return n


def next_opener(text: str, pos: int) -> int:
    """The first ``{`` or ``[`` at or after ``pos``, or -1."""
    found = [p for p in (text.find("{", pos), text.find("[", pos)) if p >= 0]
    return min(found) if found else -1


def _search_prose(text: str, expect: str | None, failures: list[_Failure]) -> Any | _Failure:
    """The first complete top-level object/array in ``text``; nested ones are never taken."""
    wanted = OPENERS.get(expect or "")
    pos = 0
    for _ in range(MAX_CANDIDATES):
        start = next_opener(text, pos)
        if start < 0:
            break
        if wanted is None or text[start] == wanted:
            found = _decode_prefix(text, start)
            if not isinstance(found, _Failure):
                return found
            failures.append(found)
        pos = balanced_end(text, start)  # jump over it: what is inside is not top-level
    return _Failure("not found", 0, -1)


def extract_json(text: str, *, mode: Mode = "lenient", expect: str | None = None) -> Any:
    """The JSON value in ``text``, found as ``mode`` allows, or ``ParseError``.

    ``expect`` ("object", "array", ...) only steers the lenient search through prose, so that
    an example array in a sentence is not taken for the object the schema asks for.
    """
    if not text.strip():
        raise ParseError("the answer is empty; expected JSON", position=0, raw_text=text)
    result = _decode_whole(text, 0)
    if not isinstance(result, _Failure):
        return result
    failures = [result]
    if mode != "strict":
        for match in FENCE.finditer(text):
            inner = _decode_whole(match.group(1), match.start(1))
            if not isinstance(inner, _Failure):
                return inner
            failures.append(inner)
    if mode == "lenient":
        found = _search_prose(text, expect, failures)
        if not isinstance(found, _Failure):
            return found
    best = max(failures, key=lambda f: f.progress)
    if best.progress == 0 and mode == "lenient" and len(failures) == 1:
        what = {"object": "object", "array": "array"}.get(expect or "", "object or array")
        message = f"no JSON {what} found in the answer"
    else:
        message = f"the answer is not valid JSON: {best.message}"
    raise ParseError(
        f"{message} (at char {best.position}, near {excerpt(text, best.position)!r})",
        position=best.position,
        raw_text=text,
    )
