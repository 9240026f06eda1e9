"""Events: how stages report what they do to observers (metrics, tracing, logs).

Observers are collected once, when a chain is built (hook ``register_observers``); per call,
``emit()`` finds them through the current call's trace (a context variable), so a stage needs no
reference to its chain and nothing pluggy runs per request. With no observer, ``emit`` costs one
context-variable lookup.
"""

from __future__ import annotations

import contextvars
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from ._attempt import Attempt

logger = logging.getLogger("llmchain")

#: Event kinds the built-in stages emit; plugins may emit their own (use a prefix).
EVENT_KINDS = (
    "call_start",
    "call_end",
    "attempt_start",
    "attempt_end",
    "retry_scheduled",
    "rate_limit_wait",
    "rate_limit_pause_refused",
    "rate_limit_headers_ignored",
    "cache_hit",
    "cache_miss",
    "cache_store",
    "singleflight_wait",
    "repair",
    "breaker_state",
    "fallback",
    "store_unavailable",
)


@dataclass(frozen=True, slots=True)
class Event:
    """Something a stage did during one call."""

    kind: str
    request_id: str | None
    time: float
    stage: str | None = None
    data: Mapping[str, Any] = field(default_factory=dict)


Observer = Callable[[Event], None]


class CallTrace:
    """Per-call record shared by every stage of one call: attempts made, observers to tell."""

    __slots__ = ("attempts", "billed", "observers", "request_id", "wall")

    def __init__(self, request_id: str, observers: tuple[Observer, ...], wall: Callable[[], float]):
        self.request_id = request_id
        self.observers = observers
        self.attempts: list[Attempt] = []
        #: (model, input tokens, output tokens) of every answer the provider sent (``_usage``)
        self.billed: list[tuple[str | None, int, int]] = []
        self.wall = wall

    def emit(self, kind: str, stage: str | None, data: Mapping[str, Any]) -> None:
        event = Event(kind, self.request_id, self.wall(), stage, data)
        for observer in self.observers:
            try:
                observer(event)
            except Exception:  # an observer must never break a call
                logger.exception("llmchain observer %r failed on %s", observer, kind)


current_call: contextvars.ContextVar[CallTrace | None] = contextvars.ContextVar("llmchain_call", default=None)


def emit(kind: str, stage: str | None = None, /, **data: Any) -> None:
    """Report an event for the current call to the chain's observers (no-op without any)."""
    trace = current_call.get()
    if trace is not None and trace.observers:
        trace.emit(kind, stage, data)


def current_attempts() -> tuple[Attempt, ...]:
    """Attempts recorded so far in the current call (empty outside a call)."""
    trace = current_call.get()
    return tuple(trace.attempts) if trace is not None else ()
