"""In-process cache store: cachetools' TLRU cache (per-entry TTL + LRU) behind one lock.

Entries expire after their own TTL; when the cache is full, expired entries go first, then
the least recently *used* one (reads count as use). With ``max_bytes`` the size of an entry is
the length of its JSON text and the entry count is capped as well. The lock is held only for
the dict operation, never across an await, so threads and event loops can share one store.
"""

from __future__ import annotations

import math
import threading
from typing import TYPE_CHECKING

from cachetools import TLRUCache

from .._clock import REAL_CLOCK, Clock
from .cache_base import CacheEntry, CacheStore, StoreSettings


def _expiry(_key: str, entry: CacheEntry, _now: float) -> float:
    return math.inf if entry.expires_at is None else entry.expires_at


def _size(entry: CacheEntry) -> int:
    return max(1, len(entry.value))


class MemoryCacheStore:
    """Thread-safe, loop-agnostic memory store; ``get`` never suspends."""

    nonblocking = True

    def __init__(
        self,
        *,
        max_entries: int = 10_000,
        max_bytes: int | None = None,
        default_ttl_s: float | None = None,
        clock: Clock = REAL_CLOCK,
    ) -> None:
        if max_entries < 1 or (max_bytes is not None and max_bytes < 1):
            raise ValueError("max_entries and max_bytes must be at least 1")
        self.name = "memory"
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        self.default_ttl_s = default_ttl_s
        self._clock = clock
        self._lock = threading.Lock()
        self._cache: TLRUCache[str, CacheEntry] = TLRUCache(
            maxsize=max_bytes if max_bytes is not None else max_entries,
            ttu=_expiry,
            timer=clock.wall,
            getsizeof=_size if max_bytes is not None else None,
        )

    async def get(self, key: str) -> CacheEntry | None:
        return self.get_nowait(key)

    def get_nowait(self, key: str) -> CacheEntry | None:
        """Synchronous ``get`` (the memory store never needs to wait)."""
        with self._lock:
            cache = self._cache
            if key not in cache:  # missing or expired; a miss raises no KeyError (3 in __getitem__)
                return None
            try:
                return cache[key]  # counts as use (LRU); ``in`` does not
            except KeyError:  # expired in between
                return None

    async def set(self, key: str, value: str, ttl_s: float | None) -> None:
        ttl = self.default_ttl_s if ttl_s is None else ttl_s
        now = self._clock.wall()
        entry = CacheEntry(value, now, None if ttl is None else now + ttl)
        if self.max_bytes is not None and _size(entry) > self.max_bytes:
            return  # would evict everything and still not fit
        with self._lock:
            cache = self._cache
            cache[key] = entry
            if self.max_bytes is not None:
                while len(cache) > self.max_entries:
                    cache.popitem()

    async def delete(self, key: str) -> bool:
        with self._lock:
            try:
                del self._cache[key]
            except KeyError:  # missing, or present but expired (removed all the same)
                return False
            return True

    async def clear(self) -> None:
        with self._lock:
            self._cache.clear()

    async def aclose(self) -> None:
        await self.clear()

    def __len__(self) -> int:
        """Live entries (expired ones are purged first)."""
        with self._lock:
            self._cache.expire()
            return len(self._cache)

    def __repr__(self) -> str:
        return f"MemoryCacheStore(max_entries={self.max_entries}, max_bytes={self.max_bytes})"


def open_cache_store(settings: StoreSettings, clock: Clock) -> MemoryCacheStore:
    """Factory used by the cache stage for ``store = "memory"``."""
    return MemoryCacheStore(
        max_entries=settings.max_entries,
        max_bytes=settings.max_bytes,
        default_ttl_s=settings.default_ttl_s,
        clock=clock,
    )


if TYPE_CHECKING:  # mypy checks that the store implements the protocol
    _implements: CacheStore = MemoryCacheStore()
