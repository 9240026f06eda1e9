"""Cross-process single-flight over the Redis cache store: one provider call per key, all workers.

The cache stage first coalesces identical calls inside its process (``middleware._singleflight``);
its local leader then *claims* the key in Redis, one Lua script per attempt:

1. the entry is in the cache → that is the answer (another worker just made the call);
2. else ``SET <lease> <token> NX PX lease_s`` succeeds → this worker leads: it calls, stores the
   entry, then releases the lease (deleted only if it still holds the token). While it calls, a
   task renews the lease every ``lease_s / 3``, so a slow call keeps it, while a worker that
   dies or freezes loses it within ``lease_s``;
3. else another worker leads → wait and claim again, polling at a growing interval (5 ms up to
   100 ms), never past this call's own deadline (``TimeoutExceeded``, phase ``"deadline"``, as
   when waiting in-process).

Decisions. A leader's *failure* is not passed to other processes: it may be the leader's own
(its deadline, its cancellation, its connection) and errors do not cross processes faithfully.
When the lease goes without an entry — a failure, or an answer the cache would not store — the
next waiter to claim leads and calls itself; the rest keep waiting on it. A Redis problem never
fails the call: the claimant simply leads without a lease (at worst, duplicate calls).
"""

from __future__ import annotations

import asyncio
import uuid
from typing import Any, Protocol

from .._clock import Clock, time_left
from .._events import emit
from .._exceptions import StoreUnavailable, TimeoutExceeded
from .._models import LLMRequest
from ._redis_common import LOCAL, RedisGuard, RedisSettings, Script
from ._shared import store_deadline
from .cache_base import CacheEntry


class LeasedStore(Protocol):
    """What the single-flight needs of its cache store (``RedisCacheStore``). A protocol rather
    than an import, so the store can own its single-flight without an import cycle."""

    settings: RedisSettings
    guard: RedisGuard

    def entry_key(self, key: str) -> str: ...

    def lease_key(self, key: str) -> str: ...

    def decode(self, raw: str, key: str) -> CacheEntry | None: ...


#: KEYS: lease, entry. ARGV: token, lease_ms. Returns {"entry", text} | {"lease"} | {"wait"}.
_CLAIM = Script("""
local entry = redis.call('GET', KEYS[2])
if entry then return {'entry', entry} end
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then return {'lease'} end
return {'wait'}
""")
#: KEYS: lease. ARGV: token, lease_ms. Returns 1 if still held (and extended), else 0.
_RENEW = Script("""
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return 1
""")
#: KEYS: lease. ARGV: token. Deletes the lease only if this token still holds it.
_RELEASE = Script("""
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
""")
FIRST_POLL_S, MAX_POLL_S = 0.005, 0.1


class Lease:
    """This worker leads the call for ``key`` until it releases the lease."""

    __slots__ = ("key", "name", "renewal", "token")

    def __init__(self, key: str, name: str, token: str) -> None:
        self.key, self.name, self.token = key, name, token
        self.renewal: asyncio.Task[None] | None = None

    def __repr__(self) -> str:
        return f"Lease({self.key!r})"


class RedisSingleFlight:
    """The cross-process single-flight of one ``RedisCacheStore`` (see the module docstring)."""

    def __init__(self, store: LeasedStore) -> None:
        self._store = store
        self.lease_s = store.settings.lease_s
        self._lease_ms = max(1, round(self.lease_s * 1000))

    async def claim(self, key: str, request: LLMRequest,
                    clock: Clock) -> tuple[CacheEntry | None, Lease | None]:
        """(entry, None): another worker's answer; (None, lease): lead, then ``release``;
        (None, None): Redis could not be used, lead without a lease."""
        store, guard = self._store, self._store.guard
        keys = (store.lease_key(key), store.entry_key(key))
        token = uuid.uuid4().hex
        args = (token, self._lease_ms)
        delay, waited = FIRST_POLL_S, False
        while True:
            try:
                with store_deadline(request, clock):
                    reply: Any = await guard.run("lease", lambda client: _CLAIM(client, keys, args))
            except StoreUnavailable:
                return None, None
            if reply is LOCAL:
                return None, None
            if reply[0] == "entry":
                return store.decode(str(reply[1]), key), None
            if reply[0] == "lease":
                lease = Lease(key, keys[0], token)
                lease.renewal = asyncio.get_running_loop().create_task(self._renew(lease))
                return None, lease
            if not waited:
                waited = True
                emit("singleflight_wait", "cache", key=key, leader="another process")
            left = time_left(request, clock)
            if left is not None and left <= 0:
                raise TimeoutExceeded(
                    "the call's deadline ran out while another process made the identical call",
                    phase="deadline", request_id=request.request_id)
            await asyncio.sleep(delay if left is None else min(delay, left))
            delay = min(delay * 2, MAX_POLL_S)

    async def _renew(self, lease: Lease) -> None:
        guard, args = self._store.guard, (lease.token, self._lease_ms)
        while True:
            await asyncio.sleep(self.lease_s / 3)
            try:
                held = await guard.run("lease", lambda client: _RENEW(client, (lease.name,), args),
                                       settle=True)
            except Exception:  # Redis unusable: the lease simply runs out
                return
            if held is LOCAL or not held:
                return

    async def release(self, lease: Lease | None) -> None:
        """Give the lease back (waiting workers then find the entry, or lead themselves)."""
        if lease is None:
            return
        if lease.renewal is not None:
            lease.renewal.cancel()
        try:
            await self._store.guard.run(
                "lease", lambda client: _RELEASE(client, (lease.name,), (lease.token,)), settle=True)
        except Exception:  # unreleased, it expires within lease_s
            return
