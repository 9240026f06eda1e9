"""Cache store in Redis: one string per entry, shared by every worker using the same server.

``store = "redis"`` in the cache stage (the name table is in ``stores.cache_base``). Each entry
is ``<key_prefix>:cache:{<key>}`` holding a one-line header (format, created-at and expiry,
wall-clock seconds) then the entry's JSON text; Redis expires it after its TTL (``SET ... PX``).
One round trip per ``get`` and per ``set``. Values stay JSON text, never pickles. Size is
bounded by Redis itself (``maxmemory`` with an ``allkeys-lru`` policy), not by ``max_entries``.

When Redis is unavailable (``_redis_common``), ``on_unavailable = "local"`` serves from an
in-process memory cache meanwhile; with ``"fail"`` the store raises, which the cache stage turns
into a miss (a cache outage never fails a call). ``single_flight`` is the cross-process
single-flight over the same keys (``singleflight_redis``), which the cache stage uses when the
store offers it.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from .._clock import REAL_CLOCK, Clock
from ._redis_common import LOCAL, RedisGuard, RedisSettings, Script, close_clients, parse_settings
from .cache_base import CacheEntry, CacheStore, StoreSettings
from .cache_memory import MemoryCacheStore
from .singleflight_redis import RedisSingleFlight

logger = logging.getLogger("llmchain.cache")
_FORMAT = "llmchain-cache-1"
#: Entries kept by the in-process stand-in during an outage.
LOCAL_MAX_ENTRIES = 1000
#: GET + DEL in one step (GETDEL needs Redis 6.2).
_TAKE = Script("local v = redis.call('GET', KEYS[1]); if v then redis.call('DEL', KEYS[1]) end; return v")


def encode_entry(value: str, created_at: float, expires_at: float | None) -> str:
    """The stored text: header line, then the JSON value."""
    return f"{_FORMAT} {created_at!r} {'-' if expires_at is None else repr(expires_at)}\n{value}"


def decode_entry(raw: str, now: float) -> CacheEntry | None:
    """The live entry in ``raw``, or None (expired, or not written by this store)."""
    head, newline, value = raw.partition("\n")
    fields = head.split(" ")
    if not newline or len(fields) != 3 or fields[0] != _FORMAT:
        return None
    try:
        created = float(fields[1])
        expires = None if fields[2] == "-" else float(fields[2])
    except ValueError:
        return None
    entry = CacheEntry(value, created, expires)
    return entry if entry.alive(now) else None


class RedisCacheStore:
    """``CacheStore`` in Redis (see the module docstring)."""

    nonblocking = False

    def __init__(self, settings: RedisSettings, *, default_ttl_s: float | None = None,
                 clock: Clock = REAL_CLOCK) -> None:
        self.settings = settings
        self.name = settings.display
        self.default_ttl_s = default_ttl_s
        self._clock = clock
        self._prefix = f"{settings.key_prefix}:cache:"
        self.guard = RedisGuard(settings, "cache")
        self.local = MemoryCacheStore(max_entries=LOCAL_MAX_ENTRIES, default_ttl_s=default_ttl_s,
                                      clock=clock)
        self.single_flight = RedisSingleFlight(self)

    def entry_key(self, key: str) -> str:
        return f"{self._prefix}{{{key}}}"

    def lease_key(self, key: str) -> str:
        return f"{self.settings.key_prefix}:sf:{{{key}}}"

    def decode(self, raw: str, key: str) -> CacheEntry | None:
        entry = decode_entry(raw, self._clock.wall())
        if entry is None:
            logger.debug("ignoring an unreadable or expired Redis cache entry for %s", key)
        return entry

    async def get(self, key: str) -> CacheEntry | None:
        name = self.entry_key(key)

        async def run(client: Any) -> str | None:
            raw = await client.get(name)
            return None if raw is None else str(raw)

        raw = await self.guard.run("get", run)
        if raw is LOCAL:
            return self.local.get_nowait(key)
        return None if raw is None else self.decode(raw, key)

    async def set(self, key: str, value: str, ttl_s: float | None) -> None:
        ttl = self.default_ttl_s if ttl_s is None else ttl_s
        now = self._clock.wall()
        text = encode_entry(value, now, None if ttl is None else now + ttl)
        name = self.entry_key(key)

        async def run(client: Any) -> None:
            if ttl is None:
                await client.set(name, text)
            else:
                await client.set(name, text, px=max(1, round(ttl * 1000)))

        if await self.guard.run("set", run) is LOCAL:
            await self.local.set(key, value, ttl_s)

    async def delete(self, key: str) -> bool:
        name = self.entry_key(key)

        async def run(client: Any) -> bool:
            raw = await _TAKE(client, (name,), ())
            return raw is not None and self.decode(str(raw), key) is not None  # was it live?

        removed = await self.guard.run("delete", run)
        local = await self.local.delete(key)
        return local if removed is LOCAL else removed or local

    async def clear(self) -> None:
        """Remove every entry under this store's prefix (SCAN + UNLINK, batch by batch)."""
        await self.local.clear()
        pattern = f"{self._prefix}*"
        cursor = 0
        while True:
            async def batch(client: Any, at: int = cursor) -> int:
                next_cursor, names = await client.scan(at, match=pattern, count=500)
                if names:
                    await client.unlink(*names)
                return int(next_cursor)

            result = await self.guard.run("clear", batch)
            if result is LOCAL or result == 0:
                return
            cursor = result

    async def aclose(self) -> None:
        await self.local.aclose()
        await close_clients(self.settings)

    def __repr__(self) -> str:
        return f"RedisCacheStore({self.name}, prefix={self._prefix!r})"



def open_cache_store(settings: StoreSettings, clock: Clock) -> RedisCacheStore:
    """The "redis" cache store, registered through ``register_stores`` (``stores.builtin``)."""
    return RedisCacheStore(parse_settings(settings.url), default_ttl_s=settings.default_ttl_s, clock=clock)


if TYPE_CHECKING:  # mypy checks that the store implements the protocol
    _implements: CacheStore = RedisCacheStore(parse_settings("redis://localhost"))
