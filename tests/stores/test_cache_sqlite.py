"""The SQLite cache store: the dict model (stateful), size caps, and several real processes.

The multi-process tests start short-lived Python processes writing to one file at once, and
kill one with SIGKILL in the middle of its writes; afterwards the file must pass SQLite's
integrity check and every entry must be whole, valid JSON.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

import pytest
from hypothesis import settings

from llmchain.stores.cache_base import CacheStore, StoreSettings, open_cache_store
from llmchain.stores.cache_sqlite import SQLiteCacheStore
from llmchain.testing import FakeClock

from .test_cache_memory import MAX_ENTRIES, async_test, cache_store_machine

SRC = str(Path(__file__).resolve().parents[2] / "src")


def _temp_store(clock: FakeClock) -> SQLiteCacheStore:
    directory = tempfile.mkdtemp(prefix="llmchain-cache-test-")
    return SQLiteCacheStore(Path(directory) / "cache.db", max_entries=MAX_ENTRIES, clock=clock)


def _remove_temp_store(store: CacheStore) -> None:
    assert isinstance(store, SQLiteCacheStore)
    shutil.rmtree(Path(store.path).parent, ignore_errors=True)


SQLiteMachine = cache_store_machine(_temp_store, eviction="write", cleanup=_remove_temp_store)
TestSQLiteStoreModel = SQLiteMachine.TestCase
TestSQLiteStoreModel.settings = settings(max_examples=40, stateful_step_count=30, deadline=None)


def _rows(path: Path) -> list[tuple[str, str]]:
    with sqlite3.connect(path) as conn:
        return conn.execute("SELECT key, value FROM llmchain_cache").fetchall()


def _stats_match(path: Path) -> None:
    """The trigger-maintained counters agree with the table."""
    with sqlite3.connect(path) as conn:
        entries, nbytes = conn.execute("SELECT entries, bytes FROM llmchain_cache_stats").fetchone()
        count, total = conn.execute("SELECT count(*), coalesce(sum(size), 0) FROM llmchain_cache").fetchone()
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    assert (entries, nbytes) == (count, total)


@async_test
async def test_values_are_json_text_in_a_wal_file(tmp_path: Path) -> None:
    store = SQLiteCacheStore(tmp_path / "c.db", clock=FakeClock())
    await store.set("k", '{"text": "hello"}', 60)
    await store.aclose()
    assert _rows(tmp_path / "c.db") == [("k", '{"text": "hello"}')]
    with sqlite3.connect(tmp_path / "c.db") as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        with pytest.raises(sqlite3.IntegrityError):  # SQLite itself refuses anything but JSON
            conn.execute("INSERT INTO llmchain_cache VALUES ('x', 'not json', 0, NULL, 8)")


@async_test
async def test_entries_survive_reopening_and_expire_by_wall_time(tmp_path: Path) -> None:
    clock = FakeClock()
    first = SQLiteCacheStore(tmp_path / "c.db", clock=clock)
    await first.set("k", "[1]", 5)
    await first.aclose()
    second = SQLiteCacheStore(tmp_path / "c.db", clock=clock)
    entry = await second.get("k")
    assert entry is not None and entry.value == "[1]"
    assert entry.created_at == clock.wall()
    clock.advance(5)
    assert await second.get("k") is None
    assert await second.purge_expired() == 1
    await second.aclose()


@async_test
async def test_byte_cap_evicts_expired_first_then_oldest_written(tmp_path: Path) -> None:
    clock = FakeClock()
    store = SQLiteCacheStore(tmp_path / "c.db", max_entries=100, max_bytes=30, clock=clock)
    await store.set("old", '"' + "o" * 8 + '"', None)
    await store.set("dies", '"' + "d" * 8 + '"', 1)
    await store.set("mid", '"' + "m" * 8 + '"', None)
    clock.advance(2)
    await store.set("new", '"' + "n" * 8 + '"', None)  # 40 bytes: the expired one goes
    assert [await store.get(k) is not None for k in ("old", "mid", "new")] == [True, True, True]
    await store.set("newer", '"' + "x" * 8 + '"', None)  # the oldest written goes
    assert await store.get("old") is None
    assert await store.count() == 3
    await store.set("huge", '"' + "h" * 40 + '"', None)  # larger than the cap: not stored
    assert await store.get("huge") is None
    await store.aclose()
    _stats_match(tmp_path / "c.db")


@async_test
async def test_operations_do_not_run_on_the_event_loop_thread(tmp_path: Path) -> None:
    import threading

    store = SQLiteCacheStore(tmp_path / "c.db", clock=FakeClock())
    seen: list[str] = []
    original = store._call

    def spy(fn):  # type: ignore[no-untyped-def]
        seen.append(threading.current_thread().name)
        return original(fn)

    store._call = spy  # type: ignore[method-assign]
    await store.set("k", "1", None)
    await store.get("k")
    await store.aclose()
    assert seen and all(name.startswith("llmchain-sqlite") for name in seen)


def test_factory_applies_settings(tmp_path: Path) -> None:
    store = open_cache_store(
        StoreSettings(kind="sqlite", path=str(tmp_path / "f.db"), max_entries=7, max_bytes=99),
        FakeClock())
    assert isinstance(store, SQLiteCacheStore)
    assert (store.max_entries, store.max_bytes) == (7, 99)
    asyncio.run(store.aclose())


# -- several processes on one file ----------------------------------------------------------------

WORKER = textwrap.dedent("""
    import asyncio, hashlib, json, random, sys
    sys.path.insert(0, sys.argv[1])
    from llmchain.stores.cache_sqlite import SQLiteCacheStore

    def value(key, n, pad):
        body = {"key": key, "n": n, "pad": "x" * pad}
        body["sum"] = hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()
        return json.dumps(body)

    async def main(path, worker, writes, pad):
        store = SQLiteCacheStore(path, max_entries=150, max_bytes=None, busy_timeout_s=10)
        rng = random.Random(worker)
        n = 0
        while writes < 0 or n < writes:
            n += 1
            key = f"k{rng.randrange(200)}"
            await store.set(key, value(key, n, pad), None)
            entry = await store.get(f"k{rng.randrange(200)}")
            if entry is not None:
                json.loads(entry.value)
            if n == 20:
                print("ready", flush=True)
            elif n % 20 == 0:  # progress, so a test can act mid-run without a real-time sleep
                print("wrote", flush=True)
        await store.aclose()

    asyncio.run(main(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])))
