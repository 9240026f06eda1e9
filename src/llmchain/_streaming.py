"""Streaming: ``chain.astream()`` / ``chain.stream()`` yield text chunks as they arrive; the final
``LLMResponse`` (text, usage, attempts, latency) is on the iterator's ``.response`` afterwards.

Which stages apply — decided, not accidental: **a stream goes straight to the transport**. A
stage's ``handle()`` returns one whole ``LLMResponse``, so cache, parse, validate, repair and log
cannot act on text that is still arriving, and running them on a stub would be wrong (a cache
would store a partial answer). What streams do keep:

* the call's deadline: each chunk waits at most what is left (``TimeoutExceeded``, phase
  ``deadline``), so a server that trickles or hangs mid-stream cannot hold the caller;
* attempts recorded in the call trace and observers' events (``call_start``, ``attempt_*``,
  ``retry_scheduled``, ``call_end``), as ``TransportCall`` records them for ``complete()``;
* errors normalised exactly as ``complete()`` does (one typed ``CallError`` with context);
* a retry **before the first chunk** of retryable failures (429, 5xx, resets, an overloaded
  event before any text), when the chain has a ``retry`` stage: its ``max_attempts``, backoff
  and ``max_retry_after_s`` apply (its retry budget does not), waits honour ``retry_after``
  and the deadline, and ``request.metadata["stream_attempts"]`` overrides the count. Once text
  has been yielded an error is raised, never retried: the caller has already seen part of an
  answer.

A transport without ``stream()`` (e.g. ``mock``) is called through the whole chain with
``acomplete`` and its answer is yielded as one chunk, so every chain can be streamed.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from types import TracebackType
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from ._compose import TransportCall
from ._events import CallTrace, current_call
from ._exceptions import CallError, TimeoutExceeded
from ._loop import LOOP
from ._models import LLMRequest, LLMResponse, Outcome
from ._wrap import wrap_foreign
from .middleware.retry import is_retryable
from .policies.backoff import Backoff

if TYPE_CHECKING:
    from ._chain import Chain


@runtime_checkable
class StreamingTransport(Protocol):
    """A transport that can stream: text deltas, then the complete LLMResponse as last item."""

    def stream(self, request: LLMRequest) -> AsyncIterator[str | LLMResponse]: ...


class ResponseStream:
    """Async iterator of an answer's text chunks; ``.response`` is set when it ends."""

    def __init__(self, chain: Chain, request: LLMRequest) -> None:
        clock = chain.clock
        if request.deadline is None and chain.timeout_s is not None:
            request = request.model_copy(update={"deadline": clock.now() + chain.timeout_s})
        self.request = request
        self.response: LLMResponse | None = None
        self._chain = chain
        self._clock = clock
        self._recorder = TransportCall(chain.transport, clock)
        self._trace = CallTrace(request.request_id, chain._observers, clock.wall)
        self._gen: AsyncIterator[str | LLMResponse] | None = None
        self._chunks: list[str] = []
        self._started = clock.now()
        self._attempt_t0 = self._attempt_wall = 0.0
        self._native = isinstance(chain.transport, StreamingTransport)
        self._retry = _retry_policy(chain, request) if self._native else _NO_RETRY
        self._done = False
        if self._trace.observers:
            self._trace.emit("call_start", None, {"model": request.model, "stream": True,
                                                  "transport": chain.transport.name})

    def __aiter__(self) -> ResponseStream:
        return self

    async def __anext__(self) -> str:
        if self._done:
            raise StopAsyncIteration
        token = current_call.set(self._trace)
        try:
            return await self._next()
        except StopAsyncIteration:
            self._done = True
            raise
        except asyncio.CancelledError:
            await self._stop("cancelled", None)
            raise
        except CallError as exc:
            raise self._fail(exc) from exc.__cause__
        except Exception as exc:
            raise self._fail(wrap_foreign(exc)) from exc
        finally:
            current_call.reset(token)

    async def _next(self) -> str:
        while True:
            if self._gen is None:
                self._open()
            assert self._gen is not None
            try:
                item = await self._within_deadline(self._gen.__anext__())
            except StopAsyncIteration:  # a transport that sent no final response
                item = LLMResponse(text="".join(self._chunks))
            except CallError as exc:
                await self._retry_or_raise(exc)
                continue
            except Exception as exc:
                await self._retry_or_raise(wrap_foreign(exc, self._chain.transport.name))
                continue
            if isinstance(item, str):
                if item:
                    self._chunks.append(item)
                    return item
                continue
            self._finish(item)
            raise StopAsyncIteration

    def _open(self) -> None:
        transport = self._chain.transport
        self._attempt_wall, self._attempt_t0 = self._clock.wall(), self._clock.now()
        if not self._native:  # the whole chain runs and records its own attempts
            self._gen = _whole(self._chain, self.request)
            return
        if self._trace.observers:
            self._trace.emit("attempt_start", "transport", {
                "attempt": len(self._trace.attempts) + 1, "served_by": transport.name})
        self._gen = transport.stream(self.request).__aiter__()  # type: ignore[attr-defined]

    async def _within_deadline(self, step: Any) -> Any:
        deadline = self.request.deadline
        if deadline is None:
            return await step
        left = deadline - self._clock.now()
        if left <= 0:
            step.close()
            raise TimeoutExceeded("the call's deadline passed while streaming", phase="deadline")
        try:
            return await self._clock.wait_for(step, left)  # the clock's own timer, as TransportCall
        except TimeoutError:
            raise TimeoutExceeded(
                f"the call's deadline ran out while streaming ({len(self._chunks)} chunk(s) received)",
                phase="deadline") from None

    async def _retry_or_raise(self, exc: CallError) -> None:
        self._record("timeout" if isinstance(exc, TimeoutExceeded) else "error", exc)
        await self._discard()
        attempts, policy = len(self._trace.attempts), self._retry
        if (not self._native or self._chunks or attempts >= policy.max_attempts
                or not is_retryable(exc)):
            raise exc
        wait = exc.retry_after
        if wait is None or wait > policy.max_retry_after_s:  # a longer ask: not honoured (as openai-python)
            wait = policy.backoff.delay(attempts - 1, random.random())
        deadline = self.request.deadline
        if deadline is not None and self._clock.now() + wait >= deadline:
            raise exc
        if self._trace.observers:
            self._trace.emit("retry_scheduled", "stream", {"attempt": attempts, "wait_s": wait,
                                                           "error_type": type(exc).__name__})
        await self._clock.sleep(wait)

    def _record(self, outcome: Outcome, exc: CallError | None) -> None:
        if not self._native:
            return
        token = current_call.set(self._trace)  # aclose() runs outside __anext__
        try:
            self._recorder.record_attempt(self._trace, self.request, len(self._trace.attempts) + 1,
                                   self._attempt_wall, self._attempt_t0, outcome, exc)
        finally:
            current_call.reset(token)

    def _finish(self, response: LLMResponse) -> None:
        self._record("ok", None)
        self._gen = None
        self._done = True
        self.response = response.model_copy(update={
            "attempts": tuple(self._trace.attempts) if self._native else response.attempts,
            "latency_s": self._clock.now() - self._started,
            "request_id": self.request.request_id,
            "served_by": response.served_by or self._chain.transport.name,
            "notes": {**response.notes, "streamed": True},
        })
        self._end(None)

    def _fail(self, exc: CallError) -> CallError:
        self._done = True
        self._end(exc)
        return exc.with_context(request_id=self.request.request_id, attempts=self._trace.attempts,
                                summary=self.request.summary())

    def _end(self, error: CallError | None, outcome: str | None = None) -> None:
        if self._trace.observers:
            self._trace.emit("call_end", None, {
                "outcome": outcome or ("ok" if error is None else "error"),
                "error_type": type(error).__name__ if error is not None else None,
                "latency_s": self._clock.now() - self._started,
                "attempts": len(self._trace.attempts), "stream": True})

    async def _discard(self) -> None:
        gen, self._gen = self._gen, None
        closer = getattr(gen, "aclose", None)
        if closer is not None:
            with contextlib.suppress(Exception):  # the attempt failed already; that is reported
                await closer()

    async def _stop(self, outcome: Outcome, exc: CallError | None) -> None:
        if self._gen is not None:
            self._record(outcome, exc)
            await self._discard()
        if not self._done:
            self._done = True
            self._end(None, outcome)

    async def aclose(self) -> None:
        """Stop early: the open request is abandoned and recorded as cancelled."""
        if not self._done:
            await self._stop("cancelled", None)

    async def __aenter__(self) -> ResponseStream:
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        await self.aclose()

    @property
    def text(self) -> str:
        """The text received so far."""
        return "".join(self._chunks)


