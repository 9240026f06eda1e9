"""Retry budgets: ``AdaptiveThrottle`` (the default) and ``RetryBudget`` (opt-in, legacy).

``RetryBudget``: retries may be at most a share of recent calls plus a small floor.

The same idea as Finagle's ``RetryBudget``, Tower's ``retry::budget``, Envoy's retry budgets
and gRPC's retry throttling: during an outage every first attempt fails, and per-call retry
limits alone would multiply the load on a struggling provider by ``max_attempts``. With a
budget, retries stay below ``ratio`` of recent traffic (plus ``min_per_s`` so that a quiet
client can still retry), so an outage costs at most ``1 + ratio`` times the normal load.

Counts live in ``buckets`` time slots covering ``window_s``; old slots are reused lazily, so
each operation is O(buckets) at worst under one short lock, with no background work.

A fixed share binds at moderate error rates (30 % of 503s needs ~40 % retries), so the retry
stage now defaults to ``AdaptiveThrottle`` below, which binds only when most attempts fail.
"""

from __future__ import annotations

import math
import threading


class RetryBudget:
    """Thread-safe sliding-window counters of calls (deposits) and retries (withdrawals)."""

    __slots__ = ("_calls", "_lock", "_n", "_retries", "_slots", "_width", "floor", "ratio", "window_s")

    def __init__(
        self, ratio: float = 0.2, min_per_s: float = 1.0, window_s: float = 10.0, buckets: int = 10
    ) -> None:
        if ratio < 0 or min_per_s < 0 or window_s <= 0 or buckets < 1:
            raise ValueError("ratio and min_per_s must be >= 0, window_s > 0, buckets >= 1")
        self.ratio = ratio
        self.window_s = window_s
        self.floor = min_per_s * window_s
        self._n = buckets
        self._width = window_s / buckets
        self._calls = [0] * buckets
        self._retries = [0] * buckets
        self._slots = [-(2**62)] * buckets  # which time slot each bucket currently counts
        self._lock = threading.Lock()

    def _bucket(self, now: float) -> tuple[int, int]:
        slot = math.floor(now / self._width)
        i = slot % self._n
        if self._slots[i] != slot:  # stale bucket from an older lap: reuse it
            self._slots[i] = slot
            self._calls[i] = 0
            self._retries[i] = 0
        return slot, i

    def deposit(self, now: float) -> None:
        """Count one call (its first attempt)."""
        with self._lock:
            self._calls[self._bucket(now)[1]] += 1

    def totals(self, now: float) -> tuple[int, int]:
        """(calls, retries) counted in the window ending at ``now``."""
        with self._lock:
            return self._totals(self._bucket(now)[0])

    def _totals(self, slot: int) -> tuple[int, int]:
        oldest = slot - self._n
        calls = retries = 0
        for i in range(self._n):
            if self._slots[i] > oldest:
                calls += self._calls[i]
                retries += self._retries[i]
        return calls, retries

    def allowed(self, calls: int) -> float:
        """How many retries the budget allows for ``calls`` recent calls."""
        return self.floor + self.ratio * calls

    def try_withdraw(self, now: float) -> bool:
        """Spend one retry if the budget allows it; False means "do not retry"."""
        with self._lock:
            slot, i = self._bucket(now)
            calls, retries = self._totals(slot)
            if retries + 1 > self.allowed(calls):
                return False
            self._retries[i] += 1
            return True


class AdaptiveThrottle:
    """Client-side adaptive throttling (Google SRE book, "Handling Overload"), for retries.

    Over a sliding window the client counts ``requests`` (attempts sent) and ``accepts``
    (attempts the backend did not refuse with a retryable error). A retry is refused locally
    with probability ``max(0, (requests - k * accepts) / (requests + 1))``. With ``k = 2`` the
    probability stays 0 until more than half of the attempts fail, so moderate error rates
    (30 % of 503s) cost nothing, while in a full outage (no accepts) it tends to 1 and retries
    add almost no load. First attempts are never refused here: they are what ends an outage.

    The counters are bucketed like ``RetryBudget`` (O(buckets) per operation, one short lock).
    """

    __slots__ = ("_accepts", "_lock", "_n", "_requests", "_slots", "_width", "k", "window_s")

    def __init__(self, k: float = 2.0, window_s: float = 60.0, buckets: int = 12) -> None:
        if k < 1 or window_s <= 0 or buckets < 1:
            raise ValueError("k must be >= 1, window_s > 0, buckets >= 1")
        self.k = k
        self.window_s = window_s
        self._n = buckets
        self._width = window_s / buckets
        self._requests = [0] * buckets
        self._accepts = [0] * buckets
        self._slots = [-(2**62)] * buckets
        self._lock = threading.Lock()

    def _bucket(self, now: float) -> tuple[int, int]:
        slot = math.floor(now / self._width)
        i = slot % self._n
        if self._slots[i] != slot:
            self._slots[i] = slot
            self._requests[i] = 0
            self._accepts[i] = 0
        return slot, i

    def record(self, now: float, accepted: bool) -> None:
        """Count one attempt and whether the backend accepted it."""
        with self._lock:
            i = self._bucket(now)[1]
            self._requests[i] += 1
            if accepted:
                self._accepts[i] += 1

    def totals(self, now: float) -> tuple[int, int]:
        """(requests, accepts) counted in the window ending at ``now``."""
        with self._lock:
            oldest = self._bucket(now)[0] - self._n
            requests = accepts = 0
            for i in range(self._n):
                if self._slots[i] > oldest:
                    requests += self._requests[i]
                    accepts += self._accepts[i]
            return requests, accepts

    def reject_probability(self, now: float) -> float:
        """The chance that a retry is refused now."""
        return throttle_probability(*self.totals(now), self.k)


def throttle_probability(requests: int, accepts: int, k: float) -> float:
    """``max(0, (requests - k * accepts) / (requests + 1))``: the SRE book's formula."""
    return max(0.0, (requests - k * accepts) / (requests + 1))
