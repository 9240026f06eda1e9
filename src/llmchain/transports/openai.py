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

Structured output: with ``request.output_schema`` set, the request carries
``response_format: {type: json_schema, ...}`` (or ``json_object`` with ``structured =
"json_object"``, or nothing with ``"off"``); the JSON arrives as the answer text.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any, Literal
from urllib.parse import urlencode

from pydantic import Field

from .._clock import REAL_CLOCK, Clock
from .._models import LLMRequest, LLMResponse, Usage
from ..hookspecs import hookimpl
from ._http import HTTPOptions, HTTPTransport
from ._http_errors import error_from_event

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
        structured: Literal["json_schema", "json_object", "off"] = Field(
            "json_schema", description="How output_schema is asked for natively.")
        strict: bool = Field(
            False, description="json_schema strict mode (the schema must follow OpenAI's rules).")
        max_tokens_field: Literal["max_tokens", "max_completion_tokens"] = "max_tokens"
        stream_usage: bool = Field(
            True, description="Ask for usage in streams (stream_options.include_usage).")

    options: Options

    def __init__(self, options: Options | None = None, *, clock: Clock = REAL_CLOCK,
                 http_client: Any = None) -> None:
        super().__init__(options, clock=clock, http_client=http_client)
        if self.options.query:
            self.url += "?" + urlencode(self.options.query)

    def auth_headers(self) -> dict[str, str]:
        if self._api_key is None:
            return {}
        scheme = self.options.auth_scheme
        return {self.options.auth_header: f"{scheme} {self._api_key}" if scheme else self._api_key}

    def encode(self, request: LLMRequest, stream: bool) -> dict[str, Any]:
        o = self.options
        body: dict[str, Any] = {
            "model": request.model or o.model,
            "messages": [{"role": m.role, "content": m.content} if m.name is None
                         else {"role": m.role, "content": m.content, "name": m.name}
                         for m in request.messages],
        }
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
        if schema is not None and o.structured != "off":
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
        return LLMResponse(
            text=_text(message.get("content")),
            usage=Usage(input_tokens=usage.get("prompt_tokens") or 0,
                                        output_tokens=usage.get("completion_tokens") or 0),
            model=data.get("model"),
            finish_reason=choice.get("finish_reason"),
            headers=headers,
            notes=notes,
        )

    def stream_state(self, request: LLMRequest) -> _StreamState:
        return _StreamState(self.name, request.model or self.options.model)


def _text(content: Any) -> str:
    if content is None or isinstance(content, str):
        return content or ""
    return "".join(p.get("text", "") for p in content if isinstance(p, dict))  # content parts


def _schema_name(schema: dict[str, Any]) -> str:
    """OpenAI wants ``name`` matching ``[a-zA-Z0-9_-]{1,64}``."""
    title = schema.get("title")
    return _NAME_OK.sub("_", title)[:64] if isinstance(title, str) and title else "output"


class _StreamState:
    """Chat completion chunks → text deltas; usage and finish reason as they come."""

    def __init__(self, where: str, model: str) -> None:
        self.where = where
        self.model = model
        self.parts: list[str] = []
        self.finish: str | None = None
        self.usage: dict[str, Any] = {}
        self.done = False

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
        text = (choice.get("delta") or {}).get("content")
        if text:
            self.parts.append(text)
        return text

    def finished(self) -> bool:
        # a server that omits [DONE] but said why it stopped has still finished
        return self.done or self.finish is not None

    def tail(self) -> str | None:
        return None

    def response(self, headers: dict[str, str]) -> LLMResponse:
        return LLMResponse(
            text="".join(self.parts),
            usage=Usage(input_tokens=self.usage.get("prompt_tokens") or 0,
                                        output_tokens=self.usage.get("completion_tokens") or 0),
            model=self.model, finish_reason=self.finish, headers=headers,
        )


@hookimpl
def register_transports(register: Callable[[str, Any], None]) -> None:
    register("openai", OpenAITransport)
