"""Every stage handles parts and tools: cache keys and entries, log lines, redaction, token estimates."""

from __future__ import annotations

import asyncio
import io
import json
import logging

from llmchain_redact import RedactMiddleware

from llmchain import (
    Chain,
    DocumentPart,
    ImagePart,
    LLMRequest,
    LLMResponse,
    Message,
    RawPart,
    TextPart,
    ToolCall,
)
from llmchain._media_tokens import image_size, image_tokens
from llmchain._tokens import TokenEstimator
from llmchain.middleware._cache_key import cache_key, decode_entry, encode_response, key_material
from llmchain.middleware.log import LogMiddleware, json_formatter
from llmchain.testing import MockReply, MockTransport
from llmchain.testing.scripted import ScriptedNext
from tests.content.helpers import PDF, PNG


def ask(*content: object, **params: object) -> LLMRequest:
    return LLMRequest(messages=[Message(role="user", content=list(content))], **params)  # type: ignore[arg-type]


def test_plain_requests_keep_their_cache_keys() -> None:
    plain = LLMRequest(messages=[Message(role="user", content="hi")])
    assert len(key_material(plain)) == 12  # the documented layout, unchanged
    assert key_material(plain)[4] == [["user", "hi", None]]


def test_images_are_keyed_by_content_hash_never_by_repr() -> None:
    a, b = ImagePart(data=PNG + b"\x00"), ImagePart(data=PNG + b"\x01")
    assert repr(a) == repr(b)  # the bytes are not in the repr: a repr-based key would collide
    assert cache_key(ask("what?", a)) != cache_key(ask("what?", b))
    assert cache_key(ask("what?", a)) == cache_key(ask("what?", ImagePart(data=PNG + b"\x00")))
    text = json.dumps(key_material(ask("what?", a)))
    assert "sha256" not in text and a.data is not None and a.data.hex() not in text  # a digest, not the bytes
    assert cache_key(ask(DocumentPart(data=PDF))) != cache_key(ask(DocumentPart(data=PDF + b" ")))
    assert cache_key(ask("x", detail_image := ImagePart(url="https://a/b.png", detail="low"))) != cache_key(
        ask("x", detail_image.model_copy(update={"detail": "high"})))


def test_tools_tool_choice_and_tool_messages_change_the_key() -> None:
    base = ask("q")
    with_tool = ask("q", tools=[{"name": "f"}])
    assert len({cache_key(base), cache_key(with_tool), cache_key(ask("q", tools=[{"name": "g"}])),
                cache_key(ask("q", tools=[{"name": "f"}], tool_choice="f")),
                cache_key(ask("q", tools=[{"name": "f"}], parallel_tool_calls=False))}) == 5
    call = ToolCall(id="c1", name="f", arguments='{"a": 1}')
    turn = [Message(role="user", content="q"), Message(role="assistant", content="", tool_calls=(call,))]
    one = LLMRequest(messages=[*turn, call.result("one")])
    two = LLMRequest(messages=[*turn, call.result("two")])
    other_args = LLMRequest(messages=[turn[0], Message(role="assistant", content="", tool_calls=(
        call.model_copy(update={"arguments": '{"a": 2}'}),)), call.result("one")])
    assert len({cache_key(one), cache_key(two), cache_key(other_args)}) == 3


def test_cache_entries_keep_tool_calls_and_parts() -> None:
    thinking = RawPart(provider="anthropic", data={"type": "thinking", "thinking": "t", "signature": "s"})
    response = LLMResponse(text="hi", tool_calls=(ToolCall(id="c1", name="f", arguments="{}"),),
                           parts=(thinking, TextPart(text="hi"), ImagePart(data=PNG)), finish_reason="tool_calls")
    encoded = encode_response(response)
    assert encoded is not None
    template = decode_entry(encoded).template
    assert (template.tool_calls, template.parts) == (response.tool_calls, response.parts)


def test_cached_tool_call_answers_come_back_whole() -> None:
    transport = MockTransport.scripted(MockReply(tool_calls=({"name": "f", "arguments": {"a": 1}},)))
    with Chain(["cache"], transport) as chain:
        first = chain.complete("q", tools=[{"name": "f"}])
        second = chain.complete("q", tools=[{"name": "f"}])
    assert second.cache is not None and second.cache.status == "hit"
    assert second.tool_calls == first.tool_calls and second.finish_reason == "tool_calls"


def test_log_shows_binary_parts_as_labels_and_redacts_tool_arguments() -> None:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(json_formatter())
    logger = logging.getLogger("llmchain.tests.content")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        image = ImagePart(data=PNG + bytes(34 * 1024))
        reply = MockReply(text="", tool_calls=({"name": "send", "arguments": {"key": "sk-abcdefghijklmnopqrstu"}},))
        stage = LogMiddleware(LogMiddleware.Options(logger=logger.name, handler="none", include_bodies=True))
        with Chain([stage], MockTransport.scripted(reply)) as chain:
            chain.complete([Message(role="user", content=["look at sk-abcdefghijklmnopqrstu", image])])
    finally:
        logger.removeHandler(handler)
    (line,) = [json.loads(x) for x in stream.getvalue().splitlines()]
    assert line["prompt"] == "user: look at [REDACTED] [image/png 34 KB]"
    assert line["answer"] == ' send({"key": "[REDACTED]"})'
    assert "iVBOR" not in stream.getvalue()  # never the image's bytes (or their base64)


def test_redact_masks_text_parts_and_tool_arguments_and_restores_them() -> None:
    call = ToolCall(id="c1", name="email", arguments='{"to": "ann@example.com"}')
    request = LLMRequest(messages=[
        Message(role="user", content=["write to ann@example.com", ImagePart(data=PNG)]),
        Message(role="assistant", content="", tool_calls=(call,)), call.result("sent")])
    inner = ScriptedNext(LLMResponse(text="", tool_calls=(
        ToolCall(id="c2", name="email", arguments='{"to": "<EMAIL_1>"}'),)))
    response = asyncio.run(RedactMiddleware().handle(request, inner))
    sent = inner.last_request.messages
    assert sent[0].content == (TextPart(text="write to <EMAIL_1>"), ImagePart(data=PNG))
    assert sent[1].tool_calls[0].arguments == '{"to": "<EMAIL_1>"}'
    assert response.tool_calls[0].arguments == '{"to": "ann@example.com"}'


def test_token_estimates_include_images_and_documents_per_provider() -> None:
    estimator = TokenEstimator("heuristic")
    text_only = estimator.input_tokens(ask("what is this?"))
    assert image_size(PNG) == (2, 2)
    small = ImagePart(data=PNG)
    big = ImagePart(url="https://x/unknown-size.png")  # assumed 1024x1024
    assert image_tokens(small, "openai") == 85 + 170 and image_tokens(small, "anthropic") == 1
    assert image_tokens(big, "openai") == 85 + 170 * 4 and image_tokens(big, "anthropic") == 1399
    assert image_tokens(big.model_copy(update={"detail": "low"}), "openai") == 85
    assert estimator.input_tokens(ask("what is this?", big)) == text_only + 765
    anthropic = {"llmchain.transport": {"kind": "anthropic"}}
    assert estimator.input_tokens(ask("what is this?", big, metadata=anthropic)) == text_only + 1399
    two_pages = DocumentPart(data=PDF + b"\n2 0 obj << /Type /Page >> endobj")
    assert estimator.input_tokens(ask("what is this?", two_pages, metadata=anthropic)) == text_only + 3000
    with_tools = estimator.input_tokens(ask("what is this?", tools=[{"name": "lookup", "description": "x" * 40}]))
    assert with_tools > text_only + 10
