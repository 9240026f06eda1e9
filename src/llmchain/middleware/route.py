"""The ``route`` stage: spread calls over several deployments of a model.

A deployment is a transport table (another key, region, provider or base URL) plus optional
limits and a weight. Each has its own ``circuit_breaker`` and ``rate_limit`` stage, built
through the registry like any stage, and its own cool-down. Per call the stage

1. drops deployments whose context window cannot hold the estimated tokens (prompt estimate +
   ``max_tokens``, as ``rate_limit`` estimates them), and those cooling down;
2. ranks the rest by ``strategy``: ``weighted_random``, ``least_in_flight``, ``lowest_latency``
   (EWMA of recent successes) or ``most_headroom`` (the provider's rate-limit headers and the
   recent load against ``rpm``);
3. sends to the first; a deployment whose limiter has no room *now* is passed over at no cost;
   one that fails (429, 5xx, connect errors, timeouts, 401/403, an open breaker) cools down
   (``Retry-After``, else ``cooldown_s``) and the next is tried at once: one deployment's
   failures never hold the others back. A ``context_length_exceeded`` answer moves the call to
   a deployment with a larger window. When every deployment is at its limit the call waits for
   the earliest one that frees up, within its deadline (and ``max_wait_s``).

The answer's ``served_by`` is the deployment's name and ``notes["route"]`` says why it was
chosen (and what was skipped), which the ``log`` stage prints. State (in flight, latency,
load, cool-downs, header headroom) is in memory or, with ``store = "redis"``, shared by every
process; so are the deployments' limiters and breakers.

A deployment with a ``transport`` table is called directly (behind its own breaker and
limiter); one without uses the chain's own transport, through the stages inside ``route``.
Put ``route`` innermost, with ``retry`` and ``fallback`` outside it (a retry picks again; a
fallback catches what no deployment could answer), ``cache`` and ``budget`` further out.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable, Mapping
from functools import partial
from typing import Any, Literal

from pydantic import Field, model_validator

from .._clock import REAL_CLOCK, Clock, time_left
from .._compose import TransportCall, compose
from .._events import emit
from .._exceptions import (
    CallError,
    CircuitOpen,
    ConfigError,
    GaveUp,
    ProviderError,
    RateLimited,
    TimeoutExceeded,
    TransportError,
)
from .._models import LLMRequest, LLMResponse, copy_with
from .._stage import StageOptions
from .._stream import on_final
from .._tokens import get_estimator
from .._types import Middleware, Next, Transport
from ..hookspecs import hookimpl
from ..policies.routing import Candidate, Strategy, header_headroom, headroom, order
from ..stores._shared import SharedStateOptions, store_deadline
from ..stores.base import open_store
from ..stores.route_state import RouteStateStore


class Deployment(StageOptions):
    """One deployment (a ``[[stages.deployments]]`` table)."""

    name: str = Field(description="Label in served_by, logs and shared state.")
    transport: dict[str, Any] | None = Field(None, description="A table like [transport]: use = ..., its options; none: the chain's own transport (through the stages inside route).")  # noqa: E501
    model: str | None = Field(None, description="Model to ask this deployment for; None: the request's, else the transport's.")  # noqa: E501
    weight: float = Field(1.0, gt=0, description="Share of calls (weighted_random) and tie-breaker for the others.")  # noqa: E501
    rpm: int | None = Field(None, ge=1, description="Requests per minute this deployment allows.")
    tpm: int | None = Field(None, ge=1, description="Tokens per minute this deployment allows.")
    burst_s: float | None = Field(1.0, ge=0, description="As rate_limit's: pacing, at most this many seconds' worth of rpm at once; 0: a whole minute's quota may go at once.")  # noqa: E501
    context_window: int | None = Field(None, ge=1, description="Tokens it accepts (prompt + max_tokens); None: unknown.")  # noqa: E501
    cooldown_s: float | None = Field(None, gt=0, description="Cool-down after a failure without Retry-After; None: the stage's.")  # noqa: E501
    breaker: dict[str, Any] | Literal[False] = Field(default_factory=dict, description="circuit_breaker options for this deployment; false: none.")  # noqa: E501


class RouteMiddleware:
    """Send each call to one of several deployments, chosen by a strategy, skipping failed ones."""

    name = kind = "route"
    roles = frozenset({"route"})
    #: A failure before a stream's first chunk moves to the next deployment like any failure;
    #: the deployment's label is put on the stream's final response when it ends.
    handles_streams = True

    class Options(SharedStateOptions):
        deployments: list[Deployment] = Field(min_length=1, description="Where calls may go.")
        strategy: Strategy = Field("weighted_random", description="How deployments are ranked.")
        cooldown_s: float = Field(5.0, gt=0, description="How long a failed deployment is skipped when it gave no Retry-After.")  # noqa: E501
        latency_alpha: float = Field(0.3, gt=0, le=1, description="Weight of the newest latency in the EWMA.")
        max_wait_s: float | None = Field(None, ge=0, description="Longest wait for a deployment to free up; None: the deadline bounds it.")  # noqa: E501
        tokenizer: str = Field("auto", description="As rate_limit's: how prompt tokens are estimated.")
        output_tokens: int = Field(256, ge=0, description="Output tokens estimated when a request sets no max_tokens.")  # noqa: E501
        seed: int | None = Field(None, description="Seed of the random choices; None: random.")

        @model_validator(mode="after")
        def _distinct(self) -> RouteMiddleware.Options:
            names = [d.name for d in self.deployments]
            if len(set(names)) != len(names):
                raise ValueError(f"deployment names must be distinct, got {names}")
            return self

    def __init__(self, options: Options, *, clock: Clock = REAL_CLOCK, rng: random.Random | None = None,
                 state: RouteStateStore | None = None,
                 transports: Mapping[str, Transport] | None = None) -> None:
        """``transports``: built transports by deployment name, used instead of building the
        deployment's ``transport`` table (code and tests)."""
        self.options = o = options
        self._clock = clock
        self._rng = rng or random.Random(o.seed)
        self.state = state or open_store("route", o.store, share=o.share, url=o.store_address())
        self._shared = o.store != "memory"
        self._estimator = get_estimator(o.tokenizer)
        self._windows = any(d.context_window is not None for d in o.deployments)
        given = dict(transports or {})
        unknown = sorted(set(given) - {d.name for d in o.deployments})
        if unknown:
            raise ConfigError(f"route: transports given for unknown deployment(s) {unknown}")
        self.deployments = {d.name: _Built(d, o, clock, given.get(d.name)) for d in o.deployments}
        self._names = tuple(self.deployments)

    async def handle(self, request: LLMRequest, call_next: Next) -> LLMResponse:
        if self._shared:
            with store_deadline(request, self._clock):
                return await self._route(request, call_next)
        return await self._route(request, call_next)

    async def _route(self, request: LLMRequest, call_next: Next) -> LLMResponse:
        clock, o = self._clock, self.options
        needed = self._estimator.request_tokens(request, o.output_tokens) if self._windows else 0
        tried: set[str] = set()
        skipped: list[str] = []
        errors: list[CallError] = []
        min_window = 0  # after context_length_exceeded: only larger windows
        while True:
            now = clock.wall()
            states = await self.state.snapshot(self._names, now)
            fitting = [b for b in self.deployments.values()
                       if b.name not in tried and b.fits(needed, min_window)]
            if not fitting:
                raise self._nothing_fits(needed, errors, skipped)
            ready = [b for b in fitting if states[b.name].cool_until <= now]
            waits = [states[b.name].cool_until - now for b in fitting if states[b.name].cool_until > now]
            candidates = [Candidate(b.name, b.spec.weight, states[b.name].in_flight, states[b.name].latency_s,
                                    headroom(states[b.name], b.spec.rpm, now)) for b in ready]
            for candidate, reason in order(o.strategy, candidates, self._rng):
                built = self.deployments[candidate.name]
                outcome = await self._try(built, request, call_next)
                if isinstance(outcome, LLMResponse):
                    why = reason if not skipped else f"{reason}; after {', '.join(skipped)}"
                    emit("route", "route", deployment=built.name, reason=why)
                    note = {"deployment": built.name, "strategy": o.strategy, "reason": reason,
                            "skipped": list(skipped)}
                    return on_final(outcome, partial(_labelled, name=built.name, note=note))
                if isinstance(outcome, float):  # its limiter has no room now: no cost, try later
                    waits.append(outcome)
                    skipped.append(f"{built.name}: at its limit")
                    continue
                errors.append(outcome)
                tried.add(built.name)
                skipped.append(f"{built.name}: {type(outcome).__name__}")
                if _context_exceeded(outcome):
                    min_window = max(min_window, built.spec.context_window or needed)
                    break  # re-rank among the larger windows
                if not _deployment_problem(outcome):
                    raise outcome  # the request itself is wrong: no deployment will take it
            else:
                if not waits:  # every fitting deployment failed (ready ones were all tried)
                    raise self._gave_up(errors, skipped)
                cooling = [f"{b.name}: cooling down" for b in fitting if states[b.name].cool_until > now]
                await self._wait(request, min(waits), errors, skipped + cooling)

    async def _try(self, built: _Built, request: LLMRequest,
                   call_next: Next) -> LLMResponse | float | CallError:
        """The answer; or the wait until its limiter has room; or the error it failed with."""
        clock = self._clock
        model = built.spec.model if built.spec.model is not None else request.model
        sent = copy_with(request, {"model": model}) if model != request.model else request
        await self.state.start(built.name, clock.wall())
        t0 = clock.now()
        latency = cool = hint = None
        outcome: LLMResponse | float | CallError
        try:
            entry = built.entry if built.entry is not None else compose(built.stages, call_next)
            response = await entry(sent)
        except CallError as exc:
            outcome = exc
            if isinstance(exc, RateLimited) and exc.status_code is None:  # our limiter: nothing sent
                # room later: wait for it, no cool-down. A call larger than the deployment's
                # whole tpm (no retry_after) is passed over like a failure, but not cooled down.
                if exc.retry_after is not None:
                    outcome = exc.retry_after
            elif _deployment_problem(exc) and not _context_exceeded(exc):
                cool = clock.wall() + (exc.retry_after or built.cooldown_s)
                headers = getattr(exc, "headers", None)
                hint = header_headroom(headers) if headers else None
        except BaseException:
            await self._finish(built.name, None, None, None)
            raise
        else:
            outcome = response
            latency = clock.now() - t0
            hint = header_headroom(response.headers) if response.headers else None
        await self._finish(built.name, latency, cool, hint)
        return outcome

    async def _finish(self, name: str, latency: float | None, cool: float | None, hint: float | None) -> None:
        try:
            await asyncio.shield(self.state.finish(name, self._clock.wall(), latency_s=latency,
                                                   alpha=self.options.latency_alpha, cool_until=cool,
                                                   header_headroom=hint))
        except Exception:  # bookkeeping must not replace the call's own outcome
            emit("store_unavailable", "route", operation="finish")

    async def _wait(self, request: LLMRequest, wait: float, errors: list[CallError],
                    skipped: list[str]) -> None:
        left = time_left(request, self._clock)
        cap = self.options.max_wait_s
        if (left is not None and wait >= left) or (cap is not None and wait > cap):
            if errors:
                raise self._gave_up(errors, skipped)
            raise RateLimited(
                f"route: every deployment is at its limit or cooling down; the first frees up in "
                f"{wait:.3g}s, past the call's deadline or max_wait_s", status_code=None, retry_after=wait,
                hint="add deployments, raise their rpm/tpm if the providers allow it, or allow a "
                     "longer timeout_s")
        emit("route_wait", "route", wait_s=wait)
        await self._clock.sleep(max(wait, 0.0))

    def _nothing_fits(self, needed: int, errors: list[CallError], skipped: list[str]) -> CallError:
        if errors:
            return self._gave_up(errors, skipped)
        windows = {b.name: b.spec.context_window for b in self.deployments.values()}
        return ProviderError(
            f"route: no deployment's context window holds this call (~{needed} tokens: prompt estimate + "
            f"max_tokens); windows: {windows}", status_code=None, retryable=False,
            hint="shorten the prompt, lower max_tokens, or add a deployment with a larger context_window")

    def _gave_up(self, errors: list[CallError], skipped: list[str]) -> CallError:
        if not errors:
            return CallError("route: no deployment could take this call", retryable=False)
        if len(errors) == 1 and len(self.deployments) == 1:
            return errors[0]  # nothing was routed around: the deployment's own error says it best
        # else a GaveUp even for one error: the others were cooling down or at their limit, and
        # a fallback stage must see "no deployment could answer", not the last one's 401
        last = errors[-1]
        gave_up = GaveUp(f"route: no deployment could answer ({', '.join(skipped)}); last error: "
                         f"{type(last).__name__}: {last.message}", errors=errors, retry_after=min(
                             (e.retry_after for e in errors if e.retry_after is not None), default=None),
                         retryable=any(e.retryable for e in errors),
                         hint="each deployment cools down and is tried again once it recovers")
        gave_up.__cause__ = last
        return gave_up

    async def aclose(self) -> None:
        for built in self.deployments.values():
            if built.transport is not None:
                await built.transport.aclose()


