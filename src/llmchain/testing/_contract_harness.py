"""What the contract clauses share: building the stage, probe requests, running with a time guard."""

from __future__ import annotations

import asyncio
import contextlib
import copy
import uuid
from collections.abc import Callable, Coroutine, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

from pydantic import BaseModel

from .._build import takes_clock
from .._clock import Clock
from .._models import LLMRequest, LLMResponse, Message, Usage
from .._types import Middleware

T = TypeVar("T")

#: How far past its deadline (fake-clock seconds) a call may end: "a few tens of milliseconds".
DEADLINE_SLACK_S = 0.05

#: A JSON Schema and an answer satisfying it, for probes where structured stages have work.
PROBE_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {"ok": {"type": "boolean"}},
    "required": ["ok"],
}
PROBE_JSON = '{"ok": true}'


class ContractViolation(AssertionError):
    """A stage broke a clause of the middleware contract; the message says which and how."""

    def __init__(self, clause: str, message: str) -> None:
        super().__init__(f"[{clause}] {message}")
        self.clause = clause


@dataclass(frozen=True)
class StageUnderTest:
    """A stage factory plus the options the contract builds it with."""

    factory: Any
    options: Mapping[str, Any] = field(default_factory=dict)
    annotates: Mapping[str, str] = field(default_factory=dict)
    examples: int = 20
    real_time_limit_s: float = 5.0

    @property
    def label(self) -> str:
        return getattr(self.factory, "__qualname__", repr(self.factory))

    @property
    def options_model(self) -> type[BaseModel] | None:
        model = getattr(self.factory, "Options", None)
        return model if isinstance(model, type) and issubclass(model, BaseModel) else None

    def build(self, clock: Clock) -> Middleware:
        """The stage, built the way a chain builds it: ``factory(options, clock=clock)`` (no
        ``clock`` for a factory that takes none)."""
        model = self.options_model
        try:
            kwargs = {"clock": clock} if takes_clock(self.factory) else {}  # as the chain does
            if model is None:
                if self.options:
                    raise TypeError(f"the factory has no Options model but got options {dict(self.options)}")
                stage = self.factory(**kwargs)
            else:
                stage = self.factory(model.model_validate(dict(self.options)), **kwargs)
        except Exception as exc:
            raise ContractViolation(
                "build", f"{self.label} could not be built with options {dict(self.options)!r}: {exc}"
            ) from exc
        if not callable(getattr(stage, "handle", None)):
            raise ContractViolation("build", f"{self.label}(...) returned {stage!r}, which has no handle()")
        return stage  # type: ignore[no-any-return]

    def run(self, clause: str, main: Callable[[], Coroutine[Any, Any, T]]) -> T:
        """Run ``main()`` on a fresh event loop; real time is bounded so a real sleep fails fast."""
        return run_guarded(clause, main, self.real_time_limit_s)


def run_guarded(clause: str, main: Callable[[], Coroutine[Any, Any, T]], limit_s: float) -> T:
    loop = asyncio.new_event_loop()
    try:
        return loop.run_until_complete(asyncio.wait_for(main(), limit_s))
    except TimeoutError:
        raise ContractViolation(
            clause,
            f"took more than {limit_s:g} s of real time; a stage must wait only through its injected "
            "clock (clock.sleep), never asyncio.sleep or time.sleep",
        ) from None
    finally:
        pending = asyncio.all_tasks(loop)
        for task in pending:  # background tasks a stage left behind: end them quietly
            task.cancel()
        if pending:  # bounded: a stage that ignores cancellation must not hang the test run
            with contextlib.suppress(BaseException):
                loop.run_until_complete(asyncio.wait(pending, timeout=1.0))
        loop.close()


def nonce() -> str:
    """Makes each probe's content unique, so caches never answer one probe from another."""
    return uuid.uuid4().hex[:12]


