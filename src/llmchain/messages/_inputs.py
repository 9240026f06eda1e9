"""Message dicts users already have → neutral ``Message`` objects.

Accepted, per dict: llmchain's own shape (``Message.model_validate``), OpenAI Chat Completions
messages (content-part lists, ``role="tool"`` results, assistant ``tool_calls``) and Anthropic
turns (content blocks; ``tool_result`` blocks become tool messages, ``tool_use`` blocks tool
calls). What none of them can represent raises ``UnsupportedContent`` naming it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from .._exceptions import UnsupportedContent
from .._models import Message
from ._from_anthropic import messages_from_anthropic
from ._from_openai import message_from_openai

_OPENAI_PARTS = frozenset({"image_url", "input_audio", "file", "refusal"})
_ANTHROPIC_PARTS = frozenset({"image", "document", "tool_use", "tool_result", "thinking",
                              "redacted_thinking", "search_result", "server_tool_use"})
_NEUTRAL_PARTS = frozenset({"text", "image", "document", "raw"})
_NEUTRAL_KEYS = frozenset({"role", "content", "name", "tool_call_id", "tool_calls"})


def style_of(message: Mapping[str, Any]) -> str:
    """"openai", "anthropic" or "neutral": which shape a message dict has."""
    calls = message.get("tool_calls") or ()
    if any(isinstance(c, Mapping) and "name" not in c for c in calls):
        return "openai"  # {"id", "type": "function", "function": {...}}
    if message.get("role") == "developer" or set(message) - _NEUTRAL_KEYS:
        return "openai"  # its converter names the keys it cannot represent
    content = message.get("content")
    if isinstance(content, list):
        for part in content:
            if not isinstance(part, Mapping):
                continue
            kind = part.get("type")
            if kind in _OPENAI_PARTS:
                return "openai"
            if kind in _ANTHROPIC_PARTS and ("source" in part or kind not in _NEUTRAL_PARTS):
                return "anthropic"
            if kind in ("text",) and set(part) - {"type", "text"} == {"cache_control"}:
                return "anthropic"
    return "neutral"


def to_messages(items: Iterable[Message | Mapping[str, Any]]) -> list[Message]:
    """Neutral messages for ``items`` (Messages, and dicts in any of the accepted shapes)."""
    out: list[Message] = []
    for item in items:
        if isinstance(item, Message):
            out.append(item)
            continue
        if not isinstance(item, Mapping):
            raise UnsupportedContent(f"a message must be a Message or a dict, got {type(item).__name__}",
                                     part=repr(item)[:60])
        style = style_of(item)
        if style == "neutral":
            out.append(Message.model_validate(item))
            continue
        try:
            if style == "openai":
                out.append(message_from_openai(dict(item)))
            else:
                out.extend(messages_from_anthropic([dict(item)]))
        except (KeyError, TypeError, AttributeError, IndexError) as exc:
            raise UnsupportedContent(f"an {style}-style message is malformed ({type(exc).__name__}: "
                                     f"{exc}): {repr(item)[:120]}", part=f"{style} message") from None
    return out
