"""``llmchain demo``: the default chain against a local fault-injecting server, offline.

It starts the loopback ``FaultServer`` (random port, an API key required), builds the default
chain (``_defaults.DEFAULT_STAGE_ORDER``) over the real ``openai`` transport pointed at it, with
short timeouts and backoffs so the whole run takes a few seconds, and sends a few dozen requests
scene by scene (``_scenes``): 503s, resets, a 429 with Retry-After, a hang, broken and
wrong JSON, repeated and concurrent identical prompts, requests that fail for good. Per request
it records what happened from the response or error and from the chain's events; the log stage
writes its JSON lines to a file. ``run_demo()`` returns a ``DemoResult``; ``_report``
renders it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import random
import secrets
import time
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .._attempt import Attempt
from .._chain import Chain
from .._defaults import DEFAULT_STAGE_ORDER
from .._events import Event
from .._exceptions import CallError, GaveUp, TimeoutExceeded
from .._loop import LOOP
from .._models import LLMResponse, new_request_id
from .._redact import RedactingFilter
from ..middleware.log import json_formatter
from ..middleware.repair import RepairGaveUp
from ..middleware.retry import RetryMiddleware
from ..plugins import get_registry
from ..testing.fault_server import FaultServer
from ._scenes import Answer as Answer  # the demo's schema; examples/ configs validate with it
from ._scenes import Ask, Expect, Scene, Step, select

#: The variable the demo's transport reads its (fake) API key from, like OPENAI_API_KEY.
DEMO_KEY_ENV = "LLMCHAIN_DEMO_API_KEY"
DEFAULT_LOG = "llmchain-demo.log"
MODEL = "gpt-4o-mini"  # only a name: the local server answers, and the log prices it
TIMEOUT_S = 2.0  # each call's total deadline
#: Demo-sized settings: real providers need the stages' defaults (attempt_s 10+, base_s 0.5...).
STAGE_OPTIONS: dict[str, dict[str, Any]] = {
    "log": {"handler": "none"},  # the demo sends the lines to its own file
    "repair": {"max_reasks": 1},
    "retry": {"max_attempts": 3, "base_s": 0.05, "cap_s": 0.2, "budget_ratio": 0.5},
    "rate_limit": {"pause_s": 0.5},
    "timeout": {"attempt_s": 0.3},
    "circuit_breaker": {"min_calls": 4, "window_calls": 10, "open_s": 5.0},
}
SETTINGS = ("timeout_s=2 per call, timeout attempt_s=0.3, retry max_attempts=3 base_s=0.05 "
            "cap_s=0.2, repair max_reasks=1")


@dataclass
class Row:
    """What happened to one request."""

    index: int
    scene: str
    prompt: str
    request_id: str
    outcome: str  # "ok" or the error's class name
    detail: str  # the error's cause in a word ("503", "deadline"), "" when ok
    attempts: tuple[Attempt, ...]
    backoff_s: float  # retry waits
    limiter_s: float  # rate-limit waits
    cache: str | None  # "miss", "hit", "coalesced"; None when the call failed
    repaired: str | None  # "local", "reask", "gave up"
    latency_s: float
    structured: bool
    expect: Expect
    events: list[Event] = field(repr=False)
    error: CallError | None = field(default=None, repr=False)


@dataclass
class DemoResult:
    """Everything a run produced; ``problems`` lists where it did not go as designed."""

    rows: list[Row]
    scenes: tuple[Scene, ...]
    seed: int
    log_path: Path
    elapsed_s: float
    server_requests: int
    problems: list[str]
    events: list[Event]
    learned_rpm: int | None
    stages: tuple[str, ...]  # the chain's stages, outermost first
    chain: str  # its description, options included

    @property
    def as_designed(self) -> bool:
        return not self.problems


class _Collector:
    """The chain observer: every event, by request id."""

    def __init__(self) -> None:
        self.events: list[Event] = []
        self.by_request: dict[str | None, list[Event]] = defaultdict(list)
        self._waiting: dict[tuple[str | None, str], asyncio.Event] = {}

    def __call__(self, event: Event) -> None:
        self.events.append(event)
        self.by_request[event.request_id].append(event)
        seen = self._waiting.get((event.request_id, event.kind))
        if seen is not None:  # called on the demo's loop: the chain runs there
            seen.set()

    async def wait_for(self, request_id: str, kind: str, task: asyncio.Future[Any]) -> None:
        """Return once ``request_id`` emitted an event of ``kind``, or ``task`` ended."""
        if any(e.kind == kind for e in self.by_request[request_id]):
            return
        seen = self._waiting[(request_id, kind)] = asyncio.Event()
        waiter = asyncio.ensure_future(seen.wait())
        try:
            await asyncio.wait({task, waiter}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            waiter.cancel()
            del self._waiting[(request_id, kind)]


def demo_stages(seed: int = 0, *, breaker: bool = False) -> list[Any]:
    """The default stage order with the demo's options (``circuit_breaker`` added on request)."""
    names = list(DEFAULT_STAGE_ORDER)
    if breaker:
        names.insert(names.index("rate_limit"), "circuit_breaker")
    stages: list[Any] = []
    for name in names:
        if name == "retry":  # built here so its jitter is seeded: same seed, same backoffs
            options = RetryMiddleware.Options(**STAGE_OPTIONS["retry"])
            stages.append(RetryMiddleware(options, rng=random.Random(seed).random))
        else:
            stages.append({"use": name, **STAGE_OPTIONS.get(name, {})})
    return stages


