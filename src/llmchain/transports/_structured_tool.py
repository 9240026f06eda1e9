"""Structured output through a forced tool, shared by the transports that offer it.

The requested schema becomes one tool's input schema (wrapped as ``{"value": ...}`` when it
is not an object: tool inputs must be objects) and ``tool_choice`` names that tool. The call
that answers is not a tool call for the caller: its arguments are the answer text, and the
call itself is recorded in ``notes["structured_tool_call"]`` so the ``repair`` stage can
re-ask by answering it with the validation error as the tool result (Instructor's tools mode).
"""

from __future__ import annotations

import json
from typing import Any

NOTE = "structured_tool_call"
DESCRIPTION = "Give the answer as this tool's input."


def tool_schema(schema: dict[str, Any]) -> tuple[dict[str, Any], bool]:
    """(input schema, wrapped?): the APIs want an object, so anything else becomes ``value``."""
    if schema.get("type") == "object" or ("type" not in schema and "properties" in schema):
        return schema, False
    inner = dict(schema)
    defs = inner.pop("$defs", None)
    wrapper: dict[str, Any] = {"type": "object", "properties": {"value": inner}, "required": ["value"]}
    if defs is not None:
        wrapper["$defs"] = defs
    return wrapper, True


def answer_text(arguments: Any, wrapped: bool) -> str:
    """The answer text from the tool's input (a parsed value, or JSON text)."""
    value = arguments
    if isinstance(arguments, str):
        try:
            value = json.loads(arguments)
        except ValueError:
            return arguments  # not JSON: parse/repair will say so
    if wrapped and isinstance(value, dict) and "value" in value:
        value = value["value"]
    return json.dumps(value)


def note(call_id: str, name: str, arguments: str) -> dict[str, Any]:
    return {NOTE: {"id": call_id, "name": name, "arguments": arguments}}
