"""ScriptedNext: records what a stage sent, plays the script, honours deadlines like the chain."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from llmchain import LLMRequest, LLMResponse, Message, RateLimited, TimeoutExceeded, TransportError
from llmchain.testing import FakeClock
from llmchain.testing.scripted import Delay, Hang, ScriptedNext


def req(text: str = "hi", deadline: float | None = None) -> LLMRequest:
    return LLMRequest(messages=(Message(role="user", content=text),), deadline=deadline)


async def call_all(inner: ScriptedNext, n: int) -> list[Any]:
    out: list[Any] = []
    for i in range(n):
        try:
            out.append((await inner(req(f"m{i}"))).text)
        except Exception as exc:
            out.append(exc)
    return out


def test_plays_the_script_then_repeats_the_last_step(scripted_next: Any) -> None:
    error = TransportError("down")
    inner = scripted_next("a", LLMResponse(text="b"), error)
    got = asyncio.run(call_all(inner, 4))
    assert got[:2] == ["a", "b"]
    assert got[2] is error and got[3] is error  # raised as is: tests can check identity
    assert [r.messages[0].content for r in inner.calls] == ["m0", "m1", "m2", "m3"]
    assert inner.results == ["ok", "ok", "TransportError", "TransportError"]


def test_empty_script_echoes_and_callables_see_the_request() -> None:
    assert asyncio.run(call_all(ScriptedNext(), 1)) == ["m0"]
    inner = ScriptedNext(lambda r: r.messages[0].content.upper(), RateLimited)
    got = asyncio.run(call_all(inner, 2))
    assert got[0] == "M0" and isinstance(got[1], RateLimited)


def test_delays_advance_the_fake_clock_only(fake_clock: FakeClock) -> None:
    inner = ScriptedNext(Delay(2.5, "late"), "quick", clock=fake_clock)
    assert asyncio.run(call_all(inner, 2)) == ["late", "quick"]
    assert fake_clock.sleeps == [2.5]
    assert inner.times == [1000.0, 1002.5]


def test_deadline_is_enforced_like_the_innermost_end(fake_clock: FakeClock) -> None:
    inner = ScriptedNext(Delay(10, "never"), clock=fake_clock)

    async def main() -> None:
        with pytest.raises(TimeoutExceeded) as info:
            await inner(req(deadline=fake_clock.now() + 3))
        assert info.value.phase == "deadline"
        assert fake_clock.now() == pytest.approx(1003.0)  # waited only up to the deadline
        with pytest.raises(TimeoutExceeded):
            await inner(req(deadline=fake_clock.now() - 1))  # already passed: no wait at all

    asyncio.run(main())
    assert fake_clock.sleeps == [3.0]


def test_deadline_enforcement_can_be_switched_off(fake_clock: FakeClock) -> None:
    inner = ScriptedNext(Delay(10, "slow but allowed"), clock=fake_clock, enforce_deadline=False)
    response = asyncio.run(inner(req(deadline=fake_clock.now() + 3)))
    assert response.text == "slow but allowed" and fake_clock.sleeps == [10]


def test_hang_ends_only_by_cancellation() -> None:
    inner = ScriptedNext(Hang())

    async def main() -> None:
        task = asyncio.ensure_future(inner(req()))
        for _ in range(5):
            await asyncio.sleep(0)
        assert not task.done()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(main())
    assert inner.results == ["cancelled"]


def test_last_request_without_calls_is_a_clear_failure() -> None:
    with pytest.raises(AssertionError, match="never called"):
        ScriptedNext().last_request  # noqa: B018
