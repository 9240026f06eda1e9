"""The OpenAI Chat Completions wire format, for every server that speaks it.

One transport serves OpenAI, Azure OpenAI, vLLM, Ollama, llama.cpp server, OpenRouter and the
like; they differ by ``base_url``, headers and query parameters::

    [transport]                       # OpenAI
    use = "openai"
    model = "gpt-4o-mini"             # api_key_env = "OPENAI_API_KEY" by default

    [transport]                       # a local vLLM / Ollama server: no key
    use = "openai"
    base_url = "http://127.0.0.1:11434/v1"
    model = "llama3.2"
    api_key_env = ""

    [transport]                       # Azure OpenAI
    use = "openai"
    base_url = "https://NAME.openai.azure.com/openai/deployments/DEPLOYMENT"
    query = { "api-version" = "2024-10-21" }
    auth_header = "api-key"
    auth_scheme = ""
    api_key_env = "AZURE_OPENAI_API_KEY"

Embeddings: an embedding request (``chain.embed``) goes to ``base_url + embeddings_path``
(``/embeddings``: OpenAI, Azure's deployment URL, vLLM, Ollama's ``/v1``), asking for
``request.model`` or ``embedding_model``.

Structured output: with ``request.output_schema`` set, the request carries
``response_format: {type: json_schema, ...}`` (or ``json_object`` with ``structured =
"json_object"``, or nothing with ``"off"``); the JSON arrives as the answer text. With
``structured = "tool"`` it is asked for through a forced function call instead (Instructor's
tools mode, for servers without json_schema): the call's arguments become the answer text.

Messages, parts and tools map onto the API in ``_openai_wire`` (table: docs/content.md).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any, Literal
from urllib.parse import urlencode

from pydantic import Field

from .._clock import REAL_CLOCK, Clock
from .._models import LLMRequest, LLMResponse, ToolCall, Usage
from .._stream import ToolCallDelta
from .._text_buffer import TextBuffer
from ..hookspecs import hookimpl
from ._http import HTTPOptions, HTTPTransport, _keep
from ._http_errors import error_from_event, malformed
from ._openai_wire import answer_from_openai, messages_to_openai, tool_choice_to_openai, tools_to_openai
from ._sessions import Engine, SessionPool
from ._structured_tool import DESCRIPTION, answer_text, note, tool_schema
from ._tool_stream import ToolCallAssembler

_NAME_OK = re.compile(r"[^a-zA-Z0-9_-]")


class OpenAITransport(HTTPTransport):
    """Chat Completions over HTTP (JSON and SSE streaming)."""

    kind = "openai"
    path = "/chat/completions"

    class Options(HTTPOptions):
        base_url: str = "https://api.openai.com/v1"
        model: str = "gpt-4o-mini"
        api_key_env: str = Field("OPENAI_API_KEY", description='Variable holding the key; "" for none.')
        auth_header: str = Field("authorization", description='"api-key" for Azure OpenAI.')
        auth_scheme: str = Field("Bearer", description='Prefix of the key in auth_header; "" for none.')
        query: dict[str, str] = Field(
            default_factory=dict, description="Query parameters (Azure: api-version).")
        structured: Literal["json_schema", "json_object", "tool", "off"] = Field(
            "json_schema", description="How output_schema is asked for natively.")
        tool_name: str = Field("respond", pattern=r"^[a-zA-Z0-9_-]{1,64}$",
                               description='The function structured = "tool" forces.')
        strict: bool = Field(
            False, description="json_schema strict mode (the schema must follow OpenAI's rules).")
        max_tokens_field: Literal["max_tokens", "max_completion_tokens"] = "max_tokens"
        stream_usage: bool = Field(
            True, description="Ask for usage in streams (stream_options.include_usage).")
        embedding_model: str = Field("text-embedding-3-small", description="Model of embedding requests that name none.")  # noqa: E501
        embeddings_path: str = Field("/embeddings", description="Path of the embeddings endpoint under base_url.")  # noqa: E501
        dimensions: int | None = Field(None, ge=1, description="Vector size to ask for (text-embedding-3 models).")  # noqa: E501

    options: Options

    def __init__(self, options: Options | None = None, *, clock: Clock = REAL_CLOCK,
                 http_client: Any = None) -> None:
        super().__init__(options, clock=clock, http_client=http_client)
        query = "?" + urlencode(self.options.query) if self.options.query else ""
        self.url += query
        self.embed_url = self.options.base_url.rstrip("/") + self.options.embeddings_path + query
        self._embed_pool: SessionPool[Engine] = SessionPool(lambda: self._new_engine(self.embed_url))

    async def send(self, request: LLMRequest) -> LLMResponse:
        if request.embed_input is None:
            return await super().send(request)
        return await self._embed(request)

    async def _embed(self, request: LLMRequest) -> LLMResponse:
        o = self.options
        body: dict[str, Any] = {"model": request.model or o.embedding_model,
                                "input": list(request.embed_input or ()), "encoding_format": "float"}
        if o.dimensions is not None:
            body["dimensions"] = o.dimensions
        if request.extra:
            body.update(request.extra)
        payload = json.dumps(body).encode()
        status, all_headers, raw = await self._embed_pool.get().post(payload, self._ids(request))
        headers = _keep(all_headers)
        if status >= 300:
            raise self._status_error(status, raw, headers)
        try:
            data = json.loads(raw)
            rows = sorted(data["data"], key=lambda row: row["index"])
            vectors = tuple(tuple(float(x) for x in row["embedding"]) for row in rows)
            usage = data.get("usage") or {}
            tokens = int(usage.get("prompt_tokens") or usage.get("total_tokens") or 0)
        except (ValueError, KeyError, IndexError, TypeError, AttributeError) as exc:
            why = f"not an embeddings answer ({type(exc).__name__}: {exc})"
            raise malformed(self.name, status, raw, why) from None
        if len(vectors) != len(body["input"]):
            raise malformed(self.name, status, raw, f"{len(vectors)} vectors for {len(body['input'])} inputs")
        return LLMResponse(text="", embeddings=vectors, usage=Usage(input_tokens=tokens),
                           model=data.get("model") or body["model"], headers=headers)

    async def aclose(self) -> None:
        await self._embed_pool.aclose()
        await super().aclose()

    def auth_headers(self) -> dict[str, str]:
        if self._api_key is None:
            return {}
        scheme = self.options.auth_scheme
        return {self.options.auth_header: f"{scheme} {self._api_key}" if scheme else self._api_key}

    def encode(self, request: LLMRequest, stream: bool) -> dict[str, Any]:
        o = self.options
        body: dict[str, Any] = {
            "model": request.model or o.model,
            "messages": messages_to_openai(request.messages, self.name),
        }
        if request.tools:
            body["tools"] = tools_to_openai(request.tools)
        if request.tool_choice is not None:
            body["tool_choice"] = tool_choice_to_openai(request.tool_choice)
        if request.parallel_tool_calls is not None:
            body["parallel_tool_calls"] = request.parallel_tool_calls
        if request.temperature is not None:
            body["temperature"] = request.temperature
        if request.max_tokens is not None:
            body[o.max_tokens_field] = request.max_tokens
        if request.top_p is not None:
            body["top_p"] = request.top_p
        if request.stop:
            body["stop"] = list(request.stop)
        if request.seed is not None:
            body["seed"] = request.seed
        schema = request.output_schema
        if schema is not None and o.structured == "tool":
            params = tool_schema(schema)[0]
            body["tools"] = [*body.get("tools", ()), {"type": "function", "function": {
                "name": o.tool_name, "description": DESCRIPTION, "parameters": params}}]
            body["tool_choice"] = {"type": "function", "function": {"name": o.tool_name}}
        elif schema is not None and o.structured != "off":
            body["response_format"] = {"type": "json_object"} if o.structured == "json_object" else {
                "type": "json_schema",
                "json_schema": {"name": _schema_name(schema), "schema": schema, "strict": o.strict},
            }
        if stream:
            body["stream"] = True
            if o.stream_usage:
                body["stream_options"] = {"include_usage": True}
        if request.extra:
            body.update(request.extra)
        return body

    def decode(self, data: Any, request: LLMRequest, headers: dict[str, str]) -> LLMResponse:
        if "choices" not in data and "error" in data:  # some gateways answer errors with 200
            raise error_from_event(data, json.dumps(data), where=self.name)
        choice = data["choices"][0]
        message = choice["message"]
        usage = data.get("usage") or {}
        notes = {"refusal": message["refusal"]} if message.get("refusal") else {}
        text, parts, calls = answer_from_openai(message)
        finish = choice.get("finish_reason")
        if self._tool_mode(request):
            text, calls, finish = self._structured(request, text, calls, finish, notes)
        return LLMResponse(
            text=text, parts=parts, tool_calls=calls,
            usage=Usage(input_tokens=usage.get("prompt_tokens") or 0,
                                        output_tokens=usage.get("completion_tokens") or 0),
            model=data.get("model"),
            finish_reason=finish,
            headers=headers,
            notes=notes,
        )

    def _tool_mode(self, request: LLMRequest) -> bool:
        return request.output_schema is not None and self.options.structured == "tool"

    def _structured(self, request: LLMRequest, text: str, calls: tuple[ToolCall, ...], finish: str | None,
                    notes: dict[str, Any]) -> tuple[str, tuple[ToolCall, ...], str | None]:
        """The forced function's arguments as the answer text; the call itself as a note."""
        answer = next((c for c in calls if c.name == self.options.tool_name), None)
        if answer is None:
            return text, calls, finish  # the model answered in text: parse/repair judge it
        notes.update(note(answer.id, answer.name, answer.arguments))
        rest = tuple(c for c in calls if c is not answer)
        wrapped = tool_schema(request.output_schema or {})[1]
        return answer_text(answer.arguments, wrapped), rest, finish if rest else "stop"

    def stream_state(self, request: LLMRequest) -> _StreamState:
        state = _StreamState(self.name, request.model or self.options.model)
        if self._tool_mode(request):
            state.structured = (self, request)
        return state


