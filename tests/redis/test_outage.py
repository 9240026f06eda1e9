"""Redis down, hung or talking nonsense, in the middle of a run: calls go on (``on_unavailable =
"local"``) or fail with a clear error (``"fail"``), and never wait past their deadline.

Each test runs a ``redis-server`` of its own and freezes it (SIGSTOP: sockets stay open, nothing
answers) or kills it (SIGKILL: connections reset, the port refuses) mid-run.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import socketserver
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import redis

from llmchain import Chain, Event, StoreUnavailable, TimeoutExceeded
from llmchain.middleware.rate_limit import RateLimitMiddleware
from llmchain.policies.admission import RateLimits
from llmchain.stores._redis_common import parse_settings
from llmchain.stores._shared import with_query
from llmchain.stores.cache_redis import RedisCacheStore
from llmchain.stores.state_redis import RedisRateLimitStore, RedisTicket

from .conftest import RedisProcess

pytestmark = pytest.mark.redis
OP_TIMEOUT_S, COOLDOWN_S = 0.1, 0.2
SLACK_S = 0.05


def _limiter(url: str, monkeypatch: pytest.MonkeyPatch, **options: Any) -> RateLimitMiddleware:
    monkeypatch.setenv("OUTAGE_REDIS", with_query(url, key_prefix="outage", cooldown_s=str(COOLDOWN_S)))
    options.setdefault("rpm", 10_000)
    return RateLimitMiddleware(RateLimitMiddleware.Options(
        store="redis", store_url_env="OUTAGE_REDIS", store_timeout_s=OP_TIMEOUT_S, tokenizer="heuristic",
        **options))


def _booked(server: RedisProcess) -> int:
    """Calls the limiter booked in this Redis (entries in its log)."""
    client = redis.Redis.from_url(server.url)
    try:
        return sum(int(client.zcard(name)) for name in client.scan_iter(match="outage:rl:*:log"))
    finally:
        client.close()


async def _timed(chain: Chain, timeout_s: float = 2.0) -> float:
    t0 = time.monotonic()
    await chain.acomplete("hi", timeout_s=timeout_s)
    return time.monotonic() - t0


async def _until(check: Callable[[], Any], chain: Chain, limit_s: float = 5.0) -> None:
    """Make calls until ``check()`` holds (the cool-down has to pass in real time)."""
    end = time.monotonic() + limit_s
    while not check():
        assert time.monotonic() < end, "Redis was not used again after it came back"
        await chain.acomplete("hi", timeout_s=2.0)
        await asyncio.sleep(COOLDOWN_S / 4)


def test_a_frozen_redis_costs_one_op_timeout_then_calls_go_on_locally(
        own_redis: RedisProcess, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    events: list[Event] = []
    limiter = _limiter(own_redis.url, monkeypatch)
    chain = Chain([limiter], "mock", observers=[events.append])
    store = limiter.store
    assert isinstance(store, RedisRateLimitStore)

    async def run() -> None:
        for _ in range(3):
            await chain.acomplete("hi")
        assert _booked(own_redis) == 3
        own_redis.pause()
        try:
            durations = [await _timed(chain) for _ in range(5)]
            # the first call waits out one op timeout; the rest skip Redis during the cool-down
            assert OP_TIMEOUT_S <= durations[0] < OP_TIMEOUT_S + 0.2
            assert max(durations[1:]) < OP_TIMEOUT_S
            assert not store.guard.healthy
            # a deadline shorter than the op timeout bounds the probe: the call ends on time
            await asyncio.sleep(COOLDOWN_S)
            t0 = time.monotonic()
            with pytest.raises(TimeoutExceeded) as info:
                await chain.acomplete("hi", timeout_s=0.03)
            assert info.value.phase == "deadline" and time.monotonic() - t0 < 0.03 + SLACK_S
            await asyncio.sleep(COOLDOWN_S)
            assert await _timed(chain) < OP_TIMEOUT_S + 0.2  # another failed probe, same outage
        finally:
            own_redis.resume()
        await _until(lambda: store.guard.healthy, chain)
        before = _booked(own_redis)
        await chain.acomplete("hi")
        assert _booked(own_redis) == before + 1  # booked in Redis again, replies not mixed up

    with caplog.at_level(logging.WARNING, logger="llmchain.stores"):
        asyncio.run(run())
    warnings = [r.getMessage() for r in caplog.records if r.name == "llmchain.stores"]
    assert len(warnings) == 2, warnings  # once down, once back: not once per call
    assert "unavailable" in warnings[0] and "answers again" in warnings[1]
    unavailable = [e for e in events if e.kind == "store_unavailable"]
    assert len(unavailable) >= 5 and {e.data["fallback"] for e in unavailable} == {"local"}


def test_a_killed_and_restarted_redis_is_used_again_with_its_scripts_reloaded(
        own_redis: RedisProcess, monkeypatch: pytest.MonkeyPatch) -> None:
    limiter = _limiter(own_redis.url, monkeypatch)
    chain = Chain([limiter], "mock")
    store = limiter.store
    assert isinstance(store, RedisRateLimitStore)

    def sync_call() -> float:  # the sync facade's own loop: its client must survive the outage too
        t0 = time.monotonic()
        chain.complete("hi", timeout_s=2.0)
        return time.monotonic() - t0

    sync_call()
    own_redis.kill()
    assert max(sync_call() for _ in range(3)) < OP_TIMEOUT_S + 0.2  # refused at once: local
    assert not store.guard.healthy
    own_redis.start()  # same port, empty, no scripts loaded
    end = time.monotonic() + 10  # generous: a loaded machine
    while not store.guard.healthy:
        assert time.monotonic() < end
        sync_call()
        time.sleep(COOLDOWN_S / 4)
    assert _booked(own_redis) >= 1
    chain.close()


def test_fail_policy_raises_a_clear_error_naming_the_server_without_its_password(
        own_redis: RedisProcess, monkeypatch: pytest.MonkeyPatch) -> None:
    own_redis.kill()
    url = own_redis.url.replace("redis://", "redis://:s3cret-pw@")
    limiter = _limiter(url, monkeypatch, on_unavailable="fail")
    chain = Chain([limiter], "mock")
    t0 = time.monotonic()
    with pytest.raises(StoreUnavailable) as info:
        chain.complete("hi", timeout_s=2.0)
    assert time.monotonic() - t0 < OP_TIMEOUT_S + 0.2
    error = info.value
    assert f"redis://:***@127.0.0.1:{own_redis.port}/0" in str(error) and "s3cret-pw" not in error.explain()
    assert error.retryable and error.hint is not None and "REDIS_URL" in error.hint
    with pytest.raises(StoreUnavailable, match="unavailable"):  # in the cool-down: fails fast
        chain.complete("hi", timeout_s=2.0)
    chain.close()


@pytest.fixture
def nonsense_server() -> Iterator[str]:
    """A TCP server that answers every request with an HTTP error page (not RESP)."""

    class Handler(socketserver.BaseRequestHandler):
        def handle(self) -> None:
            sock: socket.socket = self.request
            while sock.recv(4096):
                sock.sendall(b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\n\r\n")

    server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
    yield f"redis://127.0.0.1:{server.server_address[1]}/0"
    server.shutdown()
    server.server_close()


def test_a_server_answering_garbage_counts_as_unavailable(nonsense_server: str) -> None:
    settings = parse_settings(with_query(nonsense_server, op_timeout_s="0.2"))
    store = RedisRateLimitStore(settings)
    cache = RedisCacheStore(settings)

    async def run() -> None:
        res = await store.reserve("m", 0.0, 1, 0, RateLimits(requests=2), None)
        assert res.admitted and not isinstance(res.ticket, RedisTicket)  # served by the local twin
        assert not store.guard.healthy
        await cache.set("k", '{"a": 1}', 60)
        entry = await cache.get("k")
        assert entry is not None and entry.value == '{"a": 1}'  # the in-process stand-in

    asyncio.run(run())


def test_the_cache_store_falls_back_to_memory_or_raises(own_redis: RedisProcess) -> None:
    local = RedisCacheStore(parse_settings(with_query(own_redis.url, op_timeout_s="0.1")))
    failing = RedisCacheStore(parse_settings(with_query(own_redis.url, op_timeout_s="0.1",
                                                        on_unavailable="fail")))

    async def run() -> None:
        await local.set("k", '"from redis"', 60)
        own_redis.kill()
        assert (await local.get("k")) is None  # Redis's entries are out of reach...
        await local.set("k", '"local"', 60)
        entry = await local.get("k")  # ...and the stand-in serves meanwhile
        assert entry is not None and entry.value == '"local"'
        with pytest.raises(StoreUnavailable):
            await failing.get("k")

    asyncio.run(run())
