"""Rate-limit and circuit-breaker state in Redis, shared by every worker that uses the same server.

``store = "redis"`` in the ``rate_limit`` / ``circuit_breaker`` stages (the name table is in
``stores.base``). Each operation is one Lua script (``stores._lua``), one round trip, atomic
across processes: the sliding-window log with FIFO reservations, reconciliation to real usage
and the pauses that 429s and rate-limit headers cause are the same for all workers, as is the
breaker state. Times come from the Redis server's clock, so workers on different machines agree.

Keys: ``<key_prefix>:rl:{<share>:<key>}:log|state`` and ``<key_prefix>:cb:{<share>:<key>}:state|outcomes``
(``share`` defaults to ``default``; the braces keep one limiter's keys in one cluster slot).
They expire once nothing in them can matter.

When Redis is unavailable the policy of ``_redis_common`` applies: ``on_unavailable = "local"``
carries on with an in-process twin of the store (``stores.memory``): tickets and permits
remember which store issued them, so each is settled where it was made. During an outage each
worker then enforces the limits on its own (N workers may together send up to N times the
limit); the provider's 429s, followed by the stage, remain the backstop.
"""

from __future__ import annotations

import math
from typing import Any, Literal

from ..policies.admission import RateLimits, Reservation, Ticket
from ..policies.breaker import BreakerConfig, BreakerState, Permit
from . import _lua
from ._redis_common import LOCAL, RedisGuard, RedisSettings, Script, close_clients, parse_settings
from .memory import MemoryBreakerStore, MemoryRateLimitStore, MemoryThrottleStore

_RESERVE, _RECONCILE = Script(_lua.RESERVE), Script(_lua.RECONCILE)
_PAUSE, _PAUSED_FOR = Script(_lua.PAUSE), Script(_lua.PAUSED_FOR)
_PAUSE_INFO, _RESUME = Script(_lua.PAUSE_INFO), Script(_lua.RESUME)
_ACQUIRE, _RECORD, _STATE = Script(_lua.ACQUIRE), Script(_lua.RECORD), Script(_lua.STATE)
_THROTTLE = Script(_lua.THROTTLE)
_THROTTLE_BUCKETS = 12  # as policies.budget.AdaptiveThrottle
TimeBase = Literal["server", "caller"]
_STATES: dict[str, BreakerState] = {"closed": "closed", "open": "open", "half_open": "half_open"}


class RedisTicket:
    """An admission booked in Redis: its log member and time (the score it was booked at)."""

    __slots__ = ("at", "member")

    def __init__(self, member: str, at: str) -> None:
        self.member = member
        self.at = at

    def __repr__(self) -> str:
        return f"RedisTicket({self.member!r}, at={self.at})"


class LocalPermit(Permit):
    """A breaker permit issued by the in-process twin during an outage."""

    __slots__ = ()


def _limit(value: int | None) -> str:
    return "" if value is None else str(value)


