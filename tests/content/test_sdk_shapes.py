"""Our request bodies are valid for the official SDKs' own request types, and the SDK docs'
example responses and inputs parse into our model with nothing lost."""

from __future__ import annotations

import functools
import json
from typing import Any

from anthropic.types import Message as AnthropicMessage
from anthropic.types.message_create_params import MessageCreateParamsNonStreaming
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from openai.types.chat import ChatCompletion
from openai.types.chat.completion_create_params import CompletionCreateParamsNonStreaming
from pydantic import TypeAdapter

from llmchain import Chain, ImagePart, LLMRequest, RawPart, TextPart
from llmchain.testing import strategies as lst
from llmchain.transports._openai_wire import messages_to_openai
from tests.content.helpers import anthropic_transport, materialize, openai_transport

SETTINGS = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
CHOICES = st.none() | st.sampled_from(["auto", "none", "required", "lookup"])


@functools.cache
def adapter(kind: str) -> TypeAdapter[Any]:
    params = CompletionCreateParamsNonStreaming if kind == "openai" else MessageCreateParamsNonStreaming
    return TypeAdapter(params)


def assert_valid_for_sdk(kind: str, body: dict[str, Any]) -> None:
    # validation drops keys the SDK type does not know: equality proves there were none
    assert materialize(adapter(kind).validate_python(body)) == body


@SETTINGS
@given(messages=lst.rich_messages("openai"), tools=lst.tools(), choice=CHOICES, parallel=st.none() | st.booleans())
def test_openai_bodies_are_valid_sdk_params(messages, tools, choice, parallel) -> None:
    tools = (*tools, *([{"name": "lookup"}] if choice == "lookup" else []))
    request = LLMRequest(messages=messages, tools=tools, tool_choice=choice, parallel_tool_calls=parallel)
    assert_valid_for_sdk("openai", openai_transport().encode(request, False))


@SETTINGS
@given(messages=lst.rich_messages("anthropic"), tools=lst.tools(), choice=CHOICES, parallel=st.none() | st.booleans())
def test_anthropic_bodies_are_valid_sdk_params(messages, tools, choice, parallel) -> None:
    tools = (*tools, *([{"name": "lookup"}] if choice == "lookup" else []))
    request = LLMRequest(messages=messages, tools=tools, tool_choice=choice, parallel_tool_calls=parallel)
    assert_valid_for_sdk("anthropic", anthropic_transport().encode(request, False))


# -- the SDK docs' examples ---------------------------------------------------------------------

