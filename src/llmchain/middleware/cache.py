"""The cache stage: answer repeated requests from a store, and coalesce identical concurrent ones.

Place it outermost-but-one (inside ``log``): what reaches it from inside is already parsed,
validated and repaired. Only successful answers are stored: never an error, never a structured
answer whose ``parsed`` is missing (validation did not run or failed), never one that would put
a secret into the store. The key (see ``_cache_key``) covers transport identity, model,
messages, generation parameters, output schema, namespace and format version.

Streamed calls: a completed stream is stored (the final response, as for any call); a hit is
replayed as a stream, in chunks, so the caller's code is the same; an aborted or failed stream
is never stored; identical concurrent streamed calls coalesce and the followers receive the
leader's answer replayed when its stream completes.

Per-call control, through ``request.metadata``:

* ``{"cache": "bypass"}``: neither read nor write (status ``bypass``);
* ``{"cache": "refresh"}``: skip the read, call, store the new answer (status ``refresh``);
* ``{"cache": "only-if-cached"}``: answer from the cache or raise ``CacheMiss``;
* ``{"cache_ttl_s": 60}``: this answer's time to live.

Store failures never fail a call: the lookup counts as a miss, an event ``store_unavailable`` is
emitted and one warning is logged when the store goes down (and one when it is back).
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable
from functools import partial
from typing import Any, Literal

from pydantic import Field

from .._clock import REAL_CLOCK, Clock, time_left
from .._events import current_call, emit
from .._exceptions import CacheMiss, ConfigError
from .._models import CacheInfo, LLMRequest, LLMResponse, copy_with
from .._redact import contains_secret, redact, trim
from .._stage import StageOptions
from .._stream import at_end, on_final, on_final_async, replay
from .._types import Next
from ..hookspecs import hookimpl
from ..stores._shared import DistributedFlight, store_address
from ..stores.cache_base import CacheEntry, CacheStore, StoreSettings, open_cache_store
from ..stores.cache_memory import MemoryCacheStore
from ._cache_key import cache_key, decode_entry, encode_document, entry_document
from ._singleflight import Flight, LeaderAbandoned, SingleFlight

logger = logging.getLogger("llmchain.cache")
MODES = frozenset({"default", "bypass", "refresh", "only-if-cached"})
_BYPASS = CacheInfo(status="bypass")
_OFF = CacheInfo(status="off")
Shared = tuple[LLMResponse, str | None]


class CacheMiddleware:
    """Serve repeated requests from a cache store; one provider call per set of identical
    concurrent requests (single-flight)."""

    kind = "cache"
    #: What this stage does, as data: order hints and other stages go by roles, never by names.
    roles = frozenset({"cache"})
    #: Streamed calls pass through ``handle`` like any other (see docs/stages/cache.md, "Streams").
    handles_streams = True
    #: Asks the chain to put ``transport.identity()`` in ``request.metadata["llmchain.transport"]``.
    needs_transport_identity = True

    class Options(StageOptions):
        store: str = Field("memory", description='Backend: "memory", "sqlite" (or "redis").')
        path: str = Field("llmchain-cache.sqlite3", description="SQLite file, for store = sqlite.")
        url: str | None = Field(None, description="Server URL, for store = redis (no password: use url_env).")
        url_env: str | None = Field(
            None, description="Environment variable holding the server URL; None: REDIS_URL.")
        on_unavailable: Literal["local", "fail"] = Field(
            "local", description='Redis down: "local" serves from an in-process cache meanwhile, "fail" '
            "goes uncached.")
        ttl_s: float | None = Field(86400.0, gt=0, description="Time to live of an entry; None: no expiry.")
        max_entries: int = Field(10_000, ge=1, description="Entries kept before evicting.")
        max_bytes: int | None = Field(
            None, ge=1, description="Cap on stored JSON size; None: store default (SQLite 256 MiB).")
        namespace: str = Field(
            "default", description="Part of every key: change it to invalidate, or to separate apps.")
        single_flight: bool = Field(True, description="Identical concurrent requests share one call.")
        temperature_policy: Literal["cache", "skip", "seeded"] = Field(
            "cache",
            description='For temperature > 0: "cache" anyway, "skip" the cache, or cache only '
            'when a seed is set ("seeded").')
        store_timeout_s: float = Field(
            1.0, gt=0, description="A store operation slower than this counts as a miss (not memory).")

    def __init__(
        self, options: Options | None = None, *, clock: Clock = REAL_CLOCK, store: CacheStore | None = None
    ) -> None:
        self.options = options = options or self.Options()
        self._clock = clock
        self._owns_store = store is None
        self.store: CacheStore = store if store is not None else open_cache_store(
            StoreSettings(kind=options.store, path=options.path, url=store_address(
                              options.store, options.url, options.url_env, names=("url", "url_env"),
                              on_unavailable=options.on_unavailable,
                              op_timeout_s=options.store_timeout_s / 2),  # its own timeout comes first
                          max_entries=options.max_entries, max_bytes=options.max_bytes,
                          default_ttl_s=options.ttl_s),
            clock,
        )
        self.flights: SingleFlight[Shared] = SingleFlight()
        remote = getattr(self.store, "single_flight", None)  # a shared store coalesces across processes
        self._remote = remote if options.single_flight and isinstance(remote, DistributedFlight) else None
        self._store_ok = True
        # Only this stage's flights write to a memory store it made itself (see ``_lead``); a
        # subclass or a store passed in may have other writers.
        self._private = self._owns_store and type(self.store) is MemoryCacheStore

    # -- the stage --------------------------------------------------------------------------------

    async def handle(self, request: LLMRequest, call_next: Next) -> LLMResponse:
        if request.stream:  # hits and coalesced answers are replayed as a stream
            response = await self._handle(request, call_next)
            return response if response.stream is not None else replay(response, self._clock.now())
        return await self._handle(request, call_next)

    async def _handle(self, request: LLMRequest, call_next: Next) -> LLMResponse:
        meta = request.metadata
        mode = meta.get("cache", "default") if meta else "default"
        if not isinstance(mode, str) or mode not in MODES:
            raise ConfigError(f"metadata cache={mode!r} is not one of {sorted(MODES)}")
        ttl = meta.get("cache_ttl_s") if meta else None
        if ttl is not None and (isinstance(ttl, bool) or not isinstance(ttl, (int, float)) or ttl <= 0):
            raise ConfigError(f"metadata cache_ttl_s={ttl!r} must be a number of seconds > 0")
        if mode == "bypass":
            return on_final(await call_next(request), partial(_with_info, info=_BYPASS))
        if request.embed_input is not None:  # one entry per text
            from ._embed_cache import embed_with_cache

            return await embed_with_cache(self, request, call_next, mode)
        if not self._policy_allows(request):
            return on_final(await call_next(request), partial(_with_info, info=_OFF))
        key = cache_key(request, self.options.namespace)
        landed = self.flights.landed  # read before the lookup: see _lead
        if mode != "refresh":
            entry = await self._get(key, request)
            hit = self._hit(entry, key, request) if entry is not None else None
            if hit is not None:
                return hit
            if mode == "only-if-cached":
                raise CacheMiss("the answer is not in the cache and metadata says only-if-cached",
                                request_id=request.request_id,
                                hint="drop metadata cache='only-if-cached' to let the call through")
        emit("cache_miss", "cache", key=key)
        status: Literal["miss", "refresh"] = "refresh" if mode == "refresh" else "miss"
        if not self.options.single_flight:
            response = await call_next(request)
            if response.stream is not None:
                return on_final_async(response, partial(self._store_stream, key, request, status))
            await self._put(key, request, *self._entry_value(request, response))
            return copy_with(response, {"cache": CacheInfo(status=status, key=key)})
        while True:
            flight, leader = self.flights.join(key, request.request_id)
            if leader:
                return await self._lead(key, flight, request, call_next, status, landed)
            emit("singleflight_wait", "cache", key=key, leader=flight.leader_id)
            try:
                response, value = await self.flights.wait(flight, request, self._clock)
            except LeaderAbandoned:
                continue  # the leader stopped for its own reasons: lead or join a new flight
            return self._shared(response, value, key, request, flight.leader_id)

    async def _lead(self, key: str, flight: Flight[Shared], request: LLMRequest, call_next: Next,
                    status: Literal["miss", "refresh"], landed: int = -1) -> LLMResponse:
        lease = None
        streaming = False
        try:
            # Another flight may have stored it since our lookup. In a private memory store only
            # our flights write, and each stores before it lands: none landed, nothing to find.
            if status == "miss" and not (self._private and self.flights.landed == landed):
                entry = await self._get(key, request)
                if entry is None and self._remote is not None:  # or is making it in another process
                    entry, lease = await self._remote.claim(key, request, self._clock)
                hit = self._hit(entry, key, request) if entry is not None else None
                if hit is not None and entry is not None:
                    self.flights.resolve(flight, (hit, entry.value))
                    return hit
            try:
                response = await call_next(request)
            except BaseException as exc:
                self.flights.fail(flight, exc if self._shareable(exc, request) else LeaderAbandoned())
                raise
            if response.stream is not None:  # the flight lands when the stream ends
                streaming = True
                return self._lead_stream(key, flight, request, status, response, lease)
            value, reason = self._entry_value(request, response)
            self.flights.resolve(flight, (response, value))  # waiters go on; we store meanwhile
            await self._put(key, request, value, reason)
            return copy_with(response, {"cache": CacheInfo(status=status, key=key)})
        finally:
            if not streaming:
                await self._land(key, flight, lease)

    async def _land(self, key: str, flight: Flight[Shared], lease: Any) -> None:
        self.flights.leave(key, flight)
        if lease is not None and self._remote is not None:
            await self._remote.release(lease)

    def _lead_stream(self, key: str, flight: Flight[Shared], request: LLMRequest,
                     status: Literal["miss", "refresh"], response: LLMResponse, lease: Any) -> LLMResponse:
        """A streamed miss: chunks go to the caller as they come; only a completed stream is
        stored and handed to the followers (who replay it); a failed or closed one never is."""
        async def ended(final: LLMResponse) -> LLMResponse:
            try:
                value, reason = self._entry_value(request, final)
                self.flights.resolve(flight, (final, value))
                await self._put(key, request, value, reason)
            finally:
                await self._land(key, flight, lease)
            return copy_with(final, {"cache": CacheInfo(status=status, key=key)})

        async def failed(error: BaseException | None) -> None:
            shareable = error is not None and self._shareable(error, request)
            self.flights.fail(flight, error if shareable and error is not None else LeaderAbandoned())
            await self._land(key, flight, lease)

        response.stream.pipe(lambda events: at_end(events, ended, failed))
        return response

    async def _store_stream(self, key: str, request: LLMRequest, status: Literal["miss", "refresh"],
                            final: LLMResponse) -> LLMResponse:
        await self._put(key, request, *self._entry_value(request, final))
        return copy_with(final, {"cache": CacheInfo(status=status, key=key)})

    def _shareable(self, exc: BaseException, request: LLMRequest) -> bool:
        """Whether waiters should get the leader's error (not if it was the leader's own end)."""
        if not isinstance(exc, Exception):
            return False  # cancelled, interrupted
        left = time_left(request, self._clock)
        return left is None or left > 0

    def _shared(self, response: LLMResponse, value: str | None, key: str, request: LLMRequest,
                leader_id: str) -> LLMResponse:
        info = CacheInfo(status="hit", age_s=0.0, key=key)
        if value is not None:
            entry = CacheEntry(value, self._clock.wall(), None)
            hit = self._hit(entry, key, request)
            if hit is not None:
                return copy_with(hit, {"cache": info, "notes": {"coalesced_with": leader_id}})
        return copy_with(response, {
            "cache": info, "notes": {**response.notes, "coalesced_with": leader_id},
            "headers": dict(response.headers)})

    # -- policy -----------------------------------------------------------------------------------

    def _policy_allows(self, request: LLMRequest) -> bool:
        policy = self.options.temperature_policy
        if policy == "cache" or request.temperature is None or request.temperature <= 0:
            return True
        return policy == "seeded" and request.seed is not None

    def _entry_value(self, request: LLMRequest, response: LLMResponse) -> tuple[str | None, str | None]:
        """(JSON to store, None) or (None, why not)."""
        if request.output_schema is not None or request.output_type is not None:
            if response.parsed is None:
                return None, "not validated"
            if request.output_type is not None and not isinstance(response.parsed, request.output_type):
                return None, "not validated"
        document = entry_document(response)
        if response.served_by is None:  # the chain fills it only on the way out
            trace = current_call.get()
            if trace is not None and trace.attempts:
                document["served_by"] = trace.attempts[-1].served_by
        if contains_secret(document):  # checked before encoding: JSON escapes can hide one
            return None, "contains a secret"  # storing it would put the secret on disk
        value = encode_document(document)
        if value is None:
            return None, "not JSON-serialisable"
        return value, None

    # -- store access -----------------------------------------------------------------------------

    def _hit(self, entry: CacheEntry, key: str, request: LLMRequest) -> LLMResponse | None:
        decoded = entry.decoded
        try:
            if decoded is None:
                decoded = entry.decoded = decode_entry(entry.value)
            parsed = decoded.template.parsed
            if decoded.parsed_json is not None:
                parsed = json.loads(decoded.parsed_json)  # a fresh object for every caller
            if request.output_type is not None:
                parsed = request.output_type.model_validate(parsed)
        except Exception as exc:  # an entry from another version or a changed model: a miss
            logger.debug("ignoring unreadable cache entry %s: %s", key, exc)
            return None
        age = max(0.0, self._clock.wall() - entry.created_at)
        emit("cache_hit", "cache", key=key, age_s=age)
        hit: LLMResponse = copy_with(decoded.template, {
            "parsed": parsed, "cache": CacheInfo(status="hit", age_s=age, key=key),
            "headers": {}, "notes": {}})
        return hit

    async def _get(self, key: str, request: LLMRequest) -> CacheEntry | None:
        store = self.store
        try:
            if store.nonblocking:
                entry = await store.get(key)
            else:
                entry = await asyncio.wait_for(store.get(key), self._op_timeout(request))
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            self._store_failed("get", exc)
            return None
        self._store_back()
        return entry

    async def _put(self, key: str, request: LLMRequest, value: str | None, reason: str | None) -> None:
        if value is None:
            emit("cache_store", "cache", key=key, stored=False, reason=reason)
            return
        ttl = request.metadata.get("cache_ttl_s", self.options.ttl_s)
        store = self.store
        try:
            if store.nonblocking:
                await store.set(key, value, ttl)
            else:
                await asyncio.wait_for(store.set(key, value, ttl), self._op_timeout(request))
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            self._store_failed("set", exc)
            return
        self._store_back()
        emit("cache_store", "cache", key=key, stored=True, ttl_s=ttl)

    def _op_timeout(self, request: LLMRequest) -> float:
        left = time_left(request, self._clock)
        return self.options.store_timeout_s if left is None else min(left, self.options.store_timeout_s)

    def _store_failed(self, op: str, exc: Exception) -> None:
        error = trim(redact(f"{type(exc).__name__}: {exc}"), 200)
        emit("store_unavailable", "cache", store=self.store.name, op=op, error=error)
        if self._store_ok:
            self._store_ok = False
            logger.warning("cache store %s failed (%s); calls go through uncached: %s",
                           self.store.name, op, error)

    def _store_back(self) -> None:
        if not self._store_ok:
            self._store_ok = True
            logger.warning("cache store %s works again", self.store.name)

    async def aclose(self) -> None:
        if self._owns_store:
            await self.store.aclose()

    def __repr__(self) -> str:
        return f"CacheMiddleware(store={self.store!r}, in_flight={self.flights.in_flight()})"


def _with_info(response: LLMResponse, info: CacheInfo) -> LLMResponse:
    return copy_with(response, {"cache": info})


@hookimpl
def register_middleware(register: Callable[[str, Any], None]) -> None:
    register("cache", CacheMiddleware)
