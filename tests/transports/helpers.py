"""Helpers shared by the transport tests (a module, not a conftest: the tests import it)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from typing import Any, TypeVar

import httpx
import pytest

from llmchain import CallError, LLMRequest, LLMResponse, Message
from llmchain.testing.fault_server import FaultServer
from llmchain.transports._http import HTTPTransport
from llmchain.transports.anthropic import AnthropicTransport
from llmchain.transports.openai import OpenAITransport

T = TypeVar("T", bound=HTTPTransport)

SCHEMA = {"title": "Person", "type": "object",
          "properties": {"name": {"type": "string"}, "age": {"type": "integer"}},
          "required": ["name", "age"]}


#: The HTTP engine ``make`` uses unless told; the ``engine`` fixture switches it per test.
ENGINE: dict[str, str] = {"http_client": "aiohttp"}


@pytest.fixture(params=["aiohttp", "httpx_client"])
def engine(request: pytest.FixtureRequest) -> Iterator[str]:
    """Run the test once per HTTP engine (use with ``pytestmark = usefixtures("engine")``):
    aiohttp (the default), and httpx through a user's own ``httpx.AsyncClient``."""
    ENGINE["http_client"] = request.param
    yield request.param
    ENGINE["http_client"] = "aiohttp"


def build(cls: type[T], **options: Any) -> T:
    """``cls(cls.Options(**options))`` on the engine the ``engine`` fixture chose."""
    options = {**ENGINE, **options}
    client = None
    if options["http_client"] == "httpx_client":  # the user's own client, as the SDKs take one
        options["http_client"] = "aiohttp"
        client = httpx.AsyncClient()
    return cls(cls.Options(**options), http_client=client)  # type: ignore[call-arg]


def make(kind: str, server: FaultServer, **options: Any) -> HTTPTransport:
    """A transport of ``kind`` ("openai"/"anthropic") pointed at ``server``, without a key."""
    if kind == "openai":
        return build(OpenAITransport, base_url=server.base_url, api_key_env="", model="gpt-test", **options)
    return build(AnthropicTransport, base_url=server.anthropic_base_url, api_key_env="",
                 model="claude-test", **options)


def ask(text: str = "hello there", **params: Any) -> LLMRequest:
    return LLMRequest(messages=(Message(role="system", content="be brief"),
                                Message(role="user", content=text)), **params)


def send(transport: HTTPTransport, request: LLMRequest | None = None) -> LLMResponse | CallError:
    """One ``send`` on a fresh loop; returns the response or the typed error raised."""
    async def go() -> LLMResponse | CallError:
        try:
            return await transport.send(request or ask())
        except CallError as exc:
            return exc
        finally:
            await transport.aclose()
    return asyncio.run(go())


def stream(transport: HTTPTransport, request: LLMRequest | None = None) -> tuple[list[Any], CallError | None]:
    """Everything ``stream`` yielded (chunks, then the response) and the error that ended it."""
    async def go() -> tuple[list[Any], CallError | None]:
        items: list[Any] = []
        gen: AsyncIterator[Any] = transport.stream(request or ask("a longer answer, streamed in pieces"))
        try:
            async for item in gen:
                items.append(item)
        except CallError as exc:
            return items, exc
        finally:
            await transport.aclose()
        return items, None
    return asyncio.run(go())
