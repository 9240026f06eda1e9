"""The Redis cache store, and the cache stage coalescing identical calls across processes.

Two ``CacheMiddleware`` instances, each with its own store (and so its own in-process
single-flight), stand for two worker processes: only Redis can coalesce their calls. One test
uses real worker processes against the fault server.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest
import redis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from llmchain import Chain, Event, TimeoutExceeded
from llmchain.middleware._cache_key import cache_key
from llmchain.middleware.cache import CacheMiddleware
from llmchain.stores._redis_common import RedisSettings, parse_settings
from llmchain.stores._shared import with_query
from llmchain.stores.cache_base import StoreSettings, open_cache_store
from llmchain.stores.cache_redis import RedisCacheStore
from llmchain.testing import FakeClock, MockReply, MockTransport
from llmchain.testing.fault_server import FaultServer

from .test_multiprocess import Workers

pytestmark = pytest.mark.redis
KEYS = st.sampled_from(["a", "b", "c"])
OPS = st.lists(st.one_of(
    st.tuples(st.just("set"), KEYS, st.sampled_from([None, 1.0, 5.0])),
    st.tuples(st.just("get"), KEYS), st.tuples(st.just("delete"), KEYS),
    st.tuples(st.just("advance"), st.sampled_from([0.5, 1.0, 5.0]))), max_size=25)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(ops=OPS)
def test_the_store_behaves_like_a_dict_with_expiry(settings: RedisSettings, ops: list[Any]) -> None:
    clock = FakeClock()  # entries expire by the writer's clock; Redis's own TTL is far away
    store = RedisCacheStore(settings, clock=clock)
    model: dict[str, tuple[str, float | None]] = {}

    def live(key: str) -> bool:
        expires = model[key][1] if key in model else 0.0
        return key in model and (expires is None or clock.wall() < expires)

    async def run() -> None:
        await store.clear()
        for n, op in enumerate(ops):
            if op[0] == "set":
                value = f'{{"n": {n}}}'
                await store.set(op[1], value, op[2])
                model[op[1]] = (value, None if op[2] is None else clock.wall() + op[2])
            elif op[0] == "get":
                entry = await store.get(op[1])
                if live(op[1]):
                    assert entry is not None and (entry.value, entry.expires_at) == model[op[1]]
                else:
                    assert entry is None
            elif op[0] == "delete":
                assert await store.delete(op[1]) == live(op[1])
                model.pop(op[1], None)
            else:
                clock.advance(op[1])

    asyncio.run(run())


def test_entries_are_json_under_the_prefix_with_a_redis_ttl(
        redis_url: str, prefix: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REDIS_URL", with_query(redis_url, key_prefix=prefix))
    store = open_cache_store(StoreSettings(kind="redis", default_ttl_s=30), FakeClock())
    other = RedisCacheStore(parse_settings(with_query(redis_url, key_prefix=f"{prefix}-other")))
    client = redis.Redis.from_url(redis_url, decode_responses=True)

    async def run() -> None:
        await store.set("k", '{"text": "hé"}', None)
        await other.set("k", '"theirs"', None)
        name = f"{prefix}:cache:{{k}}"
        raw = client.get(name)
        assert isinstance(raw, str)
        header, _, value = raw.partition("\n")
        assert value == '{"text": "hé"}' and header.startswith("llmchain-cache-1 ")
        assert 29_000 < client.pttl(name) <= 30_000
        client.set(f"{prefix}:cache:{{junk}}", "not an entry")
        assert await store.get("junk") is None  # unreadable: a miss, not an error
        await store.clear()
        assert await store.get("k") is None and (await other.get("k")) is not None  # only ours

    asyncio.run(run())
    client.close()


# -- the cache stage over Redis ---------------------------------------------------------------


def _cache(settings: RedisSettings, monkeypatch: pytest.MonkeyPatch, **options: Any) -> CacheMiddleware:
    monkeypatch.setenv("CACHE_REDIS", with_query(settings.url, key_prefix=settings.key_prefix,
                                                 lease_s=str(options.pop("lease_s", 10.0))))
    return CacheMiddleware(CacheMiddleware.Options(store="redis", url_env="CACHE_REDIS", **options))


def _worker(settings: RedisSettings, monkeypatch: pytest.MonkeyPatch, *replies: Any,
            latency_s: float = 0.3, **options: Any) -> tuple[Chain, MockTransport]:
    """One 'process': its own cache stage (own in-process flights) and transport."""
    transport = MockTransport.scripted(*replies, latency_s=latency_s)
    return Chain([_cache(settings, monkeypatch, **options)], transport), transport


class _Calls(list[Any]):
    """A transport's call list that sets an event when a call arrives."""

    def __init__(self) -> None:
        super().__init__()
        self.arrived = asyncio.Event()

    def append(self, item: Any) -> None:
        super().append(item)
        self.arrived.set()


