"""Stages that each break one clause of the middleware contract, to prove the suite can fail."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator
from typing import Any

from pydantic import BaseModel, ConfigDict

from llmchain import (
    CallError,
    GaveUp,
    LLMRequest,
    LLMResponse,
    LLMStream,
    Next,
    StreamEnd,
    StreamEvent,
    TextDelta,
    TimeoutExceeded,
    on_final,
)
from llmchain._clock import REAL_CLOCK, Clock
from llmchain._stream import collect, replay


class Good:
    """Passes everything through; obeys every clause."""

    class Options(BaseModel):
        model_config = ConfigDict(frozen=True, extra="forbid")
        level: int = 1

    def __init__(self, options: Options | None = None, *, clock: Clock = REAL_CLOCK) -> None:
        self.options = options or self.Options()
        self.clock = clock

    async def handle(self, request: LLMRequest, call_next: Next) -> LLMResponse:
        return await call_next(request)


class DropsHeaders(Good):
    async def handle(self, request: LLMRequest, call_next: Next) -> LLMResponse:
        response = await call_next(request)
        return response.model_copy(update={"headers": {}})


class CallsTwice(Good):
    async def handle(self, request: LLMRequest, call_next: Next) -> LLMResponse:
        await call_next(request)
        return await call_next(request)


class ChangesTemperature(Good):
    async def handle(self, request: LLMRequest, call_next: Next) -> LLMResponse:
        return await call_next(request.model_copy(update={"temperature": 1.0}))


class FillsCost(Good):
    """Prices every call: fills usage.cost_usd where the provider gave none."""

    async def handle(self, request: LLMRequest, call_next: Next) -> LLMResponse:
        response = await call_next(request)
        if response.usage.cost_usd is not None:
            return response
        usage = response.usage.model_copy(update={"cost_usd": 0.001})
        return response.model_copy(update={"usage": usage})


class Memoizes(Good):
    """Remembers answers by prompt: a cache that forgot it is one."""

    def __init__(self, options: Good.Options | None = None, *, clock: Clock = REAL_CLOCK) -> None:
        super().__init__(options, clock=clock)
        self.seen: dict[str, LLMResponse] = {}

    async def handle(self, request: LLMRequest, call_next: Next) -> LLMResponse:
        key = request.messages[-1].content
        if key not in self.seen:
            self.seen[key] = await call_next(request)
        return self.seen[key]


class SwallowsErrors(Good):
    async def handle(self, request: LLMRequest, call_next: Next) -> LLMResponse:
        try:
            return await call_next(request)
        except CallError:
            return LLMResponse(text="")


class RaisesForeign(Good):
    async def handle(self, request: LLMRequest, call_next: Next) -> LLMResponse:
        try:
            return await call_next(request)
        except CallError as exc:
            raise ValueError("something went wrong") from exc


class LosesTheCause(Good):
    async def handle(self, request: LLMRequest, call_next: Next) -> LLMResponse:
        try:
            return await call_next(request)
        except CallError:
            raise GaveUp("gave up") from None


class RetriesCancellation(Good):
    async def handle(self, request: LLMRequest, call_next: Next) -> LLMResponse:
        for _ in range(3):
            try:
                return await call_next(request)
            except BaseException:  # the bug under test: cancellation caught and retried
                await self.clock.sleep(0.1)
        raise GaveUp("gave up")


class CancellationToTimeout(Good):
    async def handle(self, request: LLMRequest, call_next: Next) -> LLMResponse:
        try:
            return await call_next(request)
        except asyncio.CancelledError:
            raise TimeoutExceeded("cancelled, so: timed out") from None


class IgnoresOuterCancel(Good):
    """Shields the inner call and swallows the caller's first cancellation."""

    async def handle(self, request: LLMRequest, call_next: Next) -> LLMResponse:
        inner = asyncio.ensure_future(call_next(request))
        try:
            return await asyncio.shield(inner)
        except asyncio.CancelledError:
            return await inner  # keeps waiting; only a second cancel gets through


class MutatesMetadata(Good):
    async def handle(self, request: LLMRequest, call_next: Next) -> LLMResponse:
        request.metadata["seen_by"] = "me"
        return await call_next(request)


class MutatesSchema(Good):
    async def handle(self, request: LLMRequest, call_next: Next) -> LLMResponse:
        if request.output_schema is not None:
            request.output_schema["additionalProperties"] = False
        return await call_next(request)


class MutatesInnerNotes(Good):
    async def handle(self, request: LLMRequest, call_next: Next) -> LLMResponse:
        response = await call_next(request)
        response.notes["touched"] = True
        return response


