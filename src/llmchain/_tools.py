"""Tools a model may call: ``Tool`` and how one is made from a function, a pydantic model or a
provider's tool dict. The calls a model makes (``ToolCall``) live in ``_models`` with the
messages that carry and answer them.

::

    def get_weather(city: str, unit: Literal["C", "F"] = "C") -> str:
        '''The current weather in a city.'''

    tools = [Tool.from_function(get_weather), Tool.from_model(Invoice)]
    response = chain.complete(messages, tools=tools, tool_choice="auto")
    for call in response.tool_calls:
        messages.append(call.result(get_weather(**call.args)))

``tool_choice`` is ``"auto"``, ``"none"``, ``"required"`` or the name of one tool.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any, get_type_hints

from pydantic import BaseModel, ConfigDict, Field, create_model

TOOL_CHOICES = ("auto", "none", "required")


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


def _doc(obj: Any) -> str:
    """The first paragraph of a docstring."""
    doc = inspect.getdoc(obj) or ""
    return doc.split("\n\n", 1)[0].strip()


class Tool(_Frozen):
    """A function the model may call: ``name``, ``description`` and JSON Schema ``parameters``."""

    name: str = Field(pattern=r"^[a-zA-Z0-9_-]{1,64}$")
    description: str = ""
    parameters: dict[str, Any] = Field(
        default_factory=lambda: {"type": "object", "properties": {}},
        description="JSON Schema of the arguments (an object).")

    @classmethod
    def from_model(cls, model: type[BaseModel], *, name: str | None = None,
                   description: str | None = None) -> Tool:
        """A tool whose arguments are ``model``'s fields (name: the class name)."""
        schema = model.model_json_schema()
        schema.pop("title", None)
        text = description if description is not None else schema.pop("description", "") or _doc(model)
        schema.pop("description", None)
        return cls(name=name or model.__name__, description=text, parameters=schema)

    @classmethod
    def from_function(cls, fn: Callable[..., Any], *, name: str | None = None,
                      description: str | None = None) -> Tool:
        """A tool from a typed function: parameters from its annotations and defaults."""
        hints = get_type_hints(fn)
        fields: dict[str, Any] = {}
        for pname, param in inspect.signature(fn).parameters.items():
            if param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
                continue
            if pname not in hints:
                raise TypeError(f"tool {fn.__name__}: parameter {pname!r} needs a type annotation")
            default = ... if param.default is param.empty else param.default
            fields[pname] = (hints[pname], default)
        model = create_model(f"{fn.__name__}_args", **fields)
        schema = model.model_json_schema()
        schema.pop("title", None)
        return cls(name=name or fn.__name__, description=description or _doc(fn), parameters=schema)


def coerce_tool(value: Any) -> Any:
    """Tools given as functions, pydantic classes or OpenAI ``{"type": "function"}`` dicts."""
    if isinstance(value, Tool):
        return value
    if isinstance(value, type) and issubclass(value, BaseModel):
        return Tool.from_model(value)
    if callable(value):
        return Tool.from_function(value)
    if isinstance(value, dict) and value.get("type") == "function" and "function" in value:
        fn = value["function"]
        return {"name": fn.get("name"), "description": fn.get("description") or "",
                "parameters": fn.get("parameters") or {"type": "object", "properties": {}}}
    if isinstance(value, dict) and "input_schema" in value:  # Anthropic's shape
        return {"name": value.get("name"), "description": value.get("description") or "",
                "parameters": value["input_schema"]}
    return value
