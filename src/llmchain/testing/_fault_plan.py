"""What the fault server does to each request: a ``Fault``, drawn from a seeded ``FaultPlan``.

A plan is a script of faults consumed in order, then a default, optionally mixed with random
faults at given rates (seeded, so a run is reproducible)::

    FaultPlan(["429", "reset", "ok"])                      # exactly these, then "ok" forever
    FaultPlan(rates={"503": 0.05, "latency:0.2": 0.1}, seed=7)

Faults may be written as strings (see ``Fault.parse``) or built with ``Fault(...)``.
"""

from __future__ import annotations

import random
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Literal, cast, get_args

FaultKind = Literal[
    "ok",  # a normal answer (after delay_s, if set)
    "hang_before_headers",  # read the request, answer nothing for hang_s, then close
    "hang_after_headers",  # send the status line and headers, then nothing for hang_s
    "trickle",  # the answer, trickle_bytes at a time every trickle_interval_s
    "rate_limited",  # 429 with Retry-After and x-ratelimit-* headers
    "status",  # an error status (default 503) with the provider's error body
    "reset",  # TCP reset (RST) after reading the request
    "not_json",  # 200 with an HTML body
    "bad_shape",  # 200 with JSON that is not a completion
    "content_not_json",  # a completion whose text is not JSON
    "schema_invalid",  # a completion whose JSON text violates the requested schema
    "truncated_stream",  # the body or stream stops midway and the connection closes
    "stream_error",  # an error event inside a 200 stream (an error status when not streaming)
    # hostile servers (see _hostile): answers that break HTTP, or a client's memory
    "conflicting_length",  # two different Content-Length headers
    "bad_length",  # Content-Length: -1
    "bad_chunk",  # a chunk size that is not hex
    "huge_head",  # 100 KiB of response headers
    "gzip_bomb",  # a small gzip body that inflates to 128 MiB
    "unasked_encoding",  # content-encoding: br, never asked for
    "stale_close",  # on a reused connection: close it without answering
    "stream_hold_open",  # a stream's end marker, then the connection held open for hang_s
]
FAULT_KINDS: tuple[str, ...] = get_args(FaultKind)

_ALIASES = {
    "hang": "hang_before_headers",
    "429": "rate_limited",
    "overloaded": "stream_error",
    "truncated": "truncated_stream",
}


@dataclass(frozen=True)
class Fault:
    """One outcome for one request. Every kind waits ``delay_s`` first.

    ``status``: for ``status`` (default 503); ``retry_after``: the Retry-After value sent with
    error statuses (seconds, or a string such as an HTTP date; None for none); ``headers``:
    extra response headers (e.g. ``{"x-should-retry": "false"}``); ``content``: the answer
    text instead of the server's; ``message``: the error message in error bodies;
    ``after_events``: stream events sent before a ``truncated_stream`` / ``stream_error``;
    ``raw`` (+ ``content_type``, ``status``): replay exactly this body, e.g. a documented one;
    ``tool_calls``: answer with these calls (``{"name", "arguments", "id"?}``) after the text.
    """

    kind: FaultKind = "ok"
    status: int | None = None
    delay_s: float = 0.0
    hang_s: float = 30.0
    retry_after: float | str | None = 1.0
    headers: Mapping[str, str] = field(default_factory=dict)
    content: str | None = None
    message: str | None = None
    trickle_bytes: int = 16
    trickle_interval_s: float = 0.05
    after_events: int = 2
    raw: bytes | None = None
    content_type: str = "application/json"
    tool_calls: tuple[Mapping[str, Any], ...] = ()

    def __post_init__(self) -> None:
        if self.kind not in FAULT_KINDS:
            raise ValueError(f"unknown fault kind {self.kind!r}; expected one of {FAULT_KINDS}")

    @property
    def label(self) -> str:
        """Short name for records and logs (``"503"``, ``"reset"``...)."""
        if self.kind == "status":
            return str(self.status or 503)
        return "429" if self.kind == "rate_limited" else self.kind

    @classmethod
    def parse(cls, text: str) -> Fault:
        """A fault from its short form.

        ``ok``, ``latency:0.2``, ``hang`` / ``hang_before_headers[:s]``, ``hang_after_headers[:s]``,
        ``trickle[:interval_s]``, ``429[:retry_after]``, any status such as ``503`` or
        ``529[:retry_after]``, ``reset``, ``not_json``, ``bad_shape``, ``content_not_json``,
        ``schema_invalid``, ``truncated_stream``, ``stream_error``, ``stream_hold_open[:s]``.
        """
        name, _, arg = text.strip().partition(":")
        name = _ALIASES.get(name, name)
        value = float(arg) if arg else None
        if name == "latency":
            return cls("ok", delay_s=value or 0.1)
        if name == "rate_limited":
            return cls("rate_limited", status=429, retry_after=value if arg else 1.0)
        if name.isdigit() and len(name) == 3:
            return cls("status", status=int(name), retry_after=value)
        if name not in FAULT_KINDS:
            raise ValueError(
                f"unknown fault {text!r}; use one of {sorted({*FAULT_KINDS, 'latency', 'hang'})} "
                "or an HTTP status such as 503 (optionally ':<seconds>')"
            )
        kind = cast(FaultKind, name)
        if value is None:
            return cls(kind)
        if kind.startswith("hang") or kind == "stream_hold_open":
            return cls(kind, hang_s=value)
        if kind == "trickle":
            return cls(kind, trickle_interval_s=value)
        return cls(kind, delay_s=value)

    @classmethod
    def coerce(cls, value: FaultLike) -> Fault:
        if isinstance(value, Fault):
            return value
        if isinstance(value, int):
            return cls.parse(str(value))
        return cls.parse(value)


