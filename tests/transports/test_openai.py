"""OpenAI transport: the request it builds, documented bodies it reads, and the official SDK
talking to the fault server (proof that the server speaks the real protocol)."""

from __future__ import annotations

import json
import time

import openai
import pytest

from llmchain import Chain, ConfigError, LLMResponse, Message, ProviderError
from llmchain.policies.headers import rate_limit_hints
from llmchain.testing.fault_server import Fault, FaultServer
from llmchain.transports.openai import OpenAITransport

from .helpers import SCHEMA, ask, make, send

pytest_plugins = ["llmchain.testing.fixtures"]

# The documented Chat Completions response (with the newer usage details some models add).
DOC_COMPLETION = {
    "id": "chatcmpl-123", "object": "chat.completion", "created": 1677652288,
    "model": "gpt-4o-mini-2024-07-18", "system_fingerprint": "fp_44709d6fcb",
    "choices": [{"index": 0, "message": {"role": "assistant",
                                         "content": "\n\nHello there, how may I assist you today?"},
                 "logprobs": None, "finish_reason": "stop"}],
    "usage": {"prompt_tokens": 9, "completion_tokens": 12, "total_tokens": 21,
              "completion_tokens_details": {"reasoning_tokens": 0}},
    "service_tier": "default",
}
DOC_STREAM = "".join(f"data: {json.dumps(c)}\n\n" for c in [
    {"id": "chatcmpl-123", "object": "chat.completion.chunk", "created": 1694268190,
     "model": "gpt-4o-mini", "system_fingerprint": "fp_44709d6fcb",
     "choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}, "logprobs": None,
                  "finish_reason": None}]},
    {"id": "chatcmpl-123", "object": "chat.completion.chunk", "created": 1694268190,
     "model": "gpt-4o-mini", "choices": [{"index": 0, "delta": {"content": "Hello"}, "finish_reason": None}]},
    {"id": "chatcmpl-123", "object": "chat.completion.chunk", "created": 1694268190,
     "model": "gpt-4o-mini", "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]},
]) + "data: [DONE]\n\n"


def transport(**options: object) -> OpenAITransport:
    return OpenAITransport(OpenAITransport.Options(api_key_env="", **options))  # type: ignore[arg-type]


def test_request_body() -> None:
    request = ask(temperature=0.2, max_tokens=50, top_p=0.9, stop=("END",), seed=7,
                  extra={"logprobs": True, "user": "u1"})
    body = transport().encode(request, stream=False)
    assert body == {
        "model": "gpt-4o-mini",
        "messages": [{"role": "system", "content": "be brief"}, {"role": "user", "content": "hello there"}],
        "temperature": 0.2, "max_tokens": 50, "top_p": 0.9, "stop": ["END"], "seed": 7,
        "logprobs": True, "user": "u1",
    }
    named = ask().model_copy(update={"messages": (Message(role="user", content="hi", name="ann"),)})
    assert transport().encode(named, False)["messages"] == [{"role": "user", "content": "hi", "name": "ann"}]


def test_request_options() -> None:
    body = transport(max_tokens_field="max_completion_tokens").encode(ask(max_tokens=5, model="o1"), True)
    assert body["max_completion_tokens"] == 5 and "max_tokens" not in body
    assert body["model"] == "o1"
    assert body["stream"] is True and body["stream_options"] == {"include_usage": True}
    assert "stream_options" not in transport(stream_usage=False).encode(ask(), True)


@pytest.mark.parametrize(("mode", "expected"), [
    ("json_schema", {"type": "json_schema",
                     "json_schema": {"name": "Person", "schema": SCHEMA, "strict": False}}),
    ("json_object", {"type": "json_object"}),
    ("off", None),
])
def test_structured_output_modes(mode: str, expected: object) -> None:
    body = transport(structured=mode).encode(ask(output_schema=SCHEMA), False)
    assert body.get("response_format") == expected