class SleepsPastDeadline(Good):
    """Retries after Retry-After without clipping the wait to the deadline."""

    async def handle(self, request: LLMRequest, call_next: Next) -> LLMResponse:
        try:
            return await call_next(request)
        except CallError as exc:
            await self.clock.sleep(exc.retry_after if exc.retry_after is not None else 1.0)
            return await call_next(request)


class ExtendsDeadline(Good):
    async def handle(self, request: LLMRequest, call_next: Next) -> LLMResponse:
        later = None if request.deadline is None else request.deadline + 60
        return await call_next(request.model_copy(update={"deadline": later}))


class SleepsForReal(Good):
    async def handle(self, request: LLMRequest, call_next: Next) -> LLMResponse:
        await asyncio.sleep(10)
        return await call_next(request)


class BoundToFirstLoop(Good):
    """Keeps a loop-bound resource (as an HTTP session would) from the first call."""

    def __init__(self, options: Good.Options | None = None, *, clock: Clock = REAL_CLOCK) -> None:
        super().__init__(options, clock=clock)
        self.loop: asyncio.AbstractEventLoop | None = None

    async def handle(self, request: LLMRequest, call_next: Next) -> LLMResponse:
        loop = asyncio.get_running_loop()
        self.loop = self.loop or loop
        if self.loop is not loop:
            raise RuntimeError("attached to a different loop")
        return await call_next(request)


class DiffersOffMainThread(Good):
    async def handle(self, request: LLMRequest, call_next: Next) -> LLMResponse:
        response = await call_next(request)
        if threading.current_thread() is not threading.main_thread():
            return response.model_copy(update={"text": response.text.upper()})
        return response


class AcceptsUnknownOptions(Good):
    class Options(BaseModel):  # pydantic's default: unknown keys silently ignored
        model_config = ConfigDict(frozen=True)
        level: int = 1


class MutableOptions(Good):
    class Options(BaseModel):
        model_config = ConfigDict(extra="forbid")
        level: int = 1


def factory_function(options: Any = None, *, clock: Clock = REAL_CLOCK) -> Good:
    """A plain function can be a stage factory too (no Options: takes no options)."""
    return Good(clock=clock)


# -- streams ---------------------------------------------------------------------------------------


class BuffersStream(Good):
    """Reads the whole stream before answering: nothing reaches the caller until it ends."""

    handles_streams = True

    async def handle(self, request: LLMRequest, call_next: Next) -> LLMResponse:
        response = await call_next(request)
        if response.stream is None:
            return response
        final = await collect(response.stream)
        return replay(final, self.clock.now())


class ChangesFinalText(Good):
    """Lets the chunks through but ends with a different answer, saying nothing."""

    handles_streams = True

    async def handle(self, request: LLMRequest, call_next: Next) -> LLMResponse:
        return on_final(await call_next(request), lambda r: r.model_copy(update={"text": "other"}))


class DetachesStream(Good):
    """Wraps the events in a stream of its own that forgets to close the one inside."""

    handles_streams = True

    async def handle(self, request: LLMRequest, call_next: Next) -> LLMResponse:
        response = await call_next(request)
        if response.stream is None:
            return response
        inner = response.stream

        async def events() -> AsyncIterator[StreamEvent]:
            async for event in inner:
                yield event

        return response.model_copy(update={"stream": LLMStream(events(), opened_at=0.0, first_at=0.0)})


class SwallowsStreamError(Good):
    """Ends a broken stream as if it had completed."""

    handles_streams = True

    async def handle(self, request: LLMRequest, call_next: Next) -> LLMResponse:
        response = await call_next(request)
        stream = response.stream
        if stream is None:
            return response

        def swallow(events: AsyncIterator[StreamEvent]) -> AsyncIterator[StreamEvent]:
            async def wrapped() -> AsyncIterator[StreamEvent]:
                text = ""
                try:
                    async for event in events:
                        if isinstance(event, TextDelta):
                            text += event.text
                        yield event
                except CallError:
                    yield StreamEnd(LLMResponse(text=text))
            return wrapped()

        stream.pipe(swallow)
        return response


class KeywordOnlyNext(Good):
    """Insists on call_next by keyword; the core passes it positionally."""

    async def handle(self, request: LLMRequest, *, call_next: Next) -> LLMResponse:  # type: ignore[override]
        return await call_next(request)


class RolesAsList(Good):
    """Declares its roles as a list of mixed things instead of a frozenset of strings."""

    roles = ["retry", 3]  # type: ignore[assignment]


class SyncClose(Good):
    """Declares aclose, but not as a coroutine: Chain.aclose would await None."""

    def aclose(self) -> None:
        pass