def run_demo(*, seed: int = 0, only: str | None = None, log_path: str | Path = DEFAULT_LOG) -> DemoResult:
    """Run the demo (sync; works in scripts and inside a running loop, e.g. Jupyter)."""
    return LOOP.run(arun_demo(seed=seed, only=only, log_path=Path(log_path).resolve()))


async def arun_demo(*, seed: int = 0, only: str | None = None,
                    log_path: str | Path = DEFAULT_LOG) -> DemoResult:
    """Run the scenes (all of the default run, or ``only`` one) and return what happened."""
    scenes = select(only)
    path = Path(log_path)
    get_registry()  # plugins log once when they load: before the demo's log file, not in it
    collector = _Collector()
    rows: list[Row] = []
    problems: list[str] = []
    chains: dict[bool, Chain] = {}
    t0 = time.monotonic()
    with _api_key() as key, _json_log(path):
        async with FaultServer(api_key=key, seed=seed) as server:
            transport = {"use": "openai", "base_url": server.base_url, "api_key_env": DEMO_KEY_ENV,
                         "model": MODEL, "connect_timeout_s": 1.0}
            try:
                for scene in scenes:
                    chain = chains.get(scene.needs_breaker)
                    if chain is None:
                        chain = chains[scene.needs_breaker] = Chain(
                            demo_stages(seed, breaker=scene.needs_breaker), transport,
                            timeout_s=TIMEOUT_S, observers=[collector], source="llmchain demo")
                    for step in scene.steps:
                        ids = [new_request_id() for _ in step.asks]
                        # scoped to this step's calls: a late attempt of an earlier step's
                        # timed-out call must not use up this step's scripted faults
                        server.set_plan(step.plan(seed) if callable(step.plan) else step.plan, seed=seed,
                                        for_requests=ids)
                        if step.fresh_connections:
                            await asyncio.to_thread(server.close_idle)
                            await asyncio.sleep(0.01)  # for the client to see the closes
                        rows += await _run_step(chain, scene, step, ids, collector, len(rows))
                        sent = server.plan_requests
                        if step.server_requests is not None and sent != step.server_requests:
                            problems.append(f"scene {scene.name}: {sent} request(s) reached the server, "
                                            f"expected {step.server_requests}")
            finally:
                for built in chains.values():
                    await built.aclose()
            served = server.request_count
    elapsed = time.monotonic() - t0
    problems[:0] = [p for row in rows if (p := _check(row))]
    main = chains.get(False) or chains[True]
    limits = getattr(dict(main.stages).get("rate_limit"), "limits_for", None)
    learned = limits("default").requests if limits is not None else None
    return DemoResult(rows, scenes, seed, path, elapsed, served, problems, collector.events, learned,
                      tuple(name for name, _ in main.stages), main.describe())


async def _run_step(chain: Chain, scene: Scene, step: Step, ids: list[str], collector: _Collector,
                    done: int) -> list[Row]:

    async def call(i: int) -> Row:
        ask = step.asks[i]
        params: dict[str, Any] = {"request_id": ids[i]}
        if ask.schema is not None:
            params["output_type"] = ask.schema
        if ask.timeout_s is not None:
            params["timeout_s"] = ask.timeout_s
        start = time.monotonic()
        try:
            response: LLMResponse | CallError = await chain.acomplete(ask.prompt, **params)
        except CallError as exc:
            response = exc
        return _row(done + i + 1, scene, ask, ids[i], response, time.monotonic() - start,
                    collector.by_request.pop(ids[i], []))

    if step.mode == "one":
        return [await call(i) for i in range(len(ids))]
    if step.mode == "together":
        return list(await asyncio.gather(*(call(i) for i in range(len(ids)))))
    # staggered: the others arrive while the first waits to retry (after its 429, say)
    first = asyncio.ensure_future(call(0))
    await collector.wait_for(ids[0], "retry_scheduled", first)
    rest = await asyncio.gather(*(call(i) for i in range(1, len(ids))))
    return [await first, *rest]


