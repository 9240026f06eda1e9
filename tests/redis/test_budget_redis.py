"""The budget ledger in Redis: atomic across callers and across processes."""

from __future__ import annotations

import asyncio

import pytest

from llmchain.policies.spend import Entry
from llmchain.stores._shared import with_query
from llmchain.stores.spend import RedisSpendStore

from .test_multiprocess import Workers, _outcomes

pytestmark = pytest.mark.redis



def test_a_hundred_concurrent_reservations_never_pass_the_limit(redis_url: str, prefix: str) -> None:
    # a generous op timeout: on a loaded machine 100 concurrent scripts can take more than the
    # default 0.25 s, and the store would fall back to in-process state (not what this tests)
    store = RedisSpendStore(with_query(redis_url, key_prefix=prefix, op_timeout_s="10"), "t")

    async def run() -> list[bool]:
        outcomes = await asyncio.gather(*(store.reserve([Entry("k", 7, 100, 60), Entry("g", 1, 1000, 60)], 0.0)
                                          for _ in range(100)))
        return [o.ok for o in outcomes]

    ok = asyncio.run(run())
    assert ok.count(True) == 14  # 14 * 7 = 98 <= 100 < 105

    async def after() -> tuple[int, int]:
        await store.settle([Entry("k", -7, 100, 60)], 0.0)
        return await store.spent("k", 0.0), await store.spent("g", 0.0)

    assert asyncio.run(after()) == (91, 14)  # all or nothing: "g" counted only the admitted ones


def test_workers_sharing_a_redis_budget_spend_it_once_between_them(workers: Workers) -> None:
    reply = {"text": "ok", "input_tokens": 9, "output_tokens": 256}  # exactly the estimate
    budget = {"use": "budget", "tokenizer": "heuristic", "store": "redis", "share": "team",
              "limits": [{"tokens": 265 * 12, "window": "day"}]}
    command = {"stages": [budget], "transport": {"use": "mock", "replies": [reply], "cycle": True},
               "calls": 10, "timeout_s": 5.0}
    outcomes = _outcomes(workers.run(command))
    assert outcomes.count("ok") == 12  # twelve calls' worth between three processes, not per process
    assert outcomes.count("BudgetExceeded:None") == 18
