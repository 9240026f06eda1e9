"""The route stage: strategies, per-deployment limits and cool-downs, context windows, composition."""

from __future__ import annotations

import asyncio
import logging
import random
from collections import Counter
from typing import Any

import pytest

from llmchain import (
    CallError,
    Chain,
    ConfigError,
    GaveUp,
    LLMRequest,
    LLMResponse,
    ProviderError,
    RateLimited,
    Usage,
)
from llmchain.middleware.route import RouteMiddleware
from llmchain.policies.routing import Candidate, DeploymentState, header_headroom, headroom, order, started
from llmchain.testing import FakeClock
from llmchain.transports.mock import MockReply, MockTransport


def route_chain(deployments: list[dict[str, Any]], transports: dict[str, MockTransport], *,
                clock: FakeClock, outer: list[Any] | None = None, **options: Any) -> Chain:
    stage = RouteMiddleware(RouteMiddleware.Options(deployments=deployments, tokenizer="heuristic", seed=7,
                                                    **options), clock=clock, transports=transports)
    return Chain([*(outer or []), stage], "mock", clock=clock)


def mocks(clock: FakeClock, **scripts: list[Any]) -> dict[str, MockTransport]:
    return {name: MockTransport.scripted(*script, clock=clock, model=f"m-{name}") for name, script in scripts.items()}


def test_weighted_random_spreads_calls_by_weight() -> None:
    clock = FakeClock()
    chain = route_chain([{"name": "a", "weight": 1}, {"name": "b", "weight": 3}], mocks(clock, a=[], b=[]),
                        clock=clock)
    served = Counter(chain.complete(f"q{i}").served_by for i in range(400))
    assert 0.18 < served["a"] / 400 < 0.32 and served["a"] + served["b"] == 400


def test_strategies_rank_by_what_they_say() -> None:
    rng = random.Random(1)
    a = Candidate("a", 1, in_flight=3, latency_s=0.5, headroom=0.9)
    b = Candidate("b", 1, in_flight=1, latency_s=0.1, headroom=0.2)
    new = Candidate("c", 1, in_flight=2, latency_s=None, headroom=0.5)
    assert [c.name for c, _ in order("least_in_flight", [a, b, new], rng)] == ["b", "c", "a"]
    ranked = order("lowest_latency", [a, b, new], rng)
    assert [c.name for c, _ in ranked] == ["c", "b", "a"]  # the unmeasured one gets measured first
    assert ranked[1][1] == "lowest latency (EWMA 100 ms)"
    assert [c.name for c, _ in order("most_headroom", [a, b, new], rng)] == ["a", "c", "b"]
    assert header_headroom({"x-ratelimit-remaining-requests": "10", "x-ratelimit-limit-requests": "100",
                            "x-ratelimit-remaining-tokens": "500", "x-ratelimit-limit-tokens": "1000"}) == 0.1
    busy = started(started(DeploymentState(), 0.0), 0.0)
    assert headroom(busy, 4, 0.0) == 0.5 and headroom(busy, 4, 600.0) > 0.99  # the load decays


def test_least_in_flight_spreads_concurrent_calls() -> None:
    clock = FakeClock()
    slow = [MockReply(text="x", delay_s=1.0)] * 10
    chain = route_chain([{"name": "a"}, {"name": "b"}], mocks(clock, a=slow, b=slow), clock=clock,
                        strategy="least_in_flight")

    async def run() -> Counter[str | None]:
        answers = await asyncio.gather(*(chain.acomplete(f"q{i}") for i in range(6)))
        return Counter(r.served_by for r in answers)

    assert asyncio.run(run()) == {"a": 3, "b": 3}


def test_lowest_latency_prefers_the_faster_deployment_once_measured() -> None:
    clock = FakeClock()
    chain = route_chain([{"name": "slow"}, {"name": "fast"}],
                        mocks(clock, slow=[MockReply(text="s", delay_s=2.0)] * 50,
                              fast=[MockReply(text="f", delay_s=0.1)] * 50),
                        clock=clock, strategy="lowest_latency")
    served = [chain.complete(f"q{i}").served_by for i in range(10)]
    assert sorted(served[:2]) == ["fast", "slow"]  # each measured once
    assert served[2:] == ["fast"] * 8
    assert chain.complete("again").notes["route"]["reason"] == "lowest latency (EWMA 100 ms)"


