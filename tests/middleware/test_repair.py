"""The repair stage: local repair, re-asks through the inner stages, and explainable GaveUp."""

from __future__ import annotations

import time
from typing import Any

import pytest

import llmchain.middleware.repair as repair_module
from llmchain import (
    Chain,
    ConfigError,
    Event,
    GaveUp,
    LLMRequest,
    LLMResponse,
    OutputInvalid,
    ParseError,
    RateLimited,
    TransportError,
)
from llmchain.middleware.parse import ParseMiddleware
from llmchain.middleware.repair import RepairGaveUp, RepairMiddleware
from llmchain.middleware.validate import ValidateMiddleware
from llmchain.testing import FakeClock, MockTransport
from tests.structured.helpers import Person, Script, answer, request, run

Options = RepairMiddleware.Options
GOOD = '{"name": "Al", "age": 3}'


async def ladder(script: Script, req: LLMRequest | None = None, **options: Any) -> LLMResponse:
    """repair ─► validate ─► parse ─► script, as in the default chain."""
    repair, validate, parse = RepairMiddleware(Options(**options)), ValidateMiddleware(), ParseMiddleware()

    async def inner(r: LLMRequest) -> LLMResponse:
        return await validate.handle(r, lambda r2: parse.handle(r2, script))

    return await repair.handle(req or request(output_type=Person), inner)


def test_a_good_answer_passes_untouched() -> None:
    reply = answer(GOOD)
    script = Script(reply)
    response = run(ladder(script))
    assert response.text == GOOD and response.parsed == Person(name="Al", age=3)
    assert response.notes == {} and len(script.calls) == 1


def test_broken_json_is_repaired_locally_without_asking_again() -> None:
    bad = "Sure! ```json\n{'name': 'Al', age: 3, // years\n}\n```"
    script = Script(bad)
    response = run(ladder(script))
    assert response.parsed == Person(name="Al", age=3)
    assert len(script.calls) == 1
    assert response.text == GOOD  # the usable JSON; the original is kept in the notes
    assert response.notes["repaired"] == "local" and response.notes["reasks"] == 0
    assert response.notes["original_text"] == bad
    assert set(response.notes["repair_actions"]) == {"comments", "single quotes", "trailing comma",
                                                     "unquoted keys"}


def test_valid_json_that_fails_validation_is_never_altered_locally() -> None:
    script = Script('{"name": "Al", "age": "three"}', GOOD)
    response = run(ladder(script))
    assert response.notes["repaired"] == "reask" and len(script.calls) == 2


def test_reask_sends_original_messages_bad_answer_and_errors() -> None:
    req = request("Who is Al?", output_type=Person, timeout_s=30, deadline=time.monotonic() + 1000.0, metadata={"k": 1})
    script = Script('{"name": "Al"}', GOOD)
    response = run(ladder(script, req, include_schema=False))
    assert response.parsed == Person(name="Al", age=3)
    assert response.notes == {"repaired": "reask", "reasks": 1, "reask_tokens": 15}
    reask = script.calls[1]
    assert [m.role for m in reask.messages] == ["user", "assistant", "user"]
    assert reask.messages[0] == req.messages[0]
    assert reask.messages[1].content == '{"name": "Al"}'
    assert "- age: Field required" in reask.messages[2].content
    assert "JSON Schema" not in reask.messages[2].content
    assert reask.messages[2].content.endswith(repair_module.DEFAULT_INSTRUCTION)
    assert (reask.request_id, reask.deadline) == (req.request_id, req.deadline)
    assert reask.metadata == {"k": 1, "repair_reask": 1}


def test_reask_shows_the_schema_by_default() -> None:
    script = Script('{"name": "Al"}', GOOD)
    run(ladder(script))
    assert '"required":["name","age"]' in script.calls[1].messages[-1].content


def test_local_repair_is_tried_on_reasked_answers_too() -> None:
    script = Script('{"name": "Al"}', '{"name": "Al", "age": 3,}')
    response = run(ladder(script))
    assert response.notes["repaired"] == "local" and response.notes["reasks"] == 1


def test_gave_up_explains_every_rejected_answer() -> None:
    answers = ["I think Al is 3.", '{"name": "Al", "age": "old"}', '{"name": "Al", "age": "old",}',
               '{"name": "Al", "age": [3,}']
    script = Script(*answers)
    with pytest.raises(GaveUp) as info:
        run(ladder(script, max_reasks=3))
    err = info.value
    assert isinstance(err, RepairGaveUp) and not err.retryable
    assert [type(e) for e in err.errors] == [ParseError, OutputInvalid, ParseError, ParseError]
    assert [getattr(e, "raw_text", None) for e in err.errors] == answers
    assert err.__cause__ is err.errors[-1]
    explained = err.explain()
    for text in answers:
        assert repr(text)[1:-1] in explained
    assert "all 3 re-ask(s) used" in explained
    assert "invalid: age: Input should be a valid integer" in explained
    assert "local repair: failed: no JSON found to repair" in explained
    assert "local repair: the repaired JSON is still unusable" in explained  # answer 3
    assert "local repair: failed: the damage is beyond the local fixes" in explained  # answer 4
    assert len(script.calls) == 4


