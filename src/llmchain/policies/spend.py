"""Spend limits: calendar windows, which limits a call falls under, and the atomic ledger.

Pure: no clock, no I/O. Amounts are integers, so that sums are exact in memory and in Redis
alike: tokens for token limits, micro-dollars (1e-6 USD) for USD limits.

A call is *reserved* against every limit it falls under at once (all or nothing): a
reservation that would take any of them past its limit is refused without changing anything.
So however many callers race, what is spent or reserved never passes a limit; the only
overspend comes from calls whose real usage exceeds their estimate, settled afterwards
(``settle``), which is at most what one call can go over, per caller in flight.
"""

from __future__ import annotations

import calendar
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Literal, NamedTuple

Window = Literal["hour", "day", "month"]
Unit = Literal["usd", "tokens"]
MICRO = 1_000_000  # micro-dollars per dollar


def window_bounds(window: Window, wall: float) -> tuple[str, float, float]:
    """(id, start, end) of the UTC calendar ``window`` holding the epoch time ``wall``."""
    at = datetime.fromtimestamp(wall, timezone.utc)
    if window == "hour":
        start = at.replace(minute=0, second=0, microsecond=0)
        return start.strftime("%Y%m%dT%H"), start.timestamp(), start.timestamp() + 3600
    if window == "day":
        start = at.replace(hour=0, minute=0, second=0, microsecond=0)
        return start.strftime("%Y%m%d"), start.timestamp(), start.timestamp() + 86400
    start = at.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    days = calendar.monthrange(start.year, start.month)[1]
    return start.strftime("%Y%m"), start.timestamp(), start.timestamp() + days * 86400


@dataclass(frozen=True, slots=True)
class SpendLimit:
    """One limit: ``limit`` units of ``unit`` per ``window``, for calls tagged ``tag`` (each
    value of it separately, or only ``value``), or for every call when ``tag`` is None."""

    name: str
    unit: Unit
    limit: int  # tokens, or micro-dollars
    window: Window
    tag: str | None = None
    value: str | None = None
    soft: float | None = None  # fraction of the limit that emits a warning when crossed

    def key(self, tags: Mapping[str, object], wall: float) -> str | None:
        """The ledger key for a call with ``tags`` at ``wall``; None: the limit does not apply."""
        tagged = ""
        if self.tag is not None:
            found = tags.get(self.tag)
            if found is None or (self.value is not None and str(found) != self.value):
                return None
            tagged = f"{self.tag}={found}"
        window_id, _, _ = window_bounds(self.window, wall)
        return f"{self.name}|{tagged}|{window_id}"

    def resets_at(self, wall: float) -> float:
        return window_bounds(self.window, wall)[2]


class Entry(NamedTuple):
    """One reservation line: ``amount`` units under ``key`` whose ``limit`` must hold; the key
    may be forgotten ``ttl_s`` seconds from now (its window has ended by then)."""

    key: str
    amount: int
    limit: int
    ttl_s: float


class Outcome(NamedTuple):
    """``ok``: every line reserved; else ``refused`` is the index of the first line that did
    not fit. ``spent`` holds each line's total *before* this reservation."""

    ok: bool
    refused: int
    spent: tuple[int, ...]


class SpendLedger:
    """The ledger in memory (one lock); what the Redis store's Lua script does, in Python."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._spent: dict[str, tuple[int, float]] = {}  # key -> (units, forget after, wall)

    def reserve(self, entries: Sequence[Entry], wall: float) -> Outcome:
        with self._lock:
            spent = tuple(self._get(e.key, wall) for e in entries)
            for i, (entry, before) in enumerate(zip(entries, spent, strict=True)):
                if before + entry.amount > entry.limit:
                    return Outcome(False, i, spent)
            for entry, before in zip(entries, spent, strict=True):
                self._spent[entry.key] = (before + entry.amount, wall + entry.ttl_s)
            return Outcome(True, -1, spent)

    def settle(self, entries: Sequence[Entry], wall: float) -> None:
        """Add each entry's ``amount`` (negative to give back) without checking limits."""
        with self._lock:
            for entry in entries:
                self._spent[entry.key] = (self._get(entry.key, wall) + entry.amount, wall + entry.ttl_s)
            if len(self._spent) > 4096:  # forget ended windows
                self._spent = {k: v for k, v in self._spent.items() if v[1] > wall}

    def spent(self, key: str, wall: float) -> int:
        with self._lock:
            return self._get(key, wall)

    def _get(self, key: str, wall: float) -> int:
        found = self._spent.get(key)
        return found[0] if found is not None and found[1] > wall else 0
