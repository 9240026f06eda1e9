"""Issue 13's "Done when", one test each, with the default chain (every default stage, in the
default order) over the OpenAI transport talking to the loopback fault server."""

from __future__ import annotations

import asyncio
import logging
import warnings
from typing import Any

import pytest

from llmchain import CallError, Chain, CircuitOpen, LLMRequest, LLMResponse, Next, OrderWarning
from llmchain._defaults import DEFAULT_STAGE_ORDER
from llmchain.middleware.retry import is_retryable
from llmchain.testing import FakeClock
from llmchain.testing.fault_server import Fault, FaultServer
from llmchain.transports.anthropic import AnthropicTransport
from llmchain.transports.openai import OpenAITransport

pytest_plugins = ["llmchain.testing.fixtures"]
LONG = "a streamed answer long enough to arrive in several chunks, and to be replayed in several " * 3


def default_stages(**overrides: dict[str, Any]) -> list[dict[str, Any]]:
    """The default chain's stages, outermost first, with options for some of them."""
    return [{"use": name, **overrides.get(name, {})} for name in DEFAULT_STAGE_ORDER]


def openai(server: FaultServer) -> OpenAITransport:
    return OpenAITransport(OpenAITransport.Options(base_url=server.base_url, api_key_env="",
                                                   model="gpt-test"))


def anthropic(server: FaultServer) -> AnthropicTransport:
    return AnthropicTransport(AnthropicTransport.Options(base_url=server.anthropic_base_url,
                                                         api_key_env="", model="claude-test"))


def test_astream_waits_for_rate_limit_slots_like_acomplete(fault_server: FaultServer) -> None:
    clock = FakeClock()
    stages = default_stages(rate_limit={"rpm": 1}, cache={"single_flight": False})

    async def main() -> tuple[list[str], list[float]]:
        async with Chain(stages, openai(fault_server), clock=clock) as chain:
            texts = []
            for i in range(3):  # distinct prompts: the cache must not answer
                stream = chain.astream(f"question {i}", timeout_s=600.0)
                texts.append("".join([c async for c in stream]))
            streamed_sleeps = list(clock.sleeps)
            await chain.acomplete("question 3", timeout_s=600.0)
            return texts, [s for s in clock.sleeps[len(streamed_sleeps):]] + streamed_sleeps

    texts, sleeps = asyncio.run(main())
    assert texts == ["question 0", "question 1", "question 2"]
    # one request per minute: the 2nd, 3rd (streamed) and 4th (complete) calls each waited ~60 s
    assert sum(1 for s in sleeps if 59 <= s <= 60.5) == 3
    assert fault_server.request_count == 4


def test_a_breaker_opens_on_streamed_failures(fault_server: FaultServer) -> None:
    stages = default_stages(retry={"max_attempts": 1})
    stages.insert(2, {"use": "circuit_breaker", "min_calls": 2, "window_calls": 2, "failure_rate": 0.5})
    fault_server.set_plan([Fault("stream_error", after_events=3), Fault("stream_error", after_events=3)])
    with Chain(stages, openai(fault_server), clock=FakeClock()) as chain:
        for i in range(2):
            with pytest.raises(CallError):  # failing mid-stream, after chunks arrived
                list(chain.stream(LONG + str(i)))
        with pytest.raises(CircuitOpen):
            list(chain.stream(LONG + "third"))
    assert fault_server.request_count == 2  # the open circuit failed fast


def test_every_streamed_call_has_its_log_line_with_time_to_first_token(
        make_fault_server: Any, caplog: pytest.LogCaptureFixture) -> None:
    fault_server = make_fault_server(stream_interval_s=0.01)  # leaving early leaves chunks unread
    fault_server.set_plan(["ok", Fault("stream_error", after_events=3), "ok"])
    caplog.set_level(logging.INFO, logger="llmchain")
    stages = default_stages(retry={"max_attempts": 1}, log={"handler": "none"})
    with Chain(stages, openai(fault_server)) as chain:
        assert "".join(chain.stream(LONG)) == LONG
        with pytest.raises(CallError):
            list(chain.stream(LONG + "2"))
        with chain.stream(LONG + "3") as stream:
            next(stream)  # then leave the loop early
    lines = [r for r in caplog.records if getattr(r, "event", None) == "llm.call"]
    assert [r.outcome for r in lines] == ["ok", "error", "cancelled"]  # type: ignore[attr-defined]
    for record in lines:
        fields = record.__dict__
        assert fields["stream"] is True and fields["ttft_ms"] >= 0 and fields["duration_ms"] >= fields["ttft_ms"]
    assert lines[0].tokens_out > 0 and lines[0].tokens_per_s is not None  # type: ignore[attr-defined]
    assert lines[1].error_type == "StreamInterrupted"  # type: ignore[attr-defined]


