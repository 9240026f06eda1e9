"""Redis plumbing shared by the Redis stores: settings, one client per event loop, bounded
operations, and what happens when Redis is down, slow or answers garbage.

* **One client per event loop.** A ``redis.asyncio`` client belongs to the loop that created
  it, and llmchain runs calls on several (the sync facade's one loop, users' own). Clients are made
  lazily per running loop, under a lock, and forgotten with their loop (weak keys) or after
  ``fork()``. Clients for one address are shared by every store of this process.
* **Bounded.** Every operation ends within ``min(op_timeout_s, what is left of the call)``
  (``_shared.store_deadline``); the socket timeouts are ``op_timeout_s`` too and redis-py's own
  retries are off, so nothing waits on a dead server longer than that.
* **Failure policy** (``on_unavailable``). An error, a timeout or an unreadable answer marks the
  server down for ``cooldown_s``: one warning is logged per outage, each operation that cannot
  use Redis emits ``store_unavailable``; then it either runs on the store's in-process twin
  (``"local"``) or raises ``StoreUnavailable`` naming the server, password masked (``"fail"``).
  After the cool-down one operation probes Redis while the others stay local; its success ends
  the outage. A deadline running out is the call's problem, not Redis's: it raises
  ``TimeoutExceeded(phase="deadline")`` and leaves the server's health alone. Operations that
  only *settle* a call already answered (reconcile usage, record an outcome, pause, release a
  lease) get ``SETTLE_GRACE_S`` past the deadline and are skipped, never raised, if that is not
  enough: a success must not turn into a timeout over bookkeeping.
* **Scripts** run with EVALSHA (one round trip); after a server restart or SCRIPT FLUSH the
  NOSCRIPT reply is answered by one EVAL, which also reloads the cache.
"""

from __future__ import annotations

import asyncio
import enum
import hashlib
import logging
import os
import threading
import time
import weakref
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, TypeVar
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import redis.asyncio as aioredis
from redis.asyncio.connection import parse_url
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import NoScriptError

from .._clock import REAL_CLOCK
from .._events import emit
from .._exceptions import ConfigError, StoreUnavailable, TimeoutExceeded
from .._redact import redact, register_secret, trim
from ._shared import DEFAULT_URL_ENV, mask_url, store_time_left

T = TypeVar("T")
OnUnavailable = Literal["local", "fail"]
logger = logging.getLogger("llmchain.stores")


class Local(enum.Enum):
    """Returned instead of a result: run the operation on the in-process store."""

    LOCAL = 0


LOCAL = Local.LOCAL
#: How far past the call's deadline an operation settling an answered call may run.
SETTLE_GRACE_S = 0.02


@dataclass(frozen=True)
class RedisSettings:
    """A Redis store's settings, from its URL (llmchain's own query parameters removed)."""

    url: str = field(repr=False)  # for redis-py: may hold a password, never shown
    display: str  # password masked
    on_unavailable: OnUnavailable = "local"
    op_timeout_s: float = 0.25
    cooldown_s: float = 2.0
    key_prefix: str = "llmchain"
    lease_s: float = 10.0


_OURS = {"on_unavailable", "op_timeout_s", "cooldown_s", "key_prefix", "lease_s"}


