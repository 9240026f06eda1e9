"""The two wire formats the fault server speaks: reading requests, writing answers and errors.

Shapes follow the providers' documented bodies (OpenAI Chat Completions, Anthropic Messages),
including their streaming events, so the official SDKs accept them.
"""

from __future__ import annotations

import json
import time
import uuid
from dataclasses import dataclass, replace
from typing import Any, Literal

from ._wire_tools import Call, anthropic_blocks, describe, media_tokens, openai_call_deltas, openai_calls

Api = Literal["openai", "anthropic"]

#: HTTP status → (OpenAI error type, Anthropic error type) for error bodies.
_ERROR_TYPES = {
    400: ("invalid_request_error", "invalid_request_error"),
    401: ("invalid_request_error", "authentication_error"),
    403: ("permission_error", "permission_error"),
    404: ("invalid_request_error", "not_found_error"),
    408: ("timeout", "timeout_error"),
    413: ("invalid_request_error", "request_too_large"),
    429: ("rate_limit_exceeded", "rate_limit_error"),
    500: ("server_error", "api_error"),
    529: ("server_error", "overloaded_error"),
}
REASONS = {
    200: "OK", 400: "Bad Request", 401: "Unauthorized", 403: "Forbidden", 404: "Not Found",
    408: "Request Timeout", 409: "Conflict", 413: "Payload Too Large", 422: "Unprocessable Entity",
    429: "Too Many Requests", 500: "Internal Server Error", 502: "Bad Gateway",
    503: "Service Unavailable", 504: "Gateway Timeout", 529: "Overloaded",
}


@dataclass(frozen=True)
class Ask:
    """What a request asks for, whatever its wire format."""

    api: Api
    model: str
    stream: bool
    prompt: str  # the last user message
    input_chars: int
    schema: dict[str, Any] | None  # requested JSON Schema (structured output), {} for json_object
    tool_name: str | None  # Anthropic forced tool use
    include_usage: bool
    forced_call: str | None = None  # OpenAI tool_choice naming one function: answered with a call
    media_tokens: int = 0  # what images and documents in the prompt cost


def read_ask(api: Api, body: Any) -> Ask:
    """Interpret a request body (already JSON-decoded); raises ValueError on a wrong shape."""
    if not isinstance(body, dict) or not isinstance(body.get("messages"), list):
        raise ValueError("the body must be a JSON object with a 'messages' array")
    prompt, chars = "", len(str(body.get("system", "")))
    for message in body["messages"]:
        text = _text_of(message.get("content"))
        chars += len(text)
        if message.get("role") == "user":
            prompt = describe(message.get("content"))
    schema: dict[str, Any] | None = None
    tool_name = None
    if api == "openai":
        fmt = body.get("response_format") or {}
        if fmt.get("type") == "json_schema":
            schema = dict(fmt.get("json_schema", {}).get("schema") or {})
        elif fmt.get("type") == "json_object":
            schema = {}
        choice = body.get("tool_choice")
        if isinstance(choice, dict) and schema is None:
            forced = (choice.get("function") or {}).get("name")
            for tool in body.get("tools") or ():
                if (tool.get("function") or {}).get("name") == forced:
                    schema = dict(tool["function"].get("parameters") or {})
                    return replace(_ask(api, body, prompt, chars, schema, None), forced_call=forced)
    else:
        choice = body.get("tool_choice") or {}
        if choice.get("type") == "tool":
            tool_name = choice.get("name")
            for tool in body.get("tools") or ():
                if tool.get("name") == tool_name:
                    schema = dict(tool.get("input_schema") or {})
    return _ask(api, body, prompt, chars, schema, tool_name)


def _ask(api: Api, body: dict[str, Any], prompt: str, chars: int, schema: dict[str, Any] | None,
         tool_name: str | None) -> Ask:
    options = body.get("stream_options") or {}
    return Ask(api, str(body.get("model") or "fault-model"), bool(body.get("stream")), prompt,
               chars, schema, tool_name, bool(options.get("include_usage")),
               media_tokens=media_tokens(body["messages"]))


def _text_of(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):  # content parts: [{"type": "text", "text": ...}]
        return "".join(str(p.get("text", "")) for p in content if isinstance(p, dict))
    return ""


