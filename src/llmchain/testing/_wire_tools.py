"""The fault server's tool calls and content parts, in both wire formats.

Tool calls come from a ``Fault(tool_calls=[...])`` in the plan, from a ``content`` function
returning ``{"text": ..., "tool_calls": [...]}``, or from a request whose ``tool_choice`` names
one tool (answered with a call whose arguments fit that tool's schema). Each call is
``{"name": ..., "arguments": {...} or "raw json", "id": optional}``.

The echo answer describes the last user turn's images and documents (``[image/png 2 KB]``),
and usage counts ``IMAGE_TOKENS`` / ``DOCUMENT_TOKENS`` per part, like a provider would.
"""

from __future__ import annotations

import base64
import itertools
import json
from collections.abc import Iterable, Mapping
from typing import Any

IMAGE_TOKENS = 765
DOCUMENT_TOKENS = 1500
_ids = itertools.count(1)

Call = dict[str, str]  # {"id", "name", "arguments" (JSON text)}


def make_calls(specs: Iterable[Mapping[str, Any]], api: str) -> list[Call]:
    """Scripted call specs → calls with ids in the provider's style and JSON argument text."""
    out = []
    for spec in specs:
        args = spec.get("arguments", {})
        prefix = "call_" if api == "openai" else "toolu_"
        out.append({"id": str(spec.get("id") or f"{prefix}{next(_ids):06d}"), "name": str(spec["name"]),
                    "arguments": args if isinstance(args, str) else json.dumps(args)})
    return out


def openai_calls(calls: list[Call]) -> list[dict[str, Any]]:
    return [{"id": c["id"], "type": "function", "function": {"name": c["name"], "arguments": c["arguments"]}}
            for c in calls]


def anthropic_blocks(calls: list[Call]) -> list[dict[str, Any]]:
    blocks = []
    for c in calls:
        try:
            value = json.loads(c["arguments"])
        except ValueError:
            value = {"_raw": c["arguments"]}  # Anthropic always sends an object
        blocks.append({"type": "tool_use", "id": c["id"], "name": c["name"], "input": value})
    return blocks


def openai_call_deltas(calls: list[Call], piece_chars: int) -> list[dict[str, Any]]:
    """``delta`` objects streaming ``calls``: id and name first, then argument pieces by index."""
    out: list[dict[str, Any]] = []
    for index, c in enumerate(calls):
        out.append({"tool_calls": [{"index": index, "id": c["id"], "type": "function",
                                    "function": {"name": c["name"], "arguments": ""}}]})
        args = c["arguments"]
        out += [{"tool_calls": [{"index": index, "function": {"arguments": args[i:i + piece_chars]}}]}
                for i in range(0, len(args), piece_chars)]
    return out


def _label(part: Mapping[str, Any]) -> str | None:
    kind = part.get("type")
    if kind in ("text",):
        return str(part.get("text", ""))
    if kind == "image_url":
        url = str((part.get("image_url") or {}).get("url", ""))
        return _data_label("image", url) if url.startswith("data:") else f"[image {url}]"
    if kind == "file":
        return _data_label("file", str((part.get("file") or {}).get("file_data", "")))
    if kind in ("image", "document"):
        source = part.get("source") or {}
        if source.get("type") == "url":
            return f"[{kind} {source.get('url')}]"
        data = source.get("data", "")
        size = len(data) if source.get("type") == "text" else len(base64.b64decode(data or ""))
        return f"[{source.get('media_type')} {size} B]"
    return None


def _data_label(kind: str, url: str) -> str:
    head, _, payload = url[5:].partition(";base64,")
    try:
        size = len(base64.b64decode(payload))
    except ValueError:
        return f"[{kind}]"
    return f"[{head} {size} B]"


def describe(content: Any) -> str:
    """A user turn's content as echo text: its text, and a label for each image or document."""
    if isinstance(content, str):
        return content
    labels = [_label(p) for p in content if isinstance(p, Mapping)] if isinstance(content, list) else []
    return " ".join(label for label in labels if label)


def media_tokens(messages: Iterable[Any]) -> int:
    """What the server reports for images and documents in the prompt."""
    total = 0
    for message in messages:
        content = message.get("content") if isinstance(message, Mapping) else None
        for part in content if isinstance(content, list) else ():
            kind = part.get("type") if isinstance(part, Mapping) else None
            total += IMAGE_TOKENS if kind in ("image_url", "image") else 0
            total += DOCUMENT_TOKENS if kind in ("file", "document") else 0
    return total


def tool_results(messages: list[Any]) -> list[str] | None:
    """The texts of the tool results the last turn sends back, or None when it sends none."""
    trailing: list[str] = []
    for message in reversed(messages):
        if not isinstance(message, Mapping) or message.get("role") != "tool":
            break
        trailing.insert(0, describe(message.get("content")))
    if trailing:
        return trailing
    message = messages[-1] if messages and isinstance(messages[-1], Mapping) else {}
    content = message.get("content")
    blocks = [b for b in content if isinstance(b, Mapping) and b.get("type") == "tool_result"] \
        if isinstance(content, list) else []
    return [describe(b.get("content", "")) for b in blocks] or None
