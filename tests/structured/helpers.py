"""Small helpers shared by the structured-output tests: a scripted call_next, requests, models."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any, TypeVar

from pydantic import BaseModel

from llmchain import LLMRequest, LLMResponse, Message, Usage

T = TypeVar("T")


class Person(BaseModel):
    name: str
    age: int


class Address(BaseModel):
    city: str
    zip: str


class Customer(BaseModel):
    name: str
    addresses: list[Address]


PERSON_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {"name": {"type": "string"}, "age": {"type": "integer", "minimum": 0}},
    "required": ["name", "age"],
    "additionalProperties": False,
}


class Script:
    """A scripted ``call_next``: call *n* plays outcome *n* (the last one repeats).

    An outcome is a text, an LLMResponse, an exception instance (raised as is) or a callable
    of the request returning one of these. ``calls`` records every request seen.
    """

    def __init__(self, *outcomes: Any) -> None:
        self.outcomes = list(outcomes)
        self.calls: list[LLMRequest] = []

    async def __call__(self, request: LLMRequest) -> LLMResponse:
        self.calls.append(request)
        outcome = self.outcomes[min(len(self.calls), len(self.outcomes)) - 1]
        if callable(outcome) and not isinstance(outcome, (BaseException, LLMResponse)):
            outcome = outcome(request)
        if isinstance(outcome, BaseException):
            raise outcome
        if isinstance(outcome, str):
            return answer(outcome)
        assert isinstance(outcome, LLMResponse)
        return outcome


def answer(text: str, *, finish_reason: str = "stop", tokens: tuple[int, int] = (10, 5)) -> LLMResponse:
    return LLMResponse(text=text, finish_reason=finish_reason,
                       usage=Usage(input_tokens=tokens[0], output_tokens=tokens[1]))


def request(prompt: str = "Who is Al?", **params: Any) -> LLMRequest:
    return LLMRequest(messages=(Message(role="user", content=prompt),), **params)


def run(coro: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(coro)
