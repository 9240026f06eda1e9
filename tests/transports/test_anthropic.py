"""Anthropic transport: the Messages request it builds, documented bodies it reads, and the
official SDK talking to the fault server."""

from __future__ import annotations

import json
import time
from typing import Any

import anthropic
import pytest

from llmchain import Chain, ConfigError, LLMResponse, Message, ProviderError, RateLimited
from llmchain.policies.headers import rate_limit_hints
from llmchain.testing.fault_server import Fault, FaultServer
from llmchain.transports.anthropic import AnthropicTransport

from .helpers import SCHEMA, ask, make, send, stream

pytest_plugins = ["llmchain.testing.fixtures"]

DOC_MESSAGE = {
    "content": [{"text": "Hi! My name is Claude.", "type": "text"}],
    "id": "msg_013Zva2CMHLNnXjNJJKqJ2EF", "model": "claude-3-5-sonnet-20241022", "role": "assistant",
    "stop_reason": "end_turn", "stop_sequence": None, "type": "message",
    "usage": {"input_tokens": 2095, "output_tokens": 503, "cache_creation_input_tokens": 5,
              "cache_read_input_tokens": 100},
}
DOC_STREAM = """event: message_start
data: {"type": "message_start", "message": {"id": "msg_1nZdL29xx5MUA1yADyHTEsnR8uuvGzszyY", "type": "message", "role": "assistant", "content": [], "model": "claude-3-5-sonnet-20241022", "stop_reason": null, "stop_sequence": null, "usage": {"input_tokens": 25, "output_tokens": 1}}}

event: content_block_start
data: {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}

event: ping
data: {"type": "ping"}

event: content_block_delta
data: {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "Hello"}}

event: content_block_delta
data: {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "!"}}

event: content_block_stop
data: {"type": "content_block_stop", "index": 0}

event: message_delta
data: {"type": "message_delta", "delta": {"stop_reason": "end_turn", "stop_sequence":null}, "usage": {"output_tokens": 15}}

event: message_stop
data: {"type": "message_stop"}

"""
TOOL_STREAM = """event: message_start
data: {"type":"message_start","message":{"id":"msg_1","type":"message","role":"assistant","model":"claude-3-5-sonnet-20241022","content":[],"stop_reason":null,"stop_sequence":null,"usage":{"input_tokens":472,"output_tokens":2}}}

event: content_block_start
data: {"type":"content_block_start","index":0,"content_block":{"type":"tool_use","id":"toolu_01T1x1fJ34qAmk2tNTrN7Up6","name":"respond","input":{}}}

event: content_block_delta
data: {"type":"content_block_delta","index":0,"delta":{"type":"input_json_delta","partial_json":""}}

event: content_block_delta
data: {"type":"content_block_delta","index":0,"delta":{"type":"input_json_delta","partial_json":"{\\"name\\": \\"Ada\\","}}

event: content_block_delta
data: {"type":"content_block_delta","index":0,"delta":{"type":"input_json_delta","partial_json":" \\"age\\": 36}"}}

event: content_block_stop
data: {"type":"content_block_stop","index":0}

event: message_delta
data: {"type":"message_delta","delta":{"stop_reason":"tool_use","stop_sequence":null},"usage":{"output_tokens":89}}

event: message_stop
data: {"type":"message_stop"}

"""


def transport(**options: Any) -> AnthropicTransport:
    return AnthropicTransport(AnthropicTransport.Options(api_key_env="", **options))


def test_request_body_splits_the_system_prompt() -> None:
    request = ask(temperature=0.5, top_p=0.8, stop=("\n\nHuman:",), seed=3, extra={"metadata": {"user_id": "u"}})
    request = request.model_copy(update={"messages": (
        Message(role="system", content="rule 1"), Message(role="user", content="q1"),
        Message(role="assistant", content="a1"), Message(role="system", content="rule 2"),
        Message(role="tool", content="tool says"))})
    body = transport().encode(request, stream=False)
    assert body == {
        "model": "claude-3-5-haiku-latest", "max_tokens": 1024, "system": "rule 1\n\nrule 2",
        "messages": [{"role": "user", "content": "q1"}, {"role": "assistant", "content": "a1"},
                     {"role": "user", "content": "tool says"}],
        "temperature": 0.5, "top_p": 0.8, "stop_sequences": ["\n\nHuman:"], "metadata": {"user_id": "u"},
    }
    assert transport(max_tokens=99).encode(ask(max_tokens=7), True) | {"messages": []} == {
        "model": "claude-3-5-haiku-latest", "max_tokens": 7, "system": "be brief", "messages": [],
        "stream": True}


