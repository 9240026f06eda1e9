"""Damage JSON the way models do: a serializer with knobs, plus Hypothesis strategies.

``dump(value, damage)`` writes a JSON value with the chosen faults (single quotes, trailing
commas, Python literals, unquoted keys, comments), drops closers at the end (a forgotten or cut
off ending) and wraps the result in fences or prose. Writing the damage directly, rather than
editing valid JSON with regexes, keeps string contents intact so "recovered" is well defined.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from hypothesis import strategies as st
from pydantic import BaseModel

WRAPPERS = ("none", "fence", "fence_untagged", "prose", "prose_fence", "prose_braces")
PROSE_BEFORE = "Sure! Here's the JSON you asked for:\n"
PROSE_AFTER = "\n\nLet me know if you need anything else."
PROSE_AFTER_BRACES = "\n\nNote: {placeholders} like {this} are not filled in."


@dataclass(frozen=True)
class Damage:
    """Which faults to put into one serialized document."""

    single_quotes: bool = False
    trailing_commas: bool = False
    python_literals: bool = False
    unquoted_keys: bool = False
    comments: bool = False
    drop_closers: int = 0
    wrapper: str = "none"
    python_repr: bool = False  # the whole value as Python's repr() (overrides the style knobs)

    def kinds(self) -> list[str]:
        out = [k for k in ("single_quotes", "trailing_commas", "python_literals", "unquoted_keys",
                           "comments", "python_repr") if getattr(self, k)]
        if self.drop_closers:
            out.append("truncated_closers")
        if self.wrapper != "none":
            out.append(self.wrapper)
        return out


_ESCAPE = re.compile(r"\\u[0-9a-fA-F]{4}|\\.|[^\\]", re.DOTALL)


def _string(s: str, d: Damage) -> str:
    body = json.dumps(s, ensure_ascii=False)[1:-1]
    if not d.single_quotes:
        return f'"{body}"'
    parts = []
    for token in _ESCAPE.findall(body):
        parts.append('"' if token == '\\"' else "\\'" if token == "'" else token)
    return "'" + "".join(parts) + "'"


def _key(k: str, d: Damage) -> str:
    if d.unquoted_keys and k.isidentifier() and k.isascii():
        return k
    return _string(k, d)


def _dump(value: Any, d: Damage) -> str:
    if value is None:
        return "None" if d.python_literals else "null"
    if value is True or value is False:
        return str(value) if d.python_literals else json.dumps(value)
    if isinstance(value, (int, float)):
        return json.dumps(value)
    if isinstance(value, str):
        return _string(value, d)
    comma = "," if d.trailing_commas and value else ""
    if isinstance(value, list):
        return "[" + ", ".join(_dump(v, d) for v in value) + comma + "]"
    comment = " // fields follow\n " if d.comments else ""
    members = ", ".join(f"{_key(k, d)}: {_dump(v, d)}" for k, v in value.items())
    return "{" + comment + members + comma + "}"


def dump(value: Any, d: Damage) -> str:
    """``value`` serialized with the faults in ``d``."""
    text = repr(value) if d.python_repr else _dump(value, d)
    if d.drop_closers:
        # a cut-off answer ends where it was cut: no closing fence, no prose after it
        stripped = text
        for _ in range(d.drop_closers):
            if not stripped or stripped[-1] not in "}]":
                break
            stripped = stripped[:-1]
        text = stripped
    cut = bool(d.drop_closers)
    if d.wrapper == "fence":
        return "```json\n" + text + ("" if cut else "\n```")
    if d.wrapper == "fence_untagged":
        return "```\n" + text + ("" if cut else "\n```")
    if d.wrapper == "prose":
        return PROSE_BEFORE + text + ("" if cut else PROSE_AFTER)
    if d.wrapper == "prose_fence":
        return PROSE_BEFORE + "```json\n" + text + ("" if cut else "\n```" + PROSE_AFTER)
    if d.wrapper == "prose_braces":
        return PROSE_BEFORE + text + ("" if cut else PROSE_AFTER_BRACES)
    return text


def damages(*, at_least_one: bool = True) -> st.SearchStrategy[Damage]:
    """Random combinations of faults (by default at least one)."""
    strategy = st.builds(
        Damage,
        single_quotes=st.booleans(),
        trailing_commas=st.booleans(),
        python_literals=st.booleans(),
        unquoted_keys=st.booleans(),
        comments=st.booleans(),
        drop_closers=st.integers(0, 4),
        wrapper=st.sampled_from(WRAPPERS),
        python_repr=st.booleans(),
    )
    return strategy.filter(lambda d: bool(d.kinds())) if at_least_one else strategy


# -- a model to damage ------------------------------------------------------------------------

#: What models put in string values: words, punctuation, apostrophes, quotes, non-ASCII.
TEXT_ALPHABET = st.sampled_from(list(
    "abcdefghijklmnopqrstuvwxyzABCXYZ0123456789 .,:;!?-_/()'\"é中ß€\n\t\\{}[]#"
))


class Item(BaseModel):
    sku: str
    qty: int
    price: float
    tags: list[str] = []


class Order(BaseModel):
    id: int
    customer: str
    paid: bool
    note: str | None
    items: list[Item]
    counts: dict[str, int]


def texts(alphabet: st.SearchStrategy[str] = TEXT_ALPHABET, max_size: int = 20) -> st.SearchStrategy[str]:
    return st.text(alphabet, max_size=max_size)


def orders(alphabet: st.SearchStrategy[str] = TEXT_ALPHABET) -> st.SearchStrategy[Order]:
    floats = st.floats(allow_nan=False, allow_infinity=False)
    items = st.builds(Item, sku=texts(alphabet), qty=st.integers(), price=floats,
                      tags=st.lists(texts(alphabet), max_size=3))
    return st.builds(
        Order,
        id=st.integers(),
        customer=texts(alphabet),
        paid=st.booleans(),
        note=st.none() | texts(alphabet),
        items=st.lists(items, max_size=3),
        counts=st.dictionaries(texts(alphabet, 8), st.integers(), max_size=3),
    )
