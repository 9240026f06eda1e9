"""Contract clauses about what flows through a stage: responses, requests, errors, cancellation."""

from __future__ import annotations

import asyncio
import copy
from collections.abc import Callable

from .._exceptions import CallError, ParseError, ProviderError, RateLimited, TimeoutExceeded, TransportError
from .._models import LLMRequest, LLMResponse
from ._contract_harness import (
    PROBE_JSON,
    ContractViolation,
    StageUnderTest,
    nonce,
    probe_request,
    probe_response,
    request_diff,
    response_diff,
    wraps,
)
from .clock import FakeClock
from .scripted import Hang, ScriptedNext, Step

#: Inner errors every stage must surface: (what it stands for, a fresh instance).
ERROR_CASES: tuple[tuple[str, Callable[[], CallError]], ...] = (
    ("a connection reset (retryable)", lambda: TransportError("contract: connection reset")),
    ("a 429 with Retry-After (retryable)", lambda: RateLimited("contract: 429", retry_after=0.5)),
    ("a 503 (retryable)", lambda: ProviderError("contract: HTTP 503", status_code=503)),
    ("a 400 (fatal)", lambda: ProviderError("contract: HTTP 400", status_code=400)),
    ("an attempt timeout", lambda: TimeoutExceeded("contract: attempt timed out", phase="attempt")),
    ("an unusable answer", lambda: ParseError("contract: not JSON", raw_text="nope")),
)

#: Event-loop turns to wait for something that needs no clock time (entering call_next, ending).
SPINS = 200


def _handle_once(sut: StageUnderTest, clause: str, request: LLMRequest, inner: ScriptedNext) -> LLMResponse:
    stage = sut.build(inner.clock)

    async def main() -> LLMResponse:
        return await stage.handle(request, inner)

    try:
        return sut.run(clause, main)
    except ContractViolation:
        raise
    except Exception as exc:
        raise ContractViolation(
            clause, f"raised {type(exc).__name__}: {exc} although call_next answered normally"
        ) from exc


def _outcome_of(
    sut: StageUnderTest, clause: str, inner: ScriptedNext, *, deadline_in: float = 120.0,
    request: LLMRequest | None = None,
) -> object:
    """What ``handle`` gave back, value or exception, with a freshly built stage."""
    stage = sut.build(inner.clock)
    request = request or probe_request(inner.clock, deadline_in=deadline_in)

    async def main() -> object:
        try:
            return await stage.handle(request, inner)
        except Exception as exc:
            return exc

    return sut.run(clause, main)


def check_passthrough(sut: StageUnderTest) -> None:
    """With nothing to do: call inward once with the same request, return the answer unchanged."""
    fixed = [probe_response(), probe_response(text=""), probe_response(text="x" * 5000, headers={})]
    for sent in fixed:
        _passthrough_once(sut, sent)
    if sut.examples <= 0:
        return
    try:
        from hypothesis import HealthCheck, given, settings

        from .strategies import responses
    except ImportError:  # hypothesis is optional: the fixed examples above still ran
        return

    @settings(
        max_examples=sut.examples, deadline=None, database=None, suppress_health_check=list(HealthCheck)
    )
    @given(sent=responses())
    def generated(sent: LLMResponse) -> None:
        _passthrough_once(sut, sent)

    generated()


def _passthrough_once(sut: StageUnderTest, sent: LLMResponse) -> None:
    clause = "passthrough"
    clock = FakeClock()
    request = probe_request(clock)
    inner = ScriptedNext(sent, clock=clock)
    got = _handle_once(sut, clause, request, inner)
    if inner.call_count != 1:
        raise ContractViolation(
            clause, f"called call_next {inner.call_count} times for a plain request; expected exactly once"
        )
    changed = request_diff(inner.calls[0], request)
    if changed:
        raise ContractViolation(clause, f"changed a plain request on its way in: {'; '.join(changed)}")
    if not isinstance(got, LLMResponse):
        raise ContractViolation(clause, f"returned {got!r} instead of an LLMResponse")
    changed = response_diff(got, sent, sut.annotates)
    if changed:
        raise ContractViolation(clause, f"changed the answer it had nothing to do with: {'; '.join(changed)}")


def check_calls_inward_each_time(sut: StageUnderTest) -> None:
    """Two identical calls in a row each reach call_next and each get the answer it gave then."""
    clause = "calls_inward_each_time"
    clock = FakeClock()
    stage = sut.build(clock)
    tag = nonce()
    inner = ScriptedNext(probe_response("first answer"), probe_response("second answer"), clock=clock)

    async def main() -> tuple[LLMResponse, LLMResponse]:
        first = await stage.handle(probe_request(clock, tag=tag), inner)
        second = await stage.handle(probe_request(clock, tag=tag), inner)
        return first, second

    first, second = sut.run(clause, main)
    if inner.call_count != 2 or (first.text, second.text) != ("first answer", "second answer"):
        raise ContractViolation(
            clause,
            f"two identical calls reached call_next {inner.call_count} time(s) and returned "
            f"{first.text!r}, {second.text!r}; expected 2 and 'first answer', 'second answer'",
        )


