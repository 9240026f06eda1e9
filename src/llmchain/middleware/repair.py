"""The ``repair`` stage: a ladder for unusable answers, each rung cheaper than the next.

When a stage inside raises an OutputError (ParseError from ``parse``, OutputInvalid from
``validate``), for each rejected answer in turn:

1. **local**: a ParseError's text is repaired offline (trailing commas, single quotes, Python
   literals, unquoted keys, comments, missing closers; optionally ``json-repair``'s guesses)
   and re-checked against the same schema. JSON that was valid is never altered: an answer
   that parsed but failed validation skips this rung.
2. **re-ask**: the original messages + the bad answer + the errors go back to the model through
   ``call_next``, so retry, rate limit and timeout apply as to any call; bounded by
   ``max_reasks`` and ``max_reask_tokens``.
3. **give up**: ``RepairGaveUp`` (a ``GaveUp``) lists every answer and why it was rejected.

Only output errors are handled; transport, provider and rate-limit errors pass through untouched
(and are never shown to the model).
"""

from __future__ import annotations

import json
from collections.abc import AsyncGenerator, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import Field

from .._clock import REAL_CLOCK, Clock, time_left
from .._content import content_chars
from .._events import emit
from .._exceptions import ConfigError, GaveUp, OutputError, OutputInvalid, ParseError
from .._models import LLMRequest, LLMResponse, Message, copy_with
from .._redact import trim
from .._stage import StageOptions
from .._stream import Events, Replaced, StreamEnd, StreamEvent
from .._types import Next
from ..hookspecs import hookimpl
from ..structured._json_fix import json_repair_available, repair_json_text, repair_region
from ..structured._output import expected_kind, invalid_error, resolve_schema, response_of, schema_of
from ..structured._schema import OutputSchema, SchemaMismatch
from ..structured._tool_check import (
    STRUCTURED_NOTE,
    structured_reask_messages,
    tool_errors,
    tool_reask_messages,
)

#: Violations listed in a re-ask message; beyond this the model gets a count.
MAX_LISTED_ERRORS = 20
DEFAULT_INSTRUCTION = "Reply with the corrected JSON only: no explanation, no code fences."


class RepairGaveUp(GaveUp):
    """The repair ladder ran out; ``explain()`` shows every rejected answer and why."""

    def __init__(self, message: str, *, errors: Sequence[OutputError],
                 local_notes: Sequence[str | None] = (), **kw: Any) -> None:
        super().__init__(message, errors=errors, retryable=False, **kw)
        self.local_notes = list(local_notes)

    def details(self) -> list[str]:
        lines = []
        for i, err in enumerate(self.errors, 1):
            lines.append(f"answer {i}: {type(err).__name__}: {trim(err.message, 300)}")
            lines.extend(f"  {line}" for line in err.details())
            note = self.local_notes[i - 1] if i <= len(self.local_notes) else None
            if note:
                lines.append(f"  local repair: {note}")
        return lines


@dataclass
class _Ladder:
    """Per-call state of one climb down the ladder (lives in locals, never on the stage)."""

    errors: list[OutputError] = field(default_factory=list)
    notes: list[str | None] = field(default_factory=list)
    reasks: int = 0
    tokens: int = 0


