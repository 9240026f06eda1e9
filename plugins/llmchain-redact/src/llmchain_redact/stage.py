"""The ``redact`` stage: PII never leaves in a prompt; the answer gets it back.

Outgoing message text is scanned; each distinct email, phone number, card number or custom
match becomes a placeholder such as ``<EMAIL_1>`` (the same value gets the same placeholder
throughout the call). When the answer repeats a placeholder, ``restore`` puts the original back
in ``response.text`` (and in ``response.parsed``). ``response.notes["redacted"]`` counts what was
masked per label, never the values. A request with nothing to mask passes through untouched.
Streamed answers are restored chunk by chunk, a placeholder split across chunks included.
"""

from __future__ import annotations

import re
from collections.abc import AsyncGenerator, AsyncIterator
from typing import Any, Literal

from pydantic import Field, field_validator

from llmchain import (
    REAL_CLOCK,
    Clock,
    LLMRequest,
    LLMResponse,
    Message,
    Next,
    StageOptions,
    StreamEnd,
    StreamEvent,
    TextDelta,
    TextPart,
)

from ._detect import BUILTIN_LABELS, LABEL, Detector, Redaction, build_detectors

Role = Literal["system", "user", "assistant", "tool"]


class RedactMiddleware:
    """Mask PII in outgoing messages; optionally restore the placeholders in the answer."""

    roles = frozenset({"redact"})
    #: Streams: placeholders are restored chunk by chunk (see ``_restore_stream``).
    handles_streams = True

    class Options(StageOptions):
        emails: bool = Field(True, description="Mask email addresses.")
        phones: bool = Field(
            True,
            description="Mask phone numbers: +<country code> forms, (555) 123-4567, 555-123-4567, "
            "and national forms starting with 0 (020 7946 0958).",
        )
        cards: bool = Field(True, description="Mask card numbers: 13-19 digits passing the Luhn check.")
        patterns: dict[str, str] = Field(
            default_factory=dict,
            description="Your own patterns, LABEL = regex (e.g. TICKET = 'TCK-\\d{4}'); they take "
            "precedence over the built-in detectors.",
        )
        roles: tuple[Role, ...] = Field(
            ("system", "user", "assistant", "tool"), description="Messages of these roles are scanned."
        )
        restore: bool = Field(
            True, description="Put the original values back where the answer repeats a placeholder."
        )
        placeholder: str = Field(
            "<{label}_{n}>", description="Placeholder template; must contain {label} and {n}."
        )

        @field_validator("patterns")
        @classmethod
        def _valid_patterns(cls, patterns: dict[str, str]) -> dict[str, str]:
            for label, regex in patterns.items():
                if not LABEL.fullmatch(label) or label in BUILTIN_LABELS:
                    raise ValueError(
                        f"label {label!r} must be UPPER_SNAKE_CASE and not one of {list(BUILTIN_LABELS)}"
                    )
                try:
                    compiled = re.compile(regex)
                except re.error as exc:
                    raise ValueError(f"pattern for {label} is not a valid regex: {exc}") from None
                if compiled.fullmatch(""):
                    raise ValueError(f"pattern for {label} matches the empty string")
            return patterns

        @field_validator("placeholder")
        @classmethod
        def _valid_placeholder(cls, template: str) -> str:
            if "{label}" not in template or "{n}" not in template:
                raise ValueError("placeholder must contain {label} and {n}, e.g. '<{label}_{n}>'")
            try:
                template.format(label="X", n=1)
            except (KeyError, IndexError, ValueError) as exc:
                raise ValueError(f"placeholder {template!r} is not a valid template: {exc}") from None
            return template

    def __init__(self, options: Options | None = None, *, clock: Clock = REAL_CLOCK) -> None:
        self.options = options or self.Options()
        self._clock = clock  # unused: redacting never waits; kept for the factory contract
        # compiled once: shared, immutable; everything per call lives in a Redaction
        self._detectors: tuple[Detector, ...] = build_detectors(
            emails=self.options.emails,
            phones=self.options.phones,
            cards=self.options.cards,
            patterns=self.options.patterns,
        )

    def redact(self, request: LLMRequest) -> tuple[LLMRequest, Redaction]:
        """The request with PII masked (the same object when there is none), and the mapping."""
        roles = self.options.roles
        texts = [m.text for m in request.messages]
        texts += [c.arguments for m in request.messages for c in m.tool_calls]
        redaction = Redaction(self.options.placeholder, "\n".join(texts))
        messages = tuple(
            self._masked(m, redaction) if m.role in roles else m for m in request.messages
        )
        if not redaction:
            return request, redaction
        return request.model_copy(update={"messages": messages}), redaction

    def _masked(self, message: Message, redaction: Redaction) -> Message:
        """Text, text parts and tool-call arguments masked; images and documents as they are."""
        detectors, content = self._detectors, message.content
        update: dict[str, Any] = {"content": redaction.mask(content, detectors) if isinstance(content, str)
                                  else tuple(p.model_copy(update={"text": redaction.mask(p.text, detectors)})
                                             if isinstance(p, TextPart) else p for p in content)}
        if message.tool_calls:
            update["tool_calls"] = tuple(
                c.model_copy(update={"arguments": redaction.mask(c.arguments, detectors)})
                for c in message.tool_calls)
        return message.model_copy(update=update)

    async def handle(self, request: LLMRequest, call_next: Next) -> LLMResponse:
        masked, redaction = self.redact(request)
        if not redaction:
            return await call_next(request)
        response = await call_next(masked)
        if response.stream is not None:
            response.stream.pipe(lambda events: self._restore_stream(events, redaction))
            return response
        return self._restored(response, redaction)

    def _restored(self, response: LLMResponse, redaction: Redaction) -> LLMResponse:
        update: dict[str, Any] = {"notes": {**response.notes, "redacted": redaction.counts()}}
        if self.options.restore:
            update["text"] = redaction.restore(response.text)
            if response.tool_calls:
                update["tool_calls"] = tuple(
                    c.model_copy(update={"arguments": redaction.restore(c.arguments)})
                    for c in response.tool_calls)
            if response.parsed is not None:
                update["parsed"] = redaction.restore_value(response.parsed)
        return response.model_copy(update=update)

    async def _restore_stream(self, events: AsyncIterator[StreamEvent],
                              redaction: Redaction) -> AsyncGenerator[StreamEvent, None]:
        """Chunks with their placeholders restored. A chunk's tail that could be the start of a
        placeholder (``<EMA`` of ``<EMAIL_1>``) is held until the next chunk says, so a
        placeholder split across two chunks is restored whole; the rest goes out at once."""
        restore = self.options.restore
        placeholders = tuple(redaction.originals)
        held = ""
        try:
            async for event in events:
                if type(event) is TextDelta and restore:
                    text = held + event.text
                    cut = _release_up_to(text, placeholders)
                    held = text[cut:]
                    if cut:
                        yield TextDelta(redaction.restore(text[:cut]))
                    continue
                if type(event) is StreamEnd:
                    if held:
                        yield TextDelta(redaction.restore(held))
                        held = ""
                    event = StreamEnd(self._restored(event.response, redaction))
                yield event
        finally:
            await events.aclose()  # type: ignore[attr-defined]

    def __repr__(self) -> str:
        labels = [d.label for d in self._detectors]
        return f"RedactMiddleware(labels={labels}, restore={self.options.restore})"


def _release_up_to(text: str, placeholders: tuple[str, ...]) -> int:
    """How much of ``text`` can go out: all but its longest suffix that begins a placeholder."""
    longest = max((len(p) for p in placeholders), default=0)
    for size in range(min(longest - 1, len(text)), 0, -1):
        tail = text[-size:]
        if any(p.startswith(tail) for p in placeholders):
            return len(text) - size
    return len(text)
