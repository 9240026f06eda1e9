"""The neutral content model: parts, tools, tool calls, inputs in other shapes, clear errors."""

from __future__ import annotations

import base64
from typing import Literal

import pytest
from pydantic import BaseModel, ValidationError

from llmchain import (
    Chain,
    ConfigError,
    DocumentPart,
    ImagePart,
    LLMRequest,
    LLMResponse,
    Message,
    ParseError,
    RawPart,
    TextPart,
    Tool,
    ToolCall,
    UnsupportedContent,
)
from llmchain._models import prompt_request
from tests.content.helpers import PDF, PNG, anthropic_transport, openai_transport


def test_plain_prompts_keep_the_fast_path() -> None:
    fast = prompt_request("hi", {"timeout_s": 2.0})
    assert fast is not None and fast.messages == (Message(role="user", content="hi"),)
    assert fast.tools == () and fast.tool_choice is None
    assert prompt_request("hi", {"timeout_s": -1.0}) is None  # refused: the caller reports it


def test_content_lists_mix_strings_and_parts() -> None:
    message = Message(role="user", content=["look:", ImagePart(data=PNG)])
    assert message.content == (TextPart(text="look:"), ImagePart(data=PNG, media_type="image/png"))
    assert message.text == "look:"


def test_image_data_may_be_base64_and_round_trips_through_json() -> None:
    image = ImagePart(data=base64.b64encode(PNG).decode(), media_type="image/png")
    assert image.data == PNG
    message = Message(role="user", content=[image, DocumentPart(data=PDF, name="r.pdf")])
    assert Message.model_validate_json(message.model_dump_json()) == message


@pytest.mark.parametrize("kwargs", [{}, {"url": "https://x", "data": PNG}, {"data": b"not an image"}])
def test_bad_images_are_refused_clearly(kwargs: dict[str, object]) -> None:
    with pytest.raises(ValidationError, match="image"):
        ImagePart(**kwargs)  # type: ignore[arg-type]


def test_from_path_sniffs_the_media_type(tmp_path) -> None:
    (tmp_path / "x.bin").write_bytes(PNG)
    (tmp_path / "r.pdf").write_bytes(PDF)
    assert ImagePart.from_path(tmp_path / "x.bin").media_type == "image/png"
    document = DocumentPart.from_path(tmp_path / "r.pdf")
    assert (document.media_type, document.name) == ("application/pdf", "r.pdf")


class Invoice(BaseModel):
    """An invoice to file."""

    number: str
    total: float


def lookup(city: str, unit: Literal["C", "F"] = "C", *, days: int = 1) -> str:
    """Look up the forecast.

    More text that is not the description.
    """
    return city


def test_tools_from_functions_and_models() -> None:
    tool = Tool.from_function(lookup)
    assert tool.name == "lookup" and tool.description == "Look up the forecast."
    assert tool.parameters["required"] == ["city"]
    assert tool.parameters["properties"]["unit"] == {"default": "C", "enum": ["C", "F"], "title": "Unit",
                                                     "type": "string"}
    invoice = Tool.from_model(Invoice)
    assert (invoice.name, invoice.description) == ("Invoice", "An invoice to file.")
    assert set(invoice.parameters["properties"]) == {"number", "total"}
    request = LLMRequest(messages=[{"role": "user", "content": "q"}], tools=[lookup, Invoice,
                         {"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}])
    assert [t.name for t in request.tools] == ["lookup", "Invoice", "f"]


def test_untyped_function_parameters_are_refused() -> None:
    def bad(x):  # type: ignore[no-untyped-def]
        return x

    with pytest.raises(TypeError, match="needs a type annotation"):
        Tool.from_function(bad)


def test_tool_call_arguments_raw_and_parsed() -> None:
    call = ToolCall(id="c1", name="f", arguments='{"a": 1}')
    assert call.args == {"a": 1}
    with pytest.raises(ParseError, match="f \\(c1\\): arguments are not JSON"):
        _ = ToolCall(id="c1", name="f", arguments="{oops").args
    result = call.result({"temp": 21})
    assert (result.role, result.tool_call_id, result.content) == ("tool", "c1", '{"temp": 21}')
    assert call.result([TextPart(text="x")]).content == (TextPart(text="x"),)


def test_response_message_is_ready_to_append() -> None:
    calls = (ToolCall(id="c1", name="f"),)
    response = LLMResponse(text="", tool_calls=calls)
    assert response.message == Message(role="assistant", content="", tool_calls=calls)
    thinking = RawPart(provider="anthropic", data={"type": "thinking", "thinking": "t", "signature": "s"})
    response = LLMResponse(text="hi", parts=(thinking, TextPart(text="hi")))
    assert response.message.content == (thinking, TextPart(text="hi"))


def test_openai_and_anthropic_dicts_are_accepted_as_input() -> None:
    chain = Chain()
    request = chain.build_request([
        {"role": "developer", "content": "be brief"},
        {"role": "user", "content": [{"type": "text", "text": "hi"},
                                     {"type": "image_url", "image_url": {"url": "https://x/a.png"}}]},
        {"role": "assistant", "content": None, "tool_calls": [
            {"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{}"}}]},
        {"role": "tool", "tool_call_id": "c1", "content": "done"},
        {"role": "assistant", "content": [{"type": "tool_use", "id": "t1", "name": "g", "input": {"x": 1}}]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t1", "content": "ok"},
                                     {"type": "text", "text": "thanks"}]},
    ])
    roles = [(m.role, m.tool_call_id) for m in request.messages]
    assert roles == [("system", None), ("user", None), ("assistant", None), ("tool", "c1"),
                     ("assistant", None), ("tool", "t1"), ("user", None)]
    assert request.messages[1].content[1] == ImagePart(url="https://x/a.png")
    assert request.messages[4].tool_calls == (ToolCall(id="t1", name="g", arguments='{"x": 1}'),)


@pytest.mark.parametrize(("message", "match"), [
    ({"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t", "content": "x", "is_error": True}]},
     "is_error"),
    ({"role": "assistant", "content": None, "tool_calls": [{"id": "c"}], "audio": {"id": "a"}}, "audio"),
    ({"role": "assistant", "content": None, "tool_calls": [{"id": "c", "function": {}}]}, "malformed"),
])
def test_what_cannot_be_represented_fails_clearly(message: dict[str, object], match: str) -> None:
    with pytest.raises(UnsupportedContent, match=match) as caught:
        Chain().build_request([message])
    assert isinstance(caught.value, ConfigError)


def test_a_part_a_transport_cannot_send_names_part_and_transport() -> None:
    doc_by_url = LLMRequest(messages=[Message(role="user", content=["read", DocumentPart(url="https://x/d.pdf")])])
    with pytest.raises(UnsupportedContent) as caught:
        openai_transport().encode(doc_by_url, False)
    assert caught.value.part == "messages[0].content[1]" and caught.value.transport == "openai:gpt-4o-mini"
    assert "document by URL" in str(caught.value)
    assert anthropic_transport().encode(doc_by_url, False)["messages"][0]["content"][1]["source"]["type"] == "url"
    foreign = LLMRequest(messages=[Message(role="user", content=[RawPart(provider="openai", data={"type": "x"})])])
    with pytest.raises(UnsupportedContent, match=r"anthropic.*messages\[0\]\.content\[0\].*another provider"):
        anthropic_transport().encode(foreign, False)
    image_in_system = LLMRequest(messages=[Message(role="system", content=[ImagePart(data=PNG)])])
    with pytest.raises(UnsupportedContent, match="system"):
        anthropic_transport().encode(image_in_system, False)
