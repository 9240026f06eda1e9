"""What a provider's rate-limit headers teach about its buckets, without assuming a minute.

A provider bucket holds ``limit`` units and refills continuously; ``reset`` is the time until it
is full again. After ``limit - remaining`` units were used it therefore refills at
``(limit - remaining) / reset`` units per second, whatever the window is called (OpenAI's
per-minute limits, a 1 s window, Azure's per-10-s evaluation). ``remaining`` is rounded down by
providers, which makes a reading with little used overestimate the rate: the learner keeps
the reading in which the most was used (for the current ``limit``). An overestimate corrects
itself: sending faster drains the bucket, and the emptier readings replace it. (An
underestimate would not: pacing slower keeps the bucket full and the readings uninformative,
which is why the rounding is not corrected the other way.)

Two safeguards keep a bad reading from collapsing throughput: the learned limit is never below
what the server demonstrably accepted in the learned window (successes counted here), and
headers that contradict themselves or what was observed are ignored (the stage logs each kind
once).
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass

from .._attempt import RateLimitHints
from .admission import RateLimits


@dataclass(slots=True)
class Refill:
    """One bucket (requests or tokens): its size and its refill rate, from the reading in which
    the most of it was used (there ``remaining``'s rounding matters least)."""

    limit: int | None = None
    rate: float = 0.0  # units per second; 0: not known yet
    used: int = 0  # limit - remaining in the reading ``rate`` comes from

    def observe(self, limit: int | None, remaining: int | None, reset_s: float | None) -> str | None:
        """Take one reading; returns what contradicts itself in it (then it is ignored)."""
        if limit is None or remaining is None or reset_s is None:
            return None
        if limit <= 0 or remaining > limit:
            return f"remaining {remaining} above limit {limit}"
        if limit != self.limit:  # a new limit (plan change): start over
            self.limit, self.rate, self.used = limit, 0.0, 0
        used = limit - remaining
        if used > 0 and reset_s > 0 and used >= self.used:
            self.used, self.rate = used, used / reset_s
        return None

    @property
    def period_s(self) -> float | None:
        """How long the bucket takes to refill from empty (the provider's window)."""
        return self.limit / self.rate if self.limit and self.rate > 0 else None


class LimitLearner:
    """Per key: the provider's buckets as its headers describe them, and what it accepted."""

    __slots__ = ("accepted", "requests", "tokens")

    def __init__(self) -> None:
        self.requests = Refill()
        self.tokens = Refill()
        self.accepted: deque[float] = deque()  # times of successful calls (trimmed lazily)

    def observe(self, hints: RateLimitHints) -> list[str]:
        """Take one response's headers; returns the contradictions found (readings ignored)."""
        bad = [f"requests: {why}" for why in [self.requests.observe(
            hints.limit_requests, hints.remaining_requests, hints.reset_requests_s)] if why]
        bad += [f"tokens: {why}" for why in [self.tokens.observe(
            hints.limit_tokens, hints.remaining_tokens, hints.reset_tokens_s)] if why]
        return bad

    def accept(self, now: float, keep_s: float) -> None:
        """Count one call the server accepted (kept for ``2 * keep_s``)."""
        accepted = self.accepted
        accepted.append(now)
        horizon = now - 2 * keep_s
        while accepted and accepted[0] < horizon:
            accepted.popleft()

    def shown_rate(self, now: float) -> float:
        """A lower bound of the requests refill rate from what the server accepted: a bucket of
        ``limit`` accepts at most ``limit + rate * span`` calls in ``span`` seconds (one unit
        is taken off for rounding, as for ``remaining``)."""
        limit, accepted = self.requests.limit, self.accepted
        if not limit or len(accepted) <= limit + 1:
            return 0.0
        span = now - accepted[0]
        return (len(accepted) - limit - 1) / span if span > 0 else 0.0

    def limits(self, configured: RateLimits, now: float) -> tuple[RateLimits, str | None]:
        """The limits to enforce: the learned rates (never below what the server was seen to
        accept) lowered by the configured ones; and a contradiction to log, if the headers
        imply less than the server accepted."""
        note = None
        rate_r, limit_r = self.requests.rate, self.requests.limit
        shown = self.shown_rate(now)
        if shown > rate_r:
            if rate_r > 0 and shown > 1.05 * rate_r:
                note = (f"requests: the headers imply {rate_r:.3g}/s but the server accepted "
                        f"{shown:.3g}/s")
            rate_r = shown
        period_r = limit_r / rate_r if limit_r and rate_r > 0 else None
        periods = [p for p in (period_r, self.tokens.period_s) if p is not None]
        if not periods:
            return configured, note
        conf_p = configured.period_s
        if (period_r is None or (configured.requests is not None
                                 and configured.requests / conf_p <= rate_r)) and (
                self.tokens.rate <= 0 or (configured.tokens is not None
                                          and configured.tokens / conf_p <= self.tokens.rate)):
            return configured, note  # the configured limits are the lower ones: keep them as set
        period = max(periods)
        requests = max(1, math.floor(rate_r * period + 1e-9)) if period_r is not None else None
        tokens = _units(self.tokens, period)
        # one window for both dimensions (the longer); pacing with a burst no larger than the
        # smaller provider bucket keeps the faster-refilling one from seeing a window at once
        burst = min(periods) if configured.burst_s is None else min(configured.burst_s, *periods)
        return RateLimits(_lower(requests, configured.requests, configured.period_s, period),
                          _lower(tokens, configured.tokens, configured.period_s, period),
                          period, burst), note


def _units(refill: Refill, period: float) -> int | None:
    return max(1, math.floor(refill.rate * period + 1e-9)) if refill.rate > 0 else None


def _lower(learned: int | None, configured: int | None, configured_period: float,
           period: float) -> int | None:
    """The lower of the two rates, as units per ``period``."""
    if configured is None:
        return learned
    scaled = max(1, math.floor(configured * period / configured_period))
    return scaled if learned is None else min(learned, scaled)
