"""Installed as a distribution: found through its entry point and used by name from TOML."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

from llmchain_redact import RedactMiddleware

from llmchain import Chain
from llmchain.plugins import get_registry

CONFIG = textwrap.dedent(
    r"""
    timeout_s = 30

    [transport]
    use = "mock"

    [[stages]]
    use = "redact"
    patterns = { TICKET = 'TCK-\d{4}' }
    """
)


def test_registered_through_the_entry_point() -> None:
    registered = get_registry().stages["redact"]
    assert registered.factory is RedactMiddleware
    assert registered.plugin == "llmchain-redact"


def test_used_by_name_from_toml(tmp_path: Path) -> None:
    path = tmp_path / "llmchain.toml"
    path.write_text(CONFIG)
    with Chain.from_config(path) as chain:
        answer = chain.complete("Reopen TCK-0042 for bo@x.org")
        sent = chain.transport.calls[0].messages[0].content  # type: ignore[attr-defined]
    assert sent == "Reopen <TICKET_1> for <EMAIL_1>"
    assert answer.text == "Reopen TCK-0042 for bo@x.org"  # the mock echoed the placeholders back
    assert answer.notes["redacted"] == {"EMAIL": 1, "TICKET": 1}
    assert "redact" in chain.describe() and "TICKET" in chain.describe()


def test_left_out_when_not_in_llmchain_load_plugins(tmp_path: Path) -> None:
    path = tmp_path / "llmchain.toml"
    path.write_text(CONFIG)
    code = (
        "import sys\nfrom llmchain import Chain, ConfigError\n"
        "try:\n    Chain.from_config(sys.argv[1])\nexcept ConfigError as exc:\n    print(exc)\n"
    )
    env = {**os.environ, "LLMCHAIN_LOAD_PLUGINS": ""}
    out = subprocess.run(
        [sys.executable, "-c", code, str(path)],
        env=env, capture_output=True, text=True, timeout=60, check=True,
    ).stdout
    assert "unknown stage 'redact'" in out
