"""A worker process for the multi-process tests: runs chains on command, reports outcomes.

Protocol (JSON lines): the worker prints ``{"ready": true}``, then for each command line
``{"stages": [...], "transport": {...}, "calls": n, "timeout_s": s}`` it sends ``n`` calls at
once and prints ``{"outcomes": [...], "sent_at": [...]}`` (``sent_at``: wall-clock times at
which admitted calls left the limiter). An empty line ends it.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from typing import Any

from llmchain import CallError, Chain, LLMRequest, LLMResponse
from llmchain._types import Next


class SentAt:
    """Innermost stage: notes when each call was let through to the transport."""

    name = kind = "sent_at"

    def __init__(self) -> None:
        self.times: list[float] = []

    async def handle(self, request: LLMRequest, call_next: Next) -> LLMResponse:
        self.times.append(time.time())
        return await call_next(request)


async def run(command: dict[str, Any]) -> dict[str, Any]:
    probe = SentAt()
    inner = [probe] if command.get("probe", True) else []  # route must stay innermost: no probe
    chain = Chain([*command["stages"], *inner], command["transport"], timeout_s=command["timeout_s"])

    async def one(i: int) -> str:
        try:
            await chain.acomplete(f"call {i}")
        except CallError as exc:
            local = exc.status_code is None and type(exc).__name__ == "RateLimited"
            return "local_refusal" if local else f"{type(exc).__name__}:{exc.status_code}"
        return "ok"

    outcomes = await asyncio.gather(*(one(i) for i in range(command["calls"])))
    await chain.aclose()
    return {"outcomes": outcomes, "sent_at": probe.times}


def main() -> None:
    print(json.dumps({"ready": True}), flush=True)
    for line in sys.stdin:
        if not line.strip():
            return
        print(json.dumps(asyncio.run(run(json.loads(line)))), flush=True)


if __name__ == "__main__":
    main()
