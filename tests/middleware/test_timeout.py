"""The timeout stage: per-attempt limit, total deadline, cancellation, and no hanging forever."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Coroutine
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from llmchain import Chain, ConfigError, LLMRequest, LLMResponse, Message, TimeoutExceeded
from llmchain._loop import LOOP
from llmchain.middleware.retry import RetryMiddleware
from llmchain.middleware.timeout import TimeoutMiddleware
from llmchain.testing import FakeClock, MockReply, MockTransport
from llmchain.testing.scripted import Delay, ScriptedNext


def _threads() -> set[threading.Thread]:
    """Live threads, less the one-off tiktoken loader (it may finish at any moment)."""
    return {t for t in threading.enumerate() if t.name != "llmchain-tiktoken"}


def _request(deadline: float | None = None) -> LLMRequest:
    return LLMRequest(messages=(Message(role="user", content="hi"),), deadline=deadline)


def _run(coro: Coroutine[Any, Any, Any]) -> Any:
    return asyncio.run(coro)


def _stage(clock: FakeClock, **options: Any) -> TimeoutMiddleware:
    return TimeoutMiddleware(TimeoutMiddleware.Options(**options), clock=clock)


# -- on the fake clock ------------------------------------------------------------------------


def test_attempt_limit_cancels_the_inner_work_on_fake_time() -> None:
    clock = FakeClock()
    inner = ScriptedNext(Delay(5, "late"), clock=clock, enforce_deadline=False)  # ignores deadlines
    start = clock.now()
    with pytest.raises(TimeoutExceeded) as info:
        _run(_stage(clock, attempt_s=1.0).handle(_request(start + 30), inner))
    assert info.value.phase == "attempt" and info.value.retryable
    assert clock.now() - start == 1.0  # the clock moved only to the timeout
    assert inner.results == ["cancelled"]


def test_the_attempt_deadline_is_handed_inward_and_reported_as_an_attempt_timeout() -> None:
    clock = FakeClock()
    start = clock.now()
    seen: list[float | None] = []

    async def inner(request: LLMRequest) -> LLMResponse:  # like the pinned transport call
        seen.append(request.deadline)
        clock.advance(1.0)
        raise TimeoutExceeded("the call's deadline ran out", phase="deadline")

    with pytest.raises(TimeoutExceeded) as info:
        _run(_stage(clock, attempt_s=1.0).handle(_request(start + 30), inner))
    assert seen == [start + 1.0]
    assert info.value.phase == "attempt" and info.value.retryable


def test_deadline_shorter_than_the_attempt_limit_wins_and_is_not_retryable() -> None:
    clock = FakeClock()
    inner = ScriptedNext(Delay(5, "late"), clock=clock, enforce_deadline=False)
    start = clock.now()
    with pytest.raises(TimeoutExceeded) as info:
        _run(_stage(clock, attempt_s=3.0).handle(_request(start + 2.0), inner))
    assert info.value.phase == "deadline" and not info.value.retryable
    assert clock.now() - start == 2.0


def test_total_s_tightens_the_deadline_for_everything_inside() -> None:
    clock = FakeClock()
    inner = ScriptedNext("ok", clock=clock)
    _run(_stage(clock, total_s=4.0).handle(_request(clock.now() + 30), inner))
    assert inner.last_request.deadline == clock.now() + 4.0
    _run(_stage(clock, total_s=4.0).handle(_request(clock.now() + 1), inner))
    assert inner.last_request.deadline == clock.now() + 1  # an earlier deadline is kept


def test_passed_deadline_fails_before_calling_inward() -> None:
    clock = FakeClock()
    inner = ScriptedNext("ok", clock=clock)
    with pytest.raises(TimeoutExceeded) as info:
        _run(_stage(clock).handle(_request(clock.now() - 1), inner))
    assert info.value.phase == "deadline"
    assert inner.call_count == 0


def test_without_any_limit_the_request_and_response_pass_untouched() -> None:
    clock = FakeClock()
    answer = LLMResponse(text="same object")
    seen: list[LLMRequest] = []

    async def inner(request: LLMRequest) -> LLMResponse:
        seen.append(request)
        return answer

    request = _request()
    assert _run(_stage(clock).handle(request, inner)) is answer
    assert seen == [request] and seen[0] is request


def test_inner_errors_pass_through_unchanged() -> None:
    clock = FakeClock()
    error = TimeoutExceeded("from inside", phase="attempt")
    inner = ScriptedNext(error, clock=clock)
    with pytest.raises(TimeoutExceeded) as info:
        _run(_stage(clock, attempt_s=5.0).handle(_request(), inner))
    assert info.value is error


eighths = st.integers(1, 80).map(lambda k: k / 8)


@settings(max_examples=60, deadline=None)
@given(delay=eighths, attempt_s=st.one_of(st.none(), eighths), budget=st.one_of(st.none(), eighths))
def test_outcome_and_elapsed_time_follow_the_smallest_limit(
    delay: float, attempt_s: float | None, budget: float | None
) -> None:
    clock = FakeClock()
    start = clock.now()
    inner = ScriptedNext(Delay(delay, "done"), clock=clock, enforce_deadline=False)
    request = _request(None if budget is None else start + budget)
    limits = [x for x in (attempt_s, budget) if x is not None]
    limit = min(limits) if limits else None
    stage = _stage(clock, attempt_s=attempt_s)
    if limit is None or delay < limit:
        assert _run(stage.handle(request, inner)).text == "done"
        assert clock.now() - start == delay
        return
    with pytest.raises(TimeoutExceeded) as info:
        _run(stage.handle(request, inner))
    assert clock.now() - start == limit  # never a moment past the limit
    by_attempt = attempt_s == limit and (budget is None or attempt_s < budget)
    assert info.value.phase == ("attempt" if by_attempt else "deadline")


def test_retry_inside_the_deadline_never_sleeps_past_it() -> None:
    clock = FakeClock()
    inner = ScriptedNext(Delay(10, "slow"), clock=clock)
    retry = RetryMiddleware(RetryMiddleware.Options(max_attempts=10, budget_ratio=None), clock=clock)
    timeout = _stage(clock, attempt_s=1.0)
    start = clock.now()

    async def chain(request: LLMRequest) -> LLMResponse:
        return await retry.handle(request, lambda r: timeout.handle(r, inner))

    with pytest.raises(Exception) as info:
        _run(chain(_request(start + 6.0)))
    assert clock.now() - start <= 6.0
    assert type(info.value).__name__ in ("GaveUp", "TimeoutExceeded")
    assert inner.results and set(inner.results) == {"cancelled"}


# -- on the real clock: real cancellation, no leaks (deadlines of at most 0.3 s) ----------------


class NeverAnswers:
    """A transport that accepts the call and never answers; records cancellation."""

    name = "never"

    def __init__(self) -> None:
        self.cancelled = 0

    def identity(self) -> dict[str, Any]:
        return {"kind": "never"}

    async def send(self, request: LLMRequest) -> LLMResponse:
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            self.cancelled += 1
            raise
        raise AssertionError("unreachable")

    async def aclose(self) -> None:
        pass


@pytest.mark.parametrize("stages", [[], [TimeoutMiddleware()]], ids=["pinned-end-only", "timeout-stage"])
def test_client_does_not_hang_forever_async(stages: list[Any]) -> None:
    """The seed's question: a server that never answers cannot hang the caller."""
    transport = NeverAnswers()
    chain = Chain(stages, transport, timeout_s=0.2)

    async def main() -> tuple[float, int, int]:
        before = len(asyncio.all_tasks())
        t0 = time.monotonic()
        with pytest.raises(TimeoutExceeded):
            await chain.acomplete("hello?")
        elapsed = time.monotonic() - t0
        await asyncio.sleep(0)
        return elapsed, before, len(asyncio.all_tasks())

    elapsed, before, after = _run(main())
    assert 0.19 <= elapsed < 0.3
    assert transport.cancelled == 1
    assert after == before