FaultLike = Fault | str | int


class FaultPlan:
    """The order of faults: ``script`` first, then ``default`` mixed with ``rates`` (seeded).

    Thread-safe; ``next()`` is called once per request in arrival order.
    """

    def __init__(
        self,
        script: Iterable[FaultLike] = (),
        *,
        rates: Mapping[str, float] | Iterable[tuple[FaultLike, float]] | None = None,
        default: FaultLike = "ok",
        seed: int | None = 0,
        cycle: bool = False,
        latency_s: float = 0.0,
    ) -> None:
        self.script = tuple(Fault.coerce(f) for f in script)
        pairs = rates.items() if isinstance(rates, Mapping) else (rates or ())
        self.rates = tuple((Fault.coerce(f), float(p)) for f, p in pairs)
        total = sum(p for _, p in self.rates)
        if any(p < 0 for _, p in self.rates) or total > 1.0 + 1e-9:
            raise ValueError(f"fault rates must be >= 0 and add up to at most 1, got {total:g}")
        self.default = Fault.coerce(default)
        if latency_s:  # a base latency for every answer, faults included
            self.default = replace(self.default, delay_s=self.default.delay_s + latency_s)
            self.rates = tuple((replace(f, delay_s=f.delay_s + latency_s), p) for f, p in self.rates)
        self.cycle = cycle
        self.seed = seed
        self._random = random.Random(seed)
        self._position = 0
        self._lock = threading.Lock()

    @classmethod
    def coerce(cls, plan: PlanLike, seed: int | None = 0) -> FaultPlan:
        """A plan from a FaultPlan, a script (list), a rates dict, a single fault, or None."""
        if plan is None:
            return cls(seed=seed)
        if isinstance(plan, FaultPlan):
            return plan
        if isinstance(plan, Mapping):
            return cls(rates=plan, seed=seed)
        if isinstance(plan, (Fault, str, int)):
            return cls(default=plan, seed=seed)
        return cls(plan, seed=seed)

    def next(self) -> Fault:
        with self._lock:
            if self._position < len(self.script):
                fault = self.script[self._position]
                self._position += 1
                if self.cycle and self._position == len(self.script):
                    self._position = 0
                return fault
            if not self.rates:
                return self.default
            draw = self._random.random()
        for fault, rate in self.rates:
            if draw < rate:
                return fault
            draw -= rate
        return self.default

    def __repr__(self) -> str:
        rates = ", ".join(f"{f.label}={p:g}" for f, p in self.rates)
        return (f"FaultPlan(script={[f.label for f in self.script]}, rates={{{rates}}}, "
                f"default={self.default.label!r}, seed={self.seed})")


PlanLike = FaultPlan | Iterable[FaultLike] | Mapping[str, float] | Fault | str | int | None
