"""A third-party distribution adds a stage, a transport and a store with the public API only,
installed as pip would (dist-info + entry point), and its stage passes the contract suite."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

ACME = '''
    """acme-llm: everything from llmchain's public API, nothing private."""

    import threading
    from collections.abc import Callable
    from typing import Any

    from llmchain import (
        REAL_CLOCK, Clock, LLMRequest, LLMResponse, Next, StageBase, StageOptions, hookimpl,
    )
    from llmchain.stores.cache_base import CacheEntry, StoreSettings


    class Shout(StageBase):
        """Appends a suffix to every answer (none by default)."""

        class Options(StageOptions):
            suffix: str = ""

        def __init__(self, options: Options | None = None) -> None:  # no clock: it never waits
            self.options = options or self.Options()

        async def handle(self, request: LLMRequest, call_next: Next) -> LLMResponse:
            response = await call_next(request)
            if not self.options.suffix:
                return response
            return response.model_copy(update={"text": response.text + self.options.suffix})


    class EchoTransport:
        class Options(StageOptions):
            model: str = "echo-1"

        def __init__(self, options: Options | None = None, *, clock: Clock = REAL_CLOCK) -> None:
            self.options = options or self.Options()
            self.name = f"acme-echo:{self.options.model}"
            self.calls = 0

        def identity(self) -> dict[str, Any]:
            return {"kind": "acme-echo", "model": self.options.model}

        async def send(self, request: LLMRequest) -> LLMResponse:
            self.calls += 1
            return LLMResponse(text=request.messages[-1].content[::-1], model=self.options.model)

        async def aclose(self) -> None:
            pass


    class DictStore:
        nonblocking = True

        def __init__(self, settings: StoreSettings, clock: Clock) -> None:
            self.name, self._clock = "acme-dict", clock
            self._lock, self._entries = threading.Lock(), {}

        async def get(self, key: str) -> CacheEntry | None:
            with self._lock:
                entry = self._entries.get(key)
            return entry if entry is not None and entry.alive(self._clock.wall()) else None

        async def set(self, key: str, value: str, ttl_s: float | None) -> None:
            now = self._clock.wall()
            with self._lock:
                self._entries[key] = CacheEntry(value, now, None if ttl_s is None else now + ttl_s)

        async def delete(self, key: str) -> bool:
            with self._lock:
                return self._entries.pop(key, None) is not None

        async def clear(self) -> None:
            with self._lock:
                self._entries.clear()

        async def aclose(self) -> None:
            pass


    @hookimpl
    def register_middleware(register: Callable[[str, Any], None]) -> None:
        register("shout", Shout)


    @hookimpl
    def register_transports(register: Callable[[str, Any], None]) -> None:
        register("acme-echo", EchoTransport)


    @hookimpl
    def register_stores(register: Callable[[str, str, Any], None]) -> None:
        register("cache", "acme-dict", DictStore)
'''

SCRIPT = '''
from llmchain import Chain
from llmchain.testing.contract import CLAUSES, check_middleware
from acme_llm import Shout

report = check_middleware(Shout, examples=3)
assert [r.status for r in report.results] == ["passed"] * len(CLAUSES)
chain = Chain.from_config({
    "transport": {"use": "acme-echo"},
    "stages": [{"use": "shout", "suffix": "!"}, {"use": "cache", "store": "acme-dict"}],
})
first, second = chain.complete("olleh"), chain.complete("olleh")
print(first.text, first.cache.status, second.cache.status, chain.transport.calls)
'''


def test_a_third_party_stage_transport_and_store(tmp_path: Path) -> None:
    (tmp_path / "acme_llm.py").write_text(textwrap.dedent(ACME))
    info = tmp_path / "acme_llm-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: acme-llm\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text("[llmchain]\nacme = acme_llm\n")
    env = {k: v for k, v in os.environ.items() if k != "LLMCHAIN_LOAD_PLUGINS"}
    env["PYTHONPATH"] = os.pathsep.join([str(tmp_path), env.get("PYTHONPATH", "")])
    result = subprocess.run([sys.executable, "-c", SCRIPT], env=env, capture_output=True, text=True,
                            timeout=120, check=False)
    assert result.returncode == 0, result.stderr[-3000:]
    # the transport answered once; the third-party store served the repeat
    assert result.stdout.split() == ["hello!", "miss", "hit", "1"]