def tokens(chars: int) -> int:
    """The usual estimate: about four characters per token, at least one."""
    return max(1, (chars + 3) // 4)


def completion(ask: Ask, text: str, calls: list[Call] | None = None) -> dict[str, Any]:
    """A complete non-streaming answer in ``ask.api``'s format (with ``calls``: tool calls)."""
    usage_in, usage_out = tokens(ask.input_chars) + ask.media_tokens, tokens(len(text))
    if ask.forced_call and not calls:
        calls, text = _forced(ask, text), ""
    if calls:
        return _with_calls(ask, text, calls, usage_in, usage_out)
    if ask.api == "openai":
        return {
            "id": f"chatcmpl-{uuid.uuid4().hex[:24]}", "object": "chat.completion",
            "created": int(time.time()), "model": ask.model, "system_fingerprint": "fp_fault",
            "choices": [{"index": 0, "logprobs": None, "finish_reason": "stop",
                         "message": {"role": "assistant", "content": text, "refusal": None}}],
            "usage": {"prompt_tokens": usage_in, "completion_tokens": usage_out,
                      "total_tokens": usage_in + usage_out},
        }
    tool_input = _tool_input(ask, text)
    if tool_input is not None:
        block: dict[str, Any] = {"type": "tool_use", "id": f"toolu_{uuid.uuid4().hex[:24]}",
                                 "name": ask.tool_name, "input": tool_input}
    else:
        block = {"type": "text", "text": text}
    return {
        "id": f"msg_{uuid.uuid4().hex[:24]}", "type": "message", "role": "assistant",
        "model": ask.model, "content": [block],
        "stop_reason": "tool_use" if tool_input is not None else "end_turn", "stop_sequence": None,
        "usage": {"input_tokens": usage_in, "output_tokens": usage_out},
    }


def _forced(ask: Ask, text: str) -> list[Call]:
    """The call answering a tool_choice that names one function (its arguments: ``text``)."""
    return [{"id": f"call_{uuid.uuid4().hex[:12]}", "name": ask.forced_call or "", "arguments": text}]


def _with_calls(ask: Ask, text: str, calls: list[Call], usage_in: int, usage_out: int) -> dict[str, Any]:
    usage_out += sum(tokens(len(c["arguments"])) for c in calls)
    if ask.api == "openai":
        message = {"role": "assistant", "content": text or None, "refusal": None,
                   "tool_calls": openai_calls(calls)}
        return {"id": f"chatcmpl-{uuid.uuid4().hex[:24]}", "object": "chat.completion",
                "created": int(time.time()), "model": ask.model, "system_fingerprint": "fp_fault",
                "choices": [{"index": 0, "logprobs": None, "finish_reason": "tool_calls",
                             "message": message}],
                "usage": {"prompt_tokens": usage_in, "completion_tokens": usage_out,
                          "total_tokens": usage_in + usage_out}}
    blocks = ([{"type": "text", "text": text}] if text else []) + anthropic_blocks(calls)
    return {"id": f"msg_{uuid.uuid4().hex[:24]}", "type": "message", "role": "assistant",
            "model": ask.model, "content": blocks, "stop_reason": "tool_use", "stop_sequence": None,
            "usage": {"input_tokens": usage_in, "output_tokens": usage_out}}


def _tool_input(ask: Ask, text: str) -> dict[str, Any] | None:
    """The forced tool's input, or None to answer in text (as a model ignoring the tool does)."""
    if not ask.tool_name:
        return None
    try:
        value = json.loads(text)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


def sse(data: Any, event: str | None = None) -> bytes:
    """One server-sent event."""
    payload = data if isinstance(data, str) else json.dumps(data, separators=(",", ":"))
    head = f"event: {event}\n" if event else ""
    return f"{head}data: {payload}\n\n".encode()


def stream_events(ask: Ask, text: str, piece_chars: int = 16, calls: list[Call] | None = None) -> list[bytes]:
    """Every event of a streamed answer, in order, the last one ending the stream."""
    if ask.forced_call and not calls:
        calls, text = _forced(ask, text), ""
    calls = calls or []
    pieces = [text[i:i + piece_chars] for i in range(0, len(text), piece_chars)] or [""]
    usage_in = tokens(ask.input_chars) + ask.media_tokens
    usage_out = tokens(len(text)) + sum(tokens(len(c["arguments"])) for c in calls)
    if ask.api == "openai":
        base = {"id": f"chatcmpl-{uuid.uuid4().hex[:24]}", "object": "chat.completion.chunk",
                "created": int(time.time()), "model": ask.model, "system_fingerprint": "fp_fault"}

        def chunk(delta: dict[str, Any], finish: str | None) -> bytes:
            choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}
            return sse({**base, "choices": [choice]})

        out = [chunk({"role": "assistant", "content": "", "refusal": None}, None)]
        out += [chunk({"content": p}, None) for p in pieces if p]
        out += [chunk(d, None) for d in openai_call_deltas(calls, piece_chars)]
        out.append(chunk({}, "tool_calls" if calls else "stop"))
        if ask.include_usage:
            out.append(sse({**base, "choices": [], "usage": {
                "prompt_tokens": usage_in, "completion_tokens": usage_out,
                "total_tokens": usage_in + usage_out}}))
        out.append(sse("[DONE]"))
        return out
    message: dict[str, Any] = {"id": f"msg_{uuid.uuid4().hex[:24]}", "type": "message", "role": "assistant",
               "model": ask.model, "content": [], "stop_reason": None, "stop_sequence": None,
               "usage": {"input_tokens": usage_in, "output_tokens": 1}}
    as_tool = _tool_input(ask, text) is not None
    if as_tool:
        block: dict[str, Any] = {"type": "tool_use", "id": f"toolu_{uuid.uuid4().hex[:24]}",
                                 "name": ask.tool_name, "input": {}}
        deltas = [{"type": "input_json_delta", "partial_json": p} for p in pieces]
    else:
        block = {"type": "text", "text": ""}
        deltas = [{"type": "text_delta", "text": p} for p in pieces]
    out = [sse({"type": "message_start", "message": message}, "message_start"),
           sse({"type": "content_block_start", "index": 0, "content_block": block},
               "content_block_start"),
           sse({"type": "ping"}, "ping")]
    out += [sse({"type": "content_block_delta", "index": 0, "delta": d}, "content_block_delta")
            for d in deltas]
    out.append(sse({"type": "content_block_stop", "index": 0}, "content_block_stop"))
    for index, call in enumerate(anthropic_blocks(calls), start=1):
        raw = json.dumps(call["input"])
        out.append(sse({"type": "content_block_start", "index": index,
                        "content_block": {**call, "input": {}}}, "content_block_start"))
        out += [sse({"type": "content_block_delta", "index": index, "delta": {
            "type": "input_json_delta", "partial_json": raw[i:i + piece_chars]}}, "content_block_delta")
            for i in range(0, len(raw), piece_chars)]
        out.append(sse({"type": "content_block_stop", "index": index}, "content_block_stop"))
    out.append(sse({"type": "message_delta", "delta": {
        "stop_reason": "tool_use" if as_tool or calls else "end_turn", "stop_sequence": None},
        "usage": {"output_tokens": usage_out}}, "message_delta"))
    out.append(sse({"type": "message_stop"}, "message_stop"))
    return out


