"""The issue's "Done when" lines, each proven end to end against the fault server."""

from __future__ import annotations

from typing import Any

import pytest

from llmchain import Chain, DocumentPart, ImagePart, Message, OutputInvalid
from llmchain._defaults import DEFAULT_STAGE_ORDER
from llmchain.testing.fault_server import FaultServer
from llmchain.transports.mock import MockReply, MockTransport
from tests.content.helpers import PDF, PNG

KINDS = ["openai", "anthropic"]


def get_weather(city: str) -> str:
    """The current weather in a city."""
    return f"sunny in {city}"


def get_time(city: str, zone: str = "local") -> str:
    """The time in a city."""
    return f"12:00 {zone} in {city}"


TOOLS = {f.__name__: f for f in (get_weather, get_time)}


def is_tool_result(message: dict[str, Any]) -> bool:
    content = message.get("content")
    return message["role"] == "tool" or (
        isinstance(content, list) and any(b.get("type") == "tool_result" for b in content))


def agent_server_content(body: dict[str, Any]) -> Any:
    """Asks for both tools at once, then answers from their results."""
    if is_tool_result(body["messages"][-1]):
        return "Sunny at noon in Paris."
    return {"tool_calls": [{"name": "get_weather", "arguments": {"city": "Paris"}},
                           {"name": "get_time", "arguments": {"city": "Paris", "zone": "CET"}}]}


def default_chain(server: FaultServer, kind: str) -> Chain:
    url = server.base_url if kind == "openai" else server.anthropic_base_url
    return Chain([{"use": s} for s in DEFAULT_STAGE_ORDER], {"use": kind, "base_url": url, "api_key_env": ""})


def run_agent(chain: Chain, stream: bool) -> tuple[list[Message], Any]:
    messages = [Message(role="user", content="Weather and time in Paris?")]
    for _ in range(5):
        if stream:
            answer = chain.stream(messages, tools=list(TOOLS.values()))
            for _chunk in answer:
                pass
            response = answer.response
        else:
            response = chain.complete(messages, tools=list(TOOLS.values()))
        messages.append(response.message)
        if not response.tool_calls:
            return messages, response
        for call in response.tool_calls:
            messages.append(call.result(TOOLS[call.name](**call.args)))
    raise AssertionError("the loop did not end")


@pytest.mark.parametrize("stream", [False, True], ids=["complete", "stream"])
@pytest.mark.parametrize("kind", KINDS)
def test_agent_loop_with_two_tools_and_parallel_calls(kind: str, stream: bool) -> None:
    with FaultServer(content=agent_server_content) as server:
        messages, final = run_agent(default_chain(server, kind), stream)
        assert final.text == "Sunny at noon in Paris."
        assert [m.role for m in messages] == ["user", "assistant", "tool", "tool", "assistant"]
        first = messages[1]
        assert [c.name for c in first.tool_calls] == ["get_weather", "get_time"]  # parallel, one turn
        assert messages[3].content == "12:00 CET in Paris"
        sent = server.requests[-1].body
        assert sent["tools"] and len(sent["tools"]) == 2
        ids = [c.id for c in first.tool_calls]
        if kind == "openai":
            assert [m.get("tool_call_id") for m in sent["messages"][2:]] == ids
        else:  # both results in one user turn, after the assistant's two tool_use blocks
            assert [b["id"] for b in sent["messages"][1]["content"]] == ids
            assert [b["tool_use_id"] for b in sent["messages"][2]["content"]] == ids


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("part", [ImagePart(data=PNG), DocumentPart(data=PDF, name="report.pdf")],
                         ids=["image", "pdf"])
def test_image_and_pdf_questions(kind: str, part: Any) -> None:
    with FaultServer() as server:  # echoes the question, describing what it received
        response = default_chain(server, kind).complete([Message(role="user", content=["What is this?", part])])
        label = "image/png" if isinstance(part, ImagePart) else "application/pdf"
        assert response.text == f"What is this? [{label} {len(part.data)} B]"
        assert response.usage.input_tokens > 700  # the server billed the image/document tokens
        content = server.requests[-1].body["messages"][0]["content"]
        kinds = [p["type"] for p in content]
        if kind == "openai":
            assert kinds == ["text", "image_url" if label == "image/png" else "file"]
        else:
            assert kinds == ["text", "image" if label == "image/png" else "document"]


