"""Exponential backoff with jitter: the delay before each retry.

``ceiling(n) = min(cap, base * 2**n)`` for retry ``n`` (0 = the first retry). "full" jitter
draws uniformly from ``[0, ceiling]`` (AWS Architecture Blog, "Exponential Backoff and
Jitter", 2015: it spreads competing clients best and finishes the work soonest); "equal"
keeps half the ceiling and draws the rest; "none" is the bare ceiling.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

Jitter = Literal["full", "equal", "none"]


@dataclass(frozen=True, slots=True)
class Backoff:
    """The retry delay schedule; ``delay(n, u)`` is pure given the uniform draw ``u``."""

    base_s: float = 0.5
    cap_s: float = 8.0
    jitter: Jitter = "full"

    def ceiling(self, retry: int) -> float:
        """The largest delay before retry ``retry`` (0-based): ``min(cap, base * 2**retry)``."""
        try:
            return min(self.cap_s, math.ldexp(self.base_s, max(0, retry)))
        except OverflowError:  # base * 2**retry is past any float, so past the cap
            return self.cap_s

    def delay(self, retry: int, u: float) -> float:
        """The delay before retry ``retry``; ``u`` is a uniform draw from [0, 1)."""
        ceiling = self.ceiling(retry)
        if self.jitter == "full":
            return ceiling * u
        if self.jitter == "equal":
            return ceiling * (0.5 + 0.5 * u)
        return ceiling
