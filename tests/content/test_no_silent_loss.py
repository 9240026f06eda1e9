"""Nothing a provider sends disappears: every answer shape the fault server produces, decoded by
each transport (whole and streamed), keeps every text, tool call, id, usage count and block."""

from __future__ import annotations

import json
from typing import Any

import pytest

from llmchain import CallError, Chain, LLMRequest, LLMResponse, RawPart
from llmchain.testing._responder import _NOT_JSON_TEXT
from llmchain.testing._wire import Ask, completion, schema_violation, stream_events
from llmchain.testing.fault_server import Fault, FaultServer
from llmchain.testing.strategies import FAST_FAULTS
from llmchain.transports._sse import SSEDecoder
from tests.content.helpers import anthropic_transport, openai_transport

CALLS = [{"id": "call_a", "name": "get_weather", "arguments": '{"city": "Paris"}'},
         {"id": "call_b", "name": "get_time", "arguments": '{"city": "Oslo", "zone": "CET"}'}]
SHAPES = {  # name: (answer text, tool calls)
    "text": ("The answer is 42.", []),
    "empty": ("", []),
    "one_call": ("", CALLS[:1]),
    "parallel_calls": ("", CALLS),
    "text_and_calls": ("Let me look that up.", CALLS),
}
SCHEMA = {"type": "object", "properties": {"answer": {"type": "integer"}}, "required": ["answer"]}


def ask(api: str, stream: bool, schema: dict[str, Any] | None = None, forced: str | None = None) -> Ask:
    tool = "respond" if schema is not None and api == "anthropic" else None
    return Ask(api, "m-1", stream, "q", 40, schema, tool, True, forced_call=forced)  # type: ignore[arg-type]


def transport(api: str) -> Any:
    return openai_transport() if api == "openai" else anthropic_transport()


def decode(api: str, the_ask: Ask, text: str, calls: list[dict[str, str]], request: LLMRequest) -> tuple[Any, LLMResponse]:
    """(what the provider sent, what the transport made of it)."""
    t = transport(api)
    if not the_ask.stream:
        raw = completion(the_ask, text, calls)
        return raw, t.decode(raw, request, {})
    events = b"".join(stream_events(the_ask, text, 5, calls))
    state = t.stream_state(request)
    for event, data in SSEDecoder().feed(events):
        state.feed(event, data)
    assert state.finished()
    return events, state.response({})


def sent(api: str, raw: Any) -> dict[str, Any]:
    """Everything meaningful the provider sent, read straight from the wire."""
    if isinstance(raw, bytes):  # a stream: rebuild from its events
        text, calls, args, usage = "", {}, {}, {}
        for line in raw.split(b"\n"):
            if not line.startswith(b"data: ") or line == b"data: [DONE]":
                continue
            obj = json.loads(line[6:])
            if api == "openai":
                usage.update(obj.get("usage") or {})
                for choice in obj["choices"]:
                    text += choice["delta"].get("content") or ""
                    for d in choice["delta"].get("tool_calls") or ():
                        if d.get("id"):
                            calls[d["index"]] = (d["id"], d["function"]["name"])
                        args[d["index"]] = args.get(d["index"], "") + d["function"].get("arguments", "")
            else:
                usage.update(obj.get("usage") or obj.get("message", {}).get("usage") or {})
                block, delta = obj.get("content_block") or {}, obj.get("delta") or {}
                if block.get("type") == "tool_use":
                    calls[obj["index"]] = (block["id"], block["name"])
                text += delta.get("text", "") if delta.get("type") == "text_delta" else ""
                if delta.get("type") == "input_json_delta":
                    args[obj["index"]] = args.get(obj["index"], "") + delta["partial_json"]
        tool_calls = [(*calls[i], json.loads(args.get(i) or "{}")) for i in sorted(calls)]
        tokens = (usage.get("prompt_tokens", usage.get("input_tokens")),
                  usage.get("completion_tokens", usage.get("output_tokens")))
        return {"text": text, "calls": tool_calls, "usage": tokens}
    if api == "openai":
        message = raw["choices"][0]["message"]
        tool_calls = [(c["id"], c["function"]["name"], json.loads(c["function"]["arguments"]))
                      for c in message.get("tool_calls") or ()]
        return {"text": message["content"] or "", "calls": tool_calls,
                "usage": (raw["usage"]["prompt_tokens"], raw["usage"]["completion_tokens"])}
    blocks = raw["content"]
    return {"text": "".join(b["text"] for b in blocks if b["type"] == "text"),
            "calls": [(b["id"], b["name"], b["input"]) for b in blocks if b["type"] == "tool_use"],
            "usage": (raw["usage"]["input_tokens"], raw["usage"]["output_tokens"])}


def got(response: LLMResponse) -> dict[str, Any]:
    return {"text": response.text, "calls": [(c.id, c.name, c.args) for c in response.tool_calls],
            "usage": (response.usage.input_tokens, response.usage.output_tokens)}


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "stream"])
@pytest.mark.parametrize("api", ["openai", "anthropic"])
@pytest.mark.parametrize("shape", sorted(SHAPES))
def test_every_answer_shape_survives_decoding(shape: str, api: str, stream: bool) -> None:
    text, calls = SHAPES[shape]
    request = LLMRequest(messages=[{"role": "user", "content": "q"}])
    raw, response = decode(api, ask(api, stream), text, calls, request)
    assert got(response) == sent(api, raw)
    assert response.finish_reason == ("tool_calls" if calls else "stop")
    assert response.model == "m-1"


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "stream"])
@pytest.mark.parametrize("api", ["openai", "anthropic"])
def test_structured_and_forced_answers_survive_decoding(api: str, stream: bool) -> None:
    answer = '{"answer": 42}'
    request = LLMRequest(messages=[{"role": "user", "content": "q"}], output_schema=SCHEMA)
    raw, response = decode(api, ask(api, stream, SCHEMA), answer, [], request)
    assert json.loads(response.text) == {"answer": 42}  # the structured answer is the text
    if api == "openai":  # a tool_choice naming one function is answered by a call to it
        forced = LLMRequest(messages=[{"role": "user", "content": "q"}], tools=[{"name": "pick"}], tool_choice="pick")
        raw, response = decode(api, ask(api, stream, {}, forced="pick"), answer, [], forced)
        assert [(c.name, c.args) for c in response.tool_calls] == [("pick", {"answer": 42})]
        assert got(response) == sent(api, raw)


