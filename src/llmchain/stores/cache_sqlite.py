"""SQLite cache store: one file, shared safely by threads and processes.

* WAL journal: readers never block the writer, and a process killed mid-write (``kill -9``)
  leaves the last *committed* state; every write is one transaction, so no entry is ever torn.
* Values are JSON text, checked by SQLite itself (``CHECK (json_valid(value))``), never pickles.
* TTL per entry; expired rows are invisible to ``get`` and purged when the size cap is reached.
* Size cap: ``max_entries`` and ``max_bytes`` (sum of value lengths). When a write exceeds one,
  expired rows go first, then the oldest *written* rows. Counts are kept in a stats row
  maintained by triggers, in the same transaction as the write, so processes agree on them.
* Blocking sqlite3 calls run on a small thread pool (connections are per thread), so the event
  loop never waits on disk or on another process's lock. After ``fork()`` the child starts a
  fresh pool and fresh connections.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sqlite3
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

from .._clock import REAL_CLOCK, Clock
from .cache_base import CacheEntry, CacheStore, StoreSettings

T = TypeVar("T")
SCHEMA_VERSION = 1
DEFAULT_MAX_BYTES = 256 * 1024 * 1024


def _schema(check_json: bool) -> list[str]:
    check = " CHECK (json_valid(value))" if check_json else ""
    return [
        f"""CREATE TABLE IF NOT EXISTS llmchain_cache (
            key        TEXT PRIMARY KEY,
            value      TEXT NOT NULL{check},
            created_at REAL NOT NULL,
            expires_at REAL,
            size       INTEGER NOT NULL)""",
        "CREATE INDEX IF NOT EXISTS llmchain_cache_expires ON llmchain_cache (expires_at)",
        """CREATE TABLE IF NOT EXISTS llmchain_cache_stats (
            id INTEGER PRIMARY KEY CHECK (id = 0),
            entries INTEGER NOT NULL,
            bytes INTEGER NOT NULL,
            schema_version INTEGER NOT NULL)""",
        f"INSERT OR IGNORE INTO llmchain_cache_stats VALUES (0, 0, 0, {SCHEMA_VERSION})",
        """CREATE TRIGGER IF NOT EXISTS llmchain_cache_ins AFTER INSERT ON llmchain_cache BEGIN
            UPDATE llmchain_cache_stats SET entries = entries + 1, bytes = bytes + new.size
            WHERE id = 0; END""",
        """CREATE TRIGGER IF NOT EXISTS llmchain_cache_del AFTER DELETE ON llmchain_cache BEGIN
            UPDATE llmchain_cache_stats SET entries = entries - 1, bytes = bytes - old.size
            WHERE id = 0; END""",
    ]


class SQLiteCacheStore:
    """Cache store in one SQLite file; safe across threads, event loops and processes."""

    nonblocking = False

    def __init__(
        self,
        path: str | Path,
        *,
        max_entries: int = 100_000,
        max_bytes: int | None = DEFAULT_MAX_BYTES,
        default_ttl_s: float | None = None,
        busy_timeout_s: float = 5.0,
        threads: int = 2,
        clock: Clock = REAL_CLOCK,
    ) -> None:
        if max_entries < 1 or (max_bytes is not None and max_bytes < 1):
            raise ValueError("max_entries and max_bytes must be at least 1")
        self.path = str(path)
        self.name = f"sqlite:{self.path}"
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        self.default_ttl_s = default_ttl_s
        self._busy_timeout_s = busy_timeout_s
        self._threads = threads
        self._clock = clock
        self._lock = threading.Lock()
        self._local = threading.local()
        self._connections: list[sqlite3.Connection] = []
        self._executor: ThreadPoolExecutor | None = None
        self._pid = os.getpid()
        self._closed = False
        _create_private(self.path)
        self._call(self._init_schema)  # fail at build time, not on the first call

    # -- plumbing -------------------------------------------------------------------------------

    def _connection(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is not None and getattr(self._local, "pid", None) == os.getpid():
            return conn
        # isolation_level=None: we issue BEGIN IMMEDIATE ourselves, so a write transaction
        # takes the lock up front instead of failing on upgrade (SQLITE_BUSY) midway.
        conn = sqlite3.connect(self.path, timeout=self._busy_timeout_s, isolation_level=None,
                               check_same_thread=False)
        self._enter_wal(conn)
        conn.execute("PRAGMA synchronous=NORMAL")  # WAL + NORMAL: durable against process crashes
        self._local.conn, self._local.pid = conn, os.getpid()
        with self._lock:
            self._connections.append(conn)
        return conn

    def _enter_wal(self, conn: sqlite3.Connection) -> None:
        """``PRAGMA journal_mode=WAL``, retried while another process holds the file.

        Switching to WAL, or recovering the WAL a killed process left behind, needs a lock
        that SQLite does not wait for through its busy handler: a second process opening the
        file at that moment gets "database is locked" at once. Retrying for up to the busy
        timeout gives the same patience every other statement gets.
        """
        deadline = time.monotonic() + self._busy_timeout_s
        pause = 0.005
        while True:
            try:
                conn.execute("PRAGMA journal_mode=WAL")
                return
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) and "busy" not in str(exc):
                    raise
                if time.monotonic() + pause > deadline:
                    raise
                time.sleep(pause)  # a worker thread, never the event loop
                pause = min(pause * 2, 0.1)

    def _call(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        return fn(self._connection())

    async def _run(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        if self._closed:
            raise RuntimeError(f"{self.name} is closed")
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._pool(), self._call, fn)

    def _pool(self) -> ThreadPoolExecutor:
        with self._lock:
            if self._pid != os.getpid():
                # a forked child inherits the pool object but not its threads, and must not
                # use the parent's connections: start afresh
                self._executor, self._connections, self._pid = None, [], os.getpid()
            if self._executor is None:
                self._executor = ThreadPoolExecutor(self._threads, thread_name_prefix="llmchain-sqlite")
            return self._executor

    def _init_schema(self, conn: sqlite3.Connection) -> None:
        try:
            conn.execute("SELECT json_valid('1')")
            check_json = True
        except sqlite3.OperationalError:  # an SQLite built without JSON functions
            check_json = False
        conn.execute("BEGIN IMMEDIATE")  # several processes may create the file at once
        try:
            for statement in _schema(check_json):
                conn.execute(statement)
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise

    # -- operations -----------------------------------------------------------------------------

    async def get(self, key: str) -> CacheEntry | None:
        now = self._clock.wall()

        def read(conn: sqlite3.Connection) -> CacheEntry | None:
            row = conn.execute(
                "SELECT value, created_at, expires_at FROM llmchain_cache WHERE key = ?", (key,)
            ).fetchone()
            if row is None or (row[2] is not None and row[2] <= now):
                return None  # expired rows are left for the writer to purge: reads stay reads
            return CacheEntry(row[0], row[1], row[2])

        return await self._run(read)

    async def set(self, key: str, value: str, ttl_s: float | None) -> None:
        ttl = self.default_ttl_s if ttl_s is None else ttl_s
        now = self._clock.wall()
        size = len(value)
        if self.max_bytes is not None and size > self.max_bytes:
            return

        def write(conn: sqlite3.Connection) -> None:
            conn.execute("BEGIN IMMEDIATE")
            try:
                # delete + insert (not upsert) gives the row a fresh rowid: rowid order is
                # write order, which is what eviction follows
                conn.execute("DELETE FROM llmchain_cache WHERE key = ?", (key,))
                conn.execute(
                    "INSERT INTO llmchain_cache (key, value, created_at, expires_at, size) "
                    "VALUES (?, ?, ?, ?, ?)",
                    (key, value, now, None if ttl is None else now + ttl, size),
                )
                self._evict(conn, now)
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise

        await self._run(write)

    def _over(self, conn: sqlite3.Connection) -> tuple[int, int]:
        entries, nbytes = conn.execute(
            "SELECT entries, bytes FROM llmchain_cache_stats WHERE id = 0").fetchone()
        extra_entries = max(0, entries - self.max_entries)
        extra_bytes = 0 if self.max_bytes is None else max(0, nbytes - self.max_bytes)
        return extra_entries, extra_bytes

    def _evict(self, conn: sqlite3.Connection, now: float) -> None:
        extra_entries, extra_bytes = self._over(conn)
        if not (extra_entries or extra_bytes):
            return
        conn.execute("DELETE FROM llmchain_cache WHERE expires_at <= ?", (now,))
        extra_entries, extra_bytes = self._over(conn)
        if not (extra_entries or extra_bytes):
            return
        victims: list[int] = []
        for rowid, size in conn.execute("SELECT rowid, size FROM llmchain_cache ORDER BY rowid"):
            if extra_entries <= 0 and extra_bytes <= 0:
                break
            victims.append(rowid)
            extra_entries -= 1
            extra_bytes -= size
        conn.executemany("DELETE FROM llmchain_cache WHERE rowid = ?", [(r,) for r in victims])

    async def delete(self, key: str) -> bool:
        now = self._clock.wall()

        def remove(conn: sqlite3.Connection) -> bool:
            conn.execute("BEGIN IMMEDIATE")
            try:
                row = conn.execute(
                    "SELECT expires_at FROM llmchain_cache WHERE key = ?", (key,)).fetchone()
                conn.execute("DELETE FROM llmchain_cache WHERE key = ?", (key,))
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            return row is not None and (row[0] is None or row[0] > now)

        return await self._run(remove)

    async def clear(self) -> None:
        await self._run(lambda conn: conn.execute("DELETE FROM llmchain_cache"))

    async def purge_expired(self) -> int:
        """Delete expired rows now; returns how many."""
        now = self._clock.wall()
        return await self._run(
            lambda conn: conn.execute(
                "DELETE FROM llmchain_cache WHERE expires_at <= ?", (now,)).rowcount)

    async def count(self) -> int:
        """Live entries."""
        now = self._clock.wall()
        return await self._run(lambda conn: int(conn.execute(
            "SELECT count(*) FROM llmchain_cache WHERE expires_at IS NULL OR expires_at > ?",
            (now,)).fetchone()[0]))

    async def aclose(self) -> None:
        self._closed = True
        with self._lock:
            executor, self._executor = self._executor, None
            connections, self._connections = self._connections, []
        if executor is not None:
            executor.shutdown(wait=True)
        if self._pid == os.getpid():  # never touch a parent's connections from a child
            for conn in connections:
                conn.close()

    def __repr__(self) -> str:
        return f"SQLiteCacheStore({self.path!r}, max_entries={self.max_entries}, max_bytes={self.max_bytes})"


def open_cache_store(settings: StoreSettings, clock: Clock) -> SQLiteCacheStore:
    """Factory used by the cache stage for ``store = "sqlite"``."""
    return SQLiteCacheStore(
        settings.path,
        max_entries=settings.max_entries,
        max_bytes=DEFAULT_MAX_BYTES if settings.max_bytes is None else settings.max_bytes,
        default_ttl_s=settings.default_ttl_s,
        clock=clock,
    )


if TYPE_CHECKING:  # mypy checks that the store implements the protocol
    _implements: CacheStore = SQLiteCacheStore(":memory:")


def _create_private(path: str) -> None:
    """Create the database file 0600 (less if the umask says so) if it does not exist; SQLite
    gives its -wal and -shm files the same mode. O_EXCL: an existing file is never opened here,
    since closing any descriptor of it would drop this process's SQLite (POSIX) locks on it."""
    if path == ":memory:" or path.startswith("file:"):
        return
    with contextlib.suppress(OSError):  # it exists, or cannot be made: sqlite3 says so itself
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
