"""The shared HTTP layer: one session per event loop, closing, pool limits, connect failures,
cancellation and deadlines, and secrets kept out of reprs and errors."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from llmchain import Chain, ConfigError, LLMResponse, ProviderError, TimeoutExceeded, TransportError
from llmchain._loop import LOOP
from llmchain.plugins import get_registry
from llmchain.testing.fault_server import Fault, FaultServer
from llmchain.transports.anthropic import AnthropicTransport
from llmchain.transports.openai import OpenAITransport
from tests._wait import until

from .helpers import (
    ENGINE,
    ask,
    build,
    engine,  # noqa: F401 - a fixture, used through pytestmark
    make,
    send,
)

pytest_plugins = ["llmchain.testing.fixtures"]
pytestmark = pytest.mark.usefixtures("engine")


def complete_in_a_thread(chain: Chain, prompt: str) -> str | None:
    """``chain.complete(prompt)``'s text, called from a thread of its own (None if it failed)."""
    results: list[str] = []
    worker = threading.Thread(target=lambda: results.append(chain.complete(prompt).text))
    worker.start()
    worker.join(10)
    return results[0] if results else None


@pytest.fixture
def other_loop() -> Iterator[asyncio.AbstractEventLoop]:
    """An event loop running on another thread, as a second async caller would have."""
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    yield loop
    loop.call_soon_threadsafe(loop.stop)
    thread.join(5)
    loop.close()


def own_client_if_httpx() -> None:
    """Tests of one transport on several event loops (or of its pool size) use llmchain's own
    httpx client on the httpx run: a user's client belongs to one loop (see the next test)."""
    if ENGINE["http_client"] == "httpx_client":
        ENGINE["http_client"] = "httpx"


def test_a_users_client_used_on_a_second_loop_is_a_clear_error(
        fault_server: FaultServer, other_loop: asyncio.AbstractEventLoop) -> None:
    client = httpx.AsyncClient()
    t = OpenAITransport(OpenAITransport.Options(base_url=fault_server.base_url, api_key_env=""),
                        http_client=client)

    async def main() -> None:
        assert isinstance(await t.send(ask()), LLMResponse)
        future = asyncio.run_coroutine_threadsafe(t.send(ask()), other_loop)
        with pytest.raises(ConfigError, match="one event loop"):
            await asyncio.wrap_future(future)
        await t.aclose()
        assert not client.is_closed  # the user's client is the user's to close
        await client.aclose()

    asyncio.run(main())


def test_a_users_client_serves_sync_calls_from_every_thread(fault_server: FaultServer) -> None:
    """Every sync call runs on llmchain's one loop, so a user's client (bound to one loop) works
    for sync calls from the main thread, another thread and inside a running loop alike."""
    client = httpx.AsyncClient()
    t = OpenAITransport(OpenAITransport.Options(base_url=fault_server.base_url, api_key_env=""),
                        http_client=client)
    chain = Chain([], t)
    assert chain.complete("main").text == "main"
    assert complete_in_a_thread(chain, "worker") == "worker"

    async def notebook_cell() -> str:
        return chain.complete("cell").text

    assert asyncio.run(notebook_cell()) == "cell"
    chain.close()
    LOOP.run(client.aclose())


def test_both_transports_are_registered() -> None:
    transports = get_registry().transports
    assert transports["openai"].factory is OpenAITransport
    assert transports["anthropic"].factory is AnthropicTransport
    assert transports["openai"].plugin == "llmchain.transports.openai"


