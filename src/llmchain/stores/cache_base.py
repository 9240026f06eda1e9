"""The interface every cache store implements (memory, SQLite, Redis).

A cache store maps a key (the hex digest the cache stage computes) to a JSON text value with
a creation time and an optional expiry. The interface is async because network stores
(Redis) need it; the memory store implements it without ever suspending, so a hit costs a
dict lookup plus a coroutine step. Values are always JSON text, never pickles: a shared cache
file must not be a way to run code in every process that reads it.

Times are wall-clock seconds (``clock.wall()``) so that several processes sharing one SQLite
file or Redis server agree on ages and expiries.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

from .._clock import Clock


class CacheEntry:
    """One stored value: JSON text, when it was written, when it expires (None: never).

    ``decoded`` is a slot the cache stage may fill with its decoded form; stores that hand out
    the same entry object on every hit (memory) thereby let the stage decode once.
    """

    __slots__ = ("created_at", "decoded", "expires_at", "value")

    def __init__(self, value: str, created_at: float, expires_at: float | None) -> None:
        self.value = value
        self.created_at = created_at
        self.expires_at = expires_at
        self.decoded: Any = None

    def alive(self, now: float) -> bool:
        return self.expires_at is None or now < self.expires_at

    def __repr__(self) -> str:
        return (f"CacheEntry({len(self.value)} chars, created_at={self.created_at:.3f}, "
                f"expires_at={self.expires_at})")


@runtime_checkable
class CacheStore(Protocol):
    """What the cache stage needs from a backend. Implementations must be safe to use from
    several threads and event loops at once."""

    #: Short label for logs and events (``"memory"``, ``"sqlite:/path/file.db"``).
    name: str
    #: True when every method returns without suspending on I/O (no deadline guard needed).
    nonblocking: bool

    async def get(self, key: str) -> CacheEntry | None:
        """The live entry for ``key``, or None (missing or expired)."""
        ...

    async def set(self, key: str, value: str, ttl_s: float | None) -> None:
        """Store JSON text ``value`` under ``key`` for ``ttl_s`` seconds (None: no expiry)."""
        ...

    async def delete(self, key: str) -> bool:
        """Remove ``key``; True if a live entry was removed."""
        ...

    async def clear(self) -> None:
        """Remove every entry."""
        ...

    async def aclose(self) -> None:
        """Release connections and threads; the store is unusable afterwards."""
        ...


@dataclass(frozen=True)
class StoreSettings:
    """What the cache stage's options say about its store (each store reads what it needs)."""

    kind: str = "memory"
    path: str = "llmchain-cache.sqlite3"
    url: str | None = None
    max_entries: int = 10_000
    max_bytes: int | None = None
    default_ttl_s: float | None = None


StoreFactory = Callable[[StoreSettings, Clock], CacheStore]


def open_cache_store(settings: StoreSettings, clock: Clock) -> CacheStore:
    """Build the store ``settings.kind`` names, or raise ConfigError saying what exists."""
    from .base import open_store

    store: CacheStore = open_store("cache", settings.kind, settings, clock)
    return store
