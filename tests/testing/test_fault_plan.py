"""The fault plan: short forms, scripts, seeded rates."""

from __future__ import annotations

from collections import Counter

import pytest
from hypothesis import given
from hypothesis import strategies as st

from llmchain.testing._fault_plan import FAULT_KINDS, Fault, FaultPlan


@pytest.mark.parametrize(
    ("text", "kind", "attrs"),
    [
        ("ok", "ok", {}),
        ("latency:0.25", "ok", {"delay_s": 0.25}),
        ("hang", "hang_before_headers", {}),
        ("hang_after_headers:0.5", "hang_after_headers", {"hang_s": 0.5}),
        ("trickle:0.01", "trickle", {"trickle_interval_s": 0.01}),
        ("429", "rate_limited", {"status": 429, "retry_after": 1.0}),
        ("429:7", "rate_limited", {"retry_after": 7.0}),
        ("503", "status", {"status": 503, "retry_after": None}),
        ("529:2", "status", {"status": 529, "retry_after": 2.0}),
        ("reset", "reset", {}),
        ("not_json", "not_json", {}),
        ("truncated", "truncated_stream", {}),
        ("overloaded", "stream_error", {}),
    ],
)
def test_short_forms(text: str, kind: str, attrs: dict[str, object]) -> None:
    fault = Fault.parse(text)
    assert fault.kind == kind
    for name, value in attrs.items():
        assert getattr(fault, name) == value


def test_labels_name_the_status() -> None:
    assert Fault.parse("502").label == "502"
    assert Fault.parse("429").label == "429"
    assert Fault.parse("reset").label == "reset"


@pytest.mark.parametrize("bad", ["nope", "latency:x", "12"])
def test_unknown_faults_are_refused(bad: str) -> None:
    with pytest.raises(ValueError):
        Fault.parse(bad)
    with pytest.raises(ValueError, match="unknown fault kind"):
        Fault("boom")  # type: ignore[arg-type]


def test_script_then_default() -> None:
    plan = FaultPlan(["429", "reset"], default="503")
    assert [plan.next().label for _ in range(4)] == ["429", "reset", "503", "503"]


def test_cycle_repeats_the_script() -> None:
    plan = FaultPlan(["ok", "reset"], cycle=True)
    assert [plan.next().label for _ in range(5)] == ["ok", "reset", "ok", "reset", "ok"]


def test_rates_are_seeded_and_roughly_right() -> None:
    def draw(seed: int) -> list[str]:
        plan = FaultPlan(rates={"503": 0.1, "reset": 0.2}, seed=seed)
        return [plan.next().label for _ in range(2000)]

    first = draw(7)
    assert first == draw(7)
    assert first != draw(8)
    counts = Counter(first)
    assert 140 < counts["503"] < 260
    assert 320 < counts["reset"] < 480
    assert counts["ok"] == 2000 - counts["503"] - counts["reset"]


def test_rates_must_add_up_to_at_most_one() -> None:
    with pytest.raises(ValueError, match="at most 1"):
        FaultPlan(rates={"503": 0.7, "reset": 0.4})


def test_latency_applies_to_every_outcome() -> None:
    plan = FaultPlan(rates={"503": 0.5}, latency_s=0.2, seed=1)
    assert {plan.next().delay_s for _ in range(20)} == {0.2}


def test_coerce_accepts_the_usual_shapes() -> None:
    assert FaultPlan.coerce(None).next().kind == "ok"
    assert FaultPlan.coerce(["reset"]).next().kind == "reset"
    assert FaultPlan.coerce("503").next().label == "503"
    assert FaultPlan.coerce(429).next().label == "429"
    assert FaultPlan.coerce({"reset": 1.0}).next().kind == "reset"
    plan = FaultPlan(["ok"])
    assert FaultPlan.coerce(plan) is plan


@given(st.lists(st.sampled_from([k for k in FAULT_KINDS if k not in ("status", "rate_limited")]
                                + ["429", "500", "502", "503", "529"]), max_size=20))
def test_a_script_is_replayed_exactly(script: list[str]) -> None:
    plan = FaultPlan(script)
    assert [plan.next().label for _ in script] == script
    assert plan.next().label == "ok"


@pytest.mark.parametrize("name", ["conflicting_length", "bad_length", "bad_chunk", "huge_head", "gzip_bomb",
                                  "unasked_encoding", "stale_close", "stream_hold_open"])
def test_hostile_faults_parse_from_their_names(name: str) -> None:
    fault = Fault.parse(name)
    assert fault.kind == name and fault.label == name


def test_stream_hold_open_takes_how_long_to_hold() -> None:
    assert Fault.parse("stream_hold_open:2.5").hang_s == 2.5
