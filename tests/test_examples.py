"""The examples in examples/ run: offline against the mock, and unchanged against both HTTP
transports (a local fault server standing in for the providers)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from llmchain.testing import FaultServer

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"


def run(script: str, *args: str) -> str:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), os.environ.get("PYTHONPATH", "")])}
    done = subprocess.run([sys.executable, str(EXAMPLES / script), *args], capture_output=True, text=True,
                          env=env, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    return done.stdout


def config(tmp_path: Path, server: FaultServer, kind: str) -> str:
    url = server.base_url if kind == "openai" else server.anthropic_base_url
    path = tmp_path / f"{kind}.toml"
    path.write_text(f'[transport]\nuse = "{kind}"\nbase_url = "{url}"\napi_key_env = ""\n')
    return str(path)


def test_tool_loop_offline() -> None:
    out = run("tool_loop.py").splitlines()
    assert out == ['  -> get_weather({"city": "Lisbon"})', '  -> get_local_time({"city": "Lisbon"})',
                   "In Lisbon it is sunny, 21°C, and the local time is 14:05."]


def model_like(body: dict[str, Any]) -> Any:
    """Parallel calls first; then an answer quoting the tool results it was sent."""
    text = str(body["messages"][-2:])
    if "14:05" in text and "sunny" in text:
        return "Lisbon: sunny, 14:05."
    return {"tool_calls": [{"name": "get_weather", "arguments": {"city": "Lisbon", "unit": "F"}},
                           {"name": "get_local_time", "arguments": {"city": "Lisbon"}}]}


@pytest.mark.parametrize("kind", ["openai", "anthropic"])
def test_tool_loop_unchanged_against_each_provider_format(tmp_path: Path, kind: str) -> None:
    with FaultServer(content=model_like) as server:
        out = run("tool_loop.py", config(tmp_path, server, kind)).splitlines()
        assert out == ['  -> get_weather({"city": "Lisbon", "unit": "F"})',
                       '  -> get_local_time({"city": "Lisbon"})', "Lisbon: sunny, 14:05."]
        assert len(server.requests) == 2 and len(server.requests[0].body["tools"]) == 2


def test_image_question_offline() -> None:
    out = run("image_question.py").splitlines()
    assert out[0] == "What is in this file? One sentence. [image/png 75 B]"


@pytest.mark.parametrize("kind", ["openai", "anthropic"])
def test_image_and_pdf_question_against_each_provider_format(tmp_path: Path, kind: str) -> None:
    pdf = tmp_path / "report.pdf"
    pdf.write_bytes(b"%PDF-1.4\n1 0 obj << /Type /Page >> endobj\n%%EOF")
    with FaultServer() as server:
        out = run("image_question.py", config(tmp_path, server, kind)).splitlines()
        assert out[0] == "What is in this file? One sentence. [image/png 75 B]"
        assert int(out[1].split()[0].strip("(")) > 765  # the image tokens the server billed
        out = run("image_question.py", config(tmp_path, server, kind), str(pdf)).splitlines()
        assert out[0] == f"What is in this file? One sentence. [application/pdf {pdf.stat().st_size} B]"