def _pending_tasks() -> int:
    """Tasks left on llmchain's loop (every sync call's), asked on it."""
    async def count() -> int:
        return len(asyncio.all_tasks()) - 1  # minus this coroutine's own task

    return LOOP.run(count())


@pytest.mark.parametrize("where", ["main-thread", "worker-thread"])
@pytest.mark.parametrize("stages", [[], [TimeoutMiddleware()]], ids=["pinned-end-only", "timeout-stage"])
def test_client_does_not_hang_forever_sync(stages: list[Any], where: str) -> None:
    transport = NeverAnswers()
    chain = Chain(stages, transport, timeout_s=0.2)
    threads = _threads()
    elapsed: list[float] = []

    def call() -> None:
        t0 = time.monotonic()
        with pytest.raises(TimeoutExceeded):
            chain.complete("hello?")
        elapsed.append(time.monotonic() - t0)

    if where == "main-thread":
        call()
    else:
        worker = threading.Thread(target=call)
        worker.start()
        worker.join(5)
    assert len(elapsed) == 1 and 0.19 <= elapsed[0] < 0.3
    assert transport.cancelled == 1
    assert _threads() == threads
    assert _pending_tasks() == 0


def test_attempt_timeout_with_retries_ends_within_the_deadline_on_real_time() -> None:
    transport = MockTransport.scripted(MockReply(delay_s=5, text="late"), MockReply(delay_s=5, text="late"),
                                       MockReply(delay_s=5, text="late"), "on time")
    chain = Chain([RetryMiddleware(RetryMiddleware.Options(max_attempts=3, base_s=0.01, cap_s=0.01)),
                   TimeoutMiddleware(TimeoutMiddleware.Options(attempt_s=0.05))],
                  transport, timeout_s=0.3)
    t0 = time.monotonic()
    with pytest.raises(Exception) as info:
        chain.complete("hi")
    elapsed = time.monotonic() - t0
    assert elapsed < 0.3 + 0.1
    assert type(info.value).__name__ == "GaveUp"
    attempts = info.value.attempts  # type: ignore[attr-defined]
    assert [a.outcome for a in attempts] == ["timeout"] * 3
    assert all(0.04 <= a.duration_s < 0.1 for a in attempts)  # each cut at attempt_s=0.05


def test_configured_by_name_with_validated_options() -> None:
    chain = Chain.from_config({"stages": [{"use": "timeout", "attempt_s": 2.5, "total_s": 10}]})
    stage = chain.stages[0][1]
    assert isinstance(stage, TimeoutMiddleware)
    assert stage.options.attempt_s == 2.5 and stage.options.total_s == 10
    with pytest.raises(ConfigError, match="attempt_s"):
        Chain.from_config({"stages": [{"use": "timeout", "attempt_s": -1}]})
    with pytest.raises(ConfigError, match="unknown option"):
        Chain.from_config({"stages": [{"use": "timeout", "per_attempt": 1}]})
