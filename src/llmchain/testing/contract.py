"""The middleware contract: what every stage must obey, as a reusable test suite.

Run a stage factory through it with a test class::

    from llmchain.testing.contract import MiddlewareContract

    class TestMyStage(MiddlewareContract):
        factory = MyStage
        options = {"level": 2}          # what it needs to have something to do

or with a function (``check_middleware(MyStage, {"level": 2})``) that raises
``ContractViolation`` naming each broken clause. A clause that cannot apply to a stage is
exempted explicitly, with a reason: ``exempt = {"calls_inward_each_time": "a cache answers
repeats from its store"}``. Exemptions are strict: an exempt clause still runs, and if the stage
in fact obeys it the exemption is reported as stale. Narrower than an exemption, ``annotates``
names response fields a stage may fill in where the provider left them None (``{"usage.cost_usd":
"log prices the call"}``); it may never change a value that was there.

Calls need no network and never sleep: every clause runs on a ``FakeClock``, with a real-time
guard (``real_time_limit_s``) that fails a stage waiting on the real clock.

Call the checks from synchronous test code (they run their own event loops).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

from ._contract_declare import check_declarations
from ._contract_flow import (
    check_calls_inward_each_time,
    check_cancellation,
    check_errors_surface,
    check_inner_response_untouched,
    check_passthrough,
    check_request_untouched,
)
from ._contract_harness import ContractViolation, StageUnderTest, validate_annotations
from ._contract_runtime import check_deadline, check_options, check_sync_async
from ._contract_stream import (
    check_stream_cancel,
    check_stream_error,
    check_stream_final,
    check_stream_passthrough,
)

__all__ = [
    "CLAUSES",
    "ClauseResult",
    "ContractReport",
    "ContractViolation",
    "MiddlewareContract",
    "assert_clause",
    "check_clause",
    "check_middleware",
]

#: Clause name → (the rule, its check). Names are what ``exempt`` refers to.
CLAUSES: Mapping[str, tuple[str, Callable[[StageUnderTest], None]]] = {
    "declarations": (
        "has what llmchain.Stage says: an async handle(request, call_next) callable positionally; "
        "name, kind, roles, handles_streams, needs_transport_identity and aclose, where declared, "
        "of the documented types",
        check_declarations,
    ),
    "passthrough": (
        "with nothing to do, it calls inward once with the same request and returns the answer unchanged",
        check_passthrough,
    ),
    "calls_inward_each_time": (
        "two identical calls each reach call_next and each get the answer it gave then",
        check_calls_inward_each_time,
    ),
    "errors_surface": (
        "never turns an inner error into a value silently: it raises a CallError that is or wraps it",
        check_errors_surface,
    ),
    "cancellation": ("lets cancellation through: never swallows, retries or wraps it", check_cancellation),
    "request_untouched": (
        "never mutates the caller's request (nor the dicts inside it)",
        check_request_untouched,
    ),
    "inner_response_untouched": (
        "never mutates the response call_next returned",
        check_inner_response_untouched,
    ),
    "deadline": (
        "never waits past the call's deadline, and never passes a later deadline inward",
        check_deadline,
    ),
    "sync_async": (
        "behaves the same under complete(), acomplete() and complete() inside a running loop",
        check_sync_async,
    ),
    "options": (
        "rejects unknown options (ConfigError from config, ValidationError in code); Options is frozen",
        check_options,
    ),
    "stream_passthrough": (
        "on a streamed call, the chunks pass through in order and unbuffered",
        check_stream_passthrough,
    ),
    "stream_final": (
        "on a streamed call, the final response matches the chunks and is the inner one",
        check_stream_final,
    ),
    "stream_cancel": (
        "closing a stream mid-way closes it down to the source (the connection), raising nothing",
        check_stream_cancel,
    ),
    "stream_error": (
        "a failure mid-stream surfaces as the typed error (StreamInterrupted), or a CallError wrapping it",
        check_stream_error,
    ),
}


@dataclass(frozen=True)
class ClauseResult:
    """How one clause went: ``passed``, or ``exempt`` (it failed as declared, with ``reason``)."""

    clause: str
    status: Literal["passed", "exempt"]
    reason: str | None = None
    detail: str | None = None


@dataclass(frozen=True)
class ContractReport:
    """Every clause's result for one stage factory."""

    factory: Any
    results: tuple[ClauseResult, ...]

    @property
    def exempt(self) -> dict[str, str]:
        return {r.clause: r.reason or "" for r in self.results if r.status == "exempt"}


def validate_exemptions(exempt: Mapping[str, str]) -> None:
    """Exemptions must name real clauses and say why (a sentence, not a shrug)."""
    for clause, reason in exempt.items():
        if clause not in CLAUSES:
            raise ValueError(f"exemption for unknown clause {clause!r}; clauses are {sorted(CLAUSES)}")
        if not isinstance(reason, str) or len(reason.split()) < 3:
            raise ValueError(f"exemption from {clause!r} needs a reason of a few words, got {reason!r}")


