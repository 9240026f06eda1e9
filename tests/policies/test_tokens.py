"""Token estimation: tiktoken when it loads, else the documented heuristic."""

from __future__ import annotations

import sys
import types

import pytest

from llmchain import LLMRequest, Message
from llmchain._tokens import MESSAGE_OVERHEAD, REPLY_OVERHEAD, TokenEstimator, heuristic_count


def _request(*texts: str, max_tokens: int | None = None) -> LLMRequest:
    return LLMRequest(messages=tuple(Message(role="user", content=t) for t in texts), max_tokens=max_tokens)


def test_heuristic_is_four_chars_a_token_rounded_up() -> None:
    assert [heuristic_count("x" * n) for n in (0, 1, 4, 5, 400)] == [0, 1, 1, 2, 100]


def test_request_tokens_add_message_overheads_and_the_output_booking() -> None:
    est = TokenEstimator("heuristic")
    assert est.kind == "heuristic"
    request = _request("a" * 40, "b" * 8)
    assert est.input_tokens(request) == REPLY_OVERHEAD + 2 * MESSAGE_OVERHEAD + 10 + 2
    assert est.request_tokens(request, 256) == est.input_tokens(request) + 256
    assert est.request_tokens(_request("hi", max_tokens=7), 256) == est.input_tokens(_request("hi")) + 7


def test_long_texts_are_cached() -> None:
    est = TokenEstimator("heuristic")
    calls: list[str] = []

    def counting(text: str) -> int:
        calls.append(text)
        return 1

    est._count = counting
    long = "x" * 1000
    assert est.count(long) == est.count(long) == 1
    assert len(calls) == 1


@pytest.fixture
def fake_tiktoken(monkeypatch: pytest.MonkeyPatch) -> None:
    module = types.ModuleType("tiktoken")

    class Encoding:
        def encode(self, text: str, disallowed_special: object = ()) -> list[int]:
            return [0] * len(text.split())

    def get_encoding(name: str) -> Encoding:
        if name != "o200k_base":
            raise ValueError(f"unknown encoding {name}")
        return Encoding()

    module.get_encoding = get_encoding  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "tiktoken", module)


@pytest.mark.usefixtures("fake_tiktoken")
def test_auto_uses_tiktoken_once_it_has_loaded() -> None:
    est = TokenEstimator("auto")
    assert est.wait_ready(5)
    assert est.kind == "tiktoken:o200k_base"
    assert est.count("one two three four five") == 5


@pytest.mark.usefixtures("fake_tiktoken")
def test_an_unloadable_encoding_falls_back_to_the_heuristic() -> None:
    est = TokenEstimator("no_such_encoding")
    assert est.wait_ready(5)
    assert est.kind == "heuristic"
    assert est.count("abcdefgh") == 2


def test_without_tiktoken_auto_is_the_heuristic(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "tiktoken", None)  # import fails
    est = TokenEstimator("auto")
    assert est.wait_ready(5)
    assert est.kind == "heuristic"
