# ruff: noqa: E501  (the TOML inline tables must stay on one line)
"""Two API keys and a fallback provider under a daily budget, run offline (docs/routing.md).

Two fault servers stand in for two OpenAI keys with their own per-minute limits; the Anthropic
format of the second one stands in for the fallback provider (with a key of its own). Run it::

    python examples/routing_offline.py
"""

from __future__ import annotations

import asyncio
import os
from collections import Counter
from typing import Any

from llmchain import BudgetExceeded, CallError, Chain
from llmchain.testing import FaultServer

CONFIG = """
timeout_s = 20

[[stages]]
use = "log"
handler = "none"

[[stages]]
use = "budget"
model = "gpt-4o-mini"                 # prices calls before route picks a deployment
limits = [{{ usd = 0.0015, window = "day", soft = 0.8, name = "daily" }}]

[[stages]]
use = "fallback"
alternatives = [{{ name = "claude", transport = {{ use = "anthropic", base_url = "{fallback}", api_key_env = "FALLBACK_KEY", model = "claude-3-5-haiku-latest" }} }}]
on = ["gave_up", "circuit_open", "rate_limited", "server_error", "timeout", "transport_error"]

[[stages]]
use = "retry"
max_attempts = 2
base_s = 0.05

[[stages]]
use = "route"
strategy = "most_headroom"
cooldown_s = 1

[[stages.deployments]]
name = "key-a"
transport = {{ use = "openai", base_url = "{a}", api_key_env = "", model = "gpt-4o-mini" }}
rpm = 40
burst_s = 0                           # a per-minute quota the key may spend at once (no pacing)

[[stages.deployments]]
name = "key-b"
transport = {{ use = "openai", base_url = "{b}", api_key_env = "", model = "gpt-4o-mini" }}
rpm = 20
burst_s = 0
"""


async def run(calls: int = 60, *, broken_keys: bool = False) -> dict[str, Any]:
    """Send ``calls`` calls at once; returns who answered, what was refused and the servers' 429s."""
    with FaultServer(rpm_limit=40, seed=1) as a, FaultServer(rpm_limit=20, seed=2) as b:
        os.environ.setdefault("FALLBACK_KEY", "offline-demo-key")
        if broken_keys:  # key-a's region is down, key-b was revoked: the fallback provider answers
            a.set_plan({"503": 1.0})
            b.api_key = os.environ["FALLBACK_KEY"]  # only the fallback's key is accepted now
        chain = Chain.from_config(_config(a.base_url, b.base_url, b.anthropic_base_url))
        outcomes: Counter[str] = Counter()

        async def one(i: int) -> None:
            try:
                answer = await chain.acomplete(f"question {i}", max_tokens=50)
                outcomes[answer.served_by or "?"] += 1
            except BudgetExceeded:
                outcomes["budget_exceeded"] += 1
            except CallError as exc:
                outcomes[type(exc).__name__] += 1

        await asyncio.gather(*(one(i) for i in range(calls)))
        await chain.aclose()
        return {"outcomes": dict(outcomes), "provider_429s": a.violations + b.violations}


def _config(a: str, b: str, fallback: str) -> dict[str, Any]:
    import tomllib

    return tomllib.loads(CONFIG.format(a=a, b=b, fallback=fallback))


if __name__ == "__main__":
    print("healthy keys:", asyncio.run(run()))
    print("both keys down:", asyncio.run(run(10, broken_keys=True)))
