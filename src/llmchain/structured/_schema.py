"""Compiled output schemas: a pydantic type or a JSON Schema, checked against a JSON value.

Compiling is the costly part (building a pydantic ``TypeAdapter``, checking a JSON Schema and
building its ``jsonschema`` validator), so it happens once per type or schema and is cached;
per call only the validation itself runs. Violations come back as ``"path: message"`` strings,
the same shape for both kinds, so they read the same in errors, logs and re-ask prompts.
"""

from __future__ import annotations

import importlib
import json
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from pydantic import BaseModel, TypeAdapter, ValidationError

from .._exceptions import ConfigError

#: Compiled schemas kept per cache; beyond this the cache starts over (schemas are few).
CACHE_SIZE = 256
_SCALAR_KINDS = ("object", "array", "string", "number", "integer", "boolean", "null")


class SchemaMismatch(Exception):
    """A value does not satisfy a schema; ``errors`` holds one ``"path: message"`` per problem."""

    def __init__(self, errors: list[str]) -> None:
        super().__init__("; ".join(errors))
        self.errors = errors


class OutputSchema:
    """What a structured answer must satisfy, compiled once and reused for every call."""

    __slots__ = ("_check", "_json_schema", "expect", "label", "model")

    def __init__(
        self,
        label: str,
        check: Callable[[Any], Any],
        json_schema: Callable[[], dict[str, Any]] | dict[str, Any],
        *,
        model: type[BaseModel] | None = None,
    ) -> None:
        self.label = label
        self.model = model  # set for pydantic models: instances of it are already valid
        self._check = check
        self._json_schema = json_schema
        self.expect = _kind(self.json_schema) if model is None else "object"

    @property
    def json_schema(self) -> dict[str, Any]:
        """The JSON Schema (generated once for pydantic types), for prompts and native modes."""
        if callable(self._json_schema):
            self._json_schema = self._json_schema()
        return self._json_schema

    def validate(self, value: Any) -> Any:
        """The validated value (a model instance for pydantic types), or SchemaMismatch."""
        return self._check(value)

    def __repr__(self) -> str:
        return f"<OutputSchema {self.label}>"


def _kind(schema: Mapping[str, Any]) -> str | None:
    kind = schema.get("type")
    if isinstance(kind, str) and kind in _SCALAR_KINDS:
        return kind
    return "object" if "properties" in schema else None


def format_path(parts: Any) -> str:
    """``("items", 0, "name")`` → ``"items.0.name"``; the root is ``"<root>"``."""
    return ".".join(str(p) for p in parts) or "<root>"


def pydantic_errors(exc: ValidationError) -> list[str]:
    """One ``"path: message (got ...)"`` line per pydantic error."""
    lines = []
    for err in exc.errors(include_url=False):
        line = f"{format_path(err['loc'])}: {err['msg']}"
        given = err.get("input")
        if err["type"] != "missing" and (given is None or isinstance(given, (str, int, float))):
            shown = repr(given)
            line += f" (got {shown[:40]}{'…' if len(shown) > 40 else ''})"
        lines.append(line)
    return lines


# -- pydantic ---------------------------------------------------------------------------------

_by_type: dict[Any, OutputSchema] = {}


def schema_for_type(tp: Any) -> OutputSchema:
    """The compiled schema for a pydantic model class or any type pydantic can validate."""
    cached = _by_type.get(tp)
    if cached is not None:
        return cached
    if isinstance(tp, type) and issubclass(tp, BaseModel):
        model: type[BaseModel] = tp

        def check_model(value: Any) -> Any:
            try:
                return model.model_validate(value)
            except ValidationError as exc:
                raise SchemaMismatch(pydantic_errors(exc)) from None

        compiled = OutputSchema(tp.__name__, check_model, tp.model_json_schema, model=tp)
    else:
        try:
            adapter: TypeAdapter[Any] = TypeAdapter(tp)
        except Exception as exc:
            raise ConfigError(f"{tp!r} cannot be used as an output schema: {exc}") from None

        def check_adapter(value: Any) -> Any:
            try:
                return adapter.validate_python(value)
            except ValidationError as exc:
                raise SchemaMismatch(pydantic_errors(exc)) from None

        label = getattr(tp, "__name__", None) or repr(tp)
        compiled = OutputSchema(label, check_adapter, adapter.json_schema)
    if len(_by_type) >= CACHE_SIZE:
        _by_type.clear()
    _by_type[tp] = compiled
    return compiled


