"""Rate-limit admission for one key: a sliding-window log with FIFO reservations.

Guarantee: within any window of ``period_s`` seconds, the requests (and the tokens) admitted
never add up to more than the limit. A full-burst token bucket holding the same limit (how
OpenAI, Anthropic and the fault server account) therefore never refuses what this log admits.
With ``burst_s`` set (the stage's default), admissions are also paced by a GCRA: a token
bucket holding ``burst`` units and refilling at the limit's rate never refuses them, so a
provider that enforces a per-minute limit over 1 s (Azure) does not see a minute's quota in
one second.

Callers *reserve*: ``reserve`` returns when the caller may send (``wait_s`` from now) and
books that slot at once, so callers are served in the order they reserved (a reservation is
never earlier than the one before it) and nobody waits while holding a lock. A reservation
that would wait longer than ``max_wait`` (the caller's deadline) is refused without changing
anything. ``reconcile`` replaces an estimate by the real usage afterwards (or releases a slot
never used), ``pause`` makes every later reservation start no earlier than a given time
(after a 429 or ``remaining: 0`` from the provider).

The log keeps one entry per admitted call inside the window; entries leave for good once a
reservation passes them by ``period_s`` (later reservations are never earlier), so each
operation is amortised O(1). The same algorithm maps onto a Redis sorted set and one Lua
script per operation.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass
from typing import NamedTuple


@dataclass(frozen=True, slots=True)
class RateLimits:
    """Limits per ``period_s`` seconds; ``None`` means that dimension is not limited.

    ``burst_s``: pacing (GCRA) of requests. Admissions are spread at the requests limit's rate,
    with at most ``burst_s`` seconds' worth of it at once (at least one call): ``burst_s = 1``
    lets 10 of a 600-per-minute limit go together, then one every 0.1 s. None: no pacing, a
    whole window's limit may go at once. Tokens are bounded by the window only: their bookings
    are estimates (corrected afterwards), too coarse to pace on.
    """

    requests: int | None = None
    tokens: int | None = None
    period_s: float = 60.0
    burst_s: float | None = None

    def burst(self, limit: int) -> float:
        """Units allowed at once for a dimension limited to ``limit`` (at least 1)."""
        if self.burst_s is None:
            return float(limit)
        return max(1.0, min(float(limit), limit * self.burst_s / self.period_s))


class Reservation(NamedTuple):
    """The outcome of ``reserve``: admitted (send after ``wait_s``) or refused.

    When refused, ``wait_s`` is the wait that would have been needed (``inf`` if the call is
    larger than the limit itself) and ``reason`` says why: ``"deadline"``, ``"too_large"`` or
    ``"server_pause"`` (the server asked for a pause longer than the cap: ``asked_s`` seconds;
    calls fail fast until the capped pause, ``wait_s`` from now, is over).
    """

    admitted: bool
    wait_s: float
    ticket: object = None
    reason: str | None = None
    asked_s: float | None = None


class Ticket:
    """One admitted call in the log; the handle for ``reconcile``."""

    __slots__ = ("at", "live", "requests", "tokens")

    def __init__(self, at: float, requests: int, tokens: int) -> None:
        self.at = at
        self.requests = requests
        self.tokens = tokens
        self.live = True  # False once it left the log

    def __repr__(self) -> str:
        return f"Ticket(at={self.at:.3f}, requests={self.requests}, tokens={self.tokens})"


class AdmissionLog:
    """The log for one key. Not thread-safe by itself: stores call it under a lock."""

    __slots__ = ("asked_s", "entries", "last", "paused_until", "refuse_until", "requests",
                 "tat_r", "tokens")

    def __init__(self) -> None:
        self.entries: deque[Ticket] = deque()
        self.requests = 0  # sums over the entries still in the log
        self.tokens = 0
        self.last = -math.inf  # time of the latest reservation (FIFO floor)
        self.paused_until = -math.inf
        self.refuse_until = -math.inf  # a capped over-long server pause: fail fast until then
        self.asked_s = 0.0  # what the server asked for, for the error message
        self.tat_r = -math.inf  # GCRA: the theoretical arrival time of requests (pacing)

    def reserve(
        self, now: float, requests: int, tokens: int, limits: RateLimits, max_wait: float | None
    ) -> Reservation:
        """Book the earliest slot at or after ``now`` that keeps every window within limits."""
        max_r, max_t, period = limits.requests, limits.tokens, limits.period_s
        if (max_r is not None and requests > max_r) or (max_t is not None and tokens > max_t):
            return Reservation(False, math.inf, None, "too_large")
        if self.refuse_until > now:
            return Reservation(False, self.refuse_until - now, None, "server_pause", self.asked_s)
        at = now
        if self.last > at:
            at = self.last
        if self.paused_until > at:
            at = self.paused_until
        if limits.burst_s is not None and max_r is not None and requests:  # pacing: GCRA
            burst = limits.burst(max_r)
            at = max(at, self.tat_r + (min(requests, burst) - burst) * (period / max_r))
        entries = self.entries
        sum_r, sum_t = self.requests, self.tokens
        passed = 0
        if (max_r is not None and sum_r + requests > max_r) or (max_t is not None and sum_t + tokens > max_t):
            for entry in entries:  # oldest first: find when enough of them have left the window
                if entry.at > at - period:  # still inside the window ending at `at`
                    if (max_r is None or sum_r + requests <= max_r) and (
                        max_t is None or sum_t + tokens <= max_t
                    ):
                        break
                    at = entry.at + period  # wait until this entry leaves the window
                sum_r -= entry.requests
                sum_t -= entry.tokens
                passed += 1
        else:  # fits with every entry still counted: just drop the ones that expired
            horizon = at - period
            for entry in entries:
                if entry.at > horizon:
                    break
                sum_r -= entry.requests
                sum_t -= entry.tokens
                passed += 1
        wait = at - now
        if max_wait is not None and wait > max_wait:  # a pause or the FIFO floor can make it wait too
            return Reservation(False, wait, None, "deadline")
        for _ in range(passed):  # later reservations are never earlier: these never count again
            entries.popleft().live = False
        if limits.burst_s is not None and max_r is not None:
            self.tat_r = max(self.tat_r, at) + requests * period / max_r
        ticket = Ticket(at, requests, tokens)
        entries.append(ticket)
        self.requests = sum_r + requests
        self.tokens = sum_t + tokens
        self.last = at
        return Reservation(True, wait, ticket, None)

    def reconcile(self, ticket: Ticket, requests: int, tokens: int) -> None:
        """Replace the units booked by ``ticket`` (real usage, or 0 to release a slot)."""
        if ticket.live:
            self.requests += requests - ticket.requests
            self.tokens += tokens - ticket.tokens
        ticket.requests = requests
        ticket.tokens = tokens

    def resume(self, now: float, seconds: float) -> None:
        """End the current pause now, unless it ends more than ``seconds`` from now (a later,
        longer ask extended it: that one stays)."""
        if now < self.paused_until <= now + seconds:
            self.paused_until = now

    def pause(self, until: float, asked_s: float | None = None) -> None:
        """No reservation may start before ``until`` (the provider said to back off). With
        ``asked_s`` (the server asked for longer than the cap), reservations are refused until
        then instead of waiting."""
        if until > self.paused_until:
            self.paused_until = until
        if asked_s is not None and until > self.refuse_until:
            self.refuse_until = until
            self.asked_s = asked_s
