"""Content parts: what a message carries besides plain text.

``Message.content`` is either a string or a tuple of parts::

    Message(role="user", content=["What is in this picture?", ImagePart.from_path("cat.png")])

* ``TextPart``: text.
* ``ImagePart``: an image by ``url`` (https or data URL), or by ``data`` (bytes) + ``media_type``.
* ``DocumentPart``: a file such as a PDF, by ``data`` + ``media_type`` (or ``url`` where the
  provider fetches it), with an optional file ``name``.
* ``RawPart``: anything a provider sent that llmchain does not model (Anthropic thinking blocks,
  OpenAI audio...), kept verbatim as the provider's own dict and sent back verbatim to the same
  kind of transport. A transport of another kind refuses it with ``UnsupportedContent``.

``data`` may be given as bytes or as a base64 string (decoded once, here). docs/content.md has
how each part maps onto each provider.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import mimetypes
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator


class _Part(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", ser_json_bytes="base64",
                              val_json_bytes="base64")


def _bytes(value: Any) -> Any:
    """base64 text → bytes (what the providers' wire formats carry); bytes unchanged."""
    if isinstance(value, str):
        try:
            # pydantic's JSON form of bytes is the URL-safe alphabet: accept both
            altchars = b"-_" if "-" in value or "_" in value else None
            return base64.b64decode(value, altchars=altchars, validate=True)
        except (binascii.Error, ValueError):
            raise ValueError("data must be bytes or a base64 string") from None
    return value


_MAGIC = ((b"\x89PNG\r\n\x1a\n", "image/png"), (b"\xff\xd8\xff", "image/jpeg"),
          (b"GIF87a", "image/gif"), (b"GIF89a", "image/gif"), (b"%PDF-", "application/pdf"))


def sniff_media_type(data: bytes) -> str | None:
    """The media type of common image/PDF bytes from their first bytes, or None."""
    for magic, kind in _MAGIC:
        if data.startswith(magic):
            return kind
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    return None


class TextPart(_Part):
    """Plain text."""

    type: Literal["text"] = "text"
    text: str


class ImagePart(_Part):
    """An image: ``url`` (https or ``data:`` URL) or ``data`` bytes with a ``media_type``.

    ``detail`` ("low" / "high" / "auto") is OpenAI's resolution hint; Anthropic has none.
    """

    type: Literal["image"] = "image"
    url: str | None = None
    data: bytes | None = Field(None, repr=False)
    media_type: str | None = None
    detail: Literal["auto", "low", "high"] | None = None

    _data_bytes = field_validator("data", mode="before")(_bytes)

    @model_validator(mode="before")
    @classmethod
    def _sniff_media_type(cls, values: Any) -> Any:
        """Bytes without a media type: named from their magic number before the (frozen)
        model is built, so nothing is set on it afterwards."""
        if isinstance(values, dict) and values.get("data") is not None and values.get("media_type") is None:
            data = _bytes(values["data"])
            if isinstance(data, bytes):
                sniffed = sniff_media_type(data)
                if sniffed is None:
                    raise ValueError("an image given as data needs media_type (e.g. 'image/png')")
                values = {**values, "data": data, "media_type": sniffed}
        return values

    @model_validator(mode="after")
    def _one_source(self) -> ImagePart:
        if (self.url is None) == (self.data is None):
            raise ValueError("an image needs exactly one of url or data")
        return self

    @classmethod
    def from_path(cls, path: str | Path, media_type: str | None = None) -> ImagePart:
        data = Path(path).read_bytes()
        return cls(data=data, media_type=media_type or _guess(path, data))


class DocumentPart(_Part):
    """A document (PDF by default): ``data`` bytes, or a ``url`` the provider fetches."""

    type: Literal["document"] = "document"
    data: bytes | None = Field(None, repr=False)
    url: str | None = None
    media_type: str = "application/pdf"
    name: str | None = Field(None, description="File name or title shown to the model.")

    _data_bytes = field_validator("data", mode="before")(_bytes)

    @model_validator(mode="after")
    def _one_source(self) -> DocumentPart:
        if (self.url is None) == (self.data is None):
            raise ValueError("a document needs exactly one of url or data")
        return self

    @classmethod
    def from_path(cls, path: str | Path, media_type: str | None = None) -> DocumentPart:
        data = Path(path).read_bytes()
        return cls(data=data, media_type=media_type or _guess(path, data), name=Path(path).name)


class RawPart(_Part):
    """A provider's own content item, kept verbatim (``provider``: "openai" or "anthropic")."""

    type: Literal["raw"] = "raw"
    provider: str
    data: dict[str, Any]


Part = Annotated[TextPart | ImagePart | DocumentPart | RawPart, Field(discriminator="type")]
AnyPart = TextPart | ImagePart | DocumentPart | RawPart
Content = str | tuple[Part, ...]


def _guess(path: str | Path, data: bytes) -> str:
    return sniff_media_type(data) or mimetypes.guess_type(str(path))[0] or "application/octet-stream"


def coerce_parts(value: Any) -> Any:
    """Plain strings inside a content list become TextParts (``["look:", ImagePart(...)]``)."""
    if isinstance(value, (list, tuple)):
        return tuple(TextPart(text=v) if isinstance(v, str) else v for v in value)
    return value


def text_of(content: str | tuple[AnyPart, ...]) -> str:
    """The text of ``content``: the string, or its text parts joined."""
    if isinstance(content, str):
        return content
    return "".join(p.text for p in content if isinstance(p, TextPart))


def size_label(n: int) -> str:
    return f"{n} B" if n < 1024 else f"{n / 1024:.0f} KB" if n < 1024 * 1024 else f"{n / 1048576:.1f} MB"


def describe_part(part: AnyPart) -> str:
    """A short, log-safe label: ``image/png 34 KB``, ``image https://...``, never the bytes."""
    if isinstance(part, TextPart):
        return part.text
    if isinstance(part, RawPart):
        return f"[{part.provider} {part.data.get('type', 'item')}]"
    if isinstance(part, ImagePart) and part.url is not None:
        where = part.url if not part.url.startswith("data:") else part.url.split(",", 1)[0]
        return f"[image {where[:80]}]"
    data = part.data
    if data is None:  # a document by URL
        return f"[document {str(getattr(part, 'url', ''))[:80]}]"
    name = f" {part.name}" if isinstance(part, DocumentPart) and part.name else ""
    return f"[{part.media_type} {size_label(len(data))}{name}]"


def describe_content(content: str | tuple[AnyPart, ...]) -> str:
    """``content`` as log text: strings and text parts as they are, other parts as labels."""
    if isinstance(content, str):
        return content
    return " ".join(describe_part(p) for p in content)


def describe_message(message: Any) -> str:
    """``role: content`` for logs: binary parts as labels, tool calls as ``name(arguments)``."""
    line = f"{message.role}: {describe_content(message.content)}"
    if message.tool_call_id:
        line += f" [result of {message.tool_call_id}]"
    calls = " ".join(f"{c.name}({c.arguments})" for c in message.tool_calls)
    return f"{line} {calls}" if calls else line


def part_key(part: AnyPart) -> Any:
    """What a cache key holds for ``part``: bytes by sha256, never by repr."""
    if isinstance(part, TextPart):
        return ["text", part.text]
    if isinstance(part, RawPart):
        return ["raw", part.provider, part.data]
    data = part.data
    digest = hashlib.sha256(data).hexdigest() if data is not None else None
    if isinstance(part, ImagePart):
        return ["image", part.url, digest, part.media_type, part.detail]
    return ["document", part.url, digest, part.media_type, part.name]


def content_chars(content: str | tuple[AnyPart, ...]) -> int:
    """Characters of text in ``content`` (binary parts count none)."""
    return len(content) if isinstance(content, str) else len(text_of(content))