class _Built:
    """A deployment, built: its transport behind its own breaker and limiter."""

    __slots__ = ("cooldown_s", "entry", "name", "spec", "stages", "transport")

    def __init__(self, spec: Deployment, o: RouteMiddleware.Options, clock: Clock,
                 transport: Transport | None) -> None:
        from .._build import build_stage, build_transport
        from ..plugins import current_registry

        registry = current_registry()  # the chain's own: its plugins, nobody else's
        where = f"route deployment {spec.name!r}"
        self.spec, self.name = spec, spec.name
        self.cooldown_s = spec.cooldown_s or o.cooldown_s
        if transport is None and spec.transport is not None:
            transport = build_transport(spec.transport, registry, clock, where)
        self.transport: Transport | None = transport  # None: the chain's, through call_next
        # shared state is keyed by route share + deployment, so deployments never share a budget
        share = f"route:{o.share or 'default'}:{spec.name}" if (o.share or o.store != "memory") else None
        store = {"store": o.store, "share": share, "store_url": o.store_url, "store_url_env": o.store_url_env,
                 "on_unavailable": o.on_unavailable, "store_timeout_s": o.store_timeout_s}
        stages: list[Middleware] = []
        if spec.breaker is not False:
            breaker = build_stage({"use": "circuit_breaker", **store, **spec.breaker},
                                  0, registry, clock, where)
            if breaker is not None:
                stages.append(breaker[2])
        limiter = build_stage({"use": "rate_limit", **store, "rpm": spec.rpm,
                               "tpm": spec.tpm, "burst_s": spec.burst_s,
                               "tokenizer": o.tokenizer, "output_tokens": o.output_tokens, "max_wait_s": 0},
                              1, registry, clock, where)
        if limiter is not None:
            stages.append(limiter[2])
        self.stages = stages
        self.entry = compose(stages, TransportCall(transport, clock)) if transport is not None else None

    def fits(self, needed: int, min_window: int) -> bool:
        window = self.spec.context_window
        if min_window and (window is None or window <= min_window):
            return False
        return window is None or needed <= window


