"""Order hints: known good relative positions of built-in stage types.

A config that breaks one gets a warning, never a silent re-sort: the order is the user's.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence

# (outer, inner, why the outer one belongs outside)
ORDER_RULES: tuple[tuple[str, str, str], ...] = (
    ("cache", "retry", "a cache hit should skip retries and coalesce identical calls"),
    ("cache", "rate_limit", "a cache hit should not spend rate-limit capacity"),
    ("repair", "validate", "repair re-asks when validation (inside it) fails"),
    ("repair", "parse", "repair re-asks when parsing (inside it) fails"),
    ("validate", "parse", "validation needs the value that parse (inside it) produced"),
    ("retry", "rate_limit", "every retried attempt must pass the rate limiter again"),
    ("fallback", "retry", "fall back only after retries on the primary are exhausted"),
    ("log", "retry", "the log line should summarise all attempts"),
    (
        "circuit_breaker",
        "rate_limit",
        "a call failing fast on an open circuit should not spend rate-limit capacity",
    ),
    ("fallback", "circuit_breaker", "an open circuit should route to an alternative"),
)


class OrderWarning(UserWarning):
    """Stages are in an order that is probably not what you meant."""


def check_order(stage_types: Sequence[str]) -> list[str]:
    """Return (and warn about) each rule the given order breaks."""
    position: dict[str, int] = {}
    for i, kind in enumerate(stage_types):
        position.setdefault(kind, i)
    problems = []
    for outer, inner, why in ORDER_RULES:
        if outer in position and inner in position and position[outer] > position[inner]:
            problems.append(f"'{outer}' is inside '{inner}'; usually it goes outside: {why}")
    for problem in problems:
        warnings.warn(problem, OrderWarning, stacklevel=4)
    return problems
