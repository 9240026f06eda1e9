"""The sync facade: scripts, many threads, inside a running loop, all on llmchain's one loop,
driven by the calling threads; no loop or thread per call."""

from __future__ import annotations

import asyncio
import contextvars
import os
import signal
import socket
import sys
import threading
import time
from collections.abc import Iterator
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
    assert spy.loops == {id(LOOP.loop())}
    assert spy.threads == {threading.get_ident()}  # a lone caller drives the loop: no thread hop
    assert threading.active_count() == before  # and no thread is started for it


def test_sync_from_many_threads_at_once() -> None:
    spy = LoopSpy()
    chain = Chain([spy], MockTransport())
    with ThreadPoolExecutor(max_workers=16) as pool:
        texts = list(pool.map(lambda i: chain.complete(f"t{i}").text, range(200)))
    assert texts == [f"t{i}" for i in range(200)]
    assert len(spy.loops) == 1


def test_sync_inside_running_loop_like_jupyter() -> None:
    """The cell's loop is set aside while llmchain's runs, and is the running loop again after."""
    spy = LoopSpy()
    chain = Chain([spy], MockTransport())

    async def notebook_cell() -> str:
        outer = asyncio.get_running_loop()
        text = chain.complete("from a cell").text  # a blocking call inside a running loop
        assert asyncio.get_running_loop() is outer
        await asyncio.sleep(0)  # the cell's loop goes on as before
        return text

    assert asyncio.run(notebook_cell()) == "from a cell"
    assert spy.loops == {id(LOOP.loop())}


def test_sync_and_async_run_the_same_stages() -> None:
    spy = LoopSpy()
    chain = Chain([spy], MockTransport())
    chain.complete("a")

    async def main() -> str:
        return (await chain.acomplete("b")).text

    assert asyncio.run(main()) == "b"
    assert len(spy.loops) == 2  # llmchain's loop and asyncio.run's loop both ran the stage


def test_sync_errors_are_the_same_typed_errors() -> None:
    chain = Chain([], MockTransport.scripted(RateLimited("busy", retry_after=3)))
    with pytest.raises(RateLimited) as info:
        chain.complete("x")
    assert info.value.retry_after == 3


def test_sync_call_from_inside_a_stage_is_refused_clearly() -> None:
    """An async stage runs on the thread driving the loop; a sync call there would wait for
    itself."""
    refused: list[str] = []

    class CallsSync:
        async def handle(self, request: LLMRequest, call_next: Next) -> LLMResponse:
            if request.messages[-1].content == "outer":
                with pytest.raises(RuntimeError) as info:
                    chain.complete("deadlock?")
                refused.append(str(info.value))
            return await call_next(request)

    chain = Chain([CallsSync()], MockTransport())
    assert chain.complete("outer").text == "outer"
    worker = threading.Thread(target=chain.complete, args=("outer",))
    worker.start()
    worker.join(10)
    assert len(refused) == 2 and all("use `await chain.acomplete" in r for r in refused)


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
    assert spy.loops == {id(LOOP.loop())}


def test_a_close_that_happened_between_calls_is_seen_before_the_next_call_starts() -> None:
    """A peer's FIN that arrived while no thread drove the loop is processed before the next
    call's first step (so a pool drops the dead connection), not during it."""
    import select

    class Watch(asyncio.Protocol):
        transport: asyncio.BaseTransport | None = None
        lost = False

        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            self.transport = transport

        def connection_lost(self, exc: Exception | None) -> None:
            self.lost = True

        def closing(self) -> bool:  # what aiohttp's pool checks before reuse
            return self.lost or (self.transport is not None and self.transport.is_closing())

    listener = socket.create_server(("127.0.0.1", 0))
    try:
        async def connect() -> tuple[asyncio.BaseTransport, Watch]:
            return await asyncio.get_running_loop().create_connection(
                Watch, *listener.getsockname()[:2])

        transport, watch = LOOP.run(connect())
        peer, _ = listener.accept()
        peer.close()  # the server closes the idle connection while no call runs
        select.select([transport.get_extra_info("socket")], [], [], 5)  # the FIN has arrived
        assert not watch.closing()

        async def first_step_of_a_call() -> bool:
            return watch.closing()

        assert LOOP.run(first_step_of_a_call())
        transport.close()
    finally:
        listener.close()


def test_a_call_waiting_for_another_threads_call_and_the_loop_handed_over() -> None:
    """Calls from several threads run on the one loop at once: a call may wait for another
    thread's call (one loop: one asyncio.Event between them), and when the thread driving the
    loop is done, the loop is handed to a thread whose call still runs."""
    first, second = asyncio.Event(), asyncio.Event()
    a_runs = threading.Event()

    class Gates:
        async def handle(self, request: LLMRequest, call_next: Next) -> LLMResponse:
            prompt = request.messages[-1].content
            if prompt == "a":  # drives the loop, waits for b
                a_runs.set()
                await first.wait()
            elif prompt == "b":  # runs on a's drive of the loop; outlives a's call
                first.set()
                await second.wait()
            else:
                second.set()
            return await call_next(request)

    chain = Chain([Gates()], MockTransport())
    results: dict[str, str] = {}

    def call(prompt: str) -> None:
        results[prompt] = chain.complete(prompt).text

    a = threading.Thread(target=call, args=("a",))
    a.start()
    assert a_runs.wait(10)
    b = threading.Thread(target=call, args=("b",))
    b.start()
    a.join(10)
    assert results.get("a") == "a" and b.is_alive()  # b's call goes on, on the loop b now drives
    call("c")  # from the main thread: runs on b's drive of the loop, and lets b finish
    b.join(10)
    assert results == {"a": "a", "b": "b", "c": "c"}


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


