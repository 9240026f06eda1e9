"""The Redis rate-limit and breaker stores: the Lua scripts against the Python policies they port,
state shared between workers, configuration by name, and one round trip per reservation."""

from __future__ import annotations

import asyncio
import itertools
import math
import threading
import uuid
from pathlib import Path
from typing import Any

import pytest
import redis
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from llmchain import (
    Chain,
    CircuitOpen,
    ConfigError,
    GaveUp,
    LLMRequest,
    LLMResponse,
    Message,
    ProviderError,
    Usage,
)
from llmchain.middleware.circuit_breaker import CircuitBreakerMiddleware
from llmchain.middleware.rate_limit import RateLimitMiddleware
from llmchain.policies.admission import AdmissionLog, RateLimits
from llmchain.policies.breaker import BreakerConfig, BreakerPolicy, Permit
from llmchain.stores._redis_common import RedisSettings, Script, client_for, parse_settings
from llmchain.stores._shared import with_query
from llmchain.stores.state_redis import RedisBreakerStore, RedisRateLimitStore, RedisTicket
from llmchain.testing import FakeClock, MockReply, MockTransport

pytestmark = pytest.mark.redis

# discrete steps make boundaries (an entry leaving the window exactly now) likely
STEPS = st.one_of(st.sampled_from([0.0, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0]), st.floats(0, 30))
RESERVE = st.tuples(st.just("reserve"), STEPS, st.integers(1, 2), st.integers(0, 80),
                    st.one_of(st.none(), st.sampled_from([0.0, 1.0, 9.0, 60.0])))
RECONCILE = st.tuples(st.just("reconcile"), st.integers(0, 40), st.integers(0, 2), st.integers(0, 80))
PAUSE = st.tuples(st.just("pause"), STEPS, st.sampled_from([0.5, 1.0, 10.0, 40.0]))
LIMITS = st.builds(RateLimits, st.one_of(st.none(), st.integers(1, 5)),
                   st.one_of(st.none(), st.integers(80, 200)), st.sampled_from([1.0, 10.0, 60.0]),
                   st.sampled_from([None, 1.0, 5.0]))


_examples = itertools.count()


def _fresh_settings(redis_url: str, prefix: str) -> RedisSettings:
    """Settings under a prefix of one Hypothesis example's own (deleted with the test's prefix)."""
    return parse_settings(with_query(redis_url, key_prefix=f"{prefix}-{next(_examples)}"))


EXAMPLES = settings(max_examples=60, deadline=None,
                    suppress_health_check=[HealthCheck.function_scoped_fixture])


@EXAMPLES
@given(limits=LIMITS, ops=st.lists(st.one_of(RESERVE, RESERVE, RECONCILE, PAUSE), max_size=30))
def test_the_lua_log_admits_exactly_like_the_python_log(
        redis_url: str, prefix: str, limits: RateLimits, ops: list[Any]) -> None:
    store = RedisRateLimitStore(_fresh_settings(redis_url, prefix), time_base="caller")
    model = AdmissionLog()

    async def run() -> None:
        now, tickets = 1000.0, []
        for op in ops:
            if op[0] == "reserve":
                _, dt, requests, tokens, max_wait = op
                now += dt
                got = await store.reserve("k", now, requests, tokens, limits, max_wait)
                want = model.reserve(now, requests, tokens, limits, max_wait)
                assert (got.admitted, got.reason) == (want.admitted, want.reason)
                assert got.wait_s == pytest.approx(want.wait_s, abs=1e-6) or math.isinf(want.wait_s)
                if want.admitted:
                    assert isinstance(got.ticket, RedisTicket)
                    tickets.append((got.ticket, want.ticket))
            elif op[0] == "reconcile" and tickets:
                _, index, requests, tokens = op
                mine, theirs = tickets[index % len(tickets)]
                await store.reconcile("k", mine, requests=requests, tokens=tokens)
                model.reconcile(theirs, requests, tokens)
            elif op[0] == "pause":
                _, dt, seconds = op
                now += dt
                await store.pause("k", now, seconds)
                model.pause(now + seconds)
                assert await store.paused_for("k", now) == pytest.approx(max(0.0, model.paused_until - now))

    asyncio.run(run())


