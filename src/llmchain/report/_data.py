"""What the aggregator produces: per-bucket counters, samples, and the whole report's data.

Shared by the aggregator and the renderers; plain data, no parsing here.
"""

from __future__ import annotations

from dataclasses import dataclass

from ._read import Filters, ReadStats
from ._sketch import LogHistogram, TopN

#: Per-bucket counters, in this order (the HTML page reads them by these names).
COUNTERS = (
    "calls", "ok", "ok_retried", "from_cache", "errors", "cancelled",
    "attempts", "retries", "http_429", "http_5xx", "timeouts",
    "limiter_waits", "limiter_wait_s", "pauses", "pause_s",
    "cache_hits", "cache_misses", "coalesced", "repairs_local", "repairs_reask", "repairs_gave_up",
    "tokens_in", "tokens_out", "cost_usd", "breaker_opened", "fallbacks",
)
C = {name: i for i, name in enumerate(COUNTERS)}
#: Bucket widths in ms; each a multiple of the one before, so buckets merge exactly.
WIDTHS_MS = (100, 200, 1000, 2000, 10_000, 30_000, 60_000, 120_000, 600_000, 1_800_000, 3_600_000,
             7_200_000, 21_600_000, 86_400_000, 604_800_000)
MAX_BUCKETS = 1440
MAX_MODELS = 50
MAX_KINDS = 40
REQUESTED_STORIES = 20
OTHER = "(other)"
UNKNOWN_MODEL = "(unknown)"


class Bucket:
    """One time bucket of one model."""

    __slots__ = ("counts", "hist", "kinds")

    def __init__(self) -> None:
        self.counts = [0.0] * len(COUNTERS)
        self.hist: dict[int, int] = {}
        self.kinds: dict[str, int] = {}

    def merge(self, other: Bucket) -> None:
        self.counts = [a + b for a, b in zip(self.counts, other.counts, strict=True)]
        for index, n in other.hist.items():
            self.hist[index] = self.hist.get(index, 0) + n
        for kind, n in other.kinds.items():
            self.kinds[kind] = self.kinds.get(kind, 0) + n


@dataclass
class Sample:
    """One failed call of an error kind, with its story rebuilt from the log."""

    request_id: str
    time: float | None
    model: str
    story: list[str]


@dataclass
class ReportData:
    """Everything the text and HTML renderers show."""

    stats: ReadStats
    filters: Filters
    bucket_ms: int
    buckets: dict[int, dict[str, Bucket]]
    model_hist: dict[str, LogHistogram]
    overall: LogHistogram
    slowest: dict[str, TopN]
    costliest: dict[str, TopN]
    kinds: dict[str, int]
    samples: dict[str, list[Sample]]
    requested: list[Sample]
    first_t: float | None
    last_t: float | None
    calls: int = 0
    calls_without_debug: int = 0
    unfinished: int = 0  # requests with debug lines but no summary line
    debug_lines: int = 0

    def totals(self, model: str | None = None) -> list[float]:
        out = [0.0] * len(COUNTERS)
        for per_model in self.buckets.values():
            for name, bucket in per_model.items():
                if model is None or name == model:
                    out = [a + b for a, b in zip(out, bucket.counts, strict=True)]
        return out

    @property
    def models(self) -> list[str]:
        return sorted(self.model_hist, key=lambda m: -self.model_hist[m].count)
