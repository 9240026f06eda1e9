"""An in-process transport with scripted outcomes, for tests, demos and users' own tests.

Each call takes the next entry of the script: a reply text, an ``LLMResponse``, an exception
to raise, a ``MockReply`` (text, tool calls or error after a delay), or a callable of the
request returning any of these. When the script runs out, ``default`` answers (``"echo"``
repeats the last user message; its images and documents are described, e.g. ``[image/png 34
KB]``, so a test can see they arrived). In TOML::

    [transport]
    use = "mock"
    replies = ["first answer", { error = "rate_limited", retry_after = 1 }, { text = "{}", delay_s = 0.2 },
               { tool_calls = [{ name = "get_weather", arguments = { city = "Paris" } }] }]

Scripted tool calls get ids ``call_1``, ``call_2``... unless they name one; arguments may be a
table (sent as JSON) or the raw JSON text.
"""

from __future__ import annotations

import copy
import hashlib
import inspect
import itertools
import json
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import Field

from .._clock import REAL_CLOCK, Clock
from .._content import content_chars, describe_content
from .._exceptions import (
    CallError,
    ProviderError,
    RateLimited,
    TimeoutExceeded,
    TransportError,
)
from .._media_tokens import part_tokens
from .._models import LLMRequest, LLMResponse, ToolCall, Usage
from .._stage import StageOptions
from ..hookspecs import hookimpl

MockError = Literal["timeout", "rate_limited", "server_error", "overloaded", "reset", "bad_request", "auth"]


@dataclass(frozen=True)
class MockReply:
    """One scripted outcome: ``text`` (or ``error``) after ``delay_s`` on the transport's clock."""

    text: str | None = None
    error: MockError | None = None
    delay_s: float = 0.0
    status: int | None = None
    retry_after: float | None = None
    input_tokens: int | None = None
    output_tokens: int | None = None
    finish_reason: str = "stop"
    tool_calls: tuple[ToolCall | Mapping[str, Any], ...] = ()


Outcome = str | LLMResponse | BaseException | MockReply | Callable[[LLMRequest], Any]


def make_error(kind: MockError, *, status: int | None = None, retry_after: float | None = None) -> CallError:
    """The typed error a real transport would raise for ``kind``."""
    if kind == "timeout":
        return TimeoutExceeded("mock: the attempt timed out", phase="attempt")
    if kind == "rate_limited":
        return RateLimited("mock: 429 Too Many Requests", status_code=status or 429, retry_after=retry_after)
    if kind in ("server_error", "overloaded"):
        code = status or (529 if kind == "overloaded" else 503)
        return ProviderError(f"mock: HTTP {code}", status_code=code, retry_after=retry_after)
    if kind == "reset":
        return TransportError("mock: connection reset by peer")
    code = status or (401 if kind == "auth" else 400)
    return ProviderError(
        f"mock: HTTP {code}", status_code=code, hint="check the API key" if kind == "auth" else None
    )


