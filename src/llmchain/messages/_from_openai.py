"""OpenAI Chat Completions dicts → neutral parts, tool calls, messages and tools.

Reading the message dicts users already have is input handling of the core
(``Chain.complete(messages)``); the OpenAI transport reuses the part and tool-call readers to
decode answers, and writes request bodies itself (``transports/_openai_wire.py``).
"""

from __future__ import annotations

import base64
from typing import Any

from .._content import AnyPart, DocumentPart, ImagePart, RawPart, TextPart
from .._exceptions import UnsupportedContent
from .._models import Message, ToolCall
from .._tools import Tool

PROVIDER = "openai"
_MESSAGE_KEYS = frozenset({"role", "content", "name", "tool_call_id", "tool_calls"})


def split_data_url(url: str) -> tuple[str, bytes] | None:
    """(media type, bytes) of a base64 ``data:`` URL, else None."""
    if not url.startswith("data:") or ";base64," not in url:
        return None
    head, _, payload = url[5:].partition(";base64,")
    try:
        return head, base64.b64decode(payload, validate=True)
    except ValueError:
        return None


def part_from_openai(item: Any) -> AnyPart:
    if isinstance(item, str):
        return TextPart(text=item)
    kind = item.get("type")
    if kind == "text" and set(item) <= {"type", "text"}:
        return TextPart(text=item["text"])
    if kind == "image_url" and set(item) <= {"type", "image_url"}:
        image = item["image_url"]
        image = {"url": image} if isinstance(image, str) else image
        if set(image) <= {"url", "detail"}:
            decoded = split_data_url(image["url"])
            detail = image.get("detail")
            if decoded is not None:
                return ImagePart(data=decoded[1], media_type=decoded[0], detail=detail)
            return ImagePart(url=image["url"], detail=detail)
    if kind == "file" and set(item) <= {"type", "file"}:
        file = item["file"]
        decoded = split_data_url(file.get("file_data") or "")
        if decoded is not None and set(file) <= {"file_data", "filename"}:
            return DocumentPart(data=decoded[1], media_type=decoded[0], name=file.get("filename"))
    return RawPart(provider=PROVIDER, data=dict(item))  # kept verbatim (file_id, input_audio...)


def tool_calls_from_openai(calls: list[dict[str, Any]]) -> tuple[ToolCall, ...]:
    return tuple(ToolCall(id=c.get("id") or "", name=c["function"]["name"],
                          arguments=c["function"].get("arguments") or "") for c in calls)


def message_from_openai(item: dict[str, Any]) -> Message:
    unknown = set(item) - _MESSAGE_KEYS
    if unknown:
        raise UnsupportedContent(f"an OpenAI message has keys llmchain does not represent: "
                                 f"{sorted(unknown)}", part=f"message keys {sorted(unknown)}")
    content = item.get("content")
    return Message(
        role=item["role"] if item["role"] != "developer" else "system",
        content="" if content is None else content if isinstance(content, str)
        else tuple(part_from_openai(p) for p in content),
        name=item.get("name"), tool_call_id=item.get("tool_call_id"),
        tool_calls=tool_calls_from_openai(item.get("tool_calls") or []),
    )


def messages_from_openai(items: list[dict[str, Any]]) -> list[Message]:
    return [message_from_openai(m) for m in items]


def tools_from_openai(tools: list[dict[str, Any]]) -> tuple[Tool, ...]:
    return tuple(Tool(name=t["function"]["name"], description=t["function"].get("description") or "",
                      parameters=t["function"].get("parameters") or {}) for t in tools)


def tool_choice_from_openai(choice: Any) -> str:
    return choice if isinstance(choice, str) else str(choice["function"]["name"])
