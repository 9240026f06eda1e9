"""Anthropic Messages dicts → neutral parts, messages and tools.

Reading the turns users already have is input handling of the core (``Chain.complete(messages)``):
``tool_result`` blocks become tool messages and ``tool_use`` blocks tool calls. The Anthropic
transport reuses the part reader to decode answers, and writes request bodies itself
(``transports/_anthropic_wire.py``).
"""

from __future__ import annotations

import base64
import json
from typing import Any

from .._content import AnyPart, DocumentPart, ImagePart, RawPart, TextPart
from .._exceptions import UnsupportedContent
from .._models import Message, ToolCall
from .._tools import Tool

PROVIDER = "anthropic"


def _from_source(block: dict[str, Any], doc: bool) -> AnyPart | None:
    source = block.get("source") or {}
    kind = source.get("type")
    allowed = {"type", "source", "title"} if doc else {"type", "source"}
    if set(block) - allowed:
        return None
    name = block.get("title")
    if kind == "url" and set(source) <= {"type", "url"}:
        return DocumentPart(url=source["url"], name=name) if doc else ImagePart(url=source["url"])
    if kind in ("base64", "text") and set(source) <= {"type", "media_type", "data"}:
        data = source["data"].encode() if kind == "text" else base64.b64decode(source["data"])
        if doc:
            return DocumentPart(data=data, media_type=source["media_type"], name=name)
        return ImagePart(data=data, media_type=source["media_type"])
    return None


def part_from_anthropic(block: Any) -> AnyPart:
    if isinstance(block, str):
        return TextPart(text=block)
    kind = block.get("type")
    if kind == "text" and set(block) <= {"type", "text"}:
        return TextPart(text=block["text"])
    if kind in ("image", "document"):
        part = _from_source(block, kind == "document")
        if part is not None:
            return part
    return RawPart(provider=PROVIDER, data=dict(block))  # thinking, citations, cache_control...


def _content(value: Any) -> str | tuple[AnyPart, ...]:
    return value if isinstance(value, str) else tuple(part_from_anthropic(b) for b in value)


def messages_from_anthropic(items: list[dict[str, Any]], system: Any = None) -> list[Message]:
    """Anthropic turns (and ``system``) → neutral messages; tool_result blocks become tool messages."""
    out: list[Message] = []
    if system:
        out.append(Message(role="system", content=_content(system)))
    for item in items:
        role, content = item["role"], item.get("content", "")
        if isinstance(content, str):
            out.append(Message(role=role, content=content))
            continue
        parts: list[AnyPart] = []
        calls: list[ToolCall] = []
        for block in content:
            kind = block.get("type") if isinstance(block, dict) else None
            if kind == "tool_result":
                if block.get("is_error"):
                    raise UnsupportedContent(
                        "an Anthropic tool_result with is_error=true cannot be represented: "
                        "send the error as the result's text", part="tool_result.is_error")
                out.append(Message(role="tool", tool_call_id=block["tool_use_id"],
                                   content=_content(block.get("content", ""))))
            elif kind == "tool_use":
                calls.append(ToolCall(id=block["id"], name=block["name"],
                                      arguments=json.dumps(block.get("input") or {})))
            else:
                parts.append(part_from_anthropic(block))
        if parts or calls or not content:
            out.append(Message(role=role, content=tuple(parts), tool_calls=tuple(calls)))
    return out


def tools_from_anthropic(tools: list[dict[str, Any]]) -> tuple[Tool, ...]:
    return tuple(Tool(name=t["name"], description=t.get("description") or "",
                      parameters=t.get("input_schema") or {}) for t in tools)