def test_name_and_identity_hold_no_secret(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-identity-secret-999")
    t = OpenAITransport()
    assert t.name == "openai:gpt-4o-mini"
    assert t.identity() == {"kind": "openai", "base_url": "https://api.openai.com/v1", "model": "gpt-4o-mini"}
    assert "sk-identity" not in repr(t) + repr(t.identity()) + repr(t.options)
    assert "api_key=[REDACTED]" in repr(t)
    assert "api_key=<none>" in repr(make("openai", FaultServer()))


def test_one_session_per_loop_and_aclose_closes_all(fault_server: FaultServer,
                                                    other_loop: asyncio.AbstractEventLoop) -> None:
    own_client_if_httpx()
    t = make("openai", fault_server)

    async def main() -> None:
        assert isinstance(await t.send(ask()), LLMResponse)
        mine = t._pool.get()
        assert t._pool.get() is mine  # reused, not one per call
        other = asyncio.run_coroutine_threadsafe(_send_and_session(t), other_loop).result(5)
        assert other is not mine and len(t._pool) == 2
        await t.aclose()
        assert mine.closed and other.closed and len(t._pool) == 0
        assert isinstance(await t.send(ask()), LLMResponse)  # a later call opens a new session
        await t.aclose()

    asyncio.run(main())


async def _send_and_session(t: OpenAITransport | AnthropicTransport) -> object:
    await t.send(ask())
    return t._pool.get()


async def _send_and_session_and_close(t: OpenAITransport | AnthropicTransport) -> None:
    await t.send(ask())
    assert len(t._pool) == 1
    await t.aclose()


def test_sessions_of_closed_loops_are_dropped(fault_server: FaultServer) -> None:
    own_client_if_httpx()
    t = make("anthropic", fault_server)
    loop = asyncio.new_event_loop()
    pool: Any = loop.run_until_complete(_send_and_session(t))
    loop.run_until_complete(pool.close())  # its connections, not the map entry
    loop.close()
    assert len(t._pool) == 1
    asyncio.run(_send_and_session_and_close(t))  # the entry of the closed loop goes
    assert len(t._pool) == 0


def test_sync_chain_and_async_callers_share_a_transport(fault_server: FaultServer) -> None:
    own_client_if_httpx()
    t = make("openai", fault_server)
    chain = Chain([], t)
    assert chain.complete("sync").text == "sync"
    assert complete_in_a_thread(chain, "from a thread") == "from a thread"
    assert len(t._pool) == 1  # every sync call runs on llmchain's one loop: one pool

    async def in_another_loop() -> str:
        assert chain.complete("sync inside a running loop").text == "sync inside a running loop"
        assert len(t._pool) == 1  # that one too
        text = (await chain.acomplete("async")).text
        assert len(t._pool) == 2  # this loop's own
        await chain.aclose()  # this loop's pool directly, llmchain's loop's on that loop
        return text

    assert asyncio.run(in_another_loop()) == "async"
    assert len(t._pool) == 0
    assert chain.complete("again").text == "again"
    chain.close()


def test_pool_limit_bounds_connections(make_fault_server: object) -> None:
    own_client_if_httpx()
    server: FaultServer = make_fault_server()  # type: ignore[operator]
    t = make("openai", server, max_connections=4)

    async def main() -> list[object]:
        try:
            return list(await asyncio.gather(*(t.send(ask(f"n{i}")) for i in range(60))))
        finally:
            await t.aclose()

    results = asyncio.run(main())
    assert all(isinstance(r, LLMResponse) for r in results)
    assert server.request_count == 60
    assert len({r.headers["x-request-id"] for r in results}) == 60  # type: ignore[attr-defined]
    assert len(server._conns) <= 4


def test_connection_refused_is_a_transport_error() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    t = build(OpenAITransport, base_url=f"http://127.0.0.1:{port}/v1", api_key_env="")
    err = send(t)
    assert type(err) is TransportError and err.retryable
    assert "cannot connect" in err.message and err.hint is not None and "reachable" in err.hint


def test_cancel_while_waiting_releases_the_request(fault_server: FaultServer) -> None:
    fault_server.set_plan([Fault("hang_before_headers", hang_s=10)])
    t = make("openai", fault_server)

    async def main() -> float:
        task = asyncio.create_task(t.send(ask()))
        await until(lambda: fault_server.request_count >= 1, "the request reached the server")
        t0 = time.monotonic()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        elapsed = time.monotonic() - t0
        assert isinstance(await t.send(ask()), LLMResponse)  # the pool still works
        await t.aclose()
        return elapsed

    assert asyncio.run(main()) < 5.0  # at once, not when the 10 s hang ends (no tighter bound: load)


@pytest.mark.parametrize("fault", [Fault("hang_before_headers", hang_s=5), Fault("hang_after_headers", hang_s=5),
                                   Fault("trickle", trickle_bytes=4, trickle_interval_s=0.05)])
def test_chain_deadline_bounds_hangs_and_trickles(fault_server: FaultServer, fault: Fault) -> None:
    fault_server.set_plan([fault])
    chain = Chain([], make("openai", fault_server), timeout_s=0.3)
    t0 = time.monotonic()
    with pytest.raises(TimeoutExceeded) as info:
        chain.complete("hello")
    assert time.monotonic() - t0 < 0.3 + 1.5  # not the 5 s hang (a loaded machine needs the margin)
    assert info.value.phase == "deadline"
    assert [a.outcome for a in info.value.attempts] == ["timeout"]
    chain.close()


def test_secrets_are_masked_in_errors(fault_server: FaultServer, monkeypatch: pytest.MonkeyPatch) -> None:
    secret = "tok-0123456789-very-secret"
    monkeypatch.setenv("MY_LLM_KEY", secret)
    monkeypatch.setenv("MY_GATEWAY_KEY", "gw-secret-abcdef-42")
    t = build(OpenAITransport, base_url=fault_server.base_url, api_key_env="MY_LLM_KEY",
              headers_env={"x-gateway-key": "MY_GATEWAY_KEY"}, headers={"x-team": "search"})
    fault_server.set_plan([Fault("status", status=401, message=f"bad key {secret} for gw-secret-abcdef-42")])
    err = send(t)
    assert isinstance(err, ProviderError) and err.status_code == 401
    text = err.explain() + repr(err) + str(err.body)
    assert secret not in text and "gw-secret" not in text and "[REDACTED]" in text
    assert err.hint is not None and "MY_LLM_KEY" in err.hint
    seen = fault_server.requests[-1].headers
    assert seen["authorization"] == f"Bearer {secret}"
    assert (seen["x-gateway-key"], seen["x-team"]) == ("gw-secret-abcdef-42", "search")
    assert seen["user-agent"].startswith("llmchain")


def test_an_empty_key_env_sends_no_auth_header(fault_server: FaultServer) -> None:
    assert isinstance(send(make("openai", fault_server)), LLMResponse)
    assert "authorization" not in fault_server.requests[-1].headers
    fault_server.set_plan(["401"])
    err = send(make("openai", fault_server))
    assert isinstance(err, ProviderError) and err.hint is not None and "set api_key_env" in err.hint


def test_the_request_id_is_the_idempotency_key(fault_server: FaultServer) -> None:
    request = ask()
    assert isinstance(send(make("openai", fault_server), request), LLMResponse)
    assert isinstance(send(make("anthropic", fault_server, idempotency_header=""), request), LLMResponse)
    first, second = fault_server.requests
    assert first.headers["idempotency-key"] == request.request_id
    assert "idempotency-key" not in second.headers