class RepairMiddleware:
    """Repair unusable structured answers: locally first, then by re-asking, then GaveUp."""

    name = kind = "repair"
    #: What this stage does, as data: order hints and other stages go by roles, never by names.
    roles = frozenset({"repair"})
    #: Streamed calls pass through ``handle`` like any other (see docs/stages/repair.md, "Streams").
    handles_streams = True

    class Options(StageOptions):
        local_repair: Literal["builtin", "json-repair", "off"] = Field(
            "builtin",
            description="Local repair before re-asking: 'builtin' = exact fixes for trailing "
            "commas, quotes, Python literals, unquoted keys, comments, missing closers; "
            "'json-repair' = also the json-repair package's guesses for messier damage (extra "
            "'repair'); 'off' = none.",
        )
        repair_truncated: bool = Field(
            False,
            description="Also repair answers cut off at max_tokens (finish_reason=length) "
            "locally; the repaired value may silently miss data.",
        )
        max_reasks: int = Field(1, ge=0, description="Re-asks per call (0 = local repair only).")
        max_reask_tokens: int | None = Field(
            None, ge=1,
            description="Tokens (prompt + answer) all re-asks of a call may use; unlimited if unset.",
        )
        include_schema: bool = Field(
            True, description="Show the JSON Schema (when the call has one) in re-ask messages."
        )
        instruction: str = Field(
            DEFAULT_INSTRUCTION, min_length=1, description="Last line of every re-ask message."
        )

    def __init__(self, options: Options | None = None, *, clock: Clock = REAL_CLOCK) -> None:
        self.options = options or self.Options()
        self._clock = clock
        mode = self.options.local_repair
        self._local = mode != "off"
        self._library = mode == "json-repair"
        if self._library and not json_repair_available():
            raise ConfigError(
                "repair stage: local_repair = \"json-repair\" needs the json-repair package: "
                "pip install 'llmchain[repair]' (or use local_repair = \"builtin\")"
            )

    async def handle(self, request: LLMRequest, call_next: Next) -> LLMResponse:
        try:
            response = await call_next(request)
        except OutputError as exc:
            if request.embed_input is not None:  # nothing to re-ask for: embeddings pass through
                raise
            error = exc
        else:
            if response.stream is not None:
                response.stream.pipe(lambda events: self._stream(events, request, call_next))
            return response
        return await self._climb(request, call_next, error)

    async def _stream(self, events: Events, request: LLMRequest,
                      call_next: Next) -> AsyncGenerator[StreamEvent, None]:
        """A streamed answer rejected at its end climbs the usual ladder (re-asks are not
        streamed); the caller then gets ``Replaced`` with the answer that replaces the chunks."""
        try:
            async for event in events:
                yield event
            return
        except OutputError as exc:
            error = exc
        finally:
            await events.aclose()  # type: ignore[attr-defined]
        fixed = await self._climb(copy_with(request, {"stream": False}), call_next, error)
        yield Replaced(fixed, "repair: " + str(fixed.notes.get("repaired", "the answer was fixed")))
        yield StreamEnd(fixed)

    async def _climb(self, request: LLMRequest, call_next: Next, error: OutputError) -> LLMResponse:
        ladder = _Ladder()
        schema = schema_of(error) or resolve_schema(request)
        while True:
            ladder.errors.append(error)
            fixed, note = self._repair_locally(request, error, schema)
            ladder.notes.append(note)
            if fixed is not None:
                return self._mark(fixed, "local", ladder)
            reask, stop = self._plan_reask(request, error, schema, ladder)
            if reask is None:
                emit("repair", "repair", action="gave_up", reasks=ladder.reasks, reason=stop)
                raise RepairGaveUp(
                    f"no usable answer after {len(ladder.errors)} answer(s) and {ladder.reasks} "
                    f"re-ask(s): {stop}",
                    errors=ladder.errors, local_notes=ladder.notes,
                    hint="each answer and why it was rejected is listed above; clarify the "
                    "prompt, raise max_reasks / max_reask_tokens, or use native structured output",
                ) from error
            ladder.reasks += 1
            emit("repair", "repair", action="reask", reask=ladder.reasks,
                 error_type=type(error).__name__)
            try:
                response = await call_next(reask)
            except OutputError as exc:
                ladder.tokens += _tokens_used(response_of(exc), reask, exc.raw_text)
                error, schema = exc, schema_of(exc) or schema
                continue
            ladder.tokens += _tokens_used(response, reask, response.text)
            return self._mark(response, "reask", ladder)

    def _repair_locally(
        self, request: LLMRequest, error: OutputError, schema: OutputSchema | None
    ) -> tuple[LLMResponse | None, str | None]:
        """(the repaired response or None, what happened, for explain())."""
        if not isinstance(error, ParseError) or error.raw_text is None:
            return None, None  # valid JSON that failed validation is never altered
        if not self._local:
            return None, "off"
        rejected = response_of(error)
        if rejected is not None and rejected.finish_reason == "length" and not self.options.repair_truncated:
            return None, "skipped: the answer was cut off at max_tokens (repair_truncated = false)"
        expect = schema.expect if schema is not None else expected_kind(request)
        repaired = repair_json_text(error.raw_text, expect=expect, use_library=self._library)
        if repaired is None:
            emit("repair", "repair", action="local", ok=False)
            if repair_region(error.raw_text, expect) is None:
                return None, "failed: no JSON found to repair"
            return None, "failed: the damage is beyond the local fixes"
        value = repaired.value
        if schema is not None:
            try:
                value = schema.validate(value)
            except SchemaMismatch as exc:
                emit("repair", "repair", action="local", ok=False)
                shown = invalid_error(schema, exc.errors, None).message
                return None, f"the repaired JSON is still unusable: {shown}"
        emit("repair", "repair", action="local", ok=True, changes=len(repaired.actions))
        base = rejected or LLMResponse(text=error.raw_text)
        notes: dict[str, Any] = {"original_text": trim(error.raw_text, 2000)}
        if repaired.actions:
            notes["repair_actions"] = list(repaired.actions[:10])
        return base.model_copy(update={
            "text": json.dumps(repaired.value, ensure_ascii=False),
            "parsed": value,
            "notes": {**base.notes, **notes},
        }), None

    def _plan_reask(
        self, request: LLMRequest, error: OutputError, schema: OutputSchema | None, ladder: _Ladder
    ) -> tuple[LLMRequest | None, str]:
        """The next re-ask request, or None and why the ladder stops here."""
        options = self.options
        if ladder.reasks >= options.max_reasks:
            if options.max_reasks == 0:
                return None, "re-asking is off (max_reasks = 0)"
            return None, f"all {options.max_reasks} re-ask(s) used"
        left = time_left(request, self._clock)
        if left is not None and left <= 0:
            return None, "the call's deadline has passed"
        rejected, per_call = response_of(error), tool_errors(error)
        if rejected is not None and per_call is not None:  # tool-call arguments: answer the calls
            extra = tool_reask_messages(rejected, per_call)
        elif rejected is not None and STRUCTURED_NOTE in rejected.notes:  # answered through a tool
            call = rejected.notes[STRUCTURED_NOTE]
            problem = reask_messages(error, schema if options.include_schema else None,
                                     f"Call the {call['name']} tool again with the corrected input.")
            extra = structured_reask_messages(call, problem[-1].text)
        else:
            extra = reask_messages(error, schema if options.include_schema else None, options.instruction)
        messages = request.messages + extra
        update: dict[str, Any] = {
            "messages": messages,
            "metadata": {**request.metadata, "repair_reask": ladder.reasks + 1},
        }
        if options.max_reask_tokens is not None:
            remaining = options.max_reask_tokens - ladder.tokens
            prompt = estimate_tokens(messages)
            # a corrected answer is about as long as the rejected one (capped: it may be prose)
            wanted = min(256, max(1, estimate_tokens(error.raw_text or "")))
            if remaining - prompt < wanted:
                return None, (
                    f"the re-ask token budget is spent: the next re-ask needs ~{prompt + wanted} "
                    f"tokens, {max(remaining, 0)} of max_reask_tokens={options.max_reask_tokens} left"
                )
            cap = remaining - prompt
            update["max_tokens"] = min(request.max_tokens, cap) if request.max_tokens else cap
        return request.model_copy(update=update), ""

    @staticmethod
    def _mark(response: LLMResponse, how: str, ladder: _Ladder) -> LLMResponse:
        notes = {**response.notes, "repaired": how, "reasks": ladder.reasks}
        if ladder.reasks:
            notes["reask_tokens"] = ladder.tokens
        return response.model_copy(update={"notes": notes})

    def __repr__(self) -> str:
        o = self.options
        return (f"RepairMiddleware(local_repair={o.local_repair!r}, max_reasks={o.max_reasks}, "
                f"max_reask_tokens={o.max_reask_tokens})")


