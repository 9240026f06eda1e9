"""The callers' side of streaming: ``chain.astream()`` and ``chain.stream()``.

Both send the request (``stream=True``) through the chain's composed stages, like
``complete()``, and iterate the events of the ``LLMStream`` that comes out (``_stream``); the sync
iterator reads them on llmchain's loop (``_stream_sync``).
Iterating yields the answer's text chunks; ``events()`` yields the typed events (text and
tool-call deltas, partial objects, usage, finish, replaced, end). When the stream ends, the
final ``LLMResponse`` (text, usage, attempts, latency, what stages did) is on ``.response``.

Breaking out of the loop (``aclose()`` / ``close()``, leaving ``with``, or dropping the
iterator) ends the stream at once: every stage sees it cancelled (the log line says so) and the
connection is closed.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncGenerator, AsyncIterator
from types import TracebackType
from typing import Any, Protocol

from ._clock import Clock
from ._events import CallTrace, current_call
from ._exceptions import CallError, LLMChainError
from ._models import LLMRequest, LLMResponse, copy_with
from ._prices import PriceTable
from ._stream import Events, LLMStream, StreamEnd, StreamEvent, TextDelta, replay
from ._usage import account
from ._wrap import wrap_foreign


class Runner(Protocol):
    """What a stream uses of its ``Chain``: a protocol rather than an import, because the chain
    imports this module (no import cycle)."""

    @property
    def clock(self) -> Clock: ...

    prices: PriceTable

    async def _run(self, request: LLMRequest) -> LLMResponse: ...

    def _end(self, trace: CallTrace, start: float, error: BaseException | None,
             response: LLMResponse | None = None, stream: bool = False) -> None: ...


class ResponseStream:
    """Async iterator of an answer's text chunks; ``.response`` is set when it ends."""

    def __init__(self, chain: Runner, request: LLMRequest) -> None:
        self.request = request
        self.response: LLMResponse | None = None
        self._chain = chain
        self._stream: LLMStream | None = None
        self._events: Events | None = None
        self._done = False

    def __aiter__(self) -> ResponseStream:
        return self

    async def __anext__(self) -> str:
        while True:
            event = await self.next_event()
            if type(event) is TextDelta:
                return event.text

    async def events(self) -> AsyncIterator[StreamEvent]:
        """The typed events, ending with ``StreamEnd`` (whose response is also ``.response``)."""
        while True:
            try:
                yield await self.next_event()
            except StopAsyncIteration:
                return

    async def next_event(self) -> StreamEvent:
        """The next typed event; ``StopAsyncIteration`` after ``StreamEnd``."""
        if self._done:
            raise StopAsyncIteration
        events = self._events
        if events is None:
            events = await self._open()
        stream = self._stream
        assert stream is not None
        token = current_call.set(stream.trace)  # stages emit events of this call at its end
        try:
            event = await events.__anext__()
        except BaseException:
            self._done = True
            raise
        finally:
            current_call.reset(token)
        if type(event) is StreamEnd:
            self.response = event.response
            self._done = True
            await self._finish(events, stream)
        return event

    @staticmethod
    async def _finish(events: Events, stream: LLMStream) -> None:
        """Let every wrapper run to its end after ``StreamEnd`` (not be closed at a yield)."""
        token = current_call.set(stream.trace)
        try:
            with contextlib.suppress(StopAsyncIteration):
                await events.__anext__()
        finally:
            current_call.reset(token)

    async def _open(self) -> Events:
        try:
            response = await self._chain._run(self.request)
        except BaseException:
            self._done = True
            raise
        stream = response.stream
        assert isinstance(stream, LLMStream)
        self._stream = stream
        self._events = stream.__aiter__()
        return self._events

    async def aclose(self) -> None:
        """Stop early: every stage sees the stream cancelled and the connection is closed."""
        if self._done:
            return
        self._done = True
        stream = self._stream
        if stream is None:
            return
        token = current_call.set(stream.trace)
        try:
            await stream.aclose()
        finally:
            current_call.reset(token)

    async def __aenter__(self) -> ResponseStream:
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        await self.aclose()

    @property
    def text(self) -> str:
        """The answer's text: the final response's once the stream has ended, before that the
        text received from the provider so far (held once, by the chain: no copy is kept here;
        it is the provider's text, before per-chunk stage changes such as redact's)."""
        if self.response is not None:
            return self.response.text
        return self._stream.text if self._stream is not None else ""

    @property
    def done(self) -> bool:
        """Whether the stream has ended (completed, failed or closed)."""
        return self._done


def streamed_call(chain: Runner, request: LLMRequest, response: LLMResponse, trace: CallTrace,
                  start: float) -> LLMResponse:
    """``Chain._run``'s end for a streamed call: the call ends with its stream (attempts,
    latency and ``call_end`` then; errors normalised as for ``complete()``)."""
    if response.stream is None:  # a stage answered whole (e.g. a cache hit of a stage of its own)
        response = replay(response, chain.clock.now())
    stream = response.stream
    stream.trace = trace
    stream.pipe(lambda events: _call_end(chain, events, request, trace, start))
    return response


async def _call_end(chain: Runner, events: Events, request: LLMRequest, trace: CallTrace,
                    start: float) -> AsyncGenerator[StreamEvent, None]:
    done = False
    try:
        async for event in events:
            if type(event) is StreamEnd:
                done = True
                final = event.response
                update: dict[str, Any] = {
                    "attempts": tuple(trace.attempts), "latency_s": chain.clock.now() - start,
                    "request_id": request.request_id, "notes": {**final.notes, "streamed": True}}
                if final.served_by is None and trace.attempts:
                    update["served_by"] = trace.attempts[-1].served_by
                final = account(copy_with(final, update), trace.billed, chain.prices)
                chain._end(trace, start, None, final, stream=True)
                event = StreamEnd(final)
            yield event
    except GeneratorExit:
        await events.aclose()  # type: ignore[attr-defined]  # the stages and the attempt see it first
        if not done:
            chain._end(trace, start, asyncio.CancelledError(), stream=True)
        raise
    except CallError as exc:
        chain._end(trace, start, exc, stream=True)
        raise exc.with_context(
            request_id=request.request_id, attempts=trace.attempts, summary=request.summary()
        ) from exc.__cause__
    except (asyncio.CancelledError, LLMChainError) as exc:
        chain._end(trace, start, exc, stream=True)
        raise
    except Exception as exc:
        wrapped = wrap_foreign(exc, in_transport=False).with_context(
            request_id=request.request_id, attempts=trace.attempts, summary=request.summary())
        chain._end(trace, start, wrapped, stream=True)
        raise wrapped from exc
    finally:
        closer = getattr(events, "aclose", None)
        if closer is not None:
            await closer()
