"""Neutral → provider body → neutral keeps every part, tool call, tool and id (property tests)."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from llmchain import LLMRequest
from llmchain.messages._from_anthropic import (
    messages_from_anthropic,
    tools_from_anthropic,
)
from llmchain.messages._from_openai import (
    messages_from_openai,
    tool_choice_from_openai,
    tools_from_openai,
)
from llmchain.testing import strategies as lst
from tests.content.helpers import anthropic_transport, normalized, openai_transport

SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
CHOICES = st.none() | st.sampled_from(["auto", "none", "required"])


@SETTINGS
@given(messages=lst.rich_messages("openai"), tools=lst.tools(), choice=CHOICES)
def test_openai_body_round_trip_is_exact(messages, tools, choice) -> None:
    request = LLMRequest(messages=messages, tools=tools, tool_choice=choice)
    body = openai_transport().encode(request, False)
    assert messages_from_openai(body["messages"]) == list(messages)
    assert tools_from_openai(body.get("tools", [])) == tools
    assert (tool_choice_from_openai(body["tool_choice"]) if "tool_choice" in body else None) == choice


@SETTINGS
@given(messages=lst.rich_messages("anthropic"), tools=lst.tools())
def test_anthropic_body_round_trip_keeps_everything(messages, tools) -> None:
    request = LLMRequest(messages=messages, tools=tools)
    body = anthropic_transport().encode(request, False)
    back = messages_from_anthropic(body["messages"], body.get("system"))
    # the only liberties the format takes: "x" may come back as [text "x"], "" as []
    assert normalized(back) == normalized(messages)
    assert tools_from_anthropic(body.get("tools", [])) == tools
    sent_ids = [c.id for m in messages for c in m.tool_calls]
    assert [c.id for m in back for c in m.tool_calls] == sent_ids
    assert [m.tool_call_id for m in back if m.role == "tool"] == sent_ids


@SETTINGS
@given(messages=lst.messages())
def test_named_tool_choice_round_trips(messages) -> None:
    request = LLMRequest(messages=messages, tools=[{"name": "lookup"}], tool_choice="lookup")
    body = openai_transport().encode(request, False)
    assert tool_choice_from_openai(body["tool_choice"]) == "lookup"
    assert anthropic_transport().encode(request, False)["tool_choice"] == {"type": "tool", "name": "lookup"}
