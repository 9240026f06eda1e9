"""Properties: the repair ladder never exceeds its re-ask count or its token budget.

The fake model answers from a random script of bad and good answers, honours ``max_tokens``
(cutting its answer) and reports usage the way providers roughly do (4 characters a token,
3 tokens of overhead per message), which the stage's deliberately high estimate covers.
"""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from llmchain import GaveUp, LLMRequest, LLMResponse, Usage
from llmchain.middleware.parse import ParseMiddleware
from llmchain.middleware.repair import RepairMiddleware
from llmchain.middleware.validate import ValidateMiddleware

from .helpers import Person, request, run

GOOD = '{"name": "Al", "age": 3}'
bad_answers = st.sampled_from([
    "I don't know.",
    '{"name": "Al"}',
    '{"name": "Al", "age": "old"}',
    '{"name": "Al", "age": [3,}',
    "Sure! " + "Here is a long explanation. " * 20,
])
answers = st.lists(bad_answers | st.just(GOOD), min_size=1, max_size=8)


class FakeModel:
    """Plays scripted answers; cuts them to max_tokens; reports usage like a provider."""

    def __init__(self, script: list[str], report_usage: bool) -> None:
        self.script = script
        self.report_usage = report_usage
        self.calls: list[LLMRequest] = []
        self.usage: list[int] = []

    async def __call__(self, req: LLMRequest) -> LLMResponse:
        text = self.script[min(len(self.calls), len(self.script) - 1)]
        self.calls.append(req)
        if req.max_tokens is not None:
            text = text[: req.max_tokens * 4]
        used = sum((len(m.content) + 3) // 4 + 3 for m in req.messages) + (len(text) + 3) // 4
        self.usage.append(used)
        usage = Usage(input_tokens=used - (len(text) + 3) // 4, output_tokens=(len(text) + 3) // 4)
        return LLMResponse(text=text, usage=usage if self.report_usage else Usage())


@settings(max_examples=300, deadline=None)
@given(
    script=answers,
    max_reasks=st.integers(0, 4),
    max_reask_tokens=st.none() | st.integers(1, 3000),
    report_usage=st.booleans(),
    include_schema=st.booleans(),
)
def test_repair_stays_within_its_budgets(
    script: list[str], max_reasks: int, max_reask_tokens: int | None, report_usage: bool,
    include_schema: bool,
) -> None:
    model = FakeModel(script, report_usage)
    repair = RepairMiddleware(RepairMiddleware.Options(
        max_reasks=max_reasks, max_reask_tokens=max_reask_tokens, include_schema=include_schema))
    validate, parse = ValidateMiddleware(), ParseMiddleware()

    async def chain() -> LLMResponse:
        return await repair.handle(
            request(output_type=Person), lambda r: validate.handle(r, lambda r2: parse.handle(r2, model)))

    outcome: LLMResponse | GaveUp
    try:
        outcome = run(chain())
    except GaveUp as exc:
        outcome = exc
    if isinstance(outcome, GaveUp):
        assert len(outcome.errors) == len(model.calls)  # every answer is accounted for
    else:
        assert outcome.parsed == Person(name="Al", age=3)
        assert outcome.notes.get("reasks", 0) == len(model.calls) - 1
    reasks = len(model.calls) - 1
    assert reasks <= max_reasks
    if max_reask_tokens is not None:
        assert sum(model.usage[1:]) <= max_reask_tokens
        assert all(r.max_tokens is not None for r in model.calls[1:])
