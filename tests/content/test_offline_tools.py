"""Tool calls scripted offline: the mock transport (code and TOML) and `llmchain serve-mock`."""

from __future__ import annotations

import argparse

import pytest

from llmchain import Chain, ToolCall
from llmchain.cli._serve import add_arguments, build_server
from llmchain.testing.fault_server import FaultServer
from llmchain.transports.mock import MockTransport


def test_mock_scripts_tool_calls_from_toml_shaped_options() -> None:
    chain = Chain.from_config({"transport": {"use": "mock", "replies": [
        {"tool_calls": [{"name": "get_weather", "arguments": {"city": "Paris"}},
                        {"name": "get_time", "arguments": '{"city": "Paris"}', "id": "t9"}]}, "done"]}})
    first = chain.complete("q", tools=[{"name": "get_weather"}, {"name": "get_time"}])
    assert first.tool_calls == (ToolCall(id="call_1", name="get_weather", arguments='{"city": "Paris"}'),
                                ToolCall(id="t9", name="get_time", arguments='{"city": "Paris"}'))
    assert first.finish_reason == "tool_calls"
    assert chain.complete([first.message, *(c.result("ok") for c in first.tool_calls)]).text == "done"


def test_mock_echo_describes_parts() -> None:
    transport = MockTransport()
    reply = Chain([], transport).complete([{"role": "user", "content": [
        {"type": "text", "text": "see"}, {"type": "image_url", "image_url": {"url": "https://x/cat.png"}}]}])
    assert reply.text == "see [image https://x/cat.png]"


@pytest.mark.parametrize("kind", ["openai", "anthropic"])
def test_serve_mock_tool_calls_option_drives_an_agent_loop(kind: str) -> None:
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    args = parser.parse_args(["--tool-calls", '[{"name": "get_weather", "arguments": {"city": "Paris"}}]'])
    server = build_server(args)
    with server:
        url = server.base_url if kind == "openai" else server.anthropic_base_url
        chain = Chain([], {"use": kind, "base_url": url, "api_key_env": ""})
        plain = chain.complete("no tools offered")
        assert plain.text == "no tools offered" and plain.tool_calls == ()
        first = chain.complete("weather?", tools=[{"name": "get_weather"}])
        (call,) = first.tool_calls
        assert (call.name, call.args) == ("get_weather", {"city": "Paris"})
        second = chain.complete([{"role": "user", "content": "weather?"}, first.message, call.result("sunny")],
                                tools=[{"name": "get_weather"}])
        assert second.text == "Tool results: sunny" and second.tool_calls == ()


@pytest.mark.parametrize("bad", ["[{", '{"name": "x"}', '[{"arguments": {}}]'])
def test_serve_mock_rejects_bad_tool_calls(bad: str) -> None:
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    with pytest.raises(SystemExit, match="--tool-calls"):
        build_server(parser.parse_args(["--tool-calls", bad]))


def test_fault_server_plan_scripts_calls_with_text() -> None:
    from llmchain.testing.fault_server import Fault

    with FaultServer([Fault(content="Checking.", tool_calls=({"name": "lookup", "arguments": {"q": 1}},))]) as server:
        chain = Chain([], {"use": "anthropic", "base_url": server.anthropic_base_url, "api_key_env": ""})
        response = chain.complete("q")
        assert response.text == "Checking." and response.tool_calls[0].args == {"q": 1}
        assert response.message.content == "Checking."