def check_clause(
    factory: Any,
    clause: str,
    options: Mapping[str, Any] | None = None,
    *,
    exempt: Mapping[str, str] | None = None,
    annotates: Mapping[str, str] | None = None,
    examples: int = 20,
    real_time_limit_s: float = 5.0,
) -> ClauseResult:
    """Run one clause; raise ``ContractViolation`` if the stage breaks it (or a stale exemption)."""
    exempt = dict(exempt or {})
    validate_exemptions(exempt)
    validate_annotations(annotates or {})
    if clause not in CLAUSES:
        raise ValueError(f"unknown clause {clause!r}; clauses are {sorted(CLAUSES)}")
    sut = StageUnderTest(factory, dict(options or {}), dict(annotates or {}), examples, real_time_limit_s)
    rule, check = CLAUSES[clause]
    try:
        check(sut)
    except ContractViolation as violation:
        if clause in exempt and violation.clause != "build":
            return ClauseResult(clause, "exempt", exempt[clause], str(violation))
        raise
    if clause in exempt:
        raise ContractViolation(
            clause,
            f"{sut.label} is declared exempt ({exempt[clause]!r}) but obeys the rule ({rule}); "
            "remove the exemption",
        )
    return ClauseResult(clause, "passed")


def check_middleware(
    factory: Any,
    options: Mapping[str, Any] | None = None,
    *,
    exempt: Mapping[str, str] | None = None,
    annotates: Mapping[str, str] | None = None,
    clauses: Iterable[str] | None = None,
    examples: int = 20,
    real_time_limit_s: float = 5.0,
) -> ContractReport:
    """Run every clause (or those named); raise one ``ContractViolation`` listing all that failed."""
    results, failures = [], []
    for clause in clauses if clauses is not None else CLAUSES:
        try:
            results.append(
                check_clause(
                    factory, clause, options, exempt=exempt, annotates=annotates, examples=examples,
                    real_time_limit_s=real_time_limit_s,
                )
            )
        except ContractViolation as violation:
            failures.append(str(violation))
    if failures:
        raise ContractViolation("contract", "\n".join(failures))
    return ContractReport(factory, tuple(results))


def assert_clause(factory: Any, clause: str, options: Mapping[str, Any] | None = None, **kw: Any) -> None:
    """``check_clause`` for pytest: an exempt clause is reported as xfail, with its reason."""
    result = check_clause(factory, clause, options, **kw)
    if result.status == "exempt":
        import pytest  # only when running under pytest

        pytest.xfail(f"exempt from {clause!r}: {result.reason}")


class MiddlewareContract:
    """Subclass as ``TestSomething`` and set ``factory`` (and ``options``/``exempt`` if needed).

    One test method per clause, so a report names exactly which rule a stage broke.
    """

    factory: ClassVar[Any] = None
    options: ClassVar[Mapping[str, Any]] = {}
    exempt: ClassVar[Mapping[str, str]] = {}
    annotates: ClassVar[Mapping[str, str]] = {}
    examples: ClassVar[int] = 20
    real_time_limit_s: ClassVar[float] = 5.0

    def check(self, clause: str) -> None:
        cls = type(self)
        if cls.factory is None:
            raise TypeError(f"{cls.__name__} must set `factory = <stage class or factory>`")
        assert_clause(
            cls.factory, clause, cls.options, exempt=cls.exempt, annotates=cls.annotates,
            examples=cls.examples, real_time_limit_s=cls.real_time_limit_s,
        )

    def test_exemptions_are_named_and_justified(self) -> None:
        validate_exemptions(type(self).exempt)
        validate_annotations(type(self).annotates)

    def test_declarations(self) -> None:
        self.check("declarations")

    def test_passthrough(self) -> None:
        self.check("passthrough")

    def test_calls_inward_each_time(self) -> None:
        self.check("calls_inward_each_time")

    def test_errors_surface(self) -> None:
        self.check("errors_surface")

    def test_cancellation(self) -> None:
        self.check("cancellation")

    def test_request_untouched(self) -> None:
        self.check("request_untouched")

    def test_inner_response_untouched(self) -> None:
        self.check("inner_response_untouched")

    def test_deadline(self) -> None:
        self.check("deadline")

    def test_sync_async(self) -> None:
        self.check("sync_async")

    def test_options(self) -> None:
        self.check("options")

    def test_stream_passthrough(self) -> None:
        self.check("stream_passthrough")

    def test_stream_final(self) -> None:
        self.check("stream_final")

    def test_stream_cancel(self) -> None:
        self.check("stream_cancel")

    def test_stream_error(self) -> None:
        self.check("stream_error")