# -- JSON Schema ------------------------------------------------------------------------------

# Requests usually carry the same dict object again and again: look it up by identity first
# (keeping a reference, so the id cannot be reused), then by content, compiling only once.
_by_id: dict[int, tuple[Mapping[str, Any], OutputSchema]] = {}
_by_text: dict[str, OutputSchema] = {}


def schema_for_json(schema: Mapping[str, Any]) -> OutputSchema:
    """The compiled validator for a JSON Schema dict (treated as immutable once used)."""
    hit = _by_id.get(id(schema))
    if hit is not None and hit[0] is schema:
        return hit[1]
    try:
        key = json.dumps(schema, sort_keys=True, default=str)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"the output JSON Schema is not JSON-serialisable: {exc}") from None
    compiled = _by_text.get(key)
    if compiled is None:
        compiled = _compile_json_schema(dict(schema))
        if len(_by_text) >= CACHE_SIZE:
            _by_text.clear()
        _by_text[key] = compiled
    if len(_by_id) >= CACHE_SIZE:
        _by_id.clear()
    _by_id[id(schema)] = (schema, compiled)
    return compiled


def _compile_json_schema(schema: dict[str, Any]) -> OutputSchema:
    try:
        import jsonschema
        from jsonschema import validators
    except ImportError:
        raise ConfigError(
            "validating against a JSON Schema needs the jsonschema package: "
            "pip install 'llmchain[jsonschema]' (or validate with a pydantic model instead)"
        ) from None
    cls = validators.validator_for(schema, default=jsonschema.Draft202012Validator)
    try:
        cls.check_schema(schema)
    except jsonschema.SchemaError as exc:
        where = format_path(exc.absolute_path)
        raise ConfigError(f"the output JSON Schema is invalid at {where}: {exc.message}") from None
    validator = cls(schema, format_checker=cls.FORMAT_CHECKER)

    def check(value: Any) -> Any:
        errors = sorted(validator.iter_errors(value), key=lambda e: [str(p) for p in e.absolute_path])
        if errors:
            raise SchemaMismatch([f"{format_path(e.absolute_path)}: {e.message}" for e in errors])
        return value

    title = schema.get("title")
    return OutputSchema(title if isinstance(title, str) else "the JSON Schema", check, schema)


# -- loading from configuration ---------------------------------------------------------------


def import_object(path: str) -> Any:
    """``"pkg.module:Name"`` (or ``"pkg.module.Name"``) → the object, or a clear ConfigError."""
    module_name, sep, attr = path.partition(":")
    if not sep:
        module_name, _, attr = path.rpartition(".")
    if not module_name or not attr:
        raise ConfigError(f"model {path!r} must be an import path like 'mypkg.models:Invoice'")
    try:
        obj: Any = importlib.import_module(module_name)
    except ImportError as exc:
        raise ConfigError(f"model {path!r}: cannot import module {module_name!r}: {exc}") from None
    for part in attr.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise ConfigError(f"model {path!r}: module {module_name!r} has no {attr!r}") from None
    return obj


def load_schema_file(path: str | Path) -> dict[str, Any]:
    """Read a JSON Schema file, or raise ConfigError saying what is wrong with it."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"schema_file {str(path)!r} not found (relative paths start at the "
                          f"working directory, {Path.cwd()})") from None
    except (OSError, ValueError) as exc:
        raise ConfigError(f"schema_file {str(path)!r} is not readable JSON: {exc}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"schema_file {str(path)!r} must hold a JSON object (a JSON Schema)")
    return data