def error_body(api: Api, status: int, message: str) -> dict[str, Any]:
    """The provider's error body for ``status``."""
    openai_type, anthropic_type = _ERROR_TYPES.get(status, ("server_error", "api_error"))
    if api == "openai":
        code = "rate_limit_exceeded" if status == 429 else None
        return {"error": {"message": message, "type": openai_type, "param": None, "code": code}}
    return {"type": "error", "error": {"type": anthropic_type, "message": message}}


def stream_error_event(api: Api) -> bytes:
    """The error event a provider sends inside a 200 stream when it is overloaded."""
    if api == "openai":
        return sse({"error": {"message": "The server is overloaded, please retry.",
                              "type": "server_error", "param": None, "code": None}})
    return sse({"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}},
               "error")


def schema_instance(schema: Any, depth: int = 0, root: Any = None) -> Any:
    """A small value that satisfies common JSON Schemas (objects, arrays, enums, scalars, $ref)."""
    root = schema if root is None else root
    if not isinstance(schema, dict) or depth > 8:
        return {}
    ref = schema.get("$ref")
    if isinstance(ref, str) and ref.startswith("#/"):
        target = root
        for part in ref[2:].split("/"):
            target = target.get(part, {}) if isinstance(target, dict) else {}
        return schema_instance(target, depth + 1, root)
    if "const" in schema:
        return schema["const"]
    if schema.get("enum"):
        return schema["enum"][0]
    if "default" in schema:
        return schema["default"]
    for key in ("anyOf", "oneOf", "allOf"):
        if schema.get(key):
            return schema_instance(schema[key][0], depth + 1, root)
    kind = schema.get("type", "object" if "properties" in schema else None)
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), "null")
    if kind == "object" or kind is None:
        props = schema.get("properties") or {}
        return {name: schema_instance(sub, depth + 1, root) for name, sub in props.items()}
    if kind == "array":
        return [schema_instance(schema.get("items") or {}, depth + 1, root)] * int(schema.get("minItems", 0))
    return {"string": "text", "integer": 1, "number": 1.5, "boolean": True}.get(kind)


def schema_violation(schema: Any) -> Any:
    """A value that fails ``schema``: every declared property has the wrong type."""
    if isinstance(schema, dict) and schema.get("properties"):
        wrong = {"string": 12345, "integer": "not a number", "number": "NaN?", "boolean": "yes",
                 "array": "not a list", "object": "not an object"}
        return {name: wrong.get(str(sub.get("type"))) if isinstance(sub, dict) else None
                for name, sub in schema["properties"].items()}
    return "not what the schema asked for"
