"""Ask a question about an image (or a PDF).

Offline: ``python examples/image_question.py`` uses the mock transport, whose echo answer
describes what it received. Against a real provider, give a config file and, optionally, your
own file: ``python examples/image_question.py my-anthropic.toml photo.jpg`` (a ``.pdf`` is sent
as a document). The file says::

    [transport]
    use = "anthropic"       # or "openai"
    model = "claude-3-5-haiku-latest"
"""

from __future__ import annotations

import struct
import sys
import zlib
from pathlib import Path

from llmchain import Chain, DocumentPart, ImagePart, Message


def tiny_png(width: int = 8, height: int = 8) -> bytes:
    """A valid red PNG, so the example needs no file."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    rows = b"".join(b"\x00" + b"\xff\x00\x00" * width for _ in range(height))
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(rows))
            + chunk(b"IEND", b""))


def main() -> None:
    chain = Chain.from_config(sys.argv[1]) if len(sys.argv) > 1 else Chain(["retry"], "mock")
    path = Path(sys.argv[2]) if len(sys.argv) > 2 else None
    if path is None:
        attachment: ImagePart | DocumentPart = ImagePart(data=tiny_png())
    elif path.suffix.lower() == ".pdf":
        attachment = DocumentPart.from_path(path)
    else:
        attachment = ImagePart.from_path(path)
    question = Message(role="user", content=["What is in this file? One sentence.", attachment])
    with chain:
        response = chain.complete([question])
    print(response.text)
    print(f"({response.usage.input_tokens} input tokens, as the provider counted them)")


if __name__ == "__main__":
    main()
