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
    LLMResponse,
    ProviderError,
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


def test_retry_before_the_first_chunk_uses_the_retry_stage(fault_server: FaultServer) -> None:
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
    fault_server.set_plan(["503", "ok"])
    with chain_for(fault_server, clock=FakeClock()) as chain:
        stream = chain.stream(PROMPT, metadata={"stream_attempts": 2})
        assert "".join(stream) == PROMPT


def test_retry_gives_up_when_attempts_run_out(fault_server: FaultServer) -> None:
    fault_server.set_plan(["529", "529", "529", "529"])
    with chain_for(fault_server, stages=["retry"], clock=FakeClock()) as chain, pytest.raises(ProviderError):
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
            pytest.raises(ProviderError) as info:
        received.extend(_until_error(chain.stream(PROMPT), received))
    assert received == [PROMPT[:16]]
    assert info.value.retryable and info.value.status_code == 529
    assert [a.outcome for a in info.value.attempts] == ["error"]
    assert fault_server.request_count == 1


def test_a_truncated_stream_is_a_transport_error(fault_server: FaultServer) -> None:
    fault_server.set_plan([Fault("truncated_stream", after_events=4)])
    with chain_for(fault_server) as chain, pytest.raises(TransportError):
        list(chain.stream(PROMPT))


def test_the_deadline_bounds_a_slow_stream(make_fault_server: Any) -> None:
    server = make_fault_server(stream_interval_s=0.1)
    with chain_for(server, timeout_s=0.25) as chain:
        stream = chain.stream(PROMPT)
        t0 = time.monotonic()
        with pytest.raises(TimeoutExceeded) as info:
            list(stream)
        assert time.monotonic() - t0 < 0.25 + 0.1
    assert info.value.phase == "deadline" and not info.value.retryable
    assert [a.outcome for a in info.value.attempts] == ["timeout"]
    assert 0 < len(stream.text) < len(PROMPT)


def test_closing_early_records_a_cancelled_attempt(fault_server: FaultServer) -> None:
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

            async def consume() -> None:
                async for _ in stream:
                    pass

            task = asyncio.create_task(consume())
            await asyncio.sleep(0.1)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            assert stream.response is None  # type: ignore[attr-defined]

    asyncio.run(main())
