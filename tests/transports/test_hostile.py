"""Hostile servers, on every engine: answers that break HTTP or a client's memory get their one
documented typed outcome, idle keep-alive closes never fail a call, and the default chain
behaves the same whichever engine is chosen."""

from __future__ import annotations

import asyncio
import gzip
import json
from typing import Any

import pytest

from llmchain import Chain, LLMResponse, ProviderError, ResponseTooLarge, TransportError
from llmchain.testing.fault_server import Fault, FaultServer
from tests._wait import until

from .helpers import (
    ENGINE,
    ask,
    engine,  # noqa: F401 - a fixture, used through pytestmark
    make,
    send,
)

pytest_plugins = ["llmchain.testing.fixtures"]
pytestmark = pytest.mark.usefixtures("engine")

MALFORMED = ["conflicting_length", "bad_length", "bad_chunk"]


@pytest.mark.parametrize("fault", MALFORMED)
def test_broken_framing_is_a_malformed_response_never_retried(fault_server: FaultServer, fault: str) -> None:
    fault_server.set_plan([fault])
    err = send(make("openai", fault_server))
    assert type(err) is ProviderError and not err.retryable
    assert "malformed HTTP response" in err.message


def test_an_oversized_head_is_refused_at_the_head_cap(fault_server: FaultServer) -> None:
    fault_server.set_plan(["huge_head"])
    err = send(make("openai", fault_server))
    assert isinstance(err, ResponseTooLarge) and not err.retryable
    assert err.cap == "max_head_bytes" and "max_head_bytes" in err.message


def test_a_gzip_bomb_stops_at_the_decompressed_cap(fault_server: FaultServer) -> None:
    fault_server.set_plan(["gzip_bomb"])
    err = send(make("openai", fault_server))
    assert isinstance(err, ResponseTooLarge) and not err.retryable
    assert (err.cap, err.limit) == ("max_decompressed_bytes", 64 * 1024 * 1024)


def test_gzip_we_asked_for_is_decoded(fault_server: FaultServer) -> None:
    body = {"id": "x", "object": "chat.completion", "model": "m", "usage": {},
            "choices": [{"index": 0, "message": {"role": "assistant", "content": "zipped"},
                         "finish_reason": "stop"}]}
    fault_server.set_plan([Fault(raw=gzip.compress(json.dumps(body).encode()),
                                 headers={"content-encoding": "gzip"})])
    response = send(make("openai", fault_server))
    assert isinstance(response, LLMResponse) and response.text == "zipped"
    assert fault_server.requests[-1].headers["accept-encoding"] == "gzip, deflate"


def test_an_encoding_never_asked_for_is_not_decoded(fault_server: FaultServer) -> None:
    fault_server.set_plan(["unasked_encoding"])
    err = send(make("openai", fault_server))
    assert type(err) is ProviderError and not err.retryable and "'br'" in err.message


@pytest.mark.parametrize("streaming", [False, True])
def test_a_body_over_max_body_bytes_is_refused(fault_server: FaultServer, streaming: bool) -> None:
    t = make("openai", fault_server, max_body_bytes=2048)
    request = ask("x" * 4000)
    if streaming:
        async def go() -> BaseException | None:
            try:
                async for _ in t.stream(request):
                    pass
            except ResponseTooLarge as exc:
                return exc
            finally:
                await t.aclose()
            return None
        err: Any = asyncio.run(go())
    else:
        err = send(t, request)
    assert isinstance(err, ResponseTooLarge) and err.cap == "max_body_bytes" and err.limit == 2048


def test_a_request_on_a_connection_the_server_closed_is_resent_once(fault_server: FaultServer) -> None:
    fault_server.set_plan(["ok", "stale_close"])
    t = make("openai", fault_server)

    async def main() -> list[Any]:
        try:
            return [await t.send(ask("one")), await t.send(ask("two"))]
        finally:
            await t.aclose()

    first, second = asyncio.run(main())
    assert (first.text, second.text) == ("one", "two")
    assert [r.fault for r in fault_server.requests] == ["ok", "stale_close", "ok"]
    ids = [r.headers["idempotency-key"] for r in fault_server.requests]
    assert ids[1] == ids[2]  # the same request, safe to send again


def test_a_reset_on_a_fresh_connection_is_not_resent(fault_server: FaultServer) -> None:
    fault_server.set_plan(["reset"])
    err = send(make("openai", fault_server))
    assert isinstance(err, TransportError) and err.retryable
    assert fault_server.request_count == 1  # the retry stage decides, not the engine


def test_sync_calls_survive_the_server_closing_idle_connections(fault_server: FaultServer) -> None:
    chain = Chain([], make("openai", fault_server))
    for i in range(5):
        assert chain.complete(f"call {i}").text == f"call {i}"
        fault_server.close_idle()  # what uvicorn's 5 s keep-alive does between two calls
    chain.close()
    assert fault_server.request_count == 5


def test_a_stream_held_open_after_its_end_is_closed_when_the_reader_stops(fault_server: FaultServer) -> None:
    fault_server.set_plan([Fault("stream_hold_open", hang_s=30)])
    t = make("openai", fault_server)

    async def main() -> bytes:
        seen = b""
        payload = json.dumps(t.encode(ask(), True)).encode()
        async with t._pool.get().stream(payload, None) as answer:
            async for piece in answer.iter_chunks():
                seen += piece
                if b"[DONE]" in seen:
                    break  # the marker: the transport stops reading here
        # the engine closed the connection: the server sees it go
        await until(lambda: fault_server.open_connections == 0, "the server saw the connection close")
        await t.aclose()
        return seen

    assert b"[DONE]" in asyncio.run(main())
    assert fault_server.open_connections == 0


def test_the_default_chain_behaves_the_same_on_every_engine(fault_server: FaultServer) -> None:
    faults = [*MALFORMED, "huge_head", "gzip_bomb", "unasked_encoding", "reset", "503"]

    def outcomes(engine_name: str) -> list[tuple[str, bool, int, int]]:
        ENGINE["http_client"] = engine_name
        out = []
        for fault in faults:
            fault_server.clear()
            fault_server.set_plan([fault])
            chain = Chain(["retry"], make("openai", fault_server), timeout_s=10)
            try:
                chain.complete("hi")
                out.append(("ok", False, 1, fault_server.request_count))
            except Exception as exc:
                attempts = len(getattr(exc, "attempts", ()))
                out.append((type(exc).__name__, bool(getattr(exc, "retryable", False)), attempts,
                            fault_server.request_count))
            chain.close()
        return out

    aiohttp_run = outcomes("aiohttp")
    assert aiohttp_run == outcomes("httpx_client") == outcomes("httpx")
    assert dict(zip(faults, aiohttp_run, strict=True))["huge_head"][0] == "ResponseTooLarge"
