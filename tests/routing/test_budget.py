"""The budget stage: limits per window and per tag, reserve before / settle after, typed errors."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from llmchain import BudgetExceeded, CallError, Chain, ConfigError, Event, LLMRequest, LLMResponse, Usage
from llmchain.middleware.budget import BudgetMiddleware, Limit
from llmchain.policies.spend import MICRO, Entry, SpendLedger, window_bounds
from llmchain.testing import FakeClock
from llmchain.transports.mock import MockReply

NOON = 1_767_268_800.0  # 2026-01-01 12:00:00 UTC


def chain(limits: list[dict[str, Any]], *replies: Any, clock: FakeClock | None = None,
          observers: tuple[Any, ...] = (), **stage: Any) -> Chain:
    from llmchain.transports.mock import MockTransport

    transport = MockTransport.scripted(*replies, model="gpt-4o-mini", clock=clock or FakeClock(wall_start=NOON))
    return Chain([{"use": "budget", "tokenizer": "heuristic", "limits": limits, **stage}], transport,
                 clock=clock or FakeClock(wall_start=NOON), observers=observers)


def test_windows_are_utc_calendar_windows() -> None:
    assert window_bounds("hour", NOON + 61) == ("20260101T12", NOON, NOON + 3600)
    assert window_bounds("day", NOON)[1:] == (NOON - 43200, NOON + 43200)
    wid, start, end = window_bounds("month", NOON + 40 * 86400)  # in February 2026: 28 days
    assert wid == "202602" and end - start == 28 * 86400


def test_a_token_limit_refuses_before_sending_and_says_which_budget_how_much_and_when() -> None:
    c = chain([{"tokens": 200, "window": "hour", "name": "hourly"}],
              *[MockReply(text="ok", input_tokens=40, output_tokens=40)] * 3)
    c.complete("hi", max_tokens=50)  # estimate 8 + 50 = 58, real 80
    c.complete("hi", max_tokens=50)  # 160 spent after settling
    with pytest.raises(BudgetExceeded) as info:
        c.complete("hi", max_tokens=50)
    err = info.value
    assert (err.budget, err.spent, err.limit, err.needed) == ("hourly", 160, 200, 58)
    assert err.resets_at == NOON + 3600 and not err.retryable
    assert "resets at: 2026-01-01 13:00:00 UTC" in err.explain()
    assert len(c.transport.calls) == 2  # the refused call never reached the transport


def test_limits_per_tag_count_each_value_separately_and_skip_untagged_calls() -> None:
    c = chain([{"tokens": 100, "per": "user"}], *[MockReply(text="a", input_tokens=30, output_tokens=30)] * 6)
    c.complete("x", max_tokens=10, metadata={"user": "ann"})
    with pytest.raises(BudgetExceeded):
        c.complete("x", max_tokens=50, metadata={"user": "ann"})  # 60 + 58 > 100
    c.complete("x", max_tokens=50, metadata={"user": "bob"})  # bob has his own
    c.complete("x", max_tokens=50)  # no user tag: this limit does not count it
    value_only = chain([{"tokens": 10, "per": "team", "value": "search"}], "a", "b")
    value_only.complete("x", max_tokens=5, metadata={"team": "ads"})
    with pytest.raises(BudgetExceeded):
        value_only.complete("x", max_tokens=50, metadata={"team": "search"})


def test_usd_limits_price_the_estimate_then_settle_the_real_cost() -> None:
    clock = FakeClock(wall_start=NOON)
    c = chain([{"usd": 1.0}], MockReply(text="a", input_tokens=1000, output_tokens=1000),
              LLMResponse(text="b", usage=Usage(input_tokens=1, output_tokens=1, cost_usd=0.5), model="gpt-4o-mini"),
              clock=clock)
    stage = c.stages[0][1]
    assert isinstance(stage, BudgetMiddleware)
    c.complete("x", max_tokens=100)
    key = stage._limits[0].key({}, NOON)
    assert key is not None
    real = (1000 * 0.15 + 1000 * 0.60) / 1e6
    assert stage.store.ledger.spent(key, NOON) == round(real * MICRO)  # type: ignore[attr-defined]
    c.complete("x", max_tokens=100)  # the transport's own cost_usd wins over the table
    assert stage.store.ledger.spent(key, NOON) == round(real * MICRO) + 500_000  # type: ignore[attr-defined]


def test_failed_calls_give_their_reservation_back_but_timeouts_keep_it() -> None:
    c = chain([{"tokens": 1000}], MockReply(error="server_error"), MockReply(error="timeout"))
    stage = c.stages[0][1]
    key = stage._limits[0].key({}, NOON)  # type: ignore[union-attr]
    for _ in range(2):
        with pytest.raises(CallError):
            c.complete("x", max_tokens=100)
    assert stage.store.ledger.spent(key, NOON) == 108  # type: ignore[union-attr]  # only the timeout's


def test_the_window_resets_at_its_end() -> None:
    clock = FakeClock(wall_start=NOON)
    c = chain([{"tokens": 100, "window": "hour"}], *[MockReply(text="a", input_tokens=50, output_tokens=40)] * 3,
              clock=clock)
    c.complete("x", max_tokens=50)
    with pytest.raises(BudgetExceeded):
        c.complete("x", max_tokens=50)
    clock.advance(3600)
    c.complete("x", max_tokens=50)


def test_a_soft_limit_emits_an_event_and_a_warning_once(caplog: pytest.LogCaptureFixture) -> None:
    events: list[Event] = []
    c = chain([{"tokens": 1000, "soft": 0.5, "name": "daily"}], *[MockReply(text="a", input_tokens=1, output_tokens=1)] * 5,
              observers=(events.append,))
    with caplog.at_level(logging.WARNING, "llmchain.budget"):
        for _ in range(5):
            c.complete("x", max_tokens=150)  # reserves 158 each, settles to 2
    soft = [e for e in events if e.kind == "budget_soft_limit"]
    assert soft == [] and not caplog.records  # settling kept it well under half
    c2 = chain([{"tokens": 1000, "soft": 0.5, "name": "daily"}], *[MockReply(text="a", input_tokens=200, output_tokens=100)] * 3,
               observers=(events.append,))
    with caplog.at_level(logging.WARNING, "llmchain.budget"):
        for _ in range(3):
            c2.complete("x", max_tokens=100)
    soft = [e for e in events if e.kind == "budget_soft_limit"]
    assert len(soft) == 1 and soft[0].data["budget"] == "daily"
    assert len(caplog.records) == 1 and "soft limit" in caplog.records[0].getMessage()


@pytest.mark.parametrize(("limit", "problem"), [
    ({}, "exactly one of usd"), ({"usd": 1, "tokens": 5}, "exactly one of usd"),
    ({"tokens": 5, "value": "x"}, "value needs per"), ({"tokens": 5, "window": "week"}, "window"),
    ({"tokens": 5, "soft": 1.5}, "soft"),
])
def test_bad_limits_are_config_errors_that_say_what(limit: dict[str, Any], problem: str) -> None:
    with pytest.raises(ConfigError, match=problem):
        Chain([{"use": "budget", "limits": [limit]}], "mock")


def test_an_unknown_price_under_a_usd_limit_is_a_config_error_naming_the_fix() -> None:
    c = Chain([{"use": "budget", "limits": [{"usd": 1}]}], {"use": "mock", "model": "my-local-llm"})
    with pytest.raises(ConfigError, match=r"no price for model 'my-local-llm'.*prices"):
        c.complete("x")
    priced = Chain([{"use": "budget", "limits": [{"usd": 1}], "prices": {"my-local-llm": [1.0, 2.0]}}],
                   {"use": "mock", "model": "my-local-llm"})
    assert priced.complete("x").text == "x"


def test_embeddings_are_estimated_by_their_input_only() -> None:
    stage = BudgetMiddleware(BudgetMiddleware.Options(limits=[Limit(tokens=10)], tokenizer="heuristic"),
                             clock=FakeClock(wall_start=NOON))
    seen: list[LLMRequest] = []

    async def inner(request: LLMRequest) -> LLMResponse:
        seen.append(request)
        return LLMResponse(text="", embeddings=((0.0,),), usage=Usage(input_tokens=2))

    request = LLMRequest(messages=(), embed_input=("abcdefgh",), model="text-embedding-3-small")
    response = asyncio.run(stage.handle(request, inner))
    assert response.notes["budget"]["estimated_tokens"] == 2 and seen


# -- concurrency: never more than one estimate over per caller in flight -------------------------

@settings(max_examples=60, deadline=None)
@given(limit=st.integers(100, 5000), calls=st.lists(
    st.tuples(st.integers(1, 200), st.floats(0, 2)), min_size=1, max_size=40))
def test_concurrent_callers_never_overspend_beyond_one_estimate_each(limit: int, calls: list[tuple[int, float]]) -> None:
    """Each caller's real usage is up to twice its estimate (the worst a max_tokens-bounded
    answer does against a fair prompt estimate); spent never passes limit + the estimates."""
    ledger = SpendLedger()
    all_in = asyncio.Event()
    arrived: list[int] = []

    async def caller(estimate: int, ratio: float) -> int:
        outcome = ledger.reserve([Entry("k", estimate, limit, 60)], NOON)
        arrived.append(1)
        if len(arrived) == len(calls):  # every reservation made, none settled yet
            assert ledger.spent("k", NOON) <= limit  # reservations alone never pass the limit
            all_in.set()
        if not outcome.ok:
            return 0
        await all_in.wait()  # every admitted caller is in flight at once
        ledger.settle([Entry("k", round(estimate * ratio) - estimate, limit, 60)], NOON)
        return estimate

    async def run() -> list[int]:
        return await asyncio.gather(*(caller(e, r) for e, r in calls))

    admitted = asyncio.run(run())
    assert ledger.spent("k", NOON) <= limit + sum(admitted)  # at most one estimate over per caller
    assert admitted[0] == calls[0][0] or calls[0][0] > limit  # the first caller is never refused wrongly


def test_a_cache_hit_inside_the_budget_costs_nothing() -> None:
    c = Chain([{"use": "budget", "tokenizer": "heuristic", "limits": [{"tokens": 200}]}, "cache"],
              {"use": "mock", "model": "gpt-4o-mini"})
    for _ in range(10):  # 10 x ~70 tokens would pass 200; only the first is billed
        c.complete("same question", max_tokens=50)
    stage = c.stages[0][1]
    key = stage._limits[0].key({}, stage._clock.wall())  # type: ignore[attr-defined]
    assert 0 < stage.store.ledger.spent(key, stage._clock.wall()) < 70  # type: ignore[attr-defined]
