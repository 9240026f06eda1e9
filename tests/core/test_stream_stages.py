"""What each stage does to a streamed call (docs/stages/*.md, "Streams"), on a scripted streaming
transport and the fake clock: timeouts, retry/fallback before the first chunk only, rate-limit
reconciliation, cache (abort not stored, single-flight replay), parse/validate/repair, the
default for stream-unaware stages, and the callers (events, sync inside a loop, abandoning)."""

from __future__ import annotations

import asyncio
import gc
import logging
import threading
from collections.abc import AsyncIterator
from typing import Any

import pytest
from pydantic import BaseModel

from llmchain import (
    CallError,
    Chain,
    Finish,
    LLMRequest,
    LLMResponse,
    Next,
    PartialObject,
    ProviderError,
    Replaced,
    StreamEnd,
    StreamInterrupted,
    StreamUsage,
    TextDelta,
    TimeoutExceeded,
    Usage,
)
from llmchain._loop import LOOP
from llmchain._stream_sync import WINDOW
from llmchain.testing import FakeClock

Item = str | float | BaseException
FOREVER = "<the rest never comes>"


class ScriptedStream:
    """A streaming transport playing one script per call: text chunks, waits on the clock
    (floats) and errors; then the final response. Counts opened and closed streams."""

    name = "scripted:m"

    def __init__(self, clock: FakeClock, *scripts: list[Item], usage_out: int | None = None) -> None:
        self.clock, self.scripts, self.usage_out = clock, list(scripts), usage_out
        self.opened = self.closed = 0

    def identity(self) -> dict[str, Any]:
        return {"kind": "scripted"}

    async def send(self, request: LLMRequest) -> LLMResponse:
        raise AssertionError("a streamed call must use stream()")

    async def stream(self, request: LLMRequest) -> AsyncIterator[str | LLMResponse]:
        script = self.scripts.pop(0) if len(self.scripts) > 1 else self.scripts[0]
        self.opened += 1
        text: list[str] = []
        try:
            for item in script:
                if item is FOREVER:  # the rest never comes (until the stream is closed)
                    await asyncio.Event().wait()
                if isinstance(item, float):
                    await self.clock.sleep(item)
                elif isinstance(item, BaseException):
                    raise item
                else:
                    text.append(item)
                    yield item
            out = self.usage_out if self.usage_out is not None else len(text)
            yield LLMResponse(text="".join(text), usage=Usage(input_tokens=3, output_tokens=out),
                              finish_reason="stop", model="m")
        finally:
            self.closed += 1

    async def aclose(self) -> None:
        pass


def overloaded() -> ProviderError:
    return ProviderError("overloaded", status_code=503, retryable=True)


async def collect(chain: Chain, prompt: str = "q", **params: Any) -> tuple[list[Any], LLMResponse | None]:
    stream = chain.astream(prompt, **params)
    events = [event async for event in stream.events()]
    return events, stream.response


def texts(events: list[Any]) -> list[str]:
    return [e.text for e in events if isinstance(e, TextDelta)]


# -- timeout ------------------------------------------------------------------------------------


def test_timeout_first_token_limit_is_retryable_before_the_first_chunk() -> None:
    clock = FakeClock()
    transport = ScriptedStream(clock, [5.0, "late"], ["a", "b"])
    chain = Chain(["retry", {"use": "timeout", "first_token_s": 1.0}], transport, clock=clock)
    events, response = asyncio.run(collect(chain))
    assert texts(events) == ["a", "b"] and transport.opened == 2
    assert response is not None and [a.outcome for a in response.attempts][-1] == "ok"
    assert transport.closed == 2  # the stalled attempt's stream was closed


def test_timeout_idle_gap_interrupts_the_stream_after_the_first_chunk() -> None:
    clock = FakeClock()
    transport = ScriptedStream(clock, ["a", 0.5, "b", 3.0, "never"])
    chain = Chain(["retry", {"use": "timeout", "idle_s": 1.0}], transport, clock=clock)
    with pytest.raises(StreamInterrupted) as info:
        asyncio.run(collect(chain))
    assert info.value.partial_text == "ab" and isinstance(info.value.error, TimeoutExceeded)
    assert "idle_s" in str(info.value) and transport.opened == 1  # never retried after a chunk
    assert [a.outcome for a in info.value.attempts] == ["timeout"] and transport.closed == 1