OUTCOMES = st.sampled_from([True, True, False, None])
# a whole call (acquire, then record its own permit) makes probe cycles common; lone acquires
# leave permits outstanding, recorded later (or stale, after a state change) by index from the end
CALL = st.tuples(st.just("call"), STEPS, OUTCOMES, st.sampled_from([0.0, 1.0, 5.0]))
ACQUIRE = st.tuples(st.just("acquire"), STEPS)
RECORD = st.tuples(st.just("record"), st.integers(0, 10), OUTCOMES, st.sampled_from([0.0, 1.0]))
BREAKERS = st.builds(BreakerConfig, st.sampled_from([0.3, 0.5, 1.0]), st.integers(1, 4),
                     st.integers(4, 6), st.sampled_from([2.5, 5.0, 60.0]), st.sampled_from([3.0, 30.0]))


@EXAMPLES
@given(config=BREAKERS, ops=st.lists(st.one_of(CALL, CALL, ACQUIRE, RECORD), max_size=40))
# an outcome exactly window_s old has left the window: one success alone cannot open it
@example(config=BreakerConfig(0.5, 2, 10, 5.0, 3.0), ops=[("call", 0.0, True, 0.0), ("call", 5.0, False, 0.0)])
def test_the_lua_breaker_moves_exactly_like_the_python_breaker(
        redis_url: str, prefix: str, config: BreakerConfig, ops: list[Any]) -> None:
    # an endless probe lease: the Python breaker has no lease (its probe cannot die alone)
    store = RedisBreakerStore(_fresh_settings(redis_url, prefix), time_base="caller", probe_lease_s=1e9)
    model = BreakerPolicy(config)

    async def acquire(now: float) -> Permit:
        got, want = await store.acquire("k", now, config), model.acquire(now)
        assert got._replace(retry_after=None) == want._replace(retry_after=None)
        assert got.retry_after == pytest.approx(want.retry_after, abs=1e-6)
        return got

    async def record(now: float, permit: Permit, failed: bool | None) -> None:
        assert await store.record("k", now, permit, failed, config) == model.record(now, permit, failed)
        assert await store.state("k", now, config) == model.state

    async def run() -> None:
        now, permits = 0.0, []
        for op in ops:
            if op[0] == "call":
                now += op[1]
                permit = await acquire(now)
                now += op[3]
                await record(now, permit, op[2])
            elif op[0] == "acquire":
                now += op[1]
                permits.append(await acquire(now))
            elif permits:
                now += op[3]
                await record(now, permits[-1 - op[1] % len(permits)], op[2])

    asyncio.run(run())


def test_a_dead_probe_holder_loses_its_lease(settings: RedisSettings) -> None:
    store = RedisBreakerStore(settings, time_base="caller", probe_lease_s=5.0)
    config = BreakerConfig(failure_rate=0.5, min_calls=1, window_calls=4, open_s=10.0)

    async def run() -> None:
        permit = await store.acquire("k", 0.0, config)
        assert await store.record("k", 0.0, permit, True, config) == "open"
        probe = await store.acquire("k", 10.0, config)  # this worker dies with its probe
        assert probe.probe and not (await store.acquire("k", 14.0, config)).allowed
        assert (await store.acquire("k", 15.5, config)).probe  # lease over: another worker probes

    asyncio.run(run())


