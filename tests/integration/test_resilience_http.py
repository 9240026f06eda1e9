"""The resilience stages over real HTTP: openai/anthropic transports ⇄ the loopback fault server.

* "Can you show your client does not hang forever?": against a server that hangs before the
  headers, hangs after them, or trickles the body, a call ends with ``TimeoutExceeded`` no later
  than its deadline + 100 ms, sync and async, and leaves no task, thread or connection behind.
* A 30 % 503 plan: retry turns it into (nearly) all successes; without retry about 30 % fail.
* A server-side request limit: without the limiter the burst provokes 429s; with it, none.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from llmchain import CallError, Chain, RateLimited, TimeoutExceeded
from llmchain._loop import LOOP
from llmchain.middleware.rate_limit import RateLimitMiddleware
from llmchain.middleware.retry import RetryMiddleware
from llmchain.middleware.timeout import TimeoutMiddleware
from llmchain.testing.fault_server import Fault, FaultServer

DEADLINE_S = 0.3
SLACK_S = 0.1

HANGS = {
    "hang_before_headers": Fault("hang_before_headers", hang_s=5),
    "hang_after_headers": Fault("hang_after_headers", hang_s=5),
    "trickle": Fault("trickle", trickle_bytes=4, trickle_interval_s=0.05),
}


def _threads() -> set[threading.Thread]:
    """Live threads, less the one-off tiktoken loader (it may finish at any moment)."""
    return {t for t in threading.enumerate() if t.name != "llmchain-tiktoken"}


@pytest.fixture
def server() -> Iterator[FaultServer]:
    with FaultServer() as running:
        yield running


def transport_for(server: FaultServer, kind: str = "openai") -> dict[str, Any]:
    if kind == "openai":
        return {"use": "openai", "base_url": server.base_url, "api_key_env": "", "model": "gpt-test"}
    return {"use": "anthropic", "base_url": server.anthropic_base_url, "api_key_env": "",
            "model": "claude-test"}


def open_connections(server: FaultServer, settle_s: float = 10.0) -> int:
    """Client connections the server still holds open, after giving closes time to arrive
    (read from the server's connection registry, which has no public accessor). Returns as soon
    as none is left; the limit is generous for a loaded machine."""
    end = time.monotonic() + settle_s
    while server._conns and time.monotonic() < end:
        time.sleep(0.01)
    return len(server._conns)


def pending_tasks() -> int:
    """Tasks left on llmchain's loop (every sync call's), asked on it."""
    async def count() -> int:
        return len(asyncio.all_tasks()) - 1  # minus this coroutine's own task

    return LOOP.run(count())


# -- 1. no hanging forever ------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["openai", "anthropic"])
@pytest.mark.parametrize("fault", list(HANGS))
def test_async_call_ends_at_its_deadline_against_a_hanging_server(
    server: FaultServer, fault: str, kind: str
) -> None:
    server.set_plan(HANGS[fault])
    chain = Chain([TimeoutMiddleware()], transport_for(server, kind), timeout_s=DEADLINE_S)
    threads = _threads()

    async def main() -> tuple[float, int, int]:
        before = len(asyncio.all_tasks())
        t0 = time.monotonic()
        with pytest.raises(TimeoutExceeded) as info:
            await chain.acomplete("hello?")
        elapsed = time.monotonic() - t0
        assert info.value.phase == "deadline"
        await chain.aclose()
        await asyncio.sleep(0)
        return elapsed, before, len(asyncio.all_tasks())

    elapsed, before, after = asyncio.run(main())
    assert elapsed <= DEADLINE_S + SLACK_S
    assert after == before
    assert open_connections(server) == 0
    assert _threads() == threads
    assert server.request_count == 1


@pytest.mark.parametrize("where", ["main-thread", "worker-thread"])
@pytest.mark.parametrize("fault", list(HANGS))
def test_sync_call_ends_at_its_deadline_against_a_hanging_server(
    server: FaultServer, fault: str, where: str
) -> None:
    server.set_plan(HANGS[fault])
    chain = Chain([TimeoutMiddleware()], transport_for(server), timeout_s=DEADLINE_S)
    threads = _threads()
    elapsed: list[float] = []

    def call() -> None:
        t0 = time.monotonic()
        with pytest.raises(TimeoutExceeded):
            chain.complete("hello?")
        elapsed.append(time.monotonic() - t0)

    if where == "main-thread":
        call()
    else:
        worker = threading.Thread(target=call)
        worker.start()
        worker.join(5)
    assert len(elapsed) == 1 and elapsed[0] <= DEADLINE_S + SLACK_S
    assert open_connections(server) == 0
    assert pending_tasks() == 0
    chain.close()
    assert _threads() == threads


def test_per_attempt_timeouts_retry_a_hang_and_still_finish_in_time(server: FaultServer) -> None:
    server.set_plan([HANGS["hang_after_headers"], HANGS["hang_before_headers"], "ok"])
    chain = Chain([RetryMiddleware(RetryMiddleware.Options(base_s=0.01, cap_s=0.01)),
                   TimeoutMiddleware(TimeoutMiddleware.Options(attempt_s=0.1))],
                  transport_for(server), timeout_s=1.0)
    t0 = time.monotonic()
    response = chain.complete("hello?")
    assert time.monotonic() - t0 < 0.5
    assert [a.outcome for a in response.attempts] == ["timeout", "timeout", "ok"]
    assert len({r.headers.get("idempotency-key") for r in server.requests}) == 1  # same key each try
    chain.close()


# -- 6. a flaky provider and a rate-limited one --------------------------------------------


async def _run_many(chain: Chain, n: int, concurrency: int, **params: Any) -> list[str]:
    gate = asyncio.Semaphore(concurrency)

    async def one(i: int) -> str:
        async with gate:
            try:
                await chain.acomplete(f"question {i}", **params)
            except CallError as exc:
                return type(exc).__name__ + (":local" if getattr(exc, "status_code", 0) is None else "")
            return "ok"

    try:
        return list(await asyncio.gather(*(one(i) for i in range(n))))
    finally:
        await chain.aclose()


@pytest.mark.parametrize("retry", [False, True], ids=["no-retry", "retry"])
def test_thirty_percent_503s(retry: bool) -> None:
    with FaultServer({"503": 0.3}, seed=4) as server:
        stages: list[Any] = [RetryMiddleware(RetryMiddleware.Options(
            max_attempts=4, base_s=0.005, cap_s=0.02, budget_ratio=1.0))] if retry else []
        outcomes = asyncio.run(_run_many(Chain(stages, transport_for(server), timeout_s=5), 60, 8))
        served_503 = sum(r.fault == "503" for r in server.requests)
    if retry:
        assert outcomes.count("ok") >= 58  # P(4 failures in a row) = 0.3**4 < 1 %
        assert served_503 >= 15
    else:
        assert 8 <= outcomes.count("ProviderError") <= 30  # about 30 % of 60
        assert outcomes.count("ok") + outcomes.count("ProviderError") == 60


def test_without_the_limiter_a_burst_provokes_429s() -> None:
    with FaultServer(rpm_limit=20) as server:
        outcomes = asyncio.run(_run_many(Chain([], transport_for(server), timeout_s=5), 30, 5))
        assert server.violations == 10
    assert outcomes.count("ok") == 20 and outcomes.count("RateLimited") == 10


def test_with_the_limiter_on_no_429_is_ever_provoked() -> None:
    with FaultServer(rpm_limit=20) as server:
        limiter = RateLimitMiddleware(RateLimitMiddleware.Options(  # a whole window at once
            rpm=20, tokenizer="heuristic", burst_s=None))
        outcomes = asyncio.run(_run_many(Chain([limiter], transport_for(server), timeout_s=0.5), 30, 5))
        assert server.violations == 0
        assert server.request_count == 20
    assert outcomes.count("ok") == 20 and outcomes.count("RateLimited:local") == 10


def test_the_adaptive_limiter_learns_the_limit_from_headers_and_provokes_no_429() -> None:
    with FaultServer(rpm_limit=15) as server:
        limiter = RateLimitMiddleware(RateLimitMiddleware.Options(  # no rpm set; window semantics
            tokenizer="heuristic", burst_s=None))
        outcomes = asyncio.run(_run_many(Chain([limiter], transport_for(server), timeout_s=0.5), 25, 1))
        assert server.violations == 0
    learned = limiter.limits_for("default")  # 15 per minute, from limit, remaining and reset
    assert learned.requests / learned.period_s == pytest.approx(15 / 60, rel=0.02)
    assert outcomes.count("ok") == 15 and outcomes.count("RateLimited:local") == 10


def test_tokens_per_minute_are_respected_with_real_usage_reconciled() -> None:
    with FaultServer(tpm_limit=400) as server:
        outcomes = asyncio.run(_run_many(Chain([], transport_for(server), timeout_s=0.5), 100, 4,
                                         max_tokens=40))
        assert server.violations > 0  # ~6 real tokens a call: the 400-token bucket runs dry
    with FaultServer(tpm_limit=400) as server:
        limiter = RateLimitMiddleware(RateLimitMiddleware.Options(tpm=400, tokenizer="heuristic"))
        chain = Chain([limiter], transport_for(server), timeout_s=0.5)
        outcomes = asyncio.run(_run_many(chain, 100, 4, max_tokens=40))
        assert server.violations == 0
    # each call books ~50 tokens but really uses ~6: reconciling lets far more than 400/50 through
    assert outcomes.count("ok") > 3 * (400 // 50)
    assert outcomes.count("RateLimited:local") > 0 and set(outcomes) == {"ok", "RateLimited:local"}


def test_a_provider_429_pauses_the_limiter_for_everyone() -> None:
    plan = [Fault("rate_limited", status=429, retry_after=0.2)] + ["ok"] * 5
    with FaultServer(plan) as server:
        limiter = RateLimitMiddleware(RateLimitMiddleware.Options(tokenizer="heuristic"))
        chain = Chain([limiter], transport_for(server), timeout_s=2)
        with pytest.raises(RateLimited):
            chain.complete("first")
        t0 = time.monotonic()
        chain.complete("second")  # waits out the provider's Retry-After instead of hitting it
        assert time.monotonic() - t0 >= 0.15
        assert [r.fault for r in server.requests] == ["429", "ok"]
        chain.close()
