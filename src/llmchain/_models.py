"""The data that flows through a chain: requests, responses, usage and attempts.

Every model is a frozen pydantic v2 model: stages never mutate a request, they derive a new
one with ``request.model_copy(update=...)``. Construction validates user input once at the
edge (``Chain.acomplete``); internal copies skip validation.
"""

from __future__ import annotations

import uuid
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

Role = Literal["system", "user", "assistant", "tool"]
Outcome = Literal["ok", "error", "timeout", "cancelled"]
CacheStatus = Literal["hit", "miss", "bypass", "refresh", "off"]


def new_request_id() -> str:
    """A fresh request id: 32 hex characters, unique enough to grep a week of logs."""
    return uuid.uuid4().hex


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", arbitrary_types_allowed=True)


class Message(_Frozen):
    """One chat message."""

    role: Role
    content: str
    name: str | None = None


class Usage(_Frozen):
    """Token counts reported by the provider (or estimated when it reports none)."""

    input_tokens: int = 0
    output_tokens: int = 0
    cost_usd: float | None = None

    @property
    def total_tokens(self) -> int:
        return self.input_tokens + self.output_tokens


class Attempt(_Frozen):
    """One call to the transport: what happened, when, and for how long."""

    number: int = Field(ge=1)
    started_at: float = Field(description="Wall-clock start, seconds since the epoch.")
    duration_s: float = Field(ge=0)
    outcome: Outcome
    status_code: int | None = None
    error_type: str | None = None
    error: str | None = Field(None, description="Redacted, trimmed error message.")
    retry_after_s: float | None = None
    served_by: str | None = Field(None, description="Transport/model that was asked.")


class CacheInfo(_Frozen):
    """What the cache did for this call."""

    status: CacheStatus
    age_s: float | None = None
    key: str | None = None


class LLMRequest(_Frozen):
    """One logical call, as the caller asked for it.

    ``deadline`` is an absolute time on the chain's clock (monotonic seconds); it is filled
    from ``timeout_s`` when the call enters the chain, so every wait inside can clip itself
    to what remains.
    """

    model: str | None = Field(None, description="None means the transport's default model.")
    messages: tuple[Message, ...]
    temperature: float | None = None
    max_tokens: int | None = Field(None, ge=1)
    top_p: float | None = None
    stop: tuple[str, ...] | None = None
    seed: int | None = None
    output_schema: dict[str, Any] | None = Field(
        None, description="JSON Schema the answer must satisfy (structured output)."
    )
    output_type: type[BaseModel] | None = Field(
        None, exclude=True, description="Pydantic model the answer is validated into."
    )
    extra: dict[str, Any] = Field(
        default_factory=dict, description="Provider-specific body parameters, passed through."
    )
    metadata: dict[str, Any] = Field(
        default_factory=dict, description="Per-call controls for stages (e.g. cache='bypass')."
    )
    request_id: str = Field(default_factory=new_request_id)
    timeout_s: float | None = Field(None, gt=0, description="Total time allowed for the call.")
    deadline: float | None = Field(None, description="Absolute deadline on the chain's clock.")
    attempt: int = Field(1, ge=1, description="Set by retrying stages; 1 on the first try.")

    def remaining(self, now: float) -> float | None:
        """Seconds left before the deadline (may be negative), or None without a deadline."""
        return None if self.deadline is None else self.deadline - now

    def summary(self) -> str:
        """One line describing what is sent, without message bodies."""
        chars = sum(len(m.content) for m in self.messages)
        schema = ", structured" if self.output_schema or self.output_type else ""
        return f"model={self.model or 'default'}, {len(self.messages)} message(s), {chars} chars{schema}"


class LLMResponse(_Frozen):
    """The answer, with everything needed to explain how it was obtained."""

    text: str
    parsed: Any = None
    usage: Usage = Field(default_factory=Usage)
    model: str | None = None
    finish_reason: str | None = None
    latency_s: float = 0.0
    attempts: tuple[Attempt, ...] = ()
    cache: CacheInfo | None = None
    headers: dict[str, str] = Field(
        default_factory=dict, description="Useful provider headers (request id, rate limits)."
    )
    served_by: str | None = None
    request_id: str | None = None
    notes: dict[str, Any] = Field(
        default_factory=dict, description="What stages did (e.g. repaired=True), for logs."
    )
