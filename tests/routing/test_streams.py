"""Streams through route, budget and fallback: the same stages act on streamed calls."""

from __future__ import annotations

from typing import Any

import pytest

from llmchain import BudgetExceeded, Chain, StreamInterrupted
from llmchain.middleware.route import RouteMiddleware
from llmchain.testing import FakeClock
from llmchain.testing.fault_server import Fault, FaultServer

LONG = "a streamed answer that arrives in several pieces " * 3


def openai(server: FaultServer) -> dict[str, Any]:
    return {"use": "openai", "base_url": server.base_url, "api_key_env": "", "model": "gpt-4o-mini"}


def test_a_stream_that_fails_before_its_first_chunk_moves_to_the_next_deployment() -> None:
    with FaultServer(["503"]) as bad, FaultServer(piece_chars=8) as good:
        stage = RouteMiddleware(RouteMiddleware.Options(
            deployments=[{"name": "bad", "weight": 100, "transport": openai(bad)},
                         {"name": "good", "weight": 0.01, "transport": openai(good)}],
            tokenizer="heuristic", seed=1))
        with Chain([stage], "mock") as chain:
            stream = chain.stream(LONG)
            chunks = list(stream)
        assert len(chunks) > 1 and "".join(chunks) == stream.response.text  # streamed, not whole
        assert stream.response.served_by == "good"
        assert stream.response.notes["route"]["skipped"] == ["bad: ProviderError"]
        assert bad.request_count == 1 and good.request_count == 1


def test_fallback_takes_over_a_stream_that_fails_before_its_first_chunk() -> None:
    with FaultServer(["503", "503"]) as primary, FaultServer(piece_chars=8) as other:
        stages = [{"use": "fallback", "alternatives": [{"name": "other", "transport": openai(other)}]},
                  {"use": "retry", "max_attempts": 2, "base_s": 0.001}]
        with Chain(stages, openai(primary)) as chain:
            stream = chain.stream(LONG)
            text = "".join(stream)
        assert text == stream.response.text and stream.response.served_by is not None
        assert "other" in str(stream.response.notes.get("fallback"))
        assert primary.request_count == 2 and other.request_count == 1


def test_a_stream_cut_after_its_first_chunk_is_not_sent_elsewhere() -> None:
    with FaultServer([Fault("truncated_stream", after_events=2)], piece_chars=8) as cut, \
            FaultServer() as other:
        stages = [{"use": "fallback", "alternatives": [{"name": "other", "transport": openai(other)}]}]
        with Chain(stages, openai(cut)) as chain, pytest.raises(StreamInterrupted) as info:
            list(chain.stream(LONG))
        assert info.value.partial_text and LONG.startswith(info.value.partial_text)
        assert other.request_count == 0  # part of the answer had reached the caller


def test_a_budget_counts_streamed_calls_and_refuses_the_one_over_it() -> None:
    clock = FakeClock()
    limits = [{"tokens": 400, "window": "day", "name": "daily"}]
    with FaultServer(piece_chars=8) as server, Chain(
            [{"use": "budget", "tokenizer": "heuristic", "limits": limits}], openai(server),
            clock=clock) as chain:
        first = chain.stream(LONG, max_tokens=50)
        assert "".join(first) == first.response.text
        spent = first.response.usage.total_tokens
        assert spent > 0
        calls, refused = 1, None
        for _ in range(20):
            try:
                assert "".join(chain.stream(LONG, max_tokens=50))
            except BudgetExceeded as exc:
                refused = exc
                break
            calls += 1
        assert refused is not None, "the budget never refused a stream"
        assert refused.budget == "daily" and refused.spent <= 400
        assert 1 < calls < 20 and refused.spent >= spent * (calls - 1)  # settled from real usage
        assert server.request_count == calls  # the refused stream was never sent