def test_most_headroom_follows_the_providers_headers() -> None:
    clock = FakeClock()

    def answer(remaining: int) -> LLMResponse:
        return LLMResponse(text="ok", headers={"x-ratelimit-remaining-requests": str(remaining),
                                               "x-ratelimit-limit-requests": "100"})

    chain = route_chain([{"name": "a"}, {"name": "b"}],
                        {"a": MockTransport.scripted(*[answer(5)] * 20, clock=clock),
                         "b": MockTransport.scripted(*[answer(80)] * 20, clock=clock)},
                        clock=clock, strategy="most_headroom")
    served = [chain.complete(f"q{i}").served_by for i in range(8)]
    assert served[2:] == ["b"] * 6  # once both reported, the one with room left wins


def test_a_failing_deployment_is_skipped_until_its_cooldown_ends_and_others_carry_on() -> None:
    clock = FakeClock()
    transports = mocks(clock, bad=[MockReply(error="server_error")] + ["recovered"] * 10, good=[])
    chain = route_chain([{"name": "bad", "weight": 100}, {"name": "good", "weight": 0.01}], transports,
                        clock=clock, cooldown_s=30)
    first = chain.complete("q0")
    assert first.served_by == "good" and first.notes["route"]["skipped"] == ["bad: ProviderError"]
    assert [chain.complete(f"q{i}").served_by for i in range(5)] == ["good"] * 5  # bad is cooling down
    assert len(transports["bad"].calls) == 1
    clock.advance(31)
    assert chain.complete("later").served_by == "bad"  # recovered: its weight wins again


def test_a_429_cools_that_deployment_for_retry_after_only() -> None:
    clock = FakeClock()
    transports = mocks(clock, a=[RateLimited("429", retry_after=10.0)], b=[])
    chain = route_chain([{"name": "a", "weight": 100}, {"name": "b", "weight": 0.01}], transports, clock=clock)
    assert chain.complete("q").served_by == "b"
    clock.advance(5)
    assert chain.complete("q").served_by == "b"
    clock.advance(6)
    assert chain.complete("q").served_by == "a"


def test_deployment_limits_spill_over_and_then_wait_for_the_earliest_slot() -> None:
    clock = FakeClock()
    chain = route_chain([{"name": "a", "rpm": 2, "weight": 100}, {"name": "b", "rpm": 1, "weight": 0.01}],
                        mocks(clock, a=[], b=[]), clock=clock)
    served = [chain.complete(f"q{i}", timeout_s=120).served_by for i in range(2)]
    # a's limiter paces (rpm 2: its next slot is 30 s away): b takes the overflow, no 429 anywhere
    assert served == ["a", "b"] and clock.slept == 0
    with pytest.raises(RateLimited, match="every deployment is at its limit") as info:
        chain.complete("q", timeout_s=5)  # the next slot is 30 s away
    assert info.value.status_code is None and info.value.retry_after == pytest.approx(30.0)
    assert clock.slept == 0
    assert chain.complete("q", timeout_s=120).served_by == "a"
    assert clock.slept == pytest.approx(30.0)  # it waited for the earliest slot instead


def test_context_windows_steer_calls_and_context_length_exceeded_moves_to_a_larger_window() -> None:
    clock = FakeClock()
    too_long = ProviderError("This model's maximum context length is 8192 tokens", status_code=400,
                             body='{"error": {"code": "context_length_exceeded"}}')
    transports = mocks(clock, small=[too_long] + ["s"] * 5, big=[])
    chain = route_chain([{"name": "small", "context_window": 200, "weight": 100},
                         {"name": "big", "context_window": 100_000, "weight": 0.01}], transports, clock=clock)
    assert chain.complete("x" * 2000, max_tokens=10).served_by == "big"  # ~500 tokens: not sent to small
    assert len(transports["small"].calls) == 0
    moved = chain.complete("short", max_tokens=10)  # fits by estimate, but small says no
    assert moved.served_by == "big" and moved.notes["route"]["skipped"] == ["small: ProviderError"]
    assert chain.complete("short", max_tokens=10).served_by == "small"  # not a health problem: no cool-down
    with pytest.raises(ProviderError, match="no deployment's context window holds this call"):
        chain.complete("x" * 800_000)