def test_schema_names_follow_openai_rules() -> None:
    schema = {**SCHEMA, "title": "A person / record" + "x" * 80}
    name = transport(strict=True).encode(ask(output_schema=schema), False)["response_format"]["json_schema"]
    assert name["name"].startswith("A_person___record") and len(name["name"]) == 64
    assert name["strict"] is True
    untitled = {k: v for k, v in SCHEMA.items() if k != "title"}
    assert transport().encode(ask(output_schema=untitled), False)["response_format"]["json_schema"]["name"] == "output"


def test_documented_response(fault_server: FaultServer) -> None:
    fault_server.set_plan([Fault(raw=json.dumps(DOC_COMPLETION).encode(), headers={
        "x-request-id": "req_abc", "x-ratelimit-limit-requests": "10000",
        "x-ratelimit-remaining-requests": "9999", "x-ratelimit-reset-requests": "6ms",
        "x-ratelimit-limit-tokens": "200000", "x-ratelimit-remaining-tokens": "199950",
        "x-ratelimit-reset-tokens": "6m0s", "openai-processing-ms": "350"})])
    response = send(make("openai", fault_server))
    assert isinstance(response, LLMResponse)
    assert response.text == "\n\nHello there, how may I assist you today?"
    assert (response.usage.input_tokens, response.usage.output_tokens) == (9, 12)
    assert response.model == "gpt-4o-mini-2024-07-18"
    assert response.finish_reason == "stop"
    assert response.headers["x-request-id"] == "req_abc"
    assert response.headers["openai-processing-ms"] == "350"
    assert "content-type" not in response.headers
    limit = rate_limit_hints(response.headers, time.time())  # what the rate_limit stage reads
    assert (limit.remaining_requests, limit.remaining_tokens) == (9999, 199950)
    assert (limit.reset_requests_s, limit.reset_tokens_s) == (pytest.approx(0.006), 360.0)


def test_documented_stream(fault_server: FaultServer) -> None:
    from .helpers import stream

    fault_server.set_plan([Fault(raw=DOC_STREAM.encode(), content_type="text/event-stream")])
    items, err = stream(make("openai", fault_server))
    assert err is None
    assert items[:-1] == ["Hello"]
    assert items[-1].text == "Hello" and items[-1].finish_reason == "stop"


