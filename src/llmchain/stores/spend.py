"""Where the ``budget`` stage keeps what was spent: this process's memory, or Redis.

``open_spend_store("memory", share=name)`` returns one ledger per name in this process;
``"redis"`` shares it across processes: each reservation is one Lua script over every key it
touches (all or nothing, atomic across processes), and keys expire once their window ended.
Keys: ``<key_prefix>:budget:{<share>}:<limit>|<tag>|<window>`` (one hash tag, one cluster slot).
When Redis is unavailable the usual policy applies (``_redis_common``): ``"local"`` carries on
with an in-process ledger, ``"fail"`` raises ``StoreUnavailable``.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Sequence
from typing import Any, Protocol

from ..policies.spend import Entry, Outcome, SpendLedger


class SpendStore(Protocol):
    name: str

    async def reserve(self, entries: Sequence[Entry], wall: float) -> Outcome: ...

    async def settle(self, entries: Sequence[Entry], wall: float) -> None: ...

    async def spent(self, key: str, wall: float) -> int: ...


class MemorySpendStore:
    name = "memory"

    def __init__(self) -> None:
        self.ledger = SpendLedger()

    async def reserve(self, entries: Sequence[Entry], wall: float) -> Outcome:
        return self.ledger.reserve(entries, wall)

    async def settle(self, entries: Sequence[Entry], wall: float) -> None:
        self.ledger.settle(entries, wall)

    async def spent(self, key: str, wall: float) -> int:
        return self.ledger.spent(key, wall)


RESERVE = """
local n = #KEYS
local out = {1, 0}
for i = 1, n do
  local spent = tonumber(redis.call('GET', KEYS[i]) or '0')
  if spent + tonumber(ARGV[i]) > tonumber(ARGV[n + i]) then
    local refused = {0, i - 1}
    for j = 1, n do refused[#refused + 1] = tonumber(redis.call('GET', KEYS[j]) or '0') end
    return refused
  end
  out[#out + 1] = spent
end
for i = 1, n do
  redis.call('INCRBY', KEYS[i], ARGV[i])
  redis.call('PEXPIRE', KEYS[i], ARGV[2 * n + i])
end
return out
"""

SETTLE = """
local n = #KEYS
for i = 1, n do
  redis.call('INCRBY', KEYS[i], ARGV[i])
  redis.call('PEXPIRE', KEYS[i], ARGV[n + i])
end
return n
"""


class RedisSpendStore:
    """The ledger in Redis (see the module docstring)."""

    def __init__(self, url: str | None, share: str | None) -> None:
        from ._redis_common import RedisGuard, Script, parse_settings

        self.settings = parse_settings(url)
        self.name = self.settings.display
        self._prefix = f"{self.settings.key_prefix}:budget:{{{share or 'default'}}}:"
        self.guard = RedisGuard(self.settings, "budget")
        self.local = MemorySpendStore()
        self._reserve, self._settle = Script(RESERVE), Script(SETTLE)

    def _keys(self, entries: Sequence[Entry]) -> list[str]:
        return [self._prefix + e.key for e in entries]

    @staticmethod
    def _ttl_ms(entry: Entry) -> int:
        return max(1000, math.ceil(entry.ttl_s * 1000))

    async def reserve(self, entries: Sequence[Entry], wall: float) -> Outcome:
        from ._redis_common import LOCAL

        keys = self._keys(entries)
        args = [*(e.amount for e in entries), *(e.limit for e in entries),
                *(self._ttl_ms(e) for e in entries)]

        async def run(client: Any) -> Outcome:
            reply = await self._reserve(client, keys, args)
            return Outcome(int(reply[0]) == 1, int(reply[1]) if int(reply[0]) == 0 else -1,
                           tuple(int(x) for x in reply[2:]))

        result = await self.guard.run("reserve", run)
        return await self.local.reserve(entries, wall) if result is LOCAL else result

    async def settle(self, entries: Sequence[Entry], wall: float) -> None:
        from ._redis_common import LOCAL

        keys = self._keys(entries)
        args = [*(e.amount for e in entries), *(self._ttl_ms(e) for e in entries)]
        result = await self.guard.run("settle", lambda c: self._settle(c, keys, args), settle=True)
        if result is LOCAL:
            await self.local.settle(entries, wall)

    async def spent(self, key: str, wall: float) -> int:
        from ._redis_common import LOCAL

        async def run(client: Any) -> int:
            return int(await client.get(self._prefix + key) or 0)

        result = await self.guard.run("spent", run)
        return await self.local.spent(key, wall) if result is LOCAL else result

    async def aclose(self) -> None:
        from ._redis_common import close_clients

        await close_clients(self.settings)


_shared_lock = threading.Lock()
_shared: dict[str, MemorySpendStore] = {}


def open_spend_store(kind: str, *, share: str | None, url: str | None) -> SpendStore:
    """The store ``kind`` names (``"memory"`` or ``"redis"``)."""
    if kind == "redis":
        return RedisSpendStore(url, share)
    if kind != "memory":
        from .._exceptions import ConfigError

        raise ConfigError(f'unknown budget store {kind!r}; available: ["memory", "redis"]')
    if share is None:
        return MemorySpendStore()
    with _shared_lock:
        return _shared.setdefault(share, MemorySpendStore())
