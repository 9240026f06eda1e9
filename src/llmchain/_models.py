"""The data that flows through a chain: requests, responses, usage and attempts.

Every model is a frozen pydantic v2 model: stages never mutate a request, they derive a new
one with ``request.model_copy(update=...)``. Construction validates user input once at the
edge (``Chain.acomplete``); internal copies skip validation.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from typing import Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from ._attempt import Attempt
from ._content import AnyPart, Content, Part, coerce_parts, content_chars, text_of
from ._exceptions import ParseError
from ._tools import Tool, coerce_tool

Role = Literal["system", "user", "assistant", "tool"]
CacheStatus = Literal["hit", "miss", "bypass", "refresh", "off"]
ModelT = TypeVar("ModelT", bound=BaseModel)


def new_request_id() -> str:
    """A fresh request id: 32 hex characters, unique enough to grep a week of logs.

    Exactly ``uuid.uuid4().hex`` (random bits, version 4, RFC 4122 variant), without building a
    ``UUID`` object: a third of the time, on every call.
    """
    raw = bytearray(os.urandom(16))
    raw[6] = (raw[6] & 0x0F) | 0x40
    raw[8] = (raw[8] & 0x3F) | 0x80
    return raw.hex()


def copy_with(model: ModelT, update: Mapping[str, Any]) -> ModelT:
    """``model.model_copy(update=update)``: a shallow copy, not validated (the values come from
    llmchain's own code). One name for every copy the chain and its stages make per call, so
    how copies are made is decided here only, through pydantic's public API."""
    return model.model_copy(update=update)


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", arbitrary_types_allowed=True)


class ToolCall(_Frozen):
    """One call the model asked for: ``arguments`` is the raw JSON text the provider sent.

    Lives with ``Message``: an assistant message carries its calls and ``result()`` answers one
    with a message, one concept (a tool's definition, ``Tool``, is ``_tools``'s).
    """

    id: str
    name: str
    arguments: str = "{}"

    @property
    def args(self) -> dict[str, Any]:
        """The arguments parsed (ParseError when the model sent text that is not a JSON object)."""
        try:
            value = json.loads(self.arguments) if self.arguments.strip() else {}
        except ValueError as exc:
            raise ParseError(f"tool call {self.name} ({self.id}): arguments are not JSON: {exc}",
                             raw_text=self.arguments) from None
        if not isinstance(value, dict):
            raise ParseError(f"tool call {self.name} ({self.id}): arguments are not a JSON object",
                             raw_text=self.arguments)
        return value

    def result(self, content: Any) -> Message:
        """The tool-result message answering this call (non-text results sent as JSON)."""
        parts = isinstance(content, (tuple, list)) and content and all(
            isinstance(p, AnyPart) for p in content)
        if not isinstance(content, str) and not parts:
            content = json.dumps(content, default=str)
        return Message(role="tool", content=content, tool_call_id=self.id)


class Message(_Frozen):
    """One chat message: text, or a tuple of content parts (see ``llmchain._content``).

    Assistant turns may carry ``tool_calls``; a ``role="tool"`` message answers one of them
    and names it in ``tool_call_id``.
    """

    role: Role
    content: Content
    name: str | None = None
    tool_call_id: str | None = None
    tool_calls: tuple[ToolCall, ...] = ()

    _parts = field_validator("content", mode="before")(coerce_parts)

    @property
    def text(self) -> str:
        """The message's text: ``content`` itself, or its text parts joined."""
        return text_of(self.content)


class Usage(_Frozen):
    """Token counts reported by the provider (or estimated when it reports none).

    ``input_tokens`` / ``output_tokens`` / ``cost_usd`` are the final answer's. The ``billed_*``
    fields (filled by the chain) count every answer the provider sent during the call: every
    attempt and re-ask that cost tokens, the final one included (0 for a cache hit).
    """

    input_tokens: int = 0
    output_tokens: int = 0
    cost_usd: float | None = None
    billed_input_tokens: int | None = None
    billed_output_tokens: int | None = None
    billed_cost_usd: float | None = None
    billed_answers: int | None = None

    @property
    def total_tokens(self) -> int:
        return self.input_tokens + self.output_tokens

    @property
    def billed_total_tokens(self) -> int:
        """Tokens billed for the whole call (the final answer's when the chain did not count)."""
        if self.billed_input_tokens is None or self.billed_output_tokens is None:
            return self.total_tokens
        return self.billed_input_tokens + self.billed_output_tokens


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
    tools: tuple[Tool, ...] = Field((), description="Tools the model may call.")
    tool_choice: str | None = Field(
        None, description='"auto", "none", "required" or the name of one tool; None: provider default.')
    parallel_tool_calls: bool | None = Field(
        None, description="Whether the model may ask for several calls at once; None: provider default.")
    stream: bool = Field(
        False, description="Answer as a stream: the response's ``stream`` carries the events.")

    @field_validator("tools", mode="before")
    @classmethod
    def _tools(cls, value: Any) -> Any:
        return tuple(coerce_tool(t) for t in value) if isinstance(value, (list, tuple)) else value
    embed_input: tuple[str, ...] | None = Field(
        None, description="Texts to embed: set, this is an embedding request (messages unused).")

    def remaining(self, now: float) -> float | None:
        """Seconds left before the deadline (may be negative), or None without a deadline."""
        return None if self.deadline is None else self.deadline - now

    def summary(self) -> str:
        """One line describing what is sent, without message bodies."""
        if self.embed_input is not None:
            chars = sum(len(t) for t in self.embed_input)
            texts = len(self.embed_input)
            return f"model={self.model or 'default'}, embedding of {texts} text(s), {chars} chars"
        chars = sum(content_chars(m.content) for m in self.messages)
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
    tool_calls: tuple[ToolCall, ...] = Field((), description="Calls the model asked for.")
    parts: tuple[Part, ...] = Field(
        (), description="The answer's content parts, in order, when it is more than text "
        "(e.g. a provider's thinking blocks, kept verbatim as RawParts).")
    stream: Any = Field(
        None, exclude=True, repr=False,
        description="For a streamed call on its way out: the ``LLMStream`` of its events.")

    @property
    def message(self) -> Message:
        """The assistant turn to append to the history before the next call."""
        content: Content = self.parts if self.parts else self.text
        return Message(role="assistant", content=content, tool_calls=self.tool_calls)
    embeddings: tuple[tuple[float, ...], ...] | None = Field(
        None, description="One vector per input text, in order (embedding requests only).")



#: Call parameters the chain itself fills in: with only these, a prompt is "plain".
PLAIN_PARAMS = frozenset({"deadline", "timeout_s", "metadata", "stream"})


def prompt_request(prompt: str, params: dict[str, Any]) -> LLMRequest | None:
    """``LLMRequest(messages=(Message(role="user", content=prompt),), **params)`` for a plain
    prompt and the parameters the chain fills in (``PLAIN_PARAMS``); None when a value is
    refused (the caller then validates as usual and reports what was wrong).

    Validated through pydantic's public constructor: building the same objects with
    ``model_construct`` measured slower than validating them (benchmarks/bench_model_copies.py).
    """
    if type(prompt) is not str:
        return None
    try:
        return LLMRequest(messages=(Message(role="user", content=prompt),), **params)
    except ValidationError:
        return None
