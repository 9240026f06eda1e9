"""``chain.astream`` / ``chain.stream``: chunks, the final response, deadlines, attempts,
retry before the first chunk (never after), early close, observers, and the mock fallback."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable
from typing import Any

import pytest

from llmchain import (
    CallError,
    Chain,
    Event,
    GaveUp,
    LLMResponse,
    ProviderError,
    StreamInterrupted,
    TimeoutExceeded,
    TransportError,
)
from llmchain.testing import FakeClock
from llmchain.testing.fault_server import Fault, FaultServer

from .helpers import (
    engine,  # noqa: F401 - a fixture, used through pytestmark
    make,
)

pytest_plugins = ["llmchain.testing.fixtures"]
pytestmark = pytest.mark.usefixtures("engine")
PROMPT = "a longer answer, streamed in pieces"


def _until_error(chunks: Iterable[str], seen: list[str]) -> list[str]:
    """Collect chunks into ``seen`` as they come, so they are kept when the stream fails."""
    for chunk in chunks:
        seen.append(chunk)
    return []


def chain_for(server: FaultServer, kind: str = "openai", stages: Any = (), **kw: Any) -> Chain:
    return Chain(stages, make(kind, server), **kw)


@pytest.mark.parametrize("kind", ["openai", "anthropic"])
def test_sync_stream_yields_chunks_then_the_response(fault_server: FaultServer, kind: str) -> None:
    with chain_for(fault_server, kind) as chain:
        stream = chain.stream(PROMPT)
        assert stream.response is None
        chunks = list(stream)
    assert len(chunks) == 3 and "".join(chunks) == PROMPT == stream.text
    response = stream.response
    assert response is not None and response.text == PROMPT
    assert response.usage.output_tokens > 0 and response.finish_reason == "stop"
    assert response.request_id and response.served_by == f"{kind}:{'gpt-test' if kind == 'openai' else 'claude-test'}"
    assert [a.outcome for a in response.attempts] == ["ok"]
    assert response.notes["streamed"] is True
    assert response.latency_s > 0


def test_async_stream(fault_server: FaultServer) -> None:
    async def main() -> tuple[list[str], LLMResponse | None]:
        async with chain_for(fault_server) as chain:
            stream = chain.astream(PROMPT)
            chunks = [c async for c in stream]
            return chunks, stream.response  # type: ignore[attr-defined]

    chunks, response = asyncio.run(main())
    assert "".join(chunks) == PROMPT and response is not None and response.text == PROMPT


def test_retry_before_the_first_chunk_goes_through_the_retry_stage(fault_server: FaultServer) -> None:
    fault_server.set_plan(["503", "429:0.05", "ok"])
    clock = FakeClock()
    with chain_for(fault_server, stages=[{"use": "retry", "max_attempts": 3}], clock=clock) as chain:
        stream = chain.stream(PROMPT)
        assert "".join(stream) == PROMPT
    response = stream.response
    assert response is not None
    assert [(a.outcome, a.status_code) for a in response.attempts] == [("error", 503), ("error", 429), ("ok", None)]
    assert clock.sleeps[1] == 0.05  # the server's Retry-After, not a backoff
    assert 0 <= clock.sleeps[0] <= 0.5  # the retry stage's first backoff ceiling
    assert fault_server.request_count == 3


def test_no_retry_stage_means_no_retry(fault_server: FaultServer) -> None:
    fault_server.set_plan(["503"])
    with chain_for(fault_server) as chain, pytest.raises(ProviderError) as info:
        list(chain.stream(PROMPT))
    assert info.value.status_code == 503 and len(info.value.attempts) == 1
    assert info.value.request_id is not None and info.value.request_summary is not None


def test_retry_gives_up_when_attempts_run_out(fault_server: FaultServer) -> None:
    fault_server.set_plan(["529", "529", "529", "529"])
    with chain_for(fault_server, stages=["retry"], clock=FakeClock()) as chain, pytest.raises(GaveUp):
        list(chain.stream(PROMPT))
    assert fault_server.request_count == 4  # the retry stage's default max_attempts


def test_a_long_retry_after_is_not_waited_the_backoff_is(fault_server: FaultServer) -> None:
    fault_server.set_plan(["429:120", "ok"])  # 120 s > max_retry_after_s: not honoured, as the SDK
    clock = FakeClock()
    with chain_for(fault_server, stages=["retry"], clock=clock) as chain:
        assert "".join(chain.stream(PROMPT)) == PROMPT
    assert fault_server.request_count == 2 and len(clock.sleeps) == 1 and clock.sleeps[0] <= 0.5


def test_client_errors_are_not_retried(fault_server: FaultServer) -> None:
    fault_server.set_plan(["401", "ok"])
    with chain_for(fault_server, stages=["retry"], clock=FakeClock()) as chain, pytest.raises(ProviderError):
        list(chain.stream(PROMPT))
    assert fault_server.request_count == 1


def test_no_retry_after_the_first_chunk(fault_server: FaultServer) -> None:
    fault_server.set_plan([Fault("stream_error", after_events=4), "ok"])
    received: list[str] = []
    with chain_for(fault_server, "anthropic", stages=["retry"], clock=FakeClock()) as chain, \
            pytest.raises(StreamInterrupted) as info:
        received.extend(_until_error(chain.stream(PROMPT), received))
    assert received == [PROMPT[:16]] and info.value.partial_text == PROMPT[:16]
    assert isinstance(info.value.error, ProviderError)
    assert info.value.retryable and info.value.status_code == 529
    assert [a.outcome for a in info.value.attempts] == ["error"]
    assert fault_server.request_count == 1


def test_a_truncated_stream_is_a_transport_error(fault_server: FaultServer) -> None:
    fault_server.set_plan([Fault("truncated_stream", after_events=4)])
    with chain_for(fault_server) as chain, pytest.raises(StreamInterrupted) as info:
        list(chain.stream(PROMPT))
    assert isinstance(info.value.error, TransportError) and "before the answer was complete" in str(info.value)


def test_the_deadline_bounds_a_slow_stream(make_fault_server: Any) -> None:
    server = make_fault_server(stream_interval_s=0.1)
    with chain_for(server, timeout_s=0.25) as chain:
        stream = chain.stream(PROMPT)
        t0 = time.monotonic()
        with pytest.raises(StreamInterrupted) as info:
            list(stream)
        assert time.monotonic() - t0 < 0.25 + 0.1
    error = info.value.error
    assert isinstance(error, TimeoutExceeded) and error.phase == "deadline" and not info.value.retryable
    assert [a.outcome for a in info.value.attempts] == ["timeout"]
    assert 0 < len(stream.text) < len(PROMPT)


def test_closing_early_records_a_cancelled_attempt(make_fault_server: Any) -> None:
    fault_server = make_fault_server(stream_interval_s=0.05)  # the rest is still to come
    events: list[Event] = []
    with chain_for(fault_server, observers=[events.append]) as chain:
        with chain.stream(PROMPT) as stream:
            assert next(stream) == PROMPT[:16]
        assert stream.response is None
        assert chain.complete("still usable").text == "still usable"
    kinds = [e.kind for e in events]
    assert kinds[:4] == ["call_start", "attempt_start", "attempt_end", "call_end"]
    assert events[2].data["outcome"] == "cancelled" and events[3].data["outcome"] == "cancelled"


def test_observers_see_retries(fault_server: FaultServer) -> None:
    fault_server.set_plan(["503", "ok"])
    events: list[Event] = []
    with chain_for(fault_server, stages=["retry"], clock=FakeClock(), observers=[events.append]) as chain:
        list(chain.stream(PROMPT))
    assert [e.kind for e in events] == ["call_start", "attempt_start", "attempt_end", "retry_scheduled",
                                        "attempt_start", "attempt_end", "call_end"]
    assert events[-1].data["outcome"] == "ok" and events[-1].data["stream"] is True


def test_a_transport_without_stream_is_streamed_whole() -> None:
    with Chain([], "mock") as chain:
        stream = chain.stream("echo me")
        assert list(stream) == ["echo me"]
        assert stream.response is not None and stream.response.text == "echo me"
        assert len(stream.response.attempts) == 1
    with Chain([], {"use": "mock", "replies": [{"error": "server_error"}]}) as chain, \
            pytest.raises(CallError):
        list(chain.stream("x"))


def test_cancelling_the_consumer_stops_the_stream(make_fault_server: Any) -> None:
    server = make_fault_server(stream_interval_s=0.2)

    async def main() -> None:
        async with chain_for(server) as chain:
            stream = chain.astream(PROMPT)

            first = asyncio.Event()

            async def consume() -> None:
                async for _ in stream:
                    first.set()

            task = asyncio.create_task(consume())
            await first.wait()  # mid-stream: the next chunk is 0.2 s away
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            assert stream.response is None  # type: ignore[attr-defined]

    asyncio.run(main())


def _sse(*events: str) -> bytes:
    return "".join(f"data: {e}\n\n" for e in events).encode()


CHUNK = '{"choices": [{"index": 0, "delta": {"content": "%s"}}]}'


def test_a_malformed_event_is_a_typed_error_before_and_after_the_first_chunk(fault_server: FaultServer) -> None:
    fault_server.set_plan([
        Fault(raw=_sse("{not json"), content_type="text/event-stream"),
        Fault(raw=_sse(CHUNK % "first", '{"choices": "wrong"}'), content_type="text/event-stream"),
    ])
    with chain_for(fault_server) as chain:
        with pytest.raises(ProviderError) as before:  # nothing reached the caller: the plain error
            list(chain.stream(PROMPT))
        seen: list[str] = []
        with pytest.raises(StreamInterrupted) as after:
            _until_error(chain.stream(PROMPT), seen)
    assert "stream event" in before.value.message and not before.value.retryable
    assert seen == ["first"] and after.value.partial_text == "first"
    assert isinstance(after.value.error, ProviderError) and "wrong shape" in after.value.error.message


def test_an_error_event_before_the_first_chunk_is_retried(fault_server: FaultServer) -> None:
    fault_server.set_plan([Fault("stream_error", after_events=0), "ok"])
    with chain_for(fault_server, "anthropic", stages=["retry"], clock=FakeClock()) as chain:
        assert "".join(chain.stream(PROMPT)) == PROMPT
    assert fault_server.request_count == 2


def test_an_abandoned_async_stream_is_closed_and_logged_cancelled(
        make_fault_server: Any, caplog: pytest.LogCaptureFixture) -> None:
    import gc
    import logging

    server = make_fault_server(stream_interval_s=0.05)
    caplog.set_level(logging.INFO, logger="llmchain")

    async def main() -> None:
        async with chain_for(server, stages=[{"use": "log", "handler": "none"}]) as chain:
            stream = chain.astream(PROMPT)
            async for _ in stream:
                break  # `async for` does not close what it iterates: dropping it must
            del stream
            gc.collect()
            for _ in range(20):  # the loop's finaliser closes the dropped generators
                await asyncio.sleep(0)
            assert (await chain.acomplete("still usable")).text == "still usable"

    asyncio.run(main())
    outcomes = [r.outcome for r in caplog.records if getattr(r, "event", "") == "llm.call"]  # type: ignore[attr-defined]
    assert outcomes[0] == "cancelled"


def test_the_idle_gap_bounds_a_stalled_stream_on_the_real_clock(make_fault_server: Any) -> None:
    server = make_fault_server(stream_interval_s=0.3)  # a chunk every 0.3 s
    stages = ["retry", {"use": "timeout", "idle_s": 0.1}]
    with chain_for(server, stages=stages, timeout_s=30.0) as chain, \
            pytest.raises(StreamInterrupted) as info:
        list(chain.stream(PROMPT))
    error = info.value.error
    assert isinstance(error, TimeoutExceeded) and "idle_s" in error.message
    assert info.value.partial_text == PROMPT[:16] and server.request_count == 1
    assert [a.outcome for a in info.value.attempts] == ["timeout"]



def test_a_finished_stream_leaves_its_connection_for_reuse(fault_server: FaultServer) -> None:
    async def main() -> None:
        async with Chain([], make("openai", fault_server)) as chain:
            for _ in range(2):
                assert "".join([c async for c in chain.astream(PROMPT)]) == PROMPT
            # the body's end had arrived with [DONE]: the connection went back to the pool and
            # carried the second stream, instead of being closed
            assert fault_server.requests_per_open_connection == [2]

    asyncio.run(main())


@pytest.mark.parametrize("kind", ["openai", "anthropic"])
def test_tool_calls_stream_as_typed_deltas_through_the_chain(make_fault_server: Any, kind: str) -> None:
    from llmchain import StreamEnd, ToolCall, ToolCallDelta

    server = make_fault_server(tool_calls=[{"name": "get_weather", "arguments": {"city": "Paris"}},
                                           {"name": "get_time", "arguments": {"zone": "CET"}}])

    async def main() -> tuple[list[Any], LLMResponse | None]:
        async with chain_for(server, kind, stages=["log", "retry"]) as chain:
            stream = chain.astream("weather?", tools=[{"name": "get_weather"}, {"name": "get_time"}])
            return [e async for e in stream.events()], stream.response  # type: ignore[attr-defined]

    events, response = asyncio.run(main())
    deltas = [e for e in events if isinstance(e, ToolCallDelta)]
    assert isinstance(events[-1], StreamEnd) and response is not None
    # the pieces, put together by index, are the calls of the final response
    assembled: dict[int, list[str]] = {}
    names: dict[int, str] = {}
    for d in deltas:
        if d.name:
            names[d.index] = d.name
        assembled.setdefault(d.index, []).append(d.arguments_delta)
    calls = [(names[i], "".join(assembled[i])) for i in sorted(names)]
    assert [(c.name, c.arguments) for c in response.tool_calls] == calls
    assert [c.name for c in response.tool_calls] == ["get_weather", "get_time"]
    assert all(isinstance(c, ToolCall) for c in response.tool_calls)