class RedisRateLimitStore:
    """``RateLimitStore`` in Redis (see the module docstring)."""

    def __init__(self, settings: RedisSettings, share: str | None = None, *,
                 time_base: TimeBase = "server") -> None:
        self.settings = settings
        self.name = settings.display
        self._prefix = f"{settings.key_prefix}:rl:{{{share or 'default'}:"
        self._server_time = time_base == "server"  # "caller": the caller's `now` (tests)
        self.guard = RedisGuard(settings, "rate_limit")
        self.local = MemoryRateLimitStore()

    def _keys(self, key: str) -> tuple[str, str]:
        base = f"{self._prefix}{key}}}"
        return f"{base}:log", f"{base}:state"

    def _now(self, now: float) -> str:
        return "" if self._server_time else repr(now)

    async def reserve(self, key: str, now: float, requests: int, tokens: int, limits: RateLimits,
                      max_wait_s: float | None) -> Reservation:
        args = (self._now(now), requests, tokens, _limit(limits.requests), _limit(limits.tokens),
                repr(limits.period_s), "" if max_wait_s is None else repr(max_wait_s),
                "" if limits.burst_s is None else repr(limits.burst_s))
        keys = self._keys(key)

        async def run(client: Any) -> Reservation:
            reply = await _RESERVE(client, keys, args)
            if int(reply[0]) == 1:
                return Reservation(True, float(reply[1]), RedisTicket(str(reply[2]), str(reply[3])))
            asked = float(reply[3]) if len(reply) > 3 and reply[3] else None
            return Reservation(False, math.inf if reply[1] == "inf" else float(reply[1]), None,
                               str(reply[2]), asked)

        result = await self.guard.run("reserve", run)
        if result is LOCAL:
            return self.local.reserve_now(key, now, requests, tokens, limits, max_wait_s)
        return result

    async def reconcile(self, key: str, ticket: object, *, requests: int, tokens: int) -> None:
        if type(ticket) is Ticket:  # booked locally during an outage
            self.local.reconcile_now(key, ticket, requests=requests, tokens=tokens)
            return
        if not isinstance(ticket, RedisTicket):
            return
        keys, args = self._keys(key), (ticket.member, ticket.at, requests, tokens)

        async def run(client: Any) -> None:
            member = await _RECONCILE(client, keys, args)
            if member:
                ticket.member = str(member)

        await self.guard.run("reconcile", run, settle=True)  # LOCAL: the estimate stays booked

    async def pause(self, key: str, now: float, seconds: float, asked_s: float | None = None) -> None:
        keys = self._keys(key)[1:]
        args = (self._now(now), repr(seconds), "" if asked_s is None else repr(asked_s))
        # the twin pauses too: it serves this process if Redis goes away during the pause
        await self.local.pause(key, now, seconds, asked_s)
        await self.guard.run("pause", lambda client: _PAUSE(client, keys, args), settle=True)

    async def resume(self, key: str, now: float, seconds: float) -> None:
        keys, args = self._keys(key)[1:], (self._now(now), repr(seconds))
        await self.local.resume(key, now, seconds)
        await self.guard.run("resume", lambda client: _RESUME(client, keys, args), settle=True)

    async def paused_for(self, key: str, now: float) -> float:
        keys, args = self._keys(key)[1:], (self._now(now),)

        async def run(client: Any) -> float:
            return float(await _PAUSED_FOR(client, keys, args))

        result = await self.guard.run("paused_for", run)
        return await self.local.paused_for(key, now) if result is LOCAL else result

    async def pause_info(self, key: str, now: float) -> tuple[float, float | None]:
        keys, args = self._keys(key)[1:], (self._now(now),)

        async def run(client: Any) -> tuple[float, float | None]:
            left, asked = await _PAUSE_INFO(client, keys, args)
            return float(left), float(asked) if asked else None

        result = await self.guard.run("pause_info", run)
        if result is LOCAL:
            return await self.local.pause_info(key, now)
        info: tuple[float, float | None] = result
        return info

    async def aclose(self) -> None:
        await close_clients(self.settings)

    def __repr__(self) -> str:
        return f"RedisRateLimitStore({self.name}, prefix={self._prefix!r})"


