"""The public stage contract: Stage, StageBase, StageOptions, functions as stages, optional clock."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from pydantic import ValidationError

import llmchain
from llmchain import (
    Chain,
    ConfigError,
    LLMRequest,
    LLMResponse,
    Next,
    Stage,
    StageBase,
    StageOptions,
    hookimpl,
)
from llmchain.stores import SharedStateOptions
from llmchain.testing.contract import check_middleware


async def exclaim(request: LLMRequest, call_next: Next) -> LLMResponse:
    response = await call_next(request)
    return response.model_copy(update={"text": response.text + "!"})


def test_a_plain_async_function_is_a_stage_in_code() -> None:
    chain = Chain([exclaim, exclaim], transport="mock")
    assert chain.complete("hi").text == "hi!!"
    assert [name for name, _ in chain.stages] == ["exclaim#0", "exclaim#1"]


def test_a_plain_sync_function_is_rejected_with_a_clear_error() -> None:
    def not_async(request: LLMRequest, call_next: Next) -> LLMResponse:
        raise AssertionError("never called")

    with pytest.raises(ConfigError, match=r"stages\[0\] is .*`async def stage\(request, call_next\)`"):
        Chain([not_async])


class OddlyNamedNext:
    """The core passes call_next positionally: the parameter's name is the stage's business."""

    async def handle(self, request: LLMRequest, inner: Next, /) -> LLMResponse:
        return await inner(request)


def test_call_next_is_passed_positionally() -> None:
    assert Chain([OddlyNamedNext()]).complete("x").text == "x"


class NoClock:
    class Options(StageOptions):
        suffix: str = ""  # the default does nothing (the contract's passthrough clause)

    def __init__(self, options: Options) -> None:  # no clock: it never waits
        self.options = options

    async def handle(self, request: LLMRequest, call_next: Next) -> LLMResponse:
        response = await call_next(request)
        return response.model_copy(update={"text": response.text + self.options.suffix})


class NoClockPlugin:
    @hookimpl
    def register_middleware(self, register: Callable[[str, Any], None]) -> None:
        register("no_clock", NoClock)


def test_the_clock_is_optional_for_a_registered_factory() -> None:
    chain = Chain.from_config({"stages": [{"use": "no_clock", "suffix": "??"}]}, plugins=[NoClockPlugin()])
    assert chain.complete("x").text == "x??"
    check_middleware(NoClock, examples=3)


def test_stage_options_are_frozen_and_strict() -> None:
    options = NoClock.Options()
    with pytest.raises(ValidationError):
        NoClock.Options(colour="red")  # type: ignore[call-arg]
    with pytest.raises(ValidationError):
        options.suffix = "!"  # type: ignore[misc]
    assert issubclass(SharedStateOptions, StageOptions)
    assert SharedStateOptions().store == "memory"


def test_one_protocol_old_names_kept() -> None:
    assert llmchain.Middleware is Stage and llmchain.StreamingStage is Stage
    assert isinstance(OddlyNamedNext(), Stage)


class Declared(StageBase):
    roles = frozenset({"cache"})
    needs_transport_identity = True
    closed = False

    async def handle(self, request: LLMRequest, call_next: Next) -> LLMResponse:
        seen = request.metadata.get("llmchain.transport")
        response = await call_next(request)
        return response.model_copy(update={"text": f"{response.text} {seen['kind']}"})

    async def aclose(self) -> None:
        self.closed = True


def test_declarations_are_read_from_the_stage() -> None:
    stage = Declared()
    with Chain([stage], transport="mock") as chain:
        assert chain.complete("x").text == "x mock"  # needs_transport_identity was honoured
    assert stage.closed  # aclose was called
    with pytest.warns(llmchain.OrderWarning, match="'cache' is inside 'retry'"):
        Chain(["retry", Declared()])  # its roles were read
