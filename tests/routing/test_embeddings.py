"""Embeddings through the chain: batching, per-text cache, order, typed per-batch failures."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from llmchain import (
    BudgetExceeded,
    Chain,
    ConfigError,
    EmbeddingFailed,
    LLMRequest,
    LLMResponse,
    ProviderError,
    RateLimited,
    TimeoutExceeded,
)
from llmchain._embed import batches
from llmchain.middleware.rate_limit import RateLimitMiddleware
from llmchain.testing import FakeClock
from llmchain.testing.fault_server import FaultServer
from llmchain.transports.mock import MockReply, MockTransport, mock_vector

texts_st = st.lists(st.text(alphabet="abcde ", min_size=0, max_size=12), min_size=1, max_size=30)


def test_batches_respect_both_limits_and_keep_order() -> None:
    assert batches([1, 1, 1, 1, 1], 2, 100) == [(0, 2), (2, 4), (4, 5)]
    assert batches([5, 5, 5, 20, 1], 10, 10) == [(0, 2), (2, 3), (3, 4), (4, 5)]  # 20 > 10 goes alone
    assert batches([], 3, 3) == []


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(texts=texts_st, cached=st.sets(st.integers(0, 29)), batch_size=st.integers(1, 7),
       max_tokens=st.integers(1, 12), concurrency=st.integers(1, 4))
def test_order_is_kept_under_partial_cache_hits_and_batching(
        texts: list[str], cached: set[int], batch_size: int, max_tokens: int, concurrency: int) -> None:
    transport = MockTransport()
    chain = Chain(["cache"], transport, embeddings={"batch_size": batch_size, "max_batch_tokens": max_tokens,
                                                    "concurrency": concurrency, "tokenizer": "heuristic"})
    warm = sorted({texts[i] for i in cached if i < len(texts)})
    if warm:
        chain.embed(warm)
    transport.calls.clear()
    result = chain.embed(texts)
    assert result.vectors == [mock_vector(t, 8) for t in texts]  # in order, whatever was cached
    sent = [t for call in transport.calls for t in call.embed_input or ()]
    assert not set(sent) & set(warm)  # only uncached texts were sent
    assert set(sent) == set(texts) - set(warm)  # and every uncached one was
    assert all(len(call.embed_input or ()) <= batch_size for call in transport.calls)


@settings(max_examples=60, deadline=None)
@given(n=st.integers(1, 25), batch_size=st.integers(1, 6), data=st.data())
def test_failures_are_typed_per_batch(n: int, batch_size: int, data: st.DataObject) -> None:
    texts = [f"t{i}" for i in range(n)]
    ranges = batches([1] * n, batch_size, 10_000)
    kinds = data.draw(st.lists(st.sampled_from(["ok", "rate_limited", "server_error"]),
                               min_size=len(ranges), max_size=len(ranges)))
    plan = {ranges[i][0]: kind for i, kind in enumerate(kinds)}

    def answer(request: LLMRequest) -> Any:
        first = texts.index((request.embed_input or ("",))[0])
        kind = plan[first]
        return MockReply(error=kind) if kind != "ok" else MockReply(text="")  # type: ignore[arg-type]

    transport = MockTransport(MockTransport.Options(cycle=True), script=[answer])
    chain = Chain([], transport, embeddings={"batch_size": batch_size})
    if all(k == "ok" for k in kinds):
        assert chain.embed(texts).vectors == [mock_vector(t, 8) for t in texts]
        return
    with pytest.raises(EmbeddingFailed) as info:
        chain.embed(texts)
    failed = info.value.failures
    expected = [(a, b, k) for (a, b), k in zip(ranges, kinds, strict=True) if k != "ok"]
    assert [(a, b) for a, b, _ in failed] == [(a, b) for a, b, _ in expected]
    for (_, _, error), (_, _, kind) in zip(failed, expected, strict=True):
        assert isinstance(error, RateLimited if kind == "rate_limited" else ProviderError)
    vectors = info.value.vectors
    for (a, b), kind in zip(ranges, kinds, strict=True):
        assert vectors[a:b] == ([None] * (b - a) if kind != "ok" else [mock_vector(t, 8) for t in texts[a:b]])


def test_embeddings_over_http_are_batched_retried_and_counted() -> None:
    with FaultServer(["429", "ok", "503"]) as server, Chain(
        [{"use": "retry", "base_s": 0.01, "max_retry_after_s": 2}],
        {"use": "openai", "base_url": server.base_url, "api_key_env": "", "dimensions": 4},
        embeddings={"batch_size": 3, "concurrency": 1, "model": "text-embedding-3-large"},
    ) as chain:
        result = chain.embed([f"text number {i}" for i in range(7)])
    assert result.vectors == [mock_vector(f"text number {i}", 4) for i in range(7)]
    assert [r.fault for r in server.requests] == ["429", "ok", "503", "ok", "ok"]
    assert [len(r.body["input"]) for r in server.requests] == [3, 3, 3, 3, 1]
    assert {r.body["model"] for r in server.requests} == {"text-embedding-3-large"}
    assert all(r.path == "/v1/embeddings" for r in server.requests)
    assert result.usage.input_tokens == sum((len(f"text number {i}") + 3) // 4 for i in range(7))


def test_a_malformed_embeddings_answer_is_a_typed_error() -> None:
    with FaultServer(["bad_shape"]) as server, Chain(
        [], {"use": "openai", "base_url": server.base_url, "api_key_env": "", "query": {"v": "1"}}
    ) as chain, pytest.raises(EmbeddingFailed) as info:
        chain.embed(["x"])
    error = info.value.failures[0][2]
    assert isinstance(error, ProviderError) and "0 vectors for 1 inputs" in error.message
    assert server.requests[0].path == "/v1/embeddings?v=1"


def test_rate_limit_books_the_embedding_tokens() -> None:
    limiter = RateLimitMiddleware(RateLimitMiddleware.Options(tpm=10, tokenizer="heuristic"))
    chain = Chain([limiter], MockTransport(), embeddings={"batch_size": 100})
    chain.embed(["aaaa" * 4, "bbbb" * 4])  # 4 + 4 estimated, 8 real
    log = limiter.store._logs["default"]  # type: ignore[attr-defined]
    assert log.tokens == 8
    with pytest.raises(EmbeddingFailed) as info:
        chain.embed(["c" * 12], timeout_s=1)  # 3 more tokens do not fit for a minute
    assert isinstance(info.value.failures[0][2], RateLimited)


def test_timeout_and_budget_apply_to_embeddings() -> None:
    clock = FakeClock()
    slow = MockTransport.scripted(MockReply(text="", delay_s=5), clock=clock)
    chain = Chain(["timeout"], slow, clock=clock)
    with pytest.raises(EmbeddingFailed) as info:
        chain.embed(["x"], timeout_s=1)
    assert isinstance(info.value.failures[0][2], TimeoutExceeded)
    capped = Chain([{"use": "budget", "tokenizer": "heuristic", "limits": [{"tokens": 3}]}], MockTransport())
    capped.embed(["abcdefgh"])  # 2 tokens
    with pytest.raises(EmbeddingFailed) as info:
        capped.embed(["abcdefgh"])
    assert isinstance(info.value.failures[0][2], BudgetExceeded)


def test_parse_validate_and_repair_pass_embeddings_through() -> None:
    stages = [{"use": "repair"}, {"use": "validate", "json_schema": {"type": "object"}}, {"use": "parse", "always": True}]
    chain = Chain(stages, MockTransport())
    assert chain.embed(["a", "b"]).vectors == [mock_vector("a", 8), mock_vector("b", 8)]


def test_embeddings_config_in_toml(tmp_path: Path) -> None:
    path = tmp_path / "chain.toml"
    path.write_text('[transport]\nuse = "mock"\n[embeddings]\nbatch_size = 2\nmodel = "e5"\n')
    chain = Chain.from_config(path)
    chain.embed(["a", "b", "c"])
    assert [c.embed_input for c in chain.transport.calls] == [("a", "b"), ("c",)]  # type: ignore[attr-defined]
    assert chain.transport.calls[0].model == "e5"  # type: ignore[attr-defined]
    path.write_text('[embeddings]\nbatch_size = 0\n')
    with pytest.raises(ConfigError, match=r"chain.toml: \[embeddings\] batch_size"):
        Chain.from_config(path)
    path.write_text('[embeddings]\nbatchsize = 2\n')
    with pytest.raises(ConfigError, match="batchsize"):
        Chain.from_config(path)
    with pytest.raises(ConfigError, match="list of texts"):
        Chain().embed("one text")  # type: ignore[arg-type]


def test_an_empty_list_embeds_to_nothing_without_a_call() -> None:
    transport = MockTransport()
    assert Chain([], transport).embed([]).vectors == [] and transport.calls == []


def test_cached_embeddings_say_so() -> None:
    chain = Chain(["cache"], MockTransport())
    chain.embed(["a"])
    again = chain.embed(["a"])
    assert again.cached == 1 and again.served_by == ["cache"]
    assert isinstance(LLMResponse(text="", embeddings=((1.0,),)).embeddings, tuple)


def test_the_log_line_of_an_embedding_batch_counts_its_tokens(caplog: pytest.LogCaptureFixture) -> None:
    import logging

    chain = Chain([{"use": "log", "handler": "none"}], MockTransport(), embeddings={"model": "e5"})
    with caplog.at_level(logging.INFO, "llmchain"):
        chain.embed(["abcdefgh", "ijklmnop"])
    line = caplog.records[-1].__dict__
    assert (line["event"], line["outcome"], line["model"], line["tokens_in"]) == ("llm.call", "ok", "e5", 4)


def test_bad_embed_parameters_are_config_errors() -> None:
    with pytest.raises(ConfigError, match="invalid embed"):
        Chain([], MockTransport()).embed(["a"], timeout_s=-1)
    with pytest.raises(ConfigError, match="invalid embed"):
        Chain([], MockTransport()).embed(["a"], colour="blue")
