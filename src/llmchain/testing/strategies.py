"""Hypothesis strategies for llmchain values: requests, responses, outcomes and fault plans.

``rich_messages(provider)``, ``images()``, ``documents()``, ``tool_calls()`` and ``tools()``
cover content parts and tools. Needs ``hypothesis`` (``pip install llmchain[testing]``): import
this module explicitly, ``llmchain.testing`` does not. Outcomes are ready to script into a
``ScriptedNext`` or ``MockTransport``::

    from llmchain.testing import strategies as lst

    @given(script=lst.outcome_scripts(kinds=("success", "retryable")))
    def test_retry_never_returns_an_error(script): ...

``classify(outcome)`` says which of ``OUTCOME_KINDS`` a generated value belongs to.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from hypothesis import strategies as st

from .._content import DocumentPart, ImagePart, RawPart, TextPart
from .._exceptions import (
    CallError,
    OutputInvalid,
    ParseError,
    ProviderError,
    RateLimited,
    TimeoutExceeded,
    TransportError,
)
from .._models import LLMRequest, LLMResponse, Message, ToolCall, Usage
from .._tools import Tool
from ._fault_plan import FaultPlan

OUTCOME_KINDS = ("success", "retryable", "fatal", "timeout")

#: Fault short forms (``Fault.parse``) that end quickly; slow ones are opt-in.
FAST_FAULTS = (
    "ok", "429", "500", "502", "503", "529", "400", "401", "404", "reset", "not_json",
    "bad_shape", "content_not_json", "schema_invalid", "truncated_stream", "stream_error",
)
SLOW_FAULTS = ("latency", "hang_before_headers", "hang_after_headers", "trickle")

_WORDS = ("alpha", "river", "stone", "quiet", "seven", "graph", "lemon", "north", "token", "cloud")


def words(min_size: int = 1, max_size: int = 12) -> st.SearchStrategy[str]:
    """Plain sentences of lowercase words: content no stage should find anything special in."""
    return st.lists(st.sampled_from(_WORDS), min_size=min_size, max_size=max_size).map(" ".join)


def texts() -> st.SearchStrategy[str]:
    """Any answer text: plain words, unicode, JSON-looking, empty."""
    return st.one_of(words(0), st.text(max_size=200), st.just('{"a": 1}'), st.just(""))


def messages(contents: st.SearchStrategy[str] | None = None) -> st.SearchStrategy[tuple[Message, ...]]:
    """A conversation: an optional system message, then alternating user/assistant, ending with user."""
    contents = contents if contents is not None else words()

    @st.composite
    def build(draw: st.DrawFn) -> tuple[Message, ...]:
        out: list[Message] = []
        if draw(st.booleans()):
            out.append(Message(role="system", content=draw(contents)))
        turns = draw(st.integers(0, 2))
        for _ in range(turns):
            out.append(Message(role="user", content=draw(contents)))
            out.append(Message(role="assistant", content=draw(contents)))
        out.append(Message(role="user", content=draw(contents)))
        return tuple(out)

    return build()


def requests(
    *,
    contents: st.SearchStrategy[str] | None = None,
    structured: bool | None = False,
    now: float = 1000.0,
    deadline: bool = True,
) -> st.SearchStrategy[LLMRequest]:
    """Requests with varied parameters; ``structured=None`` mixes plain and JSON Schema requests.

    ``now`` is the clock time the deadline is measured from (``FakeClock()`` starts at 1000).
    """
    schema = st.just({"type": "object", "properties": {"ok": {"type": "boolean"}}})
    schemas = {False: st.none(), True: schema, None: st.none() | schema}[structured]
    timeouts = st.floats(0.5, 300, allow_nan=False) if deadline else st.none()

    @st.composite
    def build(draw: st.DrawFn) -> LLMRequest:
        timeout = draw(timeouts)
        return LLMRequest(
            model=draw(st.none() | st.sampled_from(["gpt-4o-mini", "claude-3-5-haiku", "local"])),
            messages=draw(messages(contents)),
            temperature=draw(st.none() | st.floats(0, 2, allow_nan=False)),
            max_tokens=draw(st.none() | st.integers(1, 4096)),
            seed=draw(st.none() | st.integers(0, 2**31)),
            extra=draw(st.dictionaries(st.sampled_from(["user", "n"]), st.integers(0, 3), max_size=2)),
            output_schema=draw(schemas),
            timeout_s=timeout,
            deadline=None if timeout is None else now + timeout,
        )

    return build()


# -- content parts and tools --------------------------------------------------------------------

_PNG = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR"
_MEDIA = ("image/png", "image/jpeg", "image/gif", "image/webp")


def images(*, detail: bool = True) -> st.SearchStrategy[ImagePart]:
    """Images by https URL or by bytes (any media type); ``detail=False`` for Anthropic, which has none."""
    details = st.none() | st.sampled_from(["auto", "low", "high"]) if detail else st.none()
    by_url = st.builds(ImagePart, url=st.sampled_from(["https://example.com/a.png", "https://x.test/cat.jpg"]),
                       detail=details)
    by_data = st.builds(ImagePart, data=st.binary(max_size=64).map(lambda b: _PNG + b),
                        media_type=st.sampled_from(_MEDIA), detail=details)
    return by_url | by_data


def documents(*, by_url: bool = False) -> st.SearchStrategy[DocumentPart]:
    """PDF documents as bytes with a file name (``by_url=True``: also by URL, which OpenAI cannot send)."""
    data = st.builds(DocumentPart, data=st.binary(max_size=64).map(lambda b: b"%PDF-1.4\n" + b),
                     name=st.sampled_from(["report.pdf", "a b.pdf", "invoice-7.pdf"]))
    if not by_url:
        return data
    return data | st.builds(DocumentPart, url=st.just("https://example.com/doc.pdf"))


def raw_parts(provider: str) -> st.SearchStrategy[RawPart]:
    """Provider items llmchain does not model, for ``provider`` ("openai" or "anthropic")."""
    if provider == "openai":
        items = st.builds(lambda d: {"type": "input_audio", "input_audio": {"data": d, "format": "wav"}},
                          words(1, 2))
    else:
        items = st.builds(lambda t: {"type": "thinking", "thinking": t, "signature": "sig"}, words(1, 3))
    return st.builds(RawPart, provider=st.just(provider), data=items)


def tool_calls(max_size: int = 3) -> st.SearchStrategy[tuple[ToolCall, ...]]:
    """Calls with unique ids and JSON-object arguments (as providers send them)."""
    one = st.builds(lambda n, a: (n, json.dumps(a)), st.sampled_from(["get_weather", "lookup", "add"]),
                    st.dictionaries(words(1, 1), st.integers(0, 99) | words(1, 2), max_size=3))
    return st.lists(one, max_size=max_size).map(
        lambda calls: tuple(ToolCall(id=f"call_{i}", name=n, arguments=a) for i, (n, a) in enumerate(calls)))


def tools() -> st.SearchStrategy[tuple[Tool, ...]]:
    """Distinct tools with small object schemas."""
    schema = st.builds(lambda props: {"type": "object", "properties": {p: {"type": "string"} for p in props},
                                      "required": sorted(props)}, st.sets(words(1, 1), max_size=3))
    one = st.builds(Tool, name=st.sampled_from(["get_weather", "lookup", "add", "search"]),
                    description=words(0, 6), parameters=schema)
    return st.lists(one, max_size=3, unique_by=lambda t: t.name).map(tuple)


def rich_messages(provider: str) -> st.SearchStrategy[tuple[Message, ...]]:
    """A conversation using everything ``provider`` can carry: parts, raw items, tool calls and
    their results; every id unique. For round trips through that provider's wire format."""
    anthropic = provider == "anthropic"
    parts = st.one_of(st.builds(TextPart, text=words()), images(detail=not anthropic),
                      documents(by_url=anthropic), raw_parts(provider))
    user_content = st.one_of(words(), st.lists(parts, min_size=1, max_size=4).map(tuple))
    text_parts = st.lists(st.builds(TextPart, text=words()), min_size=1, max_size=2).map(tuple)

    @st.composite
    def build(draw: st.DrawFn) -> tuple[Message, ...]:
        out: list[Message] = []
        if draw(st.booleans()):
            out.append(Message(role="system", content=draw(words())))
        for turn in range(draw(st.integers(0, 2))):
            out.append(Message(role="user", content=draw(user_content)))
            calls = tuple(c.model_copy(update={"id": f"t{turn}_{c.id}"}) for c in draw(tool_calls()))
            answer = draw(words(0) if not calls else st.just("") | words())
            out.append(Message(role="assistant", content=answer, tool_calls=calls))
            for call in calls:
                rich = images(detail=False).map(lambda i: (i,)) if anthropic else text_parts
                result = draw(words() | rich)
                out.append(Message(role="tool", content=result, tool_call_id=call.id))
        out.append(Message(role="user", content=draw(user_content)))
        return tuple(out)

    return build()


