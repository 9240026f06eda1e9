"""TLS and proxies on every engine: CA bundles, client certificates, verify=false (loudly), a
certificate failure that is not retried and says how to fix it; proxy variables honoured by
default, the opt-out, and explicit proxies (or a clear error where an engine cannot honour one)."""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from llmchain import CertificateError, Chain, ConfigError, LLMResponse, TransportError
from llmchain.testing.fault_server import FaultServer
from llmchain.transports.openai import OpenAITransport

from .certs import Certs, make_certs
from .helpers import ENGINE, ask, build, engine, send  # noqa: F401 - engine: a fixture

pytest_plugins = ["llmchain.testing.fixtures"]
REMOTE = "http://llm.invalid.test/v1"  # never resolves: reached only through the proxy


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certs:
    return make_certs(tmp_path_factory.mktemp("certs"))


@pytest.fixture(params=["aiohttp", "httpx"])
def own_engine(request: pytest.FixtureRequest) -> Iterator[str]:
    """The engines llmchain builds itself (TLS options configure them)."""
    ENGINE["http_client"] = request.param
    yield request.param
    ENGINE["http_client"] = "aiohttp"


@pytest.fixture
def tls_server(certs: Certs) -> Iterator[FaultServer]:
    with FaultServer(ssl_context=certs.server_context()) as server:
        yield server


@pytest.mark.usefixtures("own_engine")
def test_an_untrusted_certificate_is_not_retried_and_says_how_to_fix(tls_server: FaultServer) -> None:
    chain = Chain(["retry"], build(OpenAITransport, base_url=tls_server.base_url, api_key_env=""))
    with pytest.raises(CertificateError) as info:
        chain.complete("hi")
    chain.close()
    err = info.value
    assert not err.retryable and len(err.attempts) == 1
    assert err.hint is not None and "ca_bundle" in err.hint
    assert tls_server.request_count == 0


@pytest.mark.usefixtures("own_engine")
def test_a_ca_bundle_makes_a_private_ca_trusted(tls_server: FaultServer, certs: Certs) -> None:
    t = build(OpenAITransport, base_url=tls_server.base_url, api_key_env="", ca_bundle=str(certs.ca))
    response = send(t)
    assert isinstance(response, LLMResponse) and response.text == "hello there"


@pytest.mark.usefixtures("own_engine")
def test_verify_false_works_but_warns_loudly(tls_server: FaultServer) -> None:
    with pytest.warns(UserWarning, match="verify = false: TLS certificates are NOT checked"):
        t = build(OpenAITransport, base_url=tls_server.base_url, api_key_env="", verify=False)
    assert isinstance(send(t), LLMResponse)


@pytest.mark.usefixtures("own_engine")
def test_a_client_certificate_for_mutual_tls(certs: Certs) -> None:
    with FaultServer(ssl_context=certs.server_context(require_client_cert=True)) as server:
        without = send(build(OpenAITransport, base_url=server.base_url, api_key_env="", ca_bundle=str(certs.ca)))
        assert isinstance(without, TransportError)
        with_cert = send(build(OpenAITransport, base_url=server.base_url, api_key_env="",
                               ca_bundle=str(certs.ca), client_cert=str(certs.client_cert),
                               client_key=str(certs.client_key)))
        assert isinstance(with_cert, LLMResponse)
        assert server.request_count == 1


def test_tls_files_that_cannot_be_loaded_fail_the_build(tmp_path: Path, certs: Certs) -> None:
    with pytest.raises(ConfigError, match=r"ca_bundle .* is not a readable file"):
        Chain([], {"use": "openai", "api_key_env": "", "ca_bundle": str(tmp_path / "nope.pem")})
    (tmp_path / "bad.pem").write_text("not a certificate")
    with pytest.raises(ConfigError, match="cannot load the TLS files"):
        Chain([], {"use": "openai", "api_key_env": "", "ca_bundle": str(tmp_path / "bad.pem")})
    with pytest.raises(ConfigError, match="client_key is set without client_cert"):
        Chain([], {"use": "openai", "api_key_env": "", "client_key": str(certs.client_key)})