class RedisBreakerStore:
    """``BreakerStore`` in Redis (see the module docstring).

    A half-open probe is a lease of ``probe_lease_s`` (default: the config's ``open_s``): if
    the worker holding it dies, another caller probes once it runs out.
    """

    def __init__(self, settings: RedisSettings, share: str | None = None, *,
                 time_base: TimeBase = "server", probe_lease_s: float | None = None) -> None:
        self.settings = settings
        self.name = settings.display
        self._prefix = f"{settings.key_prefix}:cb:{{{share or 'default'}:"
        self._server_time = time_base == "server"
        self._probe_lease_s = probe_lease_s
        self.guard = RedisGuard(settings, "circuit_breaker")
        self.local = MemoryBreakerStore()

    def _keys(self, key: str) -> tuple[str, str]:
        base = f"{self._prefix}{key}}}"
        return f"{base}:state", f"{base}:outcomes"

    def _now(self, now: float) -> str:
        return "" if self._server_time else repr(now)

    @staticmethod
    def _ttl_ms(config: BreakerConfig) -> int:
        return math.ceil(2000 * max(config.window_s, config.open_s)) + 60_000

    async def acquire(self, key: str, now: float, config: BreakerConfig) -> Permit:
        lease = self._probe_lease_s if self._probe_lease_s is not None else config.open_s
        keys = self._keys(key)
        args = (self._now(now), repr(config.open_s), repr(lease), self._ttl_ms(config))

        async def run(client: Any) -> Permit:
            allowed, probe, gen, retry_after, state, changed = await _ACQUIRE(client, keys, args)
            return Permit(int(allowed) == 1, int(probe) == 1, int(gen),
                          float(retry_after) if retry_after else None, _STATES[state], int(changed) == 1)

        result = await self.guard.run("acquire", run)
        if result is LOCAL:
            return LocalPermit(*self.local.acquire_now(key, now, config))
        return result

    async def record(self, key: str, now: float, permit: Permit, failed: bool | None,
                     config: BreakerConfig) -> BreakerState | None:
        if isinstance(permit, LocalPermit):
            return self.local.record_now(key, now, Permit(*permit), failed, config)
        keys = self._keys(key)
        args = (self._now(now), int(permit.allowed), int(permit.probe), permit.generation,
                "" if failed is None else str(int(failed)), repr(config.failure_rate),
                config.min_calls, config.window_calls, repr(config.window_s), self._ttl_ms(config))

        async def run(client: Any) -> BreakerState | None:
            state = await _RECORD(client, keys, args)
            return _STATES[state] if state else None

        result = await self.guard.run("record", run, settle=True)
        return None if result is LOCAL else result  # a Redis permit's outcome is lost in an outage

    async def state(self, key: str, now: float, config: BreakerConfig) -> BreakerState:
        keys = self._keys(key)

        async def run(client: Any) -> BreakerState:
            return _STATES[await _STATE(client, keys, ())]

        result = await self.guard.run("state", run)
        return await self.local.state(key, now, config) if result is LOCAL else result

    async def aclose(self) -> None:
        await close_clients(self.settings)

    def __repr__(self) -> str:
        return f"RedisBreakerStore({self.name}, prefix={self._prefix!r})"


class RedisThrottleStore:
    """``ThrottleStore`` in Redis: the retry stage's adaptive-throttling counters, shared by
    every worker (key ``<key_prefix>:rt:{<share>:<key>}``, expiring a window after the last
    attempt). During a Redis outage each worker counts on its own (``local``)."""

    def __init__(self, settings: RedisSettings, share: str | None = None, *,
                 time_base: TimeBase = "server") -> None:
        self.settings = settings
        self.name = settings.display
        self._prefix = f"{settings.key_prefix}:rt:{{{share or 'default'}:"
        self._server_time = time_base == "server"
        self.guard = RedisGuard(settings, "retry")
        self.local = MemoryThrottleStore()

    async def _run(self, op: str, key: str, now: float, accepted: str, window_s: float) -> Any:
        keys = (f"{self._prefix}{key}}}",)
        args = ("" if self._server_time else repr(now), repr(window_s / _THROTTLE_BUCKETS),
                _THROTTLE_BUCKETS, accepted)

        async def run(client: Any) -> tuple[int, int]:
            requests, accepts = await _THROTTLE(client, keys, args)
            return int(requests), int(accepts)

        return await self.guard.run(op, run, settle=op == "record")

    async def record(self, key: str, now: float, accepted: bool, k: float, window_s: float) -> None:
        if await self._run("record", key, now, "1" if accepted else "0", window_s) is LOCAL:
            await self.local.record(key, now, accepted, k, window_s)

    async def totals(self, key: str, now: float, k: float, window_s: float) -> tuple[int, int]:
        result = await self._run("totals", key, now, "", window_s)
        if result is LOCAL:
            return await self.local.totals(key, now, k, window_s)
        totals: tuple[int, int] = result
        return totals

    async def aclose(self) -> None:
        await close_clients(self.settings)

    def __repr__(self) -> str:
        return f"RedisThrottleStore({self.name}, prefix={self._prefix!r})"


def open_throttle_store(*, share: str | None = None, url: str | None = None) -> RedisThrottleStore:
    """Factory named by ``stores.base.THROTTLE_STORES["redis"]``."""
    return RedisThrottleStore(parse_settings(url), share)


def open_rate_limit_store(*, share: str | None = None, url: str | None = None) -> RedisRateLimitStore:
    """Factory named by ``stores.base.RATE_LIMIT_STORES["redis"]``."""
    return RedisRateLimitStore(parse_settings(url), share)


def open_breaker_store(*, share: str | None = None, url: str | None = None) -> RedisBreakerStore:
    """Factory named by ``stores.base.BREAKER_STORES["redis"]``."""
    return RedisBreakerStore(parse_settings(url), share)
