"""The built-in offline default chain: what `llmchain run` uses without a config file.

It talks to the in-process mock transport, so it works with no API key and no network.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

#: The default order, outermost first (docs/architecture.md explains each position).
DEFAULT_STAGE_ORDER: tuple[str, ...] = (
    "log",
    "cache",
    "repair",
    "validate",
    "parse",
    "retry",
    "rate_limit",
    "timeout",
)

CONFIG_ENV = "LLMCHAIN_CONFIG"
CONFIG_FILENAME = "llmchain.toml"


def default_config() -> dict[str, Any]:
    """The offline default: every default stage that is registered, over the mock transport."""
    from .plugins import get_registry

    registered = get_registry().stages
    return {
        "transport": {"use": "mock"},
        "stages": [{"use": name} for name in DEFAULT_STAGE_ORDER if name in registered],
    }


def find_config(explicit: str | None) -> str | Path | dict[str, Any]:
    """The config to use: --config, else $LLMCHAIN_CONFIG, else ./llmchain.toml, else the default."""
    if explicit:
        return explicit
    from_env = os.environ.get(CONFIG_ENV)
    if from_env:
        return from_env
    local = Path(CONFIG_FILENAME)
    return local if local.is_file() else default_config()
