"""The Anthropic Messages API: system prompt split out, ``max_tokens`` always sent, the
``anthropic-version`` header, usage, streaming, and error events inside a 200 stream.

::

    [transport]
    use = "anthropic"
    model = "claude-3-5-haiku-latest"   # api_key_env = "ANTHROPIC_API_KEY" by default
    max_tokens = 1024                   # used when the request sets none (the API requires one)

Structured output (``request.output_schema``) uses forced tool use: one tool whose input schema
is the requested schema, ``tool_choice`` naming it; the tool input comes back as JSON text in
``LLMResponse.text``. A schema that is not an object is wrapped as ``{"value": ...}`` (the API
requires an object) and unwrapped again. Stop reasons are reported in OpenAI's words
(``stop``, ``length``, ``content_filter``, ``tool_calls``) so stages can treat providers alike.
Messages, parts and tools map onto the API in ``_anthropic_wire`` (table: docs/content.md).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any, Literal

from pydantic import Field

from .._clock import REAL_CLOCK, Clock
from .._models import LLMRequest, LLMResponse, Usage
from .._stream import ToolCallDelta
from .._text_buffer import TextBuffer
from ..hookspecs import hookimpl
from ._anthropic_wire import (
    answer_from_anthropic,
    messages_to_anthropic,
    tool_choice_to_anthropic,
    tools_to_anthropic,
)
from ._http import HTTPOptions, HTTPTransport
from ._http_errors import error_from_event
from ._stream_blocks import StreamBlocks
from ._structured_tool import answer_text, note, tool_schema
from ._tool_stream import ToolCallAssembler

FINISH = {"end_turn": "stop", "stop_sequence": "stop", "tool_use": "stop",
          "max_tokens": "length", "refusal": "content_filter"}


class AnthropicTransport(HTTPTransport):
    """Messages API over HTTP (JSON and SSE streaming)."""

    kind = "anthropic"
    path = "/v1/messages"

    class Options(HTTPOptions):
        base_url: str = "https://api.anthropic.com"
        model: str = "claude-3-5-haiku-latest"
        api_key_env: str = Field("ANTHROPIC_API_KEY", description='Variable holding the key; "" for none.')
        version: str = Field("2023-06-01", description="The anthropic-version header.")
        beta: list[str] = Field(default_factory=list, description="anthropic-beta features to enable.")
        max_tokens: int = Field(1024, ge=1, description="max_tokens when the request sets none.")
        structured: Literal["tool", "off"] = Field("tool", description="How output_schema is asked for.")
        tool_name: str = Field("respond", pattern=r"^[a-zA-Z0-9_-]{1,64}$")

    options: Options

    def __init__(self, options: Options | None = None, *, clock: Clock = REAL_CLOCK,
                 http_client: Any = None) -> None:
        super().__init__(options, clock=clock, http_client=http_client)

    def auth_headers(self) -> dict[str, str]:
        headers = {"anthropic-version": self.options.version}
        if self.options.beta:
            headers["anthropic-beta"] = ",".join(self.options.beta)
        if self._api_key is not None:
            headers["x-api-key"] = self._api_key
        return headers

    def _tool_mode(self, request: LLMRequest) -> bool:
        return request.output_schema is not None and self.options.structured == "tool"

    def encode(self, request: LLMRequest, stream: bool) -> dict[str, Any]:
        o = self.options
        # the API knows only user and assistant turns; tool results go back as user turns
        system, messages = messages_to_anthropic(request.messages, self.name)
        body: dict[str, Any] = {
            "model": request.model or o.model,
            "max_tokens": request.max_tokens or o.max_tokens,
            "messages": messages,
        }
        if system is not None:
            body["system"] = system
        if request.tools:
            body["tools"] = tools_to_anthropic(request.tools)
        choice = tool_choice_to_anthropic(request.tool_choice, request.parallel_tool_calls)
        if choice is not None:
            body["tool_choice"] = choice
        if request.temperature is not None:
            body["temperature"] = request.temperature
        if request.top_p is not None:
            body["top_p"] = request.top_p
        if request.stop:
            body["stop_sequences"] = list(request.stop)
        if request.output_schema is not None and self._tool_mode(request):
            schema, _ = tool_schema(request.output_schema)
            body["tools"] = [*body.get("tools", ()), {"name": o.tool_name, "input_schema": schema,
                              "description": "Give the answer as this tool's input."}]
            body["tool_choice"] = {"type": "tool", "name": o.tool_name}
        if stream:
            body["stream"] = True
        if request.extra:
            body.update(request.extra)
        return body

    def decode(self, data: Any, request: LLMRequest, headers: dict[str, str]) -> LLMResponse:
        if data.get("type") == "error":
            raise error_from_event(data, json.dumps(data), where=self.name)
        blocks = data["content"]
        text = None
        notes: dict[str, Any] = {}
        tool = self._tool_mode(request)
        if tool:
            for block in blocks:
                if block["type"] == "tool_use" and block["name"] == self.options.tool_name:
                    text = _tool_text(block["input"], request)
                    notes = note(block["id"], block["name"], json.dumps(block["input"]))
        answer, parts, calls = answer_from_anthropic(blocks, self.options.tool_name if tool else None)
        stop = data.get("stop_reason")
        return LLMResponse(
            text=answer if text is None else text, usage=_usage(data.get("usage") or {}),
            model=data.get("model"), finish_reason=_finish(stop, calls), headers=headers,
            parts=parts, tool_calls=calls, notes=notes,
        )

    def stream_state(self, request: LLMRequest) -> _StreamState:
        tool = self._tool_mode(request)
        wrapped = tool and tool_schema(request.output_schema or {})[1]
        return _StreamState(self.name, request.model or self.options.model, tool, wrapped,
                            self.options.tool_name)


def _tool_text(value: Any, request: LLMRequest) -> str:
    return answer_text(value, tool_schema(request.output_schema or {})[1])


def _finish(stop: str | None, calls: tuple[Any, ...]) -> str | None:
    """OpenAI's words; ``tool_use`` is "tool_calls" unless the only tool was structured output."""
    if stop == "tool_use" and calls:
        return "tool_calls"
    return FINISH.get(stop or "", stop)


