"""Approximate prompt tokens of images and documents, per provider (before the call).

Providers count these themselves and report them in usage; these estimates only book
tokens-per-minute capacity ahead of a call. The rules (docs/content.md repeats them):

* OpenAI images (gpt-4o family): ``detail="low"`` costs 85 tokens; otherwise the image is
  scaled to fit 2048x2048, then its short side to 768, and costs 85 + 170 per 512-px tile.
* Anthropic images: ``width * height / 750``, after scaling the long side down to 1568 px
  (about 1600 tokens at most).
* Image size is read from PNG, GIF and JPEG headers; an image by URL, or one whose header
  is not understood, is assumed 1024x1024.
* Documents (PDF): pages are counted from the ``/Type /Page`` objects; each page costs text
  plus an image of the page: 1500 tokens per page for Anthropic and 1000 for OpenAI, a
  deliberately generous guess. Other documents count their bytes as text (4 per token).
"""

from __future__ import annotations

import math
import re
import struct

from ._content import AnyPart, DocumentPart, ImagePart

DEFAULT_SIZE = (1024, 1024)
_PAGE = re.compile(rb"/Type\s*/Page[^s]")
PAGE_TOKENS = {"anthropic": 1500, "openai": 1000}


def image_size(data: bytes | None) -> tuple[int, int]:
    """(width, height) from a PNG, GIF or JPEG header, else ``DEFAULT_SIZE``."""
    if not data:
        return DEFAULT_SIZE
    if data.startswith(b"\x89PNG") and len(data) >= 24:
        w, h = struct.unpack(">II", data[16:24])
        return w, h
    if data[:3] == b"GIF" and len(data) >= 10:
        w, h = struct.unpack("<HH", data[6:10])
        return w, h
    if data[:2] == b"\xff\xd8":
        i = 2
        while i + 9 < len(data):
            if data[i] != 0xFF:
                break
            marker, length = data[i + 1], struct.unpack(">H", data[i + 2:i + 4])[0]
            if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
                h, w = struct.unpack(">HH", data[i + 5:i + 9])
                return w, h
            i += 2 + length
    return DEFAULT_SIZE


def image_tokens(part: ImagePart, provider: str) -> int:
    w, h = image_size(part.data)
    if provider == "anthropic":
        scale = min(1.0, 1568 / max(w, h, 1))
        return max(1, math.ceil(w * scale * h * scale / 750))
    if part.detail == "low":
        return 85
    scale = min(1.0, 2048 / max(w, h, 1))
    scale *= min(1.0, 768 / max(min(w, h) * scale, 1))
    return 85 + 170 * math.ceil(w * scale / 512) * math.ceil(h * scale / 512)


def document_tokens(part: DocumentPart, provider: str) -> int:
    data = part.data or b""
    if part.media_type == "application/pdf" or not data:
        pages = max(1, len(_PAGE.findall(data)))
        return pages * PAGE_TOKENS.get(provider, 1500)
    return (len(data) + 3) // 4


def part_tokens(part: AnyPart, provider: str) -> int:
    """Tokens of a non-text part (text parts are counted by the tokenizer; raw parts as JSON)."""
    if isinstance(part, ImagePart):
        return image_tokens(part, provider)
    if isinstance(part, DocumentPart):
        return document_tokens(part, provider)
    return 0
