"""The circuit_breaker stage: opens on failures, fails fast, probes, closes."""

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
    Message,
    ParseError,
    ProviderError,
    RateLimited,
    TimeoutExceeded,
    TransportError,
)
from llmchain.middleware.circuit_breaker import CircuitBreakerMiddleware, counts_as_failure
from llmchain.stores.base import BreakerStore
from llmchain.stores.memory import MemoryBreakerStore
from llmchain.testing import FakeClock, MockTransport
from llmchain.testing.scripted import Hang, ScriptedNext


def _request(model: str | None = None) -> LLMRequest:
    return LLMRequest(messages=(Message(role="user", content="hi"),), model=model)


def _run(coro: Coroutine[Any, Any, Any]) -> Any:
    return asyncio.run(coro)


def _breaker(clock: FakeClock, **options: Any) -> CircuitBreakerMiddleware:
    options.setdefault("min_calls", 4)
    options.setdefault("window_calls", 10)
    return CircuitBreakerMiddleware(CircuitBreakerMiddleware.Options(**options), clock=clock)


def _call(stage: CircuitBreakerMiddleware, inner: ScriptedNext, model: str | None = None) -> str:
    try:
        _run(stage.handle(_request(model), inner))
    except CallError as exc:
        return type(exc).__name__
    return "ok"


def _503() -> ProviderError:
    return ProviderError("HTTP 503", status_code=503)


def test_opens_after_enough_failures_then_fails_fast_without_calling() -> None:
    clock = FakeClock()
    stage = _breaker(clock, failure_rate=0.5, open_s=30)
    inner = ScriptedNext("ok", _503(), "ok", _503(), "ok", clock=clock)
    assert [_call(stage, inner) for _ in range(4)] == ["ok", "ProviderError", "ok", "ProviderError"]
    clock.advance(10)
    with pytest.raises(CircuitOpen) as info:
        _run(stage.handle(_request(), inner))
    assert inner.call_count == 4
    assert info.value.retry_after == 20.0 and not info.value.retryable
    assert "open" in info.value.message


def test_after_open_s_one_probe_goes_through_and_closes_it() -> None:
    clock = FakeClock()
    events: list[Event] = []
    stage = _breaker(clock, failure_rate=1.0, min_calls=1, window_calls=1, open_s=5)
    inner = ScriptedNext(TransportError("reset"), "ok", clock=clock)
    assert _call(stage, inner) == "TransportError"
    clock.advance(5)

    async def probe_and_a_rival() -> list[str]:
        from llmchain._events import CallTrace, current_call

        current_call.set(CallTrace("r", (events.append,), clock.wall))
        slow_inner = ScriptedNext(Hang(), clock=clock)
        probe = asyncio.create_task(stage.handle(_request(), slow_inner))
        await asyncio.sleep(0)
        rival = await asyncio.gather(stage.handle(_request(), inner), return_exceptions=True)
        probe.cancel()
        await asyncio.gather(probe, return_exceptions=True)
        return [type(r).__name__ for r in rival]

    assert _run(probe_and_a_rival()) == ["CircuitOpen"]  # one probe at a time
    # the cancelled probe said nothing about health: the next caller probes, succeeds, closes
    assert _call(stage, inner) == "ok"
    assert _run(stage.store.state("default", clock.now(), stage.config)) == "closed"
    assert [e.data["state"] for e in events if e.kind == "breaker_state"] == ["half_open"]


def test_a_failed_probe_opens_it_again() -> None:
    clock = FakeClock()
    stage = _breaker(clock, failure_rate=1.0, min_calls=1, window_calls=1, open_s=5)
    inner = ScriptedNext(TimeoutExceeded("slow"), TimeoutExceeded("slow"), "ok", clock=clock)
    _call(stage, inner)
    clock.advance(5)
    assert _call(stage, inner) == "TimeoutExceeded"
    assert _call(stage, inner) == "CircuitOpen"
    clock.advance(5)
    assert _call(stage, inner) == "ok"


@pytest.mark.parametrize(("error", "verdict"), [
    (TransportError("reset"), True),
    (TimeoutExceeded("slow", phase="deadline"), True),
    (ProviderError("HTTP 500", status_code=500), True),
    (ProviderError("garbled body"), True),
    (GaveUp("retries", errors=[ProviderError("HTTP 502", status_code=502)]), True),
    (RateLimited("429"), None),
    (CircuitOpen("inner breaker"), None),
    (CallError("unexpected"), None),
    (ProviderError("bad request", status_code=400), False),
    (ParseError("not json"), False),
])
def test_what_counts_as_a_failure(error: CallError, verdict: bool | None) -> None:
    assert counts_as_failure(error) is verdict


def test_429s_and_client_errors_never_open_it() -> None:
    clock = FakeClock()
    stage = _breaker(clock, failure_rate=0.5, min_calls=2, window_calls=2)
    inner = ScriptedNext(RateLimited("429"), clock=clock)
    assert {_call(stage, inner) for _ in range(10)} == {"RateLimited"}
    inner = ScriptedNext(ProviderError("bad", status_code=400), clock=clock)
    assert {_call(stage, inner) for _ in range(10)} == {"ProviderError"}


def test_each_model_has_its_own_breaker_unless_global() -> None:
    clock = FakeClock()
    stage = _breaker(clock, failure_rate=1.0, min_calls=1, window_calls=1)
    inner = ScriptedNext(_503(), "ok", clock=clock)
    _call(stage, inner, model="a")
    assert _call(stage, inner, model="a") == "CircuitOpen"
    assert _call(stage, inner, model="b") == "ok"
    one = _breaker(clock, failure_rate=1.0, min_calls=1, window_calls=1, key="global")
    inner = ScriptedNext(_503(), "ok", clock=clock)
    _call(one, inner, model="a")
    assert _call(one, inner, model="b") == "CircuitOpen"


def test_through_a_chain_state_changes_are_reported_and_nothing_is_sent_while_open() -> None:
    clock = FakeClock()
    events: list[Event] = []
    transport = MockTransport.scripted(_503(), _503(), clock=clock)
    chain = Chain([CircuitBreakerMiddleware(CircuitBreakerMiddleware.Options(
        min_calls=2, window_calls=2, open_s=1), clock=clock)],
        transport, clock=clock, observers=[events.append])
    for _ in range(2):
        with pytest.raises(ProviderError):
            chain.complete("hi")
    with pytest.raises(CircuitOpen) as info:
        chain.complete("hi")
    assert len(info.value.attempts) == 0 and len(transport.calls) == 2  # nothing was sent
    clock.advance(1)
    assert chain.complete("hi").text == "hi"
    assert [e.data["state"] for e in events if e.kind == "breaker_state"] == ["open", "half_open", "closed"]


def test_options_are_checked_when_the_chain_is_built() -> None:
    with pytest.raises(ConfigError, match="min_calls"):
        Chain.from_config({"stages": [{"use": "circuit_breaker", "min_calls": 20, "window_calls": 10}]})
    chain = Chain.from_config({"stages": [{"use": "circuit_breaker", "open_s": 10}]})
    stage = chain.stages[0][1]
    assert isinstance(stage, CircuitBreakerMiddleware) and stage.config.open_s == 10


def test_shared_state_and_the_store_protocol() -> None:
    clock = FakeClock()
    a = _breaker(clock, share="test-breaker-shared")
    b = _breaker(clock, share="test-breaker-shared")
    assert a.store is b.store and isinstance(a.store, BreakerStore)
    assert isinstance(MemoryBreakerStore(), BreakerStore)