class WaitsForCtrlC:
    """Blocks its call until Ctrl-C; says when the call runs and when it has unwound. The call
    prompted "release" ends the one prompted "held" (on the loop: one asyncio.Event)."""

    def __init__(self) -> None:
        self.running = threading.Event()
        self.unwound = threading.Event()
        self.holding = threading.Event()
        self.held = asyncio.Event()

    async def handle(self, request: LLMRequest, call_next: Next) -> LLMResponse:
        prompt = request.messages[-1].content
        if prompt == "release":
            self.held.set()
        elif prompt == "held":
            self.holding.set()
            await self.held.wait()
        elif prompt == "interrupted":
            try:
                self.running.set()
                await asyncio.Event().wait()
            finally:
                self.unwound.set()
        return await call_next(request)


def ctrl_c_when(running: threading.Event, *, in_select: bool = False,
                until: threading.Event | None = None) -> threading.Thread:
    """Sends SIGINT to the main thread once ``running`` is set, as Ctrl-C would; with
    ``in_select``, once the main thread also waits in the loop's selector (where a real Ctrl-C
    finds a waiting call; at any other bytecode, Python may raise it inside asyncio's own
    bookkeeping). Python drops a KeyboardInterrupt raised inside a finaliser the garbage
    collector happened to run, as it would drop a real Ctrl-C; so, given ``until``, the signal
    is sent again (a second press) while ``until`` is not set a few seconds later."""
    main = threading.main_thread().ident
    assert main is not None

    def selecting() -> bool:
        frame = sys._current_frames().get(main)
        return (frame is not None and frame.f_code.co_name == "select"
                and frame.f_code.co_filename.endswith("selectors.py"))

    def send() -> None:
        assert running.wait(10)
        for _ in range(5):
            deadline = time.monotonic() + 10
            while in_select and not selecting():  # polls a condition; orders nothing by time
                assert time.monotonic() < deadline, "the main thread never waited in the selector"
                time.sleep(0.0005)
            signal.pthread_kill(main, signal.SIGINT)
            if until is None or until.wait(5):
                return

    sender = threading.Thread(target=send)
    sender.start()
    return sender


@pytest.fixture
def sigint_raises() -> Iterator[None]:
    assert threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, previous)


@pytest.mark.skipif(not hasattr(signal, "pthread_kill"), reason="POSIX signals")
def test_ctrl_c_cancels_the_call_of_the_thread_driving_the_loop(sigint_raises: None) -> None:
    stage = WaitsForCtrlC()
    chain = Chain([stage], MockTransport())
    sender = ctrl_c_when(stage.running, in_select=True, until=stage.unwound)
    with pytest.raises(KeyboardInterrupt):
        chain.complete("interrupted")
    sender.join(10)
    assert stage.unwound.is_set()  # cancelled and unwound before Ctrl-C reached the caller
    assert chain.complete("after").text == "after"  # the loop is still usable


@pytest.mark.skipif(not hasattr(signal, "pthread_kill"), reason="POSIX signals")
def test_ctrl_c_cancels_the_call_of_a_thread_waiting_for_another_to_drive_the_loop(
        sigint_raises: None) -> None:
    stage = WaitsForCtrlC()
    chain = Chain([stage], MockTransport())
    driver = threading.Thread(target=chain.complete, args=("held",))  # drives the loop meanwhile
    driver.start()
    assert stage.holding.wait(10)
    sender = ctrl_c_when(stage.running, until=stage.unwound)
    with pytest.raises(KeyboardInterrupt):
        chain.complete("interrupted")  # runs on the driver's thread; the main thread waits
    sender.join(10)
    assert stage.unwound.is_set()
    assert driver.is_alive()  # the other thread's call was left alone
    assert chain.complete("release").text == "release"
    driver.join(10)
    assert not driver.is_alive()


@pytest.mark.skipif(not hasattr(os, "fork"), reason="POSIX fork")
def test_a_forked_child_gets_a_loop_of_its_own() -> None:
    spy = LoopSpy()
    chain = Chain([spy], MockTransport())
    chain.complete("parent")
    parent_loop = LOOP.loop()
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: no thread of the parent drives anything here
        ok = False
        try:
            ok = chain.complete("child").text == "child" and LOOP.loop() is not parent_loop
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



@pytest.mark.skipif(not hasattr(signal, "pthread_kill"), reason="POSIX signals")
def test_a_second_ctrl_c_stops_waiting_and_the_loop_is_never_handed_to_the_gone_thread(
        sigint_raises: None) -> None:
    """A call that ignores its cancellation: the second Ctrl-C leaves the wait at once, and the
    thread driving the loop later hands it on to nobody (not to the thread that left)."""
    cancelled = threading.Event()
    stage = WaitsForCtrlC()
    stuck = asyncio.Event()

    class Stubborn:
        async def handle(self, request: LLMRequest, call_next: Next) -> LLMResponse:
            if request.messages[-1].content == "stubborn":
                try:
                    stage.running.set()
                    await asyncio.Event().wait()
                except asyncio.CancelledError:
                    cancelled.set()
                    await stuck.wait()  # ignores its cancellation until released
            elif request.messages[-1].content == "release":
                stuck.set()
            return await call_next(request)

    chain = Chain([stage, Stubborn()], MockTransport())
    driver = threading.Thread(target=chain.complete, args=("held",))
    driver.start()
    assert stage.holding.wait(10)
    first, second = ctrl_c_when(stage.running, until=cancelled), ctrl_c_when(cancelled)
    with pytest.raises(KeyboardInterrupt):
        chain.complete("stubborn")
    first.join(10)
    second.join(10)
    assert chain.complete("release").text == "release"  # ends "held" and "stubborn"
    driver.join(10)
    assert not driver.is_alive()
    assert chain.complete("after").text == "after"  # the loop was not handed to a gone waiter