def _schema_name(schema: dict[str, Any]) -> str:
    """OpenAI wants ``name`` matching ``[a-zA-Z0-9_-]{1,64}``."""
    title = schema.get("title")
    return _NAME_OK.sub("_", title)[:64] if isinstance(title, str) and title else "output"


class _StreamState:
    """Chat completion chunks → text deltas; usage and finish reason as they come."""

    def __init__(self, where: str, model: str) -> None:
        self.where = where
        self.model = model
        self.parts = TextBuffer()  # the text, unless the transport gives ``streamed`` to share
        self.streamed: TextBuffer | None = None
        self.finish: str | None = None
        self.usage: dict[str, Any] = {}
        self.done = False
        self.tools = ToolCallAssembler()
        self.structured: tuple[OpenAITransport, LLMRequest] | None = None  # structured = "tool"
        self.events: list[ToolCallDelta] = []  # tool-call pieces, streamed as events

    def feed(self, event: str | None, data: str) -> str | None:
        if data == "[DONE]":
            self.done = True
            return None
        obj = json.loads(data)
        if "error" in obj:
            raise error_from_event(obj, data, where=self.where)
        self.model = obj.get("model") or self.model
        if obj.get("usage"):
            self.usage = obj["usage"]
        choices = obj["choices"]
        if not choices:
            return None
        choice = choices[0]
        if choice.get("finish_reason"):
            self.finish = choice["finish_reason"]
        delta = choice.get("delta") or {}
        if delta.get("tool_calls"):
            self.tools.openai_deltas(delta["tool_calls"])
            if self.structured is None:  # in structured = "tool" mode the call is the answer
                self.events.extend(_tool_deltas(delta["tool_calls"]))
        text = delta.get("content")
        if text and self.streamed is None:
            self.parts.append(text)
        return text

    def finished(self) -> bool:
        # a server that omits [DONE] but said why it stopped has still finished
        return self.done or self.finish is not None

    def _answer(self) -> tuple[str, tuple[ToolCall, ...], str | None, dict[str, Any]]:
        text = (self.streamed if self.streamed is not None else self.parts).take()
        calls, finish = self.tools.calls(), self.finish
        notes: dict[str, Any] = {}
        if self.structured is not None:
            transport, request = self.structured
            text, calls, finish = transport._structured(request, text, calls, finish, notes)
        return text, calls, finish, notes

    def tail(self) -> str | None:
        """With structured = "tool", the answer held back (it came as call arguments)."""
        if self.structured is None or not self.tools:
            return None
        return self._answer()[0]

    def response(self, headers: dict[str, str]) -> LLMResponse:
        text, calls, finish, notes = self._answer()
        return LLMResponse(
            text=text,
            usage=Usage(input_tokens=self.usage.get("prompt_tokens") or 0,
                                        output_tokens=self.usage.get("completion_tokens") or 0),
            model=self.model, finish_reason=finish, headers=headers, tool_calls=calls, notes=notes,
        )


def _tool_deltas(deltas: list[dict[str, Any]]) -> list[ToolCallDelta]:
    out = []
    for delta in deltas:
        fn = delta.get("function") or {}
        out.append(ToolCallDelta(index=delta.get("index", 0), id=delta.get("id") or None,
                                 name=fn.get("name") or None, arguments_delta=fn.get("arguments") or ""))
    return out


@hookimpl
def register_transports(register: Callable[[str, Any], None]) -> None:
    register("openai", OpenAITransport)