def probe_request(
    clock: Clock, *, tag: str | None = None, deadline_in: float = 120.0, structured: bool = False
) -> LLMRequest:
    """A typical request with nothing special asked, and nested containers to catch mutation."""
    tag = tag or nonce()
    return LLMRequest(
        model="contract-model",
        messages=(
            Message(role="system", content="Answer briefly."),
            Message(role="user", content=f"What is the contract probe {tag} about?"),
        ),
        temperature=0.0,
        max_tokens=64,
        extra={"probe": {"nested": [1, 2]}},
        metadata={"contract_probe": tag},
        output_schema=copy.deepcopy(PROBE_SCHEMA) if structured else None,
        timeout_s=deadline_in if deadline_in > 0 else None,
        deadline=clock.now() + deadline_in,
    )


def probe_response(text: str = "The probe is about contracts.", **update: Any) -> LLMResponse:
    """A typical provider answer with every field a stage might forget to carry."""
    fields: dict[str, Any] = {
        "text": text,
        "usage": Usage(input_tokens=20, output_tokens=7),
        "model": "contract-model",
        "finish_reason": "stop",
        "headers": {"x-request-id": "probe-1"},
        "served_by": "contract:inner",
        "notes": {"inner": {"kept": True}},
    }
    fields.update(update)
    return LLMResponse(**fields)


def chain_of_errors(exc: BaseException) -> list[BaseException]:
    """``exc`` and every error it explicitly wraps (``__cause__``, ``.errors``).

    An implicit ``__context__`` does not count: ``explain()`` and logs show only the cause.
    """
    seen: list[BaseException] = []
    todo = [exc]
    while todo:
        current = todo.pop()
        if any(current is s for s in seen):
            continue
        seen.append(current)
        linked = [current.__cause__, *getattr(current, "errors", ())]
        todo.extend(e for e in linked if isinstance(e, BaseException))
    return seen


def wraps(raised: BaseException, original: BaseException) -> bool:
    """Whether ``raised`` is ``original`` or carries it (same object, or same type and message)."""
    for err in chain_of_errors(raised):
        if err is original or (type(err) is type(original) and str(err) == str(original)):
            return True
    return False


def response_diff(got: LLMResponse, sent: LLMResponse, annotates: Mapping[str, str]) -> list[str]:
    """Fields where ``got`` differs from ``sent``.

    ``notes`` may gain keys, never lose or change one. A field (``"cache"``) or sub-field
    (``"usage.cost_usd"``) the stage declares in ``annotates`` may be filled in where it was None.
    """
    problems = []
    for name in LLMResponse.model_fields:
        before, after = getattr(sent, name), getattr(got, name)
        if name == "notes":
            changed = [k for k in before if k not in after or after[k] != before[k]]
            if changed:
                problems.append(f"notes lost or changed {changed}")
        elif after == before or (name in annotates and before is None):
            continue
        elif isinstance(before, BaseModel) and isinstance(after, BaseModel) and type(before) is type(after):
            for sub in type(before).model_fields:
                old, new = getattr(before, sub), getattr(after, sub)
                if old != new and not (f"{name}.{sub}" in annotates and old is None):
                    problems.append(f"{name}.{sub}: {old!r} -> {new!r}")
        else:
            problems.append(f"{name}: {before!r} -> {after!r}")
    return problems


def validate_annotations(annotates: Mapping[str, str]) -> None:
    """Declared annotations must name response fields and say why the stage fills them."""
    for path, reason in annotates.items():
        head, _, sub = path.partition(".")
        field_info = LLMResponse.model_fields.get(head)
        annotation = field_info.annotation if field_info is not None else None
        sub_fields = getattr(annotation, "model_fields", {}) if isinstance(annotation, type) else {}
        if field_info is None or head == "notes" or (sub and sub not in sub_fields):
            raise ValueError(f"annotates names {path!r}, which is not an LLMResponse field or sub-field")
        if not isinstance(reason, str) or len(reason.split()) < 3:
            raise ValueError(f"annotating {path!r} needs a reason of a few words, got {reason!r}")


def request_diff(got: LLMRequest, sent: LLMRequest) -> list[str]:
    """Fields a stage with nothing to do changed on the way in (it may tighten the deadline)."""
    problems = []
    for name in LLMRequest.model_fields:
        before, after = getattr(sent, name), getattr(got, name)
        if name == "deadline" and before is not None and after is not None and after <= before:
            continue
        if name == "timeout_s" or name == "attempt":
            continue
        if after != before:
            problems.append(f"{name}: {before!r} -> {after!r}")
    return problems
