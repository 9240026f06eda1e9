"""Contract clauses about streamed calls: what every stage must do when ``request.stream`` is set.

The stage is composed the way a chain composes it (so a stage that does not declare
``handles_streams`` gets the default), around an inner step that streams a scripted answer
whose chunks are released one at a time by the test: a stage that buffered the stream would
hold the first chunk back, which the clause sees.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator
from typing import Any

from .._compose import compose
from .._exceptions import CallError, StreamInterrupted, TransportError
from .._models import LLMRequest, LLMResponse, Usage, copy_with
from .._stream import Finish, LLMStream, StreamEnd, StreamEvent, StreamUsage, TextDelta, stream_response
from ._contract_harness import ContractViolation, StageUnderTest, probe_request, response_diff, wraps
from .clock import FakeClock

CHUNKS = ("The probe ", "is about ", "contracts.")
#: Real seconds a clause waits for an event that must come without the test doing anything more.
PROMPT_S = 2.0


class ScriptedStream:
    """The inner step: streams ``CHUNKS``, each after the test opens its gate; can fail after
    the first chunk; records whether its source was closed."""

    def __init__(self, clock: FakeClock, fail_after_first: bool = False) -> None:
        self.clock = clock
        self.fail_after_first = fail_after_first
        self.gates = [asyncio.Event() for _ in CHUNKS]
        self.closed = False
        self.calls = 0
        self.raised: StreamInterrupted | None = None
        self.final = LLMResponse(text="".join(CHUNKS), usage=Usage(input_tokens=7, output_tokens=3),
                                 model="contract-model", finish_reason="stop")

    async def __call__(self, request: LLMRequest) -> LLMResponse:
        self.calls += 1
        if not request.stream:  # a stage asked again without streaming (e.g. repair): answer whole
            return self.final
        now = self.clock.now()
        stream = LLMStream(self._events(), opened_at=now, first_at=now)
        return stream_response(stream)

    async def _events(self) -> AsyncGenerator[StreamEvent, None]:
        try:
            for i, (chunk, gate) in enumerate(zip(CHUNKS, self.gates, strict=True)):
                if i:
                    await gate.wait()
                if i == 1 and self.fail_after_first:
                    self.raised = StreamInterrupted("contract: the stream broke", partial_text=CHUNKS[0],
                                                    error=TransportError("contract: connection reset"))
                    raise self.raised
                yield TextDelta(chunk)
            yield StreamUsage(self.final.usage)
            yield Finish(self.final.finish_reason)
            yield StreamEnd(self.final)
        finally:
            self.closed = True

    def open_all(self) -> None:
        for gate in self.gates:
            gate.set()


def _open(sut: StageUnderTest, inner: ScriptedStream) -> Any:
    stage = sut.build(inner.clock)
    return compose([stage], inner)


async def _first_event(clause: str, events: Any) -> StreamEvent:
    try:
        event: StreamEvent = await asyncio.wait_for(events.__anext__(), PROMPT_S)
    except TimeoutError:
        raise ContractViolation(clause, "the first chunk did not come out before the next was sent: "
                                        "the stage buffers the stream") from None
    return event


def _streamed_request(clock: FakeClock) -> LLMRequest:
    return copy_with(probe_request(clock), {"stream": True})


def check_stream_passthrough(sut: StageUnderTest) -> None:
    """Chunks pass in order, unbuffered (the first is out before the second is sent)."""
    clause = "stream_passthrough"
    inner = ScriptedStream(FakeClock())

    async def main() -> list[str]:
        try:
            response = await asyncio.wait_for(_open(sut, inner)(_streamed_request(inner.clock)), PROMPT_S)
        except TimeoutError:
            raise ContractViolation(clause, "the stage did not return before the stream's second chunk "
                                            "was sent: it buffers the stream") from None
        if response.stream is None:
            raise ContractViolation(clause, "returned a whole response to a streamed call")
        events = response.stream.__aiter__()
        first = await _first_event(clause, events)
        inner.open_all()
        texts = [first.text] if isinstance(first, TextDelta) else []
        async for event in events:
            if isinstance(event, TextDelta):
                texts.append(event.text)
        return texts

    texts = sut.run(clause, main)
    if texts != list(CHUNKS):
        raise ContractViolation(clause, f"the chunks came out as {texts!r}, not as sent ({list(CHUNKS)!r})")


def check_stream_final(sut: StageUnderTest) -> None:
    """The final response matches the chunks and is the inner one (fields annotated aside)."""
    clause = "stream_final"
    inner = ScriptedStream(FakeClock())
    inner.open_all()

    async def main() -> tuple[str, LLMResponse | None]:
        response = await _open(sut, inner)(_streamed_request(inner.clock))
        text, final = "", None
        async for event in response.stream:
            if isinstance(event, TextDelta):
                text += event.text
            elif isinstance(event, StreamEnd):
                final = event.response
        return text, final

    text, final = sut.run(clause, main)
    if final is None:
        raise ContractViolation(clause, "the stream ended without a StreamEnd carrying the final response")
    if final.text != text:
        raise ContractViolation(clause, f"the final text {final.text!r} does not match the chunks {text!r}")
    changed = response_diff(final, inner.final, sut.annotates)
    if changed:
        raise ContractViolation(
            clause, f"changed the final response it had nothing to do with: {'; '.join(changed)}")


def check_stream_cancel(sut: StageUnderTest) -> None:
    """Closing the stream mid-way closes the source (the connection) and raises nothing."""
    clause = "stream_cancel"
    inner = ScriptedStream(FakeClock())

    async def main() -> bool:
        response = await _open(sut, inner)(_streamed_request(inner.clock))
        events = response.stream.__aiter__()
        await _first_event(clause, events)
        try:
            await response.stream.aclose()
        except Exception as exc:
            raise ContractViolation(clause, f"closing the stream raised {type(exc).__name__}: {exc}") from exc
        return inner.closed  # now: not when a garbage collector gets to it

    if not sut.run(clause, main):
        raise ContractViolation(clause, "closing the stream early left the source (its connection) open")


def check_stream_error(sut: StageUnderTest) -> None:
    """A failure mid-stream reaches the caller as a CallError that is or wraps it."""
    clause = "stream_error"
    inner = ScriptedStream(FakeClock(), fail_after_first=True)
    inner.open_all()

    async def main() -> BaseException | None:
        try:
            response = await _open(sut, inner)(_streamed_request(inner.clock))
            async for _ in response.stream:
                pass
        except Exception as exc:
            return exc
        return None

    raised = sut.run(clause, main)
    if raised is None:
        raise ContractViolation(clause, "a stream that broke mid-way ended normally")
    if not isinstance(raised, CallError) or inner.raised is None or not wraps(raised, inner.raised):
        raise ContractViolation(clause, f"a mid-stream failure surfaced as {type(raised).__name__}: "
                                        f"{raised}, not as the StreamInterrupted raised (or a CallError "
                                        "wrapping it)")
