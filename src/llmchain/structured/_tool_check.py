"""Tool-call arguments checked against their tools' schemas, and the re-ask that answers them.

As Instructor's tools mode does: the ``validate`` stage checks every call of an answer against
the schema of the tool it names. Arguments that are broken JSON are repaired locally (the same
fixes as the ``repair`` stage uses for answers); arguments that still fail raise OutputInvalid
listing each violation as ``"tool_name (call_id): path: message"``. The ``repair`` stage then
re-asks with the rejected assistant turn plus one tool-result message per call carrying its
errors, so the model sees exactly which call was wrong and why. Structured output that came
through a forced tool is re-asked the same way: its call is answered with the validation error.

Schema checks use the ``jsonschema`` extra; without it only the JSON itself is checked.
"""

from __future__ import annotations

import json
from typing import Any

from .._exceptions import ConfigError, OutputError, OutputInvalid
from .._models import LLMRequest, LLMResponse, Message, ToolCall, copy_with
from .._tools import Tool
from ._json_fix import repair_json_text
from ._output import remember
from ._schema import SchemaMismatch, schema_for_json

_ERRORS_ATTR = "_llmchain_tool_errors"
#: Where transports record the call that carried a structured answer (see _structured_tool).
STRUCTURED_NOTE = "structured_tool_call"
NOT_RUN = ("Not run: another call in this turn had invalid arguments. Call it again (with the "
           "corrected calls) if it is still needed.")


def _violations(tool: Tool, value: Any) -> list[str]:
    if not isinstance(value, dict):
        return ["arguments must be a JSON object"]
    try:
        schema = schema_for_json(tool.parameters)
    except ConfigError:  # jsonschema not installed (or the tool's schema is not valid)
        return []
    try:
        schema.validate(value)
    except SchemaMismatch as exc:
        return exc.errors
    return []


def check_tool_calls(request: LLMRequest, response: LLMResponse) -> LLMResponse:
    """``response`` with broken-JSON arguments repaired, or OutputInvalid naming what is wrong."""
    tools = {t.name: t for t in request.tools}
    calls: list[ToolCall] = []
    per_call: dict[str, list[str]] = {}
    repaired: list[str] = []
    for call in response.tool_calls:
        tool = tools.get(call.name)
        errors: list[str] = []
        if tool is None:
            errors.append(f"no tool named {call.name!r} was offered (offered: {sorted(tools)})")
        else:
            try:
                value = json.loads(call.arguments) if call.arguments.strip() else {}
            except ValueError:
                fixed = repair_json_text(call.arguments, expect="object")
                value = fixed.value if fixed is not None else None
                if fixed is None:
                    errors.append(f"arguments are not JSON: {call.arguments[:200]!r}")
                else:
                    call = call.model_copy(update={"arguments": json.dumps(value, ensure_ascii=False)})
                    repaired.append(call.id)
            if not errors:
                errors += _violations(tool, value)
        if errors:
            per_call[call.id] = errors
        calls.append(call)
    if per_call:
        listed = [f"{c.name} ({c.id}): {e}" for c in calls for e in per_call.get(c.id, ())]
        exc = OutputInvalid(f"{len(per_call)} tool call(s) have arguments that do not match their "
                            f"tool's schema: " + "; ".join(listed[:3]), errors=listed,
                            raw_text=json.dumps([[c.name, c.arguments] for c in calls]))
        setattr(exc, _ERRORS_ATTR, per_call)
        remember(exc, response=copy_with(response, {"tool_calls": tuple(calls)}))
        raise exc
    if not repaired:
        return response
    return copy_with(response, {"tool_calls": tuple(calls),
                                "notes": {**response.notes, "tool_arguments_repaired": repaired}})


def tool_errors(error: OutputError) -> dict[str, list[str]] | None:
    """Per call id, what was wrong with its arguments (None: not a tool-call error)."""
    found = getattr(error, _ERRORS_ATTR, None)
    return found if isinstance(found, dict) else None


def tool_reask_messages(rejected: LLMResponse, errors: dict[str, list[str]]) -> tuple[Message, ...]:
    """The rejected assistant turn, then a tool result per call: its errors, or "not run"."""
    results = []
    for call in rejected.tool_calls:
        problems = errors.get(call.id)
        text = NOT_RUN if problems is None else "\n".join(
            ["Error: the arguments do not match the tool's schema:", *(f"- {p}" for p in problems[:10]),
             "Call the tool again with corrected arguments."])
        results.append(Message(role="tool", content=text, tool_call_id=call.id))
    return (rejected.message, *results)


def structured_reask_messages(call: Any, problem: str) -> tuple[Message, ...]:
    """A structured answer given through a tool, re-asked by answering that call with what was
    wrong (the model then calls the tool again, as the request still forces it)."""
    tool_call = ToolCall(id=str(call["id"]), name=str(call["name"]), arguments=str(call["arguments"]))
    return (Message(role="assistant", content="", tool_calls=(tool_call,)),
            tool_call.result(problem))
