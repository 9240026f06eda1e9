"""Bounds on what a server may send back, the same on every engine.

A response is checked against three caps: its head (status line + headers), its body as sent
on the wire, and the body once decompressed. Only the encodings llmchain asks for
(``accept-encoding: gzip, deflate``) are decoded, here and incrementally, so a gzip bomb stops
at ``max_decompressed_bytes`` instead of filling memory; any other ``content-encoding`` is
refused rather than passed on as text.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterable
from dataclasses import dataclass

from .._exceptions import ProviderError, ResponseTooLarge

ACCEPT_ENCODING = "gzip, deflate"


@dataclass(frozen=True, slots=True)
class Caps:
    """The caps of one transport, in bytes, and where errors say they came from."""

    where: str
    head: int
    body: int
    decompressed: int

    def too_large(self, cap: str, limit: int, what: str) -> ResponseTooLarge:
        return ResponseTooLarge(f"{self.where}: {what} is larger than {cap} ({limit} bytes)",
                                cap=cap, limit=limit)

    def head_headers(self, raw: Iterable[tuple[bytes, bytes]]) -> dict[str, str]:
        """Lower-case headers from an engine's raw (name, value) pairs, after checking the head
        against ``max_head_bytes`` and an announced body against ``max_body_bytes``."""
        size, headers = 32, {}  # 32: a status line
        for name, value in raw:
            size += len(name) + len(value) + 4
            headers[name.decode("latin-1").lower()] = value.decode("latin-1")
        if size > self.head:
            raise self.too_large("max_head_bytes", self.head, "the response head")
        self.check_length(headers.get("content-length"))
        return headers

    def check_length(self, length: str | None) -> None:
        """Refuse at once a Content-Length announcing more than ``max_body_bytes``."""
        if length is not None and length.isdigit() and int(length) > self.body:
            raise self.too_large("max_body_bytes", self.body, f"the response body ({length} bytes announced)")


def malformed_http(where: str, problem: str) -> ProviderError:
    """An answer that breaks HTTP/1.1 itself (framing, headers): never trusted, never retried."""
    return ProviderError(f"{where}: malformed HTTP response ({problem})", retryable=False,
                         hint="the server (or a proxy in between) sent an answer that is not valid "
                              "HTTP/1.1; check base_url and any proxy")


class BodyReader:
    """Counts and decodes body bytes as they arrive, raising at the first cap crossed."""

    __slots__ = ("_encoding", "_z", "caps", "out", "wire")

    def __init__(self, caps: Caps, content_encoding: str) -> None:
        self.caps, self.wire, self.out = caps, 0, 0
        encoding = self._encoding = content_encoding.strip().lower()
        if encoding in ("", "identity"):
            self._z = None
        elif encoding in ("gzip", "x-gzip"):
            self._z = zlib.decompressobj(16 + zlib.MAX_WBITS)
        elif encoding == "deflate":
            self._z = zlib.decompressobj()
        else:
            raise ProviderError(
                f"{caps.where}: the response uses content-encoding {encoding!r}, which was not asked "
                f"for (accept-encoding: {ACCEPT_ENCODING}); it is not decoded", retryable=False,
                hint="the server or a proxy ignores accept-encoding")

    def feed(self, data: bytes) -> bytes:
        caps = self.caps
        self.wire += len(data)
        if self.wire > caps.body:
            raise caps.too_large("max_body_bytes", caps.body, "the response body")
        z = self._z
        if z is None:
            return data
        room = caps.decompressed - self.out
        try:
            out = z.decompress(data, room + 1)
        except zlib.error as exc:
            raise malformed_http(caps.where, f"the {self._encoding} body does not decode: {exc}") from None
        self.out += len(out)
        if self.out > caps.decompressed:
            raise caps.too_large("max_decompressed_bytes", caps.decompressed,
                                 f"the {self._encoding} response body, decompressed,")
        return out

    def finish(self) -> bytes:
        """What the decoder still holds at the end of the body."""
        z = self._z
        if z is None:
            return b""
        tail = z.flush()
        self.out += len(tail)
        if self.out > self.caps.decompressed:
            raise self.caps.too_large("max_decompressed_bytes", self.caps.decompressed,
                                      "the response body, decompressed,")
        return tail
