"""The memory cache store against a dict model (stateful), plus its edge cases.

``cache_store_machine`` is shared with the SQLite store's tests: both stores must behave like
the same model and differ only in which entry a full cache evicts (memory: least recently
used; SQLite: least recently written).
"""

from __future__ import annotations

import asyncio
import functools
import json
from collections.abc import Awaitable, Callable
from typing import Any, Literal

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from llmchain.stores.cache_base import CacheStore, StoreSettings, open_cache_store
from llmchain.stores.cache_memory import MemoryCacheStore
from llmchain.testing import FakeClock

KEYS = st.sampled_from(["a", "b", "c", "d", "e"])
TTLS = st.sampled_from([None, 1.0, 2.5, 5.0])
MAX_ENTRIES = 3


def async_test(fn: Callable[..., Awaitable[None]]) -> Callable[..., None]:
    """Run an async test function on a fresh event loop."""

    @functools.wraps(fn)
    def run(*args: Any, **kwargs: Any) -> None:
        asyncio.run(fn(*args, **kwargs))  # type: ignore[arg-type]

    return run


def cache_store_machine(
    make_store: Callable[[FakeClock], CacheStore],
    eviction: Literal["lru", "write"],
    cleanup: Callable[[CacheStore], None] | None = None,
) -> type[RuleBasedStateMachine]:
    """A state machine comparing a store with a dict model under a fake clock."""

    class CacheStoreMachine(RuleBasedStateMachine):
        def __init__(self) -> None:
            super().__init__()
            self.clock = FakeClock()
            self.loop = asyncio.new_event_loop()
            self.store = make_store(self.clock)
            # key -> (value, expires_at); order: least recent first (per the eviction policy)
            self.model: dict[str, tuple[str, float | None]] = {}
            self.order: list[str] = []
            self.counter = 0

        def run(self, coro: Any) -> Any:
            return self.loop.run_until_complete(coro)

        def live(self, key: str) -> bool:
            if key not in self.model:
                return False
            expires = self.model[key][1]
            return expires is None or self.clock.wall() < expires

        def live_keys(self) -> list[str]:
            return [k for k in self.order if self.live(k)]

        def touch(self, key: str) -> None:
            if key in self.order:
                self.order.remove(key)
            self.order.append(key)

        @rule(key=KEYS, ttl=TTLS)
        def set(self, key: str, ttl: float | None) -> None:
            self.counter += 1
            value = json.dumps({"key": key, "n": self.counter})
            expires = None if ttl is None else self.clock.wall() + ttl
            self.run(self.store.set(key, value, ttl))
            for k in [k for k in self.model if not self.live(k)]:  # purged, unobservably
                del self.model[k]
                self.order.remove(k)
            self.model[key] = (value, expires)
            self.touch(key)
            while len(self.live_keys()) > MAX_ENTRIES:
                victim = self.live_keys()[0]
                del self.model[victim]
                self.order.remove(victim)

        @rule(key=KEYS)
        def get(self, key: str) -> None:
            entry = self.run(self.store.get(key))
            if self.live(key):
                assert entry is not None, f"{key} should be cached"
                assert entry.value == self.model[key][0]
                assert entry.expires_at == self.model[key][1]
                if eviction == "lru":
                    self.touch(key)
            else:
                assert entry is None, f"{key} should be gone, got {entry}"

        @rule(key=KEYS)
        def delete(self, key: str) -> None:
            removed = self.run(self.store.delete(key))
            assert removed == self.live(key)
            if key in self.model:
                del self.model[key]
                self.order.remove(key)

        @rule(seconds=st.sampled_from([0.5, 1.0, 2.5, 10.0]))
        def advance(self, seconds: float) -> None:
            self.clock.advance(seconds)

        @precondition(lambda self: self.counter % 7 == 0)
        @rule()
        def clear(self) -> None:
            self.run(self.store.clear())
            self.model.clear()
            self.order.clear()

        @invariant()
        def never_over_capacity(self) -> None:
            assert len(self.live_keys()) <= MAX_ENTRIES

        def teardown(self) -> None:
            self.run(self.store.aclose())
            self.loop.close()
            if cleanup is not None:
                cleanup(self.store)

    return CacheStoreMachine


MemoryMachine = cache_store_machine(
    lambda clock: MemoryCacheStore(max_entries=MAX_ENTRIES, clock=clock), eviction="lru"
)
TestMemoryStoreModel = MemoryMachine.TestCase
TestMemoryStoreModel.settings = settings(max_examples=100, stateful_step_count=40, deadline=None)


@async_test
async def test_entries_expire_after_their_own_ttl() -> None:
    clock = FakeClock()
    store = MemoryCacheStore(default_ttl_s=10, clock=clock)
    await store.set("short", '"s"', 1)
    await store.set("default", '"d"', None)
    clock.advance(1)
    assert await store.get("short") is None
    assert (await store.get("default")) is not None
    clock.advance(9)
    assert await store.get("default") is None


@async_test
async def test_byte_cap_evicts_least_recently_used_and_refuses_oversized_values() -> None:
    store = MemoryCacheStore(max_entries=100, max_bytes=30, clock=FakeClock())
    await store.set("a", '"' + "a" * 8 + '"', None)  # 10 bytes each
    await store.set("b", '"' + "b" * 8 + '"', None)
    await store.set("c", '"' + "c" * 8 + '"', None)
    assert await store.get("a") is not None  # a is now more recent than b
    await store.set("d", '"' + "d" * 8 + '"', None)
    assert await store.get("b") is None
    assert {k for k in "acd" if await store.get(k) is not None} == {"a", "c", "d"}
    await store.set("huge", '"' + "x" * 40 + '"', None)
    assert await store.get("huge") is None
    assert len(store) == 3


@async_test
async def test_entry_cap_holds_with_a_byte_cap_too() -> None:
    store = MemoryCacheStore(max_entries=2, max_bytes=10_000, clock=FakeClock())
    for key in "abc":
        await store.set(key, "1", None)
    assert len(store) == 2
    assert await store.get("a") is None


def test_rejects_nonsense_sizes() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        MemoryCacheStore(max_entries=0)


def test_open_cache_store_names_the_known_kinds() -> None:
    from llmchain import ConfigError

    assert isinstance(open_cache_store(StoreSettings(kind="memory"), FakeClock()), MemoryCacheStore)
    with pytest.raises(ConfigError, match=r"unknown cache store 'nope'.*memory.*sqlite"):
        open_cache_store(StoreSettings(kind="nope"), FakeClock())
