"""Anthropic stream content blocks that are not plain text or tool calls, rebuilt whole.

``thinking`` blocks arrive as ``thinking_delta`` and ``signature_delta`` pieces, cited text as
``text_delta`` plus ``citations_delta``; a tool loop must send such blocks back unchanged, so
they are reassembled here and end up in ``response.parts`` (RawParts, in block order, with the
plain text blocks around them as TextParts). Delta types not known here are kept on the block
under ``"_deltas"`` rather than dropped.
"""

from __future__ import annotations

import copy
from typing import Any

from .._content import AnyPart, RawPart, TextPart
from .._text_buffer import TextBuffer

PROVIDER = "anthropic"


class StreamBlocks:
    """Collects every non-tool block of a Messages stream, by index."""

    __slots__ = ("_blocks", "_grown", "_rich")

    def __init__(self) -> None:
        self._blocks: dict[int, dict[str, Any]] = {}
        self._grown: dict[tuple[int, str], TextBuffer] = {}  # text/thinking/signature pieces
        self._rich = False  # some block is more than plain text

    def start(self, index: int, block: dict[str, Any]) -> None:
        self._blocks[index] = copy.deepcopy(block)
        if block.get("type") != "text" or set(block) - {"type", "text"}:
            self._rich = True

    def delta(self, index: int, delta: dict[str, Any]) -> None:
        block = self._blocks.setdefault(index, {"type": "text", "text": ""})
        kind = delta.get("type")
        field = _GROWN.get(kind or "")
        if field is not None:  # appended to a buffer (not ``+=`` on the dict's string: O(n²))
            grown = self._grown.get((index, field))
            if grown is None:
                grown = self._grown[index, field] = TextBuffer(block.get(field, ""))
            grown.append(delta[field])
        elif kind == "citations_delta":
            block.setdefault("citations", []).append(delta["citation"])
            self._rich = True
        else:
            block.setdefault("_deltas", []).append(delta)
            self._rich = True

    def parts(self) -> tuple[AnyPart, ...]:
        """Every block in order when any is more than text; () for a plain text answer."""
        if not self._rich:
            return ()
        for (index, field), grown in self._grown.items():
            self._blocks[index][field] = grown.take()
        out: list[AnyPart] = []
        for index in sorted(self._blocks):
            block = self._blocks[index]
            plain = block.get("type") == "text" and set(block) <= {"type", "text"}
            out.append(TextPart(text=block["text"]) if plain else RawPart(provider=PROVIDER, data=block))
        return tuple(out)


_GROWN = {"text_delta": "text", "thinking_delta": "thinking", "signature_delta": "signature"}
