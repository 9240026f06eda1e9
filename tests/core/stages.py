"""Test-only stages and a plugin module registering them (used by several core tests)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from llmchain import LLMRequest, LLMResponse, Next, hookimpl
from llmchain._clock import REAL_CLOCK, Clock


class Recorder(BaseModel):
    """Where recording stages write what they saw, in order."""

    events: list[str] = Field(default_factory=list)


TRACE = Recorder()


class RecordingStage:
    """Records entry and exit, then passes through."""

    class Options(BaseModel):
        model_config = ConfigDict(frozen=True, extra="forbid")
        label: str = "r"
        repeat: int = Field(1, ge=0, description="How many times to call call_next.")

    def __init__(self, options: Options | None = None, *, clock: Clock = REAL_CLOCK) -> None:
        self.options = options or self.Options()
        self.clock = clock

    async def handle(self, request: LLMRequest, call_next: Next) -> LLMResponse:
        TRACE.events.append(f"in:{self.options.label}")
        if self.options.repeat == 0:
            return LLMResponse(text=f"short-circuit by {self.options.label}")
        response = None
        for _ in range(self.options.repeat):
            response = await call_next(request)
        TRACE.events.append(f"out:{self.options.label}")
        assert response is not None
        return response


class NoOptionsStage:
    """A stage without options."""

    def __init__(self, *, clock: Clock = REAL_CLOCK) -> None:
        self.clock = clock

    async def handle(self, request: LLMRequest, call_next: Next) -> LLMResponse:
        return await call_next(request)


@hookimpl
def register_middleware(register: Callable[[str, Any], None]) -> None:
    register("record", RecordingStage)
    register("record_b", RecordingStage)
    register("plain", NoOptionsStage)
