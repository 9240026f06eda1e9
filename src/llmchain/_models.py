"""The data that flows through a chain: requests, responses, usage and attempts.

Every model is a frozen pydantic v2 model: stages never mutate a request, they derive a new
one with ``request.model_copy(update=...)``. Construction validates user input once at the
edge (``Chain.acomplete``); internal copies skip validation.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, field_validator

from ._content import Content, Part, coerce_parts, content_chars, text_of
from ._tools import Tool, ToolCall, coerce_tool

Role = Literal["system", "user", "assistant", "tool"]
Outcome = Literal["ok", "error", "timeout", "cancelled"]
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


_object_new = object.__new__
_object_setattr = object.__setattr__
#: llmchain's own models whose copies ``copy_with`` makes itself (checked at import, below).
_PLAIN: set[type[BaseModel]] = set()


def copy_with(model: ModelT, update: Mapping[str, Any]) -> ModelT:
    """``model.model_copy(update=update)`` (shallow, not validated), in half the time.

    The chain and its stages copy a request or a response several times per call. For
    llmchain's own frozen models (no private attributes, no extra fields) a copy is the
    instance ``__dict__`` with ``update`` applied plus the set of fields set, which is what is
    built here; any other class (a user's subclass) goes through ``model_copy``.
    """
    cls = type(model)
    if cls not in _PLAIN:
        return model.model_copy(update=update)
    copied = _object_new(cls)
    values = model.__dict__.copy()
    values.update(update)
    fields_set = set(model.__pydantic_fields_set__)
    fields_set.update(update)
    _object_setattr(copied, "__dict__", values)
    _object_setattr(copied, "__pydantic_extra__", None)
    _object_setattr(copied, "__pydantic_fields_set__", fields_set)
    _object_setattr(copied, "__pydantic_private__", None)
    return copied


def _built(cls: type[ModelT], values: dict[str, Any], fields_set: set[str]) -> ModelT:
    """An instance of one of the ``_PLAIN`` models from values already valid, in field order."""
    built = _object_new(cls)
    _object_setattr(built, "__dict__", values)
    _object_setattr(built, "__pydantic_extra__", None)
    _object_setattr(built, "__pydantic_fields_set__", fields_set)
    _object_setattr(built, "__pydantic_private__", None)
    return built


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", arbitrary_types_allowed=True)


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



def _check_plain_copies() -> None:
    """Let ``copy_with`` build copies of these models itself if, for each, that gives exactly
    what pydantic's ``model_copy`` gives (a later pydantic could store more per instance)."""
    probes = (Usage(), CacheInfo(status="miss"), LLMResponse(text="t", notes={"n": 1}),
              LLMRequest(messages=(Message(role="user", content="c"),), timeout_s=1.0),
              Attempt(number=1, started_at=0.0, duration_s=0.0, outcome="ok"),
              Message(role="user", content="c"))
    attributes = ("__dict__", "__pydantic_extra__", "__pydantic_fields_set__", "__pydantic_private__")
    if set(getattr(BaseModel, "__slots__", ())) != set(attributes):
        return  # pydantic keeps other per-instance state: always use model_copy
    for probe in probes:
        cls = type(probe)
        if cls.__private_attributes__ or cls.model_config.get("extra") == "allow":
            continue
        name = next(iter(cls.model_fields))
        update = {name: getattr(probe, name)}
        _PLAIN.add(cls)
        fast, slow = copy_with(probe, update), probe.model_copy(update=update)
        if not all(getattr(fast, a, 0) == getattr(slow, a, 1) for a in attributes):
            _PLAIN.discard(cls)


_check_plain_copies()

#: Call parameters ``prompt_request`` takes without validation (the chain computes them).
PLAIN_PARAMS = frozenset({"deadline", "timeout_s", "metadata", "stream"})
_MESSAGE_FIELDS = ("role", "content", "name", "tool_call_id", "tool_calls")
_REQUEST_DEFAULTS = {name: field.default for name, field in LLMRequest.model_fields.items()}


def prompt_request(prompt: str, params: dict[str, Any]) -> LLMRequest | None:
    """``LLMRequest(messages=(Message(role="user", content=prompt),), **params)`` for a plain
    prompt and the parameters the chain itself fills in (``PLAIN_PARAMS``), built without
    running validation that could not fail; None when any value needs validating after all
    (then the caller validates as usual).

    This is every ``chain.complete("...")``: validation is a tenth of a cache hit's cost.
    """
    if not _FAST_REQUESTS or type(prompt) is not str:
        return None
    deadline, timeout, metadata = params.get("deadline"), params.get("timeout_s"), params.get("metadata")
    if (deadline is not None and type(deadline) is not float) or (
            timeout is not None and (type(timeout) is not float or not timeout > 0)):
        return None
    if "stream" in params and type(params["stream"]) is not bool:
        return None
    if metadata is not None:
        if type(metadata) is not dict or any(type(key) is not str for key in metadata):
            return None
        metadata = dict(metadata)  # validation copies the mapping too
    message = _built(Message, {"role": "user", "content": prompt, "name": None, "tool_call_id": None,
                               "tool_calls": ()}, {"role", "content"})
    values = _REQUEST_DEFAULTS.copy()  # in field order, as validation stores them
    values["messages"] = (message,)
    values["extra"] = {}
    values["metadata"] = {} if metadata is None else metadata
    values["request_id"] = new_request_id()
    fields_set = {"messages"}
    for name in params:
        fields_set.add(name)
        if name != "metadata":
            values[name] = params[name]
    return _built(LLMRequest, values, fields_set)


def _check_fast_requests() -> bool:
    """Whether ``prompt_request`` builds exactly what validation builds (the fields with
    factories are the three it fills; same values, same fields set, same types)."""
    factories = {n for n, f in LLMRequest.model_fields.items() if f.default_factory is not None}
    if factories != {"extra", "metadata", "request_id"} or Message not in _PLAIN or LLMRequest not in _PLAIN:
        return False
    if tuple(Message.model_fields) != _MESSAGE_FIELDS:
        return False
    params = {"deadline": 12.5, "timeout_s": 3.0, "metadata": {"k": {"v": 1}}}
    fast = prompt_request("hi", params)
    slow = LLMRequest(messages=(Message(role="user", content="hi"),), **params)
    if fast is None:
        return False
    fast_values = {**fast.__dict__, "request_id": slow.request_id}
    return (list(fast_values.items()) == list(slow.__dict__.items())
            and fast.model_fields_set == slow.model_fields_set
            and fast.messages[0].model_fields_set == slow.messages[0].model_fields_set
            and list(fast.messages[0].__dict__.items()) == list(slow.messages[0].__dict__.items()))


_FAST_REQUESTS = True
_FAST_REQUESTS = _check_fast_requests()
