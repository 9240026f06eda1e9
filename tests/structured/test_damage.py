"""Properties: damaged serializations of random model instances repair to an equal object.

The damage (see ``jsondamage``): code fences, prose around the JSON (with braces in it),
trailing commas, single quotes, Python literals or a whole Python repr, unquoted keys,
comments, and closing brackets missing at the end, in any combination. String values use a
wide alphabet: quotes, apostrophes, backslashes, braces, ``#``, newlines, non-ASCII.
"""

from __future__ import annotations

from hypothesis import given, settings

from llmchain import LLMResponse
from llmchain.middleware.parse import ParseMiddleware
from llmchain.middleware.repair import RepairMiddleware
from llmchain.middleware.validate import ValidateMiddleware
from llmchain.structured._json_fix import repair_json_text
from llmchain.structured._schema import schema_for_type

from .helpers import Script, request, run
from .jsondamage import Damage, Order, damages, dump, orders


@settings(max_examples=500, deadline=None)
@given(orders(), damages())
def test_local_repair_recovers_an_equal_object(order: Order, damage: Damage) -> None:
    text = dump(order.model_dump(mode="json"), damage)
    repaired = repair_json_text(text, expect="object")
    assert repaired is not None, text
    assert schema_for_type(Order).validate(repaired.value) == order


@settings(max_examples=150, deadline=None)
@given(orders(), damages())
def test_parse_and_repair_stages_recover_without_reasking(order: Order, damage: Damage) -> None:
    text = dump(order.model_dump(mode="json"), damage)
    script = Script(text)
    parse, validate, repair = ParseMiddleware(), ValidateMiddleware(), RepairMiddleware()

    async def chain() -> LLMResponse:
        return await repair.handle(
            request(output_type=Order), lambda r: validate.handle(r, lambda r2: parse.handle(r2, script)))

    response = run(chain())
    assert response.parsed == order
    assert len(script.calls) == 1  # no re-ask was needed
    if damage.kinds() and response.notes:
        assert response.notes["repaired"] == "local"


@settings(max_examples=200, deadline=None)
@given(orders(), damages())
def test_json_repair_fallback_does_not_change_what_the_builtin_repairs(order: Order, damage: Damage) -> None:
    text = dump(order.model_dump(mode="json"), damage)
    assert repair_json_text(text, expect="object", use_library=True) == repair_json_text(text, expect="object")
