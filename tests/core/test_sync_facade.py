"""The sync facade: scripts, many threads, inside a running loop, all on llmchain's one loop
thread; no loop or thread per call."""

from __future__ import annotations

import asyncio
import contextvars
import os
import signal
import socket
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
    assert spy.threads != {threading.get_ident()}  # the loop thread ran them, not the caller
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


def test_every_sync_call_runs_on_the_one_loop_whatever_the_calling_thread() -> None:
    """Main thread, another thread, a thread whose loop is running (Jupyter): one loop, one
    thread, so loop-bound things (a transport's pool, a stage's asyncio primitives) are shared."""
    spy = LoopSpy()
    chain = Chain([spy], MockTransport())
    chain.complete("main")
    worker = threading.Thread(target=lambda: chain.complete("worker"))
    worker.start()
    worker.join(10)

    async def notebook_cell() -> None:
        chain.complete("cell")

    asyncio.run(notebook_cell())
    assert spy.loops == {id(LOOP.loop())} and spy.threads == {LOOP._ident}


def test_the_loop_sees_a_peer_close_an_idle_connection_with_no_call_running() -> None:
    """What a server's keep-alive timeout does between two calls is handled when it happens, so
    the pool never hands out the dead connection (no catch-up step before each call)."""
    lost = threading.Event()

    class Watch(asyncio.Protocol):
        def connection_lost(self, exc: Exception | None) -> None:
            lost.set()

    listener = socket.create_server(("127.0.0.1", 0))
    try:
        async def connect() -> asyncio.BaseTransport:
            transport, _ = await asyncio.get_running_loop().create_connection(
                Watch, *listener.getsockname()[:2])
            return transport

        transport = LOOP.run(connect())
        peer, _ = listener.accept()
        peer.close()  # the server closes the idle connection; no llmchain call runs after this
        assert lost.wait(10)
        assert transport.is_closing()
    finally:
        listener.close()


def test_a_sync_call_sees_the_callers_context_variables() -> None:
    """The call runs in a copy of the calling thread's context (as ``asyncio.run`` would), so a
    tracing span or request scope set around ``chain.complete`` reaches the stages."""
    scope: contextvars.ContextVar[str] = contextvars.ContextVar("scope", default="none")
    seen: list[str] = []

    class Reads:
        async def handle(self, request: LLMRequest, call_next: Next) -> LLMResponse:
            seen.append(scope.get())
            return await call_next(request)

    chain = Chain([Reads()], MockTransport())

    def call_in(value: str) -> None:
        scope.set(value)
        chain.complete("x")

    call_in("main")
    worker = threading.Thread(target=call_in, args=("worker",))
    worker.start()
    worker.join(10)
    assert seen == ["main", "worker"]


@pytest.mark.skipif(not hasattr(signal, "pthread_kill"), reason="POSIX signals")
def test_ctrl_c_in_the_waiting_thread_cancels_the_call_and_the_loop_stays_usable() -> None:
    assert threading.current_thread() is threading.main_thread()
    unwound = threading.Event()
    main = threading.main_thread().ident
    assert main is not None

    class WaitsForever:
        async def handle(self, request: LLMRequest, call_next: Next) -> LLMResponse:
            if request.messages[-1].content == "after":
                return await call_next(request)
            signal.pthread_kill(main, signal.SIGINT)  # Ctrl-C, delivered to the waiting thread
            try:
                await asyncio.Event().wait()
            finally:
                unwound.set()
            raise AssertionError("not reached")

    chain = Chain([WaitsForever()], MockTransport())
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        with pytest.raises(KeyboardInterrupt):
            chain.complete("before")
    finally:
        signal.signal(signal.SIGINT, previous)
    assert unwound.is_set()  # the stage was cancelled and unwound before Ctrl-C reached the caller
    assert chain.complete("after").text == "after"


@pytest.mark.skipif(not hasattr(os, "fork"), reason="POSIX fork")
def test_a_forked_child_gets_a_loop_of_its_own() -> None:
    spy = LoopSpy()
    chain = Chain([spy], MockTransport())
    chain.complete("parent")
    parent_loop = LOOP.loop()
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: the parent's loop thread was not copied
        ok = False
        try:
            ok = (chain.complete("child").text == "child" and LOOP.loop() is not parent_loop
                  and LOOP.loop().is_running())
        finally:
            os.write(write, b"ok" if ok else b"no")
            os._exit(0)
    os.close(write)
    try:
        answer = os.read(read, 2)
    finally:
        os.close(read)
        os.waitpid(pid, 0)
    assert answer == b"ok"
    assert chain.complete("parent again").text == "parent again" and LOOP.loop() is parent_loop

