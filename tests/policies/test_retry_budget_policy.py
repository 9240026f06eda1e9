"""Retry budget: retries stay below ratio * recent calls + a floor, per sliding window."""

from __future__ import annotations

import threading

from hypothesis import given
from hypothesis import strategies as st

from llmchain.policies import RetryBudget


def test_floor_allows_a_few_retries_without_any_calls() -> None:
    budget = RetryBudget(ratio=0.2, min_per_s=0.5, window_s=10)  # floor = 5 per window
    assert [budget.try_withdraw(100.0) for _ in range(7)] == [True] * 5 + [False] * 2


def test_ratio_of_recent_calls_adds_to_the_floor() -> None:
    budget = RetryBudget(ratio=0.2, min_per_s=0.0, window_s=10)
    for _ in range(100):
        budget.deposit(50.0)
    granted = sum(budget.try_withdraw(50.5) for _ in range(50))
    assert granted == 20
    assert budget.totals(50.5) == (100, 20)


def test_window_slides_old_calls_and_retries_out() -> None:
    budget = RetryBudget(ratio=1.0, min_per_s=0.0, window_s=10, buckets=10)
    budget.deposit(0.0)
    assert budget.try_withdraw(0.0)
    assert not budget.try_withdraw(5.0)  # one call, one retry already spent
    assert budget.totals(10.5) == (0, 0)  # both left the window
    assert not budget.try_withdraw(10.5)  # and no calls, no floor: nothing to spend


def test_zero_budget_never_retries() -> None:
    budget = RetryBudget(ratio=0.0, min_per_s=0.0)
    for t in range(100):
        budget.deposit(float(t))
        assert not budget.try_withdraw(float(t))


ops = st.lists(
    st.tuples(st.sampled_from(["call", "retry", "tick"]), st.floats(0, 3, allow_nan=False)),
    max_size=150,
)


@given(ops, st.sampled_from([0.0, 0.1, 0.5]), st.sampled_from([0.0, 0.2, 1.0]))
def test_budget_matches_a_reference_count_over_bucketed_windows(
    steps: list[tuple[str, float]], min_per_s: float, ratio: float
) -> None:
    width, n = 1.0, 10
    budget = RetryBudget(ratio=ratio, min_per_s=min_per_s, window_s=width * n, buckets=n)
    floor = min_per_s * width * n
    now = 0.0
    events: list[tuple[int, str]] = []  # (time slot, "call" | "retry") of what was counted
    for kind, dt in steps:
        now += dt
        slot = int(now // width)
        recent = [k for s, k in events if s > slot - n]
        if kind == "call":
            budget.deposit(now)
            events.append((slot, "call"))
        elif kind == "retry":
            expected = recent.count("retry") + 1 <= floor + ratio * recent.count("call")
            assert budget.try_withdraw(now) == expected
            if expected:
                events.append((slot, "retry"))
        else:
            assert budget.totals(now) == (recent.count("call"), recent.count("retry"))


def test_threads_never_overdraw() -> None:
    budget = RetryBudget(ratio=0.1, min_per_s=0.0, window_s=10)
    for _ in range(1000):
        budget.deposit(1.0)
    granted: list[bool] = []

    def spend() -> None:
        for _ in range(200):
            granted.append(budget.try_withdraw(1.5))

    threads = [threading.Thread(target=spend) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sum(granted) == 100