def parse_settings(url: str | None) -> RedisSettings:
    """Settings from ``url`` (None: the ``REDIS_URL`` environment variable)."""
    if url is None:
        url = os.environ.get(DEFAULT_URL_ENV)
        if not url:
            raise ConfigError(f"the Redis store needs an address: set {DEFAULT_URL_ENV} "
                              "(e.g. redis://127.0.0.1:6379/0) or name another variable with store_url_env")
    try:
        parts = urlsplit(url)
        password = parts.password
    except ValueError as exc:
        raise ConfigError(f"the Redis URL {mask_url(url)!r} is not a URL: {exc}") from None
    if parts.scheme not in ("redis", "rediss", "unix"):
        raise ConfigError(f"the Redis URL {mask_url(url)!r} must start with redis://, rediss:// or unix://")
    register_secret(password)  # masked in every error and log line from now on
    query = parse_qsl(parts.query)
    ours = {k: v for k, v in query if k in _OURS}
    rest = urlencode([(k, v) for k, v in query if k not in _OURS])
    clean = urlunsplit(parts._replace(query=rest))
    try:
        parse_url(clean)  # redis-py's own checks (db, options), now rather than at the first call
        settings = RedisSettings(
            url=clean, display=mask_url(clean),
            on_unavailable=_policy(ours.get("on_unavailable", "local")),
            op_timeout_s=_positive(ours, "op_timeout_s", 0.25),
            cooldown_s=_positive(ours, "cooldown_s", 2.0),
            key_prefix=ours.get("key_prefix", "llmchain"),
            lease_s=_positive(ours, "lease_s", 10.0))
    except ValueError as exc:
        raise ConfigError(f"Redis store {mask_url(url)!r}: {exc}") from None
    return settings


def _policy(value: str) -> OnUnavailable:
    if value == "local":
        return "local"
    if value == "fail":
        return "fail"
    raise ValueError(f'on_unavailable must be "local" or "fail", got {value!r}')


def _positive(values: dict[str, str], name: str, default: float) -> float:
    number = float(values.get(name, default))
    if not number > 0:
        raise ValueError(f"{name} must be > 0, got {number!r}")
    return number


class Script:
    """A Lua script and its SHA1, run with EVALSHA (EVAL once after NOSCRIPT)."""

    __slots__ = ("sha", "source")

    def __init__(self, source: str) -> None:
        self.source = source
        self.sha = hashlib.sha1(source.encode()).hexdigest()

    async def __call__(self, client: Any, keys: Sequence[str], args: Sequence[Any]) -> Any:
        # client: an aioredis.Redis (Any: redis-py leaves execute_command untyped)
        try:
            return await client.execute_command("EVALSHA", self.sha, len(keys), *keys, *args)
        except NoScriptError:  # a restarted or flushed server: EVAL runs it and caches it again
            return await client.execute_command("EVAL", self.source, len(keys), *keys, *args)


# -- clients, one per (address, timeout) per event loop ------------------------------------------

_clients_lock = threading.Lock()
_clients: dict[tuple[str, float], weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, aioredis.Redis]] = {}
_clients_pid = os.getpid()


def client_for(settings: RedisSettings) -> aioredis.Redis:
    """The client for ``settings`` on the running loop, made on first use."""
    global _clients_pid
    loop = asyncio.get_running_loop()
    key = (settings.url, settings.op_timeout_s)
    with _clients_lock:
        if _clients_pid != os.getpid():  # a forked child must not use its parent's sockets
            _clients.clear()
            _clients_pid = os.getpid()
        per_loop = _clients.get(key)
        if per_loop is None:
            per_loop = _clients[key] = weakref.WeakKeyDictionary()
        client = per_loop.get(loop)
        if client is None:
            client = per_loop[loop] = aioredis.Redis.from_url(
                settings.url, decode_responses=True,
                socket_timeout=settings.op_timeout_s, socket_connect_timeout=settings.op_timeout_s,
                retry=Retry(NoBackoff(), 0))  # we bound and fall back ourselves: no hidden retries
        return client


async def close_clients(settings: RedisSettings) -> None:
    """Close this address's client on the running loop (others close with their loops)."""
    loop = asyncio.get_running_loop()
    with _clients_lock:
        per_loop = _clients.get((settings.url, settings.op_timeout_s))
        client = per_loop.pop(loop, None) if per_loop is not None else None
    if client is not None:
        await client.aclose()


# -- health and the failure policy ------------------------------------------------------------------


