"""Local JSON repair: the first rung of the repair ladder, deterministic and offline.

``repair_json_text(text)`` returns valid JSON unchanged (as ``extract_json`` finds it).
Otherwise it cuts out the region that holds the JSON (the fence, or the first opener up to its
balanced closer) and tries, in order:

1. ``normalize``: a small tolerant reader for the faults models actually make: trailing commas,
   single-quoted strings, Python literals (True/False/None), unquoted keys, comments, and
   missing closers (a string or brackets left open at the end). It keeps string contents
   exactly, escapes included, and refuses (returns None) on anything else.
2. only if asked (``use_library``) and (1) refused: ``json-repair`` (optional package, extra
   ``repair``), whose heuristics also take on messier faults (missing commas, unescaped
   quotes). Those are guesses: on ambiguous text it can return a value whose strings differ
   from what the model meant, which validation cannot notice; hence opt-in.

Both are pure and deterministic: the same answer always repairs to the same value.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from .._exceptions import ParseError
from ._json_extract import (
    FENCE,
    OPENERS,
    balanced_end,
    closes_single_quote,
    extract_json,
    next_opener,
    skip_comment,
)

_NUMBER = re.compile(r"-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?")
_WORD = re.compile(r"[A-Za-z_$][A-Za-z0-9_$]*")
_LITERALS = {"true": "true", "false": "false", "null": "null",
             "True": "true", "False": "false", "None": "null"}


@dataclass(frozen=True)
class Repaired:
    """The outcome of a local repair: the value, and what had to change to get it."""

    value: Any
    changed: bool
    actions: tuple[str, ...] = ()


def json_repair_available() -> bool:
    """Whether the optional ``json-repair`` package can be imported."""
    try:
        import json_repair  # noqa: F401
    except ImportError:
        return False
    return True


def repair_region(text: str, expect: str | None = None) -> str | None:
    """The stretch of ``text`` that probably holds the (damaged) JSON, or None.

    Prefers the first code fence (closed or not); then cuts from the first opener (of the
    expected kind) to its balanced closer, so prose after the JSON is dropped. Without a
    balanced closer (a truncated answer) it runs to the end.
    """
    fence = FENCE.search(text)
    if fence is not None and fence.group(1).strip():
        text = fence.group(1)
    wanted = OPENERS.get(expect or "")
    start = text.find(wanted) if wanted else next_opener(text, 0)
    if start < 0:
        return None
    return text[start : balanced_end(text, start)]


def _read_string(text: str, i: int, fixes: set[str]) -> tuple[str, int]:
    """The string literal at ``i`` (either quote) as a JSON string, and the index after it."""
    quote, j, n, parts = text[i], i + 1, len(text), ['"']
    if quote == "'":
        fixes.add("single quotes")
    while j < n:
        ch = text[j]
        if ch == "\\":
            pair = text[j : j + 2]
            parts.append("'" if pair == "\\'" else pair if len(pair) == 2 else "")
            j += 2
            continue
        if ch == quote and (quote == '"' or closes_single_quote(text, j)):
            parts.append('"')
            return "".join(parts), j + 1
        parts.append('\\"' if ch == '"' else ch)
        j += 1
    fixes.add("closed a string")
    parts.append('"')
    return "".join(parts), n


def _drop_trailing_comma(out: list[str], fixes: set[str]) -> None:
    j = len(out) - 1
    while j >= 0 and out[j].isspace():
        j -= 1
    if j >= 0 and out[j] == ",":
        del out[j]
        fixes.add("trailing comma")


def normalize(text: str) -> tuple[str, set[str]] | None:
    """``text`` rewritten as JSON and the fixes made, or None if it has other faults."""
    out: list[str] = []
    closers: list[str] = []
    fixes: set[str] = set()
    last, i, n = "", 0, len(text)  # last: the previous significant token ("v" = a value)
    while i < n:
        ch = text[i]
        if ch.isspace():
            out.append(ch)
            i += 1
        elif ch == "#" or (ch == "/" and text.startswith(("//", "/*"), i)):
            i = skip_comment(text, i)
            fixes.add("comments")
        elif ch in "\"'":
            literal, i = _read_string(text, i, fixes)
            out.append(literal)
            last = "v"
        elif ch in "{[":
            closers.append("}" if ch == "{" else "]")
            out.append(ch)
            last, i = ch, i + 1
        elif ch in "}]":
            if not closers or closers.pop() != ch:
                return None
            _drop_trailing_comma(out, fixes)
            out.append(ch)
            last, i = "v", i + 1
        elif ch in ",:":
            out.append(ch)
            last, i = ch, i + 1
        elif (number := _NUMBER.match(text, i)) is not None:
            out.append(number.group())
            last, i = "v", number.end()
        elif (word := _WORD.match(text, i)) is not None:
            token = word.group()
            if closers and closers[-1] == "}" and last in ("{", ","):
                out.append(json.dumps(token))
                fixes.add("unquoted keys")
            elif token in _LITERALS:
                out.append(_LITERALS[token])
                if token[0].isupper():
                    fixes.add("Python literals")
            else:
                return None
            last, i = "v", word.end()
        else:
            return None
    if last == ":":
        return None  # a key without its value: nothing faithful to put there
    _drop_trailing_comma(out, fixes)
    if closers:
        fixes.add(f"closed {len(closers)} bracket(s)")
    out.extend(reversed(closers))
    return "".join(out), fixes


def _with_library(region: str) -> tuple[Any, tuple[str, ...]] | None:
    import json_repair

    try:
        value, log = json_repair.repair_json(region, return_objects=True, logging=True)
    except (ValueError, RecursionError, IndexError, TypeError):  # a library bug must not break a call
        return None
    actions = tuple(str(e.get("text", e)) for e in log if isinstance(e, dict))
    return value, ("json-repair", *actions)


def repair_json_text(text: str, *, expect: str | None = None, use_library: bool = False) -> Repaired | None:
    """Valid JSON as is; else a deterministic local repair; None if nothing usable comes out.

    ``use_library`` allows the ``json-repair`` fallback (skipped when it is not installed).
    """
    try:
        return Repaired(extract_json(text, mode="lenient", expect=expect), changed=False)
    except ParseError:
        pass
    region = repair_region(text, expect)
    if region is None:
        return None
    attempt: tuple[Any, tuple[str, ...]] | None = None
    normalized = normalize(region)
    if normalized is not None:
        try:
            attempt = json.loads(normalized[0], strict=False), tuple(sorted(normalized[1]))
        except (ValueError, RecursionError):
            attempt = None
    if attempt is None and use_library and json_repair_available():
        attempt = _with_library(region)
    if attempt is None:
        return None
    value, actions = attempt
    wanted = OPENERS.get(expect or "")
    if not isinstance(value, (dict, list)) or (wanted and isinstance(value, dict) != (wanted == "{")):
        return None
    return Repaired(value, changed=True, actions=actions)