""")


def _spawn(path: Path, worker: int, writes: int, pad: int) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", WORKER, SRC, str(path), str(worker), str(writes), str(pad)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _check_entries(path: Path) -> int:
    import hashlib

    rows = _rows(path)
    for key, text in rows:
        body = json.loads(text)  # whole, valid JSON: no torn entry
        assert body["key"] == key
        claimed = body.pop("sum")
        assert hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest() == claimed
    _stats_match(path)
    return len(rows)


def test_several_processes_write_and_read_one_file_at_once(tmp_path: Path) -> None:
    path = tmp_path / "shared.db"
    procs = [_spawn(path, worker, writes=150, pad=200) for worker in range(4)]
    for proc in procs:
        _, err = proc.communicate(timeout=60)
        assert proc.returncode == 0, err
    assert 0 < _check_entries(path) <= 150


@pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs SIGKILL")
def test_kill_9_mid_write_leaves_no_torn_entry(tmp_path: Path) -> None:
    path = tmp_path / "killed.db"
    for round_ in range(3):
        procs = [_spawn(path, worker=10 * round_ + i, writes=-1, pad=50_000) for i in range(2)]
        for proc in procs:
            assert proc.stdout is not None
            assert proc.stdout.readline().strip() == "ready", proc.stderr.read() if proc.stderr else ""
        for proc in procs:  # let them get well into writing: 20 more writes per round
            assert proc.stdout is not None
            for _ in range(round_ + 1):
                assert proc.stdout.readline().strip() == "wrote"
        for proc in procs:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)
            assert proc.returncode == -signal.SIGKILL
        assert _check_entries(path) > 0
    # and the file is still writable by a new process
    survivor = _spawn(path, worker=99, writes=25, pad=10)
    _, err = survivor.communicate(timeout=60)
    assert survivor.returncode == 0, err
    _check_entries(path)
