"""The ``validate`` stage: check the parsed answer against a schema, set ``response.parsed``.

The schema is the request's (``output_type``, else ``output_schema``) when it has one, else the
stage's own (``model``, ``json_schema`` or ``schema_file``). With its own schema the stage also
attaches it to requests that carry none, so ``parse`` inside it acts and a transport can use the
provider's native structured output. Without any schema, calls pass straight through.

On success ``parsed`` becomes the model instance (pydantic) or the validated value (JSON
Schema); on failure OutputInvalid lists every violation as ``"path: message"``. Tool calls
in an answer are checked against their tools' schemas (``_tool_check``). OutputErrors
from inside (a ParseError) leave tagged with this schema, so ``repair`` re-checks with it.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Any

from pydantic import Field, field_serializer, field_validator, model_validator

from .._clock import REAL_CLOCK, Clock
from .._exceptions import ConfigError, OutputError
from .._models import LLMRequest, LLMResponse, copy_with
from .._stage import StageOptions
from .._stream import at_end, on_final
from .._types import Next
from ..hookspecs import hookimpl
from ..structured._json_extract import extract_json
from ..structured._output import check_value, remember, resolve_schema
from ..structured._schema import (
    OutputSchema,
    import_object,
    load_schema_file,
    schema_for_json,
    schema_for_type,
)
from ..structured._tool_check import check_tool_calls


class ValidateMiddleware:
    """Validate ``response.parsed`` (or the answer text) against the call's schema."""

    name = kind = "validate"
    #: What this stage does, as data: order hints and other stages go by roles, never by names.
    roles = frozenset({"validate"})
    #: Streamed calls pass through ``handle`` like any other (see docs/stages/validate.md, "Streams").
    handles_streams = True

    class Options(StageOptions):
        model: Any = Field(
            None,
            description="Pydantic model (or any type pydantic validates) for calls without their "
            "own schema: the type itself, or an import path like 'mypkg.models:Invoice'.",
        )
        json_schema: dict[str, Any] | None = Field(
            None, description="JSON Schema (a table) for calls without their own schema."
        )
        schema_file: str | None = Field(
            None, description="Path of a JSON Schema file (relative to the working directory)."
        )
        attach_to_request: bool = Field(
            True,
            description="Put this stage's schema on requests that have none (and the JSON Schema "
            "on requests with only output_type), so parse acts and transports can ask the "
            "provider for native structured output.",
        )

        @model_validator(mode="after")
        def _one_schema(self) -> ValidateMiddleware.Options:
            given = [n for n in ("model", "json_schema", "schema_file") if getattr(self, n) is not None]
            if len(given) > 1:
                raise ValueError(f"give at most one of model, json_schema, schema_file (got {given})")
            return self

        @field_validator("model")
        @classmethod
        def _is_type_or_path(cls, model: Any) -> Any:
            if model is None or isinstance(model, (str, type)) or hasattr(model, "__origin__"):
                return model
            raise ValueError(f"must be a type or an import path like 'mypkg.models:Invoice', got {model!r}")

        @field_serializer("model")
        def _show_model(self, model: Any) -> str | None:
            if model is None or isinstance(model, str):
                return model
            if isinstance(model, type):
                return f"{model.__module__}:{model.__qualname__}"
            return repr(model)

    def __init__(self, options: Options | None = None, *, clock: Clock = REAL_CLOCK) -> None:
        self.options = options or self.Options()
        self._clock = clock
        self._own = _compile_own(self.options)
        self._attach: dict[str, Any] | None = None
        if self._own is not None and self.options.attach_to_request:
            self._attach = {"output_schema": self._own.json_schema, "output_type": self._own.model}

    async def handle(self, request: LLMRequest, call_next: Next) -> LLMResponse:
        if request.embed_input is not None:  # embeddings pass through untouched
            return await call_next(request)
        if request.tools:  # tool calls in the answer are checked against their tools' schemas
            response = await self._validate(request, call_next)
            return on_final(response, partial(_tools_checked, request))
        if request.output_type is None and request.output_schema is None and self._own is None:
            return await call_next(request)  # nothing to check: no extra frame for plain calls
        return await self._validate(request, call_next)

    async def _validate(self, request: LLMRequest, call_next: Next) -> LLMResponse:
        if request.output_type is None and request.output_schema is None:
            schema = self._own
            if schema is None:
                return await call_next(request)
            if self._attach is not None:
                request = copy_with(request, self._attach)
        else:
            schema = resolve_schema(request)
            assert schema is not None
            if request.output_schema is None and self.options.attach_to_request:
                # output_type alone: give transports the JSON Schema for native structured output
                request = copy_with(request, {"output_schema": schema.json_schema})
        try:
            response = await call_next(request)
        except OutputError as exc:
            remember(exc, schema=schema)
            raise
        if response.stream is not None:  # validated when the stream ends
            return self._at_stream_end(response, schema)
        return _validated(response, schema)

    @staticmethod
    def _at_stream_end(response: LLMResponse, schema: OutputSchema) -> LLMResponse:
        async def ended(final: LLMResponse) -> LLMResponse:
            return _validated(final, schema)

        async def failed(error: BaseException | None) -> None:
            if isinstance(error, OutputError):
                remember(error, schema=schema)

        response.stream.pipe(lambda events: at_end(events, ended, failed))
        return response

    def __repr__(self) -> str:
        return f"ValidateMiddleware(schema={self._own!r})"


def _validated(response: LLMResponse, schema: OutputSchema) -> LLMResponse:
    parsed = response.parsed
    if response.tool_calls and not response.text and parsed is None:
        return response  # the model called tools instead of answering: nothing to validate yet
    if schema.model is not None and isinstance(parsed, schema.model):
        return response
    try:
        # Without a parse stage inside (or with one that did not act), parse here, leniently.
        value = parsed if parsed is not None else extract_json(response.text, expect=schema.expect)
        validated = check_value(schema, value, response.text)
    except OutputError as exc:
        remember(exc, schema=schema, response=response)
        raise
    return copy_with(response, {"parsed": validated})


def _compile_own(options: ValidateMiddleware.Options) -> OutputSchema | None:
    try:
        if options.model is not None:
            model = import_object(options.model) if isinstance(options.model, str) else options.model
            return schema_for_type(model)
        if options.json_schema is not None:
            return schema_for_json(options.json_schema)
        if options.schema_file is not None:
            return schema_for_json(load_schema_file(options.schema_file))
    except ConfigError as exc:
        raise ConfigError(f"validate stage: {exc}") from None
    return None


@hookimpl
def register_middleware(register: Callable[[str, Any], None]) -> None:
    register("validate", ValidateMiddleware)


def _tools_checked(request: LLMRequest, response: LLMResponse) -> LLMResponse:
    """The answer, once its tool calls (a streamed answer's: when it ends) fit their schemas."""
    return check_tool_calls(request, response) if response.tool_calls else response