def test_timeout_total_bounds_the_whole_stream() -> None:
    clock = FakeClock()
    transport = ScriptedStream(clock, ["a", 0.6, "b", 0.6, "c", 0.6, "d"])
    chain = Chain([{"use": "timeout", "total_s": 1.5, "idle_s": 1.0}], transport, clock=clock)
    with pytest.raises(StreamInterrupted) as info:
        asyncio.run(collect(chain))
    assert info.value.partial_text == "abc"
    error = info.value.error
    assert isinstance(error, TimeoutExceeded) and error.phase == "deadline"


# -- retry and fallback --------------------------------------------------------------------------


def test_retry_acts_before_the_first_chunk_never_after() -> None:
    clock = FakeClock()
    transport = ScriptedStream(clock, [overloaded()], ["a", overloaded()], ["never"])
    chain = Chain([{"use": "retry", "max_attempts": 5}], transport, clock=clock)
    with pytest.raises(StreamInterrupted) as info:
        asyncio.run(collect(chain))
    assert transport.opened == 2 and info.value.partial_text == "a"
    assert [a.outcome for a in info.value.attempts] == ["error", "error"]
    assert info.value.retryable and info.value.status_code == 503  # the caller may ask again


def test_fallback_before_the_first_chunk() -> None:
    clock = FakeClock()
    primary = ScriptedStream(clock, [overloaded()])
    stage = {"use": "fallback", "alternatives": [{"transport": {"use": "mock"}}]}
    chain = Chain([stage], primary, clock=clock)
    events, response = asyncio.run(collect(chain, "from the alternative"))
    assert "".join(texts(events)) == "from the alternative"
    assert response is not None and response.notes["fallback"]["position"] == 1


# -- rate limit, cache -----------------------------------------------------------------------------


def test_rate_limit_books_at_start_and_reconciles_from_the_final_usage() -> None:
    clock = FakeClock()
    transport = ScriptedStream(clock, ["a", "b"], usage_out=500)
    chain = Chain([{"use": "rate_limit", "tpm": 10_000, "tokenizer": "heuristic"}], transport, clock=clock)
    stage: Any = chain.stages[0][1]
    asyncio.run(collect(chain, max_tokens=10))
    log = stage.store._logs["default"]
    assert log.tokens == 503  # the booking (prompt estimate + 10) was corrected to 3 in + 500 out


def test_cache_never_stores_an_aborted_stream_and_stores_a_completed_one() -> None:
    clock = FakeClock()
    transport = ScriptedStream(clock, ["a", "b", "c"])
    chain = Chain(["cache"], transport, clock=clock)

    async def main() -> None:
        stream = chain.astream("q")
        assert await stream.__anext__() == "a"
        await stream.aclose()  # aborted: not stored
        events, response = await collect(chain)
        assert response is not None and response.cache is not None and response.cache.status == "miss"
        events, response = await collect(chain)
        assert response is not None and response.cache is not None and response.cache.status == "hit"
        assert "".join(texts(events)) == "abc"

    asyncio.run(main())
    assert transport.opened == 2 and transport.closed == 2


def test_identical_concurrent_streams_coalesce_and_followers_get_the_replay() -> None:
    clock = FakeClock()
    transport = ScriptedStream(clock, ["a", 0.1, "b", 0.1, "c"])
    chain = Chain(["cache"], transport, clock=clock)

    async def main() -> list[tuple[list[Any], LLMResponse | None]]:
        return list(await asyncio.gather(*(collect(chain) for _ in range(3))))

    results = asyncio.run(main())
    assert transport.opened == 1
    statuses = sorted(r.cache.status for _, r in results if r is not None and r.cache is not None)
    assert statuses == ["hit", "hit", "miss"]
    assert all("".join(texts(events)) == "abc" for events, _ in results)


# -- structured streaming ------------------------------------------------------------------------


class Person(BaseModel):
    name: str
    age: int


def test_parse_yields_partial_objects_and_validate_checks_at_the_end() -> None:
    clock = FakeClock()
    transport = ScriptedStream(clock, ['{"name": "Al', 'ice", "ag', 'e": 3', "0}"])
    chain = Chain(["validate", "parse"], transport, clock=clock)
    events, response = asyncio.run(collect(chain, output_type=Person))
    partials = [e.value for e in events if isinstance(e, PartialObject)]
    assert partials == [{"name": "Al"}, {"name": "Alice"}, {"name": "Alice", "age": 3},
                        {"name": "Alice", "age": 30}]
    assert response is not None and response.parsed == Person(name="Alice", age=30)