def test_refusals_tool_calls_and_content_parts(fault_server: FaultServer) -> None:
    refusal = {**DOC_COMPLETION, "choices": [{"index": 0, "finish_reason": "stop", "message": {
        "role": "assistant", "content": None, "refusal": "I can't help with that."}}]}
    tool_call = {**DOC_COMPLETION, "choices": [{"index": 0, "finish_reason": "tool_calls", "message": {
        "role": "assistant", "content": None, "tool_calls": [{"id": "call_1", "type": "function",
                                                               "function": {"name": "f", "arguments": "{}"}}]}}]}
    parts = {**DOC_COMPLETION, "choices": [{"index": 0, "finish_reason": "stop", "message": {
        "role": "assistant", "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]}}]}
    no_usage = {k: v for k, v in DOC_COMPLETION.items() if k != "usage"}
    fault_server.set_plan([Fault(raw=json.dumps(b).encode()) for b in (refusal, tool_call, parts, no_usage)])
    r = send(make("openai", fault_server))
    assert isinstance(r, LLMResponse) and r.text == "" and r.notes == {"refusal": "I can't help with that."}
    r = send(make("openai", fault_server))
    assert isinstance(r, LLMResponse) and (r.text, r.finish_reason) == ("", "tool_calls")
    r = send(make("openai", fault_server))
    assert isinstance(r, LLMResponse) and r.text == "ab"
    r = send(make("openai", fault_server))
    assert isinstance(r, LLMResponse) and r.usage.total_tokens == 0


def test_errors_in_a_200_body_and_empty_choices(fault_server: FaultServer) -> None:
    error = {"error": {"message": "upstream overloaded", "type": "server_error", "code": 502}}
    fault_server.set_plan([Fault(raw=json.dumps(error).encode()),
                           Fault(raw=json.dumps({**DOC_COMPLETION, "choices": []}).encode())])
    err = send(make("openai", fault_server))
    assert isinstance(err, ProviderError) and err.retryable and "upstream overloaded" in err.message
    err = send(make("openai", fault_server))
    assert isinstance(err, ProviderError) and not err.retryable and "wrong shape" in err.message
    assert err.body is not None and '"choices": []' in err.body


def test_azure_style_url_and_key_header(fault_server: FaultServer, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AZURE_OPENAI_API_KEY", "azure-secret-key-0123")
    t = OpenAITransport(OpenAITransport.Options(
        base_url=f"{fault_server.url}/openai/deployments/gpt4o", query={"api-version": "2024-10-21"},
        auth_header="api-key", auth_scheme="", api_key_env="AZURE_OPENAI_API_KEY"))
    assert isinstance(send(t), LLMResponse)
    seen = fault_server.requests[-1]
    assert seen.path == "/openai/deployments/gpt4o/chat/completions?api-version=2024-10-21"
    assert seen.headers["api-key"] == "azure-secret-key-0123"
    assert "authorization" not in seen.headers


def test_missing_key_is_a_config_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    with pytest.raises(ConfigError, match="OPENAI_API_KEY is not set") as info:
        Chain([], {"use": "openai"})
    assert 'api_key_env = ""' in str(info.value)


def test_literal_secret_headers_are_refused() -> None:
    with pytest.raises(ConfigError, match="headers_env"):
        Chain([], {"use": "openai", "api_key_env": "", "headers": {"Authorization": "Bearer sk-abcdefgh123"}})


# -- the official SDK against the fault server ----------------------------------------------


@pytest.fixture
def client(fault_server: FaultServer) -> openai.OpenAI:
    return openai.OpenAI(base_url=fault_server.base_url, api_key="sk-test-sdk-0000", max_retries=0)


def test_sdk_completion(client: openai.OpenAI, fault_server: FaultServer) -> None:
    r = client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "hi sdk"}])
    assert r.choices[0].message.content == "hi sdk"
    assert r.usage is not None and r.usage.total_tokens >= 2
    assert fault_server.requests[-1].headers["authorization"] == "Bearer sk-test-sdk-0000"


def test_sdk_stream(client: openai.OpenAI) -> None:
    chunks = client.chat.completions.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": "streaming through the sdk works"}],
        stream=True, stream_options={"include_usage": True})
    parts, usage = [], None
    for chunk in chunks:
        if chunk.choices and chunk.choices[0].delta.content:
            parts.append(chunk.choices[0].delta.content)
        usage = chunk.usage or usage
    assert "".join(parts) == "streaming through the sdk works"
    assert usage is not None and usage.completion_tokens > 0


def test_sdk_structured_output(client: openai.OpenAI) -> None:
    r = client.chat.completions.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": "a person"}],
        response_format={"type": "json_schema", "json_schema": {"name": "Person", "schema": SCHEMA}})
    assert json.loads(r.choices[0].message.content or "") == {"name": "text", "age": 1}


def test_sdk_errors(client: openai.OpenAI, fault_server: FaultServer) -> None:
    fault_server.set_plan(["429", "500", "stream_error"])
    with pytest.raises(openai.RateLimitError):
        client.chat.completions.create(model="m", messages=[{"role": "user", "content": "x"}])
    with pytest.raises(openai.InternalServerError):
        client.chat.completions.create(model="m", messages=[{"role": "user", "content": "x"}])
    with pytest.raises(openai.APIError, match="overloaded"):
        list(client.chat.completions.create(model="m", messages=[{"role": "user", "content": "x"}],
                                            stream=True))
