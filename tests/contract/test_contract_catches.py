"""The contract suite fails on stages that break it: one deliberately broken stage per clause."""

from __future__ import annotations

import time
from typing import Any

import pytest

from llmchain import LLMResponse, Usage
from llmchain.testing._contract_harness import response_diff
from llmchain.testing.contract import (
    CLAUSES,
    ContractViolation,
    MiddlewareContract,
    check_clause,
    check_middleware,
)

from . import broken_stages as b

BROKEN: list[tuple[str, Any, str]] = [
    # (clause, stage, words the violation must contain)
    ("declarations", b.KeywordOnlyNext, "positionally"),
    ("declarations", b.RolesAsList, "frozenset of strings"),
    ("declarations", b.SyncClose, "aclose is not an `async def`"),
    ("passthrough", b.DropsHeaders, "headers"),
    ("passthrough", b.CallsTwice, "2 times"),
    ("passthrough", b.ChangesTemperature, "temperature"),
    ("passthrough", b.FillsCost, "usage.cost_usd"),
    ("calls_inward_each_time", b.Memoizes, "1 time(s)"),
    ("errors_surface", b.SwallowsErrors, "silently"),
    ("errors_surface", b.RaisesForeign, "not an llmchain CallError"),
    ("errors_surface", b.LosesTheCause, "neither is nor wraps"),
    ("cancellation", b.RetriesCancellation, "must re-raise CancelledError"),
    ("cancellation", b.CancellationToTimeout, "raised TimeoutExceeded"),
    ("cancellation", b.IgnoresOuterCancel, "kept running after it was cancelled"),
    ("request_untouched", b.MutatesMetadata, "metadata"),
    ("request_untouched", b.MutatesSchema, "output_schema"),
    ("inner_response_untouched", b.MutatesInnerNotes, "notes"),
    ("deadline", b.SleepsPastDeadline, "after its deadline"),
    ("deadline", b.ExtendsDeadline, "later or missing deadline"),
    ("sync_async", b.BoundToFirstLoop, "several event loops"),
    ("sync_async", b.DiffersOffMainThread, "disagree"),
    ("options", b.AcceptsUnknownOptions, "extra='forbid'"),
    ("options", b.MutableOptions, "frozen"),
    ("stream_passthrough", b.BuffersStream, "buffers the stream"),
    ("stream_final", b.ChangesFinalText, "does not match the chunks"),
    ("stream_cancel", b.DetachesStream, "left the source"),
    ("stream_error", b.SwallowsStreamError, "ended normally"),
]


def test_every_clause_has_a_broken_stage_that_it_catches() -> None:
    assert {clause for clause, _, _ in BROKEN} == set(CLAUSES)


@pytest.mark.parametrize(
    ("clause", "stage", "expected"), BROKEN, ids=[f"{c}-{s.__name__}" for c, s, _ in BROKEN]
)
def test_clause_catches_broken_stage(clause: str, stage: Any, expected: str) -> None:
    with pytest.raises(ContractViolation) as info:
        check_clause(stage, clause, examples=5)
    assert info.value.clause == clause
    assert expected in str(info.value)


@pytest.mark.parametrize("stage", [b.Good, b.factory_function])
def test_a_correct_stage_passes_every_clause(stage: Any) -> None:
    report = check_middleware(stage, examples=5)
    assert [r.clause for r in report.results] == list(CLAUSES)
    assert all(r.status == "passed" for r in report.results)


def test_real_sleeping_fails_fast_instead_of_hanging() -> None:
    start = time.monotonic()
    with pytest.raises(ContractViolation, match="injected"):
        check_clause(b.SleepsForReal, "passthrough", examples=0, real_time_limit_s=0.2)
    assert time.monotonic() - start < 5


def test_check_middleware_lists_every_broken_clause() -> None:
    with pytest.raises(ContractViolation) as info:
        check_middleware(b.CallsTwice, examples=0, clauses=["calls_inward_each_time", "passthrough", "options"])
    text = str(info.value)
    assert "[calls_inward_each_time]" in text and "[passthrough]" in text and "[options]" not in text


def test_exemption_turns_a_named_failure_into_a_reported_exemption() -> None:
    reason = "remembering answers is this stage's whole point"
    result = check_clause(b.Memoizes, "calls_inward_each_time", exempt={"calls_inward_each_time": reason})
    assert result.status == "exempt" and result.reason == reason
    assert result.detail is not None and "1 time(s)" in result.detail


def test_exemption_covers_only_its_clause() -> None:
    exempt = {"calls_inward_each_time": "remembering answers is this stage's whole point"}
    with pytest.raises(ContractViolation, match=r"\[request_untouched\]"):
        check_clause(b.MutatesMetadata, "request_untouched", exempt=exempt)


def test_stale_exemption_fails() -> None:
    with pytest.raises(ContractViolation, match="remove the exemption"):
        check_clause(b.Good, "calls_inward_each_time", exempt={"calls_inward_each_time": "it is a cache, honest"})


@pytest.mark.parametrize(
    ("exempt", "message"),
    [
        ({"no_such_clause": "a perfectly good reason"}, "unknown clause"),
        ({"passthrough": ""}, "needs a reason"),
        ({"passthrough": "because"}, "needs a reason"),
    ],
)
def test_exemptions_must_be_named_and_justified(exempt: dict[str, str], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        check_clause(b.Good, "passthrough", exempt=exempt)


def test_declared_annotation_allows_filling_a_missing_field() -> None:
    annotates = {"usage.cost_usd": "prices every call from a table"}
    assert check_clause(b.FillsCost, "passthrough", annotates=annotates, examples=5).status == "passed"


def test_annotation_never_allows_changing_a_value_that_was_there() -> None:
    sent = LLMResponse(text="a", usage=Usage(input_tokens=1, cost_usd=0.5))
    got = sent.model_copy(update={"usage": Usage(input_tokens=1, cost_usd=0.7)})
    assert response_diff(got, sent, {"usage.cost_usd": "prices every call"}) == ["usage.cost_usd: 0.5 -> 0.7"]
    assert response_diff(sent, sent, {}) == []


@pytest.mark.parametrize("path", ["usage.nope", "nope", "notes"])
def test_annotations_must_name_response_fields(path: str) -> None:
    with pytest.raises(ValueError, match="not an LLMResponse field"):
        check_clause(b.Good, "passthrough", annotates={path: "a perfectly good reason"})


class TestGoodStageContract(MiddlewareContract):
    """The class form, as a plugin author uses it."""

    factory = b.Good
    options = {"level": 2}
    examples = 5


class TestMemoizingStageContract(MiddlewareContract):
    """An exempt clause shows up as xfail with its reason, every other clause still runs."""

    factory = b.Memoizes
    exempt = {"calls_inward_each_time": "remembering answers is this stage's whole point"}
    examples = 5


def test_contract_class_without_factory_is_an_error() -> None:
    class TestNothing(MiddlewareContract):
        pass

    with pytest.raises(TypeError, match="must set `factory"):
        TestNothing().check("passthrough")