class MockTransport:
    """Scripted, in-process stand-in for a provider. Thread- and loop-safe."""

    class Options(StageOptions):
        replies: list[str | dict[str, Any]] = Field(
            default_factory=list, description="Outcomes in order: a text, or a table like MockReply."
        )
        default: str = Field("echo", description='Answer once replies run out; "echo" repeats the prompt.')
        cycle: bool = Field(False, description="Start the replies over instead of using default.")
        latency_s: float = Field(0.0, ge=0, description="Delay added to every call.")
        model: str = Field("mock-1", description="Model name reported when the request names none.")
        embedding_dims: int = Field(8, ge=1, description="Size of the vectors embedding requests get.")

    def __init__(
        self,
        options: Options | None = None,
        *,
        clock: Clock = REAL_CLOCK,
        script: Iterable[Outcome] = (),
    ) -> None:
        self.options = options or self.Options()
        self._clock = clock
        self._script: list[Outcome] = [*self._from_options(self.options), *script]
        self._position = 0
        self._lock = threading.Lock()
        self.calls: list[LLMRequest] = []
        self.name = f"mock:{self.options.model}"
        self.closed = False
        self._call_ids = itertools.count(1)

    @classmethod
    def scripted(cls, *outcomes: Outcome, clock: Clock = REAL_CLOCK, **options: Any) -> MockTransport:
        """``MockTransport.scripted("a", RateLimited(...), MockReply(delay_s=5, text="b"))``."""
        return cls(cls.Options(**options), clock=clock, script=outcomes)

    @staticmethod
    def _from_options(options: Options) -> list[Outcome]:
        out: list[Outcome] = []
        for reply in options.replies:
            if isinstance(reply, dict) and "tool_calls" in reply:
                reply = {**reply, "tool_calls": tuple(reply["tool_calls"])}
            out.append(reply if isinstance(reply, str) else MockReply(**reply))
        return out

    def identity(self) -> dict[str, Any]:
        return {"kind": "mock", "model": self.options.model}

    def _next(self, request: LLMRequest) -> Outcome:
        with self._lock:
            self.calls.append(request)
            if self._position < len(self._script):
                outcome = self._script[self._position]
                self._position += 1
                if self.options.cycle and self._position == len(self._script):
                    self._position = 0
                return outcome
        if self.options.default == "echo":
            user = [describe_content(m.content) for m in request.messages if m.role == "user"]
            return user[-1] if user else ""
        return self.options.default

    async def send(self, request: LLMRequest) -> LLMResponse:
        outcome = self._next(request)
        if self.options.latency_s:
            await self._clock.sleep(self.options.latency_s)
        if callable(outcome) and not isinstance(outcome, (BaseException, LLMResponse, MockReply)):
            outcome = outcome(request)
            if inspect.isawaitable(outcome):
                outcome = await outcome
        return await self._resolve(outcome, request)

    async def _resolve(self, outcome: Any, request: LLMRequest) -> LLMResponse:
        if isinstance(outcome, MockReply):
            if outcome.delay_s:
                await self._clock.sleep(outcome.delay_s)
            if outcome.error is not None:
                raise make_error(outcome.error, status=outcome.status, retry_after=outcome.retry_after)
            return self._response(request, outcome.text or "", outcome)
        if isinstance(outcome, BaseException):
            raise copy.copy(outcome)
        if isinstance(outcome, LLMResponse):
            return outcome
        if isinstance(outcome, str):
            return self._response(request, outcome, None)
        raise TypeError(f"mock script entry {outcome!r} is not a str, LLMResponse, exception or MockReply")

    def _tool_calls(self, reply: MockReply | None) -> tuple[ToolCall, ...]:
        calls = []
        for call in reply.tool_calls if reply else ():
            if not isinstance(call, ToolCall):
                args = call.get("arguments", {})
                call = ToolCall(id=call.get("id") or f"call_{next(self._call_ids)}", name=call["name"],
                                arguments=args if isinstance(args, str) else json.dumps(args))
            calls.append(call)
        return tuple(calls)

    def _response(self, request: LLMRequest, text: str, reply: MockReply | None) -> LLMResponse:
        if request.embed_input is not None:  # a vector per text, the same for the same text
            dims = self.options.embedding_dims
            return LLMResponse(
                text="", embeddings=tuple(mock_vector(t, dims) for t in request.embed_input),
                usage=Usage(input_tokens=sum(max(1, len(t) // 4) for t in request.embed_input)),
                model=request.model or self.options.model)
        prompt_chars = sum(content_chars(m.content) for m in request.messages)
        # images and documents, as a provider would count them
        media = sum(part_tokens(p, "openai") for m in request.messages
                    if not isinstance(m.content, str) for p in m.content)
        usage = Usage(
            input_tokens=reply.input_tokens
            if reply and reply.input_tokens is not None
            else max(1, prompt_chars // 4) + media,
            output_tokens=reply.output_tokens
            if reply and reply.output_tokens is not None
            else max(1, len(text) // 4),
        )
        calls = self._tool_calls(reply)
        finish = reply.finish_reason if reply else "stop"
        return LLMResponse(
            text=text,
            usage=usage,
            model=request.model or self.options.model,
            finish_reason="tool_calls" if calls and finish == "stop" else finish,
            tool_calls=calls,
        )

    async def aclose(self) -> None:
        self.closed = True

    def __repr__(self) -> str:
        scripted, calls = len(self._script), len(self.calls)
        return f"MockTransport(model={self.options.model!r}, scripted={scripted}, calls={calls})"


def mock_vector(text: str, dims: int) -> tuple[float, ...]:
    """A deterministic unit-free vector for ``text`` (its SHA-256 bytes scaled to [-1, 1))."""
    digest = hashlib.sha256(text.encode("utf-8", "surrogatepass")).digest()
    while len(digest) < dims:
        digest += hashlib.sha256(digest).digest()
    return tuple(b / 128.0 - 1.0 for b in digest[:dims])


@hookimpl
def register_transports(register: Callable[[str, Any], None]) -> None:
    register("mock", MockTransport)
