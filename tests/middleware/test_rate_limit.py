"""The rate_limit stage: waits in order, fails fast past the deadline, reconciles, adapts."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Coroutine
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from llmchain import Chain, Event, LLMRequest, LLMResponse, Message, RateLimited, Usage
from llmchain._events import CallTrace, current_call
from llmchain.middleware.rate_limit import RateLimitMiddleware
from llmchain.stores.base import RateLimitStore
from llmchain.stores.memory import MemoryRateLimitStore
from llmchain.testing import FakeClock
from llmchain.testing.scripted import ScriptedNext


def _request(deadline: float | None = None, *, model: str | None = None, max_tokens: int | None = None,
             text: str = "hi") -> LLMRequest:
    return LLMRequest(messages=(Message(role="user", content=text),), deadline=deadline, model=model,
                      max_tokens=max_tokens)


def _run(coro: Coroutine[Any, Any, Any]) -> Any:
    return asyncio.run(coro)


def _stage(clock: FakeClock, **options: Any) -> RateLimitMiddleware:
    options.setdefault("tokenizer", "heuristic")
    options.setdefault("burst_s", None)  # window semantics; pacing has its own tests
    return RateLimitMiddleware(RateLimitMiddleware.Options(**options), clock=clock)


def _answer(tokens: int = 0, headers: dict[str, str] | None = None) -> LLMResponse:
    return LLMResponse(text="ok", usage=Usage(input_tokens=tokens), headers=headers or {})


def test_requests_beyond_the_limit_wait_for_the_window() -> None:
    clock = FakeClock()
    stage, inner = _stage(clock, rpm=2), ScriptedNext("ok", clock=clock)
    start = clock.now()
    for _ in range(3):
        _run(stage.handle(_request(), inner))
    assert clock.sleeps == [60.0]
    assert [t - start for t in inner.times] == [0.0, 0.0, 60.0]


def test_a_slot_past_the_deadline_fails_fast_without_waiting() -> None:
    clock = FakeClock()
    events: list[Event] = []
    stage, inner = _stage(clock, rpm=1), ScriptedNext("ok", clock=clock)
    _run(stage.handle(_request(), inner))
    with pytest.raises(RateLimited) as info:
        _run(stage.handle(_request(clock.now() + 10), inner))
    assert info.value.status_code is None and info.value.retry_after == 60.0
    assert "deadline" in info.value.message and info.value.retryable
    assert inner.call_count == 1 and clock.sleeps == [] and not events


def test_max_wait_s_bounds_waits_even_without_a_deadline() -> None:
    clock = FakeClock()
    stage, inner = _stage(clock, rpm=1, max_wait_s=5), ScriptedNext("ok", clock=clock)
    _run(stage.handle(_request(), inner))
    with pytest.raises(RateLimited, match="max_wait_s=5"):
        _run(stage.handle(_request(), inner))


def test_a_call_larger_than_the_token_limit_can_never_go() -> None:
    clock = FakeClock()
    stage, inner = _stage(clock, tpm=100), ScriptedNext("ok", clock=clock)
    with pytest.raises(RateLimited) as info:
        _run(stage.handle(_request(max_tokens=500), inner))
    assert not info.value.retryable and "never" in info.value.message
    assert inner.call_count == 0


def test_real_usage_replaces_the_estimate() -> None:
    clock = FakeClock()
    stage = _stage(clock, tpm=1000)
    inner = ScriptedNext(_answer(tokens=20), _answer(tokens=0), "ok", clock=clock)
    _run(stage.handle(_request(max_tokens=900), inner))  # books ~908, really used 20
    _run(stage.handle(_request(max_tokens=900), inner))  # fits at once; reports no usage: keeps ~908
    assert clock.sleeps == []
    _run(stage.handle(_request(max_tokens=900), inner))
    assert clock.sleeps == [60.0]


def test_a_provider_429_pauses_every_caller() -> None:
    clock = FakeClock()
    stage = _stage(clock, rpm=1000)
    inner = ScriptedNext(RateLimited("429", retry_after=3), "ok", clock=clock)
    with pytest.raises(RateLimited):
        _run(stage.handle(_request(), inner))
    _run(stage.handle(_request(), inner))
    assert clock.sleeps == [3.0]


def test_adaptive_without_limits_still_pauses_after_429_and_local_refusals_do_not() -> None:
    clock = FakeClock()
    stage = _stage(clock, pause_s=2.0)
    inner = ScriptedNext(RateLimited("local", status_code=None), RateLimited("429"), "ok", clock=clock)
    for _ in range(2):
        with pytest.raises(RateLimited):
            _run(stage.handle(_request(), inner))
    assert clock.sleeps == []  # the local refusal paused nobody
    _run(stage.handle(_request(), inner))
    assert clock.sleeps == [2.0]  # the 429 without Retry-After paused pause_s


def test_provider_headers_pause_callers_and_lower_the_limits() -> None:
    clock = FakeClock()
    stage = _stage(clock)
    headers = {"x-ratelimit-limit-requests": "100", "x-ratelimit-remaining-requests": "0",
               "x-ratelimit-reset-requests": "2s", "x-ratelimit-limit-tokens": "50000",
               "x-ratelimit-remaining-tokens": "49000", "x-ratelimit-reset-tokens": "1s"}
    inner = ScriptedNext(_answer(headers=headers), "ok", clock=clock)
    _run(stage.handle(_request(), inner))
    learned = stage.limits_for("default")  # rates from limit, remaining and reset together
    assert learned.requests / learned.period_s == pytest.approx(100 / 2, rel=0.01)
    assert learned.tokens / learned.period_s == pytest.approx(1000 / 1, rel=0.01)
    assert learned.period_s == pytest.approx(50)  # the slower bucket's window (50000 / 1000)
    assert learned.burst_s == pytest.approx(2)  # paced within the requests bucket (100 / 50)
    _run(stage.handle(_request(), inner))
    assert clock.sleeps == [pytest.approx(0.02)]  # one request refills in 2 s / 100


def test_waiters_are_served_in_the_order_they_arrived() -> None:
    clock = FakeClock()
    stage = _stage(clock, rpm=1, period_s=1.0)
    inner = ScriptedNext("ok", clock=clock)

    async def main() -> None:
        await asyncio.gather(*(stage.handle(_request(text=f"#{i}"), inner) for i in range(6)))

    _run(main())
    assert [r.messages[0].content for r in inner.calls] == [f"#{i}" for i in range(6)]
    # each waiter booked the slot one period after the one before it (the fake clock moves
    # forward by each sleep, so each later waiter booked from an already-advanced "now")
    assert clock.sleeps == [1.0] * 5


def test_a_caller_cancelled_while_waiting_gives_its_slot_back() -> None:
    clock = FakeClock()
    stage = _stage(clock, rpm=1)
    inner = ScriptedNext("ok", clock=clock)
    _run(stage.handle(_request(), inner))
    with pytest.raises(TimeoutError):
        _run(clock.wait_for(stage.handle(_request(), inner), 5))
    assert clock.sleeps == [5.0]  # cancelled 5 s into its 60 s wait
    _run(stage.handle(_request(), inner))
    assert clock.sleeps == [5.0, 55.0]  # the next caller got the freed slot, not the one after


class HookClock(FakeClock):
    """A fake clock that runs ``hook`` at the first sleep (to change the world meanwhile)."""

    hook: Callable[[], Coroutine[Any, Any, None]] | None = None

    async def sleep(self, seconds: float) -> None:
        hook, self.hook = self.hook, None
        if hook is not None:
            await hook()
        await super().sleep(seconds)


def test_a_429_during_a_wait_sends_the_waiter_behind_the_pause() -> None:
    clock = HookClock()
    stage = RateLimitMiddleware(RateLimitMiddleware.Options(rpm=1, period_s=10, tokenizer="heuristic"),
                                clock=clock)
    inner = ScriptedNext("ok", clock=clock)
    start = clock.now()
    _run(stage.handle(_request(), inner))

    async def provider_says_429() -> None:
        await stage.store.pause("default", clock.now(), 30.0)

    clock.hook = provider_says_429
    _run(stage.handle(_request(), inner))
    assert clock.sleeps == [10.0, 20.0]
    assert inner.times[1] - start == 30.0


def test_stages_sharing_a_name_share_one_budget() -> None:
    clock = FakeClock()
    a = _stage(clock, rpm=1, share="test-rate-limit-shared")
    b = _stage(clock, rpm=1, share="test-rate-limit-shared")
    assert a.store is b.store
    inner = ScriptedNext("ok", clock=clock)
    _run(a.handle(_request(), inner))
    with pytest.raises(RateLimited):
        _run(b.handle(_request(clock.now() + 1), inner))


def test_keys_are_per_model_unless_global() -> None:
    clock = FakeClock()
    inner = ScriptedNext("ok", clock=clock)
    per_model = _stage(clock, rpm=1)
    _run(per_model.handle(_request(model="a"), inner))
    _run(per_model.handle(_request(clock.now() + 1, model="b"), inner))  # its own budget
    shared = _stage(clock, rpm=1, key="global")
    _run(shared.handle(_request(model="a"), inner))
    with pytest.raises(RateLimited):
        _run(shared.handle(_request(clock.now() + 1, model="b"), inner))


def test_callers_on_several_threads_and_loops_share_the_limit() -> None:
    clock = FakeClock()
    stage = _stage(clock, rpm=50, max_wait_s=0)
    inner = ScriptedNext("ok", clock=clock)
    outcomes: list[str] = []

    def worker() -> None:
        async def calls() -> None:
            for _ in range(50):
                try:
                    await stage.handle(_request(), inner)
                    outcomes.append("sent")
                except RateLimited:
                    outcomes.append("refused")

        asyncio.run(calls())

    threads = [threading.Thread(target=worker) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert outcomes.count("sent") == 50 and outcomes.count("refused") == 100


@settings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 16).map(lambda k: k / 4), st.integers(1, 60)), max_size=30),
       st.integers(1, 4), st.integers(60, 200))
def test_sends_never_exceed_the_limits_in_any_window(
    calls: list[tuple[float, int]], rpm: int, tpm: int
) -> None:
    clock = FakeClock()
    stage = _stage(clock, rpm=rpm, tpm=tpm, period_s=10.0)
    def answer(request: LLMRequest) -> LLMResponse:  # uses about half the output it may
        return LLMResponse(text="ok", usage=Usage(input_tokens=8, output_tokens=(request.max_tokens or 0) // 2))

    inner = ScriptedNext(answer, clock=clock)
    sent: list[tuple[float, int]] = []
    for gap, max_tokens in calls:
        clock.advance(gap)
        request = _request(max_tokens=max_tokens)
        booked = 3 + 4 + 1 + max_tokens  # reply priming + one message + "hi" + max_tokens
        try:
            _run(stage.handle(request, inner))
        except RateLimited:
            assert booked > tpm
            continue
        sent.append((inner.times[-1], 8 + max_tokens // 2))  # what it really used
    for end, _ in sent:
        inside = [tokens for t, tokens in sent if end - 10.0 < t <= end]
        assert len(inside) <= rpm and sum(inside) <= tpm


def test_the_memory_store_implements_the_store_protocol() -> None:
    assert isinstance(MemoryRateLimitStore(), RateLimitStore)


def test_configured_by_name() -> None:
    chain = Chain.from_config({"stages": [{"use": "rate_limit", "rpm": 500, "tpm": 30000,
                                           "tokenizer": "heuristic"}]})
    stage = chain.stages[0][1]
    assert isinstance(stage, RateLimitMiddleware)
    assert (stage.limits_for("x").requests, stage.limits_for("x").tokens) == (500, 30000)


def test_a_pause_longer_than_the_deadline_fails_fast_even_without_limits() -> None:
    clock = FakeClock()
    stage = _stage(clock)
    inner = ScriptedNext(RateLimited("429", retry_after=30), "ok", clock=clock)
    with pytest.raises(RateLimited):
        _run(stage.handle(_request(), inner))
    with pytest.raises(RateLimited) as info:
        _run(stage.handle(_request(clock.now() + 5), inner))
    assert "pause for 30s" in info.value.message and info.value.retry_after == 30
    assert inner.call_count == 1 and clock.sleeps == []


def test_a_429_without_retry_after_pauses_until_its_headers_say_capacity_is_back() -> None:
    clock = FakeClock()
    stage = _stage(clock, rpm=1000)
    limited = RateLimited("429")
    limited.headers = {"x-ratelimit-limit-requests": "60", "x-ratelimit-remaining-requests": "0",
                       "x-ratelimit-reset-requests": "60s"}
    inner = ScriptedNext(limited, "ok", clock=clock)
    with pytest.raises(RateLimited):
        _run(stage.handle(_request(), inner))
    assert stage.limits_for("default").requests == 60  # learned from the 429's headers too
    _run(stage.handle(_request(), inner))
    assert clock.sleeps == [1.0]  # one request refills in 60 s / 60



@pytest.mark.parametrize("options", [{}, {"rpm": 1000}])
def test_an_all_day_retry_after_pauses_nobody_and_the_error_says_what_was_asked(
        options: dict[str, Any], caplog: pytest.LogCaptureFixture) -> None:
    clock = FakeClock()
    stage = _stage(clock, **options)
    events: list[Event] = []
    first, second = RateLimited("429", retry_after=86400), RateLimited("429", retry_after=86400)
    inner = ScriptedNext(first, second, "ok", "ok", clock=clock)

    async def run() -> None:
        current_call.set(CallTrace("req", (events.append,), lambda: 0.0))
        for error in (first, second):
            with pytest.raises(RateLimited) as info:
                await stage.handle(_request(), inner)
            assert info.value is error  # the server's own 429, annotated
        assert (await stage.handle(_request(), inner)).text == "ok"  # nobody paused
        assert (await stage.handle(_request(), inner)).text == "ok"

    with caplog.at_level("WARNING", logger="llmchain.rate_limit"):
        _run(run())
    assert inner.call_count == 4 and clock.sleeps == []
    assert first.server_asked_s == 86400 and first.status_code == 429
    assert "asked callers of 'default' to wait 86400s" in first.message
    assert "max_pause_s=60" in first.message and "refused to wait that long" in first.message
    assert not [e for e in events if e.kind == "rate_limit_wait"]
    refused = [e for e in events if e.kind == "rate_limit_pause_refused"]
    assert [e.data["server_asked_s"] for e in refused] == [86400, 86400]
    warnings = [r for r in caplog.records if "86400s" in r.getMessage()]
    assert len(warnings) == 1  # logged once per key, not once per 429


def test_a_remaining_zero_with_a_huge_reset_pauses_nobody() -> None:
    clock = FakeClock()
    stage = _stage(clock, max_pause_s=5)
    headers = {"x-ratelimit-limit-requests": "100", "x-ratelimit-remaining-requests": "0",
               "x-ratelimit-reset-requests": "20h"}
    inner = ScriptedNext(_answer(headers=headers), "ok", clock=clock)
    _run(stage.handle(_request(), inner))
    assert _run(stage.handle(_request(), inner)).text == "ok"  # 720 s asked > 5 s: no pause
    assert clock.sleeps == [] and inner.call_count == 2


def test_an_ask_at_the_cap_still_pauses_everyone() -> None:
    clock = FakeClock()
    stage = _stage(clock, max_pause_s=5)
    inner = ScriptedNext(RateLimited("429", retry_after=5), "ok", clock=clock)
    with pytest.raises(RateLimited) as info:
        _run(stage.handle(_request(), inner))
    assert info.value.server_asked_s is None
    assert _run(stage.handle(_request(), inner)).text == "ok"
    assert clock.sleeps == [5.0]


def test_a_pause_within_the_cap_is_still_waited_out() -> None:
    clock = FakeClock()
    stage = _stage(clock)
    inner = ScriptedNext(RateLimited("429", retry_after=60), "ok", clock=clock)
    with pytest.raises(RateLimited):
        _run(stage.handle(_request(), inner))
    assert _run(stage.handle(_request(), inner)).text == "ok"
    assert clock.sleeps == [60.0]


def test_a_429_sent_before_the_pause_began_does_not_stack_it() -> None:
    clock = FakeClock()
    stage = _stage(clock)
    released = [asyncio.Event(), asyncio.Event()]

    def provider(i: int) -> Callable[[LLMRequest], Coroutine[Any, Any, LLMResponse]]:
        async def call(request: LLMRequest) -> LLMResponse:
            await released[i].wait()
            raise RateLimited("429", retry_after=1)
        return call

    async def run() -> None:
        first = asyncio.create_task(stage.handle(_request(), provider(0)))
        second = asyncio.create_task(stage.handle(_request(), provider(1)))
        for _ in range(3):
            await asyncio.sleep(0)  # both sent at t = 0
        clock.advance(0.1)
        released[0].set()
        with pytest.raises(RateLimited):
            await first
        assert await stage.store.paused_for("default", clock.now()) == pytest.approx(1.0)
        clock.advance(0.4)
        released[1].set()  # saw the same empty bucket: the pause is not restarted from now
        with pytest.raises(RateLimited):
            await second
        assert await stage.store.paused_for("default", clock.now()) == pytest.approx(0.6)

    _run(run())


def test_a_429_contradicted_by_a_later_request_accepted_pauses_nobody() -> None:
    clock = FakeClock()
    stage = _stage(clock)
    released = asyncio.Event()

    async def refused(request: LLMRequest) -> LLMResponse:
        await released.wait()
        raise RateLimited("429", retry_after=1)

    async def run() -> None:
        first = asyncio.create_task(stage.handle(_request(), refused))
        for _ in range(3):
            await asyncio.sleep(0)  # sent at t = 0
        clock.advance(0.1)
        assert (await stage.handle(_request(), ScriptedNext("ok", clock=clock))).text == "ok"
        released.set()  # the provider accepted a request sent after this one: not out of capacity
        with pytest.raises(RateLimited):
            await first
        assert await stage.store.paused_for("default", clock.now()) == 0
        clock.advance(0.1)  # a 429 for a request sent after the last accepted one still pauses
        with pytest.raises(RateLimited):
            await stage.handle(_request(), ScriptedNext(RateLimited("429", retry_after=1), clock=clock))
        assert await stage.store.paused_for("default", clock.now()) == pytest.approx(1.0)

    _run(run())


def test_a_pause_ends_when_the_provider_accepts_a_request_sent_after_the_429() -> None:
    clock = FakeClock()
    stage = _stage(clock)
    released = [asyncio.Event(), asyncio.Event()]

    async def refused(request: LLMRequest) -> LLMResponse:
        await released[0].wait()
        raise RateLimited("429", retry_after=1)

    async def accepted(request: LLMRequest) -> LLMResponse:
        await released[1].wait()
        return _answer()

    async def run() -> None:
        first = asyncio.create_task(stage.handle(_request(), refused))
        for _ in range(3):
            await asyncio.sleep(0)
        clock.advance(0.05)
        second = asyncio.create_task(stage.handle(_request(), accepted))  # sent after the first
        for _ in range(3):
            await asyncio.sleep(0)
        clock.advance(0.05)
        released[0].set()
        with pytest.raises(RateLimited):
            await first
        assert await stage.store.paused_for("default", clock.now()) == pytest.approx(1.0)
        clock.advance(0.1)
        released[1].set()  # accepted: the provider's bucket was not empty, the pause ends
        assert (await second).text == "ok"
        assert await stage.store.paused_for("default", clock.now()) == 0

    _run(run())


def test_resume_keeps_a_pause_that_a_longer_ask_extended() -> None:
    store = MemoryRateLimitStore()

    async def run() -> None:
        await store.pause("m", 0.0, 1.0)
        await store.resume("m", 0.5, 1.0)
        assert await store.paused_for("m", 0.5) == 0
        await store.pause("m", 1.0, 1.0)
        await store.pause("m", 1.0, 30.0)  # another caller's longer ask
        await store.resume("m", 1.5, 1.0)
        assert await store.paused_for("m", 1.5) == pytest.approx(29.5)

    _run(run())
