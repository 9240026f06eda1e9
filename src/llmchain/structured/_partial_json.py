"""Best-effort values of JSON that is still arriving (structured streaming).

``partial_json('{"name": "Al')`` is ``{"name": "Al"}``: the prefix is closed where it stands
(an open string ends, open objects and arrays close); when that is not valid JSON (a key
without its value, half a literal) it is cut back to the last complete member. The result is
a preview only: the complete answer is parsed and validated as usual when the stream ends.
"""

from __future__ import annotations

import json
from typing import Any

_CLOSE = {"{": "}", "[": "]"}


def partial_json(text: str) -> Any | None:
    """The value the JSON prefix in ``text`` describes so far; None before any JSON starts."""
    starts = [i for i in (text.find("{"), text.find("[")) if i >= 0]
    if not starts:
        return None
    s = text[min(starts):]
    stack: list[str] = []
    cuts: list[tuple[int, str]] = []  # (cut here, closers needed there)
    in_string = escaped = False
    for i, ch in enumerate(s):
        if in_string:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == '"':
                in_string = False
            continue
        if ch == '"':
            in_string = True
        elif ch in _CLOSE:
            stack.append(_CLOSE[ch])
            cuts.append((i + 1, "".join(reversed(stack))))
        elif ch in "}]":
            if stack:
                stack.pop()
            if not stack:
                return _loads(s[: i + 1])
        elif ch == ",":
            cuts.append((i, "".join(reversed(stack))))
    head = s[:-1] if escaped else s
    candidates = [(head + '"' if in_string else head).rstrip() + "".join(reversed(stack))]
    candidates += [s[:end] + closers for end, closers in reversed(cuts[-3:])]
    for candidate in candidates:
        value = _loads(candidate)
        if value is not None:
            return value
    return None


def _loads(text: str) -> Any | None:
    try:
        return json.loads(text)
    except ValueError:
        return None