def test_structured_output_is_forced_tool_use() -> None:
    body = transport().encode(ask(output_schema=SCHEMA), False)
    assert body["tools"][0]["name"] == "respond" and body["tools"][0]["input_schema"] == SCHEMA
    assert body["tool_choice"] == {"type": "tool", "name": "respond"}
    assert "tools" not in transport(structured="off").encode(ask(output_schema=SCHEMA), False)


def test_non_object_schemas_are_wrapped(fault_server: FaultServer) -> None:
    schema = {"type": "array", "items": {"$ref": "#/$defs/P"}, "$defs": {"P": SCHEMA}}
    tool = transport().encode(ask(output_schema=schema), False)["tools"][0]["input_schema"]
    assert tool == {"type": "object", "properties": {"value": {"type": "array", "items": {"$ref": "#/$defs/P"}}},
                    "required": ["value"], "$defs": {"P": SCHEMA}}
    answer = {"type": "message", "model": "m", "stop_reason": "tool_use", "usage": {}, "content": [
        {"type": "tool_use", "id": "t", "name": "respond", "input": {"value": [{"name": "a", "age": 1}]}}]}
    fault_server.set_plan([Fault(raw=json.dumps(answer).encode())])
    response = send(make("anthropic", fault_server), ask(output_schema=schema))
    assert isinstance(response, LLMResponse) and json.loads(response.text) == [{"name": "a", "age": 1}]
    items, err = stream(make("anthropic", fault_server), ask(output_schema=schema))
    assert err is None and json.loads("".join(items[:-1])) == json.loads(items[-1].text) == []


def test_headers(fault_server: FaultServer, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-secret-value-1")
    t = AnthropicTransport(AnthropicTransport.Options(base_url=fault_server.anthropic_base_url,
                                                      beta=["prompt-caching-2024-07-31"]))
    assert isinstance(send(t), LLMResponse)
    headers = fault_server.requests[-1].headers
    assert headers["x-api-key"] == "sk-ant-secret-value-1"
    assert headers["anthropic-version"] == "2023-06-01"
    assert headers["anthropic-beta"] == "prompt-caching-2024-07-31"
    assert "sk-ant-secret" not in repr(t) and "[REDACTED]" in repr(t)


def test_missing_key_names_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)
    with pytest.raises(ConfigError, match="ANTHROPIC_API_KEY"):
        Chain([], {"use": "anthropic"})


def test_documented_message(fault_server: FaultServer) -> None:
    fault_server.set_plan([Fault(raw=json.dumps(DOC_MESSAGE).encode(), headers={
        "request-id": "req_018EeWyXxfu5pfWkrYcMdjWG",
        "anthropic-ratelimit-requests-limit": "4000", "anthropic-ratelimit-requests-remaining": "3999",
        "anthropic-ratelimit-requests-reset": "2099-01-01T00:00:00Z",
        "anthropic-ratelimit-tokens-limit": "400000", "anthropic-ratelimit-tokens-remaining": "398000"})])
    response = send(make("anthropic", fault_server))
    assert isinstance(response, LLMResponse)
    assert response.text == "Hi! My name is Claude."
    assert (response.usage.input_tokens, response.usage.output_tokens) == (2200, 503)
    assert (response.model, response.finish_reason) == ("claude-3-5-sonnet-20241022", "stop")
    assert response.headers["request-id"] == "req_018EeWyXxfu5pfWkrYcMdjWG"
    limit = rate_limit_hints(response.headers, time.time())  # what the rate_limit stage reads
    assert (limit.remaining_requests, limit.remaining_tokens) == (3999, 398000)
    assert limit.reset_requests_s is not None and limit.reset_requests_s > 1e6


@pytest.mark.parametrize(("stop", "finish"), [("max_tokens", "length"), ("stop_sequence", "stop"),
                                              ("refusal", "content_filter"), ("pause_turn", "pause_turn")])
def test_stop_reasons(fault_server: FaultServer, stop: str, finish: str) -> None:
    fault_server.set_plan([Fault(raw=json.dumps({**DOC_MESSAGE, "stop_reason": stop}).encode())])
    response = send(make("anthropic", fault_server))
    assert isinstance(response, LLMResponse) and response.finish_reason == finish