def test_unknown_blocks_and_message_fields_are_kept_as_raw_parts() -> None:
    request = LLMRequest(messages=[{"role": "user", "content": "q"}])
    blocks = [{"type": "thinking", "thinking": "hmm", "signature": "s"},
              {"type": "text", "text": "See [1].", "citations": [{"type": "char_location", "cited_text": "x"}]},
              {"type": "server_tool_use", "id": "srvtoolu_1", "name": "web_search", "input": {"query": "q"}}]
    raw = {"id": "msg", "type": "message", "role": "assistant", "model": "m", "content": blocks,
           "stop_reason": "end_turn", "usage": {"input_tokens": 1, "output_tokens": 2}}
    response = anthropic_transport().decode(raw, request, {})
    assert [p.data for p in response.parts] == blocks  # every block, in order, verbatim
    assert response.text == "See [1]."
    audio = {"id": "audio_1", "data": "UklGR", "expires_at": 1, "transcript": "hi"}
    raw_openai = {"model": "m", "choices": [{"finish_reason": "stop", "message": {
        "role": "assistant", "content": "hi", "audio": audio, "annotations": []}}]}
    response = openai_transport().decode(raw_openai, request, {})
    assert response.text == "hi"
    assert RawPart(provider="openai", data={"audio": audio}) in response.parts


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "stream"])
@pytest.mark.parametrize("api", ["openai", "anthropic"])
def test_every_fault_gives_an_answer_or_a_typed_error(api: str, stream: bool) -> None:
    faults = [Fault.parse(f) for f in FAST_FAULTS]
    faults += [Fault(tool_calls=tuple(CALLS)), Fault(content="text", tool_calls=tuple(CALLS[:1]))]
    with FaultServer(faults, content="hello there") as server:
        url = server.base_url if api == "openai" else server.anthropic_base_url
        with Chain([], {"use": api, "base_url": url, "api_key_env": ""}) as chain:
            for fault in faults:
                # a fresh connection for each: a reset on a reused one is re-sent at once, which
                # would take the next fault of the plan
                server.close_idle()
                try:
                    if stream:
                        chunks = chain.stream("q", tools=[{"name": "get_weather"}, {"name": "get_time"}])
                        text = "".join(chunks)
                        response = chunks.response
                        assert text == response.text
                    else:
                        response = chain.complete("q", tools=[{"name": "get_weather"}, {"name": "get_time"}])
                except CallError:
                    continue  # a typed error: nothing silently lost
                if fault.tool_calls:
                    assert [(c.id, c.name, c.arguments) for c in response.tool_calls] == [
                        (c["id"], c["name"], c["arguments"]) for c in fault.tool_calls]
                    assert response.text == (fault.content or "hello there")
                    assert response.finish_reason == "tool_calls"
                else:
                    expected = fault.content or {"content_not_json": _NOT_JSON_TEXT,
                                                 "schema_invalid": json.dumps(schema_violation({}))
                                                 }.get(fault.kind, "hello there")
                    assert response.text == expected


def test_streamed_thinking_and_cited_blocks_are_rebuilt_whole() -> None:
    events = [
        {"type": "message_start", "message": {"model": "m", "usage": {"input_tokens": 3}}},
        {"type": "content_block_start", "index": 0, "content_block": {"type": "thinking", "thinking": "", "signature": ""}},
        {"type": "content_block_delta", "index": 0, "delta": {"type": "thinking_delta", "thinking": "Let me "}},
        {"type": "content_block_delta", "index": 0, "delta": {"type": "thinking_delta", "thinking": "think."}},
        {"type": "content_block_delta", "index": 0, "delta": {"type": "signature_delta", "signature": "EqQB"}},
        {"type": "content_block_stop", "index": 0},
        {"type": "content_block_start", "index": 1, "content_block": {"type": "text", "text": ""}},
        {"type": "content_block_delta", "index": 1, "delta": {"type": "text_delta", "text": "Paris."}},
        {"type": "content_block_delta", "index": 1, "delta": {
            "type": "citations_delta", "citation": {"type": "char_location", "cited_text": "Paris"}}},
        {"type": "content_block_start", "index": 2, "content_block": {
            "type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {}}},
        {"type": "content_block_delta", "index": 2, "delta": {"type": "input_json_delta", "partial_json": '{"city": "Paris"}'}},
        {"type": "message_delta", "delta": {"stop_reason": "tool_use"}, "usage": {"output_tokens": 9}},
        {"type": "message_stop"},
    ]
    state = anthropic_transport().stream_state(LLMRequest(messages=[{"role": "user", "content": "q"}]))
    for event in events:
        state.feed(event["type"], json.dumps(event))
    response = state.response({})
    assert [p.data for p in response.parts] == [  # type: ignore[union-attr]
        {"type": "thinking", "thinking": "Let me think.", "signature": "EqQB"},
        {"type": "text", "text": "Paris.", "citations": [{"type": "char_location", "cited_text": "Paris"}]}]
    assert response.text == "Paris." and response.tool_calls[0].args == {"city": "Paris"}
    assert response.message.content == response.parts  # sent back whole in the next turn
