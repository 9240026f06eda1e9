"""The ``fallback`` stage: when the primary fails in a listed way, try alternatives in order.

An alternative is either

* a **model** (``"gpt-4o-mini"`` or ``{model = "..."}``): the same request with ``model``
  changed goes through the same inner stages and transport (so retry, rate limiting and the
  breaker apply to it too, each keyed by the new model); or
* a **transport** (``{transport = {use = "anthropic", ...}, stages = ["retry"], model = "..."}``):
  built through the plugin registry when the chain is built, and called through its own
  ``stages`` (none by default) and the pinned attempt recorder, bounded by the same deadline.

An alternative is tried only for errors matching ``on`` (looking through a ``GaveUp`` to the
error that ended it) and only while the call has time left. The response's ``served_by`` names
the one that answered, and ``notes["fallback"]`` lists what failed before it. When every
alternative fails, ``GaveUp`` carries each error; a non-matching error is raised as it is.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import partial
from typing import Any, Literal

from pydantic import Field, model_validator

from .._clock import REAL_CLOCK, Clock, time_left
from .._compose import TransportCall, compose
from .._events import current_attempts, current_call, emit
from .._exceptions import (
    CallError,
    CircuitOpen,
    GaveUp,
    ProviderError,
    RateLimited,
    TimeoutExceeded,
    TransportError,
)
from .._models import LLMRequest, LLMResponse
from .._stage import StageOptions
from .._stream import on_final
from .._types import Next, Transport
from ..hookspecs import hookimpl

FallbackOn = Literal[
    "circuit_open", "rate_limited", "server_error", "timeout", "transport_error", "gave_up", "any"
]
DEFAULT_ON: tuple[FallbackOn, ...] = (
    "circuit_open", "rate_limited", "server_error", "timeout", "transport_error")


def error_kinds(error: CallError) -> set[str]:
    """The ``on`` names ``error`` matches; a GaveUp also matches what its last error matches."""
    kinds = {"any"}
    while isinstance(error, GaveUp):  # nested: retry gave up on a route that gave up
        kinds.add("gave_up")
        if not error.errors:
            return kinds
        error = error.errors[-1]
    if isinstance(error, CircuitOpen):
        kinds.add("circuit_open")
    if isinstance(error, RateLimited):
        kinds.add("rate_limited")
    elif isinstance(error, ProviderError) and (error.status_code or 0) >= 500:
        kinds.add("server_error")
    if isinstance(error, TimeoutExceeded):
        kinds.add("timeout")
    elif isinstance(error, TransportError):
        kinds.add("transport_error")
    return kinds


class Alternative(StageOptions):
    """One alternative: a model through the same stages, or another transport."""

    model: str | None = Field(None, description="Model to ask instead (with a transport: that transport's model).")  # noqa: E501
    transport: dict[str, Any] | None = Field(None, description="A table like [transport] (use = ..., its options).")  # noqa: E501
    stages: list[str | dict[str, Any]] = Field(default_factory=list, description="Stages around an alternative transport, outermost first.")  # noqa: E501
    name: str | None = Field(None, description="Label for served_by and logs.")

    @model_validator(mode="after")
    def _something(self) -> Alternative:
        if self.model is None and self.transport is None:
            raise ValueError("an alternative needs a model, a transport, or both")
        if self.stages and self.transport is None:
            raise ValueError("stages apply to an alternative transport; a model alternative "
                             "already goes through this chain's inner stages")
        return self


class _Route:
    __slots__ = ("entry", "label", "model", "transport")

    def __init__(self, label: str | None, model: str | None, transport: Transport | None,
                 entry: Next | None) -> None:
        self.label, self.model, self.transport, self.entry = label, model, transport, entry


class FallbackMiddleware:
    """Route to alternative models or transports when the primary fails in listed ways."""

    name = kind = "fallback"
    #: What this stage does, as data: order hints and other stages go by roles, never by names.
    roles = frozenset({"fallback"})
    #: Streamed calls pass through ``handle`` like any other (see docs/stages/fallback.md, "Streams").
    handles_streams = True

    class Options(StageOptions):
        alternatives: list[str | Alternative] = Field(
            default_factory=list, description="Tried in order; a string is a model name.")
        on: list[FallbackOn] = Field(
            default_factory=lambda: list(DEFAULT_ON),
            description="Errors that move on to the next alternative (a GaveUp matches what "
                        "its last error matches).")

    def __init__(
        self,
        options: Options | None = None,
        *,
        clock: Clock = REAL_CLOCK,
        transports: Sequence[Transport] = (),
    ) -> None:
        self.options = options or self.Options()
        self._clock = clock
        self._on = frozenset(self.options.on)
        routes = [_build(alt, i, clock) for i, alt in enumerate(self.options.alternatives)]
        routes += [_Route(None, None, t, TransportCall(t, clock)) for t in transports]
        self._routes = tuple(routes)

    def matches(self, error: CallError) -> bool:
        return not self._on.isdisjoint(error_kinds(error))

    async def handle(self, request: LLMRequest, call_next: Next) -> LLMResponse:
        try:
            return await call_next(request)
        except CallError as exc:
            if not self._routes or not self.matches(exc):
                raise
            error = exc
        return await self._fall_back(request, call_next, error)

    async def _fall_back(self, request: LLMRequest, call_next: Next, error: CallError) -> LLMResponse:
        errors = [error]
        skipped = [f"primary: {type(error).__name__}"]
        for position, route in enumerate(self._routes, 1):
            left = time_left(request, self._clock)
            if left is not None and left <= 0:
                break
            label = route.label or route.model or (route.transport.name if route.transport else "?")
            emit("fallback", "fallback", position=position, to=label,
                 after=type(errors[-1]).__name__)
            if route.entry is None:
                alt_request = request.model_copy(update={"model": route.model})
                call = call_next
            else:
                alt_request = request.model_copy(update={"model": route.model, "attempt": 1})
                call = route.entry
            try:
                response = await call(alt_request)
            except CallError as exc:
                if not self.matches(exc):
                    raise
                errors.append(exc)
                skipped.append(f"{label}: {type(exc).__name__}")
                continue
            return on_final(response, partial(_mark, route=route, position=position, skipped=skipped))
        if len(errors) == 1:
            raise error  # no time left to try anything else: the primary's error says most
        last = errors[-1]
        gave_up = GaveUp(
            f"the primary and {len(errors) - 1} alternative(s) failed ({', '.join(skipped)}); "
            f"last error: {type(last).__name__}: {last.message}",
            errors=errors, attempts=current_attempts(), retry_after=last.retry_after,
            hint="every route failed; see each error below")
        gave_up.__cause__ = last
        raise gave_up

    async def aclose(self) -> None:
        for route in self._routes:
            if route.transport is not None and route.entry is not None:
                await route.transport.aclose()


def _mark(response: LLMResponse, *, route: _Route, position: int, skipped: list[str]) -> LLMResponse:
    """The answer an alternative gave, saying which one (a stream: its final response)."""
    served = route.label or _served_by(_base_label(response, route), route.model)
    notes = {**response.notes, "fallback": {"position": position, "served_by": served,
                                            "failed": skipped}}
    return response.model_copy(update={"served_by": served, "notes": notes})


def _base_label(response: LLMResponse, route: _Route) -> str | None:
    """Who answered, before the model is swapped in: the response's own label, else the last
    attempt's transport (the chain fills served_by only on its way out)."""
    if response.served_by is not None:
        return response.served_by
    trace = current_call.get()
    if trace is not None and trace.attempts:
        return trace.attempts[-1].served_by
    return route.transport.name if route.transport is not None else None


def _served_by(served_by: str | None, model: str | None) -> str:
    """``"openai:gpt-4o"`` for transport ``"openai:gpt-4o-mini"`` asked for model ``gpt-4o``."""
    if model is None:
        return served_by or "?"
    if not served_by:
        return model
    kind, sep, _ = served_by.partition(":")
    return f"{kind}:{model}" if sep else f"{served_by}:{model}"


def _build(alt: str | Alternative, index: int, clock: Clock) -> _Route:
    if isinstance(alt, str):
        return _Route(None, alt, None, None)
    if alt.transport is None:
        return _Route(alt.name, alt.model, None, None)
    from .._build import build_stages, build_transport
    from ..plugins import current_registry

    where = f"fallback alternatives[{index}]"
    registry = current_registry()  # the chain's own: its plugins, nobody else's
    transport = build_transport(alt.transport, registry, clock, where)
    stages = [stage for _, _, stage in build_stages(alt.stages, registry, clock, where)]
    label = alt.name or _served_by(transport.name, alt.model)
    return _Route(label, alt.model, transport, compose(stages, TransportCall(transport, clock)))


@hookimpl
def register_middleware(register: Callable[[str, Any], None]) -> None:
    register("fallback", FallbackMiddleware)