def test_workers_on_their_own_loops_and_threads_share_one_limit(settings: RedisSettings) -> None:
    """Server time, several event loops (one client each), one budget: exactly the limit goes."""
    store = RedisRateLimitStore(settings, share="team")
    limits = RateLimits(requests=25, period_s=60.0)
    admitted: list[int] = []

    def worker() -> None:
        async def run() -> int:
            results = [await store.reserve("m", 0.0, 1, 0, limits, 0.0) for _ in range(20)]
            return sum(r.admitted for r in results)

        admitted.append(asyncio.run(run()))

    threads = [threading.Thread(target=worker) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sum(admitted) == 25


def test_a_script_the_server_does_not_know_is_sent_once_then_run_by_sha(settings: RedisSettings) -> None:
    """NOSCRIPT (a restarted or flushed server) costs one EVAL, which loads the script again."""
    script = Script(f"-- {uuid.uuid4().hex}\nreturn ARGV[1]")  # never loaded anywhere
    commands: list[str] = []

    async def run() -> None:
        client = client_for(settings)
        original = client.execute_command

        async def counting(*args: Any, **kwargs: Any) -> Any:
            commands.append(str(args[0]))
            return await original(*args, **kwargs)

        client.execute_command = counting  # type: ignore[method-assign]
        try:
            assert [await script(client, (), ("x",)) for _ in range(2)] == ["x", "x"]
        finally:
            del client.execute_command

    asyncio.run(run())
    assert commands == ["EVALSHA", "EVAL", "EVALSHA"]


def test_idle_keys_expire_once_they_cannot_matter(settings: RedisSettings, redis_url: str) -> None:
    store = RedisRateLimitStore(settings)
    asyncio.run(store.reserve("m", 0.0, 1, 0, RateLimits(requests=5, period_s=10.0), None))
    client = redis.Redis.from_url(redis_url)
    names = list(client.scan_iter(match=f"{settings.key_prefix}*"))
    assert len(names) == 2 and all(10_000 < client.pttl(n) <= 11_000 for n in names)


def test_an_over_long_ask_pauses_no_worker_and_a_capped_pause_expires_with_the_cap(
        settings: RedisSettings, redis_url: str) -> None:
    from llmchain import RateLimited
    clock = FakeClock()
    stages = [RateLimitMiddleware(clock=clock, store=RedisRateLimitStore(settings))
              for _ in range(2)]  # no limit: the state key holds only the pause
    asks = [86400.0, 60.0]  # a day (over max_pause_s: nobody pauses), then a minute (the cap)
    calls = 0

    async def provider(request: LLMRequest) -> LLMResponse:
        nonlocal calls
        calls += 1
        if calls in (1, 3):
            raise RateLimited("429", retry_after=asks.pop(0))
        return LLMResponse(text="ok", usage=Usage())

    async def run() -> None:
        request = LLMRequest(messages=(Message(role="user", content="x"),), model="m")
        with pytest.raises(RateLimited) as info:
            await stages[0].handle(request, provider)
        assert info.value.server_asked_s == 86400
        assert (await stages[1].handle(request, provider)).text == "ok"  # not paused
        assert await stages[1].store.paused_for("m", clock.now()) == 0
        with pytest.raises(RateLimited):
            await stages[0].handle(request, provider)  # asks 60 s: every worker pauses
        assert await stages[1].store.paused_for("m", clock.now()) == pytest.approx(60, abs=1)
        for stage in stages:
            await stage.store.aclose()  # type: ignore[attr-defined]

    asyncio.run(run())
    client = redis.Redis.from_url(redis_url)
    names = [n for n in client.scan_iter(match=f"{settings.key_prefix}*") if n.endswith(b":state")]
    assert names and all(0 < client.pttl(n) <= 61_000 for n in names)  # the TTL follows the cap


# -- the stages, configured by name -----------------------------------------------------------


def _toml(tmp_path: Path, body: str) -> Path:
    path = tmp_path / "chain.toml"
    path.write_text('[transport]\nuse = "mock"\n' + body)
    return path


def test_two_chains_built_from_toml_share_one_redis_budget(
        tmp_path: Path, redis_url: str, prefix: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TEAM_REDIS", with_query(redis_url, key_prefix=prefix))
    config = _toml(tmp_path, '[[stages]]\nuse = "rate_limit"\nrpm = 3\nstore = "redis"\n'
                             'store_url_env = "TEAM_REDIS"\nshare = "team"\nburst_s = 0\n')
    first, second = Chain.from_config(config), Chain.from_config(config)
    sent = [chain.complete("hi", timeout_s=0.5).text for chain in (first, second, first)]
    assert sent == ["hi"] * 3
    with pytest.raises(Exception, match="local rate limiter"):
        second.complete("hi", timeout_s=0.5)  # the 4th call in the window, whichever chain sends it
    first.close()
    second.close()


def test_the_redis_url_comes_from_the_environment_never_from_the_file(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ConfigError, match=r"holds a password.*store_url_env") as info:
        RateLimitMiddleware(RateLimitMiddleware.Options(store="redis", store_url="redis://:hunter22@db:6379/0"))
    assert "hunter22" not in str(info.value)
    monkeypatch.delenv("NO_SUCH_REDIS", raising=False)
    with pytest.raises(ConfigError, match="set the environment variable NO_SUCH_REDIS"):
        CircuitBreakerMiddleware(CircuitBreakerMiddleware.Options(store="redis", store_url_env="NO_SUCH_REDIS"))
    monkeypatch.setenv("A_REDIS", "redis://:hunter22@127.0.0.1:1/0")
    stage = RateLimitMiddleware(RateLimitMiddleware.Options(store="redis", store_url_env="A_REDIS"))
    assert stage.store.name == "redis://:***@127.0.0.1:1/0"  # llmchain's own URL parameters removed
    assert "hunter22" not in Chain([stage]).describe()
    assert isinstance(stage.store, RedisRateLimitStore)
    assert "hunter22" not in repr(stage.store) + repr(stage.store.settings) + repr(stage.store.guard)


def test_a_breaker_opened_by_one_worker_fails_fast_in_another(
        redis_url: str, prefix: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REDIS_URL", with_query(redis_url, key_prefix=prefix))
    stage = {"use": "circuit_breaker", "store": "redis", "share": "api", "min_calls": 2, "window_calls": 2}
    sick = Chain([stage], MockTransport.scripted(*[MockReply(error="server_error")] * 2))
    healthy = MockTransport.scripted()
    other = Chain([stage], healthy)
    for _ in range(2):
        with pytest.raises(ProviderError):
            sick.complete("q")
    with pytest.raises(CircuitOpen, match="is open"):
        other.complete("q")
    assert not healthy.calls
    sick.close()
    other.close()


def test_one_round_trip_per_reservation(
        redis_url: str, prefix: str, monkeypatch: pytest.MonkeyPatch) -> None:
    commands: list[str] = []
    original: Any = redis.asyncio.Redis.execute_command

    async def counting(self: Any, *args: Any, **kwargs: Any) -> Any:
        commands.append(str(args[0]))
        return await original(self, *args, **kwargs)

    monkeypatch.setattr(redis.asyncio.Redis, "execute_command", counting)
    monkeypatch.setenv("REDIS_URL", with_query(redis_url, key_prefix=prefix))
    limiter = RateLimitMiddleware(RateLimitMiddleware.Options(rpm=100, store="redis", burst_s=None))
    breaker = CircuitBreakerMiddleware(CircuitBreakerMiddleware.Options(store="redis"))
    chain = Chain([breaker, limiter])

    async def run() -> None:
        await chain.acomplete("warm up")  # loads the scripts
        commands.clear()
        for _ in range(10):
            await chain.acomplete("hi")

    asyncio.run(run())
    assert commands.count("EVALSHA") == 30 and len(commands) == 30  # reserve + acquire + record


def test_local_tickets_and_permits_settle_in_the_local_twin() -> None:
    settings = parse_settings("redis://127.0.0.1:1/0?op_timeout_s=0.05")  # nothing listens there
    limiter, breaker = RedisRateLimitStore(settings), RedisBreakerStore(settings)
    config = BreakerConfig(failure_rate=0.5, min_calls=1, window_calls=2)

    async def run() -> None:
        res = await limiter.reserve("m", 0.0, 1, 100, RateLimits(tokens=150), None)
        assert res.admitted and not isinstance(res.ticket, RedisTicket)
        await limiter.reconcile("m", res.ticket, requests=1, tokens=10)
        assert (await limiter.reserve("m", 0.0, 1, 100, RateLimits(tokens=150), 0.0)).admitted
        permit = await breaker.acquire("m", 0.0, config)
        assert isinstance(permit, Permit) and permit.allowed
        assert await breaker.record("m", 0.0, permit, True, config) == "open"

    asyncio.run(run())


def test_a_call_ending_at_its_deadline_still_settles_its_booking(
        settings: RedisSettings, redis_url: str) -> None:
    """Bookkeeping after the answer (reconcile) never turns a success into a timeout."""
    clock = FakeClock()
    stage = RateLimitMiddleware(RateLimitMiddleware.Options(tpm=10_000, tokenizer="heuristic"), clock=clock,
                                store=RedisRateLimitStore(settings))
    request = LLMRequest(messages=(Message(role="user", content="hi"),), deadline=clock.now() + 5, max_tokens=100)

    async def answer_at_the_deadline(req: LLMRequest) -> LLMResponse:
        clock.advance(5.0)  # the provider answered with no time to spare
        return LLMResponse(text="ok", usage=Usage(input_tokens=7, output_tokens=3))

    assert asyncio.run(stage.handle(request, answer_at_the_deadline)).text == "ok"
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    state = next(n for n in client.scan_iter(match=f"{settings.key_prefix}:rl:*:state"))
    assert client.hget(state, "t") == "10"  # the booking was replaced by the real usage
    client.close()


@EXAMPLES
@given(ops=st.lists(st.tuples(st.sampled_from(["1", "0", ""]), STEPS), max_size=40))
def test_the_lua_throttle_counts_exactly_like_the_python_throttle(
        redis_url: str, prefix: str, ops: list[tuple[str, float]]) -> None:
    from llmchain.policies.budget import AdaptiveThrottle
    from llmchain.stores.state_redis import RedisThrottleStore
    store = RedisThrottleStore(_fresh_settings(redis_url, prefix), time_base="caller")
    model = AdaptiveThrottle(k=2.0, window_s=60.0)

    async def run() -> None:
        now = 1000.0
        for accepted, dt in ops:
            now += dt
            if accepted:
                await store.record("m", now, accepted == "1", 2.0, 60.0)
                model.record(now, accepted == "1")
            assert await store.totals("m", now, 2.0, 60.0) == model.totals(now)
        await store.aclose()

    asyncio.run(run())


def test_an_outage_seen_by_one_worker_throttles_retries_in_another(settings: RedisSettings) -> None:
    from llmchain.middleware.retry import RetryMiddleware
    from llmchain.stores.state_redis import RedisThrottleStore
    clock = FakeClock()
    stages = []
    for _ in range(2):
        stage = RetryMiddleware(RetryMiddleware.Options(max_attempts=3, throttle_min_attempts=0),
                                clock=clock, rng=lambda: 0.0)
        stage.throttle_store, stage._memory_throttle = RedisThrottleStore(settings), None
        stages.append(stage)
    attempts = 0

    async def down(request: LLMRequest) -> LLMResponse:
        nonlocal attempts
        attempts += 1
        raise ProviderError("HTTP 503", status_code=503)

    async def run() -> None:
        for _ in range(3):
            with pytest.raises(GaveUp):
                await stages[0].handle(LLMRequest(messages=(Message(role="user", content="x"),)), down)
        before = attempts
        with pytest.raises(GaveUp, match="throttling"):
            await stages[1].handle(LLMRequest(messages=(Message(role="user", content="x"),)), down)
        assert attempts == before + 1  # worker two saw worker one's failures: no retry
        for stage in stages:
            await stage.throttle_store.aclose()  # type: ignore[union-attr]

    asyncio.run(run())


def test_resume_ends_a_pause_unless_a_longer_ask_extended_it(settings: RedisSettings) -> None:
    store = RedisRateLimitStore(settings)  # the server's clock: the times passed are ignored

    async def run() -> None:
        await store.pause("m", 0.0, 5.0)
        await store.resume("m", 0.0, 5.0)
        assert await store.paused_for("m", 0.0) == 0
        await store.pause("m", 0.0, 5.0)
        await store.pause("m", 0.0, 30.0)  # another worker's longer ask
        await store.resume("m", 0.0, 5.0)
        assert await store.paused_for("m", 0.0) == pytest.approx(30, abs=1)
        await store.aclose()

    asyncio.run(run())
