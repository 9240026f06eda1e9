"""The scenes of ``llmchain demo``: what the fault server does, what is asked, what must happen.

Each scene shows one default stage earning its place (or one item of the failure checklist,
docs/failure-checklist.md). A scene is a list of steps; each step sets the server's fault plan
and then sends its requests one after another (``one``), all at once (``together``) or the first
alone and the rest while it waits to retry (``staggered``). Requests carry what the demo expects
of them, so the demo can say whether it ran as designed.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from pydantic import BaseModel

from ..testing._fault_plan import Fault, FaultLike, FaultPlan, PlanLike


class Answer(BaseModel):
    """Schema of the demo's structured requests."""

    answer: int


class City(BaseModel):
    """A second schema, so cached answers of different schemas stay apart."""

    name: str
    country: str


#: A server that reads the request and then says nothing for longer than any demo deadline.
HANG = Fault("hang_before_headers", hang_s=10.0)


@dataclass(frozen=True)
class Expect:
    """What must happen to one request for the demo to count as having run as designed."""

    outcome: str | tuple[str, ...] = "ok"  # "ok" or the error's class name
    attempts: int | None = None  # transport attempts; None: any
    cache: str | None = "miss"  # "miss", "hit", "coalesced"; None: any (or failed)
    repaired: str | None = None  # "local", "reask"


@dataclass(frozen=True)
class Ask:
    """One request of a step."""

    prompt: str
    expect: Expect = Expect()
    schema: type[BaseModel] | None = None
    timeout_s: float | None = None  # per-call deadline instead of the demo's


Mode = Literal["one", "together", "staggered"]
PlanFactory = Callable[[int], PlanLike]  # seed → plan


@dataclass(frozen=True)
class Step:
    """A fault plan and the requests sent under it."""

    plan: PlanLike | PlanFactory
    asks: tuple[Ask, ...]
    mode: Mode = "one"
    server_requests: int | None = None  # how many requests must reach the server; None: any
    # start on new connections: a reset met on a kept-alive one is re-sent once by the engine,
    # which would make the attempt count depend on which connection the pool hands out
    fresh_connections: bool = False


@dataclass(frozen=True)
class Scene:
    """One topic of the demo (a ``--only`` choice)."""

    name: str
    title: str
    steps: tuple[Step, ...]
    in_default_run: bool = True
    needs_breaker: bool = False  # built on the default chain + circuit_breaker


def _script(*faults: FaultLike) -> list[FaultLike]:
    return list(faults)


def _traffic(seed: int) -> PlanLike:
    return FaultPlan(rates={"503": 0.2, "reset": 0.1, "latency:0.05": 0.2}, seed=seed)


def _ok(attempts: int = 1, cache: str | None = "miss", repaired: str | None = None) -> Expect:
    return Expect("ok", attempts, cache, repaired)


def _failed(error: str, attempts: int | None) -> Expect:
    return Expect(error, attempts, None)


SCENES: tuple[Scene, ...] = (
    Scene("plain", "answers with no fault: one attempt each", (
        Step("ok", (Ask("Say hello", _ok()), Ask("Name a colour", _ok()), Ask("What is 2+2?", _ok()))),
    )),
    Scene("cache", "repeated and concurrent identical prompts: answered once", (
        Step("ok", (Ask("Spell 'cache'", _ok()), Ask("Spell 'cache'", _ok(0, "hit")))),
        Step(["latency:0.15"], (Ask("Summarise the news", _ok(1, "miss")),
                                *[Ask("Summarise the news", _ok(0, "coalesced"))] * 3),
             mode="together", server_requests=1),
    )),
    Scene("5xx", "server errors: retried with backoff, 4xx never retried", (
        Step(_script("503", "503", "ok"), (Ask("Translate 'retry'", _ok(3)),)),
        Step(_script("503", "503", "503"), (Ask("Translate 'outage'", _failed("GaveUp", 3)),)),
        Step(_script("400"), (Ask("Send a bad request", _failed("ProviderError", 1)),),
             server_requests=1),
    )),
    Scene("reset", "connection resets: retried", (
        Step(_script("reset", "ok"), (Ask("Count to three", _ok(2)),), fresh_connections=True),
        Step(_script("reset", "reset", "reset"), (Ask("Count to four", _failed("GaveUp", 3)),),
             fresh_connections=True),
    )),
    Scene("timeout", "a server that hangs: attempts cut at attempt_s, calls end at their deadline", (
        Step(_script(HANG, "ok"), (Ask("Are you there?", _ok(2)),)),
        Step(_script(HANG, HANG, HANG),
             # one attempt or two fit in 0.5 s depending on the machine's load; the deadline is what shows
             (Ask("Anyone there?", _failed("TimeoutExceeded", None), timeout_s=0.5),)),
    )),
    Scene("invalid-json", "structured answers: broken JSON fixed locally, wrong fields re-asked", (
        Step(_script("content_not_json"),
             (Ask("Answer as JSON", _ok(1, repaired="local"), schema=Answer),)),
        Step(_script(Fault(content="{'name': 'Paris', 'country': 'France',}")),
             (Ask("Capital as JSON", _ok(1, repaired="local"), schema=City),)),
        Step(_script("schema_invalid", "ok"),
             (Ask("Answer again, JSON", _ok(2, repaired="reask"), schema=Answer),)),
        Step(_script("schema_invalid", "schema_invalid"),
             (Ask("Third answer, JSON", _failed("RepairGaveUp", 2), schema=Answer),)),
        Step("ok", (Ask("Answer as JSON", _ok(0, "hit"), schema=Answer),),
             server_requests=0),
    )),
    Scene("traffic", "seeded background traffic: 20% 503s, 10% resets, 20% slow answers", (
        Step(_traffic, tuple(Ask(f"Question {i}", Expect(("ok", "GaveUp"), None, None))
                             for i in range(1, 9))),
    )),
    Scene("429", "a 429 with Retry-After: retry waits as asked, the limiter holds everyone", (
        Step(_script("429:0.5"), (Ask("Name a planet", _ok(2)), Ask("Name a moon", _ok()),
                                  Ask("Name a star", _ok()), Ask("Name a comet", _ok())),
             mode="staggered"),
        Step(_script("429:0.2", "429:0.2", "429:0.2"), (Ask("Name a galaxy", _failed("GaveUp", 3)),)),
    )),
    Scene("circuit-open", "a backend that keeps failing: the breaker opens and fails fast", (
        Step("500", (Ask("Status report 1", _failed("GaveUp", 3)),
                     Ask("Status report 2", _failed("CircuitOpen", 1)),
                     Ask("Status report 3", _failed("CircuitOpen", 0)),
                     Ask("Status report 4", _failed("CircuitOpen", 0))),
             server_requests=4),
    ), in_default_run=False, needs_breaker=True),
)

SCENE_NAMES: tuple[str, ...] = tuple(scene.name for scene in SCENES)


def select(only: str | None) -> tuple[Scene, ...]:
    """The scenes of a default run, or the one named by ``--only``."""
    if only is None:
        return tuple(s for s in SCENES if s.in_default_run)
    chosen = tuple(s for s in SCENES if s.name == only)
    if not chosen:
        raise ValueError(f"unknown scene {only!r}; choose one of {', '.join(SCENE_NAMES)}")
    return chosen
