"""Every fault of the fault server, met by both transports, is the right typed error with the
right attributes (or, for bad answer content, a normal response carrying that content)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from llmchain import LLMResponse, ProviderError, RateLimited, TimeoutExceeded, TransportError
from llmchain.testing.fault_server import Fault, FaultServer

from .helpers import (
    SCHEMA,
    ask,
    engine,  # noqa: F401 - a fixture, used through pytestmark
    make,
    send,
    stream,
)

pytest_plugins = ["llmchain.testing.fixtures"]
pytestmark = pytest.mark.usefixtures("engine")
KINDS = ["openai", "anthropic"]


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize(("fault", "cls", "status", "retryable"), [
    ("429:2", RateLimited, 429, True),
    ("500", ProviderError, 500, True),
    ("502", ProviderError, 502, True),
    ("503", ProviderError, 503, True),
    ("529", ProviderError, 529, True),
    ("400", ProviderError, 400, False),
    ("401", ProviderError, 401, False),
    ("404", ProviderError, 404, False),
    ("422", ProviderError, 422, False),
    ("not_json", ProviderError, 200, False),
    ("bad_shape", ProviderError, 200, False),
    ("reset", TransportError, None, True),
    ("truncated_stream", TransportError, None, True),
])
def test_fault_becomes_typed_error(fault_server: FaultServer, kind: str, fault: str,
                                   cls: type[Exception], status: int | None, retryable: bool) -> None:
    fault_server.set_plan([fault])
    err = send(make(kind, fault_server))
    assert type(err) is cls, err
    assert isinstance(err, (ProviderError, TransportError))
    assert err.status_code == status
    assert err.retryable is retryable
    assert err.message.startswith(f"{kind}:")


@pytest.mark.parametrize("kind", KINDS)
def test_rate_limited_attributes(fault_server: FaultServer, kind: str) -> None:
    fault_server.set_plan(["429:2"])
    err = send(make(kind, fault_server))
    assert isinstance(err, RateLimited)
    assert err.retry_after == 2.0
    assert err.rate_limit is not None and err.rate_limit.remaining_requests == 0
    assert err.rate_limit.reset_requests_s is not None and 0 < err.rate_limit.reset_requests_s <= 3
    assert err.hint is not None and "rate" in err.hint


@pytest.mark.parametrize("kind", KINDS)
def test_malformed_bodies_keep_an_excerpt(fault_server: FaultServer, kind: str) -> None:
    fault_server.set_plan(["not_json", "bad_shape"])
    err = send(make(kind, fault_server))
    assert isinstance(err, ProviderError) and "not JSON" in err.message
    assert err.body is not None and err.body.startswith("<html>")
    err = send(make(kind, fault_server))
    assert isinstance(err, ProviderError) and "wrong shape" in err.message
    assert err.body is not None and "not a completion" in err.body


@pytest.mark.parametrize("kind", KINDS)
def test_overloaded_when_not_streaming(fault_server: FaultServer, kind: str) -> None:
    fault_server.set_plan(["stream_error"])
    err = send(make(kind, fault_server))
    assert isinstance(err, ProviderError) and err.retryable
    assert err.status_code == (529 if kind == "anthropic" else 503)


@pytest.mark.parametrize("kind", KINDS)
def test_x_should_retry_and_http_date(fault_server: FaultServer, kind: str) -> None:
    fault_server.set_plan([Fault("status", status=503, headers={"x-should-retry": "false"}),
                           Fault("status", status=503, retry_after="Wed, 21 Oct 2015 07:28:00 GMT")])
    assert send(make(kind, fault_server)).retryable is False  # type: ignore[union-attr]
    err = send(make(kind, fault_server))
    assert isinstance(err, ProviderError) and err.retryable and err.retry_after == 0.0


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("fault", ["hang_before_headers", "hang_after_headers"])
def test_hangs_hit_the_read_timeout(fault_server: FaultServer, kind: str, fault: str) -> None:
    fault_server.set_plan([Fault(fault, hang_s=5)])  # type: ignore[arg-type]
    err = send(make(kind, fault_server, read_timeout_s=0.2))
    assert isinstance(err, TimeoutExceeded)
    assert err.phase == "attempt" and err.retryable
    assert "0.2s" in err.message


@pytest.mark.parametrize("kind", KINDS)
def test_a_trickle_is_slow_but_fine(fault_server: FaultServer, kind: str) -> None:
    fault_server.set_plan([Fault("trickle", trickle_bytes=100, trickle_interval_s=0.01)])
    response = send(make(kind, fault_server, read_timeout_s=0.5))
    assert isinstance(response, LLMResponse) and response.text == "hello there"


@pytest.mark.parametrize("kind", KINDS)
def test_bad_answer_content_is_returned_as_is(fault_server: FaultServer, kind: str) -> None:
    import jsonschema

    fault_server.set_plan(["content_not_json", "schema_invalid", "latency:0.05"])
    request = ask(output_schema=SCHEMA)
    response = send(make(kind, fault_server), request)
    assert isinstance(response, LLMResponse)
    with pytest.raises(json.JSONDecodeError):
        json.loads(response.text)
    response = send(make(kind, fault_server), request)
    assert isinstance(response, LLMResponse)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(json.loads(response.text), SCHEMA)
    response = send(make(kind, fault_server), request)
    assert isinstance(response, LLMResponse)
    jsonschema.validate(json.loads(response.text), SCHEMA)


# -- streams ---------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
def test_stream_ok(fault_server: FaultServer, kind: str) -> None:
    items, err = stream(make(kind, fault_server))
    assert err is None
    *chunks, final = items
    assert len(chunks) > 1 and all(isinstance(c, str) for c in chunks)
    assert isinstance(final, LLMResponse)
    assert "".join(chunks) == final.text == "a longer answer, streamed in pieces"
    assert final.finish_reason == "stop"
    assert final.usage.input_tokens > 0 and final.usage.output_tokens > 0
    assert final.model == ("gpt-test" if kind == "openai" else "claude-test")


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize(("fault", "cls", "status", "retryable", "chunks"), [
    ("429", RateLimited, 429, True, 0),
    ("503", ProviderError, 503, True, 0),
    ("401", ProviderError, 401, False, 0),
    ("not_json", ProviderError, 200, False, 0),
    ("bad_shape", ProviderError, 200, False, 0),
    ("reset", TransportError, None, True, 0),
    (Fault("truncated_stream", after_events=4), TransportError, None, True, 1),
    (Fault("stream_error", after_events=4), ProviderError, "event", True, 1),
])
def test_stream_faults(fault_server: FaultServer, kind: str, fault: Any, cls: type[Exception],
                       status: Any, retryable: bool, chunks: int) -> None:
    fault_server.set_plan([fault])
    items, err = stream(make(kind, fault_server))
    assert type(err) is cls, (items, err)
    assert isinstance(err, (ProviderError, TransportError))
    if status == "event":  # an error event in a 200 stream: overloaded / server error
        assert err.status_code == (529 if kind == "anthropic" else 500)
        assert "error event" in err.message
    else:
        assert err.status_code == status
    assert err.retryable is retryable
    assert len(items) >= chunks and all(isinstance(i, str) for i in items)


@pytest.mark.parametrize("kind", KINDS)
def test_stream_cut_cleanly_before_the_end(fault_server: FaultServer, kind: str) -> None:
    """A stream whose body ends properly but without the final event is still incomplete."""
    if kind == "openai":
        body = (b'data: {"model":"m","choices":[{"index":0,"delta":{"content":"Hel"},'
                b'"finish_reason":null}]}\n\n')
    else:
        body = (b'event: message_start\ndata: {"type":"message_start","message":{"model":"m",'
                b'"usage":{"input_tokens":3,"output_tokens":1}}}\n\n')
    fault_server.set_plan([Fault(raw=body, content_type="text/event-stream")])
    _, err = stream(make(kind, fault_server))
    assert isinstance(err, TransportError) and "ended before" in err.message


@pytest.mark.parametrize("kind", KINDS)
def test_stream_hang_after_headers_hits_the_read_timeout(fault_server: FaultServer, kind: str) -> None:
    fault_server.set_plan([Fault("hang_after_headers", hang_s=5)])
    items, err = stream(make(kind, fault_server, read_timeout_s=0.2))
    assert items == [] and isinstance(err, TimeoutExceeded) and "mid-stream" in err.message


@pytest.mark.parametrize("kind", KINDS)
def test_stream_structured(fault_server: FaultServer, kind: str) -> None:
    items, err = stream(make(kind, fault_server), ask(output_schema=SCHEMA))
    assert err is None
    *chunks, final = items
    assert json.loads("".join(chunks)) == json.loads(final.text) == {"name": "text", "age": 1}
