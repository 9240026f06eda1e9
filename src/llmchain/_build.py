"""Building a chain's parts: stage and transport specs → objects, with errors that say where."""

from __future__ import annotations

import inspect
from collections.abc import Iterable, Mapping
from typing import Any

from pydantic import BaseModel

from ._clock import Clock
from ._config import (
    StageSpec,
    TransportSpec,
    build_options,
    parse_stage_entry,
    parse_transport_table,
)
from ._exceptions import ConfigError, LLMChainError
from ._stage import StageFunction, as_stage, stage_traits
from ._types import Middleware, Transport
from .plugins import Registered, Registry

StageLike = Middleware | StageFunction | str | StageSpec | Mapping[str, Any]


def identity_of(transport: Transport) -> dict[str, Any]:
    """``transport.identity()`` (kind, base_url…), or a stand-in for duck-typed transports."""
    identity = getattr(transport, "identity", None)
    if callable(identity):
        return dict(identity())
    return {"kind": type(transport).__qualname__, "name": getattr(transport, "name", None)}


def format_options(obj: object) -> str:
    options = getattr(obj, "options", None)
    if isinstance(options, BaseModel):
        dumped = options.model_dump(mode="json")
        return "  " + ", ".join(f"{k}={v!r}" for k, v in dumped.items()) if dumped else ""
    return ""


def build_stage(
    stage: StageLike, index: int, registry: Registry, clock: Clock, source: str
) -> tuple[str, str, Middleware] | None:
    if isinstance(stage, str):
        stage = StageSpec(use=stage, name=stage)
    elif isinstance(stage, Mapping):
        stage = parse_stage_entry(stage, index, source)
    if not isinstance(stage, StageSpec):
        code_stage = as_stage(stage)
        if code_stage is None:
            raise ConfigError(
                f"{source}: stages[{index}] is {stage!r}, which is neither a stage name, an "
                "object with `async def handle(self, request, call_next)` nor an "
                "`async def stage(request, call_next)` function"
            )
        traits = stage_traits(code_stage)
        # code-built stages may repeat a class; the index keeps their names distinct
        return traits.name or f"{traits.kind}#{index}", traits.kind, code_stage
    if not stage.enabled:
        return None
    where = f"{source}: stages[{index}] ({stage.name})"
    registered = registry.stages.get(stage.use)
    if registered is None:
        raise ConfigError(
            f"{where}: unknown stage {stage.use!r}. Registered stages: "
            f"{registry.describe_available('stage')}. Install the plugin that provides it or fix the name."
        )
    options = build_options(registered, stage.options, where)
    built = instantiate(registered, options, clock, where)
    return stage.name, stage.use, built


def build_stages(
    stages: Iterable[StageLike], registry: Registry, clock: Clock, source: str
) -> list[tuple[str, str, Middleware]]:
    """Build every stage of one list (a chain's, a fallback alternative's) as
    ``(name, kind, stage)``, leaving out disabled ones; names must be distinct."""
    named: list[tuple[str, str, Middleware]] = []
    seen: dict[str, int] = {}
    for index, stage in enumerate(stages):
        built = build_stage(stage, index, registry, clock, source)
        if built is None:
            continue
        name, kind, _ = built
        if name in seen:  # the one place stage names are checked (config, code, fallback)
            raise ConfigError(
                f"{source}: stages[{index}] ({kind}): name {name!r} is already used by "
                f'stages[{seen[name]}]; give each a distinct `name = "..."`'
            )
        seen[name] = index
        named.append(built)
    return named


def build_transport(
    transport: Transport | str | TransportSpec | Mapping[str, Any],
    registry: Registry,
    clock: Clock,
    source: str,
) -> Transport:
    if isinstance(transport, str):
        transport = TransportSpec(use=transport)
    elif isinstance(transport, Mapping):
        transport = parse_transport_table(transport, source)
    if not isinstance(transport, TransportSpec):
        if not callable(getattr(transport, "send", None)):
            raise ConfigError(f"{source}: transport {transport!r} has no `async def send(self, request)`")
        return transport
    where = f"{source}: [transport] ({transport.use})"
    registered = registry.transports.get(transport.use)
    if registered is None:
        raise ConfigError(
            f"{where}: unknown transport {transport.use!r}. Registered transports: "
            f"{registry.describe_available('transport')}."
        )
    options = build_options(registered, transport.options, where)
    transport_built: Transport = instantiate(registered, options, clock, where)
    return transport_built


def instantiate(registered: Registered, options: BaseModel | None, clock: Clock, where: str) -> Any:
    """Call a registered factory; any failure becomes a ConfigError that says where.

    The clock is passed only to a factory that takes one (``clock=`` is optional in the stage
    contract: a stage that never waits need not accept it).
    """
    kwargs = {"clock": clock} if takes_clock(registered.factory) else {}
    try:
        return (
            registered.factory(options, **kwargs)
            if options is not None
            else registered.factory(**kwargs)
        )
    except ConfigError as exc:  # say where, like every other config error
        raise ConfigError(f"{where}: {exc}") from exc.__cause__
    except LLMChainError:
        raise
    except Exception as exc:
        raise ConfigError(
            f"{where}: building {registered.name!r} (from {registered.plugin}) failed: {exc}"
        ) from exc


def takes_clock(factory: Any) -> bool:
    """Whether ``factory`` accepts ``clock=`` (by name, or through ``**kwargs``)."""
    try:
        parameters = inspect.signature(factory).parameters.values()
    except (TypeError, ValueError):  # no signature to read (some builtins): offer it
        return True
    return any((p.name == "clock" and p.kind is not p.POSITIONAL_ONLY) or p.kind is p.VAR_KEYWORD
               for p in parameters)
