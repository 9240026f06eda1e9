"""Secrets at rest: headers kept on errors and responses are redacted, and the files llmchain
creates (the SQLite cache, batch outputs) are 0600 whatever the umask (a stricter one wins)."""

from __future__ import annotations

import asyncio
import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from llmchain import Chain, LLMResponse, ProviderError
from llmchain.batch import run_batch
from llmchain.stores.cache_sqlite import SQLiteCacheStore
from llmchain.testing.fault_server import Fault, FaultServer
from tests.batch._util import write_jsonl

pytest_plugins = ["llmchain.testing.fixtures"]


@pytest.fixture
def umask() -> Iterator[None]:
    """The most permissive umask: any mode wider than 0600 would show."""
    old = os.umask(0)
    yield
    os.umask(old)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_provider_error_headers_are_redacted() -> None:
    err = ProviderError("boom", status_code=500, headers={
        "authorization": "Bearer sk-live-0123456789abcdef", "set-cookie": "session=abc123",
        "x-api-key": "anything-at-all", "x-request-id": "req_1", "x-echo": "key sk-live-0123456789abcdef"})
    assert err.headers["authorization"] == err.headers["set-cookie"] == err.headers["x-api-key"] == "[REDACTED]"
    assert err.headers["x-request-id"] == "req_1"
    assert "sk-live" not in repr(err.headers)


def test_secret_response_headers_are_never_kept(fault_server: FaultServer) -> None:
    secret_headers = {"set-cookie": "session=abc123", "authorization": "Bearer sk-live-0123456789abcdef",
                      "x-ratelimit-remaining-requests": "7"}
    fault_server.set_plan([Fault(headers=secret_headers), Fault("status", status=500, headers=secret_headers)])
    chain = Chain([], {"use": "openai", "base_url": fault_server.base_url, "api_key_env": ""})
    response = chain.complete("hi")
    assert isinstance(response, LLMResponse)
    assert response.headers["x-ratelimit-remaining-requests"] == "7"
    assert "set-cookie" not in response.headers and "authorization" not in response.headers
    with pytest.raises(ProviderError) as info:
        chain.complete("hi")
    chain.close()
    assert "sk-live" not in repr(info.value.headers) and "session=abc" not in repr(info.value.headers)


@pytest.mark.usefixtures("umask")
def test_the_sqlite_cache_file_is_created_0600(tmp_path: Path) -> None:
    store = SQLiteCacheStore(tmp_path / "cache.db")

    async def use() -> None:
        await store.set("key", '{"text": "a cached answer"}', None)
        await store.aclose()

    asyncio.run(use())
    created = [p for p in tmp_path.iterdir() if p.name.startswith("cache.db")]
    assert created and all(mode(p) == 0o600 for p in created), [(p.name, oct(mode(p))) for p in created]


def test_a_stricter_umask_is_respected(tmp_path: Path) -> None:
    old = os.umask(0o277)  # owner read-only: stricter than 0600
    try:
        asyncio.run(run_batch(write_jsonl(tmp_path / "in.jsonl", [{"id": "a", "prompt": "hi"}]),
                              tmp_path / "out.jsonl", Chain()))
    finally:
        os.umask(old)
    assert mode(tmp_path / "out.jsonl") == 0o400


@pytest.mark.usefixtures("umask")
@pytest.mark.parametrize("retry_failed", [False, True])
def test_batch_outputs_are_created_0600(tmp_path: Path, retry_failed: bool) -> None:
    inp = write_jsonl(tmp_path / "in.jsonl", [{"id": f"r{i}", "prompt": f"p{i}"} for i in range(3)])
    out = tmp_path / "out.jsonl"
    asyncio.run(run_batch(inp, out, Chain()))
    assert mode(out) == 0o600
    if retry_failed:  # the rewrite that drops failed records makes a new file
        with out.open("a") as f:
            f.write('{"id": "r9", "line": 9, "ok": false, "error": {"type": "X", "message": "m"}}\n')
        asyncio.run(run_batch(inp, out, Chain(), retry_failed=True))
        assert mode(out) == 0o600
