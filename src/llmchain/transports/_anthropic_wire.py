"""Neutral messages and tools → Anthropic Messages JSON, and its answers → neutral ones.

The Messages API has one ``system`` prompt and only user/assistant turns: system messages are
joined into ``system``; tool results (``role="tool"``) become ``tool_result`` blocks at the
start of the next user turn, consecutive ones together (as the API requires); assistant tool
calls become ``tool_use`` blocks after the assistant's content. Reading Anthropic dicts back
(parts, user-supplied turns) is the core's ``llmchain.messages._from_anthropic``. Mapping table:
docs/content.md.
"""

from __future__ import annotations

import base64
import json
from typing import Any

from .._content import AnyPart, DocumentPart, ImagePart, TextPart
from .._exceptions import UnsupportedContent
from .._models import Message, ToolCall
from .._tools import Tool
from ..messages._from_anthropic import PROVIDER, part_from_anthropic
from ..messages._from_openai import split_data_url

_TEXT_DOCUMENTS = ("text/plain",)


def _unsupported(where: str, what: str, transport: str, why: str) -> UnsupportedContent:
    return UnsupportedContent(f"{transport} cannot send {where} ({what}): {why}", part=where,
                              transport=transport)


def _source(part: ImagePart | DocumentPart) -> dict[str, Any]:
    if part.url is not None:
        return {"type": "url", "url": part.url}
    data = part.data or b""
    media_type = part.media_type or ""
    if isinstance(part, DocumentPart) and media_type in _TEXT_DOCUMENTS:
        return {"type": "text", "media_type": media_type, "data": data.decode("utf-8")}
    return {"type": "base64", "media_type": media_type, "data": base64.b64encode(data).decode("ascii")}


def part_to_anthropic(part: AnyPart, where: str, transport: str) -> dict[str, Any]:
    if isinstance(part, TextPart):
        return {"type": "text", "text": part.text}
    if isinstance(part, ImagePart):
        if part.url is not None and part.url.startswith("data:"):
            decoded = split_data_url(part.url)
            if decoded is not None:
                part = ImagePart(data=decoded[1], media_type=decoded[0])
        return {"type": "image", "source": _source(part)}
    if isinstance(part, DocumentPart):
        block: dict[str, Any] = {"type": "document", "source": _source(part)}
        if part.name is not None:
            block["title"] = part.name
        return block
    if part.provider != PROVIDER:
        raise _unsupported(where, f"{part.provider} {part.data.get('type')} item", transport,
                           "it is another provider's own content; drop it or use that provider")
    return dict(part.data)


def _blocks(message: Message, where: str, transport: str) -> list[dict[str, Any]]:
    content = message.content
    if isinstance(content, str):
        return [{"type": "text", "text": content}] if content else []
    return [part_to_anthropic(p, f"{where}.content[{i}]", transport) for i, p in enumerate(content)]


def _tool_use(call: ToolCall, where: str, transport: str) -> dict[str, Any]:
    try:
        value = json.loads(call.arguments) if call.arguments.strip() else {}
    except ValueError:
        value = None
    if not isinstance(value, dict):
        raise _unsupported(where, f"tool call {call.name}", transport,
                           "its arguments are not a JSON object, and tool_use input must be one")
    return {"type": "tool_use", "id": call.id, "name": call.name, "input": value}


def messages_to_anthropic(messages: tuple[Message, ...],
                          transport: str) -> tuple[str | list[dict[str, Any]] | None, list[dict[str, Any]]]:
    """(system, messages) for the request body."""
    system: list[dict[str, Any]] = []
    plain = True  # every system message is a string: joined into one string, as before
    out: list[dict[str, Any]] = []
    for i, m in enumerate(messages):
        where = f"messages[{i}]"
        if m.role == "system":
            blocks = _blocks(m, where, transport)
            if any(b["type"] != "text" for b in blocks):
                raise _unsupported(where, "non-text part in a system message", transport,
                                   "Anthropic's system prompt takes text only")
            system += blocks
            plain = plain and isinstance(m.content, str)
            continue
        if m.role == "tool" and m.tool_call_id is not None:
            result: dict[str, Any] = {"type": "tool_result", "tool_use_id": m.tool_call_id}
            result["content"] = m.content if isinstance(m.content, str) else _blocks(m, where, transport)
            if out and out[-1]["role"] == "user" and out[-1].get("_results"):
                out[-1]["content"].append(result)
            else:
                out.append({"role": "user", "content": [result], "_results": True})
            continue
        if m.role == "user" and out and out[-1].get("_results"):
            out[-1]["content"] += _blocks(m, where, transport)  # the turn after tool results
            out[-1]["_results"] = False
            continue
        role = "assistant" if m.role == "assistant" else "user"  # an id-less tool message: a user turn
        if type(m.content) is str and not m.tool_calls:
            out.append({"role": role, "content": m.content})
            continue
        blocks = _blocks(m, where, transport)
        blocks += [_tool_use(c, where, transport) for c in m.tool_calls]
        out.append({"role": role, "content": blocks})
    for turn in out:
        turn.pop("_results", None)
    if not system:
        return None, out
    if plain:
        return "\n\n".join(b["text"] for b in system), out
    return system, out


def tools_to_anthropic(tools: tuple[Tool, ...]) -> list[dict[str, Any]]:
    return [{"name": t.name, "description": t.description, "input_schema": t.parameters} for t in tools]


def tool_choice_to_anthropic(choice: str | None, parallel: bool | None) -> dict[str, Any] | None:
    if choice is None and parallel is None:
        return None
    kind = {"auto": "auto", "none": "none", "required": "any", None: "auto"}.get(choice, "tool")
    out: dict[str, Any] = {"type": kind}
    if kind == "tool":
        out["name"] = choice
    if parallel is False and kind != "none":
        out["disable_parallel_tool_use"] = True
    return out


# -- answers ----------------------------------------------------------------------------------


def answer_from_anthropic(blocks: list[dict[str, Any]], skip_tool: str | None = None
                          ) -> tuple[str, tuple[AnyPart, ...], tuple[ToolCall, ...]]:
    """(text, parts, tool calls) of an answer's content blocks. ``parts`` is empty for plain
    text and holds every non-tool block, in order, otherwise. ``skip_tool``: the structured-
    output tool, whose input is the answer rather than a call."""
    parts: list[AnyPart] = []
    calls: list[ToolCall] = []
    for block in blocks:
        if block.get("type") == "tool_use":
            if block.get("name") != skip_tool:
                calls.append(ToolCall(id=block["id"], name=block["name"],
                                      arguments=json.dumps(block.get("input") or {})))
        else:
            parts.append(part_from_anthropic(block))
    # text blocks with citations are kept whole as RawParts, and their text still counts
    text = "".join(b["text"] for b in blocks if b.get("type") == "text")
    if all(isinstance(p, TextPart) for p in parts):
        parts = []
    return text, tuple(parts), tuple(calls)