def _json_values() -> st.SearchStrategy[Any]:
    leaves = st.none() | st.booleans() | st.integers(-(10**6), 10**6) | words(0, 3)
    return st.recursive(
        leaves, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(words(1, 1), inner, max_size=3),
        max_leaves=8,
    )


def responses(*, text: st.SearchStrategy[str] | None = None) -> st.SearchStrategy[LLMResponse]:
    """Provider answers with every field a stage could drop: usage, parsed, headers, notes."""
    return st.builds(
        LLMResponse,
        text=text if text is not None else texts(),
        parsed=st.none() | _json_values(),
        usage=st.builds(Usage, input_tokens=st.integers(0, 10**5), output_tokens=st.integers(0, 10**4)),
        model=st.none() | st.sampled_from(["gpt-4o-mini", "claude-3-5-haiku"]),
        finish_reason=st.sampled_from([None, "stop", "length", "tool_calls"]),
        headers=st.dictionaries(st.sampled_from(["x-request-id", "x-ratelimit-limit"]), words(1, 1)),
        served_by=st.none() | st.just("mock:mock-1"),
        notes=st.dictionaries(st.sampled_from(["inner", "source"]), _json_values(), max_size=2),
    )


def retryable_errors() -> st.SearchStrategy[CallError]:
    """Errors a retry should retry: resets, 429 (maybe with Retry-After), 5xx, 408."""
    retry_after = st.none() | st.floats(0, 120, allow_nan=False)
    return st.one_of(
        st.builds(TransportError, st.just("connection reset by peer")),
        st.builds(lambda s: RateLimited("429 Too Many Requests", retry_after=s), retry_after),
        st.builds(
            lambda code, s: ProviderError(f"HTTP {code}", status_code=code, retry_after=s),
            st.sampled_from([500, 502, 503, 504, 529, 408]), retry_after,
        ),
    )


