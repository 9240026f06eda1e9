"""The ``rate_limit`` stage: requests and tokens per window, per key, FIFO, paced, deadline-aware.

Before each call the stage books a slot in a sliding-window log (``policies.admission``) for
one request and its estimated tokens (prompt estimate + ``max_tokens``); requests are paced by
a GCRA (``burst_s``: at most one second's worth at once by default); callers then sleep until
their slot, in the order they booked, holding no lock. A slot later than the call's deadline
is refused at once with ``RateLimited`` (``retry_after`` = the wait needed). After the call the
booking is corrected to the real usage (a stream: booked when it starts, corrected from the
final usage when it ends).

The stage adapts to the provider (``adapt``): a 429 pauses every caller of that key for its
``Retry-After`` (or until its headers say capacity is back), lifted as soon as the provider
accepts a request sent after the 429'd one; ``remaining: 0`` pauses callers
until enough has refilled. Only asks up to ``max_pause_s`` (60 s) pause others: a longer one
(a daily quota) pauses nobody, is logged once, and the call that got it is retried with
retry's own backoff, as the official SDKs do. The provider's rates are
learned from limit, remaining and reset together (``policies.learned``, no minute assumed)
and lower the configured ones, unless ``limits = "configured"``. State lives behind a
``RateLimitStore`` (memory here; a shared store lets several processes share one budget).
"""

from __future__ import annotations

import dataclasses
import logging
import math
import re
from collections.abc import Callable, Mapping
from functools import partial
from typing import Any, Literal

from pydantic import Field

from .._attempt import RateLimitHints
from .._clock import REAL_CLOCK, Clock, time_left
from .._events import emit
from .._exceptions import RateLimited
from .._models import LLMRequest, LLMResponse
from .._stream import on_final_async
from .._tokens import get_estimator
from .._types import Next
from ..hookspecs import hookimpl
from ..policies.admission import RateLimits, Reservation
from ..policies.headers import rate_limit_hints
from ..policies.learned import LimitLearner
from ..stores._shared import SharedStateOptions, store_deadline
from ..stores.base import RateLimitStore, open_rate_limit_store
from ..stores.memory import MemoryRateLimitStore

_log = logging.getLogger("llmchain.rate_limit")
_REMAINING = (
    ("x-ratelimit-remaining-requests", "x-ratelimit-remaining-tokens", "x-ratelimit-limit-requests",
     "x-ratelimit-limit-tokens"),
    ("anthropic-ratelimit-requests-remaining", "anthropic-ratelimit-tokens-remaining",
     "anthropic-ratelimit-requests-limit", "anthropic-ratelimit-tokens-limit"),
)


def _int(value: str | None) -> int | None:
    if value is None:
        return None
    try:
        return int(value)
    except ValueError:
        try:
            return int(float(value))
        except (ValueError, OverflowError):
            return None