@pytest.mark.parametrize("error", [RateLimited("slow down", retry_after=1), TransportError("reset")])
def test_non_output_errors_pass_through_untouched(error: Exception) -> None:
    script = Script(error)
    with pytest.raises(type(error)) as info:
        run(ladder(script))
    assert info.value is error and len(script.calls) == 1


def test_a_transport_error_during_a_reask_propagates_as_is() -> None:
    down = TransportError("connection reset")
    script = Script('{"name": "Al"}', down)
    with pytest.raises(TransportError) as info:
        run(ladder(script))
    assert info.value is down and len(script.calls) == 2


def test_max_reasks_zero_means_local_repair_only() -> None:
    script = Script('{"name": "Al"}')
    with pytest.raises(GaveUp, match=r"max_reasks = 0"):
        run(ladder(script, max_reasks=0))
    assert len(script.calls) == 1


def test_the_token_budget_stops_reasks_before_they_are_sent() -> None:
    script = Script('{"name": "Al"}', GOOD)
    with pytest.raises(GaveUp, match="token budget is spent"):
        run(ladder(script, max_reask_tokens=20))
    assert len(script.calls) == 1


def test_reask_max_tokens_is_capped_to_what_the_budget_leaves() -> None:
    script = Script('{"name": "Al"}', GOOD)
    run(ladder(script, request(output_type=Person, max_tokens=4000), max_reask_tokens=500,
               include_schema=False))
    reask = script.calls[1]
    prompt = repair_module.estimate_tokens(reask.messages)
    assert reask.max_tokens == 500 - prompt


def test_no_reask_after_the_deadline() -> None:
    clock = FakeClock(start=100.0)
    req = request(output_type=Person, deadline=100.0)
    stage = RepairMiddleware(clock=clock)
    script = Script('{"name": "Al"}')
    with pytest.raises(GaveUp, match="deadline"):
        run(stage.handle(req, lambda r: ValidateMiddleware().handle(r, script)))
    assert len(script.calls) == 1


def test_truncated_answers_are_not_repaired_locally_unless_allowed() -> None:
    cut = answer('{"name": "Al", "age": 3', finish_reason="length")
    with pytest.raises(GaveUp) as info:
        run(ladder(Script(cut), max_reasks=0))
    assert "cut off at max_tokens" in info.value.explain()
    response = run(ladder(Script(cut), repair_truncated=True))
    assert response.parsed == Person(name="Al", age=3)


def test_local_repair_off() -> None:
    script = Script('{"name": "Al", "age": 3,}', GOOD)
    response = run(ladder(script, local_repair="off"))
    assert response.notes["repaired"] == "reask"


def test_json_repair_mode_needs_the_package(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(repair_module, "json_repair_available", lambda: False)
    with pytest.raises(ConfigError, match="pip install 'llmchain\\[repair\\]'"):
        RepairMiddleware(Options(local_repair="json-repair"))
    RepairMiddleware()  # the built-in repair needs nothing


def test_json_repair_mode_handles_messier_damage() -> None:
    missing_comma = '{"name": "Al" "age": 3}'
    with pytest.raises(GaveUp):
        run(ladder(Script(missing_comma), max_reasks=0))  # beyond the built-in fixes
    response = run(ladder(Script(missing_comma), local_repair="json-repair"))
    assert response.parsed == Person(name="Al", age=3)
    assert response.notes["repair_actions"][0] == "json-repair"


# -- in a real chain ---------------------------------------------------------------------------


def test_in_a_chain_reasks_pass_through_inner_stages_and_emit_events() -> None:
    seen: list[Event] = []
    inner_calls: list[LLMRequest] = []

    class Counter:
        name = kind = "counter"

        async def handle(self, request: LLMRequest, call_next: Any) -> LLMResponse:
            inner_calls.append(request)
            return await call_next(request)  # type: ignore[no-any-return]

    transport = MockTransport.scripted('{"name": "Al"}', "{'name': 'Al', 'age': 3}")
    chain = Chain(["repair", "validate", "parse", Counter()], transport, observers=[seen.append])
    assert chain.complete_json("who?", schema=Person) == Person(name="Al", age=3)
    assert len(inner_calls) == 2 and len(transport.calls) == 2
    actions = [e.data["action"] for e in seen if e.kind == "repair"]
    assert actions == ["reask", "local"]


def test_gave_up_through_a_chain_keeps_attempts_and_request_id() -> None:
    transport = MockTransport.scripted("no", "still no")
    with Chain(["repair", "validate", "parse"], transport) as chain, pytest.raises(GaveUp) as info:
        chain.complete_json("who?", schema=Person)
    err = info.value
    assert len(err.attempts) == 2 and err.request_id
    assert "answer 2: ParseError" in err.explain()


def test_toml_style_config(tmp_path: Any) -> None:
    config = tmp_path / "chain.toml"
    config.write_text(
        '[transport]\nuse = "mock"\nreplies = ["{\'name\': \'Al\', \'age\': 3,}"]\n'
        '[[stages]]\nuse = "repair"\nmax_reasks = 2\nmax_reask_tokens = 4000\n'
        '[[stages]]\nuse = "validate"\nmodel = "tests.structured.helpers:Person"\n'
        '[[stages]]\nuse = "parse"\nmode = "strict"\n'
    )
    with Chain.from_config(config) as chain:
        response = chain.complete("who?")
    assert response.parsed == Person(name="Al", age=3)
    assert response.notes["repaired"] == "local"
