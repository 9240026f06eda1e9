"""The parse stage and the extraction it shares with validate, repair and complete_json."""

from __future__ import annotations

import pytest

from llmchain import Chain, ConfigError, LLMResponse, ParseError
from llmchain.middleware.parse import ParseMiddleware
from llmchain.structured._json_extract import MAX_CANDIDATES, balanced_end, extract_json
from llmchain.structured._output import response_of
from llmchain.testing import MockTransport
from tests.structured.helpers import PERSON_SCHEMA, Person, Script, answer, request, run

# -- extraction -------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["strict", "fenced", "lenient"])
def test_whole_answer_json_is_accepted_in_every_mode(mode: str) -> None:
    assert extract_json('  {"a": [1, 2.5, null]}\n', mode=mode) == {"a": [1, 2.5, None]}  # type: ignore[arg-type]
    assert extract_json("42", mode=mode) == 42  # type: ignore[arg-type]


def test_strict_rejects_fences_and_prose() -> None:
    with pytest.raises(ParseError):
        extract_json('```json\n{"a": 1}\n```', mode="strict")
    with pytest.raises(ParseError, match="extra data"):
        extract_json('{"a": 1} hope this helps', mode="strict")


@pytest.mark.parametrize(
    "text",
    ['```json\n{"a": 1}\n```', 'Here:\n```\n{"a": 1}\n```\nDone.', '```JSON {"a": 1} ```',
     'Sure!\n```json\n{"a": 1}'],  # an unclosed fence still counts
)
def test_fenced_mode_reads_inside_code_fences(text: str) -> None:
    assert extract_json(text, mode="fenced") == {"a": 1}


def test_fenced_mode_does_not_search_prose() -> None:
    with pytest.raises(ParseError):
        extract_json('The answer is {"a": 1}.', mode="fenced")


def test_lenient_takes_first_complete_top_level_value_in_prose() -> None:
    assert extract_json('The answer is {"a": 1} and also {"b": 2}.') == {"a": 1}
    assert extract_json("Numbers: [1, 2] then more") == [1, 2]


def test_lenient_never_takes_an_object_nested_in_a_broken_one() -> None:
    # the outer object has a trailing comma; {"c": 2} inside it must not be mistaken for it
    with pytest.raises(ParseError):
        extract_json('{"a": 1, "b": {"c": 2},}')


def test_lenient_skips_braces_in_prose_before_the_json() -> None:
    assert extract_json('Fill in {name} like so: {"name": "Al"}') == {"name": "Al"}


def test_expect_steers_the_prose_search_to_the_right_kind() -> None:
    text = 'See [1] for details: {"a": 1}'
    assert extract_json(text) == [1]
    assert extract_json(text, expect="object") == {"a": 1}


def test_parse_error_has_position_and_excerpt_of_the_original_text() -> None:
    text = 'Here you go:\n```json\n{"name": "Al" "age": 3}\n```'
    with pytest.raises(ParseError) as info:
        extract_json(text)
    err = info.value
    assert err.raw_text == text
    assert err.position == text.index('"age"')  # position in the answer, not in the fence
    assert ">>>" in err.message and '"age"' in err.message
    assert "Expecting ',' delimiter" in err.message


def test_empty_and_json_free_answers_say_so() -> None:
    with pytest.raises(ParseError, match="empty"):
        extract_json("   ")
    with pytest.raises(ParseError, match="no JSON object found") as info:
        extract_json("I cannot help with that.", expect="object")
    assert info.value.position == 0


def test_deep_nesting_and_many_braces_fail_cleanly() -> None:
    with pytest.raises(ParseError):
        extract_json("[" * 100_000)
    noisy = "{x} " * (MAX_CANDIDATES * 4) + '{"a": 1}'
    with pytest.raises(ParseError):  # the search is bounded, so the late object is not reached
        extract_json(noisy)


def test_balanced_end_skips_strings_comments_and_apostrophes() -> None:
    text = """{'a': 'it's }', "b": "}", // }\n c: 1} tail"""
    assert text[: balanced_end(text, 0)].endswith("c: 1}")
    assert balanced_end('{"a": [1, 2', 0) == len('{"a": [1, 2')


# -- the stage --------------------------------------------------------------------------------


def test_pass_through_without_schema_returns_the_same_objects() -> None:
    req, reply = request(), answer("not json at all")
    inner = Script(reply)
    assert run(ParseMiddleware().handle(req, inner)) is reply
    assert inner.calls == [req]


def test_parses_when_the_request_asks_for_structured_output() -> None:
    for params in ({"output_type": Person}, {"output_schema": PERSON_SCHEMA}):
        response = run(ParseMiddleware().handle(request(**params), Script('Sure: {"name": "Al", "age": 3}')))
        assert response.parsed == {"name": "Al", "age": 3}
        assert response.text == 'Sure: {"name": "Al", "age": 3}'  # the text is left as it was


def test_always_parses_even_without_a_schema() -> None:
    stage = ParseMiddleware(ParseMiddleware.Options(always=True))
    assert run(stage.handle(request(), Script("[1, 2]"))).parsed == [1, 2]


def test_mode_option_is_honoured() -> None:
    strict = ParseMiddleware(ParseMiddleware.Options(mode="strict"))
    with pytest.raises(ParseError):
        run(strict.handle(request(output_type=Person), Script('```json\n{"a": 1}\n```')))


def test_failure_carries_the_rejected_response_and_a_truncation_hint() -> None:
    cut = answer('{"name": "Al", "age"', finish_reason="length")
    with pytest.raises(ParseError) as info:
        run(ParseMiddleware().handle(request(output_type=Person), Script(cut)))
    assert response_of(info.value) is cut
    assert info.value.hint is not None and "max_tokens" in info.value.hint


def test_answer_parsed_by_the_transport_is_left_alone() -> None:
    native = LLMResponse(text="(tool call)", parsed={"name": "Al", "age": 3})
    assert run(ParseMiddleware().handle(request(output_type=Person), Script(native))) is native


def test_options_reject_unknown_keys_and_bad_modes() -> None:
    with pytest.raises(ConfigError, match="unknown option"):
        Chain([{"use": "parse", "modee": "strict"}], MockTransport())
    with pytest.raises(ConfigError, match="mode"):
        Chain([{"use": "parse", "mode": "sloppy"}], MockTransport())


def test_registered_as_a_builtin_stage() -> None:
    transport = MockTransport.scripted('```json\n{"name": "Al", "age": 3}\n```')
    with Chain(["parse"], transport) as chain:
        assert chain.complete("x", output_schema=PERSON_SCHEMA).parsed == {"name": "Al", "age": 3}
        assert isinstance(chain.stages[0][1], ParseMiddleware)
