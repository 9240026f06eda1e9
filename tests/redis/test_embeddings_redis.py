"""Embeddings through chains that share Redis: the per-text cache, the budget and the limiter."""

from __future__ import annotations

import pytest

from llmchain import BudgetExceeded, Chain, EmbeddingFailed
from llmchain.stores._shared import with_query
from llmchain.transports.mock import MockTransport, mock_vector

pytestmark = pytest.mark.redis


def test_chains_sharing_redis_share_embeddings_cache_budget_and_limits(
        redis_url: str, prefix: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REDIS_URL", with_query(redis_url, key_prefix=prefix))
    stages = [{"use": "cache", "store": "redis"},
              {"use": "budget", "store": "redis", "share": "emb", "tokenizer": "heuristic",
               "limits": [{"tokens": 12, "window": "day"}]},
              {"use": "rate_limit", "store": "redis", "share": "emb", "tpm": 1000, "tokenizer": "heuristic"}]
    first, second = MockTransport(), MockTransport()  # two workers, each its own stores and clients
    one = Chain(stages, first, embeddings={"batch_size": 2})
    two = Chain(stages, second, embeddings={"batch_size": 2})
    texts = [f"text {i:03d}" for i in range(5)]  # 2 tokens each
    assert one.embed(texts).vectors == [mock_vector(t, 8) for t in texts]
    more = [*texts, "text 100"]
    result = two.embed(more)
    assert result.vectors == [mock_vector(t, 8) for t in more] and result.cached == 5
    assert [t for c in second.calls for t in c.embed_input or ()] == ["text 100"]  # only the new one
    with pytest.raises(EmbeddingFailed) as info:  # 12 tokens spent between them: the budget is shared
        one.embed(["text 200", "text 201", "text 202", "text 203"])
    assert all(isinstance(e, BudgetExceeded) for _, _, e in info.value.failures)
    one.close()
    two.close()
