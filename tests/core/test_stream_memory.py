"""A streamed answer's text is held once: ``TextBuffer`` grows one string (no list of deltas
joined at the end), the chain keeps no per-stage copy, and parse's partial objects cost O(n).

Memory is asserted as tracemalloc peak ratios to the answer's size (CPython grows a string
that nothing else holds in place; elsewhere the buffer copies, so the ratios are CPython's).
"""

from __future__ import annotations

import asyncio
import gc
import sys
import tracemalloc
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from llmchain import Chain, LLMRequest, LLMResponse, PartialObject, TextDelta
from llmchain._text_buffer import TextBuffer
from llmchain.middleware import parse as parse_module
from llmchain.structured._partial_json import partial_json

CPYTHON = pytest.mark.skipif(sys.implementation.name != "cpython",
                             reason="the in-place growth of a string is CPython's")
SIZE = 2 * 1024 * 1024
PIECE = 1000


@given(st.lists(st.text(max_size=40), max_size=600), st.integers(0, 600))
def test_buffer_holds_exactly_the_pieces_in_order(pieces: list[str], peek_at: int) -> None:
    buffer = TextBuffer()
    for i, piece in enumerate(pieces):
        if i == peek_at:
            assert buffer.value() == "".join(pieces[:i])  # the text so far, mid-way
        buffer.append(piece)
    assert len(buffer) == sum(map(len, pieces)) and buffer.chunks == len(pieces)
    assert buffer.take() == "".join(pieces) == buffer.value()


def _peak(fn: Callable[[], Any]) -> tuple[float, Any]:
    gc.collect()
    tracemalloc.start()
    try:
        result = fn()
        return tracemalloc.get_traced_memory()[1], result
    finally:
        tracemalloc.stop()


def _pieces() -> list[int]:
    return list(range(SIZE // PIECE))


@CPYTHON
def test_buffer_peak_is_about_the_text_not_twice() -> None:
    def build() -> int:
        buffer = TextBuffer()
        for i in _pieces():
            buffer.append(f"{i:0{PIECE}d}")  # a fresh string each time, as a decoder makes
        return len(buffer.take())

    peak, size = _peak(build)
    assert size == SIZE // PIECE * PIECE
    assert peak < 1.3 * size  # a list of deltas joined at the end peaks at 2x


class _Generated:
    """A streaming transport making ``SIZE`` characters of fresh text, with no final response
    of its own (the chain builds it from the chunks)."""

    name = "generated:m"

    def identity(self) -> dict[str, Any]:
        return {"kind": "generated"}

    async def send(self, request: LLMRequest) -> LLMResponse:
        raise AssertionError("streamed calls only")

    async def stream(self, request: LLMRequest) -> AsyncIterator[str]:
        for i in _pieces():
            yield f"{i:0{PIECE}d}"

    async def aclose(self) -> None:
        pass


@CPYTHON
@pytest.mark.parametrize("stages", [[], ["log", "retry", "timeout"]], ids=["bare", "pass-through stages"])
def test_a_streamed_answer_is_held_once_through_the_chain(stages: list[str]) -> None:
    chain = Chain(stages, _Generated(), timeout_s=None)

    async def drain() -> int:
        stream = chain.astream("q")
        async for _ in stream:  # chunks dropped as they come
            pass
        assert stream.response is not None
        return len(stream.response.text)  # (not the response: asyncio.run may repr its result)

    asyncio.run(drain())  # first call: imports and caches out of the measurement
    peak, size = _peak(lambda: asyncio.run(drain()))
    assert size == SIZE // PIECE * PIECE
    assert peak < 1.5 * size  # was 2x+ (deltas kept by the chain, then joined)


def test_parse_reads_a_long_json_answer_a_bounded_number_of_times(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[int] = []
    real = partial_json

    def counting(text: str) -> Any:
        calls.append(len(text))
        return real(text)

    monkeypatch.setattr(parse_module, "partial_json", counting)
    answer = "[" + ",".join(f'"{i:06d}"' for i in range(20_000)) + "]"  # 180 kB of JSON
    chunks = [answer[i:i + 50] for i in range(0, len(answer), 50)]

    class Chunks(_Generated):
        async def stream(self, request: LLMRequest) -> AsyncIterator[str]:
            for chunk in chunks:
                yield chunk

    chain = Chain(["parse"], Chunks(), timeout_s=None)

    async def events() -> tuple[list[Any], LLMResponse | None]:
        stream = chain.astream("q", output_schema={"type": "array"})
        return [e async for e in stream.events()], stream.response

    got, response = asyncio.run(events())
    assert response is not None and response.parsed == [f"{i:06d}" for i in range(20_000)]
    assert "".join(e.text for e in got if isinstance(e, TextDelta)) == answer
    partials = [e.value for e in got if isinstance(e, PartialObject)]
    last = partials[-1]  # a growing list (its last string may be cut short)
    assert len(partials) > 10 and last[:-1] == response.parsed[:len(last) - 1]
    # every chunk while short (4096 chars: 82 chunks), then each time the text grew by 1/8
    assert len(calls) < 82 + 40 < len(chunks) // 10
