"""A scripted ``call_next``: test one stage alone, with no chain, transport or network.

Hand a ``ScriptedNext`` to ``stage.handle(request, call_next=...)``. Each call records the
request it was given and plays the next step of its script::

    inner = ScriptedNext("first", RateLimited("slow down", retry_after=2), Delay(5, "late"), clock=clock)
    response = await stage.handle(request, inner)
    assert [r.attempt for r in inner.calls] == [1, 2, 3]

Steps: a text (a plain answer), an ``LLMResponse``, an exception instance (raised as is, so a
test can check identity) or class, ``Delay(seconds, then)`` (waits on the clock first), ``Hang()``
(blocks until cancelled), or a callable of the request returning any of these. When the script
runs out the last step repeats (so ``ScriptedNext(TransportError("down"))`` always fails); an
empty script echoes the last user message.

Like the chain's innermost end, it honours the request's deadline: a call that starts after the
deadline, or a delay that would run past it, raises ``TimeoutExceeded(phase="deadline")``.
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Union, cast

from .._clock import Clock
from .._exceptions import TimeoutExceeded
from .._models import LLMRequest, LLMResponse, Usage
from .clock import FakeClock


@dataclass(frozen=True)
class Delay:
    """Wait ``seconds`` on the clock, then play ``then``."""

    seconds: float
    then: Step = "ok"


@dataclass(frozen=True)
class Hang:
    """Block until the caller is cancelled (the fake clock does not move meanwhile)."""


Step = Union[  # noqa: UP007 - a runtime alias: `|` cannot combine these on Python 3.10
    str, LLMResponse, BaseException, type[BaseException], Delay, Hang, Callable[[LLMRequest], Any]
]


class ScriptedNext:
    """Records every request it is called with and plays scripted outcomes.

    ``calls`` (requests, in order), ``results`` (``"ok"``, an error type name, or
    ``"cancelled"``) and ``times`` (clock time at entry) describe what the stage did.
    """

    def __init__(
        self,
        *script: Step,
        clock: Clock | None = None,
        enforce_deadline: bool = True,
    ) -> None:
        self.clock: Clock = clock if clock is not None else FakeClock()
        self.script: list[Step] = list(script)
        self.enforce_deadline = enforce_deadline
        self.calls: list[LLMRequest] = []
        self.results: list[str] = []
        self.times: list[float] = []
        self._position = 0

    @property
    def call_count(self) -> int:
        return len(self.calls)

    @property
    def last_request(self) -> LLMRequest:
        if not self.calls:
            raise AssertionError("call_next was never called")
        return self.calls[-1]

    def push(self, *steps: Step) -> ScriptedNext:
        """Append steps to the script (returns self, for chaining)."""
        self.script.extend(steps)
        return self

    def _next_step(self, request: LLMRequest) -> Step:
        if not self.script:
            users = [m.text for m in request.messages if m.role == "user"]
            return users[-1] if users else ""
        step = self.script[min(self._position, len(self.script) - 1)]
        self._position += 1
        return step

    async def __call__(self, request: LLMRequest) -> LLMResponse:
        self.calls.append(request)
        self.times.append(self.clock.now())
        try:
            response = await self._play(request)
        except asyncio.CancelledError:
            self.results.append("cancelled")
            raise
        except BaseException as exc:
            self.results.append(type(exc).__name__)
            raise
        self.results.append("ok")
        return response

    async def _play(self, request: LLMRequest) -> LLMResponse:
        self._check_deadline(request)
        step = self._next_step(request)
        while True:
            if isinstance(step, Delay):
                await self._wait(step.seconds, request)
                step = step.then
            elif isinstance(step, Hang):
                await asyncio.Event().wait()  # nothing sets it: only cancellation ends this
            elif isinstance(step, BaseException):
                raise step
            elif isinstance(step, type) and issubclass(step, BaseException):
                raise step(f"scripted {step.__name__}")
            elif isinstance(step, LLMResponse):
                return step
            elif isinstance(step, str):
                return LLMResponse(
                    text=step,
                    model=request.model,
                    finish_reason="stop",
                    usage=Usage(input_tokens=1, output_tokens=max(1, len(step) // 4)),
                )
            elif callable(step):
                result: Any = cast(Callable[[LLMRequest], Any], step)(request)
                step = await result if inspect.isawaitable(result) else result
            else:
                raise TypeError(f"scripted step {step!r} is not a str, LLMResponse, exception, Delay or Hang")

    def _check_deadline(self, request: LLMRequest) -> None:
        if self.enforce_deadline and request.deadline is not None and self.clock.now() >= request.deadline:
            raise TimeoutExceeded("the call's deadline passed before this attempt", phase="deadline")

    async def _wait(self, seconds: float, request: LLMRequest) -> None:
        left = None if request.deadline is None else request.deadline - self.clock.now()
        if self.enforce_deadline and left is not None and seconds >= left:
            await self.clock.sleep(max(0.0, left))
            raise TimeoutExceeded("the call's deadline ran out during this attempt", phase="deadline")
        await self.clock.sleep(seconds)

    def __repr__(self) -> str:
        return f"ScriptedNext(steps={len(self.script)}, calls={len(self.calls)}, results={self.results})"
