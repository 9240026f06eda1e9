"""Learned limits and pacing against a simulated provider bucket on the fake clock.

The provider is ``testing._limits.ServerLimits`` (the fault server's own limits) driven by the
FakeClock, so these runs take no real time: 1 s windows, OpenAI's per-minute semantics and
Azure's per-minute limits enforced per second.
"""

from __future__ import annotations

import asyncio
import logging
import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from llmchain import LLMRequest, LLMResponse, Message, RateLimited, Usage
from llmchain.middleware.rate_limit import RateLimitMiddleware
from llmchain.policies.admission import AdmissionLog, RateLimits
from llmchain.testing import FakeClock
from llmchain.testing._limits import MinuteBucket, ServerLimits


class Provider:
    """A provider answering like the fault server's limits, on the fake clock."""

    def __init__(self, clock: FakeClock, limits: ServerLimits, latency_s: float = 0.005) -> None:
        self.clock, self.limits, self.latency_s = clock, limits, latency_s
        self.ok = self.refused = 0

    async def __call__(self, request: LLMRequest) -> LLMResponse:
        self.clock.advance(self.latency_s)
        headers, refused, wait = self.limits.check("openai", 0)
        if refused:
            self.refused += 1
            error = RateLimited("HTTP 429", retry_after=math.ceil(wait * 1000) / 1000)
            error.headers = dict(headers)
            raise error
        self.ok += 1
        return LLMResponse(text="ok", usage=Usage(), headers=dict(headers))


def _drive(stage: RateLimitMiddleware, provider: Provider, calls: int) -> list[float]:
    """Sequential calls (failures included); returns the time of every success."""
    done: list[float] = []

    async def run() -> None:
        request = LLMRequest(messages=(Message(role="user", content="hi"),))
        for _ in range(calls):
            try:
                await stage.handle(request, provider)
                done.append(provider.clock.now())
            except RateLimited:
                pass

    asyncio.run(run())
    return done


