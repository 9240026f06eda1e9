"""The ``declarations`` clause: the stage has the shape ``llmchain.Stage`` says, and what it
declares (``StageBase``'s optional attributes) has the documented types."""

from __future__ import annotations

import inspect

from .._stage import StageBase
from ._contract_harness import ContractViolation, StageUnderTest
from .clock import FakeClock

CLAUSE = "declarations"


def check_declarations(sut: StageUnderTest) -> None:
    stage = sut.build(FakeClock())
    problems = _handle_problems(stage.handle)
    for attribute, expected in (("name", str), ("kind", str), ("handles_streams", bool),
                                ("needs_transport_identity", bool)):
        value = getattr(stage, attribute, None)
        if value is not None and not isinstance(value, expected):
            problems.append(f"{attribute} is {value!r}; the contract says {expected.__name__}")
    roles = getattr(stage, "roles", None)
    if roles is not None and not (isinstance(roles, frozenset) and all(isinstance(r, str) for r in roles)):
        problems.append(f"roles is {roles!r}; the contract says a frozenset of strings")
    closer = getattr(stage, "aclose", None)
    if closer is not None and not inspect.iscoroutinefunction(closer):
        problems.append("aclose is not an `async def` method taking no arguments")
    if problems:
        raise ContractViolation(CLAUSE, f"{sut.label}: " + "; ".join(problems)
                                + f" (see llmchain.Stage and {StageBase.__qualname__})")


def _handle_problems(handle: object) -> list[str]:
    if not inspect.iscoroutinefunction(handle):
        return ["handle is not an `async def` (the chain awaits what it returns)"]
    try:
        signature = inspect.signature(handle)
        signature.bind(object(), object())  # the core passes (request, call_next) positionally
    except TypeError as exc:
        return [f"handle cannot be called as handle(request, call_next) positionally: {exc}"]
    return []
