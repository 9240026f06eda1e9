"""Streamed tool calls assembled into whole ``ToolCall`` objects, for both wire formats.

Pure and separately tested: stream parsers hand it the pieces as they arrive and ask for the
calls at the end.

* OpenAI sends ``delta.tool_calls`` items keyed by ``index``: the first carries ``id`` and
  ``function.name``, later ones append to ``function.arguments``.
* Anthropic opens a ``tool_use`` content block (``content_block_start`` with id and name) and
  streams its input as ``input_json_delta`` pieces for that block's ``index``.
"""

from __future__ import annotations

from typing import Any

from .._models import ToolCall


class ToolCallAssembler:
    """Collects tool-call pieces by index; ``calls()`` gives the whole calls, in index order."""

    __slots__ = ("_args", "_ids", "_names")

    def __init__(self) -> None:
        self._ids: dict[int, str] = {}
        self._names: dict[int, str] = {}
        self._args: dict[int, list[str]] = {}

    def __bool__(self) -> bool:
        return bool(self._names)

    def start(self, index: int, call_id: str, name: str) -> None:
        """A call begins (Anthropic ``content_block_start`` of a ``tool_use`` block)."""
        self._ids[index] = call_id
        self._names[index] = name
        self._args.setdefault(index, [])

    def add_arguments(self, index: int, piece: str) -> None:
        """More argument text for the call at ``index`` (Anthropic ``input_json_delta``)."""
        self._args.setdefault(index, []).append(piece)

    def openai_deltas(self, deltas: list[dict[str, Any]]) -> None:
        """One chunk's ``choices[0].delta.tool_calls``."""
        for delta in deltas:
            index = delta.get("index", 0)
            if delta.get("id"):
                self._ids[index] = delta["id"]
            fn = delta.get("function") or {}
            if fn.get("name"):
                self._names[index] = self._names.get(index, "") + fn["name"]
            if fn.get("arguments"):
                self._args.setdefault(index, []).append(fn["arguments"])

    def name_at(self, index: int) -> str | None:
        return self._names.get(index)

    def arguments(self, index: int) -> str:
        return "".join(self._args.get(index, ()))

    def call_named(self, name: str) -> ToolCall | None:
        """The (last) call to ``name``, e.g. the structured-output tool's."""
        found = [i for i in sorted(self._names) if self._names[i] == name]
        if not found:
            return None
        i = found[-1]
        return ToolCall(id=self._ids.get(i, ""), name=name, arguments="".join(self._args.get(i, ())) or "{}")

    def calls(self, skip_name: str | None = None) -> tuple[ToolCall, ...]:
        """The assembled calls (``skip_name``: leave out the structured-output tool)."""
        return tuple(ToolCall(id=self._ids.get(i, ""), name=self._names[i],
                              arguments="".join(self._args.get(i, ())) or "{}")
                     for i in sorted(self._names) if self._names[i] != skip_name)