def test_a_users_client_brings_its_own_certificates(tls_server: FaultServer, certs: Certs) -> None:
    context = ssl.create_default_context(cafile=str(certs.ca))
    client = httpx.AsyncClient(verify=context)
    t = OpenAITransport(OpenAITransport.Options(base_url=tls_server.base_url, api_key_env=""), http_client=client)
    assert isinstance(send(t), LLMResponse)
    with pytest.raises(ConfigError, match=r"set them on the client"):
        OpenAITransport(OpenAITransport.Options(api_key_env="", ca_bundle=str(certs.ca)), http_client=client)


def test_a_users_client_event_hooks_and_mounts_are_used(fault_server: FaultServer) -> None:
    seen: list[str] = []

    async def hook(request: httpx.Request) -> None:
        seen.append(request.headers["idempotency-key"])

    async def main() -> None:
        client = httpx.AsyncClient(event_hooks={"request": [hook]}, headers={"x-from-client": "yes"})
        t = OpenAITransport(OpenAITransport.Options(base_url=fault_server.base_url, api_key_env=""),
                            http_client=client)
        request = ask()
        assert isinstance(await t.send(request), LLMResponse)
        assert seen == [request.request_id]
        await t.aclose()
        await client.aclose()

    asyncio.run(main())
    assert fault_server.requests[-1].headers["x-from-client"] == "yes"


def test_a_users_client_mounts_are_used() -> None:
    seen: list[str] = []

    def provider(request: httpx.Request) -> httpx.Response:
        seen.append(str(request.url))
        return httpx.Response(200, json={
            "model": "m", "usage": {"prompt_tokens": 3, "completion_tokens": 1},
            "choices": [{"index": 0, "message": {"role": "assistant", "content": "from the mount"},
                         "finish_reason": "stop"}]})

    client = httpx.AsyncClient(mounts={"https://llm.internal.test": httpx.MockTransport(provider)})
    t = OpenAITransport(OpenAITransport.Options(base_url="https://llm.internal.test/v1", api_key_env=""),
                        http_client=client)
    response = send(t)
    assert isinstance(response, LLMResponse) and response.text == "from the mount"
    assert seen == ["https://llm.internal.test/v1/chat/completions"]


# -- proxies ----------------------------------------------------------------------------------

@pytest.mark.usefixtures("engine")
def test_proxy_variables_are_honoured_by_default(fault_server: FaultServer, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HTTP_PROXY", fault_server.url)  # the fault server answers as the proxy
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    response = send(build(OpenAITransport, base_url=REMOTE, api_key_env=""))
    assert isinstance(response, LLMResponse)
    assert fault_server.requests[-1].path == REMOTE + "/chat/completions"  # absolute form: via a proxy


@pytest.mark.usefixtures("own_engine")
def test_no_proxy_and_trust_env_false_opt_out(fault_server: FaultServer, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HTTP_PROXY", fault_server.url)
    assert isinstance(send(build(OpenAITransport, base_url=REMOTE, api_key_env="", trust_env=False)),
                      TransportError)
    monkeypatch.setenv("NO_PROXY", "llm.invalid.test")
    assert isinstance(send(build(OpenAITransport, base_url=REMOTE, api_key_env="")), TransportError)
    assert fault_server.request_count == 0


@pytest.mark.usefixtures("own_engine")
def test_an_explicit_proxy_works_on_every_engine(fault_server: FaultServer, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("HTTP_PROXY", raising=False)
    response = send(build(OpenAITransport, base_url=REMOTE, api_key_env="", proxy=fault_server.url))
    assert isinstance(response, LLMResponse)
    assert fault_server.requests[-1].path == REMOTE + "/chat/completions"


def test_proxies_an_engine_cannot_honour_fail_the_build(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ConfigError, match="proxy"):
        Chain([], {"use": "openai", "api_key_env": "", "proxy": "socks5://127.0.0.1:1080"})
    with pytest.raises(ConfigError, match="set them on the client"):
        OpenAITransport(OpenAITransport.Options(api_key_env="", proxy="http://127.0.0.1:3128"),
                        http_client=httpx.AsyncClient())
    monkeypatch.setenv("HTTPS_PROXY", "socks5://127.0.0.1:1080")
    with pytest.raises(ConfigError, match="uses socks5://, which the aiohttp engine cannot use"):
        Chain([], {"use": "openai", "api_key_env": ""})
