"""Server-sent events: bytes as they arrive → (event name, data) pairs.

Follows the WHATWG rules the providers rely on: ``event:`` and ``data:`` fields, several
``data:`` lines joined by newlines, ``:`` comments ignored, a blank line dispatching, CRLF or
LF line ends. Lines split across network reads are reassembled before decoding, so multi-byte
characters never break.
"""

from __future__ import annotations


class SSEDecoder:
    """Feed it bytes; it returns the complete events they finish."""

    __slots__ = ("_buf", "_data", "_event")

    def __init__(self) -> None:
        self._buf = b""
        self._event: str | None = None
        self._data: list[str] = []

    def feed(self, chunk: bytes) -> list[tuple[str | None, str]]:
        buf = self._buf + chunk if self._buf else chunk
        lines = buf.split(b"\n")
        self._buf = lines.pop()
        out: list[tuple[str | None, str]] = []
        for raw in lines:
            line = raw[:-1] if raw.endswith(b"\r") else raw
            if not line:
                if self._data:
                    out.append((self._event, "\n".join(self._data)))
                self._event, self._data = None, []
                continue
            if line.startswith(b":"):
                continue
            name, _, value = line.partition(b":")
            if value.startswith(b" "):
                value = value[1:]
            if name == b"data":
                self._data.append(value.decode("utf-8", "replace"))
            elif name == b"event":
                self._event = value.decode("utf-8", "replace")
        return out

    @property
    def pending(self) -> bool:
        """Whether bytes of an unfinished event are held (at end of stream: it was cut)."""
        return bool(self._buf.strip() or self._data)
