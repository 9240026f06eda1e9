"""Order hints: known good relative positions of stage *roles*.

A stage declares what it does as data, ``roles = frozenset({"retry"})``; a third-party stage
that declares the ``retry`` role gets the same hints as the built-in one, and a stage is never
judged by its name. A config that breaks a hint gets a warning, never a silent re-sort: the
order is the user's.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable, Sequence

from ._stage import stage_traits

#: The roles llmchain's hints know (a stage may declare others; they get no hints).
KNOWN_ROLES = frozenset({"cache", "retry", "rate_limit", "repair", "validate", "parse", "fallback",
                         "log", "circuit_breaker", "timeout", "redact"})

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


def stage_roles(stage: object) -> frozenset[str]:
    """The roles ``stage`` declares (``roles`` attribute); none when it declares none."""
    return stage_traits(stage).roles


def check_order(stage_roles: Sequence[Iterable[str] | str]) -> list[str]:
    """Return (and warn about) each rule the given order breaks.

    ``stage_roles`` has one entry per stage, outermost first: the roles it declares (a single
    string is one role).
    """
    position: dict[str, int] = {}
    for i, roles in enumerate(stage_roles):
        for role in (roles,) if isinstance(roles, str) else roles:
            position.setdefault(role, i)
    problems = []
    for outer, inner, why in ORDER_RULES:
        if outer in position and inner in position and position[outer] > position[inner]:
            problems.append(f"'{outer}' is inside '{inner}'; usually it goes outside: {why}")
    for problem in problems:
        warnings.warn(problem, OrderWarning, stacklevel=4)
    return problems