def _usage(usage: dict[str, Any]) -> Usage:
    # cached prompt tokens are input tokens too (billed at other rates)
    tokens_in = ((usage.get("input_tokens") or 0) + (usage.get("cache_creation_input_tokens") or 0)
                 + (usage.get("cache_read_input_tokens") or 0))
    return Usage(input_tokens=tokens_in, output_tokens=usage.get("output_tokens") or 0)


class _StreamState:
    """Messages stream events → text deltas (tool input JSON deltas in tool mode)."""

    def __init__(self, where: str, model: str, tool: bool, wrapped: bool,
                 tool_name: str = "respond") -> None:
        self.where, self.model, self.tool, self.wrapped = where, model, tool, wrapped
        self.tool_name = tool_name
        self.text = TextBuffer()  # the text, unless the transport gives ``streamed`` to share
        self.streamed: TextBuffer | None = None
        self.tool_json = TextBuffer()
        self.usage: dict[str, Any] = {}
        self.stop: str | None = None
        self.done = False
        self.tools = ToolCallAssembler()
        self.blocks = StreamBlocks()  # thinking, cited text...: kept for response.parts
        self.events: list[ToolCallDelta] = []  # tool-call pieces, streamed as events

    def feed(self, event: str | None, data: str) -> str | None:
        obj = json.loads(data)
        kind = obj.get("type") or event
        if kind == "content_block_delta":
            delta = obj["delta"]
            if delta["type"] != "input_json_delta":
                self.blocks.delta(obj["index"], delta)
            if delta["type"] == "text_delta":
                if self.tool or self.streamed is None:  # else it is the text streamed
                    self.text.append(delta["text"])
                return None if self.tool else delta["text"]
            if delta["type"] == "input_json_delta":
                self.tools.add_arguments(obj["index"], delta["partial_json"])
                if self.tool and self.tools.name_at(obj["index"]) == self.tool_name:
                    self.tool_json.append(delta["partial_json"])
                    return None if self.wrapped else delta["partial_json"]
                self.events.append(ToolCallDelta(index=obj["index"], arguments_delta=delta["partial_json"]))
        elif kind == "content_block_start":
            block = obj["content_block"]
            if block["type"] == "tool_use":
                self.tools.start(obj["index"], block["id"], block["name"])
                if not (self.tool and block["name"] == self.tool_name):  # tool mode: it is the answer
                    self.events.append(ToolCallDelta(index=obj["index"], id=block["id"], name=block["name"]))
            else:
                self.blocks.start(obj["index"], block)
        elif kind == "message_start":
            message = obj["message"]
            self.model = message.get("model") or self.model
            self.usage.update(message.get("usage") or {})
        elif kind == "message_delta":
            self.stop = obj["delta"].get("stop_reason") or self.stop
            self.usage.update(obj.get("usage") or {})
        elif kind == "message_stop":
            self.done = True
        elif kind == "error":  # e.g. overloaded_error inside an HTTP 200 stream
            raise error_from_event(obj, data, where=self.where)
        return None

    def finished(self) -> bool:
        return self.done

    def _answer(self) -> str:
        if not (self.tool and self.tool_json):  # no tool call: the text is the answer
            shared = self.streamed is not None and not self.tool
            return (self.streamed if shared and self.streamed is not None else self.text).take()
        text = self.tool_json.take()
        if self.wrapped:
            value = json.loads(text)
            text = json.dumps(value.get("value", value) if isinstance(value, dict) else value)
        return text

    def tail(self) -> str | None:
        """What was held back: a wrapped tool value, or text given instead of the tool call."""
        return self._answer() if self.tool and (self.wrapped or not self.tool_json) else None

    def response(self, headers: dict[str, str]) -> LLMResponse:
        calls = self.tools.calls(self.tool_name if self.tool else None)
        answered = self.tools.call_named(self.tool_name) if self.tool else None
        notes = note(answered.id, answered.name, answered.arguments) if answered is not None else {}
        return LLMResponse(
            text=self._answer(), usage=_usage(self.usage), model=self.model,
            finish_reason=_finish(self.stop, calls), headers=headers, tool_calls=calls,
            parts=self.blocks.parts(), notes=notes,
        )


@hookimpl
def register_transports(register: Callable[[str, Any], None]) -> None:
    register("anthropic", AnthropicTransport)
