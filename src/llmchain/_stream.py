"""Streamed answers as they travel through the chain: typed events and the ``LLMStream``.

A streamed call is an ``LLMRequest`` with ``stream=True`` that goes through the same composed
stages as any other call. The innermost step opens the provider's stream and returns once the
first event has arrived (so retry, fallback, circuit breaker and rate limit act on everything
that fails before the first chunk, exactly as for ``complete()``), with an ``LLMResponse``
whose ``stream`` is an ``LLMStream``: an async iterator of the events below, ending with one
``StreamEnd`` that carries the complete response.

On the way out, a stage that handles streams (``handles_streams = True``) may ``pipe`` the
events through a wrapper of its own (an async generator): to act on each chunk (redact, partial
JSON), or only at the end (log, cache, breaker, rate-limit reconciliation) with ``at_end``. A
stage that knows nothing about streams gets the default (``stream_default``): chunks pass it
untouched, and its ``handle`` receives the final response when the stream ends, so what it
returns (or raises) then is the call's outcome.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Coroutine
from dataclasses import dataclass
from typing import Any

from ._models import LLMRequest, LLMResponse, Usage, copy_with
from ._text_buffer import TextBuffer
from ._types import Next


@dataclass(frozen=True, slots=True)
class TextDelta:
    """The next piece of the answer's text."""

    text: str


@dataclass(frozen=True, slots=True)
class ToolCallDelta:
    """The next piece of tool call ``index``: its id and name when first seen, then argument JSON."""

    index: int
    id: str | None = None
    name: str | None = None
    arguments_delta: str = ""


@dataclass(frozen=True, slots=True)
class StreamUsage:
    """Token counts, as the provider reported them at the end of the stream."""

    usage: Usage


@dataclass(frozen=True, slots=True)
class Finish:
    """Why the model stopped (``stop``, ``length``, ``tool_calls``...)."""

    reason: str | None


@dataclass(frozen=True, slots=True)
class PartialObject:
    """Structured streaming: the best-effort value of the JSON received so far."""

    value: Any


@dataclass(frozen=True, slots=True)
class Replaced:
    """The streamed answer was replaced after it ended (e.g. by ``repair``): ``response`` is the
    answer the call returns; the chunks already received are superseded."""

    response: LLMResponse
    reason: str


@dataclass(frozen=True, slots=True)
class StreamEnd:
    """The last event: the complete response (text, usage, attempts, what stages did)."""

    response: LLMResponse


StreamEvent = TextDelta | ToolCallDelta | StreamUsage | Finish | PartialObject | Replaced | StreamEnd
Events = AsyncIterator[StreamEvent]
#: ``request.metadata`` key a timeout stage sets: the longest gap allowed between two events.
STREAM_IDLE_KEY = "llmchain.stream_idle_s"
#: How many characters each chunk of a replayed answer (a cache hit) carries.
REPLAY_CHUNK_CHARS = 64


class LLMStream:
    """The events of one streamed answer; iterate once, from the outside of the chain.

    ``buffer`` holds the text read from the provider so far, once (the transport's own, when it
    fills it: no second copy), ``opened_at`` / ``first_at`` when the stream was opened and its
    first event came (chain clock), ``trace`` the call's trace (set by the chain).
    """

    __slots__ = ("_events", "_layers", "buffer", "first_at", "opened_at", "trace")

    def __init__(self, source: Events, *, opened_at: float, first_at: float,
                 buffer: TextBuffer | None = None) -> None:
        self._events = source
        self._layers: list[Events] = [source]
        self.opened_at = opened_at
        self.first_at = first_at
        self.buffer = buffer if buffer is not None else TextBuffer()
        self.trace: Any = None

    def pipe(self, wrap: Callable[[Events], Events]) -> None:
        """Route the events through ``wrap`` (outside every wrapper piped before)."""
        self._events = wrap(self._events)
        self._layers.append(self._events)

    def __aiter__(self) -> Events:
        return self._events

    @property
    def text(self) -> str:
        """The text read from the provider so far (before stages' per-chunk changes)."""
        return self.buffer.value()

    async def aclose(self) -> None:
        """Stop early: each wrapper closes the one inside it first, down to the source (which
        closes its connection), then sees the stream cancelled; the source is closed last in
        any case, should a wrapper have failed to pass the close on."""
        for layer in (self._events, self._layers[0]):
            closer = getattr(layer, "aclose", None)
            if closer is not None:
                await closer()


_EMPTY = LLMResponse(text="")


def stream_response(stream: LLMStream) -> LLMResponse:
    """The response a stream travels in before it ends (its text is in the events)."""
    return copy_with(_EMPTY, {"stream": stream})


def replay(response: LLMResponse, now: float, chunk_chars: int = REPLAY_CHUNK_CHARS) -> LLMResponse:
    """A complete answer as a stream (a cache hit, a transport that cannot stream): its text in
    chunks, then usage, finish and the end, so the caller's code path is the same. The chunks
    are cut as they are read (a copy of the answer is never made); the stream's text is the
    whole answer from the start."""
    final = copy_with(response, {"stream": None}) if response.stream is not None else response
    text = final.text

    async def events() -> AsyncGenerator[StreamEvent, None]:
        for i in range(0, len(text), chunk_chars):
            yield TextDelta(text[i:i + chunk_chars])
        yield StreamUsage(final.usage)
        yield Finish(final.finish_reason)
        yield StreamEnd(final)

    return stream_response(LLMStream(events(), opened_at=now, first_at=now, buffer=TextBuffer(text)))