def test_a_repeated_streamed_question_is_served_from_the_cache_as_a_stream(fault_server: FaultServer) -> None:
    with Chain(default_stages(), openai(fault_server)) as chain:
        first = chain.stream(LONG)
        first_chunks = list(first)
        second = chain.stream(LONG)
        second_chunks = list(second)
    assert "".join(first_chunks) == "".join(second_chunks) == LONG
    assert len(second_chunks) > 1  # replayed in chunks: the caller's loop is the same
    assert first.response is not None and first.response.cache is not None
    assert first.response.cache.status == "miss"
    assert second.response is not None and second.response.cache is not None
    assert second.response.cache.status == "hit" and second.response.notes["streamed"] is True
    assert fault_server.request_count == 1


class ThirdPartyRetry:
    """A replacement retry stage: knows nothing of streams, declares the retry role."""

    roles = frozenset({"retry"})

    def __init__(self, attempts: int = 3) -> None:
        self.attempts = attempts
        self.final_texts: list[str] = []

    async def handle(self, request: LLMRequest, call_next: Next) -> LLMResponse:
        for attempt in range(1, self.attempts + 1):
            try:
                response = await call_next(request)
                self.final_texts.append(response.text)  # on a stream: the final response
                return response
            except CallError as exc:
                if attempt == self.attempts or not is_retryable(exc):
                    raise
        raise AssertionError("unreachable")


def test_a_third_party_retry_stage_that_declares_the_retry_role_retries_streams(
        fault_server: FaultServer) -> None:
    fault_server.set_plan(["503", "ok"])
    retry = ThirdPartyRetry()
    stages: list[Any] = [{"use": n} for n in DEFAULT_STAGE_ORDER if n != "retry"]
    stages.insert(DEFAULT_STAGE_ORDER.index("retry"), retry)
    with warnings.catch_warnings():
        warnings.simplefilter("error", OrderWarning)  # in the retry position: no warning
        chain = Chain(stages, openai(fault_server))
    with chain:
        stream = chain.stream(LONG)
        assert "".join(stream) == LONG
    assert fault_server.request_count == 2
    assert stream.response is not None
    assert [a.outcome for a in stream.response.attempts] == ["error", "ok"]
    assert retry.final_texts == [LONG]  # it saw the final response when the stream ended
    # and it gets the built-in retry's order hints: declared role, not name
    with pytest.warns(OrderWarning, match="'retry' is inside 'rate_limit'"):
        Chain(["rate_limit", ThirdPartyRetry()], "mock")


@pytest.mark.parametrize("kind", ["openai", "anthropic"])
def test_a_stream_whose_server_keeps_the_connection_open_after_the_end_marker_returns_at_once(
        make_fault_server: Any, kind: str) -> None:
    server = make_fault_server()
    server.set_plan([Fault("stream_hold_open", hang_s=60.0), "ok"])
    transport = openai(server) if kind == "openai" else anthropic(server)
    # a 5 s deadline: reading on until the server gives up (60 s) would time out
    with Chain(default_stages(), transport, timeout_s=5.0) as chain:
        stream = chain.stream(LONG)
        assert "".join(stream) == LONG
        assert stream.response is not None and stream.response.finish_reason is not None
        assert chain.complete("the chain is still usable").text == "the chain is still usable"


def test_leaving_the_sync_loop_early_is_cancelled_even_when_the_answer_had_all_arrived(
        fault_server: FaultServer, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="llmchain")
    with Chain([{"use": "log", "handler": "none"}], openai(fault_server)) as chain:
        for chunk in chain.stream(LONG):  # the whole answer comes in one read: the reader has it
            assert chunk
            break
        assert chain.complete("still usable").text == "still usable"
    outcomes = [r.outcome for r in caplog.records if getattr(r, "event", "") == "llm.call"]  # type: ignore[attr-defined]
    assert outcomes == ["cancelled", "ok"]
