"""Contract clauses about time and environment: deadlines, sync vs async, options."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from typing import Any

from pydantic import ValidationError

from .._chain import Chain
from .._exceptions import ConfigError, ProviderError, RateLimited, TransportError
from .._models import LLMResponse
from ..hookspecs import hookimpl
from ..transports.mock import MockTransport, Outcome
from ._contract_harness import (
    DEADLINE_SLACK_S,
    ContractViolation,
    StageUnderTest,
    nonce,
    probe_request,
    run_guarded,
)
from .clock import FakeClock
from .scripted import Delay, ScriptedNext, Step

#: (what, inner script, deadline in seconds from each call's start, calls in a row)
DEADLINE_SCENARIOS: tuple[tuple[str, Callable[[], list[Step]], float, int], ...] = (
    ("a 429 asking to wait 300 s", lambda: [Delay(1.0, RateLimited("contract: 429", retry_after=300))], 5, 1),
    ("slow connection resets", lambda: [Delay(1.0, TransportError("contract: reset"))], 5.0, 1),
    ("quick 503s", lambda: [ProviderError("contract: HTTP 503", status_code=503)], 3.0, 1),
    ("a burst of slow successes", lambda: [Delay(0.5, "ok")], 2.0, 8),
    ("a deadline that has already passed", lambda: ["ok"], -1.0, 1),
)


def check_deadline(sut: StageUnderTest) -> None:
    """No call ends more than a few tens of ms after its deadline; no inward deadline is later."""
    for what, script, deadline_in, calls in DEADLINE_SCENARIOS:
        inner = ScriptedNext(*script(), clock=FakeClock())
        problem = sut.run("deadline", lambda: _late_calls(sut, inner, deadline_in, calls))  # noqa: B023
        if problem:
            sleeps = inner.clock.sleeps if isinstance(inner.clock, FakeClock) else []
            raise ContractViolation("deadline", f"on {what}: {problem} (clock waits: {sleeps[:8]})")


async def _late_calls(sut: StageUnderTest, inner: ScriptedNext, deadline_in: float, calls: int) -> str | None:
    clock = inner.clock
    stage = sut.build(clock)
    for _ in range(calls):
        request = probe_request(clock, deadline_in=deadline_in)
        assert request.deadline is not None
        deadline, start, seen = request.deadline, clock.now(), inner.call_count
        with contextlib.suppress(Exception):  # giving up is fine; running late is not
            await stage.handle(request, inner)
        late = clock.now() - max(start, deadline)
        if late > DEADLINE_SLACK_S:
            return f"ended {late:.3g} s after its deadline"
        extended = [r.deadline for r in inner.calls[seen:] if r.deadline is None or r.deadline > deadline]
        if extended:
            return f"passed inward a later or missing deadline ({extended[0]} > {deadline})"
    return None


Summary = tuple[str, str, int, tuple[tuple[Any, ...], ...]]
MODES = ("async", "sync", "sync from another thread", "sync inside a running loop")
PARITY_SCENARIOS: tuple[tuple[str, Callable[[], list[Outcome]]], ...] = (
    ("success", lambda: ["contract answer"]),
    ("retryable failure", lambda: [RateLimited("contract: 429", retry_after=0.25)]),
    ("fatal failure", lambda: [ProviderError("contract: HTTP 400", status_code=400)]),
)


def _one_mode(sut: StageUnderTest, mode: str, script: list[Outcome]) -> Summary:
    clock = FakeClock()
    tag = nonce()
    transport = MockTransport.scripted(*script, clock=clock, cycle=True)
    chain = Chain([sut.build(clock)], transport, clock=clock, timeout_s=60)
    prompt = f"parity probe {tag}"
    try:
        response = _call_in_mode(sut, chain, mode, prompt)
        outcome, detail = "ok", response.text
    except ContractViolation:
        raise
    except Exception as exc:
        outcome, detail = "error", type(exc).__name__
    finally:
        chain.close()
    sent = tuple(
        (r.model, r.attempt, tuple((m.role, m.text.replace(tag, "<tag>")) for m in r.messages))
        for r in transport.calls
    )
    return outcome, detail, len(transport.calls), sent  # not clock time: backoff may be jittered


def check_sync_async(sut: StageUnderTest) -> None:
    """acomplete, complete (from this thread, another thread, and inside a running loop) behave
    the same; one instance serves them all."""
    clause = "sync_async"
    for what, script in PARITY_SCENARIOS:
        results = {mode: _one_mode(sut, mode, script()) for mode in MODES}
        if len(set(results.values())) > 1:
            shown = "; ".join(f"{m}: {r[:3]}" for m, r in results.items())
            raise ContractViolation(clause, f"on {what} the entry points disagree ({shown})")
    clock = FakeClock()
    chain = Chain([sut.build(clock)], MockTransport(clock=clock), clock=clock, timeout_s=60)
    try:
        for i, mode in enumerate(MODES * 2):
            prompt = f"shared instance probe {i} {nonce()}"
            try:
                _call_in_mode(sut, chain, mode, prompt)
            except ContractViolation:
                raise
            except Exception as exc:
                raise ContractViolation(
                    clause,
                    f"one instance used from several event loops failed on call {i + 1} ({mode}): "
                    f"{type(exc).__name__}: {exc} (is some state bound to the first loop?)",
                ) from exc
    finally:
        chain.close()


def _call_in_mode(sut: StageUnderTest, chain: Chain, mode: str, prompt: str) -> LLMResponse:
    if mode == "sync":
        return chain.complete(prompt)

    async def call() -> LLMResponse:
        if mode == "async":
            return await chain.acomplete(prompt)
        if mode == "sync from another thread":
            return await asyncio.to_thread(chain.complete, prompt)
        return chain.complete(prompt)  # a blocking call inside a running loop, as in Jupyter

    return run_guarded("sync_async", call, sut.real_time_limit_s)


UNKNOWN_OPTION = "contract_unknown_option"


class _ProbePlugin:
    def __init__(self, name: str, factory: Any) -> None:
        self.name, self.factory = name, factory

    @hookimpl
    def register_middleware(self, register: Callable[[str, Any], None]) -> None:
        register(self.name, self.factory)


def check_options(sut: StageUnderTest) -> None:
    """Unknown options are a ConfigError from config and a ValidationError in code; Options is frozen."""
    clause = "options"
    model = sut.options_model
    if model is not None:
        try:
            model.model_validate({**sut.options, UNKNOWN_OPTION: 1})
        except ValidationError:
            pass
        else:
            raise ContractViolation(
                clause, f"{model.__qualname__} accepts unknown keys; use ConfigDict(extra='forbid')"
            )
        if not model.model_config.get("frozen"):
            raise ContractViolation(
                clause, f"{model.__qualname__} is not frozen; options are shared config (frozen=True)"
            )
    name = f"contract-probe-{nonce()}"
    probe = [_ProbePlugin(name, sut.factory)]  # this check's chains only, never the process's
    Chain.from_config({"stages": [{"use": name, **sut.options}]}, plugins=probe).close()
    try:
        Chain.from_config({"stages": [{"use": name, **sut.options, UNKNOWN_OPTION: 1}]},
                          plugins=probe).close()
    except ConfigError as exc:
        if UNKNOWN_OPTION not in str(exc):
            raise ContractViolation(clause, f"the error does not name {UNKNOWN_OPTION}: {exc}") from exc
    except Exception as exc:
        raise ContractViolation(
            clause, f"an unknown option raised {type(exc).__name__}: {exc}, not ConfigError"
        ) from exc
    else:
        raise ContractViolation(clause, f"a config with {UNKNOWN_OPTION} = 1 was accepted")

