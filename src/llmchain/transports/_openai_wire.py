"""Neutral messages and tools → OpenAI Chat Completions JSON, and its answers → neutral ones.

Pure functions: the transport encodes with ``messages_to_openai`` / ``tools_to_openai`` and
decodes answers with ``answer_from_openai``, reading parts and tool calls with the core's
readers (``llmchain.messages._from_openai``, which also read the message dicts users already
have and make round-trip tests possible). Mapping table: docs/content.md.
"""

from __future__ import annotations

import base64
from typing import Any

from .._content import AnyPart, DocumentPart, ImagePart, RawPart, TextPart
from .._exceptions import UnsupportedContent
from .._models import Message, ToolCall
from .._tools import TOOL_CHOICES, Tool
from ..messages._from_openai import PROVIDER, part_from_openai, tool_calls_from_openai

#: Answer message keys that are read, or carry nothing when empty.
_ANSWER_KEYS = frozenset({"role", "content", "tool_calls", "refusal", "function_call"})


def data_url(media_type: str, data: bytes) -> str:
    return f"data:{media_type};base64,{base64.b64encode(data).decode('ascii')}"


def _unsupported(where: str, what: str, transport: str, why: str) -> UnsupportedContent:
    return UnsupportedContent(f"{transport} cannot send {where} ({what}): {why}", part=where,
                              transport=transport)


def part_to_openai(part: AnyPart, where: str, transport: str) -> dict[str, Any]:
    if isinstance(part, TextPart):
        return {"type": "text", "text": part.text}
    if isinstance(part, ImagePart):
        url = part.url if part.url is not None else data_url(part.media_type or "", part.data or b"")
        image: dict[str, Any] = {"url": url}
        if part.detail is not None:
            image["detail"] = part.detail
        return {"type": "image_url", "image_url": image}
    if isinstance(part, DocumentPart):
        if part.data is None:
            raise _unsupported(where, "document by URL", transport,
                               "Chat Completions takes files as data; download it and pass data=")
        file: dict[str, Any] = {"file_data": data_url(part.media_type, part.data)}
        file["filename"] = part.name or "document.pdf"
        return {"type": "file", "file": file}
    if part.provider != PROVIDER:
        raise _unsupported(where, f"{part.provider} {part.data.get('type')} item", transport,
                           "it is another provider's own content; drop it or use that provider")
    return dict(part.data)


def message_to_openai(message: Message, index: int, transport: str) -> dict[str, Any]:
    content = message.content
    where = f"messages[{index}]"
    out: dict[str, Any] = {"role": message.role}
    if isinstance(content, str):
        out["content"] = content if content or not message.tool_calls else None
    else:
        parts = [part_to_openai(p, f"{where}.content[{i}]", transport) for i, p in enumerate(content)]
        if message.role in ("tool", "system", "assistant") and any(p.get("type") != "text" for p in parts):
            raise _unsupported(where, f"non-text part in a {message.role} message", transport,
                               "OpenAI accepts only text parts there")
        out["content"] = parts
    if message.name is not None:
        out["name"] = message.name
    if message.tool_call_id is not None:
        out["tool_call_id"] = message.tool_call_id
    if message.tool_calls:
        out["tool_calls"] = [{"id": c.id, "type": "function",
                              "function": {"name": c.name, "arguments": c.arguments}}
                             for c in message.tool_calls]
    return out


def messages_to_openai(messages: tuple[Message, ...], transport: str) -> list[dict[str, Any]]:
    out = []
    for i, m in enumerate(messages):
        if type(m.content) is str and m.name is None and m.tool_call_id is None and not m.tool_calls:
            out.append({"role": m.role, "content": m.content})  # the common case, fast
        else:
            out.append(message_to_openai(m, i, transport))
    return out


def tools_to_openai(tools: tuple[Tool, ...]) -> list[dict[str, Any]]:
    return [{"type": "function", "function": {"name": t.name, "description": t.description,
                                              "parameters": t.parameters}} for t in tools]


def tool_choice_to_openai(choice: str) -> Any:
    return choice if choice in TOOL_CHOICES else {"type": "function", "function": {"name": choice}}


# -- answers ----------------------------------------------------------------------------------


def answer_from_openai(message: dict[str, Any]) -> tuple[str, tuple[AnyPart, ...], tuple[ToolCall, ...]]:
    """(text, parts, tool calls) of a completion's message. ``parts`` is empty for plain text;
    it holds every part, in order, when the answer has more (so nothing is dropped)."""
    content = message.get("content")
    calls = tool_calls_from_openai(message.get("tool_calls") or [])
    fn = message.get("function_call")  # the deprecated single-call form
    if fn:
        calls += (ToolCall(id="", name=fn["name"], arguments=fn.get("arguments") or ""),)
    extra = [RawPart(provider=PROVIDER, data={k: v}) for k, v in message.items()
             if k not in _ANSWER_KEYS and v not in (None, [], {}, "")]  # audio, annotations...
    if content is None or isinstance(content, str):
        text = content or ""
        parts: tuple[AnyPart, ...] = ()
        if extra:
            parts = ((TextPart(text=text),) if text else ()) + tuple(extra)
        return text, parts, calls
    parts = tuple(part_from_openai(p) for p in content) + tuple(extra)
    text = "".join(p.text for p in parts if isinstance(p, TextPart))
    if all(isinstance(p, TextPart) for p in parts):
        parts = ()
    return text, parts, calls
