"""The README's first screen: exactly two set-up commands, and CI runs the test one verbatim."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def setup_commands() -> list[str]:
    readme = (ROOT / "README.md").read_text()
    section = readme.split("## Set up", 1)[1].split("\n## ", 1)[0]
    return [block.strip() for block in re.findall(r"```bash\n(.*?)```", section, re.S)]


def test_readme_gives_exactly_two_setup_commands() -> None:
    commands = setup_commands()
    assert len(commands) == 2, commands
    assert "llmchain" in commands[0] and "pytest" in commands[1]


def test_ci_runs_the_readme_test_command_verbatim() -> None:
    ci = (ROOT / ".ci" / "run").read_text()
    assert setup_commands()[1] in ci.splitlines()


def test_main_command_runs_offline_without_api_key(tmp_path: Path) -> None:
    assert setup_commands()[0].split("&&", 1)[1].strip() == "python3 -m llmchain demo"
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}  # no API keys, no config
    result = subprocess.run([sys.executable, "-m", "llmchain", "demo"], cwd=tmp_path, env=env,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Ran as designed" in result.stdout