async def _calling(transport: MockTransport) -> None:
    """Until ``transport`` has received its call: then its worker holds the lease (no real sleep)."""
    if not isinstance(transport.calls, _Calls):
        transport.calls = _Calls()
    await transport.calls.arrived.wait()


def test_identical_calls_in_two_processes_make_one_provider_call(
        settings: RedisSettings, monkeypatch: pytest.MonkeyPatch) -> None:
    events: list[Event] = []
    (a, ta), (b, tb) = _worker(settings, monkeypatch), _worker(settings, monkeypatch)
    b = Chain([b.stages[0][1]], tb, observers=[events.append])

    async def run() -> None:
        first = asyncio.create_task(a.acomplete("same question"))
        await _calling(ta)  # a holds the lease and is calling
        second = await b.acomplete("same question")
        assert (await first).text == second.text == "same question"
        assert second.cache is not None and second.cache.status == "hit"

    asyncio.run(run())
    assert len(ta.calls) + len(tb.calls) == 1
    assert [e.data["leader"] for e in events if e.kind == "singleflight_wait"] == ["another process"]


def test_a_dead_holder_loses_its_lease_and_a_waiter_calls_itself(
        settings: RedisSettings, monkeypatch: pytest.MonkeyPatch, redis_url: str) -> None:
    chain, transport = _worker(settings, monkeypatch, latency_s=0.0)
    cache = chain.stages[0][1]
    assert isinstance(cache, CacheMiddleware)
    client = redis.Redis.from_url(redis_url)
    request = chain.build_request("orphaned")
    key = _key(cache, chain, request)
    client.set(f"{settings.key_prefix}:sf:{{{key}}}", "a-dead-worker", px=300)
    t0 = time.monotonic()
    assert chain.complete("orphaned").text == "orphaned"
    # not before the lease ran out (300 ms), and without waiting for the call's deadline
    assert 0.25 < time.monotonic() - t0 < 10.0 and len(transport.calls) == 1
    client.close()


def _key(cache: CacheMiddleware, chain: Chain, request: Any) -> str:
    assert isinstance(chain.transport, MockTransport)
    return cache_key(request, cache.options.namespace, chain.transport.identity())


def test_a_failed_holder_is_not_copied_the_waiter_calls_itself(
        settings: RedisSettings, monkeypatch: pytest.MonkeyPatch) -> None:
    (a, ta) = _worker(settings, monkeypatch, MockReply(error="server_error", delay_s=0.2), latency_s=0.0)
    (b, tb) = _worker(settings, monkeypatch, latency_s=0.0)

    async def run() -> None:
        first = asyncio.create_task(a.acomplete("q"))
        await _calling(ta)
        assert (await b.acomplete("q")).text == "q"  # after a's failure, b made its own call
        with pytest.raises(Exception, match="mock"):
            await first

    asyncio.run(run())
    assert (len(ta.calls), len(tb.calls)) == (1, 1)


def test_a_waiter_never_waits_past_its_own_deadline(
        settings: RedisSettings, monkeypatch: pytest.MonkeyPatch) -> None:
    (a, ta), (b, tb) = _worker(settings, monkeypatch, latency_s=2.0), _worker(settings, monkeypatch)

    async def run() -> None:
        first = asyncio.create_task(a.acomplete("slow"))
        await _calling(ta)
        with pytest.raises(TimeoutExceeded) as info:
            await b.acomplete("slow", timeout_s=0.2)
        # b gave up at its deadline, while the holder's call was still running
        assert info.value.phase == "deadline" and not first.done()
        await first

    asyncio.run(run())
    assert not tb.calls


def test_the_holder_renews_its_lease_while_its_call_runs(
        settings: RedisSettings, monkeypatch: pytest.MonkeyPatch) -> None:
    (a, ta), (b, tb) = (_worker(settings, monkeypatch, latency_s=0.8, lease_s=0.3),
                        _worker(settings, monkeypatch, lease_s=0.3))

    async def run() -> None:
        first = asyncio.create_task(a.acomplete("long"))
        await _calling(ta)
        await asyncio.gather(first, b.acomplete("long"))

    asyncio.run(run())
    assert (len(ta.calls), len(tb.calls)) == (1, 0)  # the lease outlived 0.3 s: nobody took over


def test_worker_processes_asking_the_same_question_make_one_call(
        workers: Workers, redis_url: str, prefix: str) -> None:
    with FaultServer("latency:0.3") as server:
        results = workers.run({
            "stages": [{"use": "cache", "store": "redis"}],
            "transport": {"use": "openai", "base_url": server.base_url, "api_key_env": "", "model": "m"},
            "calls": 4, "timeout_s": 5.0})
        # each worker asks "call 0" .. "call 3" at once: 12 calls, 4 questions, 4 provider calls
        assert server.request_count == 4
        assert sorted(r.body["messages"][-1]["content"] for r in server.requests) == [
            f"call {i}" for i in range(4)]
    assert [o for r in results for o in r["outcomes"]] == ["ok"] * 12
