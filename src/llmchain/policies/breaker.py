"""Circuit breaker state machine: closed → open → half-open → closed (or open again).

* **closed**: calls pass; outcomes go into a window of the last ``window_calls`` outcomes no
  older than ``window_s``. Once the window holds at least ``min_calls`` outcomes and the share
  of failures reaches ``failure_rate``, the breaker opens.
* **open**: calls fail fast for ``open_s``; then the next caller becomes the probe.
* **half-open**: exactly one probe is in flight at a time, everyone else fails fast; a
  successful probe closes the breaker (with an empty window), a failed one opens it again.

Every state change bumps ``generation``; outcomes of calls admitted under an older generation
are ignored, so a slow call that started before the breaker opened cannot close it.
``failed=None`` records an outcome that says nothing about the backend's health (a 429, a
cancelled call): it only frees the probe slot.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import Literal, NamedTuple

BreakerState = Literal["closed", "open", "half_open"]


@dataclass(frozen=True, slots=True)
class BreakerConfig:
    """Thresholds of one breaker (defaults: see docs/stages/circuit_breaker.md)."""

    failure_rate: float = 0.5
    min_calls: int = 10
    window_calls: int = 50
    window_s: float = 60.0
    open_s: float = 30.0


class Permit(NamedTuple):
    """The answer to "may this call go through?", to hand back with its outcome."""

    allowed: bool
    probe: bool = False
    generation: int = 0
    retry_after: float | None = None
    state: BreakerState = "closed"
    changed: bool = False  # acquiring moved the breaker (open → half-open)


class BreakerPolicy:
    """One breaker's state. Not thread-safe by itself: stores call it under a lock."""

    __slots__ = ("_closed", "_failures", "_outcomes", "config", "generation", "opened_at", "probing",
                 "state")

    def __init__(self, config: BreakerConfig) -> None:
        self.config = config
        self.state: BreakerState = "closed"
        self.generation = 0
        self.opened_at = 0.0
        self.probing = False
        self._outcomes: deque[tuple[float, bool]] = deque()
        self._failures = 0
        self._closed = Permit(True, False, 0, None, "closed")  # reused: no allocation per call

    def _move(self, state: BreakerState, now: float) -> None:
        self.state = state
        self.generation += 1
        self.probing = False
        self._outcomes.clear()
        self._failures = 0
        if state == "open":
            self.opened_at = now
        elif state == "closed":
            self._closed = Permit(True, False, self.generation, None, "closed")

    def acquire(self, now: float) -> Permit:
        """Whether a call may go now; a half-open breaker lets exactly one probe through."""
        state = self.state
        if state == "closed":
            return self._closed
        changed = False
        if state == "open":
            reopen_at = self.opened_at + self.config.open_s
            if now < reopen_at:
                return Permit(False, False, self.generation, reopen_at - now, "open")
            self._move("half_open", now)
            changed = True
        if self.probing:
            return Permit(False, False, self.generation, None, "half_open", changed)
        self.probing = True
        return Permit(True, True, self.generation, None, "half_open", changed)

    def record(self, now: float, permit: Permit, failed: bool | None) -> BreakerState | None:
        """Count an outcome; returns the new state if it changed, else None."""
        if not permit.allowed or permit.generation != self.generation:
            return None  # a stale outcome from before the last state change
        if permit.probe:
            self.probing = False
            if failed is None:
                return None
            self._move("open" if failed else "closed", now)
            return self.state
        if self.state != "closed" or failed is None:
            return None
        cfg = self.config
        outcomes = self._outcomes
        outcomes.append((now, failed))
        self._failures += failed
        horizon = now - cfg.window_s
        while outcomes and (len(outcomes) > cfg.window_calls or outcomes[0][0] <= horizon):
            self._failures -= outcomes.popleft()[1]
        total = len(outcomes)
        if total >= cfg.min_calls and self._failures >= cfg.failure_rate * total:
            self._move("open", now)
            return "open"
        return None

    def window(self) -> tuple[int, int]:
        """(outcomes, failures) currently counted."""
        return len(self._outcomes), self._failures