def fatal_errors() -> st.SearchStrategy[CallError]:
    """Errors no stage should retry: 4xx client errors and unusable answers."""
    return st.one_of(
        st.builds(
            lambda code: ProviderError(f"HTTP {code}", status_code=code),
            st.sampled_from([400, 401, 403, 404, 422]),
        ),
        st.builds(lambda t: ParseError("the answer is not valid JSON", raw_text=t), words(0, 4)),
        st.just(OutputInvalid("the answer does not match the schema", errors=["ok: required"])),
    )


def timeout_errors() -> st.SearchStrategy[CallError]:
    """A timed-out attempt (retryable) or the whole call's deadline (not retryable)."""
    phases = st.sampled_from(["attempt", "deadline"])
    return st.builds(lambda phase: TimeoutExceeded(f"{phase} timed out", phase=phase), phases)


def outcomes(kinds: Sequence[str] = OUTCOME_KINDS) -> st.SearchStrategy[LLMResponse | CallError]:
    """One scripted outcome of the kinds asked for: an ``LLMResponse`` or a ``CallError``."""
    unknown = set(kinds) - set(OUTCOME_KINDS)
    if unknown or not kinds:
        raise ValueError(f"kinds must be a non-empty subset of {OUTCOME_KINDS}, got {list(kinds)}")
    table: dict[str, st.SearchStrategy[Any]] = {
        "success": responses(),
        "retryable": retryable_errors(),
        "fatal": fatal_errors(),
        "timeout": timeout_errors(),
    }
    return st.one_of(*(table[k] for k in kinds))


def outcome_scripts(
    kinds: Sequence[str] = OUTCOME_KINDS, *, min_size: int = 1, max_size: int = 6
) -> st.SearchStrategy[list[LLMResponse | CallError]]:
    """A sequence of outcomes, one per inward call."""
    return st.lists(outcomes(kinds), min_size=min_size, max_size=max_size)


def classify(outcome: object) -> str:
    """Which of ``OUTCOME_KINDS`` an outcome is (``success`` for a response)."""
    if isinstance(outcome, LLMResponse):
        return "success"
    if isinstance(outcome, TimeoutExceeded):
        return "timeout"
    if isinstance(outcome, CallError):
        return "retryable" if outcome.retryable else "fatal"
    raise TypeError(f"{outcome!r} is not an outcome")


def faults(kinds: Sequence[str] = FAST_FAULTS, *, max_delay_s: float = 0.2) -> st.SearchStrategy[str]:
    """One fault in the fault server's short form (``"503"``, ``"429:2"``, ``"latency:0.1"``...)."""
    delay = st.floats(0.01, max_delay_s, allow_nan=False).map(lambda s: f"{s:.2f}")

    def spell(kind: str) -> st.SearchStrategy[str]:
        if kind in ("429", "503", "529"):  # these may carry a Retry-After
            return st.just(kind) | st.integers(0, 5).map(lambda s: f"{kind}:{s}")
        if kind in SLOW_FAULTS:
            return delay.map(lambda s: f"{kind}:{s}")
        return st.just(kind)

    return st.one_of(*(spell(k) for k in kinds))


def fault_plans(
    kinds: Sequence[str] = FAST_FAULTS, *, max_script: int = 6, rates: bool = True, max_delay_s: float = 0.2
) -> st.SearchStrategy[FaultPlan]:
    """Fault-server plans: a script of faults, then ``ok`` mixed with seeded random faults."""
    fault = faults(kinds, max_delay_s=max_delay_s)

    @st.composite
    def build(draw: st.DrawFn) -> FaultPlan:
        script = draw(st.lists(fault, max_size=max_script))
        table: dict[str, float] = {}
        if rates:
            for name in draw(st.lists(fault, max_size=3, unique=True)):
                table[name] = draw(st.floats(0, 0.3, allow_nan=False))
        return FaultPlan(script, rates=table, seed=draw(st.integers(0, 2**16)))

    return build()
