"""Bounded summaries of unbounded streams: a mergeable latency histogram and top-N keepers.

``LogHistogram`` puts each value in a logarithmic bin (bins 4% wide), so any quantile it reports
is within 2% of the true nearest-rank quantile, whatever the number of values, and two
histograms (two minutes, two models) merge by adding counts. ``TopN`` keeps the N largest items.
"""

from __future__ import annotations

import heapq
import itertools
import math
from collections.abc import Iterable, Mapping
from typing import Any

GAMMA = 1.04
_INV_LOG_GAMMA = 1 / math.log(GAMMA)
FLOOR_MS = 0.01  # smaller values (0 ms fast failures) share the lowest bin


def bin_of(value: float) -> int:
    return math.floor(math.log(max(value, FLOOR_MS)) * _INV_LOG_GAMMA)


def bin_value(index: int) -> float:
    """The value a bin stands for: its geometric middle (at most 2% from any value in it)."""
    return float(GAMMA ** (index + 0.5))


def quantile(bins: Mapping[int, int], q: float) -> float | None:
    """Nearest-rank ``q`` quantile (0 < q <= 1) of a histogram's values; None when empty."""
    total = sum(bins.values())
    if total == 0:
        return None
    rank = max(1, math.ceil(q * total))
    seen = 0
    for index in sorted(bins):
        seen += bins[index]
        if seen >= rank:
            return bin_value(index)
    return bin_value(max(bins))  # pragma: no cover - rank <= total


class LogHistogram:
    """Counts per logarithmic bin, plus the exact count, sum and max."""

    __slots__ = ("bins", "count", "max", "total")

    def __init__(self) -> None:
        self.bins: dict[int, int] = {}
        self.count = 0
        self.total = 0.0
        self.max = 0.0

    def add(self, value: float) -> None:
        index = bin_of(value)
        bins = self.bins
        bins[index] = bins.get(index, 0) + 1
        self.count += 1
        self.total += value
        if value > self.max:
            self.max = value

    def merge(self, other: LogHistogram) -> None:
        for index, n in other.bins.items():
            self.bins[index] = self.bins.get(index, 0) + n
        self.count += other.count
        self.total += other.total
        self.max = max(self.max, other.max)

    def quantile(self, q: float) -> float | None:
        return quantile(self.bins, q)


class TopN:
    """The ``n`` items with the largest keys seen so far (ties: the earliest kept)."""

    def __init__(self, n: int) -> None:
        self.n = n
        self._heap: list[tuple[float, int, Any]] = []
        self._seq = itertools.count()

    def offer(self, key: float, item: Any) -> None:
        entry = (key, -next(self._seq), item)
        if len(self._heap) < self.n:
            heapq.heappush(self._heap, entry)
        elif key > self._heap[0][0]:
            heapq.heapreplace(self._heap, entry)

    def would_keep(self, key: float) -> bool:
        """Cheap check before building the item."""
        return len(self._heap) < self.n or key > self._heap[0][0]

    def items(self) -> list[Any]:
        """Largest first."""
        return [item for _, _, item in sorted(self._heap, key=lambda e: (-e[0], -e[1]))]

    def extend(self, pairs: Iterable[tuple[float, Any]]) -> None:
        for key, item in pairs:
            self.offer(key, item)
