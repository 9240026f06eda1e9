"""Structured output glue: which schema applies to a call, and how errors carry their context.

The logic lives in two pure modules, shared by everyone who needs it:

* ``_json_extract``: answer text → JSON value (strict / fenced / lenient) and local repair;
* ``_schema``: a pydantic type or JSON Schema, compiled once, → validated value or violations.

This module ties them to requests and responses. Where the schema comes from, in order: the
request's ``output_type`` (a pydantic class, set by ``complete_json(schema=Model)``), then its
``output_schema`` (a JSON Schema dict), then the validate stage's own configured schema.

``validate`` and ``parse`` annotate the OutputErrors they raise or pass on with the schema that
applied and the rejected response, so the ``repair`` stage outside them can re-check a locally
repaired value with exactly the same schema and count the tokens the bad answer cost.

``complete_json`` uses ``coerce_output`` for chains without parse/validate stages, so it
accepts and rejects the same answers either way (without repair, of course).
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel

from .._exceptions import InputTypeError, OutputError, OutputInvalid
from .._models import LLMRequest, LLMResponse
from ._json_extract import extract_json
from ._schema import OutputSchema, SchemaMismatch, schema_for_json, schema_for_type

_SCHEMA_ATTR = "_llmchain_schema"
_RESPONSE_ATTR = "_llmchain_response"


@functools.lru_cache(maxsize=256)
def _model_json_schema(model: type[BaseModel]) -> dict[str, Any]:
    # Generating a model's JSON Schema takes ~100 µs; complete_json would pay it per call.
    return model.model_json_schema()


def schema_for(schema: type[BaseModel] | Mapping[str, Any]) -> dict[str, Any]:
    """Request parameters that ask for output matching ``schema``."""
    if isinstance(schema, type) and issubclass(schema, BaseModel):
        return {"output_type": schema, "output_schema": _model_json_schema(schema)}
    if isinstance(schema, Mapping):
        return {"output_schema": dict(schema)}
    raise InputTypeError(f"schema must be a pydantic model class or a JSON Schema dict, got {schema!r}")


def resolve_schema(request: LLMRequest) -> OutputSchema | None:
    """The compiled schema the request asks for, or None."""
    if request.output_type is not None:
        return schema_for_type(request.output_type)
    if request.output_schema is not None:
        return schema_for_json(request.output_schema)
    return None


def expected_kind(request: LLMRequest) -> str | None:
    """The JSON type the answer should have ("object", "array", ...), cheaply, or None."""
    if request.output_type is not None:
        return "object"
    schema = request.output_schema
    if schema is None:
        return None
    kind = schema.get("type")
    if isinstance(kind, str):
        return kind
    return "object" if "properties" in schema else None


def invalid_error(
    schema: OutputSchema, errors: list[str], raw_text: str | None, *, prefix: str = ""
) -> OutputInvalid:
    """The OutputInvalid for ``errors``; the message names the first few on its own."""
    shown = "; ".join(errors[:3]) + (f"; … {len(errors) - 3} more" if len(errors) > 3 else "")
    return OutputInvalid(
        f"{prefix}the answer does not match {schema.label} ({len(errors)} error(s)): {shown}",
        errors=errors,
        raw_text=raw_text,
    )


def check_value(schema: OutputSchema, value: Any, raw_text: str | None, *, prefix: str = "") -> Any:
    """``schema.validate(value)``, raising OutputInvalid (not SchemaMismatch) on failure."""
    try:
        return schema.validate(value)
    except SchemaMismatch as exc:
        raise invalid_error(schema, exc.errors, raw_text, prefix=prefix) from None


# -- what travels with an OutputError ---------------------------------------------------------


def remember(exc: OutputError, *, schema: OutputSchema | None = None,
             response: LLMResponse | None = None) -> None:
    """Attach the schema / rejected response to ``exc`` unless a stage further in already did."""
    if schema is not None and getattr(exc, _SCHEMA_ATTR, None) is None:
        setattr(exc, _SCHEMA_ATTR, schema)
    if response is not None and getattr(exc, _RESPONSE_ATTR, None) is None:
        setattr(exc, _RESPONSE_ATTR, response)


def schema_of(exc: OutputError) -> OutputSchema | None:
    """The schema that applied when ``exc`` was raised (None if no stage said)."""
    found = getattr(exc, _SCHEMA_ATTR, None)
    return found if isinstance(found, OutputSchema) else None


def response_of(exc: OutputError) -> LLMResponse | None:
    """The response ``exc`` rejected (None if the raiser did not attach it)."""
    found = getattr(exc, _RESPONSE_ATTR, None)
    return found if isinstance(found, LLMResponse) else None


# -- complete_json ----------------------------------------------------------------------------


def coerce_output(response: LLMResponse, schema: type[BaseModel] | Mapping[str, Any]) -> Any:
    """The validated value of ``response`` for ``schema``, or ParseError / OutputInvalid."""
    compiled = schema_for_type(schema) if isinstance(schema, type) else schema_for_json(schema)
    parsed = response.parsed
    if compiled.model is not None and isinstance(parsed, compiled.model):
        return parsed
    try:
        value = parsed if parsed is not None else extract_json(response.text, expect=compiled.expect)
        return check_value(compiled, value, response.text)
    except OutputError as exc:
        raise exc.with_context(request_id=response.request_id, attempts=response.attempts,
                               summary=None) from None


def validate_json_schema(value: Any, schema: Mapping[str, Any]) -> list[str]:
    """Violations of ``schema`` by ``value`` (needs the ``jsonschema`` extra)."""
    try:
        schema_for_json(schema).validate(value)
    except SchemaMismatch as exc:
        return exc.errors
    return []
