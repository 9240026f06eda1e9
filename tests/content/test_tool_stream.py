"""The streamed tool-call assembler, on its own (both wire formats)."""

from __future__ import annotations

import itertools

from hypothesis import given
from hypothesis import strategies as st

from llmchain import ToolCall
from llmchain.transports._tool_stream import ToolCallAssembler


def test_openai_index_based_deltas_interleaved() -> None:
    tools = ToolCallAssembler()
    tools.openai_deltas([{"index": 0, "id": "call_a", "type": "function",
                          "function": {"name": "get_weather", "arguments": ""}}])
    tools.openai_deltas([{"index": 1, "id": "call_b", "function": {"name": "get_time", "arguments": '{"ci'}}])
    tools.openai_deltas([{"index": 0, "function": {"arguments": '{"city": '}}])
    tools.openai_deltas([{"index": 1, "function": {"arguments": 'ty": "Oslo"}'}},
                         {"index": 0, "function": {"arguments": '"Paris"}'}}])
    assert tools.calls() == (ToolCall(id="call_a", name="get_weather", arguments='{"city": "Paris"}'),
                             ToolCall(id="call_b", name="get_time", arguments='{"city": "Oslo"}'))


def test_anthropic_blocks_by_index_and_skipped_structured_tool() -> None:
    tools = ToolCallAssembler()
    tools.start(1, "toolu_1", "get_weather")
    tools.add_arguments(1, '{"city"')
    tools.start(2, "toolu_2", "respond")
    tools.add_arguments(2, "{}")
    tools.add_arguments(1, ': "Paris"}')
    assert tools.calls(skip_name="respond") == (
        ToolCall(id="toolu_1", name="get_weather", arguments='{"city": "Paris"}'),)
    assert tools.name_at(2) == "respond" and tools.arguments(2) == "{}"


def test_a_call_without_arguments_has_an_empty_object() -> None:
    tools = ToolCallAssembler()
    assert not tools
    tools.start(0, "toolu_1", "now")
    assert tools and tools.calls()[0].args == {}


@given(text=st.text(max_size=60), cuts=st.lists(st.integers(0, 60), max_size=6))
def test_any_split_of_the_arguments_reassembles_exactly(text: str, cuts: list[int]) -> None:
    points = sorted({min(c, len(text)) for c in cuts} | {0, len(text)})
    tools = ToolCallAssembler()
    tools.openai_deltas([{"index": 0, "id": "c", "function": {"name": "f"}}])
    for a, b in itertools.pairwise(points):
        tools.openai_deltas([{"index": 0, "function": {"arguments": text[a:b]}}])
    assert tools.calls()[0].arguments == (text or "{}")