def check_errors_surface(sut: StageUnderTest) -> None:
    """An inner error comes out as a CallError carrying it, or a value whose notes say why."""
    clause = "errors_surface"
    for what, make in ERROR_CASES:
        error = make()
        got = _outcome_of(sut, clause, ScriptedNext(error, clock=FakeClock()), deadline_in=60.0)
        if isinstance(got, CallError):
            if not wraps(got, error):
                raise ContractViolation(
                    clause,
                    f"on {what} it raised {type(got).__name__}({got}) which neither is nor wraps the "
                    "inner error (set __cause__ or .errors)",
                )
        elif isinstance(got, BaseException):
            raise ContractViolation(
                clause, f"on {what} it raised {type(got).__name__}: {got}, which is not an llmchain CallError"
            )
        elif not isinstance(got, LLMResponse) or not got.notes:
            raise ContractViolation(
                clause,
                f"turned {what} into a value silently: it returned {got!r} although every call inward "
                "failed (raise, or say what was substituted in response.notes)",
            )


def check_cancellation(sut: StageUnderTest) -> None:
    """Cancellation is never swallowed, retried or turned into an error or a value."""
    clause = "cancellation"
    clock = FakeClock()
    stage = sut.build(clock)
    inner = ScriptedNext(asyncio.CancelledError(), clock=clock)

    async def inner_cancelled() -> str:
        try:
            got = await stage.handle(probe_request(clock), inner)
        except asyncio.CancelledError:
            return "cancelled"
        except BaseException as exc:
            return f"raised {type(exc).__name__}: {exc}"
        return f"returned {got!r}"

    what = sut.run(clause, inner_cancelled)
    if what != "cancelled" or inner.call_count != 1:
        raise ContractViolation(
            clause,
            f"when call_next was cancelled the stage {what} after {inner.call_count} inward call(s); "
            "it must re-raise CancelledError at once",
        )
    _check_outer_cancel(sut)


def _check_outer_cancel(sut: StageUnderTest) -> None:
    clause = "cancellation"
    clock = FakeClock()
    stage = sut.build(clock)
    inner = ScriptedNext(Hang(), clock=clock)

    async def main() -> str:
        task = asyncio.ensure_future(stage.handle(probe_request(clock), inner))
        for _ in range(SPINS):
            if inner.call_count:
                break
            await asyncio.sleep(0)
        entered = inner.call_count
        task.cancel()
        for _ in range(SPINS):
            if task.done():
                break
            await asyncio.sleep(0)
        if not task.done():
            return "kept running after it was cancelled"
        if inner.call_count != entered:
            return f"called inward again after it was cancelled ({entered} -> {inner.call_count} calls)"
        if task.cancelled():
            return "cancelled"
        exc = task.exception()
        return f"raised {type(exc).__name__}: {exc}" if exc else f"returned {task.result()!r}"

    what = sut.run(clause, main)
    if what != "cancelled":
        raise ContractViolation(
            clause, f"when the caller was cancelled while waiting inward the stage {what}"
        )


def _mutation_scenarios() -> list[tuple[str, bool, Step]]:
    return [
        ("a plain answer", False, probe_response()),
        ("a structured answer", True, probe_response(PROBE_JSON)),
        ("a failing call", False, TransportError("contract: connection reset")),
    ]


def check_request_untouched(sut: StageUnderTest) -> None:
    """The caller's request (and every dict inside it) is the same after the call."""
    clause = "request_untouched"
    for what, structured, step in _mutation_scenarios():  # only the request matters, not the outcome
        clock = FakeClock()
        request = probe_request(clock, structured=structured)
        before, output_type = copy.deepcopy(request.model_dump()), request.output_type
        _outcome_of(sut, clause, ScriptedNext(step, clock=clock), request=request)
        after = request.model_dump()
        if after != before or request.output_type is not output_type:
            changed = sorted(k for k in before if before[k] != after.get(k))
            raise ContractViolation(clause, f"on {what} it mutated the caller's request in place: {changed}")


def check_inner_response_untouched(sut: StageUnderTest) -> None:
    """The response call_next returned is not modified in place (derive copies instead)."""
    clause = "inner_response_untouched"
    for what, structured, step in _mutation_scenarios()[:2]:
        assert isinstance(step, LLMResponse)
        clock = FakeClock()
        sent = step.model_copy(update={"notes": {"inner": {"kept": True}}, "headers": {"x-request-id": "a"}})
        before = copy.deepcopy(sent.model_dump())
        request = probe_request(clock, structured=structured)
        _handle_once(sut, clause, request, ScriptedNext(sent, clock=clock))
        if sent.model_dump() != before:
            changed = sorted(k for k in before if before[k] != sent.model_dump().get(k))
            raise ContractViolation(clause, f"on {what} it mutated the inner response in place: {changed}")
