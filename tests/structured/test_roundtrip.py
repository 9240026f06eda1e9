"""Properties: valid JSON always comes back exactly as it was, from every entry point."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from llmchain import LLMRequest, LLMResponse
from llmchain.middleware.parse import ParseMiddleware
from llmchain.middleware.repair import RepairMiddleware
from llmchain.middleware.validate import ValidateMiddleware
from llmchain.structured._json_extract import extract_json
from llmchain.structured._json_fix import repair_json_text

from .helpers import Script, request, run
from .jsondamage import PROSE_AFTER, PROSE_BEFORE

scalars = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text()
json_values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=20,
)
containers = st.lists(json_values, max_size=4) | st.dictionaries(st.text(max_size=8), json_values, max_size=4)
layouts = st.sampled_from([
    {}, {"indent": 2}, {"separators": (",", ":")}, {"ensure_ascii": False}, {"sort_keys": True},
])


@settings(max_examples=300, deadline=None)
@given(json_values, layouts, st.sampled_from(["strict", "fenced", "lenient"]))
def test_valid_json_round_trips_in_every_mode(value: Any, layout: dict[str, Any], mode: str) -> None:
    assert extract_json(json.dumps(value, **layout), mode=mode) == value  # type: ignore[arg-type]


@settings(max_examples=200, deadline=None)
@given(containers, st.sampled_from(["fence", "prose", "both"]))
def test_wrapped_valid_json_is_found_unchanged(value: Any, wrapper: str) -> None:
    text = json.dumps(value, ensure_ascii=False)
    if wrapper in ("fence", "both"):
        text = f"```json\n{text}\n```"
    if wrapper in ("prose", "both"):
        text = PROSE_BEFORE + text + PROSE_AFTER
    assert extract_json(text) == value


@settings(max_examples=200, deadline=None)
@given(json_values)
def test_local_repair_never_alters_valid_json(value: Any) -> None:
    repaired = repair_json_text(json.dumps(value), use_library=True)
    assert repaired is not None and not repaired.changed
    assert repaired.value == value


@settings(max_examples=100, deadline=None)
@given(containers)
def test_the_stages_pass_a_valid_answer_through_exactly(value: Any) -> None:
    text = json.dumps(value)
    req: LLMRequest = request(output_schema={})  # any JSON value is valid against {}
    script = Script(text)
    parse, validate, repair = ParseMiddleware(), ValidateMiddleware(), RepairMiddleware()

    async def chain() -> LLMResponse:
        return await repair.handle(req, lambda r: validate.handle(r, lambda r2: parse.handle(r2, script)))

    response = run(chain())
    assert response.text == text and response.parsed == value
    assert response.notes == {} and len(script.calls) == 1
