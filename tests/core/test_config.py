"""Every config error path names the file, the stage index and name, the option, and what was expected."""

from __future__ import annotations

from pathlib import Path

import pytest

from llmchain import Chain, ConfigError, load_config


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "chain.toml"
    path.write_text(text)
    return path


@pytest.mark.usefixtures("test_plugin")
def test_toml_file_builds_chain_in_order(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
timeout_s = 12
[transport]
use = "mock"
default = "fixed answer"
[[stages]]
use = "record"
name = "first"
label = "one"
[[stages]]
use = "plain"
""",
    )
    chain = Chain.from_config(path)
    assert [n for n, _ in chain.stages] == ["first", "plain"]
    assert chain.timeout_s == 12
    assert chain.complete("q").text == "fixed answer"
    assert chain.source == str(path)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("timeout_s = [", "not valid TOML"),
        ("colour = 'red'", "unknown top-level key(s) ['colour']"),
        ("timeout_s = -1", "timeout_s must be a finite number of seconds > 0"),
        ("stages = 3", "'stages' must be an array of tables"),
        ("stages = [3]", "stages[0] must be a table"),
        ("[[stages]]\nname = 'x'", "stages[0] needs `use"),
        ("[[stages]]\nuse = 'record'\nenabled = 'yes'", "stages[0] (record): enabled must be true or false"),
        ("[[stages]]\nuse = 'record'\nname = ''", "stages[0] (record): name must be a non-empty string"),
        (
            "[[stages]]\nuse = 'plain'\n[[stages]]\nuse = 'plain'",
            "stages[1] (plain): name 'plain' is already used by stages[0]",
        ),
        ("[[stages]]\nuse = 'nope'", "stages[0] (nope): unknown stage 'nope'. Registered stages:"),
        (
            "[[stages]]\nuse = 'record'\ncolour = 1",
            "stages[0] (record): unknown option(s) ['colour'] for 'record'; valid options: ['label', 'repeat']",
        ),
        (
            "[[stages]]\nuse = 'record'\nrepeat = 'many'",
            "stages[0] (record): option repeat: Input should be a valid integer",
        ),
        (
            "[[stages]]\nuse = 'record'\nrepeat = -1",
            "option repeat: Input should be greater than or equal to 0 (got -1)",
        ),
        ("[[stages]]\nuse = 'plain'\nx = 1", "'plain' takes no options, got ['x']"),
        (
            "[transport]\nuse = 'carrier-pigeon'",
            "[transport] (carrier-pigeon): unknown transport 'carrier-pigeon'. Registered transports: anthropic (from llmchain.transports.anthropic), mock (from llmchain.transports.mock)",
        ),
        ("[transport]\nuse = 'mock'\nlatency_s = 'slow'", "[transport] (mock): option latency_s"),
        ("[transport]\nuse = 'mock'\napi_key = 'sk-abcdef123456'", "option 'api_key' holds a literal secret"),
        ("transport = 'mock'", "[transport] must be a table"),
    ],
)
@pytest.mark.usefixtures("test_plugin")
def test_config_errors_say_where_and_what(tmp_path: Path, text: str, expected: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        Chain.from_config(path)
    message = str(info.value)
    assert message.startswith(str(path)), message
    assert expected in message, message


@pytest.mark.usefixtures("test_plugin")
def test_unknown_stage_lists_registered_stages_with_their_plugin(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        Chain.from_config(write(tmp_path, "[[stages]]\nuse = 'retyr'"))
    assert "record (from tests.core.stages)" in str(info.value)
    assert "plain (from tests.core.stages)" in str(info.value)


def test_missing_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(tmp_path / "absent.toml")


def test_secret_value_never_echoed_in_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(write(tmp_path, "[transport]\nuse='mock'\napi_key='sk-live-SECRETVALUE123'"))
    assert "SECRETVALUE" not in str(info.value)
    assert "api_key_env" in str(info.value)


def test_dict_config_errors_name_the_dict_source() -> None:
    with pytest.raises(ConfigError, match=r"^<dict>: stages\[0\]"):
        Chain.from_config({"stages": [{"use": "nope"}]})