class RedisGuard:
    """Runs a store's Redis operations: bounded, with the failure policy (module docstring).

    One per store, so that each store logs its own outage once and follows its own policy.
    """

    def __init__(self, settings: RedisSettings, what: str) -> None:
        self.settings = settings
        self.what = what  # "rate_limit", "circuit_breaker", "cache": the event's stage
        self._lock = threading.Lock()
        self._healthy = True
        self._down_until = 0.0
        self._probing = False
        self._since = 0.0

    @property
    def healthy(self) -> bool:
        return self._healthy

    async def run(self, op: str, fn: Callable[[aioredis.Redis], Awaitable[T]], *,
                  settle: bool = False) -> T | Local:
        """``fn(client)``'s result; LOCAL when the caller must use its in-process store.

        Raises ``StoreUnavailable`` (policy "fail") or ``TimeoutExceeded`` (the call's deadline;
        with ``settle``, LOCAL instead: see the module docstring)."""
        probe = False
        if not self._healthy:
            probe = self._may_probe()
            if not probe:
                return self._unavailable(op, None)
        budget = self.settings.op_timeout_s
        left = store_time_left()
        if settle and left is not None:
            left = max(left, SETTLE_GRACE_S)
        clipped = left is not None and left < budget
        try:
            if clipped and left is not None and left <= 0:
                raise TimeoutExceeded("the call's deadline ran out before the store could answer",
                                      phase="deadline")
            try:
                result = await REAL_CLOCK.wait_for(fn(client_for(self.settings)), left if clipped else budget)
            except asyncio.CancelledError:
                raise
            except TimeoutError:
                if clipped:  # the call ran out of time, not Redis: its health is unknown
                    if settle:
                        return LOCAL
                    raise TimeoutExceeded(
                        f"the call's deadline ran out while waiting for {self.settings.display}",
                        phase="deadline") from None
                return self._failed(op, TimeoutError(f"no answer within op_timeout_s={budget:g}"))
            except Exception as exc:  # connection errors, error replies, unreadable answers
                return self._failed(op, exc)
        finally:
            if probe:
                with self._lock:
                    self._probing = False
        if not self._healthy:
            self._recovered()
        return result

    def _may_probe(self) -> bool:
        with self._lock:
            if self._probing or time.monotonic() < self._down_until:
                return False
            self._probing = True
            return True

    def _failed(self, op: str, exc: BaseException) -> Local:
        error = trim(redact(f"{type(exc).__name__}: {exc}"), 200)
        with self._lock:
            first = self._healthy
            self._healthy = False
            self._down_until = time.monotonic() + self.settings.cooldown_s
            if first:
                self._since = time.monotonic()
        if first:
            action = ("using in-process state until it answers again"
                      if self.settings.on_unavailable == "local" else "failing calls that need it")
            logger.warning("%s store %s is unavailable (%s): %s; %s", self.what, self.settings.display,
                           op, error, action)
        return self._unavailable(op, error)

    def _unavailable(self, op: str, error: str | None) -> Local:
        policy = self.settings.on_unavailable
        emit("store_unavailable", self.what, store=self.settings.display, op=op,
             error=error or "in cool-down after an error", fallback=policy)
        if policy == "local":
            return LOCAL
        left = max(0.0, self._down_until - time.monotonic())
        raise StoreUnavailable(
            f"{self.what} store {self.settings.display} is unavailable ({error or 'it failed moments ago'})",
            retry_after=left or self.settings.cooldown_s,
            hint="start Redis or fix its URL (REDIS_URL, or the variable named by the stage's "
                 'store_url_env / url_env); or set on_unavailable = "local" to carry on with '
                 "in-process state during outages")

    def _recovered(self) -> None:
        with self._lock:
            if self._healthy:
                return
            self._healthy = True
            outage = time.monotonic() - self._since
        logger.warning("%s store %s answers again (after %.1fs)", self.what, self.settings.display, outage)

    def __repr__(self) -> str:
        return f"RedisGuard({self.settings.display}, healthy={self._healthy})"