def _context_exceeded(error: CallError) -> bool:
    """The provider said the prompt does not fit this model's context window."""
    if not isinstance(error, ProviderError) or error.status_code not in (400, 413):
        return False
    text = f"{error.message} {error.body or ''}".lower()
    return "context_length_exceeded" in text or "context length" in text or "maximum context" in text


def _deployment_problem(error: CallError) -> bool:
    """A failure of the deployment (skip it for a while), not of the request."""
    if isinstance(error, GaveUp) and error.errors:
        error = error.errors[-1]
    if isinstance(error, TimeoutExceeded):
        return error.phase == "attempt"
    if isinstance(error, (RateLimited, CircuitOpen, TransportError)):
        return True
    if isinstance(error, ProviderError):
        status = error.status_code
        return (status is None or status >= 500 or status in (401, 403, 404, 408, 409)
                or _context_exceeded(error))
    return error.retryable


@hookimpl
def register_middleware(register: Callable[[str, Any], None]) -> None:
    register("route", RouteMiddleware)


def _labelled(response: LLMResponse, *, name: str, note: dict[str, Any]) -> LLMResponse:
    """The answer labelled with the deployment that gave it (a deployment on the chain's
    transport may already be labelled by a stage inside)."""
    return copy_with(response, {"served_by": response.served_by or name,
                                "notes": {**response.notes, "route": note}})
