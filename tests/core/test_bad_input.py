"""Bad input gets a clear error naming what was wrong, never a traceback: one test per item of
issue 15's list (config files, check-config, call arguments), and outgoing values that could
split an HTTP request are refused with the field named."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from llmchain import Chain, ConfigError, InputTypeError, LLMRequest, LLMResponse, Message
from llmchain.cli import main
from llmchain.testing import MockTransport
from llmchain.testing.fault_server import FaultServer
from llmchain.transports.openai import OpenAITransport

pytest_plugins = ["llmchain.testing.fixtures"]


def check_config(tmp_path: Path, text: str | bytes, capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    path = tmp_path / "llmchain.toml"
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    code = main(["check-config", str(path)])
    return code, capsys.readouterr().err


def test_a_config_file_that_is_not_utf8_exits_2_naming_the_file(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, err = check_config(tmp_path, b'timeout_s = 5\n# caf\xe9 latin-1\n', capsys)
    assert code == 2
    assert "llmchain.toml" in err and "not UTF-8" in err and "0xe9" in err
    assert "Traceback" not in err


@pytest.mark.parametrize("url", ["api.openai.com/v1", "ftp://example.com/v1", "http://", "http://h:99999/v1",
                                 "http://example.com/v1\r\nX-Injected: yes"])
def test_check_config_catches_a_bad_base_url(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                             url: str) -> None:
    code, err = check_config(tmp_path, f'[transport]\nuse = "openai"\napi_key_env = ""\nbase_url = {url!r}\n'
                             .replace("\r\n", "\\r\\n"), capsys)
    assert code == 2 and "base_url" in err


@pytest.mark.parametrize(("text", "field"), [
    ("timeout_s = nan\n", "timeout_s"),
    ("timeout_s = inf\n", "timeout_s"),
    ('[transport]\nuse = "openai"\napi_key_env = ""\nconnect_timeout_s = inf\n', "connect_timeout_s"),
    ('[[stages]]\nuse = "retry"\nbase_s = nan\n', "base_s"),
])
def test_check_config_catches_nan_and_infinite_numbers(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                       text: str, field: str) -> None:
    code, err = check_config(tmp_path, text, capsys)
    assert code == 2 and field in err and "finite" in err


def test_the_removed_h1_engine_is_a_config_error_saying_what_to_use(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, err = check_config(tmp_path, '[transport]\nuse = "openai"\napi_key_env = ""\nhttp_client = "h1"\n',
                             capsys)
    assert code == 2 and "http_client" in err and '"aiohttp"' in err and '"httpx"' in err


@pytest.mark.parametrize("prompt", [None, 42, b"bytes", 4.2])
def test_a_prompt_of_the_wrong_type_is_an_input_type_error(prompt: Any) -> None:
    chain = Chain([], MockTransport())
    with pytest.raises(InputTypeError, match="prompt must be a str") as info:
        chain.complete(prompt)
    assert isinstance(info.value, TypeError) and isinstance(info.value, ConfigError)


def test_a_schema_that_is_neither_a_model_nor_a_dict_is_an_input_type_error() -> None:
    chain = Chain([], MockTransport())
    with pytest.raises(InputTypeError, match="schema must be a pydantic model class or a JSON Schema dict"):
        chain.complete_json("hi", schema=int)  # type: ignore[arg-type]


@pytest.mark.parametrize("value", [0, -1, float("nan"), float("inf")])
def test_a_per_call_timeout_that_cannot_work_is_refused(value: float) -> None:
    chain = Chain([], MockTransport())
    with pytest.raises(ConfigError, match="timeout_s must be a finite number of seconds > 0"):
        chain.complete("hi", timeout_s=value)
    with pytest.raises(InputTypeError, match="timeout_s must be a number"):
        chain.complete("hi", timeout_s="5")


def test_an_empty_message_list_is_refused_before_sending(fault_server: FaultServer) -> None:
    chain = Chain([], {"use": "openai", "base_url": fault_server.base_url, "api_key_env": ""})
    with pytest.raises(ConfigError, match="empty list of messages"):
        chain.complete([])
    with pytest.raises(ConfigError, match="no messages"):
        chain.complete(LLMRequest(messages=()))
    chain.close()
    assert fault_server.request_count == 0


def test_timeout_is_accepted_as_the_sdk_spelling_of_timeout_s() -> None:
    chain = Chain([], MockTransport())
    assert chain.build_request("hi", timeout=5).timeout_s == 5
    response = chain.complete("hi", timeout=5)
    assert isinstance(response, LLMResponse) and response.text == "hi"
    with pytest.raises(ConfigError, match="not both"):
        chain.complete("hi", timeout=5, timeout_s=6)


def test_a_request_id_that_would_inject_a_header_is_refused(fault_server: FaultServer) -> None:
    chain = Chain([], {"use": "openai", "base_url": fault_server.base_url, "api_key_env": ""})
    for bad in ("abc\r\nX-Injected: yes", "a\nb", "nul\x00", "with space", ""):
        with pytest.raises(ConfigError, match="request_id"):
            chain.complete("hi", request_id=bad)
    chain.close()
    assert fault_server.request_count == 0


@pytest.mark.parametrize("options", [
    {"headers": {"x-team": "a\r\nX-Injected: yes"}},
    {"headers": {"bad name": "v"}},
    {"headers": {"x-nul": "a\x00b"}},
    {"headers_env": {"x-key\r\n": "SOME_VAR"}},
    {"idempotency_header": "idem key"},
    {"auth_header": "author\nization", "api_key_env": "TEST_BAD_INPUT_KEY"},
])
def test_headers_that_could_split_a_request_are_refused_at_build(
        options: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TEST_BAD_INPUT_KEY", "sk-test-bad-input-0123456789")
    with pytest.raises(ConfigError) as info:
        Chain([], {"use": "openai", "api_key_env": "", **options})
    field = next(iter(options))
    assert field.split("_")[0] in info.value.args[0]


def test_a_secret_from_the_environment_with_a_newline_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TEST_BAD_INPUT_KEY", "sk-abc\r\nX-Injected: yes")
    with pytest.raises(ConfigError, match="control character"):
        OpenAITransport(OpenAITransport.Options(api_key_env="TEST_BAD_INPUT_KEY"))


def test_the_transport_refuses_a_bad_request_id_however_the_request_was_built(fault_server: FaultServer) -> None:
    import asyncio

    t = OpenAITransport(OpenAITransport.Options(base_url=fault_server.base_url, api_key_env=""))
    request = LLMRequest(messages=(Message(role="user", content="hi"),), request_id="x\r\ny: z")

    async def go() -> None:
        try:
            with pytest.raises(ConfigError, match="request_id"):
                await t.send(request)
        finally:
            await t.aclose()

    asyncio.run(go())
    assert fault_server.request_count == 0
