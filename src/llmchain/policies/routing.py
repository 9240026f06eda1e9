"""Routing policy: the state kept per deployment and the order strategies put deployments in.

Pure: no clock, no I/O; randomness comes from the ``random.Random`` the caller passes (tests
seed it). Times are the caller's wall clock (epoch seconds), shared by processes on one host.

Per deployment the state holds calls in flight, the EWMA of recent successful latencies, a
*load* (starts per minute, decayed exponentially with a one-minute time constant: for a steady
rate of r calls per minute it settles at r), the end of any cool-down, and the share of its
rate limit the provider last said was left (``x-ratelimit-remaining-*`` / ``-limit-*``).
"""

from __future__ import annotations

import math
import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Literal

Strategy = Literal["weighted_random", "least_in_flight", "lowest_latency", "most_headroom"]
LOAD_TAU_S = 60.0
HEADERS_FRESH_S = 60.0


@dataclass(frozen=True, slots=True)
class DeploymentState:
    in_flight: int = 0
    latency_s: float | None = None
    load: float = 0.0
    load_at: float = 0.0
    cool_until: float = 0.0
    header_headroom: float | None = None
    header_at: float = 0.0


def decayed(load: float, at: float, now: float) -> float:
    return load * math.exp(-max(0.0, now - at) / LOAD_TAU_S)


def started(state: DeploymentState, now: float) -> DeploymentState:
    return replace(state, in_flight=state.in_flight + 1,
                   load=decayed(state.load, state.load_at, now) + 1.0, load_at=now)


def ewma(old: float | None, sample: float, alpha: float) -> float:
    return sample if old is None else alpha * sample + (1.0 - alpha) * old


def finished(state: DeploymentState, now: float, *, latency_s: float | None, alpha: float,
             cool_until: float | None, header_headroom: float | None) -> DeploymentState:
    out = replace(state, in_flight=max(0, state.in_flight - 1))
    if latency_s is not None:
        out = replace(out, latency_s=ewma(out.latency_s, latency_s, alpha))
    if cool_until is not None and cool_until > out.cool_until:
        out = replace(out, cool_until=cool_until)
    if header_headroom is not None:
        out = replace(out, header_headroom=header_headroom, header_at=now)
    return out


def headroom(state: DeploymentState, rpm: int | None, now: float) -> float:
    """Share of the deployment's capacity left (0..1): the lower of what the provider's headers
    said (while fresh) and what the configured rpm leaves after the recent load."""
    left = 1.0
    if state.header_headroom is not None and now - state.header_at < HEADERS_FRESH_S:
        left = min(left, state.header_headroom)
    if rpm:
        left = min(left, max(0.0, 1.0 - decayed(state.load, state.load_at, now) / rpm))
    return left


def header_headroom(headers: Mapping[str, str]) -> float | None:
    """remaining / limit from OpenAI or Anthropic rate-limit headers (the lower of requests
    and tokens), or None when they are absent."""
    shares = []
    for kind in ("requests", "tokens"):
        names = ((f"x-ratelimit-remaining-{kind}", f"x-ratelimit-limit-{kind}"),
                 (f"anthropic-ratelimit-{kind}-remaining", f"anthropic-ratelimit-{kind}-limit"))
        for remaining, limit in names:
            try:
                r, lim = float(headers[remaining]), float(headers[limit])
            except (KeyError, ValueError):
                continue
            if lim > 0:
                shares.append(max(0.0, min(1.0, r / lim)))
    return min(shares) if shares else None


@dataclass(frozen=True, slots=True)
class Candidate:
    """What a strategy sees of one deployment."""

    name: str
    weight: float
    in_flight: int
    latency_s: float | None
    headroom: float


def _weighted_shuffle(candidates: Sequence[Candidate], rng: random.Random) -> list[Candidate]:
    """Weighted sampling without replacement (Efraimidis-Spirakis keys u^(1/w))."""
    keyed = [(rng.random() ** (1.0 / c.weight), c) for c in candidates]
    return [c for _, c in sorted(keyed, key=lambda kc: kc[0], reverse=True)]


def order(strategy: Strategy, candidates: Sequence[Candidate],
          rng: random.Random) -> list[tuple[Candidate, str]]:
    """The candidates best first, each with why it ranks there (ties: weighted random)."""
    shuffled = _weighted_shuffle(candidates, rng)  # the tie-breaker for every strategy
    total = sum(c.weight for c in candidates)
    if strategy == "weighted_random":
        return [(c, f"weighted random (weight {c.weight:g} of {total:g})") for c in shuffled]
    if strategy == "least_in_flight":
        ranked = sorted(shuffled, key=lambda c: c.in_flight / c.weight)
        return [(c, f"least in flight ({c.in_flight} in flight)") for c in ranked]
    if strategy == "lowest_latency":  # an unmeasured deployment goes first: it gets measured
        ranked = sorted(shuffled, key=lambda c: -1.0 if c.latency_s is None else c.latency_s)
        return [(c, "lowest latency (not measured yet)" if c.latency_s is None
                 else f"lowest latency (EWMA {c.latency_s * 1000:.0f} ms)") for c in ranked]
    ranked = sorted(shuffled, key=lambda c: -c.headroom * c.weight)
    return [(c, f"most headroom ({c.headroom:.0%} of its limit left)") for c in ranked]