def test_a_bad_request_is_not_tried_elsewhere() -> None:
    clock = FakeClock()
    transports = mocks(clock, a=[MockReply(error="bad_request")], b=[MockReply(error="bad_request")])
    chain = route_chain([{"name": "a"}, {"name": "b"}], transports, clock=clock)
    with pytest.raises(ProviderError) as info:
        chain.complete("q")
    assert info.value.status_code == 400
    assert len(transports["a"].calls) + len(transports["b"].calls) == 1


def test_when_every_deployment_fails_the_error_lists_each() -> None:
    clock = FakeClock()
    transports = mocks(clock, a=[MockReply(error="server_error")], b=[MockReply(error="reset")])
    chain = route_chain([{"name": "a"}, {"name": "b"}], transports, clock=clock)
    with pytest.raises(GaveUp) as info:
        chain.complete("q")
    assert sorted(type(e).__name__ for e in info.value.errors) == ["ProviderError", "TransportError"]
    assert info.value.retryable


def test_one_failure_while_the_others_cool_down_is_a_gave_up_not_that_deployments_own_error() -> None:
    """A revoked key's 401 while the other deployment cools past the deadline: a fallback stage
    must see "no deployment could answer", not a 401 it (rightly) does not fall back on."""
    clock = FakeClock()
    transports = mocks(clock, a=[ProviderError("503", status_code=503, retry_after=60.0)] + ["a"] * 3,
                       b=[MockReply(error="auth")] * 3)
    chain = route_chain([{"name": "a", "weight": 100}, {"name": "b", "weight": 0.01}], transports, clock=clock)
    with pytest.raises(GaveUp):
        chain.complete("q", timeout_s=5)  # a: 503 and cooling for 60 s; b: 401
    clock.advance(6)  # b's cool-down (5 s) is over, a's is not
    with pytest.raises(GaveUp, match=r"no deployment could answer \(b: ProviderError, a: cooling down\)") as info:
        chain.complete("q", timeout_s=5)  # a still cooling, past the deadline; b: 401
    assert [e.status_code for e in info.value.errors] == [401]
    assert not info.value.retryable  # a 401 will not heal by retrying
    assert clock.slept == 0


def test_a_single_deployments_own_error_comes_through_unwrapped() -> None:
    clock = FakeClock()
    chain = route_chain([{"name": "only"}], mocks(clock, only=[MockReply(error="auth")]), clock=clock)
    with pytest.raises(ProviderError) as info:
        chain.complete("q")
    assert type(info.value) is ProviderError and info.value.status_code == 401


def test_route_composes_with_retry_fallback_cache_and_log(caplog: pytest.LogCaptureFixture) -> None:
    clock = FakeClock()
    transports = mocks(clock, a=[MockReply(error="server_error")] * 3, b=[MockReply(error="overloaded")] * 3)
    outer = [{"use": "log"}, {"use": "cache"},
             {"use": "fallback", "alternatives": [{"transport": {"use": "mock", "model": "backup"},
                                                   "name": "backup"}]},
             {"use": "retry", "max_attempts": 2, "base_s": 0.1}]
    chain = route_chain([{"name": "a"}, {"name": "b"}], transports, clock=clock, outer=outer, cooldown_s=1)
    with caplog.at_level(logging.INFO, "llmchain"):
        answer = chain.complete("q")
    assert answer.served_by == "backup" and answer.text == "q"
    # retry re-routed: each deployment failed on both attempts (cool-downs were over by then)
    assert len(transports["a"].calls) + len(transports["b"].calls) >= 3
    assert chain.complete("q").cache is not None and chain.complete("q").cache.status == "hit"  # type: ignore[union-attr]
    ok = route_chain([{"name": "a"}], mocks(clock, a=[]), clock=clock, outer=[{"use": "log"}])
    with caplog.at_level(logging.INFO, "llmchain"):
        ok.complete("hello")
    line = caplog.records[-1].__dict__
    assert line["event"] == "llm.call" and line["transport"] == "a"  # the deployment that answered
    assert line["notes"]["route"]["reason"].startswith("weighted random")  # and why it was chosen