def estimate_tokens(content: str | Sequence[Message]) -> int:
    """A deliberately high token estimate (3 characters per token, 4 per message of overhead).

    Real tokenizers average about 4 characters per token on English and JSON, so budgets
    checked with this estimate hold unless a provider counts far more than usual.
    """
    if isinstance(content, str):
        return (len(content) + 2) // 3
    return sum((content_chars(m.content) + sum(len(c.arguments) for c in m.tool_calls) + 2) // 3 + 4
               for m in content)


def reask_messages(
    error: OutputError, schema: OutputSchema | None, instruction: str
) -> tuple[Message, ...]:
    """The bad answer (as the assistant's turn) and what was wrong with it (the user's turn)."""
    if isinstance(error, OutputInvalid) and error.errors:
        listed = [f"- {e}" for e in error.errors[:MAX_LISTED_ERRORS]]
        if len(error.errors) > MAX_LISTED_ERRORS:
            listed.append(f"- … and {len(error.errors) - MAX_LISTED_ERRORS} more")
        lines = ["Your previous answer does not match the required schema:", *listed]
    else:
        lines = [f"Your previous answer was rejected: {error.message}"]
    if schema is not None:
        lines += ["", "The JSON must match this JSON Schema:",
                  json.dumps(schema.json_schema, separators=(",", ":"), ensure_ascii=False)]
    lines += ["", instruction]
    turns = [Message(role="user", content="\n".join(lines))]
    if error.raw_text:
        turns.insert(0, Message(role="assistant", content=error.raw_text))
    return tuple(turns)


def _tokens_used(response: LLMResponse | None, request: LLMRequest, answer: str | None) -> int:
    """Tokens a re-ask cost: as reported, else estimated the way the budget check estimates."""
    if response is not None and response.usage.total_tokens > 0:
        return response.usage.total_tokens
    return estimate_tokens(request.messages) + estimate_tokens(answer or "")


@hookimpl
def register_middleware(register: Callable[[str, Any], None]) -> None:
    register("repair", RepairMiddleware)

