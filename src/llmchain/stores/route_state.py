"""Where the ``route`` stage keeps per-deployment state: this process's memory, or Redis.

Redis: one hash per route (``<key_prefix>:route:{<share>}``), fields ``<deployment>|<field>``;
``start`` and ``finish`` are one Lua script each (atomic across processes), ``snapshot`` one
HGETALL. The hash expires after ten idle minutes, so in-flight counts left by a killed process
do not outlive it for long. When Redis is unavailable the usual policy applies: ``"local"``
routes on in-process state meanwhile, ``"fail"`` raises ``StoreUnavailable``.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import Any, Protocol

from ..policies.routing import DeploymentState, finished, started


class RouteStateStore(Protocol):
    name: str

    async def snapshot(self, names: Sequence[str], now: float) -> dict[str, DeploymentState]: ...

    async def start(self, name: str, now: float) -> None: ...

    async def finish(self, name: str, now: float, *, latency_s: float | None, alpha: float,
                     cool_until: float | None, header_headroom: float | None) -> None: ...


class MemoryRouteState:
    name = "memory"

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._states: dict[str, DeploymentState] = {}

    def snapshot_now(self, names: Sequence[str]) -> dict[str, DeploymentState]:
        states = self._states
        return {n: states.get(n) or DeploymentState() for n in names}

    async def snapshot(self, names: Sequence[str], now: float) -> dict[str, DeploymentState]:
        return self.snapshot_now(names)

    async def start(self, name: str, now: float) -> None:
        with self._lock:
            self._states[name] = started(self._states.get(name) or DeploymentState(), now)

    async def finish(self, name: str, now: float, *, latency_s: float | None, alpha: float,
                     cool_until: float | None, header_headroom: float | None) -> None:
        with self._lock:
            self._states[name] = finished(self._states.get(name) or DeploymentState(), now,
                                          latency_s=latency_s, alpha=alpha, cool_until=cool_until,
                                          header_headroom=header_headroom)


_TTL_MS = 600_000
START = """
local f = ARGV[1]
local now = tonumber(ARGV[2])
redis.call('HINCRBY', KEYS[1], f .. '|in_flight', 1)
local load = tonumber(redis.call('HGET', KEYS[1], f .. '|load') or '0')
local at = tonumber(redis.call('HGET', KEYS[1], f .. '|load_at') or ARGV[2])
local dt = now - at
if dt < 0 then dt = 0 end
load = load * math.exp(-dt / 60) + 1
redis.call('HSET', KEYS[1], f .. '|load', string.format('%.17g', load), f .. '|load_at', ARGV[2])
redis.call('PEXPIRE', KEYS[1], ARGV[3])
return 1
"""
FINISH = """
local f = ARGV[1]
if redis.call('HINCRBY', KEYS[1], f .. '|in_flight', -1) < 0 then
  redis.call('HSET', KEYS[1], f .. '|in_flight', 0)
end
if ARGV[3] ~= '' then
  local sample, alpha = tonumber(ARGV[3]), tonumber(ARGV[4])
  local old = tonumber(redis.call('HGET', KEYS[1], f .. '|latency_s') or '')
  local new = sample
  if old then new = alpha * sample + (1 - alpha) * old end
  redis.call('HSET', KEYS[1], f .. '|latency_s', string.format('%.17g', new))
end
if ARGV[5] ~= '' then
  local old = tonumber(redis.call('HGET', KEYS[1], f .. '|cool_until') or '0')
  if tonumber(ARGV[5]) > old then redis.call('HSET', KEYS[1], f .. '|cool_until', ARGV[5]) end
end
if ARGV[6] ~= '' then
  redis.call('HSET', KEYS[1], f .. '|header_headroom', ARGV[6], f .. '|header_at', ARGV[2])
end
redis.call('PEXPIRE', KEYS[1], ARGV[7])
return 1
"""
_FIELDS = {"in_flight": int, "latency_s": float, "load": float, "load_at": float, "cool_until": float,
           "header_headroom": float, "header_at": float}


def _opt(value: float | None) -> str:
    return "" if value is None else repr(value)


class RedisRouteState:
    """Route state in Redis (see the module docstring)."""

    def __init__(self, url: str | None, share: str | None) -> None:
        from ._redis_common import RedisGuard, Script, parse_settings

        self.settings = parse_settings(url)
        self.name = self.settings.display
        self._key = f"{self.settings.key_prefix}:route:{{{share or 'default'}}}"
        self.guard = RedisGuard(self.settings, "route")
        self.local = MemoryRouteState()
        self._start, self._finish = Script(START), Script(FINISH)

    async def snapshot(self, names: Sequence[str], now: float) -> dict[str, DeploymentState]:
        from ._redis_common import LOCAL

        async def run(client: Any) -> dict[str, DeploymentState]:
            raw: dict[str, str] = await client.hgetall(self._key)
            values: dict[str, dict[str, Any]] = {n: {} for n in names}
            for field, value in raw.items():
                name, _, attr = field.rpartition("|")
                if name in values and attr in _FIELDS:
                    values[name][attr] = _FIELDS[attr](value)
            return {n: DeploymentState(**v) for n, v in values.items()}

        result = await self.guard.run("snapshot", run)
        return self.local.snapshot_now(names) if result is LOCAL else result

    async def start(self, name: str, now: float) -> None:
        from ._redis_common import LOCAL

        args = (name, repr(now), _TTL_MS)
        if await self.guard.run("start", lambda c: self._start(c, (self._key,), args)) is LOCAL:
            await self.local.start(name, now)

    async def finish(self, name: str, now: float, *, latency_s: float | None, alpha: float,
                     cool_until: float | None, header_headroom: float | None) -> None:
        from ._redis_common import LOCAL

        args = (name, repr(now), _opt(latency_s), repr(alpha), _opt(cool_until), _opt(header_headroom),
                _TTL_MS)
        result = await self.guard.run("finish", lambda c: self._finish(c, (self._key,), args), settle=True)
        if result is LOCAL:
            await self.local.finish(name, now, latency_s=latency_s, alpha=alpha, cool_until=cool_until,
                                    header_headroom=header_headroom)

    async def aclose(self) -> None:
        from ._redis_common import close_clients

        await close_clients(self.settings)


_shared_lock = threading.Lock()
_shared: dict[str, MemoryRouteState] = {}


def open_route_state(kind: str, *, share: str | None, url: str | None) -> RouteStateStore:
    if kind == "redis":
        return RedisRouteState(url, share)
    if kind != "memory":
        from .._exceptions import ConfigError

        raise ConfigError(f'unknown route store {kind!r}; available: ["memory", "redis"]')
    if share is None:
        return MemoryRouteState()
    with _shared_lock:
        return _shared.setdefault(share, MemoryRouteState())
