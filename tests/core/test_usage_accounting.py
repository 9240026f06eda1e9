"""Accounting without a log stage: billed tokens across attempts and re-asks, cost, totals."""

from __future__ import annotations

from typing import Any

import pytest

import llmchain
from llmchain import Chain, Event, GaveUp, OutputError, PriceTable, ProviderError, Usage, set_prices
from llmchain.middleware.cache import CacheMiddleware
from llmchain.middleware.parse import ParseMiddleware
from llmchain.middleware.repair import RepairMiddleware
from llmchain.middleware.retry import RetryMiddleware
from llmchain.testing import MockReply, MockTransport

SCHEMA: dict[str, Any] = {"type": "object", "properties": {"a": {"type": "integer"}}, "required": ["a"]}
MINI = (0.15, 0.60)  # gpt-4o-mini, USD per 1M tokens (input, output)


def _cost(tokens_in: int, tokens_out: int) -> float:
    return (tokens_in * MINI[0] + tokens_out * MINI[1]) / 1_000_000


def _chain(*replies: Any, stages: list[Any] | None = None, cycle: bool = False, **kw: Any) -> Chain:
    # no waits happen here: stages and chain share the default clock
    transport = MockTransport.scripted(*replies, model="gpt-4o-mini", cycle=cycle)
    return Chain(stages if stages is not None else [RepairMiddleware(), ParseMiddleware()],
                 transport, **kw)


def _structured(chain: Chain) -> Any:
    from llmchain.structured._output import schema_for
    return chain.complete("q", **schema_for(SCHEMA))


def test_a_reask_is_billed_apart_from_the_final_answer_and_priced_without_a_log_stage() -> None:
    chain = _chain(MockReply(text="not json", input_tokens=100, output_tokens=50),
                   MockReply(text='{"a": 1}', input_tokens=160, output_tokens=50))
    response = _structured(chain)
    usage = response.usage
    assert (usage.input_tokens, usage.output_tokens) == (160, 50)  # the final answer's
    assert (usage.billed_input_tokens, usage.billed_output_tokens) == (260, 100)  # everything paid
    assert usage.billed_answers == 2 and usage.billed_total_tokens == 360
    assert usage.cost_usd == pytest.approx(_cost(160, 50))
    assert usage.billed_cost_usd == pytest.approx(_cost(260, 100))


def test_a_local_repair_bills_the_one_answer_and_failed_attempts_bill_nothing() -> None:
    chain = _chain(ProviderError("HTTP 503", status_code=503),
                   MockReply(text='{"a": 1,', input_tokens=10, output_tokens=5),
                   stages=[RepairMiddleware(), ParseMiddleware(), RetryMiddleware(rng=lambda: 0.0)])
    usage = _structured(chain).usage
    assert (usage.billed_input_tokens, usage.billed_output_tokens, usage.billed_answers) == (10, 5, 1)


def test_running_totals_per_model_count_failed_calls_and_reach_observers() -> None:
    events: list[Event] = []
    chain = _chain(MockReply(text="no", input_tokens=10, output_tokens=4), cycle=True,
                   stages=[RepairMiddleware(RepairMiddleware.Options(max_reasks=1)), ParseMiddleware()],
                   observers=[events.append])
    with pytest.raises((GaveUp, OutputError)):
        _structured(chain)  # two answers, both rejected: still paid
    ok = _chain(MockReply(text='{"a": 2}', input_tokens=7, output_tokens=3))
    _structured(ok)
    totals = chain.usage()["gpt-4o-mini"]
    assert (totals.calls, totals.billed_answers) == (1, 2)
    assert (totals.billed_input_tokens, totals.billed_output_tokens) == (20, 8)
    assert totals.cost_usd == pytest.approx(_cost(20, 8))
    assert totals.prices_version == llmchain.PRICES_VERSION
    end = next(e for e in events if e.kind == "call_end")
    assert (end.data["billed_input_tokens"], end.data["billed_output_tokens"]) == (20, 8)
    assert ok.usage()["gpt-4o-mini"].billed_total_tokens == 10  # per chain


def test_a_cache_hit_costs_nothing_and_bills_nothing() -> None:
    chain = _chain(MockReply(text="hello", input_tokens=5, output_tokens=2),
                   stages=[CacheMiddleware()])
    first, second = chain.complete("q"), chain.complete("q")
    assert first.usage.billed_answers == 1 and first.usage.cost_usd == pytest.approx(_cost(5, 2))
    assert second.usage.billed_answers == 0 and second.usage.billed_total_tokens == 0
    assert second.usage.cost_usd == 0.0
    assert chain.usage()["gpt-4o-mini"].billed_answers == 1


def test_the_price_table_is_versioned_and_overridable() -> None:
    saved = llmchain._prices.default_prices()
    try:
        table = set_prices({"gpt-4o-mini": (1.0, 2.0)})
        assert table.version == f"{llmchain.PRICES_VERSION}+overrides"
        chain = _chain(MockReply(text="x", input_tokens=1_000_000, output_tokens=1_000_000), stages=[],
                       cycle=True)
        assert chain.complete("q").usage.cost_usd == pytest.approx(3.0)
        chain.prices = PriceTable({"gpt-4o-mini": (0.0, 1.0)})  # per chain
        assert chain.complete("q").usage.cost_usd == pytest.approx(1.0)
        only = set_prices({"my-model": (1.0, 1.0)}, replace=True)
        assert only.price("gpt-4o") is None and only.price("my-model") == (1.0, 1.0)
    finally:
        llmchain._prices._default = saved
    assert Usage().billed_total_tokens == 0
