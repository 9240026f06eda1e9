"""Structured output through a forced tool on both transports, re-asked as a tool result."""

from __future__ import annotations

import json

import pytest
from pydantic import BaseModel

from llmchain import Chain
from llmchain.structured._output import schema_for
from llmchain.testing.fault_server import FaultServer


class City(BaseModel):
    name: str
    population: int


def chain_for(server: FaultServer, kind: str) -> Chain:
    url = server.base_url if kind == "openai" else server.anthropic_base_url
    transport = {"use": kind, "base_url": url, "api_key_env": ""}
    if kind == "openai":
        transport["structured"] = "tool"
    return Chain(["repair", "validate", "parse"], transport)


@pytest.mark.parametrize("kind", ["openai", "anthropic"])
def test_invalid_structured_answer_is_reasked_as_the_tools_result(kind: str) -> None:
    with FaultServer(["schema_invalid", "ok"], json_content={"name": "Tokyo", "population": 37}) as server:
        city = chain_for(server, kind).complete_json("Biggest city?", schema=City)
        assert city == City(name="Tokyo", population=37)
        first, reask = (r.body for r in server.requests)
        if kind == "openai":
            assert first["tool_choice"] == {"type": "function", "function": {"name": "respond"}}
            assert "response_format" not in first
            call, result = reask["messages"][-2:]
            assert call["tool_calls"][0]["function"]["arguments"] == '{"name": 12345, "population": "not a number"}'
            assert result["role"] == "tool" and result["tool_call_id"] == call["tool_calls"][0]["id"]
            problem = result["content"]
        else:
            call, result = reask["messages"][-2:]
            assert call["content"][0]["type"] == "tool_use"
            assert result["content"][0]["tool_use_id"] == call["content"][0]["id"]
            problem = result["content"][0]["content"]
        assert "population: Input should be a valid integer" in problem
        assert problem.endswith("Call the respond tool again with the corrected input.")


@pytest.mark.parametrize("kind", ["openai", "anthropic"])
def test_streamed_structured_answer_through_the_tool(kind: str) -> None:
    with FaultServer(json_content={"name": "Oslo", "population": 1}) as server:
        with chain_for(server, kind) as chain:
            stream = chain.stream("Biggest city?", **schema_for(City))
            text = "".join(stream)
        response = stream.response
        assert json.loads(text) == json.loads(response.text) == {"name": "Oslo", "population": 1}
        assert response.tool_calls == () and response.finish_reason == "stop"
        assert response.notes["structured_tool_call"]["name"] == "respond"
