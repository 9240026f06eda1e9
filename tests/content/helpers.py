"""Shared helpers for the content-model tests."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

from llmchain import Message, TextPart
from llmchain.transports.anthropic import AnthropicTransport
from llmchain.transports.openai import OpenAITransport

PNG = bytes.fromhex("89504e470d0a1a0a0000000d4948445200000002000000020806000000")  # a 2x2 PNG header
PDF = b"%PDF-1.4\n1 0 obj << /Type /Page >> endobj\n%%EOF"


def openai_transport() -> OpenAITransport:
    return OpenAITransport(OpenAITransport.Options(api_key_env=""))


def anthropic_transport() -> AnthropicTransport:
    return AnthropicTransport(AnthropicTransport.Options(api_key_env=""))


def materialize(value: Any) -> Any:
    """Validated SDK TypedDicts hold lazy iterators for Iterable fields: make them lists."""
    if isinstance(value, BaseModel):  # unions that also accept the SDK's response models
        return materialize(value.model_dump(exclude_unset=True, by_alias=True))
    if isinstance(value, dict):
        return {k: materialize(v) for k, v in value.items()}
    if isinstance(value, (str, bytes, int, float, bool, type(None))):
        return value
    return [materialize(v) for v in value]


def normalized(messages: list[Message] | tuple[Message, ...]) -> list[Message]:
    """Content written two equivalent ways made one: "" ≡ (), "text" ≡ (TextPart("text"),)."""
    out = []
    for m in messages:
        content = m.content
        if isinstance(content, str):
            content = (TextPart(text=content),) if content else ()
        out.append(m.model_copy(update={"content": content}))
    return out
