"""Every command in docs/failure-checklist.md runs offline and prints what the doc says it prints.

The doc's rules, checked here: each ```bash line is a command (`# exits N` on the line says its
exit status, 0 otherwise); every ```text / ```json block after it shows lines of that command's
output, in order, with `…` standing for anything and runs of spaces counting as one.
`llmchain serve-mock` lines start the fault server, here in-process on a free port instead of
8011 (the config is copied with that port), for the commands after it in the same section.
"""

from __future__ import annotations

import argparse
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from llmchain.cli import _serve as _cli_serve
from llmchain.testing.fault_server import FaultServer

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "failure-checklist.md"
CONFIG = "examples/failure-checklist.toml"
FENCE = re.compile(r"^```(\w*)\n(.*?)^```", re.S | re.M)

Step = tuple[str, list[str]]  # a command line, the output blocks shown after it


def sections() -> dict[str, list[Step]]:
    """``## `` heading → its commands and their shown output, in document order."""
    found: dict[str, list[Step]] = {}
    for part in DOC.read_text(encoding="utf-8").split("\n## ")[1:]:
        steps: list[Step] = []
        for lang, body in FENCE.findall(part):
            if lang == "bash":
                steps += [(line, []) for line in body.splitlines() if line.strip()]
            elif lang in ("text", "json") and steps:
                steps[-1][1].append(body)
        if steps:
            found[part.splitlines()[0].strip()] = steps
    return found


def _normal(text: str) -> str:
    return " ".join(text.split())


def assert_shows(output: str, block: str, command: str) -> None:
    lines = [_normal(line) for line in output.splitlines()]
    position = 0
    for wanted in filter(None, map(_normal, block.splitlines())):
        pattern = re.compile(".*?".join(re.escape(part) for part in wanted.split("…")))
        for index in range(position, len(lines)):
            if pattern.fullmatch(lines[index]):
                position = index + 1
                break
        else:
            pytest.fail(f"`{command}` did not print (after its line {position}):\n  {wanted}\n"
                        f"--- its output ---\n{output}")


def serve(argv: list[str]) -> FaultServer:
    parser = argparse.ArgumentParser()
    _cli_serve.add_arguments(parser)
    args = parser.parse_args(argv)
    args.port = 0  # a free port: tests may run side by side
    return _cli_serve.build_server(args).start()


def test_the_intro_command_is_the_whole_demo() -> None:
    """The one command before the sections; tests/demo/test_demo.py runs it exactly."""
    intro = DOC.read_text(encoding="utf-8").split("\n## ", 1)[0]
    assert [body.strip() for lang, body in FENCE.findall(intro) if lang == "bash"] == ["llmchain demo"]


def test_the_doc_has_a_section_per_checklist_item() -> None:
    titles = " | ".join(sections()).lower()
    for item in ("timeout", "invalid json", "429", "5xx", "reset", "circuit open"):
        assert item in titles, titles


@pytest.mark.parametrize("title", list(sections()))
def test_commands_run_and_print_what_the_doc_shows(title: str, tmp_path: Path) -> None:
    server: FaultServer | None = None
    env = {**os.environ, "HOME": str(tmp_path)}
    env.pop("LLMCHAIN_CONFIG", None)
    try:
        for line, shown in sections()[title]:
            argv = shlex.split(line, comments=True)
            assert argv[0] == "llmchain", line
            if argv[1] == "serve-mock":
                if server is not None:
                    server.stop()
                server = serve(argv[2:])
                continue
            if CONFIG in argv:
                assert server is not None, f"{line}: start `llmchain serve-mock` first"
                config = tmp_path / "failure-checklist.toml"
                text = (ROOT / CONFIG).read_text(encoding="utf-8")
                config.write_text(text.replace("127.0.0.1:8011", f"127.0.0.1:{server.port}"))
                argv[argv.index(CONFIG)] = str(config)
            done = subprocess.run([sys.executable, "-m", "llmchain", *argv[1:]], cwd=tmp_path, env=env,
                                  capture_output=True, text=True, timeout=60)
            output = done.stdout + done.stderr
            status = re.search(r"#.*\bexits (\d+)", line)
            assert done.returncode == int(status.group(1) if status else 0), f"{line}\n{output}"
            assert "Traceback" not in output, output
            for block in shown:
                assert_shows(output, block, line)
    finally:
        if server is not None:
            server.stop()
