"""The validate stage, compiled schemas, and complete_json's use of the same logic."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from llmchain import Chain, ConfigError, LLMRequest, LLMResponse, OutputInvalid, ParseError
from llmchain.middleware.validate import ValidateMiddleware
from llmchain.structured._output import coerce_output, schema_for, schema_of
from llmchain.structured._schema import schema_for_json, schema_for_type
from llmchain.testing import MockTransport
from tests.structured.helpers import (
    PERSON_SCHEMA,
    Customer,
    Person,
    Script,
    answer,
    request,
    run,
)

Options = ValidateMiddleware.Options


def parsed(text: str, value: Any) -> LLMResponse:
    return answer(text).model_copy(update={"parsed": value})


# -- where the schema comes from ----------------------------------------------------------------


def test_pydantic_output_type_gives_a_model_instance() -> None:
    response = run(ValidateMiddleware().handle(
        request(output_type=Person), Script(parsed("…", {"name": "Al", "age": "3"}))))
    assert response.parsed == Person(name="Al", age=3)


def test_json_schema_gives_the_validated_dict() -> None:
    value = {"name": "Al", "age": 3}
    response = run(ValidateMiddleware().handle(request(output_schema=PERSON_SCHEMA), Script(parsed("…", value))))
    assert response.parsed == value


def test_without_any_schema_it_passes_through_untouched() -> None:
    req, reply = request(), answer("whatever")
    inner = Script(reply)
    assert run(ValidateMiddleware().handle(req, inner)) is reply
    assert inner.calls[0] is req


def test_own_model_by_import_path_applies_and_is_attached_to_the_request() -> None:
    stage = ValidateMiddleware(Options(model="tests.structured.helpers:Person"))
    inner = Script('{"name": "Al", "age": 3}')
    response = run(stage.handle(request(), inner))
    assert response.parsed == Person(name="Al", age=3)
    sent = inner.calls[0]
    assert sent.output_type is Person and sent.output_schema == Person.model_json_schema()


def test_attach_to_request_false_keeps_the_request_as_is() -> None:
    stage = ValidateMiddleware(Options(model=Person, attach_to_request=False))
    inner = Script('{"name": "Al", "age": 3}')
    assert run(stage.handle(request(), inner)).parsed == Person(name="Al", age=3)
    assert inner.calls[0].output_schema is None


def test_own_json_schema_and_schema_file(tmp_path: Path) -> None:
    path = tmp_path / "person.json"
    path.write_text(json.dumps(PERSON_SCHEMA))
    for options in (Options(json_schema=PERSON_SCHEMA), Options(schema_file=str(path))):
        with pytest.raises(OutputInvalid, match="age"):
            run(ValidateMiddleware(options).handle(request(), Script('{"name": "Al", "age": -1}')))


def test_output_type_alone_gets_its_json_schema_attached_for_native_modes() -> None:
    inner = Script('{"name": "Al", "age": 3}')
    run(ValidateMiddleware().handle(request(output_type=Person), inner))
    assert inner.calls[0].output_schema == Person.model_json_schema()
    inner = Script('{"name": "Al", "age": 3}')
    run(ValidateMiddleware(Options(attach_to_request=False)).handle(request(output_type=Person), inner))
    assert inner.calls[0].output_schema is None


def test_the_requests_own_schema_wins_over_the_stages() -> None:
    stage = ValidateMiddleware(Options(json_schema={"type": "array"}))
    response = run(stage.handle(request(output_type=Person), Script('{"name": "Al", "age": 3}')))
    assert response.parsed == Person(name="Al", age=3)


def test_model_option_accepts_any_pydantic_type() -> None:
    stage = ValidateMiddleware(Options(model=list[int]))
    assert run(stage.handle(request(), Script("[1, 2, 3]"))).parsed == [1, 2, 3]
    with pytest.raises(OutputInvalid, match=r"1: Input should be a valid integer"):
        run(stage.handle(request(), Script('[1, "x"]')))


# -- failures ----------------------------------------------------------------------------------


def test_output_invalid_lists_every_field_error_with_its_path() -> None:
    text = '{"name": 5, "addresses": [{"city": "Oslo"}, {"city": "Rome", "zip": 1}]}'
    with pytest.raises(OutputInvalid) as info:
        run(ValidateMiddleware().handle(request(output_type=Customer), Script(text)))
    err = info.value
    assert err.raw_text == text
    assert err.errors == [
        "name: Input should be a valid string (got 5)",
        "addresses.0.zip: Field required",
        "addresses.1.zip: Input should be a valid string (got 1)",
    ]
    assert "Customer" in err.message and "3 error(s)" in err.message


def test_json_schema_errors_use_the_same_path_format() -> None:
    with pytest.raises(OutputInvalid) as info:
        run(ValidateMiddleware().handle(
            request(output_schema=PERSON_SCHEMA), Script('{"age": -2, "extra": true}')))
    assert info.value.errors == [
        "<root>: 'name' is a required property",
        "<root>: Additional properties are not allowed ('extra' was unexpected)",
        "age: -2 is less than the minimum of 0",
    ]


def test_without_a_parse_stage_it_parses_the_text_itself() -> None:
    response = run(ValidateMiddleware().handle(
        request(output_type=Person), Script('Here:\n```json\n{"name": "Al", "age": 3}\n```')))
    assert response.parsed == Person(name="Al", age=3)
    with pytest.raises(ParseError):
        run(ValidateMiddleware().handle(request(output_type=Person), Script("no idea")))


def test_an_instance_of_the_model_is_not_validated_again() -> None:
    al = Person(name="Al", age=3)
    reply = parsed("…", al)
    assert run(ValidateMiddleware().handle(request(output_type=Person), Script(reply))) is reply


def test_errors_from_inside_leave_tagged_with_the_schema() -> None:
    with pytest.raises(ParseError) as info:
        run(ValidateMiddleware().handle(request(output_type=Person), Script(ParseError("bad"))))
    assert schema_of(info.value) is schema_for_type(Person)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"model": "tests.structured.helpers:Nobody"}, "has no 'Nobody'"),
        ({"model": "no_such_module_xyz:Thing"}, "cannot import module"),
        ({"model": "Person"}, "import path"),
        ({"schema_file": "/nonexistent/schema.json"}, "not found"),
        ({"json_schema": {"type": "no-such-type"}}, "JSON Schema is invalid"),
        ({"model": "a:b", "json_schema": {}}, "at most one of"),
    ],
)
def test_bad_schema_options_are_config_errors(options: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        Chain([{"use": "validate", **options}], MockTransport())


def test_options_show_a_model_class_as_an_import_path() -> None:
    chain = Chain([ValidateMiddleware(Options(model=Person))], MockTransport())
    assert "model='tests.structured.helpers:Person'" in chain.describe()


# -- compiled schemas are cached -----------------------------------------------------------------


def test_compiled_schemas_are_reused() -> None:
    assert schema_for_type(Person) is schema_for_type(Person)
    assert schema_for_json(PERSON_SCHEMA) is schema_for_json(dict(PERSON_SCHEMA))  # equal content
    first = LLMRequest.model_validate({"messages": [{"role": "user", "content": "x"}],
                                       "output_schema": PERSON_SCHEMA})
    assert schema_for_json(first.output_schema or {}) is schema_for_json(PERSON_SCHEMA)
    assert schema_for(Person)["output_schema"] is schema_for(Person)["output_schema"]


# -- complete_json on a chain without parse/validate stages --------------------------------------


def test_coerce_output_shares_the_same_parse_and_validate_logic() -> None:
    assert coerce_output(answer('Sure!\n```json\n{"name": "Al", "age": 3}\n```'), Person) == Person(name="Al", age=3)
    assert coerce_output(answer('{"name": "Al", "age": 3}'), PERSON_SCHEMA) == {"name": "Al", "age": 3}
    with pytest.raises(OutputInvalid) as info:
        coerce_output(answer('{"name": "Al"}'), Person)
    assert info.value.errors == ["age: Field required"]
    with pytest.raises(ParseError):
        coerce_output(answer("nope"), PERSON_SCHEMA)


def test_complete_json_works_with_and_without_the_stages() -> None:
    text = 'Here it is: {"name": "Al", "age": 3}'
    for stages in ([], ["validate", "parse"]):
        with Chain(stages, MockTransport.scripted(text)) as chain:
            assert chain.complete_json("who?", schema=Person) == Person(name="Al", age=3)
