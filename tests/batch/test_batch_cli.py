"""The `llmchain batch` command in-process: registration, exit codes, messages."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from llmchain.cli import _batch as _cli_batch
from tests.batch._util import assert_each_id_once, read_results, write_jsonl


def config(tmp_path: Path, body: str = "") -> str:
    path = tmp_path / "c.toml"
    path.write_text(f"[transport]\nuse = 'mock'\n{body}")
    return str(path)


def test_register_adds_the_batch_subcommand(tmp_path: Path) -> None:
    parser = argparse.ArgumentParser(prog="llmchain")
    _cli_batch.register(parser.add_subparsers(dest="command", required=True))
    inp = write_jsonl(tmp_path / "in.jsonl", [{"id": i, "prompt": f"p{i}"} for i in range(5)])
    out = tmp_path / "out.jsonl"
    args = parser.parse_args(
        ["batch", str(inp), str(out), "--config", config(tmp_path), "--concurrency", "2", "-q"]
    )
    assert args.func(args) == 0
    assert_each_id_once(out, range(5))


def test_exit_1_when_records_failed_and_summary_on_stderr(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    inp = write_jsonl(tmp_path / "in.jsonl", [{"id": "a", "prompt": "x"}, {"id": "b", "prompt": "y"}])
    out = tmp_path / "out.jsonl"
    cfg = config(tmp_path, "replies = [{ error = 'auth' }]\n")
    assert _cli_batch.main([str(inp), str(out), "--config", cfg, "--concurrency", "1"]) == 1
    err = capsys.readouterr().err
    assert "2 records written (1 ok, 1 failed)" in err and f"→ {out}" in err
    # a rerun that sends nothing still reports the failure kept in the output
    assert _cli_batch.main([str(inp), str(out), "--config", cfg, "-q"]) == 1
    assert capsys.readouterr().err == ""
    # --retry-failed resends it (to a provider that now answers)
    fixed = tmp_path / "fixed.toml"
    fixed.write_text("[transport]\nuse = 'mock'\n")
    assert _cli_batch.main([str(inp), str(out), "--config", str(fixed), "--retry-failed"]) == 0
    assert "1 earlier error records dropped and sent again" in capsys.readouterr().err
    assert all(r["ok"] for r in read_results(out))


@pytest.mark.parametrize(
    ("inp", "out", "cfg", "message"),
    [
        ("missing.jsonl", "o.jsonl", "c.toml", "cannot read the input file"),
        ("in.jsonl", "o.jsonl", "nope.toml", "config file not found"),
        ("in.jsonl", "in.jsonl", "c.toml", "must not be the input file"),
        ("in.jsonl", "no-dir/o.jsonl", "c.toml", "cannot open the output file"),
    ],
)
def test_usage_and_config_errors_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], inp: str, out: str, cfg: str, message: str
) -> None:
    write_jsonl(tmp_path / "in.jsonl", [{"prompt": "p"}])
    config(tmp_path)
    assert _cli_batch.main([str(tmp_path / inp), str(tmp_path / out), "--config", str(tmp_path / cfg)]) == 2
    assert message in capsys.readouterr().err


def test_bad_concurrency_is_an_argparse_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        _cli_batch.main(["in", "out", "--concurrency", "0"])
    assert exited.value.code == 2
    assert "must be at least 1" in capsys.readouterr().err


def test_llmchain_batch_through_the_main_cli(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from llmchain import cli

    if "llmchain.cli._batch" not in cli.COMMAND_MODULES:  # until cli.py lists it
        monkeypatch.setattr(cli, "COMMAND_MODULES", (*cli.COMMAND_MODULES, "llmchain.cli._batch"))
    inp = write_jsonl(tmp_path / "in.jsonl", [{"id": "a", "prompt": "x"}])
    out = tmp_path / "out.jsonl"
    assert cli.main(["batch", str(inp), str(out), "--config", config(tmp_path), "-q"]) == 0
    assert read_results(out)[0]["text"] == "x"
    assert cli.main(["batch", str(tmp_path / "nope.jsonl"), str(out), "--config", config(tmp_path)]) == 2
    assert "BatchError" in capsys.readouterr().err
