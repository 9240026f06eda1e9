"""The chain engine: order, zero/one/many calls inward, errors, deadlines, lifecycle."""

from __future__ import annotations

import asyncio

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import BaseModel

from llmchain import (
    CallError,
    Chain,
    ConfigError,
    LLMRequest,
    LLMResponse,
    Next,
    OutputInvalid,
    ParseError,
    ProviderError,
    RateLimited,
    TimeoutExceeded,
    TransportError,
)
from llmchain.testing import FakeClock, MockReply, MockTransport
from tests.core import stages as test_stages


@pytest.mark.usefixtures("test_plugin")
@settings(max_examples=40, deadline=None)
@given(labels=st.lists(st.text(alphabet="abcdefgh", min_size=1, max_size=4), max_size=8, unique=True))
def test_trace_order_equals_configured_order(labels: list[str]) -> None:
    test_stages.TRACE.events.clear()
    config = {
        "stages": [{"use": "record", "name": f"s{i}", "label": label} for i, label in enumerate(labels)]
    }
    chain = Chain.from_config(config)
    assert [name for name, _ in chain.stages] == [f"s{i}" for i in range(len(labels))]
    response = chain.complete("ping")
    assert response.text == "ping"
    expected = [f"in:{x}" for x in labels] + [f"out:{x}" for x in reversed(labels)]
    assert test_stages.TRACE.events == expected


@pytest.mark.usefixtures("test_plugin")
def test_stage_calling_next_zero_times_short_circuits() -> None:
    transport = MockTransport()
    chain = Chain(
        [{"use": "record", "label": "outer"}, {"use": "record_b", "label": "cut", "repeat": 0}], transport
    )
    response = chain.complete("x")
    assert response.text == "short-circuit by cut"
    assert transport.calls == []
    assert response.attempts == ()


@pytest.mark.usefixtures("test_plugin")
def test_stage_calling_next_many_times_records_each_attempt() -> None:
    transport = MockTransport.scripted("one", "two", "three")
    chain = Chain([{"use": "record", "repeat": 3}], transport)
    response = chain.complete("x")
    assert response.text == "three"
    assert len(transport.calls) == 3
    assert [a.number for a in response.attempts] == [1, 2, 3]
    assert all(a.outcome == "ok" for a in response.attempts)


class Upper:
    """A code-built stage: uppercases the answer."""

    async def handle(self, request: LLMRequest, call_next: Next) -> LLMResponse:
        response = await call_next(request)
        return response.model_copy(update={"text": response.text.upper()})


def test_code_built_stages_and_request_never_mutated() -> None:
    seen: list[LLMRequest] = []

    class Spy:
        async def handle(self, request: LLMRequest, call_next: Next) -> LLMResponse:
            seen.append(request)
            return await call_next(request)

    chain = Chain([Spy(), Upper()], MockTransport())
    response = chain.complete("hello", temperature=0.2, system="be brief")
    assert response.text == "HELLO"
    assert seen[0].messages[0].role == "system"
    assert seen[0].temperature == 0.2
    with pytest.raises(Exception, match="frozen"):
        seen[0].temperature = 1.0  # type: ignore[misc]


@pytest.mark.parametrize(
    ("error", "kind", "retryable"),
    [
        (RateLimited("slow down", retry_after=2.0), RateLimited, True),
        (ProviderError("bad key", status_code=401), ProviderError, False),
        (ProviderError("upstream", status_code=503), ProviderError, True),
        (TransportError("reset"), TransportError, True),
        (ParseError("not json", raw_text="nope"), ParseError, False),
    ],
)
def test_typed_errors_propagate_with_request_id_and_attempts(
    error: CallError, kind: type[CallError], retryable: bool
) -> None:
    chain = Chain([Upper()], MockTransport.scripted(error))
    with pytest.raises(kind) as info:
        chain.complete("x", request_id="req-123")
    exc = info.value
    assert exc.retryable is retryable
    assert exc.request_id == "req-123"
    assert len(exc.attempts) == 1
    assert exc.attempts[0].error_type == kind.__name__
    text = exc.explain()
    assert "req-123" in text and "#1" in text and kind.__name__ in text


def test_foreign_error_in_a_stage_is_wrapped_not_leaked() -> None:
    class Buggy:
        async def handle(self, request: LLMRequest, call_next: Next) -> LLMResponse:
            raise KeyError("choices")

    chain = Chain([Buggy()], MockTransport())
    with pytest.raises(CallError) as info:
        chain.complete("x")
    assert not isinstance(info.value, KeyError)
    assert isinstance(info.value.__cause__, KeyError)
    assert "KeyError" in info.value.explain()


def test_foreign_error_in_transport_is_wrapped_and_recorded() -> None:
    def boom(request: LLMRequest) -> str:
        raise ConnectionResetError("peer reset")

    chain = Chain([], MockTransport.scripted(boom))
    with pytest.raises(TransportError) as info:
        chain.complete("x")
    assert info.value.retryable
    assert info.value.attempts[0].outcome == "error"
    assert info.value.attempts[0].error_type == "TransportError"


