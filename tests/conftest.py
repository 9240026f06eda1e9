"""Shared fixtures for the core tests (fake_clock, scripted_next, chain_factory and fault_server
come from llmchain's own pytest plugin)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, settings

import llmchain.plugins
from tests.core import stages as test_stages

# Properties are about values, not speed: on a loaded 2-core machine an example can take longer
# than hypothesis's 200 ms deadline, or generation look "too slow", and the test would flake.
settings.register_profile("llmchain", deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("llmchain")


@pytest.fixture
def test_plugin() -> Iterator[None]:
    """Registers the test-only stages (record, record_b, plain) for one test."""
    llmchain.plugins.register(test_stages, name="tests.core.stages")
    test_stages.TRACE.events.clear()
    yield
    llmchain.plugins.unregister(name="tests.core.stages")
