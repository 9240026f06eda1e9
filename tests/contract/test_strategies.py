"""The Hypothesis strategies produce valid, varied values of every promised kind."""

from __future__ import annotations

import subprocess
import sys

from hypothesis import given, settings
from hypothesis import strategies as st

from llmchain import CallError, LLMRequest, LLMResponse
from llmchain.testing import strategies as lst
from llmchain.testing._fault_plan import Fault, FaultPlan


def test_importing_llmchain_testing_does_not_import_hypothesis() -> None:
    code = "import sys, llmchain.testing, llmchain.testing.contract; print('hypothesis' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60)
    assert out.stdout.strip() == "False"


@given(lst.requests(structured=None))
def test_requests_are_valid_and_end_with_a_user_message(request: LLMRequest) -> None:
    assert request.messages[-1].role == "user"
    assert request.deadline is not None and request.timeout_s is not None
    assert request.deadline == request.timeout_s + 1000.0


@given(lst.requests(structured=True, deadline=False))
def test_structured_requests_carry_a_schema(request: LLMRequest) -> None:
    assert request.output_schema is not None and request.deadline is None


@given(lst.responses())
def test_responses_are_valid(response: LLMResponse) -> None:
    assert isinstance(response.text, str) and response.cache is None


@given(st.data())
def test_outcomes_are_of_the_kinds_asked_for(data: st.DataObject) -> None:
    kinds = data.draw(st.lists(st.sampled_from(lst.OUTCOME_KINDS), min_size=1, unique=True))
    outcome = data.draw(lst.outcomes(kinds))
    assert isinstance(outcome, (LLMResponse, CallError))
    assert lst.classify(outcome) in kinds


def test_every_outcome_kind_is_generated() -> None:
    seen: set[str] = set()

    @settings(max_examples=300)
    @given(lst.outcome_scripts(max_size=3))
    def collect(script: list[LLMResponse | CallError]) -> None:
        seen.update(lst.classify(o) for o in script)

    collect()
    assert seen == set(lst.OUTCOME_KINDS)


@given(lst.faults(lst.FAST_FAULTS + lst.SLOW_FAULTS))
def test_faults_use_the_fault_servers_short_form(text: str) -> None:
    fault = Fault.parse(text)
    assert fault.delay_s <= 0.2 and fault.hang_s <= 30


@given(lst.fault_plans())
def test_fault_plans_are_real_plans_and_replay_from_their_seed(plan: FaultPlan) -> None:
    assert sum(rate for _, rate in plan.rates) <= 1.0
    again = FaultPlan(plan.script, rates=[(f, r) for f, r in plan.rates], seed=plan.seed)
    n = len(plan.script) + 10
    assert [plan.next().label for _ in range(n)] == [again.next().label for _ in range(n)]
