"""Adaptive throttling (SRE book): counts in a sliding window, and the refusal probability."""

from __future__ import annotations

import random

from hypothesis import given
from hypothesis import strategies as st

from llmchain.policies import AdaptiveThrottle, throttle_probability


@given(st.integers(0, 10_000), st.integers(0, 10_000))
def test_the_probability_is_zero_until_more_than_half_of_the_attempts_fail(
        requests: int, accepts: int) -> None:
    accepts = min(accepts, requests)
    p = throttle_probability(requests, accepts, 2.0)
    assert 0.0 <= p < 1.0
    if 2 * accepts >= requests:
        assert p == 0.0
    else:
        assert p == (requests - 2 * accepts) / (requests + 1)


steps = st.lists(st.tuples(st.booleans(), st.floats(0, 4, allow_nan=False)), max_size=120)


@given(steps)
def test_counts_match_a_reference_over_bucketed_windows(ops: list[tuple[bool, float]]) -> None:
    width, n = 1.0, 10
    throttle = AdaptiveThrottle(k=2.0, window_s=width * n, buckets=n)
    now = 0.0
    seen: list[tuple[int, bool]] = []
    for accepted, dt in ops:
        now += dt
        throttle.record(now, accepted)
        seen.append((int(now // width), accepted))
        slot = int(now // width)
        live = [a for s, a in seen if s > slot - n]
        assert throttle.totals(now) == (len(live), sum(live))


@given(st.floats(0.0, 0.3), st.integers(0, 2**32 - 1))
def test_at_thirty_percent_failures_a_warm_window_never_refuses(failure_rate: float, seed: int) -> None:
    rng = random.Random(seed)  # injected randomness and clock: no real time involved
    throttle = AdaptiveThrottle(k=2.0, window_s=60.0)
    now = 0.0
    refusals = 0
    for call in range(400):  # a call: attempt; on failure, retry unless refused (3 attempts)
        now += 0.05
        for _attempt in range(3):
            ok = rng.random() >= failure_rate
            throttle.record(now, ok)
            if ok:
                break
            p = throttle.reject_probability(now)
            if call >= 50:  # once the window holds ~70 attempts (the stage waits for 10)
                refusals += p > 0
    assert refusals == 0


@given(st.integers(1, 500))
def test_a_full_outage_refuses_almost_every_retry(calls: int) -> None:
    throttle = AdaptiveThrottle(k=2.0, window_s=60.0)
    for i in range(calls):
        throttle.record(i * 0.01, False)
    assert throttle.reject_probability(calls * 0.01) == calls / (calls + 1)
