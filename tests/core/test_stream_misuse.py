"""``complete()`` / ``acomplete()`` with ``stream=True``: refused with a typed error that points
to ``stream()`` / ``astream()``, before anything is sent (no stream left unread, no connection
left open)."""

from __future__ import annotations

import asyncio

import pytest

from llmchain import Chain, ConfigError, InputTypeError, LLMRequest
from llmchain.transports.mock import MockTransport


def _chain() -> tuple[Chain, MockTransport]:
    transport = MockTransport(script=["hello"] * 5)
    return Chain([], transport), transport


def test_complete_with_stream_true_is_refused_and_names_stream() -> None:
    chain, transport = _chain()
    with pytest.raises(InputTypeError) as caught:
        chain.complete("hi", stream=True)
    assert "chain.stream()" in str(caught.value) and "astream()" in str(caught.value)
    assert isinstance(caught.value, ConfigError)
    assert transport.calls == []  # nothing was sent
    assert chain.complete("hi").text == "hello"  # the chain is still usable


def test_acomplete_and_complete_json_with_stream_true_are_refused() -> None:
    chain, transport = _chain()

    async def calls() -> None:
        with pytest.raises(InputTypeError, match=r"chain\.astream\(\)"):
            await chain.acomplete("hi", stream=True)
        with pytest.raises(InputTypeError, match="stream=True"):
            await chain.acomplete(LLMRequest.model_validate(
                {"messages": [{"role": "user", "content": "hi"}], "stream": True}))
        with pytest.raises(InputTypeError, match="stream=True"):
            await chain.acomplete_json("hi", schema={"type": "object"}, stream=True)

    asyncio.run(calls())
    assert transport.calls == []


def test_stream_false_is_still_accepted() -> None:
    chain, _ = _chain()
    assert chain.complete("hi", stream=False).text == "hello"
