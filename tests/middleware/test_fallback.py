"""The fallback stage: alternative models and transports, tried on listed errors only."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any

import pytest

from llmchain import (
    CallError,
    Chain,
    CircuitOpen,
    ConfigError,
    Event,
    GaveUp,
    LLMRequest,
    LLMResponse,
    Message,
    ProviderError,
    RateLimited,
    TimeoutExceeded,
)
from llmchain.middleware.circuit_breaker import CircuitBreakerMiddleware
from llmchain.middleware.fallback import FallbackMiddleware, error_kinds
from llmchain.middleware.rate_limit import RateLimitMiddleware
from llmchain.middleware.retry import RetryMiddleware
from llmchain.middleware.timeout import TimeoutMiddleware
from llmchain.testing import FakeClock, MockTransport
from llmchain.testing.scripted import ScriptedNext


def _request(deadline: float | None = None) -> LLMRequest:
    return LLMRequest(messages=(Message(role="user", content="hi"),), model="primary", deadline=deadline)


def _run(coro: Coroutine[Any, Any, Any]) -> Any:
    return asyncio.run(coro)


def _fallback(clock: FakeClock, **options: Any) -> FallbackMiddleware:
    return FallbackMiddleware(FallbackMiddleware.Options(**options), clock=clock)


def _answer(request: LLMRequest) -> LLMResponse:
    return LLMResponse(text=f"from {request.model}", served_by="openai:primary")


def test_a_healthy_primary_is_returned_untouched() -> None:
    clock = FakeClock()
    answer = LLMResponse(text="primary")
    inner = ScriptedNext(answer, clock=clock)
    assert _run(_fallback(clock, alternatives=["b"]).handle(_request(), inner)) is answer
    assert inner.call_count == 1


def test_an_open_circuit_moves_on_to_the_next_model_and_says_who_served() -> None:
    clock = FakeClock()
    inner = ScriptedNext(CircuitOpen("open"), _answer, clock=clock)
    response = _run(_fallback(clock, alternatives=["gpt-b"]).handle(_request(), inner))
    assert [r.model for r in inner.calls] == ["primary", "gpt-b"]
    assert response.text == "from gpt-b" and response.served_by == "openai:gpt-b"
    assert response.notes["fallback"] == {"position": 1, "served_by": "openai:gpt-b",
                                          "failed": ["primary: CircuitOpen"]}


@pytest.mark.parametrize("error", [
    ProviderError("bad request", status_code=400),
    ProviderError("unauthorized", status_code=401),
    CallError("something else"),
])
def test_errors_not_listed_are_raised_without_trying_alternatives(error: CallError) -> None:
    clock = FakeClock()
    inner = ScriptedNext(error, _answer, clock=clock)
    with pytest.raises(CallError) as info:
        _run(_fallback(clock, alternatives=["b"]).handle(_request(), inner))
    assert info.value is error and inner.call_count == 1


def test_a_gave_up_matches_what_its_last_error_matches() -> None:
    after_5xx = GaveUp("retries", errors=[ProviderError("HTTP 503", status_code=503)])
    assert {"gave_up", "server_error", "any"} <= error_kinds(after_5xx)
    assert error_kinds(GaveUp("no errors")) == {"any", "gave_up"}
    assert "rate_limited" in error_kinds(RateLimited("local", status_code=None))
    assert "timeout" in error_kinds(TimeoutExceeded("slow"))
    clock = FakeClock()
    inner = ScriptedNext(after_5xx, _answer, clock=clock)
    assert _run(_fallback(clock, alternatives=["b"]).handle(_request(), inner)).text == "from b"
    only_open = _fallback(clock, alternatives=["b"], on=["circuit_open"])
    with pytest.raises(GaveUp):
        _run(only_open.handle(_request(), ScriptedNext(after_5xx, clock=clock)))


def test_when_everything_fails_gave_up_carries_each_error() -> None:
    clock = FakeClock()
    errors = [CircuitOpen("open"), RateLimited("429"), ProviderError("HTTP 500", status_code=500)]
    inner = ScriptedNext(*errors, clock=clock)
    with pytest.raises(GaveUp) as info:
        _run(_fallback(clock, alternatives=["b", "c"]).handle(_request(), inner))
    assert info.value.errors == errors and info.value.__cause__ is errors[-1]
    assert "b: RateLimited" in info.value.message and "c: ProviderError" in info.value.message


def test_no_alternative_is_tried_once_the_deadline_has_passed() -> None:
    clock = FakeClock()
    timeout = TimeoutExceeded("deadline", phase="deadline")

    async def slow_then_fail(request: LLMRequest) -> LLMResponse:
        await clock.sleep(10)
        raise timeout

    inner = ScriptedNext(slow_then_fail, _answer, clock=clock, enforce_deadline=False)
    with pytest.raises(TimeoutExceeded) as info:
        _run(_fallback(clock, alternatives=["b"]).handle(_request(clock.now() + 5), inner))
    assert info.value is timeout and inner.call_count == 1


def test_an_alternative_transport_from_config_runs_through_its_own_stages() -> None:
    clock = FakeClock()
    events: list[Event] = []
    primary = MockTransport.scripted(ProviderError("HTTP 503", status_code=503), cycle=True, clock=clock)
    chain = Chain(
        [
            {"use": "fallback", "alternatives": [
                {"transport": {"use": "mock", "replies": [{"error": "server_error"}, "from the backup"],
                               "model": "backup-1"},
                 "stages": [{"use": "retry", "base_s": 0, "budget_ratio": None}]},
            ]},
            RetryMiddleware(RetryMiddleware.Options(max_attempts=2, base_s=0), clock=clock),
        ],
        primary, clock=clock, observers=[events.append],
    )
    response = chain.complete("hi")
    assert response.text == "from the backup" and response.served_by == "mock:backup-1"
    assert [(a.served_by, a.status_code) for a in response.attempts] == [
        ("mock:mock-1", 503), ("mock:mock-1", 503), ("mock:backup-1", 503), ("mock:backup-1", None)]
    assert [e.data["to"] for e in events if e.kind == "fallback"] == ["mock:backup-1"]
    stage = chain.stages[0][1]
    backup = stage._routes[0].transport  # type: ignore[attr-defined]
    chain.close()
    assert backup.closed and primary.closed


def test_transports_passed_in_code() -> None:
    clock = FakeClock()
    backup = MockTransport.scripted("from code", clock=clock, model="code-1")
    stage = FallbackMiddleware(clock=clock, transports=[backup])
    inner = ScriptedNext(RateLimited("429"), clock=clock)
    response = _run(stage.handle(_request(), inner))
    assert response.text == "from code" and response.served_by == "mock:code-1"
    assert backup.calls[0].model is None  # the primary's model means nothing to another transport


def test_bad_alternatives_fail_when_the_chain_is_built() -> None:
    with pytest.raises(ConfigError, match="unknown transport 'nope'"):
        Chain.from_config({"stages": [{"use": "fallback", "alternatives": [{"transport": {"use": "nope"}}]}]})
    with pytest.raises(ConfigError, match="needs a model, a transport"):
        Chain.from_config({"stages": [{"use": "fallback", "alternatives": [{"name": "x"}]}]})
    with pytest.raises(ConfigError, match="on"):
        Chain.from_config({"stages": [{"use": "fallback", "on": ["sometimes"]}]})


def test_full_resilience_chain_falls_back_when_the_primary_model_is_down() -> None:
    clock = FakeClock()

    def by_model(request: LLMRequest) -> Any:
        return ProviderError("HTTP 503", status_code=503) if request.model == "primary" else "backup answer"

    transport = MockTransport.scripted(*([by_model] * 50), clock=clock)
    chain = Chain([
        FallbackMiddleware(FallbackMiddleware.Options(alternatives=["backup"]), clock=clock),
        RetryMiddleware(RetryMiddleware.Options(max_attempts=3), clock=clock),
        CircuitBreakerMiddleware(CircuitBreakerMiddleware.Options(min_calls=3, window_calls=3), clock=clock),
        RateLimitMiddleware(RateLimitMiddleware.Options(rpm=100, tokenizer="heuristic"), clock=clock),
        TimeoutMiddleware(TimeoutMiddleware.Options(attempt_s=10), clock=clock),
    ], transport, clock=clock, timeout_s=60)
    first = chain.complete("hi", model="primary")
    assert first.text == "backup answer" and first.served_by == "mock:backup"
    assert [a.status_code for a in first.attempts] == [503, 503, 503, None]
    assert [a.served_by for a in first.attempts] == ["mock:primary"] * 3 + ["mock:backup"]
    second = chain.complete("hi", model="primary")  # the breaker is open now: no call to primary
    assert second.served_by == "mock:backup"
    assert [a.served_by for a in second.attempts] == ["mock:backup"]
    assert [r.model for r in transport.calls[-1:]] == ["backup"]
