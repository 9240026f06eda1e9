"""One growing string for a streamed answer's text: no list of deltas, no second copy at the end.

A 10 MB answer kept as its deltas and joined at the end needs the deltas *and* the joined text
at once (twice its size). ``TextBuffer`` joins small pieces in batches into one string that only it
references, so CPython grows that string in place (``text += more`` on a string nothing else
holds is a resize, not a copy): the text is held once, and ``take()`` returns it without
joining. Elsewhere (another interpreter, or a string someone else also holds) ``+=`` copies:
still O(n) per batch, never worse than the join it replaces.
"""

from __future__ import annotations

#: Pieces are joined into the string once this many characters (or pieces) are waiting.
BATCH_CHARS = 16384
BATCH_PIECES = 256


class TextBuffer:
    """Append text pieces; read the text so far (``value``) or at the end (``take``)."""

    __slots__ = ("_pending", "_size", "_text", "chunks")

    def __init__(self, text: str = "") -> None:
        self._text = text
        self._pending: list[str] = []
        self._size = 0
        self.chunks = 1 if text else 0

    def append(self, piece: str) -> None:
        """Add the next piece (the string itself is kept until the next batch is joined)."""
        pending = self._pending
        pending.append(piece)
        self.chunks += 1
        self._size += len(piece)
        if self._size >= BATCH_CHARS or len(pending) >= BATCH_PIECES:
            self._flush()

    def _flush(self) -> None:
        if not self._pending:
            return
        more = "".join(self._pending)
        self._pending.clear()
        self._size = 0
        text = self._text
        self._text = ""  # drop our reference: ``text`` is then the only one, grown in place
        text += more
        self._text = text

    def value(self) -> str:
        """The text so far (the buffer keeps it: a later append may then copy it once)."""
        self._flush()
        return self._text

    take = value  # the whole text at the end: the same string, not a copy

    def __len__(self) -> int:
        return len(self._text) + self._size

    def __bool__(self) -> bool:
        return self.chunks > 0