def _row(index: int, scene: Scene, ask: Ask, request_id: str, result: LLMResponse | CallError,
         latency: float, events: list[Event]) -> Row:
    backoff = sum(e.data.get("delay_s", 0.0) for e in events if e.kind == "retry_scheduled")
    waited = sum(e.data.get("wait_s", 0.0) for e in events if e.kind == "rate_limit_wait")
    common: dict[str, Any] = dict(index=index, scene=scene.name, prompt=ask.prompt, request_id=request_id,
                                  backoff_s=backoff, limiter_s=waited, latency_s=latency,
                                  structured=ask.schema is not None, expect=ask.expect, events=events)
    if isinstance(result, CallError):
        return Row(outcome=type(result).__name__, detail=_cause(result), attempts=result.attempts,
                   cache=None, repaired="gave up" if isinstance(result, RepairGaveUp) else None,
                   error=result, **common)
    cache: str | None = result.cache.status if result.cache is not None else None
    if cache == "hit" and "coalesced_with" in result.notes:
        cache = "coalesced"
    return Row(outcome="ok", detail="", attempts=result.attempts, cache=cache,
               repaired=result.notes.get("repaired"), **common)


def attempt_label(attempt: Attempt) -> str:
    """One word for what an attempt got back: ``ok``, ``503``, ``reset``, ``timeout``."""
    if attempt.status_code is not None:
        return str(attempt.status_code)
    if attempt.outcome in ("ok", "timeout", "cancelled"):
        return attempt.outcome
    return "reset" if "reset" in (attempt.error or "") else "conn-error"


def _cause(error: CallError) -> str:
    if isinstance(error, RepairGaveUp):
        return f"{len(error.errors)} answers"
    if isinstance(error, GaveUp) and error.attempts:
        return attempt_label(error.attempts[-1])
    if isinstance(error, TimeoutExceeded):
        return error.phase
    return str(error.status_code) if error.status_code is not None else ""


def _check(row: Row) -> str | None:
    want = row.expect
    outcomes = (want.outcome,) if isinstance(want.outcome, str) else want.outcome
    got = f"{row.outcome} after {len(row.attempts)} attempt(s), cache {row.cache}, repaired {row.repaired}"
    wrong = row.outcome not in outcomes or (
        want.attempts is not None and len(row.attempts) != want.attempts)
    if want.outcome == "ok":  # a success must also have come the expected way
        wrong = wrong or (want.cache is not None and row.cache != want.cache) or row.repaired != want.repaired
    if not wrong:
        return None
    return (f"#{row.index} {row.prompt!r}: expected {'/'.join(outcomes)}"
            f"{f' after {want.attempts} attempt(s)' if want.attempts is not None else ''}, got {got}")


@contextlib.contextmanager
def _api_key() -> Iterator[str]:
    """The demo's key: $LLMCHAIN_DEMO_API_KEY, or a random one set only while the demo runs."""
    given = os.environ.get(DEMO_KEY_ENV)
    key = given or f"demo-{secrets.token_hex(16)}"
    os.environ[DEMO_KEY_ENV] = key
    try:
        yield key
    finally:
        if given is None:
            os.environ.pop(DEMO_KEY_ENV, None)


@contextlib.contextmanager
def _json_log(path: Path) -> Iterator[None]:
    """Send the ``llmchain`` logger's lines (DEBUG included) to ``path`` only, while the demo runs."""
    logger = logging.getLogger("llmchain")
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.fchmod(fd, 0o600)  # an older log may have been made readable to all
    stream = os.fdopen(fd, "w", encoding="utf-8")
    handler = logging.StreamHandler(stream)
    handler.setFormatter(json_formatter())
    handler.addFilter(RedactingFilter())
    saved = logger.handlers[:], logger.level, logger.propagate
    logger.handlers[:] = [handler]
    logger.setLevel(logging.DEBUG)
    logger.propagate = False  # the demo prints its own report; the lines belong in the file
    try:
        yield
    finally:
        logger.handlers[:], logger.level, logger.propagate = saved
        handler.close()
        stream.close()
