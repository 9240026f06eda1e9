"""Structured output for ``complete_json``: what to ask for, and how to check what came back.

When the chain has parse/validate stages, ``response.parsed`` already holds the validated value;
otherwise the answer text is parsed and validated here so ``complete_json`` works on any chain.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel, ValidationError

from ._exceptions import OutputInvalid, ParseError
from ._models import LLMResponse


def schema_for(schema: type[BaseModel] | Mapping[str, Any]) -> dict[str, Any]:
    """Request parameters that ask for output matching ``schema``."""
    if isinstance(schema, type) and issubclass(schema, BaseModel):
        return {"output_type": schema, "output_schema": schema.model_json_schema()}
    if isinstance(schema, Mapping):
        return {"output_schema": dict(schema)}
    raise TypeError(f"schema must be a pydantic model class or a JSON Schema dict, got {schema!r}")


def coerce_output(response: LLMResponse, schema: type[BaseModel] | Mapping[str, Any]) -> Any:
    """The validated value of ``response`` for ``schema``, or ParseError / OutputInvalid."""
    parsed = response.parsed
    if isinstance(schema, type):
        if isinstance(parsed, schema):
            return parsed
        value = parsed if parsed is not None else _loads(response)
        try:
            return schema.model_validate(value)
        except ValidationError as exc:
            raise OutputInvalid(
                f"the answer does not match {schema.__name__}",
                errors=[f"{'.'.join(map(str, e['loc'])) or '<root>'}: {e['msg']}" for e in exc.errors()],
                raw_text=response.text,
                request_id=response.request_id,
                attempts=response.attempts,
            ) from None
    value = parsed if parsed is not None else _loads(response)
    errors = validate_json_schema(value, schema)
    if errors:
        raise OutputInvalid("the answer does not match the JSON Schema", errors=errors,
                            raw_text=response.text, request_id=response.request_id,
                            attempts=response.attempts)
    return value


def validate_json_schema(value: Any, schema: Mapping[str, Any]) -> list[str]:
    """Violations of ``schema`` by ``value`` (needs the ``jsonschema`` extra)."""
    try:
        import jsonschema
    except ImportError:  # pragma: no cover - depends on the environment
        raise ImportError(
            "validating against a JSON Schema needs the jsonschema package: "
            "pip install 'llmchain[jsonschema]'"
        ) from None
    validator = jsonschema.Draft202012Validator(dict(schema))
    return [f"{'.'.join(map(str, e.absolute_path)) or '<root>'}: {e.message}"
            for e in validator.iter_errors(value)]


def _loads(response: LLMResponse) -> Any:
    text = response.text.strip()
    if text.startswith("```"):
        text = text.strip("`")
        text = text[4:] if text.startswith("json") else text
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise ParseError(f"the answer is not valid JSON: {exc.msg}", position=exc.pos,
                         raw_text=response.text, request_id=response.request_id,
                         attempts=response.attempts) from None
