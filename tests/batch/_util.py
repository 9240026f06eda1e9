"""Helpers shared by the batch tests: writing inputs, reading outputs strictly, test stages."""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from llmchain import CacheInfo, CallError, LLMRequest, LLMResponse, Next


def write_jsonl(path: Path, records: Iterable[dict[str, Any] | str]) -> Path:
    """Records (dicts as JSON, strings verbatim) one per line."""
    with path.open("w", encoding="utf-8") as f:
        for record in records:
            f.write((record if isinstance(record, str) else json.dumps(record)) + "\n")
    return path


def read_results(path: Path) -> list[dict[str, Any]]:
    """Every output line, asserting the file is valid JSONL (complete lines, each an object)."""
    data = path.read_bytes()
    assert data == b"" or data.endswith(b"\n"), f"torn last line: {data[-80:]!r}"
    records = [json.loads(line) for line in data.split(b"\n")[:-1]]
    assert all(isinstance(r, dict) and {"id", "line", "ok"} <= r.keys() for r in records)
    return records


def assert_each_id_once(path: Path, ids: Iterable[Any]) -> list[dict[str, Any]]:
    records = read_results(path)
    counts = Counter(r["id"] for r in records)
    expected = list(ids)
    assert set(counts) == set(expected), (
        f"missing {set(expected) - set(counts)}, extra {set(counts) - set(expected)}"
    )
    assert max(counts.values()) == 1, f"duplicated: {[k for k, n in counts.items() if n > 1][:10]}"
    return records


class TinyRetry:
    """Retries retryable errors up to ``max_attempts`` (the real retry stage is tested elsewhere)."""

    def __init__(self, max_attempts: int = 3) -> None:
        self.max_attempts = max_attempts

    async def handle(self, request: LLMRequest, call_next: Next) -> LLMResponse:
        for attempt in range(1, self.max_attempts + 1):
            try:
                return await call_next(request)
            except CallError as exc:
                if not exc.retryable or attempt == self.max_attempts:
                    raise
        raise AssertionError("unreachable")


class FakeCache:
    """Answers prompts starting with 'cached' itself, as a cache hit."""

    async def handle(self, request: LLMRequest, call_next: Next) -> LLMResponse:
        if request.messages[-1].content.startswith("cached"):
            return LLMResponse(text="from cache", cache=CacheInfo(status="hit"))
        return await call_next(request)


class InFlightGauge:
    """Counts calls inside it; everyone waits until ``limit`` are in, so the maximum is reached."""

    def __init__(self, limit: int) -> None:
        self.limit, self.current, self.max_seen = limit, 0, 0
        self.gate = asyncio.Event()

    async def handle(self, request: LLMRequest, call_next: Next) -> LLMResponse:
        self.current += 1
        self.max_seen = max(self.max_seen, self.current)
        if self.current >= self.limit:
            self.gate.set()
        try:
            await self.gate.wait()
            await asyncio.sleep(0)  # let any extra (bound-breaking) task enter now
            return await call_next(request)
        finally:
            self.current -= 1
