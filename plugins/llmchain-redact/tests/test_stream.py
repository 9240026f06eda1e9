"""The redact stage on streamed answers: placeholders restored chunk by chunk, including one
split across two chunks; the request never carries the value."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from typing import Any

from llmchain_redact import RedactMiddleware

from llmchain import Chain, LLMRequest, LLMResponse, StreamEnd, TextDelta


class SplittingTransport:
    """Streams back the placeholder it was sent, cut in the middle across two chunks."""

    name = "split:m"

    def __init__(self) -> None:
        self.sent: list[str] = []

    def identity(self) -> dict[str, Any]:
        return {"kind": "split"}

    async def send(self, request: LLMRequest) -> LLMResponse:
        raise AssertionError("streamed calls use stream()")

    async def stream(self, request: LLMRequest) -> AsyncIterator[str | LLMResponse]:
        prompt = request.messages[-1].content
        self.sent.append(prompt)
        match = re.search(r"<EMAIL_\d+>", prompt)
        assert match is not None
        placeholder = match.group()
        chunks = ["Write to ", placeholder[:4], placeholder[4:] + " today", " <not a placeholder"]
        for chunk in chunks:
            yield chunk
        yield LLMResponse(text="".join(chunks))

    async def aclose(self) -> None:
        pass


def test_a_placeholder_split_across_two_chunks_is_restored() -> None:
    transport = SplittingTransport()
    chain = Chain([RedactMiddleware()], transport)

    async def main() -> tuple[list[Any], Any]:
        stream = chain.astream("mail alice@example.com please")
        return [e async for e in stream.events()], stream.response

    events, response = asyncio.run(main())
    assert "alice@example.com" not in transport.sent[0]
    chunks = [e.text for e in events if isinstance(e, TextDelta)]
    assert "".join(chunks) == "Write to alice@example.com today <not a placeholder"
    assert not any("<EMA" in c for c in chunks)  # the half placeholder never went out
    assert chunks[0] == "Write to "  # text before it was not held back
    assert isinstance(events[-1], StreamEnd) and response is not None
    assert response.text == "Write to alice@example.com today <not a placeholder"
    assert response.notes["redacted"] == {"EMAIL": 1}
