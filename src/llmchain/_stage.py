"""The public stage contract: what a stage declares, its options base, and the one place the core
reads those declarations (when a chain is built, never per request).

A stage is any object with ``async def handle(self, request, call_next)`` (``llmchain.Stage``);
the core always passes ``call_next`` *positionally*, so the parameter may have any name. A plain
``async def stage(request, call_next)`` is a stage too, in code. Everything else a stage may
declare is optional and listed, with its default, on ``StageBase`` (inherit it or not):

``kind``
    Its type's label in ``chain.stages`` and ``describe()`` (default: the class name).
``options``
    Its validated ``Options`` instance, when it has one (shown by ``describe()``).
``name``
    Its name in ``chain.stages``, errors and events, when it is put in a chain as an object (a
    config's ``name = "..."`` or the registered name wins otherwise).
``roles``
    What it does, as data (``frozenset({"retry"})``): order hints and stream semantics go by
    roles, never by a stage's name or class.
``handles_streams``
    True when ``handle`` works on streamed responses itself; otherwise the chain runs it on
    the *final* response of a stream and passes the chunks through untouched.
``needs_transport_identity``
    True when it reads ``request.metadata["llmchain.transport"]`` (the transport's
    ``identity()``, e.g. for cache keys); the chain then puts it there.
``aclose()``
    An ``async`` method releasing what the stage holds (stores, connections); ``Chain.aclose``
    calls it.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, cast

from pydantic import BaseModel, ConfigDict

from ._models import LLMRequest, LLMResponse
from ._types import Next, Stage

#: A stage written as a plain function: ``async def stage(request, call_next) -> LLMResponse``.
StageFunction = Callable[[LLMRequest, Next], Awaitable[LLMResponse]]


class StageOptions(BaseModel):
    """Base for a stage's (or transport's) ``Options``: frozen (options are configuration shared
    by every call) and strict (an unknown key is an error naming it, never silently ignored)."""

    model_config = ConfigDict(frozen=True, extra="forbid")


class StageBase:
    """The optional declarations of the stage contract with their defaults; a stage may inherit
    them (it need not: the core reads each with this default when it is absent)."""

    kind: str | None = None
    options: BaseModel | None = None
    name: str | None = None
    roles: frozenset[str] = frozenset()
    handles_streams: bool = False
    needs_transport_identity: bool = False

    async def aclose(self) -> None:
        """Release resources; nothing by default."""


@dataclass(frozen=True)
class StageTraits:
    """What one stage declares, read once when the chain is built."""

    name: str | None
    kind: str
    roles: frozenset[str]
    handles_streams: bool
    needs_transport_identity: bool
    aclose: Callable[[], Awaitable[None]] | None


def _declared(stage: object, attribute: str) -> Any:
    """``stage``'s declaration of ``attribute``, else StageBase's default."""
    value = getattr(stage, attribute, None)
    return getattr(StageBase, attribute) if value is None else value


def stage_traits(stage: object) -> StageTraits:
    """Read a stage's declarations (see the module docstring): the one place the core does."""
    roles = _declared(stage, "roles")
    closer = getattr(stage, "aclose", None)
    return StageTraits(
        name=_declared(stage, "name"),
        kind=getattr(stage, "kind", None) or type(stage).__name__,
        roles=frozenset({roles}) if isinstance(roles, str) else frozenset(roles),
        handles_streams=bool(_declared(stage, "handles_streams")),
        needs_transport_identity=bool(_declared(stage, "needs_transport_identity")),
        aclose=closer if callable(closer) else None,
    )


class FunctionStage(StageBase):
    """A plain ``async def stage(request, call_next)`` as a stage: its ``handle`` is the function
    itself, so it costs nothing per call."""

    def __init__(self, function: StageFunction) -> None:
        self.handle = function
        self.kind = getattr(function, "__name__", "stage")  # named like a class: kind#index

    def __repr__(self) -> str:
        return f"FunctionStage({self.kind})"


def as_stage(obj: object) -> Stage | None:
    """``obj`` as a stage: itself when it has ``handle``, wrapped when it is an async function;
    None when it is neither."""
    if callable(getattr(obj, "handle", None)):
        return obj  # type: ignore[return-value]
    if inspect.iscoroutinefunction(obj):
        return cast("Stage", FunctionStage(obj))  # handle is an attribute, not a method
    return None
