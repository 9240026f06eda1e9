"""The SSE decoder: events survive any split of the byte stream."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from llmchain.transports._sse import SSEDecoder

STREAM = (
    "event: message_start\r\ndata: {\"a\": 1}\r\n\r\n"
    ": a comment\n"
    "data: first line\ndata: second line\n\n"
    "event: ping\ndata: {\"type\": \"ping\"}\n\n"
    "data:no-space é ✓\n\n"
    "event: lonely\n\n"
).encode()
EXPECTED = [("message_start", '{"a": 1}'), (None, "first line\nsecond line"),
            ("ping", '{"type": "ping"}'), (None, "no-space é ✓")]


def test_whole_stream() -> None:
    decoder = SSEDecoder()
    assert decoder.feed(STREAM) == EXPECTED
    assert not decoder.pending


@given(st.lists(st.integers(0, len(STREAM)), max_size=12))
def test_any_split_gives_the_same_events(cuts: list[int]) -> None:
    decoder = SSEDecoder()
    points = sorted(set(cuts))
    events = []
    for start, end in zip([0, *points], [*points, len(STREAM)], strict=True):
        events += decoder.feed(STREAM[start:end])
    assert events == EXPECTED


def test_an_unfinished_event_is_pending() -> None:
    decoder = SSEDecoder()
    assert decoder.feed(b"data: {\"partial\": tr") == []
    assert decoder.pending
    decoder = SSEDecoder()
    assert decoder.feed(b"data: done\n") == []
    assert decoder.pending
