"""The sync facade: scripts, many threads, inside a running loop; no loop or thread per call."""

from __future__ import annotations

import asyncio
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest

from llmchain import Chain, LLMRequest, LLMResponse, Next, RateLimited
from llmchain._loop import LOOP
from llmchain.testing import MockTransport


class LoopSpy:
    """Records which event loop and thread ran each call."""

    def __init__(self) -> None:
        self.loops: set[int] = set()
        self.threads: set[int] = set()

    async def handle(self, request: LLMRequest, call_next: Next) -> LLMResponse:
        self.loops.add(id(asyncio.get_running_loop()))
        self.threads.add(threading.get_ident())
        return await call_next(request)


def test_sync_calls_reuse_one_loop_and_thread() -> None:
    spy = LoopSpy()
    chain = Chain([spy], MockTransport())
    before = threading.active_count()
    for i in range(20):
        assert chain.complete(f"m{i}").text == f"m{i}"
    assert len(spy.loops) == 1 and len(spy.threads) == 1
    assert threading.active_count() <= before + 1  # at most the one loop thread, started once


def test_sync_from_many_threads_at_once() -> None:
    spy = LoopSpy()
    chain = Chain([spy], MockTransport())
    with ThreadPoolExecutor(max_workers=16) as pool:
        texts = list(pool.map(lambda i: chain.complete(f"t{i}").text, range(200)))
    assert texts == [f"t{i}" for i in range(200)]
    assert len(spy.loops) == 1


def test_sync_inside_running_loop_like_jupyter() -> None:
    chain = Chain([], MockTransport())

    async def notebook_cell() -> str:
        return chain.complete("from a cell").text  # a blocking call inside a running loop

    assert asyncio.run(notebook_cell()) == "from a cell"


def test_sync_and_async_run_the_same_stages() -> None:
    spy = LoopSpy()
    chain = Chain([spy], MockTransport())
    chain.complete("a")

    async def main() -> str:
        return (await chain.acomplete("b")).text

    assert asyncio.run(main()) == "b"
    assert len(spy.loops) == 2  # the background loop and asyncio.run's loop both ran the stage


def test_sync_errors_are_the_same_typed_errors() -> None:
    chain = Chain([], MockTransport.scripted(RateLimited("busy", retry_after=3)))
    with pytest.raises(RateLimited) as info:
        chain.complete("x")
    assert info.value.retry_after == 3


def test_sync_call_from_inside_the_loop_thread_is_refused_clearly() -> None:
    chain = Chain([], MockTransport())

    async def nested() -> None:
        chain.complete("deadlock?")

    future = asyncio.run_coroutine_threadsafe(nested(), LOOP.loop())
    with pytest.raises(RuntimeError, match=r"use `await chain\.acomplete"):
        future.result(timeout=10)


def test_the_main_threads_loop_sees_closes_that_happened_between_calls() -> None:
    """A peer's FIN that arrived while the loop was stopped is processed before the next call
    (so a pool drops the dead connection), not during it."""
    import select
    import socket

    from llmchain._loop import _caught_up

    class Watch(asyncio.Protocol):
        lost = False
        transport: asyncio.BaseTransport | None = None

        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            self.transport = transport

        def connection_lost(self, exc: Exception | None) -> None:
            self.lost = True

        def transport_closing(self) -> bool:  # what aiohttp's pool checks before reuse
            return self.lost or (self.transport is not None and self.transport.is_closing())

    loop = asyncio.new_event_loop()
    listener = socket.create_server(("127.0.0.1", 0))
    try:
        transport, watch = loop.run_until_complete(
            loop.create_connection(Watch, *listener.getsockname()[:2]))
        peer, _ = listener.accept()
        peer.close()  # the server closes the idle connection while no call runs
        select.select([transport.get_extra_info("socket")], [], [], 5)  # the FIN has arrived
        assert not watch.lost

        async def first_step_of_a_call() -> bool:
            return watch.transport_closing()

        assert loop.run_until_complete(_caught_up(first_step_of_a_call()))
    finally:
        listener.close()
        loop.close()
