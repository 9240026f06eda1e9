"""docs/routing.md's worked example (examples/routing_offline.py) does what the page says."""

from __future__ import annotations

import asyncio
import importlib.util
from pathlib import Path
from types import ModuleType

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "routing_offline.py"


def _load() -> ModuleType:
    spec = importlib.util.spec_from_file_location("routing_offline", EXAMPLE)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_two_keys_share_the_load_within_their_limits_under_the_daily_budget() -> None:
    result = asyncio.run(_load().run(60))
    outcomes = result["outcomes"]
    assert result["provider_429s"] == 0  # route kept each key under its own limit
    assert sum(outcomes.values()) == 60
    assert 0 < outcomes["key-b"] <= 20 and 0 < outcomes["key-a"] <= 40  # both keys used, within rpm
    assert outcomes["budget_exceeded"] > 0  # the daily budget stopped the rest before sending
    assert set(outcomes) == {"key-a", "key-b", "budget_exceeded"}


def test_with_both_keys_down_the_fallback_provider_answers() -> None:
    result = asyncio.run(_load().run(10, broken_keys=True))
    assert result["outcomes"] == {"claude": 10}
    assert "docs/routing.md" in EXAMPLE.read_text(encoding="utf-8")