async def collect(stream: LLMStream) -> LLMResponse:
    """Read a stream to its end and return the final response."""
    final: LLMResponse | None = None
    async for event in stream:
        if type(event) is StreamEnd:
            final = event.response
    if final is None:  # pragma: no cover - every source ends with StreamEnd
        raise RuntimeError("the stream ended without its final response")
    return final


async def at_end(
    events: Events,
    ended: Callable[[LLMResponse], Awaitable[LLMResponse]],
    failed: Callable[[BaseException | None], Awaitable[None]] | None = None,
) -> AsyncGenerator[StreamEvent, None]:
    """Pass every event through; call ``ended(final)`` (its result becomes the final response)
    when the stream ends, or ``failed(error)`` when it fails (``None``: cancelled/abandoned).

    What end-only stages (log, cache, breaker, rate limit) pipe their streams through: one
    ``type() is`` check per chunk.
    """
    done = False
    try:
        async for event in events:
            if type(event) is StreamEnd:
                event = StreamEnd(await ended(event.response))
                done = True
            yield event
    except GeneratorExit:
        await _close(events)  # inner stages first: the attempt is recorded before this sees it
        if failed is not None and not done:
            await failed(None)
        raise
    except asyncio.CancelledError:
        if failed is not None:
            await failed(None)
        raise
    except BaseException as exc:
        if failed is not None:
            await failed(exc)
        raise
    finally:
        await _close(events)


async def _close(events: Events) -> None:
    closer = getattr(events, "aclose", None)
    if closer is not None:
        await closer()


# -- the default for stages that know nothing about streams ---------------------------------------


async def stream_default(handle: Callable[[LLMRequest, Next], Coroutine[Any, Any, LLMResponse]],
                         request: LLMRequest, call_next: Next) -> LLMResponse:
    """Run a stream-unaware stage's ``handle`` on a streamed call.

    Its ``call_next`` opens the stream inside, hands it outward at once (chunks pass the stage
    untouched, unbuffered), and returns to the stage the *final* response when the stream ends
    (or raises the stream's error): the stage then does what it always does, and what it returns
    is the call's final response (what it raises, the call's error). A failure before the first
    chunk reaches the stage as a plain error, so a retrying stage retries it.
    """
    if not request.stream:
        return await handle(request, call_next)
    loop = asyncio.get_running_loop()
    handed: asyncio.Future[LLMResponse] = loop.create_future()
    ended: asyncio.Future[LLMResponse] = loop.create_future()

    async def inner(req: LLMRequest) -> LLMResponse:
        response = await call_next(req)
        stream = response.stream
        if stream is None:
            return response
        if handed.done():  # the stage called inward again after handing a stream out: whole
            return await collect(stream)
        handed.set_result(response)
        return await ended

    task = loop.create_task(handle(request, inner))
    try:
        await asyncio.wait((task, handed), return_when=asyncio.FIRST_COMPLETED)
    except asyncio.CancelledError:
        task.cancel()
        raise
    if not handed.done():
        handed.cancel()
        answered: LLMResponse = task.result()
        return answered  # answered (or failed) without a stream
    response = handed.result()
    response.stream.pipe(lambda events: _through_stage(events, ended, task))
    return response


async def _through_stage(events: Events, ended: asyncio.Future[LLMResponse],
                         task: asyncio.Task[LLMResponse]) -> AsyncGenerator[StreamEvent, None]:
    try:
        async for event in events:
            if type(event) is StreamEnd:
                ended.set_result(event.response)
                final = await task
                if final.text != event.response.text:
                    yield Replaced(final, "a stage replaced the answer")
                event = StreamEnd(copy_with(final, {"stream": None}) if final.stream else final)
            yield event
    except (GeneratorExit, asyncio.CancelledError):
        task.cancel()
        raise
    except BaseException as exc:
        if ended.done() or task.done():
            raise
        ended.set_exception(exc)
        final = await task  # the stage's own error, if it raises one, replaces the stream's
        yield Replaced(final, f"a stage answered after the stream failed ({type(exc).__name__})")
        yield StreamEnd(final)
    finally:
        await _close(events)


def on_final(response: LLMResponse, change: Callable[[LLMResponse], LLMResponse]) -> LLMResponse:
    """``change(response)`` for a whole answer; for a streamed one, ``change`` is applied to
    its final response when the stream ends (the chunks pass untouched)."""
    stream = response.stream
    if stream is None:
        return change(response)

    async def ended(final: LLMResponse) -> LLMResponse:
        return change(final)

    stream.pipe(lambda events: at_end(events, ended))
    return response


def on_final_async(response: LLMResponse,
                   change: Callable[[LLMResponse], Awaitable[LLMResponse]]) -> LLMResponse:
    """``on_final`` for a streamed response with an async ``change`` (store I/O at the end)."""
    stream = response.stream
    assert stream is not None
    stream.pipe(lambda events: at_end(events, change))
    return response