def test_a_deployment_without_a_transport_uses_the_chains_through_the_inner_stages() -> None:
    clock = FakeClock()
    inner = MockTransport.scripted(MockReply(error="server_error"), "from the chain", clock=clock)
    own = mocks(clock, other=[])
    stage = RouteMiddleware(RouteMiddleware.Options(deployments=[{"name": "main", "weight": 100},  # type: ignore[list-item]
                                                                 {"name": "other", "weight": 0.01}], seed=1),
                            clock=clock, transports=own)
    chain = Chain([stage, {"use": "retry", "base_s": 0.01}], inner, clock=clock)
    answer = chain.complete("q")
    assert answer.served_by == "main" and answer.text == "from the chain"  # retry inside route applied
    assert len(inner.calls) == 2 and own["other"].calls == []


@pytest.mark.parametrize(("deployments", "problem"), [
    ([], "deployments"),
    ([{"name": "a"}, {"name": "a"}], "distinct"),
    ([{"name": "a", "transport": {"use": "nope"}}], "route deployment 'a'.*unknown transport 'nope'"),
    ([{"name": "a", "weight": 0}], "weight"),
    ([{"name": "a", "breaker": {"min_calls": 0}}], "min_calls"),
    ([{"name": "a", "transport": {"use": "openai", "api_key": "sk-not-real"}}], "literal secret"),
])
def test_bad_route_config_is_a_config_error(deployments: list[dict[str, Any]], problem: str) -> None:
    with pytest.raises(ConfigError, match=problem):
        Chain([{"use": "route", "deployments": deployments}], "mock")


def test_embeddings_route_like_completions() -> None:
    clock = FakeClock()
    transports = mocks(clock, a=[MockReply(error="server_error")], b=[])
    chain = route_chain([{"name": "a", "weight": 100}, {"name": "b", "weight": 0.01}], transports, clock=clock)

    async def inner(request: LLMRequest) -> LLMResponse:  # pragma: no cover - route ignores it
        raise AssertionError

    result = chain.embed(["one", "two"])
    assert len(result.vectors) == 2 and result.served_by == ["b"]
    assert transports["b"].calls[0].embed_input == ("one", "two")
    del inner


def test_usage_and_errors_are_typed() -> None:
    assert issubclass(RateLimited, CallError) and Usage().total_tokens == 0


def test_a_call_too_large_for_one_deployments_tpm_goes_to_another_without_waiting() -> None:
    clock = FakeClock()
    chain = route_chain([{"name": "small", "tpm": 50, "weight": 100}, {"name": "big", "weight": 0.01}],
                        mocks(clock, small=[], big=[]), clock=clock)
    answer = chain.complete("x" * 400, max_tokens=10)  # ~117 tokens: more than small's whole tpm
    assert answer.served_by == "big" and clock.slept == 0
    assert chain.complete("hi", max_tokens=10).served_by == "small"  # not cooled down for it


def test_each_deployment_has_its_own_breaker() -> None:
    clock = FakeClock()
    transports = mocks(clock, bad=[MockReply(error="server_error")] * 50, good=[])
    chain = route_chain([{"name": "bad", "weight": 100, "breaker": {"min_calls": 2, "window_calls": 2}},
                         {"name": "good", "weight": 0.01}], transports, clock=clock, cooldown_s=0.5)
    for i in range(6):
        assert chain.complete(f"q{i}").served_by == "good"
        clock.advance(1)  # past the cool-down: bad is asked again until its breaker opens
    stage = chain.stages[0][1]
    assert isinstance(stage, RouteMiddleware)
    bad_breaker, good_breaker = (stage.deployments[n].stages[0] for n in ("bad", "good"))
    assert asyncio.run(bad_breaker.store.state("default", clock.now(), bad_breaker.config)) == "open"  # type: ignore[attr-defined]
    assert asyncio.run(good_breaker.store.state("default", clock.now(), good_breaker.config)) == "closed"  # type: ignore[attr-defined]
    assert len(transports["bad"].calls) == 2  # once open, the breaker answered for it