class SyncResponseStream:
    """``stream()``'s iterator: each chunk is fetched on llmchain's persistent loop."""

    def __init__(self, stream: ResponseStream) -> None:
        self._stream = stream

    @property
    def response(self) -> LLMResponse | None:
        return self._stream.response

    @property
    def text(self) -> str:
        return self._stream.text

    def __iter__(self) -> Iterator[str]:
        return self

    def __next__(self) -> str:
        try:
            return LOOP.run(self._stream.__anext__())
        except StopAsyncIteration:
            raise StopIteration from None

    def close(self) -> None:
        """Stop early (also done by ``with``); a finished stream needs no closing."""
        if not self._stream._done:
            LOOP.run(self._stream.aclose())

    def __enter__(self) -> SyncResponseStream:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


async def _whole(chain: Chain, request: LLMRequest) -> AsyncIterator[str | LLMResponse]:
    response = await chain.acomplete(request)
    if response.text:
        yield response.text
    yield response


@dataclass(frozen=True)
class _RetryPolicy:
    max_attempts: int
    backoff: Backoff
    max_retry_after_s: float


_NO_RETRY = _RetryPolicy(1, Backoff(), 0.0)


def _retry_policy(chain: Chain, request: LLMRequest) -> _RetryPolicy:
    """The chain's retry stage settings (none: no retry), ``stream_attempts`` overriding."""
    options: Any = next((getattr(stage, "options", None) for _, kind, stage in chain._stages
                         if kind == "retry"), None)
    attempts = request.metadata.get("stream_attempts", getattr(options, "max_attempts", 1))
    if options is None:
        return _RetryPolicy(int(attempts), Backoff(), 60.0)
    return _RetryPolicy(int(attempts), Backoff(options.base_s, options.cap_s, options.jitter),
                        options.max_retry_after_s)


def astream(chain: Chain, request: LLMRequest) -> ResponseStream:
    """What ``Chain.astream`` returns."""
    return ResponseStream(chain, request)


def stream(chain: Chain, request: LLMRequest) -> SyncResponseStream:
    """What ``Chain.stream`` returns."""
    return SyncResponseStream(ResponseStream(chain, request))