def test_repair_after_the_end_replaces_the_answer_with_a_clear_event() -> None:
    clock = FakeClock()
    transport = ScriptedStream(clock, ['{"name": "Bob", "age": "old"}'])
    # the re-ask is not streamed: it goes through send(); give the transport a valid answer there
    fixed = LLMResponse(text='{"name": "Bob", "age": 41}', model="m")

    async def send(request: LLMRequest) -> LLMResponse:
        assert not request.stream
        return fixed

    transport.send = send  # type: ignore[method-assign]
    chain = Chain(["repair", "validate", "parse"], transport, clock=clock)
    events, response = asyncio.run(collect(chain, output_type=Person))
    replaced = [e for e in events if isinstance(e, Replaced)]
    assert len(replaced) == 1 and replaced[0].reason.startswith("repair")
    assert response is not None and response.parsed == Person(name="Bob", age=41)
    assert response.notes["repaired"] == "reask" and isinstance(events[-1], StreamEnd)


def test_a_streamed_answer_that_fails_validation_without_repair_raises_it_typed() -> None:
    clock = FakeClock()
    chain = Chain(["validate", "parse"], ScriptedStream(clock, ['{"name": 1}']), clock=clock)
    with pytest.raises(CallError) as info:
        asyncio.run(collect(chain, output_type=Person))
    assert type(info.value).__name__ == "OutputInvalid"


# -- the default for stream-unaware stages ---------------------------------------------------------


class Unaware:
    """A third-party stage that knows nothing of streams: it upper-cases the final answer."""

    def __init__(self) -> None:
        self.seen: list[str] = []

    async def handle(self, request: LLMRequest, call_next: Next) -> LLMResponse:
        response = await call_next(request)
        self.seen.append(response.text)
        return response.model_copy(update={"text": response.text.upper()})


def test_an_unaware_stage_lets_chunks_through_and_sees_the_final_response() -> None:
    clock = FakeClock()
    stage = Unaware()
    chain = Chain([stage], ScriptedStream(clock, ["ab", "cd"]), clock=clock)

    async def main() -> tuple[list[Any], LLMResponse | None]:
        stream = chain.astream("q")
        first = await stream.next_event()  # unbuffered: the first chunk before the stream ends
        assert first == TextDelta("ab") and stage.seen == []
        rest = [event async for event in stream.events()]
        return [first, *rest], stream.response

    events, response = asyncio.run(main())
    assert texts(events) == ["ab", "cd"] and stage.seen == ["abcd"]
    assert any(isinstance(e, Replaced) for e in events)  # it changed the answer at the end
    assert response is not None and response.text == "ABCD"


# -- callers ---------------------------------------------------------------------------------------


def test_events_are_typed_and_the_final_response_matches_the_chunks() -> None:
    clock = FakeClock()
    chain = Chain([], ScriptedStream(clock, ["one ", "two"]), clock=clock)
    events, response = asyncio.run(collect(chain))
    assert [type(e) for e in events] == [TextDelta, TextDelta, StreamUsage, Finish, StreamEnd]
    assert response is not None and response.text == "one two" == "".join(texts(events))
    assert events[-1].response is response and response.notes["streamed"] is True


def test_the_sync_stream_works_inside_a_running_loop() -> None:  # as in Jupyter
    clock = FakeClock()
    chain = Chain(["log"], ScriptedStream(clock, ["x", "y"]), clock=clock)

    async def notebook_cell() -> list[str]:
        return list(chain.stream("q"))

    assert asyncio.run(notebook_cell()) == ["x", "y"]


def test_abandoning_the_sync_iterator_closes_the_stream(caplog: pytest.LogCaptureFixture) -> None:
    clock = FakeClock()
    transport = ScriptedStream(clock, ["a", FOREVER, "b"])
    chain = Chain([{"use": "log", "handler": "none"}], transport, clock=clock)
    caplog.set_level(logging.INFO, logger="llmchain")
    stream = chain.stream("q")
    assert next(stream) == "a"
    del stream
    gc.collect()
    closes_done()
    assert transport.closed == 1
    assert [r.outcome for r in caplog.records if getattr(r, "event", "") == "llm.call"] == ["cancelled"]  # type: ignore[attr-defined]


def test_breaking_out_of_the_sync_loop_cancels_what_is_still_coming(caplog: pytest.LogCaptureFixture) -> None:
    clock = FakeClock()
    transport = ScriptedStream(clock, ["a", FOREVER, "b"])
    chain = Chain([{"use": "log", "handler": "none"}], transport, clock=clock)
    caplog.set_level(logging.INFO, logger="llmchain")
    with chain.stream("q") as stream:
        for chunk in stream:
            assert chunk == "a"
            break
    assert transport.closed == 1 and stream.response is None and stream.text == "a"
    records = [r for r in caplog.records if getattr(r, "event", "") == "llm.call"]
    assert [r.outcome for r in records] == ["cancelled"]  # type: ignore[attr-defined]