def _steady_goodput(done: list[float]) -> float:
    """Successes per second over the second half of the run (after the initial full bucket)."""
    half = done[len(done) // 2:]
    return (len(half) - 1) / (half[-1] - half[0])


@pytest.mark.parametrize(("limit", "window_s", "per_second"), [
    (50, 1.0, False),     # the fault server: 50 requests per 1 s window
    (500, 60.0, False),   # OpenAI: 500 requests per minute
    (600, 60.0, True),    # Azure: 600 per minute, enforced per second (10 per second)
])
@pytest.mark.parametrize("configured_rpm", [None, 100_000])
def test_learned_limits_reach_the_providers_rate_without_429s(
        limit: int, window_s: float, per_second: bool, configured_rpm: int | None) -> None:
    clock = FakeClock()
    provider = Provider(clock, ServerLimits(limit, None, window_s=window_s, per_second=per_second,
                                            now=clock.now))
    stage = RateLimitMiddleware(RateLimitMiddleware.Options(rpm=configured_rpm), clock=clock)
    calls = max(600, 3 * limit)
    done = _drive(stage, provider, calls)
    rate = limit / window_s
    assert _steady_goodput(done) >= 0.95 * rate  # goodput >= 95 % of the limit
    assert provider.refused / provider.ok <= 0.05  # <= 0.05 server 429s per success


def test_configured_limits_can_be_made_authoritative() -> None:
    clock = FakeClock()
    provider = Provider(clock, ServerLimits(50, None, window_s=1.0, now=clock.now))
    stage = RateLimitMiddleware(RateLimitMiddleware.Options(rpm=600, limits="configured"), clock=clock)
    done = _drive(stage, provider, 200)
    assert stage.limits_for("default") == RateLimits(600, None, 60.0, 1.0)
    assert _steady_goodput(done) == pytest.approx(10.0, rel=0.02)  # 600/min, not the learned 50/s


def test_headers_contradicting_themselves_or_what_was_accepted_are_ignored_and_logged_once(
        caplog: pytest.LogCaptureFixture) -> None:
    clock = FakeClock()
    stage = RateLimitMiddleware(clock=clock)
    request = LLMRequest(messages=(Message(role="user", content="hi"),))

    def answer(remaining: int, limit: int = 10, reset: str = "60s") -> LLMResponse:
        return LLMResponse(text="ok", usage=Usage(), headers={
            "x-ratelimit-limit-requests": str(limit), "x-ratelimit-remaining-requests": str(remaining),
            "x-ratelimit-reset-requests": reset})

    async def run() -> None:
        for _ in range(2):  # remaining above the limit: nonsense, twice
            await stage.handle(request, lambda r: _async(answer(remaining=50)))
        assert stage.limits_for("default") == stage._limits  # nothing learned from it
        for _ in range(30):  # the server accepts 30 calls in 3 s (its headers say nothing of rates)
            clock.advance(0.1)
            await stage.handle(request, lambda r: _async(answer(remaining=100, limit=100)))
        await stage.handle(request, lambda r: _async(answer(remaining=5)))
        # ...then its headers imply 4 per 60 s: the learned rate stays at what was accepted
        learned = stage.limits_for("default")
        assert learned.requests is not None and learned.requests / learned.period_s >= 6

    asyncio.run(run())
    warnings = [r.getMessage() for r in caplog.records if r.name == "llmchain.rate_limit"]
    assert len([w for w in warnings if "above limit" in w]) == 1  # logged once
    assert len([w for w in warnings if "server accepted" in w]) == 1


async def _async(value: LLMResponse) -> LLMResponse:
    return value


@settings(max_examples=150, deadline=None)
@given(limit=st.integers(1, 600), period=st.sampled_from([1.0, 10.0, 60.0]),
       burst_s=st.sampled_from([0.1, 1.0, 5.0]),
       gaps=st.lists(st.floats(0, 2, allow_nan=False), min_size=1, max_size=200))
def test_paced_admissions_never_overflow_a_bucket_of_burst_size_refilling_at_the_rate(
        limit: int, period: float, burst_s: float, gaps: list[float]) -> None:
    limits = RateLimits(limit, None, period, burst_s)
    log = AdmissionLog()
    burst = limits.burst(limit)
    level, last = burst, 0.0  # the provider's bucket, enforcing the limit over burst_s (Azure)
    now = 0.0
    for gap in gaps:
        now += gap
        res = log.reserve(now, 1, 0, limits, None)
        assert res.admitted
        at = now + res.wait_s
        level = min(burst, level + (at - last) * limit / period)
        last = at
        assert level >= 1 - 1e-6  # the bucket always holds the unit: never a 429
        level -= 1


def test_a_burst_of_a_minutes_quota_is_paced_not_sent_in_one_second() -> None:
    clock = FakeClock()
    stage = RateLimitMiddleware(RateLimitMiddleware.Options(rpm=600), clock=clock)
    bucket = MinuteBucket(600, capacity=10, now=clock.now)  # Azure: 10 per second
    sent: list[float] = []

    async def provider(request: LLMRequest) -> LLMResponse:
        assert bucket.take(1) == 0, "the per-second bucket refused"
        sent.append(clock.now())
        return LLMResponse(text="ok", usage=Usage())

    async def run() -> None:
        for _ in range(100):
            await stage.handle(LLMRequest(messages=(Message(role="user", content="hi"),)), provider)

    asyncio.run(run())
    assert sent[-1] - sent[0] == pytest.approx(9.0)  # 10 at once, then one every 0.1 s
    assert sum(1 for t in sent if t - sent[0] < 1.0) <= 20


def test_without_pacing_the_old_window_semantics_hold() -> None:
    clock = FakeClock()
    stage = RateLimitMiddleware(RateLimitMiddleware.Options(rpm=600, burst_s=None), clock=clock)

    async def run() -> None:
        for _ in range(600):
            await stage.handle(LLMRequest(messages=(Message(role="user", content="hi"),)),
                               lambda r: _async(LLMResponse(text="ok", usage=Usage())))

    asyncio.run(run())
    assert clock.sleeps == []  # a whole minute's quota at once


logging.getLogger("llmchain.rate_limit").propagate = True


def test_a_daily_reset_is_not_learned_as_a_rate() -> None:
    clock = FakeClock()
    stage = RateLimitMiddleware(clock=clock)
    limited = RateLimited("429", retry_after=86400)
    limited.headers = {"x-ratelimit-limit-requests": "60", "x-ratelimit-remaining-requests": "0",
                       "x-ratelimit-reset-requests": "24h"}
    request = LLMRequest(messages=(Message(role="user", content="hi"),))

    async def run() -> None:
        with pytest.raises(RateLimited):
            await stage.handle(request, lambda r: _raise(limited))
        assert stage.limits_for("default") == stage._limits  # 60 per day is not a pace
        clock.advance(60)  # (a 24 h ask pauses nobody; the time passing changes nothing)
        for _ in range(100):  # and nothing holds the next calls back for a day
            await stage.handle(request, lambda r: _async(LLMResponse(text="ok", usage=Usage())))
        assert clock.sleeps == []

    asyncio.run(run())


async def _raise(error: Exception) -> LLMResponse:
    raise error


def test_calls_in_flight_when_limits_are_first_learned_are_booked() -> None:
    clock = FakeClock()
    stage = RateLimitMiddleware(clock=clock)
    release = asyncio.Event()
    headers = {"x-ratelimit-limit-requests": "10", "x-ratelimit-remaining-requests": "4",
               "x-ratelimit-reset-requests": "600ms"}
    request = LLMRequest(messages=(Message(role="user", content="hi"),))

    async def slow(r: LLMRequest) -> LLMResponse:
        await release.wait()
        return LLMResponse(text="ok", usage=Usage())

    async def run() -> None:
        in_flight = [asyncio.ensure_future(stage.handle(request, slow)) for _ in range(4)]
        await asyncio.sleep(0)  # the four are sent, unbooked: no limit is known yet
        await stage.handle(request, lambda r: _async(LLMResponse(text="ok", usage=Usage(),
                                                                 headers=headers)))
        learned = stage.limits_for("default")
        assert (learned.requests, learned.period_s) == (10, pytest.approx(1.0))  # 6 used in 0.6 s
        assert stage.store._logs["default"].requests == 5  # type: ignore[attr-defined]
        release.set()
        await asyncio.gather(*in_flight)

    asyncio.run(run())
