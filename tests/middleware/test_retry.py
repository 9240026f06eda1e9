"""The retry stage: what is retried, how long it waits, when it gives up, and the retry budget."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from llmchain import (
    CallError,
    Chain,
    CircuitOpen,
    Event,
    GaveUp,
    LLMRequest,
    Message,
    OutputInvalid,
    ParseError,
    ProviderError,
    RateLimited,
    TimeoutExceeded,
    TransportError,
)
from llmchain.middleware.retry import RetryMiddleware, is_retryable
from llmchain.policies import Backoff
from llmchain.testing import FakeClock, MockTransport
from llmchain.testing.scripted import ScriptedNext


def _request(deadline: float | None = None) -> LLMRequest:
    return LLMRequest(messages=(Message(role="user", content="hi"),), deadline=deadline)


def _run(coro: Coroutine[Any, Any, Any]) -> Any:
    return asyncio.run(coro)


def _retry(clock: FakeClock, u: float = 0.999, **options: Any) -> RetryMiddleware:
    options.setdefault("budget_ratio", None)
    return RetryMiddleware(RetryMiddleware.Options(**options), clock=clock, rng=lambda: u)


def _503() -> ProviderError:
    return ProviderError("HTTP 503", status_code=503)


def test_success_first_time_makes_one_call_and_never_sleeps() -> None:
    clock = FakeClock()
    inner = ScriptedNext("ok", clock=clock)
    assert _run(_retry(clock).handle(_request(), inner)).text == "ok"
    assert inner.call_count == 1 and clock.sleeps == []


def test_transient_failures_are_retried_with_the_same_request_id_and_growing_backoff() -> None:
    clock = FakeClock()
    inner = ScriptedNext(_503(), TransportError("reset"), TimeoutExceeded("slow"), "ok", clock=clock)
    response = _run(_retry(clock, u=0.5, max_attempts=4).handle(_request(), inner))
    assert response.text == "ok"
    assert [r.attempt for r in inner.calls] == [1, 2, 3, 4]
    assert len({r.request_id for r in inner.calls}) == 1
    assert clock.sleeps == [0.25, 0.5, 1.0]  # full jitter at u=0.5 of 0.5, 1, 2


def test_retry_after_is_honoured_exactly() -> None:
    clock = FakeClock()
    inner = ScriptedNext(RateLimited("429", retry_after=2.5), "ok", clock=clock)
    _run(_retry(clock).handle(_request(clock.now() + 10), inner))
    assert clock.sleeps == [2.5]


def test_retry_after_beyond_the_deadline_gives_up_at_once() -> None:
    clock = FakeClock()
    limited = RateLimited("429", retry_after=30)
    inner = ScriptedNext(limited, "ok", clock=clock)
    with pytest.raises(GaveUp) as info:
        _run(_retry(clock).handle(_request(clock.now() + 5), inner))
    assert inner.call_count == 1 and clock.sleeps == []
    assert "Retry-After" in info.value.message and "deadline" in info.value.message
    assert info.value.__cause__ is limited and info.value.errors == [limited]
    assert info.value.retry_after == 30 and not info.value.retryable


def test_retry_after_longer_than_allowed_is_not_honoured_the_backoff_is_used() -> None:
    clock = FakeClock()
    inner = ScriptedNext(RateLimited("429", retry_after=600), "ok", clock=clock)
    assert _run(_retry(clock).handle(_request(), inner)).text == "ok"
    assert inner.call_count == 2 and len(clock.sleeps) == 1 and clock.sleeps[0] <= 0.5


def test_a_refused_long_ask_that_keeps_failing_says_what_the_server_asked() -> None:
    clock = FakeClock()
    errors = [RateLimited("429", retry_after=86400) for _ in range(4)]
    inner = ScriptedNext(*errors, clock=clock)
    with pytest.raises(GaveUp, match="max_retry_after_s=60") as info:
        _run(_retry(clock).handle(_request(), inner))
    assert inner.call_count == 4 and max(clock.sleeps) <= 2.0  # backoff, never the day asked
    assert "asked to wait 86400s" in info.value.message and "refused to wait" in info.value.message
    last = info.value.errors[-1]
    assert isinstance(last, RateLimited) and last.server_asked_s == 86400


@pytest.mark.parametrize("error", [
    ProviderError("bad request", status_code=400),
    ProviderError("unauthorized", status_code=401),
    ProviderError("forbidden", status_code=403, retryable=True),  # never, whatever it claims
    ProviderError("no such model", status_code=404),
    ParseError("not json", raw_text="{"),
    OutputInvalid("missing field", errors=["x"], retryable=True),  # belongs to repair
    CircuitOpen("open"),
    TimeoutExceeded("deadline", phase="deadline"),
    GaveUp("inner retry gave up"),
])
def test_errors_that_cannot_succeed_on_retry_are_raised_as_they_are(error: CallError) -> None:
    clock = FakeClock()
    inner = ScriptedNext(error, "ok", clock=clock)
    with pytest.raises(CallError) as info:
        _run(_retry(clock).handle(_request(), inner))
    assert info.value is error and inner.call_count == 1
    assert not is_retryable(error)


def test_exhausted_attempts_give_up_with_every_error() -> None:
    clock = FakeClock()
    errors = [_503(), _503(), _503()]
    inner = ScriptedNext(*errors, clock=clock)
    with pytest.raises(GaveUp) as info:
        _run(_retry(clock, max_attempts=3).handle(_request(), inner))
    assert info.value.errors == errors and info.value.__cause__ is errors[-1]
    assert "after 3 attempts" in info.value.message and "503" in info.value.message
    assert "try 3: ProviderError" in info.value.explain()


def test_a_later_non_retryable_error_ends_the_call_as_it_is() -> None:
    clock = FakeClock()
    bad = ProviderError("bad", status_code=400)
    inner = ScriptedNext(_503(), bad, "ok", clock=clock)
    with pytest.raises(ProviderError) as info:
        _run(_retry(clock).handle(_request(), inner))
    assert info.value is bad and inner.call_count == 2


def test_backoff_that_would_end_past_the_deadline_gives_up_instead_of_sleeping() -> None:
    clock = FakeClock()
    inner = ScriptedNext(_503(), _503(), "ok", clock=clock)
    with pytest.raises(GaveUp, match="backoff"):
        _run(_retry(clock, u=0.999, base_s=4.0, cap_s=4.0).handle(_request(clock.now() + 3), inner))
    assert clock.sleeps == [] and inner.call_count == 1


@settings(max_examples=80, deadline=None)
@given(
    failures=st.integers(0, 8),
    max_attempts=st.integers(1, 6),
    draws=st.lists(st.floats(1e-3, 1, exclude_max=True), min_size=8, max_size=8),  # no 0 s sleeps
    timeout=st.one_of(st.none(), st.floats(0.1, 20)),
)
def test_attempts_backoffs_and_total_sleep_properties(
    failures: int, max_attempts: int, draws: list[float], timeout: float | None
) -> None:
    clock = FakeClock()
    it = iter(draws)
    stage = RetryMiddleware(RetryMiddleware.Options(max_attempts=max_attempts, budget_ratio=None),
                            clock=clock, rng=lambda: next(it))
    inner = ScriptedNext(*([_503()] * failures), "ok", clock=clock)
    start = clock.now()
    request = _request(None if timeout is None else start + timeout)
    try:
        _run(stage.handle(request, inner))
        succeeded = True
    except (GaveUp, ProviderError):  # max_attempts=1 re-raises the error itself
        succeeded = False
    if timeout is None:
        assert inner.call_count == min(failures + 1, max_attempts)
        assert succeeded == (failures < max_attempts)
    else:
        assert inner.call_count <= min(failures + 1, max_attempts)
        assert clock.slept < timeout  # total sleep never reaches the deadline
    backoff = Backoff()
    for n, slept in enumerate(clock.sleeps):
        assert 0 <= slept <= min(backoff.cap_s, backoff.base_s * 2**n)


def test_budget_stops_a_retry_storm_during_an_outage() -> None:
    clock = FakeClock()
    stage = RetryMiddleware(RetryMiddleware.Options(max_attempts=4, budget_ratio=0.2, budget_min_per_s=0.5,
                                                    budget_window_s=10, throttle_k=None),
                            clock=clock, rng=lambda: 0.0)
    inner = ScriptedNext(_503(), clock=clock)  # the provider is down: every call fails
    reasons = []
    for _ in range(200):
        with pytest.raises(GaveUp) as info:
            _run(stage.handle(_request(), inner))
        reasons.append("budget" in info.value.message)
    retries = inner.call_count - 200
    assert retries <= 5 + 0.2 * 200  # floor (0.5/s x 10 s) + 20 % of the calls
    assert retries >= 40  # ...and the budget is really used
    assert reasons[-1]  # late calls are refused by the budget, saying so


def _outage_added_load(stage: RetryMiddleware, inner: ScriptedNext, calls: int) -> float:
    for _ in range(calls):
        with pytest.raises(GaveUp):
            _run(stage.handle(_request(), inner))
    return (inner.call_count - calls) / calls


def test_adaptive_throttling_adds_at_most_a_fifth_of_the_load_in_a_full_outage() -> None:
    import random
    clock = FakeClock()
    draw = random.Random(7).random  # injected RNG: the test is deterministic
    stage = RetryMiddleware(RetryMiddleware.Options(max_attempts=4), clock=clock, rng=draw)
    inner = ScriptedNext(_503(), clock=clock)
    added = _outage_added_load(stage, inner, 300)
    assert added <= 0.2  # vs 3.0 (three retries per call) without storm control
    assert added > 0  # the first calls of the window still retry


def test_adaptive_throttling_costs_nothing_at_thirty_percent_of_503s() -> None:
    import random
    clock = FakeClock()
    faults = random.Random(3)
    stage = RetryMiddleware(RetryMiddleware.Options(max_attempts=3), clock=clock,
                            rng=random.Random(5).random)

    def flaky(request: LLMRequest) -> Any:
        return _503() if faults.random() < 0.3 else "ok"

    ok = throttled = 0
    for _ in range(1000):
        try:
            _run(stage.handle(_request(), ScriptedNext(flaky, clock=clock)))
            ok += 1
        except GaveUp as exc:
            throttled += "throttling" in exc.message
    assert throttled == 0  # never refused a retry: the formula stays at 0 below 50 % failures
    assert ok >= 960  # 1 - 0.3**3 = 97.3 % in theory


def test_adaptive_throttling_says_why_and_counts_what_the_window_holds() -> None:
    clock = FakeClock()
    stage = RetryMiddleware(RetryMiddleware.Options(max_attempts=2, throttle_min_attempts=4,
                                                    throttle_window_s=60),
                            clock=clock, rng=lambda: 0.0)
    inner = ScriptedNext(_503(), clock=clock)
    with pytest.raises(GaveUp):  # window holds 1 attempt: below the minimum, so it retries
        _run(stage.handle(_request(), inner))
    assert inner.call_count == 2
    with pytest.raises(GaveUp):
        _run(stage.handle(_request(), inner))  # 3 attempts seen when deciding: still retries
    assert inner.call_count == 4
    with pytest.raises(GaveUp, match=r"only 0 of the last 5 attempts .* probability 0.83"):
        _run(stage.handle(_request(), inner))
    assert inner.call_count == 5
    clock.advance(61)  # the window forgets the outage
    with pytest.raises(GaveUp, match="after 2 attempts"):
        _run(stage.handle(_request(), inner))


def test_throttle_counters_are_shared_by_name_across_stages() -> None:
    clock = FakeClock()
    opts = RetryMiddleware.Options(max_attempts=2, throttle_min_attempts=0, share="t-shared")
    first = RetryMiddleware(opts, clock=clock, rng=lambda: 0.0)
    second = RetryMiddleware(opts, clock=clock, rng=lambda: 0.0)
    assert first.throttle_store is second.throttle_store
    with pytest.raises(GaveUp):
        _run(first.handle(_request(), ScriptedNext(_503(), clock=clock)))
    inner = ScriptedNext(_503(), clock=clock)
    with pytest.raises(GaveUp, match="throttling"):  # the second stage sees the first's failures
        _run(second.handle(_request(), inner))
    assert inner.call_count == 1


def test_no_budget_means_no_retries_when_ratio_and_floor_are_zero() -> None:
    clock = FakeClock()
    stage = RetryMiddleware(RetryMiddleware.Options(budget_ratio=0.0, budget_min_per_s=0.0, throttle_k=None),
                            clock=clock)
    inner = ScriptedNext(_503(), "ok", clock=clock)
    with pytest.raises(GaveUp, match="retry budget exhausted"):
        _run(stage.handle(_request(), inner))
    assert inner.call_count == 1


def test_through_a_chain_every_attempt_is_on_the_response_and_on_the_error() -> None:
    clock = FakeClock()
    events: list[Event] = []
    ok_chain = Chain([RetryMiddleware(clock=clock)],
                     MockTransport.scripted(_503(), RateLimited("429", retry_after=1), "fine", clock=clock),
                     clock=clock, observers=[events.append])
    response = ok_chain.complete("hi")
    assert [(a.number, a.outcome, a.status_code) for a in response.attempts] == [
        (1, "error", 503), (2, "error", 429), (3, "ok", None)]
    assert [e.data["attempt"] for e in events if e.kind == "retry_scheduled"] == [2, 3]

    failing = Chain([RetryMiddleware(clock=clock)], MockTransport.scripted(_503(), cycle=True, clock=clock),
                    clock=clock)
    with pytest.raises(GaveUp) as info:
        failing.complete("hi")
    assert [a.status_code for a in info.value.attempts] == [503, 503, 503, 503]  # 4 by default
    assert info.value.request_id is not None


def test_configured_by_name() -> None:
    chain = Chain.from_config({"stages": [{"use": "retry", "max_attempts": 5, "jitter": "equal",
                                           "budget_ratio": 0.1}]})
    stage = chain.stages[0][1]
    assert isinstance(stage, RetryMiddleware)
    assert stage.options.max_attempts == 5 and stage.budget is not None and stage.budget.ratio == 0.1