class RateLimitMiddleware:
    """Keep calls within requests- and tokens-per-minute limits, waiting in FIFO order."""

    name = kind = "rate_limit"
    #: What this stage does, as data: order hints and other stages go by roles, never by names.
    roles = frozenset({"rate_limit"})
    #: Streamed calls pass through ``handle`` like any other (see docs/stages/rate_limit.md, "Streams").
    handles_streams = True

    class Options(SharedStateOptions):

        rpm: int | None = Field(None, ge=1, description="Requests allowed per period_s (per minute by default); None: not limited unless learned from headers.")  # noqa: E501
        tpm: int | None = Field(None, ge=1, description="Tokens (prompt estimate + max_tokens) allowed per period_s.")  # noqa: E501
        period_s: float = Field(60.0, gt=0, description="The sliding window the limits apply to.")
        key: Literal["model", "global"] = Field("model", description="One budget per model, or one for all calls through this stage.")  # noqa: E501
        tokenizer: str = Field("auto", description='"auto" (tiktoken if installed, else the heuristic), "heuristic", or a tiktoken encoding name.')  # noqa: E501
        output_tokens: int = Field(256, ge=0, description="Output tokens booked when a request sets no max_tokens.")  # noqa: E501
        max_wait_s: float | None = Field(None, ge=0, description="Longest wait for a slot even when the deadline allows more; None: only the deadline bounds it.")  # noqa: E501
        pause_s: float = Field(0.0, ge=0, description="How long every caller pauses after a provider 429 that says nothing about when to retry (no Retry-After, no rate-limit headers); 0: nobody else pauses, each caller's retry backs off on its own, as the SDKs do.")  # noqa: E501
        max_pause_s: float = Field(60.0, ge=0, description="Longest pause the limiter imposes on every caller after a 429 or remaining: 0 (as retry's max_retry_after_s). A longer ask pauses nobody (as with the official SDKs): it is logged once as a warning, the call that got it is retried with retry's own backoff, and its RateLimited carries server_asked_s.")  # noqa: E501
        adapt: bool = Field(True, description="Follow the provider's 429s and rate-limit headers.")
        limits: Literal["learn", "configured"] = Field("learn", description='"learn": the rates the provider\'s headers imply (limit, remaining and reset together) lower the configured ones; "configured": rpm/tpm are authoritative (429s and remaining: 0 still pause).')  # noqa: E501
        burst_s: float | None = Field(1.0, ge=0, description="Pacing: requests are spread at the limit's rate with at most this many seconds' worth at once (1.0 = 1/60 of a per-minute limit, at least one call). 0 or None: no pacing, a whole window's limit may go at once.")  # noqa: E501

    def __init__(
        self,
        options: Options | None = None,
        *,
        clock: Clock = REAL_CLOCK,
        store: RateLimitStore | None = None,
    ) -> None:
        self.options = o = options or self.Options()
        self._clock = clock
        self.store = store or open_rate_limit_store(o.store, share=o.share, url=o.store_address())
        #: a shared store's I/O is bounded by the call's deadline (memory answers at once)
        self._shared = not isinstance(self.store, MemoryRateLimitStore)
        self._limits = RateLimits(o.rpm, o.tpm, o.period_s, o.burst_s or None)
        self._effective: dict[str, RateLimits] = {}  # per key, from what the provider reported
        self._learners: dict[str, LimitLearner] = {}
        self._warned: set[tuple[str, str]] = set()  # contradictions already logged, per key
        self._long_asks: set[str] = set()  # keys whose over-long server ask was logged
        self._last_pause: dict[str, tuple[float, float]] = {}  # key: (began, seconds), this process
        self._accepted_sent: dict[str, float] = {}  # key: when the latest accepted request was sent
        self._liftable: dict[str, tuple[float, float]] = {}  # key: (429'd request sent, pause end)
        self._unbooked: dict[str, int] = {}  # calls in flight sent before any limit was known
        self._first_learned: dict[str, int] = {}  # of those, to book now that limits are known
        self._per_model = o.key == "model"
        self._adaptive = o.adapt
        self._learn = o.adapt and o.limits == "learn"
        self._estimator = get_estimator(o.tokenizer) if (o.tpm is not None or self._learn) else None

    def limits_for(self, key: str) -> RateLimits:
        """The limits in force for ``key`` (configured, lowered by what the provider reported)."""
        return self._effective.get(key, self._limits)

    async def handle(self, request: LLMRequest, call_next: Next) -> LLMResponse:
        if self._shared:  # a shared store's I/O must end within the call's deadline
            with store_deadline(request, self._clock):
                return await self._handle(request, call_next)
        return await self._handle(request, call_next)

    async def _handle(self, request: LLMRequest, call_next: Next) -> LLMResponse:
        key = (request.model or "default") if self._per_model else "*"
        limits = self._effective.get(key, self._limits)
        tokens = 0
        ticket: object = None
        unbooked = False
        if limits.requests is None and limits.tokens is None:
            # no limit known (yet): an adaptive limiter still holds callers during a pause
            if self._adaptive:
                await self._wait_out_pause(key, request)
            if self._learn:  # sent unbooked: booked once limits are learned (``_book_unbooked``)
                self._unbooked[key] = self._unbooked.get(key, 0) + 1
                unbooked = True
        else:
            if limits.tokens is not None and self._estimator is not None:
                tokens = self._estimator.request_tokens(request, self.options.output_tokens)
            ticket = await self._admit(key, request, tokens, limits)
        sent = self._clock.now()
        try:
            response = await call_next(request)
        except RateLimited as exc:
            if self._adaptive and exc.status_code == 429:
                # everyone pauses: for Retry-After, else until the headers say capacity is back
                headers = getattr(exc, "headers", None)
                refill = self._adapt(key, headers, tokens) if headers else 0.0
                wait = exc.retry_after if exc.retry_after is not None else (refill or self.options.pause_s)
                if wait > self.options.max_pause_s:
                    self._refuse_long_ask(key, wait, "provider_429", exc)
                elif not self._stale(key, sent, wait):
                    await self._pause(key, wait, "provider_429")
                    self._liftable[key] = (sent, self._clock.now() + wait)
            raise
        finally:
            if unbooked:
                self._unbooked[key] -= 1
        if self._adaptive and sent > self._accepted_sent.get(key, -math.inf):
            self._accepted_sent[key] = sent
            liftable = self._liftable.get(key)
            if liftable is not None and sent > liftable[0]:
                await self._lift(key, liftable[1])
        if response.stream is not None:  # booked now; reconciled when the stream ends
            return on_final_async(response, partial(self._stream_end, key, ticket, tokens))
        if tokens and ticket is not None:
            actual = response.usage.total_tokens
            if actual > 0 and actual != tokens:
                await self.store.reconcile(key, ticket, requests=1, tokens=actual)
        if self._adaptive and response.headers:
            await self._follow_headers(key, response.headers, tokens)
        return response

    async def _stream_end(self, key: str, ticket: object, tokens: int, response: LLMResponse) -> LLMResponse:
        """A streamed call's end: correct the booking to the final usage, follow the headers."""
        actual = response.usage.total_tokens
        if tokens and ticket is not None and actual > 0 and actual != tokens:
            try:
                await self.store.reconcile(key, ticket, requests=1, tokens=actual)
            except Exception:  # a store failure must not fail an answer already received
                emit("store_unavailable", "rate_limit", key=key, operation="reconcile")
        if self._adaptive and response.headers:
            await self._follow_headers(key, response.headers, tokens)
        return response

    async def _follow_headers(self, key: str, headers: Mapping[str, str], tokens: int) -> None:
        """Learn the provider's limits from an accepted answer's headers; pause if it says so."""
        learner = self._learners.get(key)
        if learner is not None:  # "never below what the server accepted" needs the count
            learner.accept(self._clock.now(), self._effective.get(key, self._limits).period_s)
        pause = self._adapt(key, headers, tokens)
        if self._first_learned:
            await self._book_unbooked(key)
        if pause > self.options.max_pause_s:
            self._refuse_long_ask(key, pause, "provider_remaining", None)
        elif pause > 0:
            await self._pause(key, pause, "provider_remaining")

    async def _admit(self, key: str, request: LLMRequest, tokens: int, limits: RateLimits) -> object:
        clock, store = self._clock, self.store
        cap = self.options.max_wait_s
        while True:
            left = time_left(request, clock)
            now = clock.now()
            max_wait = left if cap is None else (cap if left is None else min(cap, left))
            res = await store.reserve(key, now, 1, tokens, limits, max_wait)
            if not res.admitted:
                raise self._refused(key, res, left, tokens, limits)
            if res.wait_s <= 0:
                return res.ticket
            emit("rate_limit_wait", "rate_limit", key=key, wait_s=res.wait_s, tokens=tokens)
            try:
                await clock.sleep(res.wait_s)
                paused = await store.paused_for(key, clock.now()) if self.options.adapt else 0.0
            except BaseException:  # cancelled while waiting: give the slot back
                await self._release(key, res.ticket)
                raise
            if paused <= 0:
                return res.ticket
            # a 429 arrived while we slept: re-book behind the pause instead of sending into it
            await self._release(key, res.ticket)

    async def _wait_out_pause(self, key: str, request: LLMRequest) -> None:
        clock = self._clock
        while True:
            paused = await self.store.paused_for(key, clock.now())
            if paused <= 0:
                return
            left = time_left(request, clock)
            cap = self.options.max_wait_s
            if (left is not None and paused >= left) or (cap is not None and paused > cap):
                raise self._refused(key, Reservation(False, paused, None, "paused"), left, 0,
                                    self._limits)
            emit("rate_limit_wait", "rate_limit", key=key, wait_s=paused, tokens=0)
            await clock.sleep(paused)

    async def _release(self, key: str, ticket: object) -> None:
        try:
            await self.store.reconcile(key, ticket, requests=0, tokens=0)
        except Exception:  # a store failure must not hide the caller's own error
            emit("store_unavailable", "rate_limit", key=key, operation="release")

    def _refused(self, key: str, res: Reservation, left: float | None, tokens: int,
                 limits: RateLimits) -> RateLimited:
        period = f"{limits.period_s:g}s"
        if res.reason == "too_large":
            return RateLimited(
                f"local rate limiter: this call books ~{tokens} tokens (prompt estimate + "
                f"max_tokens), more than the limit of {limits.tokens} per {period}; it can never "
                "be sent", status_code=None, retryable=False,
                hint="lower max_tokens or shorten the prompt, or raise tpm")
        if left is not None and (self.options.max_wait_s is None or left <= self.options.max_wait_s):
            bound = f"past the call's deadline ({left:.3g}s left)"
        else:
            bound = f"longer than max_wait_s={self.options.max_wait_s:g}"
        if res.reason == "paused":
            what = f"the provider asked callers of {key!r} to pause for {res.wait_s:.3g}s"
        else:
            what = (f"the next slot for {key!r} is {res.wait_s:.3g}s away (limits: {limits.requests} "
                    f"requests / {limits.tokens} tokens per {period})")
        return RateLimited(
            f"local rate limiter: {what}, {bound}; failing fast",
            status_code=None, retry_after=res.wait_s,
            hint="raise rpm/tpm if the provider allows it, send fewer calls at once, or allow a "
                 "longer timeout_s")

    async def _pause(self, key: str, seconds: float, reason: str) -> None:
        """Every caller of ``key`` waits ``seconds`` (at most ``max_pause_s``; longer asks go
        to ``_refuse_long_ask``). Pauses do not stack: the later end wins."""
        if seconds <= 0:
            return
        self._last_pause[key] = (self._clock.now(), seconds)
        emit("rate_limit_wait", "rate_limit", key=key, pause_s=seconds, reason=reason)
        try:
            await self.store.pause(key, self._clock.now(), seconds)
        except Exception:
            emit("store_unavailable", "rate_limit", key=key, operation="pause")

    async def _lift(self, key: str, until: float) -> None:
        """The provider accepted a request sent after the 429 that paused ``key``: its bucket
        was not empty (a random or transient 429), so the pause ends now rather than costing
        every caller the whole ask. A pause a longer ask extended meanwhile stays."""
        self._liftable.pop(key, None)
        now = self._clock.now()
        if until <= now:
            return
        emit("rate_limit_wait", "rate_limit", key=key, pause_s=0.0, reason="pause_lifted")
        try:
            await self.store.resume(key, now, until - now)
        except Exception:
            emit("store_unavailable", "rate_limit", key=key, operation="resume")

    def _stale(self, key: str, sent: float, wait: float) -> bool:
        """Whether a 429 is no reason to pause everyone: a request sent after it was already
        accepted (contradicted: the provider's bucket is not empty, and the learned rate and
        pacing keep the others in line), or it was sent before this process's latest pause of
        ``key`` began and asks no longer than that pause did (it saw the same empty bucket;
        pausing again from now would stack pauses: everyone waits twice)."""
        if self._accepted_sent.get(key, -math.inf) > sent:
            return True  # a request sent after this one was accepted: the bucket is not empty
        last = self._last_pause.get(key)
        return last is not None and sent < last[0] and wait <= last[1]

    def _refuse_long_ask(self, key: str, asked: float, reason: str, error: RateLimited | None) -> None:
        """A server ask longer than ``max_pause_s`` (a daily quota, a misconfigured proxy):
        nobody else pauses, as with the official SDKs (one such answer must not stall every
        caller, let alone for a day); the call that got it is retried with retry's own
        backoff. Said once per key as a warning; the error carries what was asked."""
        cap = self.options.max_pause_s
        emit("rate_limit_pause_refused", "rate_limit", key=key, server_asked_s=asked, reason=reason,
             max_pause_s=cap)
        if key not in self._long_asks:
            self._long_asks.add(key)
            _log.warning("rate_limit: the server asked callers of %r to wait %gs, more than "
                         "max_pause_s=%g; not pausing other calls for it (logged once)", key, asked, cap)
        if error is not None and error.server_asked_s is None:
            error.server_asked_s = asked
            error.message = (f"{error.message} [the server asked callers of {key!r} to wait "
                             f"{asked:g}s, more than max_pause_s={cap:g}: llmchain refused to "
                             "wait that long]")
            error.args = (error.message,)
            error.hint = ("the provider may have a daily or account quota exhausted; check its "
                          "dashboard. Raise max_pause_s (rate_limit) and max_retry_after_s "
                          "(retry) to honour longer asks")

    def _adapt(self, key: str, headers: Mapping[str, str], tokens: int) -> float:
        """Learn the provider's limits from ``headers``; returns how long to pause (0: none).

        What the provider already counts as used is not booked here: its buckets refill
        continuously, and its ``remaining`` reaching zero pauses callers until they have."""
        for names in _REMAINING:
            remaining_r, remaining_t = headers.get(names[0]), headers.get(names[1])
            if remaining_r is not None or remaining_t is not None:
                break
        else:
            return 0.0
        n_r, n_t = _int(remaining_r), _int(remaining_t)
        low = (n_r is not None and n_r <= 0) or (n_t is not None and n_t < max(tokens, 1))
        if not (low or self._learn):
            return 0.0
        hints = rate_limit_hints(headers, self._clock.wall())
        if self._learn:
            self._learn_from(key, hints)
        wait = 0.0
        if n_r is not None and n_r <= 0:
            wait = _refill_wait(1, n_r, hints.limit_requests, hints.reset_requests_s)
        if n_t is not None and n_t < max(tokens, 1):
            wait = max(wait, _refill_wait(max(tokens, 1), n_t, hints.limit_tokens, hints.reset_tokens_s))
        return wait

    def _learn_from(self, key: str, hints: RateLimitHints) -> None:
        learner = self._learners.get(key)
        if learner is None:
            learner = self._learners[key] = LimitLearner()
        cap = max(self.options.max_pause_s, 60.0)  # a minute is always a window worth learning
        if (hints.reset_requests_s or 0) > cap or (hints.reset_tokens_s or 0) > cap:
            # a bucket refilling over more than the pause cap (a daily quota): not a rate to
            # pace by, or one such answer would hold every later call for a day; its
            # remaining: 0 pauses (capped) instead
            r_reset, t_reset = hints.reset_requests_s, hints.reset_tokens_s
            hints = dataclasses.replace(hints, reset_requests_s=None if (r_reset or 0) > cap else r_reset,
                                        reset_tokens_s=None if (t_reset or 0) > cap else t_reset)
        contradictions = learner.observe(hints)
        limits, note = learner.limits(self._limits, self._clock.now())
        if note is not None:
            contradictions.append(note)
        if limits is not self._limits:
            if key not in self._effective:  # the calls still in flight, and this one
                self._first_learned[key] = self._unbooked.get(key, 0) + 1
            self._effective[key] = limits
        elif key in self._effective:  # the configured limits are the lower ones again
            del self._effective[key]
        for what in contradictions:
            self._warn_once(key, what)

    async def _book_unbooked(self, key: str) -> None:
        """Book the calls sent before limits were known (still in flight, or just answered):
        the provider counts them in its window, so the log must too, or the first admissions
        after learning overshoot by as many."""
        count = self._first_learned.pop(key, 0)
        limits = self._effective.get(key)
        if count <= 0 or limits is None or limits.requests is None:
            return
        try:
            await self.store.reserve(key, self._clock.now(), min(count, limits.requests), 0, limits, 0.0)
        except Exception:  # best effort: remaining: 0 and 429s still pause callers
            emit("store_unavailable", "rate_limit", key=key, operation="book_unbooked")

    def _warn_once(self, key: str, what: str) -> None:
        kind = re.sub(r"[\d.]+", "#", what)  # one log line per kind of contradiction
        if (key, kind) in self._warned:
            return
        self._warned.add((key, kind))
        message = (f"rate_limit: ignoring rate-limit headers for {key!r} that contradict what "
                   f"was observed ({what}); logged once")
        _log.warning(message)
        emit("rate_limit_headers_ignored", "rate_limit", key=key, detail=what)


def _refill_wait(needed: int, remaining: int, limit: int | None, reset_s: float | None) -> float:
    """Seconds until ``needed`` units are back, for a provider bucket refilling linearly to
    ``limit`` in ``reset_s`` (the whole reset when the limit is unknown)."""
    if reset_s is None or reset_s <= 0:
        return 0.0
    if limit is None or limit <= remaining:
        return reset_s
    rate = (limit - remaining) / reset_s
    return min(reset_s, (needed - remaining) / rate)


@hookimpl
def register_middleware(register: Callable[[str, Any], None]) -> None:
    register("rate_limit", RateLimitMiddleware)