def test_documented_streams(fault_server: FaultServer) -> None:
    fault_server.set_plan([Fault(raw=DOC_STREAM.encode(), content_type="text/event-stream"),
                           Fault(raw=TOOL_STREAM.encode(), content_type="text/event-stream")])
    items, err = stream(make("anthropic", fault_server))
    assert err is None and items[:-1] == ["Hello", "!"]
    final = items[-1]
    assert (final.text, final.finish_reason, final.usage.input_tokens, final.usage.output_tokens) == (
        "Hello!", "stop", 25, 15)
    items, err = stream(make("anthropic", fault_server), ask(output_schema=SCHEMA))
    assert err is None and json.loads(items[-1].text) == {"name": "Ada", "age": 36}
    assert "".join(items[:-1]) == '{"name": "Ada", "age": 36}'


def test_text_instead_of_the_tool_is_still_the_answer(fault_server: FaultServer) -> None:
    fault_server.set_plan(["content_not_json", "content_not_json"])
    response = send(make("anthropic", fault_server), ask(output_schema=SCHEMA))
    assert isinstance(response, LLMResponse) and response.text.startswith("Sure! Here is the JSON")
    items, err = stream(make("anthropic", fault_server), ask(output_schema=SCHEMA))
    assert err is None and "".join(items[:-1]) == items[-1].text == response.text


def test_error_body_with_200(fault_server: FaultServer) -> None:
    overloaded = {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}
    fault_server.set_plan([Fault(raw=json.dumps(overloaded).encode())])
    err = send(make("anthropic", fault_server))
    assert isinstance(err, ProviderError) and err.status_code == 529 and err.retryable


# -- the official SDK against the fault server ----------------------------------------------


@pytest.fixture
def client(fault_server: FaultServer) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=fault_server.anthropic_base_url, api_key="sk-ant-sdk-0000",
                               max_retries=0)


def test_sdk_message(client: anthropic.Anthropic, fault_server: FaultServer) -> None:
    msg = client.messages.create(model="claude-3-5-haiku-latest", max_tokens=64, system="brief",
                                 messages=[{"role": "user", "content": "hi sdk"}])
    assert msg.content[0].type == "text" and msg.content[0].text == "hi sdk"
    assert msg.usage.input_tokens >= 1 and msg.stop_reason == "end_turn"
    headers = fault_server.requests[-1].headers  # older SDKs send x-api-key, newer a bearer token
    assert "sk-ant-sdk-0000" in (headers.get("x-api-key", ""), headers.get("authorization", "")[7:])
    assert headers["anthropic-version"]


def test_sdk_stream(client: anthropic.Anthropic) -> None:
    with client.messages.stream(model="m", max_tokens=64,
                                messages=[{"role": "user", "content": "streaming via the sdk"}]) as s:
        text = "".join(s.text_stream)
        final = s.get_final_message()
    assert text == "streaming via the sdk"
    assert final.usage.output_tokens > 0 and final.stop_reason == "end_turn"


def test_sdk_tool_use(client: anthropic.Anthropic) -> None:
    msg = client.messages.create(model="m", max_tokens=64, messages=[{"role": "user", "content": "x"}],
                                 tools=[{"name": "respond", "input_schema": SCHEMA}],  # type: ignore[list-item]
                                 tool_choice={"type": "tool", "name": "respond"})
    block = msg.content[0]
    assert block.type == "tool_use" and block.input == {"name": "text", "age": 1}


def test_sdk_errors(client: anthropic.Anthropic, fault_server: FaultServer) -> None:
    fault_server.set_plan(["429", "529", "stream_error"])
    with pytest.raises(anthropic.RateLimitError):
        client.messages.create(model="m", max_tokens=8, messages=[{"role": "user", "content": "x"}])
    with pytest.raises(anthropic.APIStatusError) as info:
        client.messages.create(model="m", max_tokens=8, messages=[{"role": "user", "content": "x"}])
    assert info.value.status_code == 529
    with pytest.raises(anthropic.APIError, match="Overloaded"), client.messages.stream(
            model="m", max_tokens=8, messages=[{"role": "user", "content": "x" * 80}]) as s:
        "".join(s.text_stream)


def test_rate_limited_from_the_server_side_limit(make_fault_server: Any) -> None:
    server = make_fault_server(rpm_limit=1)
    assert isinstance(send(make("anthropic", server)), LLMResponse)
    err = send(make("anthropic", server))
    assert isinstance(err, RateLimited) and err.retry_after is not None and err.retry_after >= 1
    assert err.rate_limit is not None and err.rate_limit.limit_requests == 1
    assert server.violations == 1