def test_deadline_ends_a_hanging_transport() -> None:
    chain = Chain([], MockTransport.scripted(MockReply(delay_s=30, text="late")), timeout_s=0.05)
    with pytest.raises(TimeoutExceeded) as info:
        chain.complete("x")
    assert info.value.phase == "deadline"
    assert info.value.attempts[0].outcome == "timeout"
    assert info.value.attempts[0].duration_s < 1.0


def test_request_timeout_overrides_chain_default(fake_clock: FakeClock) -> None:
    seen: list[LLMRequest] = []

    class Spy:
        async def handle(self, request: LLMRequest, call_next: Next) -> LLMResponse:
            seen.append(request)
            return await call_next(request)

    chain = Chain([Spy()], MockTransport(), clock=fake_clock, timeout_s=60)
    chain.complete("x", timeout_s=5)
    assert seen[0].deadline == pytest.approx(fake_clock.now() + 5)
    chain.complete("x")
    assert seen[1].deadline == pytest.approx(fake_clock.now() + 60)


def test_deadline_already_passed_fails_without_calling_transport(fake_clock: FakeClock) -> None:
    class Sleeper:
        def __init__(self, clock: FakeClock) -> None:
            self.clock = clock

        async def handle(self, request: LLMRequest, call_next: Next) -> LLMResponse:
            await self.clock.sleep(10)
            return await call_next(request)

    transport = MockTransport()
    chain = Chain([Sleeper(fake_clock)], transport, clock=fake_clock, timeout_s=5)
    with pytest.raises(TimeoutExceeded):
        chain.complete("x")
    assert transport.calls == []


class Person(BaseModel):
    name: str
    age: int


def test_complete_json_returns_model_instance() -> None:
    chain = Chain([], MockTransport.scripted('{"name": "Ada", "age": 36}'))
    person = chain.complete_json("who?", schema=Person)
    assert person == Person(name="Ada", age=36)


def test_complete_json_invalid_answer_is_output_invalid() -> None:
    chain = Chain([], MockTransport.scripted('{"name": "Ada"}'))
    with pytest.raises(OutputInvalid) as info:
        chain.complete_json("who?", schema=Person)
    assert any("age" in e for e in info.value.errors)


def test_complete_json_passes_schema_to_request() -> None:
    transport = MockTransport.scripted('{"name": "Ada", "age": 1}')
    Chain([], transport).complete_json("who?", schema=Person)
    request = transport.calls[0]
    assert request.output_type is Person
    assert request.output_schema is not None
    assert set(request.output_schema["properties"]) == {"name", "age"}


def test_describe_lists_stages_in_order_with_options(test_plugin: None) -> None:
    chain = Chain.from_config(
        {
            "timeout_s": 30,
            "stages": [
                {"use": "record", "name": "outer", "label": "o"},
                {"use": "record", "name": "inner", "label": "i", "repeat": 2},
            ],
        }
    )
    text = chain.describe()
    assert text.index("outer (record)") < text.index("inner (record)")
    assert "repeat=2" in text and "label='i'" in text
    assert "30" in text and "mock" in text


def test_disabled_stage_is_left_out(test_plugin: None) -> None:
    chain = Chain.from_config({"stages": [{"use": "record"}, {"use": "plain", "enabled": False}]})
    assert [name for name, _ in chain.stages] == ["record"]


def test_same_stage_type_twice_needs_distinct_names(test_plugin: None) -> None:
    chain = Chain.from_config({"stages": [{"use": "record", "name": "a"}, {"use": "record", "name": "b"}]})
    assert [name for name, _ in chain.stages] == ["a", "b"]
    with pytest.raises(ConfigError, match="already used"):
        Chain.from_config({"stages": [{"use": "record"}, {"use": "record"}]})


def test_context_managers_close_the_transport() -> None:
    transport = MockTransport()
    with Chain([], transport) as chain:
        chain.complete("x")
    assert transport.closed

    async def main() -> None:
        t2 = MockTransport()
        async with Chain([], t2) as c2:
            await c2.acomplete("y")
        assert t2.closed

    asyncio.run(main())


def test_observers_see_call_and_attempt_events() -> None:
    events: list[str] = []
    chain = Chain([], MockTransport.scripted("ok"), observers=[lambda e: events.append(e.kind)])
    chain.complete("x")
    assert events == ["call_start", "attempt_start", "attempt_end", "call_end"]


def test_failing_observer_never_breaks_the_call() -> None:
    def bad(event: object) -> None:
        raise RuntimeError("observer bug")

    chain = Chain([], MockTransport.scripted("ok"), observers=[bad])
    assert chain.complete("x").text == "ok"


def test_bad_request_parameters_are_a_config_error() -> None:
    with pytest.raises(ConfigError, match="max_tokens"):
        Chain([], MockTransport()).complete("x", max_tokens=0)