OPENAI_TOOL_CALLS = {  # platform.openai.com function-calling guide, parallel calls
    "id": "chatcmpl-abc123", "object": "chat.completion", "created": 1699896916, "model": "gpt-4o-mini",
    "choices": [{"index": 0, "finish_reason": "tool_calls", "logprobs": None, "message": {
        "role": "assistant", "content": None, "refusal": None, "tool_calls": [
            {"id": "call_abc123", "type": "function",
             "function": {"name": "get_current_weather", "arguments": "{\n\"location\": \"Boston, MA\"\n}"}},
            {"id": "call_def456", "type": "function",
             "function": {"name": "get_current_weather", "arguments": "{\"location\": \"Tokyo\"}"}}]}}],
    "usage": {"prompt_tokens": 82, "completion_tokens": 17, "total_tokens": 99,
              "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0}},
}
ANTHROPIC_TOOL_USE = {  # docs.anthropic.com tool-use overview
    "id": "msg_01Aq9w938a90dw8q", "type": "message", "role": "assistant", "model": "claude-sonnet-4-5",
    "stop_reason": "tool_use", "stop_sequence": None,
    "usage": {"input_tokens": 472, "output_tokens": 91},
    "content": [
        {"type": "text", "text": "I'll check the current weather in San Francisco for you."},
        {"type": "tool_use", "id": "toolu_01A09q90qw90lq917835lq9", "name": "get_weather",
         "input": {"location": "San Francisco, CA", "unit": "celsius"}}],
}
ANTHROPIC_THINKING = {  # extended thinking: the signed block must go back unchanged in a tool loop
    "id": "msg_01", "type": "message", "role": "assistant", "model": "claude-sonnet-4-5",
    "stop_reason": "tool_use", "stop_sequence": None, "usage": {"input_tokens": 10, "output_tokens": 20},
    "content": [
        {"type": "thinking", "thinking": "The user wants the weather...", "signature": "EqQBCgIYAhIM1gbcDa9GJwZA"},
        {"type": "tool_use", "id": "toolu_01", "name": "get_weather", "input": {"location": "Paris"}}],
}


def test_openai_doc_tool_calls_response_parses_whole() -> None:
    ChatCompletion.model_validate(OPENAI_TOOL_CALLS)  # it is a genuine SDK shape
    response = openai_transport().decode(OPENAI_TOOL_CALLS, LLMRequest(messages=[{"role": "user", "content": "q"}]), {})
    assert [(c.id, c.name) for c in response.tool_calls] == [
        ("call_abc123", "get_current_weather"), ("call_def456", "get_current_weather")]
    assert response.tool_calls[0].arguments == "{\n\"location\": \"Boston, MA\"\n}"  # raw, as sent
    assert response.tool_calls[0].args == {"location": "Boston, MA"}
    assert response.finish_reason == "tool_calls"
    assert (response.usage.input_tokens, response.usage.output_tokens) == (82, 17)
    assert response.message.tool_calls == response.tool_calls


def test_anthropic_doc_tool_use_response_parses_whole() -> None:
    AnthropicMessage.model_validate(ANTHROPIC_TOOL_USE)
    response = anthropic_transport().decode(ANTHROPIC_TOOL_USE, LLMRequest(messages=[{"role": "user", "content": "q"}]), {})
    assert response.text == "I'll check the current weather in San Francisco for you."
    (call,) = response.tool_calls
    assert (call.id, call.name, call.args) == ("toolu_01A09q90qw90lq917835lq9", "get_weather",
                                               {"location": "San Francisco, CA", "unit": "celsius"})
    assert response.finish_reason == "tool_calls"
    assert response.usage.input_tokens == 472


def test_anthropic_thinking_block_is_kept_and_sent_back_verbatim() -> None:
    AnthropicMessage.model_validate(ANTHROPIC_THINKING)
    transport = anthropic_transport()
    response = transport.decode(ANTHROPIC_THINKING, LLMRequest(messages=[{"role": "user", "content": "q"}]), {})
    assert response.parts == (RawPart(provider="anthropic", data=ANTHROPIC_THINKING["content"][0]),)
    history = [{"role": "user", "content": "q"}, response.message,
               response.tool_calls[0].result("sunny")]
    body = transport.encode(LLMRequest(messages=Chain().build_request(history).messages), False)
    assert body["messages"][1]["content"] == ANTHROPIC_THINKING["content"]  # thinking first, unchanged
    assert_valid_for_sdk("anthropic", body)


OPENAI_IMAGE_INPUT = [  # the vision guide's request messages
    {"role": "user", "content": [
        {"type": "text", "text": "What's in this image?"},
        {"type": "image_url", "image_url": {"url": "https://upload.wikimedia.org/a.jpg", "detail": "high"}},
        {"type": "image_url", "image_url": {"url": "data:image/jpeg;base64,/9j/4AAQSkZJRg=="}}]},
]
ANTHROPIC_IMAGE_INPUT = [  # the vision guide's request messages
    {"role": "user", "content": [
        {"type": "image", "source": {"type": "base64", "media_type": "image/jpeg", "data": "/9j/4AAQSkZJRg=="}},
        {"type": "image", "source": {"type": "url", "url": "https://upload.wikimedia.org/a.jpg"}},
        {"type": "document", "source": {"type": "base64", "media_type": "application/pdf", "data": "JVBERi0xLjQ="},
         "title": "report.pdf"},
        {"type": "text", "text": "Describe these."}]},
]


def test_doc_image_inputs_parse_and_map_back_exactly() -> None:
    chain = Chain()
    (message,) = chain.build_request(OPENAI_IMAGE_INPUT).messages
    assert message.content[1] == ImagePart(url="https://upload.wikimedia.org/a.jpg", detail="high")
    assert message.content[2] == ImagePart(data=b"\xff\xd8\xff\xe0\x00\x10JFIF", media_type="image/jpeg")
    assert messages_to_openai((message,), "openai") == OPENAI_IMAGE_INPUT
    (message,) = chain.build_request(ANTHROPIC_IMAGE_INPUT).messages
    assert message.content[3] == TextPart(text="Describe these.")
    body = anthropic_transport().encode(LLMRequest(messages=(message,)), False)
    assert body["messages"] == ANTHROPIC_IMAGE_INPUT
    assert json.loads(json.dumps(body)) == body
