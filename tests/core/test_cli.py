"""The llmchain command."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from llmchain.cli import main


def test_run_offline_default_prints_answer(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("LLMCHAIN_CONFIG", raising=False)
    assert main(["run", "hello there"]) == 0
    assert capsys.readouterr().out.strip() == "hello there"


def test_run_json_prints_full_response(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    config = tmp_path / "c.toml"
    config.write_text("[transport]\nuse='mock'\ndefault='the answer'\n")
    assert main(["run", "--json", "--config", str(config), "q"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["text"] == "the answer"
    assert data["attempts"][0]["outcome"] == "ok"
    assert data["request_id"]


def test_run_error_explains_on_stderr_with_nonzero_exit(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    config = tmp_path / "c.toml"
    config.write_text("[transport]\nuse='mock'\nreplies=[{error='auth'}]\n")
    assert main(["run", "--config", str(config), "q"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("ProviderError: mock: HTTP 401")
    assert "attempts (1)" in err and "hint: check the API key" in err


def test_stages_lists_registered_with_plugin_and_options(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["stages"]) == 0
    out = capsys.readouterr().out
    assert "mock  (from llmchain.transports.mock)" in out
    assert "latency_s: float = 0.0" in out


def test_check_config_ok_and_broken(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    good = tmp_path / "good.toml"
    good.write_text("timeout_s = 9\n[transport]\nuse='mock'\n")
    assert main(["check-config", str(good)]) == 0
    assert "config OK" in capsys.readouterr().out
    bad = tmp_path / "bad.toml"
    bad.write_text("[[stages]]\nuse='nonexistent'\n")
    assert main(["check-config", str(bad)]) == 2
    assert "unknown stage 'nonexistent'" in capsys.readouterr().err
