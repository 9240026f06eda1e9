"""The pytest plugin as a plugin author meets it: fixtures and the contract class in their tests."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from importlib.metadata import entry_points
from pathlib import Path

AUTHOR_TESTS = '''
import pytest
from hypothesis import HealthCheck, given, settings

from llmchain import ProviderError, RateLimited
from llmchain.testing import strategies as lst
from llmchain.testing.contract import MiddlewareContract


class Shout:
    """A third-party stage: notes that it saw the answer."""

    def __init__(self, *, clock=None):
        self.clock = clock

    async def handle(self, request, call_next):
        response = await call_next(request)
        return response.model_copy(update={"notes": {**response.notes, "shout": True}})


class TestShoutContract(MiddlewareContract):
    factory = Shout
    examples = 5


def test_fixtures_share_one_fake_clock(fake_clock, scripted_next, chain_factory):
    assert scripted_next("a").clock is fake_clock
    chain = chain_factory([Shout()], replies=["hello", RateLimited("busy", retry_after=1)])
    assert chain.complete("x").notes["shout"] is True
    assert chain.clock is fake_clock and len(chain.transport.calls) == 1


@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(lst.outcomes(["success"]))
def test_strategies_are_importable(outcome):
    assert lst.classify(outcome) == "success"


def test_fault_server_comes_with_the_plugin(fault_server, chain_factory):
    fault_server.set_plan(["503", "ok"])
    transport = {"use": "openai", "base_url": fault_server.base_url, "api_key_env": ""}
    chain = chain_factory([Shout()], transport=transport)
    with pytest.raises(ProviderError):
        chain.complete("ping")
    assert chain.complete("ping").notes["shout"] is True
    assert [r.fault for r in fault_server.requests] == ["503", "ok"]
'''


def _pytest_args() -> list[str]:
    installed = entry_points(group="pytest11", name="llmchain")
    # once llmchain's pytest11 entry point is installed, pytest loads the plugin by itself
    return [] if installed else ["-p", "llmchain.testing.pytest_plugin"]


def test_plugin_fixtures_and_contract_class_work_in_an_authors_test_suite(tmp_path: Path) -> None:
    (tmp_path / "test_shout.py").write_text(textwrap.dedent(AUTHOR_TESTS))
    result = subprocess.run(
        [sys.executable, "-m", "pytest", *_pytest_args(), "-p", "no:cacheprovider", "-q", "-rA", "test_shout.py"],
        cwd=tmp_path, capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "18 passed" in result.stdout  # 15 contract tests + 3 of the author's own
