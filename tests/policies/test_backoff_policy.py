"""Backoff schedule: every delay lies in [0, min(cap, base * 2**n)]."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from llmchain.policies import Backoff

bases = st.floats(0, 10, allow_nan=False)
caps = st.floats(0, 120, allow_nan=False)
retries = st.integers(0, 200)
draws = st.floats(0, 1, exclude_max=True)


@given(bases, caps, retries, draws)
def test_full_jitter_delay_is_within_zero_and_the_ceiling(base: float, cap: float, n: int, u: float) -> None:
    delay = Backoff(base, cap, "full").delay(n, u)
    assert 0 <= delay <= min(cap, base * 2.0**n)


@given(bases, caps, retries, draws)
def test_equal_jitter_keeps_at_least_half_the_ceiling(base: float, cap: float, n: int, u: float) -> None:
    backoff = Backoff(base, cap, "equal")
    ceiling = min(cap, base * 2.0**n)
    assert ceiling / 2 <= backoff.delay(n, u) <= ceiling


@given(bases, caps, retries)
def test_ceiling_doubles_until_the_cap(base: float, cap: float, n: int) -> None:
    backoff = Backoff(base, cap, "none")
    assert backoff.ceiling(n) == min(cap, base * 2.0**n)
    assert backoff.ceiling(n) <= backoff.ceiling(n + 1) <= cap
    assert backoff.delay(n, 0.3) == backoff.ceiling(n)


def test_default_schedule_matches_the_official_sdks() -> None:
    # openai-python / anthropic-sdk-python: 0.5 s doubling, capped at 8 s
    assert [Backoff().ceiling(n) for n in range(6)] == [0.5, 1.0, 2.0, 4.0, 8.0, 8.0]


def test_huge_retry_numbers_do_not_overflow() -> None:
    assert Backoff(1.0, 30.0).ceiling(10_000) == 30.0
    assert Backoff(0.0, 30.0).ceiling(10_000) == 0.0
