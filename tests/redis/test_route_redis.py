"""Route state in Redis: several processes see the same in-flight counts, latencies and cool-downs."""

from __future__ import annotations

import asyncio

import pytest

from llmchain.stores._shared import with_query
from llmchain.stores.route_state import RedisRouteState
from llmchain.testing.fault_server import FaultServer

from .test_multiprocess import Workers, _outcomes

pytestmark = pytest.mark.redis



def test_two_stores_on_one_redis_see_the_same_state(redis_url: str, prefix: str) -> None:
    url = with_query(redis_url, key_prefix=prefix)
    one, two = RedisRouteState(url, "r"), RedisRouteState(url, "r")

    async def run() -> None:
        await one.start("a", 100.0)
        await two.start("a", 100.0)
        await two.start("b", 100.0)
        state = (await one.snapshot(["a", "b"], 100.0))
        assert (state["a"].in_flight, state["b"].in_flight) == (2, 1)
        await one.finish("a", 101.0, latency_s=0.2, alpha=0.5, cool_until=None, header_headroom=0.4)
        await two.finish("a", 101.0, latency_s=0.4, alpha=0.5, cool_until=160.0, header_headroom=None)
        state = (await two.snapshot(["a", "b"], 101.0))
        a = state["a"]
        assert (a.in_flight, a.cool_until, a.header_headroom) == (0, 160.0, 0.4)
        assert a.latency_s == pytest.approx(0.3) and a.load == pytest.approx(2.0)
        await one.aclose()

    asyncio.run(run())


def test_a_deployment_cooled_down_by_one_process_is_skipped_by_the_others(workers: Workers) -> None:
    with FaultServer({"503": 1.0}) as broken, FaultServer() as healthy:
        route = {"use": "route", "store": "redis", "share": "mp", "tokenizer": "heuristic", "cooldown_s": 60,
                 "deployments": [
                     {"name": "broken", "weight": 100, "breaker": False,
                      "transport": {"use": "openai", "base_url": broken.base_url, "api_key_env": ""}},
                     {"name": "healthy", "weight": 0.01,
                      "transport": {"use": "openai", "base_url": healthy.base_url, "api_key_env": ""}}]}
        command = {"stages": [route], "transport": {"use": "mock"}, "timeout_s": 5.0, "probe": False}
        first = _outcomes(workers.run({**command, "calls": 1}))
        assert first == ["ok"] * 3  # each worker's call moved on to the healthy deployment
        assert 1 <= broken.request_count <= 3
        before = broken.request_count
        later = _outcomes(workers.run({**command, "calls": 10}))
        assert later == ["ok"] * 30
        assert broken.request_count == before  # the shared cool-down kept every process away
        assert healthy.request_count == 33
