"""The ``parse`` stage: turn the answer's text into a JSON value (``response.parsed``).

It acts only on calls that ask for structured output (``output_type`` or ``output_schema`` on
the request) unless ``always = true``; other calls pass through at the cost of two attribute
reads. Streamed structured calls get a ``PartialObject`` event (the best-effort value of the
JSON so far) after each chunk that changes it, and the whole answer is parsed at the end. An
answer a transport already parsed (native structured output) is left alone.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Callable
from typing import Any, Literal

from pydantic import Field

from .._clock import REAL_CLOCK, Clock
from .._exceptions import ParseError
from .._models import LLMRequest, LLMResponse, copy_with
from .._stage import StageOptions
from .._stream import Events, PartialObject, StreamEnd, StreamEvent, TextDelta
from .._text_buffer import TextBuffer
from .._types import Next
from ..hookspecs import hookimpl
from ..structured._json_extract import extract_json
from ..structured._output import expected_kind, remember
from ..structured._partial_json import partial_json

TRUNCATED_HINT = (
    "the answer was cut off at max_tokens (finish_reason=length): raise max_tokens or ask for "
    "a shorter answer"
)


#: Up to this length the JSON so far is re-read after every chunk.
PARTIAL_EVERY_CHUNK_CHARS = 4096

class ParseMiddleware:
    """Parse the answer text as JSON on the way back; raise ParseError if there is none."""

    name = kind = "parse"
    #: What this stage does, as data: order hints and other stages go by roles, never by names.
    roles = frozenset({"parse"})
    #: Streamed calls pass through ``handle`` like any other (see docs/stages/parse.md, "Streams").
    handles_streams = True

    class Options(StageOptions):
        mode: Literal["strict", "fenced", "lenient"] = Field(
            "lenient",
            description=(
                "How much to accept: 'strict' = the whole answer is JSON; 'fenced' = also JSON "
                "inside a ``` code fence; 'lenient' = also the first complete object or array "
                "inside prose. Whatever is found is never altered."
            ),
        )
        always: bool = Field(
            False,
            description="Parse every answer, even for calls that ask for no structured output.",
        )

    def __init__(self, options: Options | None = None, *, clock: Clock = REAL_CLOCK) -> None:
        self.options = options or self.Options()
        self._clock = clock
        self._mode = self.options.mode
        self._always = self.options.always

    async def handle(self, request: LLMRequest, call_next: Next) -> LLMResponse:
        if (request.output_type is None and request.output_schema is None and not self._always) or (
                request.embed_input is not None):  # embeddings pass through untouched
            return await call_next(request)
        response = await call_next(request)
        if response.stream is not None:
            response.stream.pipe(lambda events: self._stream(events, request))
            return response
        return self._parsed(response, request)

    def _parsed(self, response: LLMResponse, request: LLMRequest) -> LLMResponse:
        if response.parsed is not None:  # the transport used native structured output
            return response
        try:
            value = extract_json(response.text, mode=self._mode, expect=expected_kind(request))
        except ParseError as exc:
            if response.finish_reason == "length":
                exc.hint = TRUNCATED_HINT
            remember(exc, response=response)
            raise
        return copy_with(response, {"parsed": value})

    async def _stream(self, events: Events, request: LLMRequest) -> AsyncGenerator[StreamEvent, None]:
        """Chunks pass at once; after them, the JSON so far as a ``PartialObject`` when it has
        changed; at the end the whole answer is parsed as for any call. Holds the text received
        once (structured answers only); the JSON so far is re-read after every chunk while it
        is short, then each time it has grown by an eighth, so a long answer costs O(n), not
        O(n²)."""
        text = TextBuffer()
        last: Any = None
        read_at = 0  # length of the text when the partial object was last computed
        try:
            async for event in events:
                if type(event) is StreamEnd:
                    event = StreamEnd(self._parsed(event.response, request))
                yield event
                if type(event) is TextDelta:
                    text.append(event.text)
                    size = len(text)
                    if size - read_at < read_at >> 3 and size > PARTIAL_EVERY_CHUNK_CHARS:
                        continue
                    read_at = size
                    value = partial_json(text.value())
                    if value is not None and value != last:
                        last = value
                        yield PartialObject(value)
        finally:
            await events.aclose()  # type: ignore[attr-defined]

    def __repr__(self) -> str:
        return f"ParseMiddleware(mode={self._mode!r}, always={self._always})"


@hookimpl
def register_middleware(register: Callable[[str, Any], None]) -> None:
    register("parse", ParseMiddleware)