def test_the_sync_reader_reads_ahead_at_most_a_window() -> None:
    clock = FakeClock()
    transport = ScriptedStream(clock, [f"{i} " for i in range(WINDOW * 3)])
    chain = Chain([], transport, clock=clock)
    stream = chain.stream("q")
    assert next(stream) == "0 "
    assert len(stream._pump.buffer) <= WINDOW  # bounded: a 10 MB answer is not read ahead whole
    assert "".join(stream) == "".join(f"{i} " for i in range(1, WINDOW * 3))


def test_the_sync_stream_from_another_thread_reads_a_long_answer_through_the_window() -> None:
    clock = FakeClock()
    words = [f"{i} " for i in range(WINDOW * 5)]
    chain = Chain(["log"], ScriptedStream(clock, words), clock=clock)
    got: list[str] = []
    worker = threading.Thread(target=lambda: got.extend(chain.stream("q")))
    worker.start()
    worker.join(30)
    assert not worker.is_alive() and got == words


def test_a_sync_iterator_dropped_during_another_call_on_its_loop_is_closed_at_once(
        caplog: pytest.LogCaptureFixture) -> None:
    """Dropped while another llmchain call runs on the loop (the finaliser runs on the loop
    thread), the close is scheduled there and happens within a few of its steps (not whenever
    asyncio's finaliser gets to it)."""

    clock = FakeClock()
    transport = ScriptedStream(clock, ["a", FOREVER, "b"])
    chain = Chain([{"use": "log", "handler": "none"}], transport, clock=clock)
    caplog.set_level(logging.INFO, logger="llmchain")
    held = [chain.stream("q")]
    assert next(held[0]) == "a"

    async def another_call() -> int:
        held.clear()  # the last reference goes while this call runs on the loop
        gc.collect()
        for steps in range(20):  # loop steps, not time
            if transport.closed:
                return steps
            await asyncio.sleep(0)
        return -1

    steps = LOOP.run(another_call())
    assert 0 <= steps < 20 and transport.closed == 1
    assert [r.outcome for r in caplog.records if getattr(r, "event", "") == "llm.call"] == ["cancelled"]  # type: ignore[attr-defined]
    assert not [r for r in caplog.records if "destroyed but it is pending" in r.getMessage()]


def closes_done() -> None:
    """Wait until the closes scheduled by dropped iterators have finished (on the loop: the one
    scheduled before this call's task has started, as the loop runs callbacks in order)."""
    from llmchain._stream_sync import _CLOSING

    async def done() -> None:
        await asyncio.gather(*_CLOSING)

    LOOP.run(done())


def test_a_sync_stream_started_in_one_thread_is_read_in_another() -> None:
    """The stream lives on llmchain's one loop, not on the thread that started it."""
    clock = FakeClock()
    words = [f"{i} " for i in range(WINDOW * 2)]
    chain = Chain(["log"], ScriptedStream(clock, words), clock=clock)
    stream = chain.stream("q")
    got = [next(stream)]  # started here, in the main thread
    rest: list[str] = []
    worker = threading.Thread(target=lambda: rest.extend(stream))
    worker.start()
    worker.join(30)
    assert not worker.is_alive() and got + rest == words
    assert stream.response is not None and stream.response.text == "".join(words)


def test_a_sync_stream_read_by_turns_from_two_threads() -> None:
    clock = FakeClock()
    words = [f"{i} " for i in range(12)]
    chain = Chain([], ScriptedStream(clock, words), clock=clock)
    stream = chain.stream("q")
    got: list[str] = []
    for i in range(6):
        if i % 2:
            worker = threading.Thread(target=lambda: got.extend([next(stream), next(stream)]))
            worker.start()
            worker.join(10)
        else:
            got.extend([next(stream), next(stream)])
    assert got == words and list(stream) == []


def test_a_sync_stream_dropped_in_a_worker_thread_is_closed(caplog: pytest.LogCaptureFixture) -> None:
    clock = FakeClock()
    transport = ScriptedStream(clock, ["a", FOREVER, "b"])
    chain = Chain([{"use": "log", "handler": "none"}], transport, clock=clock)
    caplog.set_level(logging.INFO, logger="llmchain")

    def read_one_and_drop() -> None:
        stream = chain.stream("q")
        assert next(stream) == "a"

    worker = threading.Thread(target=read_one_and_drop)
    worker.start()
    worker.join(10)
    gc.collect()
    closes_done()
    assert transport.closed == 1
    assert [r.outcome for r in caplog.records if getattr(r, "event", "") == "llm.call"] == ["cancelled"]  # type: ignore[attr-defined]