@pytest.mark.parametrize("kind", KINDS)
def test_tool_call_with_bad_arguments_is_reasked_with_the_error_as_tool_result(kind: str) -> None:
    answers = iter([{"tool_calls": [{"name": "get_time", "arguments": {"city": 7}}]},
                    {"tool_calls": [{"name": "get_time", "arguments": {"city": "Paris"}}]}])
    with FaultServer(content=lambda body: next(answers)) as server:
        response = default_chain(server, kind).complete("time?", tools=[get_time])
        assert response.tool_calls[0].args == {"city": "Paris"}
        assert response.notes["repaired"] == "reask"
        reask = server.requests[-1].body["messages"]
        text = str(reask[-1])
        assert "city: 7 is not of type 'string'" in text
        if kind == "openai":
            assert reask[-1]["role"] == "tool" and reask[-1]["tool_call_id"] == reask[-2]["tool_calls"][0]["id"]
        else:
            assert reask[-1]["content"][0]["type"] == "tool_result"


def test_tool_call_with_broken_json_is_repaired_locally() -> None:
    with FaultServer(content=lambda body: {"tool_calls": [
            {"name": "get_weather", "arguments": "{'city': 'Paris',}"}]}) as server:
        response = default_chain(server, "openai").complete("weather?", tools=[get_weather])
        assert response.tool_calls[0].args == {"city": "Paris"}
        assert response.notes["tool_arguments_repaired"] == [response.tool_calls[0].id]
        assert server.request_count == 1  # no re-ask needed


def test_bad_tool_arguments_without_repair_are_explained() -> None:
    transport = MockTransport.scripted(MockReply(tool_calls=({"name": "get_time", "arguments": {"zone": 1}},)))
    with pytest.raises(OutputInvalid) as caught:
        Chain(["validate"], transport).complete("time?", tools=[get_time])
    assert caught.value.errors == ["get_time (call_1): <root>: 'city' is a required property",
                                   "get_time (call_1): zone: 1 is not of type 'string'"]


@pytest.mark.parametrize("kind", KINDS)
def test_cache_never_confuses_requests_differing_only_in_an_image(kind: str) -> None:
    with FaultServer() as server:
        chain = default_chain(server, kind)
        one, other = PNG + b"\x00", PNG + b"\x01"  # same size, same label: only the bytes differ
        first = chain.complete([Message(role="user", content=["what?", ImagePart(data=one)])])
        second = chain.complete([Message(role="user", content=["what?", ImagePart(data=other)])])
        again = chain.complete([Message(role="user", content=["what?", ImagePart(data=one)])])
        assert (first.cache.status, second.cache.status, again.cache.status) == ("miss", "miss", "hit")
        assert server.request_count == 2


def test_streamed_tool_call_with_bad_arguments_is_checked_when_the_stream_ends() -> None:
    transport = MockTransport.scripted(MockReply(tool_calls=({"name": "get_time", "arguments": {"zone": 1}},)))
    with pytest.raises(OutputInvalid) as caught:
        list(Chain(["validate"], transport).stream("time?", tools=[get_time]))
    assert caught.value.errors == ["get_time (call_1): <root>: 'city' is a required property",
                                   "get_time (call_1): zone: 1 is not of type 'string'"]


@pytest.mark.parametrize("kind", KINDS)
def test_streamed_tool_call_with_bad_arguments_is_reasked_and_replaced(kind: str) -> None:
    answers = iter([{"tool_calls": [{"name": "get_time", "arguments": {"city": 7}}]},
                    {"tool_calls": [{"name": "get_time", "arguments": {"city": "Paris"}}]}])
    with FaultServer(content=lambda body: next(answers)) as server:
        stream = default_chain(server, kind).stream("time?", tools=[get_time])
        list(stream)
        response = stream.response
        assert response is not None and response.tool_calls[0].args == {"city": "Paris"}
        assert response.notes["repaired"] == "reask" and server.request_count == 2
